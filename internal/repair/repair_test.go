package repair

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/archiver"
	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

func day(n int) time.Time { return time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -n) }

func ds(n int) string { return day(n).Format("2006-01-02") }

// seed: site 1 (Europe/Berlin) and site 2 (UTC+5.5) with visits on the last
// 20 days, archived but for a few gap days of each kind.
func seed(t *testing.T) *matomotest.Env {
	e := matomotest.New(t)
	e.AddSite(1, "Europe/Berlin", ds(40)).AddSite(2, "UTC+5.5", ds(40))
	e.SetOption("version_core", matomotest.MatomoVersion)
	e.SetOption("LastFullArchivingStartTime", "1") // no run since yesterday: keeps yesterday unrepairable
	for d := 20; d >= 1; d-- {
		for _, s := range []int{1, 2} {
			e.AddVisits(s, day(d).Add(11*time.Hour), 3)
		}
	}
	for d := 20; d >= 2; d-- {
		for _, s := range []int{1, 2} {
			switch {
			case s == 1 && (d == 10 || d == 11): // missing
			case s == 2 && d == 7:
				e.AddDayArchive(s, ds(d), 4, day(d-3), 3) // invalidated long ago
			default:
				e.AddDayArchive(s, ds(d), 1, day(d-2), 3)
			}
		}
	}
	seedPeriods(e)
	return e
}

// seedPeriods archives every week, month and year of the seeded days that
// has ended, as Matomo would have: nb_visits the sum of its days' (3 a day).
func seedPeriods(e *matomotest.Env) {
	today := matomo.DateOf(day(0))
	done := map[string]bool{}
	for d := 20; d >= 1; d-- {
		for _, p := range []int{matomo.PeriodWeek, matomo.PeriodMonth, matomo.PeriodYear} {
			first, last := gapdetect.PeriodOf(p, matomo.DateOf(day(d)))
			key := fmt.Sprint(p, first)
			if last >= today || done[key] {
				continue
			}
			done[key] = true
			var n int64
			for x := first; x <= last; x++ {
				if x >= matomo.DateOf(day(20)) && x <= matomo.DateOf(day(1)) {
					n += 3
				}
			}
			for _, s := range []int{1, 2} {
				e.AddArchive(matomotest.ArchiveRow{IDSite: s, Period: p, Date1: first.String(), Date2: last.String(), TSArchived: time.Now().Add(-time.Minute), NbVisits: n})
			}
		}
	}
}

func setup(t *testing.T, e *matomotest.Env, dry bool, knobs ...string) (*Repairer, *gapdetect.Detector, *matomo.DB) {
	db, err := matomo.Open(e.Settings, matomo.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	// Noon UTC: at any real hour, "yesterday" is day(1) for both sites (in
	// UTC+5.5 the local day turns at 18:30 UTC, and the seed counted on it).
	noon := func() time.Time { return time.Now().UTC().Truncate(24 * time.Hour).Add(12 * time.Hour) }
	det := gapdetect.New(db, gapdetect.Options{Now: noon})
	var opts []string
	for _, k := range knobs {
		opts = append(opts, "-d", k)
	}
	con := &archiver.Console{PHP: matomotest.Simulator(t), PHPOptions: opts, Dir: e.Dir}
	return &Repairer{DB: db, Console: con, Scanner: det, Opt: Options{MaxDays: 60, DryRun: dry, Timeout: time.Minute, KillGrace: time.Second}}, det, db
}

func scan(t *testing.T, det *gapdetect.Detector) *gapdetect.Result {
	t.Helper()
	r, err := det.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// End to end: gaps are found, repaired through the simulated console, and
// the tables hold rebuilt archives with the right nb_visits.
func TestRepairEndToEnd(t *testing.T) {
	e := seed(t)
	r, det, _ := setup(t, e, false)
	before := scan(t, det)
	if len(before.Repairable()) != 3 {
		t.Fatalf("want 3 repairable gaps, got %+v", before.Gaps)
	}
	rep, err := r.Repair(context.Background(), before.Gaps)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts[Repaired] != 3 || rep.Counts[FailedResult] != 0 || rep.Invalidations != 3 {
		t.Fatalf("report: %+v", rep)
	}
	// Yesterday stays (no archive run since it ended): reported, not touched.
	if rep.Counts[SkippedUnsafe] != len(before.Gaps)-3 {
		t.Errorf("skipped: %+v", rep.Days)
	}
	for _, c := range []struct {
		site int
		d    int
	}{{1, 10}, {1, 11}, {2, 7}} {
		n := e.Count("SELECT COUNT(*) FROM {p}"+matomo.TableFor(matomo.DateOf(day(c.d)))+
			" f JOIN {p}"+matomo.TableFor(matomo.DateOf(day(c.d)))+" v ON v.idarchive = f.idarchive AND v.name = 'nb_visits'"+
			" WHERE f.idsite = ? AND f.date1 = ? AND f.period = 1 AND f.name = 'done' AND f.value = 1 AND v.value = 3", c.site, ds(c.d))
		if n != 1 {
			t.Errorf("site %d day -%d: %d rebuilt archives with nb_visits 3", c.site, c.d, n)
		}
	}
	after := gapdetect.New(r.DB, gapdetect.Options{})
	for _, g := range scan(t, after).Gaps {
		if g.Repairable {
			t.Errorf("still open after repair: %+v", g)
		}
	}
}

func TestRepairDryRunChangesNothing(t *testing.T) {
	e := seed(t)
	r, det, _ := setup(t, e, true)
	rows := e.Count("SELECT COUNT(*) FROM {p}archive_invalidations")
	rep, err := r.Repair(context.Background(), scan(t, det).Gaps)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Commands) != 3 || rep.Counts["planned"] != 3 {
		t.Fatalf("dry run: %+v", rep)
	}
	want := []string{"core:invalidate-report-data", "--sites=1", "--dates=" + ds(11) + "," + ds(10), "--periods=day"}
	got := strings.Join(rep.Commands[0], " ")
	for _, w := range want {
		if !strings.Contains(got, w) {
			t.Errorf("command %q lacks %q", got, w)
		}
	}
	if strings.Contains(strings.Join(rep.Commands[2], " "), "ignore-log-deletion") || !strings.Contains(strings.Join(rep.Commands[2], " "), "--force-idsites=1,2") {
		t.Errorf("archive command: %v", rep.Commands[2])
	}
	if e.Count("SELECT COUNT(*) FROM {p}archive_invalidations") != rows {
		t.Error("dry run wrote invalidations")
	}
}

// Exit codes do not decide: a console that exits 1 after doing the work
// still leaves repaired days, and one that does nothing leaves failed days
// whose reason names the exit code.
func TestRepairOutcomeComesFromTheTables(t *testing.T) {
	e := seed(t)
	r, det, _ := setup(t, e, false, "MATOMOSIM_EXIT=1")
	rep, err := r.Repair(context.Background(), scan(t, det).Gaps)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts[Repaired] != 3 {
		t.Fatalf("exit 1 after the work: want 3 repaired, got %+v", rep.Days)
	}

	e = seed(t)
	r, det, _ = setup(t, e, false)
	r.Console.(*archiver.Console).PHP = "/bin/false" // a console that fails at once
	rep, err = r.Repair(context.Background(), scan(t, det).Gaps)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts[Repaired] != 0 || rep.Counts[FailedResult] != 3 {
		t.Fatalf("failing console: want 3 failed, got %+v", rep.Days)
	}
	for _, d := range rep.Days {
		if d.Result == FailedResult && !strings.Contains(d.Reason, "queued nothing") {
			t.Errorf("reason: %+v", d)
		}
	}
}

// Maintenance mode: the console exits 0 and archives nothing; no day is
// claimed repaired and the reason says why.
func TestRepairInMaintenanceMode(t *testing.T) {
	e := seed(t)
	e.SetINI("[General]", "maintenance_mode = 1")
	r, det, _ := setup(t, e, false)
	rep, err := r.Repair(context.Background(), scan(t, det).Gaps)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts[Repaired] != 0 || rep.Counts[FailedResult] != 3 {
		t.Fatalf("want 3 failed, got %+v", rep.Days)
	}
	for _, d := range rep.Days {
		if d.Result == FailedResult && !strings.Contains(d.Reason, "maintenance_mode") {
			t.Errorf("reason does not say maintenance mode: %+v", d)
		}
	}
}

// Operator-named range: refuses unsafe days unless --force, and --force
// still refuses days without raw visits.
func TestRepairDaysForce(t *testing.T) {
	e := seed(t)
	e.SetOption("delete_logs_enable", "1").SetOption("delete_logs_older_than", "10")
	r, det, _ := setup(t, e, true)
	from, to := matomo.DateOf(day(17)), matomo.DateOf(day(13)) // all before today-10-2
	rep, err := r.RepairDays(context.Background(), det, 1, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts[SkippedUnsafe] != 5 || len(rep.Commands) != 0 {
		t.Fatalf("without --force: %+v", rep.Days)
	}
	if !strings.Contains(rep.Days[0].Reason, "log-deletion limit") || !strings.Contains(rep.Days[0].Reason, "--force") {
		t.Errorf("reason: %q", rep.Days[0].Reason)
	}
	r.Opt.Force = true
	e.Exec("DELETE FROM {p}log_visit WHERE idsite = 1 AND visit_last_action_time >= ? AND visit_last_action_time < ?", day(14), day(13))
	rep, err = r.RepairDays(context.Background(), det, 1, from, to)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts["planned"] != 4 || rep.Counts[SkippedUnsafe] != 1 {
		t.Fatalf("with --force: %+v", rep.Days)
	}
	if _, err := r.RepairDays(context.Background(), det, 99, from, to); err == nil || !strings.Contains(err.Error(), "site 99") {
		t.Errorf("unknown site: %v", err)
	}
	if _, err := r.RepairDays(context.Background(), det, 1, to, from); err == nil || !strings.Contains(err.Error(), "swap") {
		t.Errorf("reversed range: %v", err)
	}
}

// The bound: at most MaxDays site-days, newest first; the rest deferred.
func TestRepairBound(t *testing.T) {
	e := seed(t)
	r, det, _ := setup(t, e, true)
	r.Opt.MaxDays = 2
	rep, err := r.Repair(context.Background(), scan(t, det).Gaps)
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts["planned"] != 2 || rep.Deferred != 1 || !rep.Open() {
		t.Fatalf("bounded: %+v deferred %d", rep.Days, rep.Deferred)
	}
}

// Issue 11: a repair Matomo refuses is recorded with Matomo's reason.
func TestRepairRefusedKeepsMatomoReason(t *testing.T) {
	e := seed(t)
	e.SetOption("delete_logs_enable", "1").SetOption("delete_logs_older_than", "10")
	r, det, _ := setup(t, e, false)
	r.Opt.Force = true
	rep, err := r.RepairDays(context.Background(), det, 1, matomo.DateOf(day(17)), matomo.DateOf(day(16)))
	if err != nil {
		t.Fatal(err)
	}
	if rep.Counts[FailedResult] == 0 {
		t.Fatalf("want refused days, got %+v", rep.Days)
	}
	for _, d := range rep.Days {
		if d.Result == FailedResult && !strings.Contains(d.Reason, "Matomo: the last day with logs is") {
			t.Errorf("reason without Matomo's words: %q", d.Reason)
		}
	}
}

// Issue 14: a week without archive and a week below the sum of its days
// are repaired with --periods=week for exactly those weeks, and checked.
func TestRepairPeriods(t *testing.T) {
	e := seed(t)
	w1, w1last := gapdetect.PeriodOf(matomo.PeriodWeek, matomo.DateOf(day(20)))
	w2, w2last := gapdetect.PeriodOf(matomo.PeriodWeek, w1last.AddDays(1))
	e.Exec("DELETE FROM {p}"+matomo.TableFor(w1)+" WHERE idsite = 2 AND period = 2 AND date1 = ?", w1.String())
	e.Exec("UPDATE {p}"+matomo.TableFor(w2)+" SET value = value - 1 WHERE idsite = 2 AND period = 2 AND date1 = ? AND name = 'nb_visits'", w2.String())
	e.AddDayArchive(2, w2.AddDays(2).String(), matomo.DoneOK, time.Now().Add(time.Minute), 3) // re-archived after its week
	r, det, _ := setup(t, e, true)
	before := scan(t, det)
	var weeks []string
	for _, g := range before.Gaps {
		if !g.IsDay() {
			weeks = append(weeks, fmt.Sprintf("%d %s %s %s %v", g.IDSite, g.Period, g.Date, g.Kind, g.Repairable))
		}
	}
	want := []string{fmt.Sprintf("2 week %s missing true", w1), fmt.Sprintf("2 week %s stale true", w2)}
	if strings.Join(weeks, "|") != strings.Join(want, "|") {
		t.Fatalf("period gaps %q, want %q", weeks, want)
	}
	rep, err := r.Repair(context.Background(), before.Gaps)
	if err != nil {
		t.Fatal(err)
	}
	var inv string
	for _, c := range rep.Commands {
		if strings.Contains(strings.Join(c, " "), "--periods=week") {
			inv = strings.Join(c, " ")
		}
	}
	if !strings.Contains(inv, "--sites=2 --dates="+w1.String()+" --dates="+w2.String()+" --periods=week") {
		t.Fatalf("dry run: no week invalidation for exactly the two weeks: %q", rep.Commands)
	}
	if rep.Counts["planned"] != 5 {
		t.Errorf("planned: %+v", rep.Days)
	}

	r.Opt.DryRun = false
	rep, err = r.Repair(context.Background(), scan(t, det).Gaps)
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Periods) != 2 {
		t.Errorf("period outcomes: %+v", rep.Periods)
	}
	for _, d := range rep.Periods {
		if d.Period != gapdetect.PeriodWeek || d.Result != Repaired {
			t.Errorf("week not repaired: %+v", d)
		}
	}
	for _, d := range rep.Days {
		if d.Period != gapdetect.PeriodDay {
			t.Errorf("a period among the days: %+v", d)
		}
	}
	if rep.Counts[Repaired] != 5 {
		t.Errorf("repaired: %+v", rep.Days)
	}
	var sum int64
	for x := w2; x <= w2last; x++ {
		if x >= matomo.DateOf(day(20)) {
			sum += 3
		}
	}
	n := e.Count("SELECT COUNT(*) FROM {p}"+matomo.TableFor(w2)+" f JOIN {p}"+matomo.TableFor(w2)+" v ON v.idarchive = f.idarchive AND v.name = 'nb_visits'"+
		" WHERE f.idsite = 2 AND f.period = 2 AND f.date1 = ? AND f.name = 'done' AND f.value = 1 AND v.value = ? AND f.ts_archived >= UTC_TIMESTAMP() - INTERVAL 5 MINUTE", w2.String(), sum)
	if n == 0 {
		t.Errorf("week %s: no rebuilt archive with nb_visits %d", w2, sum)
	}
	for _, g := range rep.Remaining {
		if !g.IsDay() && g.IDSite == 2 {
			t.Errorf("still open: %+v", g)
		}
	}
}
