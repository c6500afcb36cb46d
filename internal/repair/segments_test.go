package repair

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/archiver"
	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

// segConsole fakes Matomo's console for segment repairs: an invalidation
// with --segment queues done<hash> day rows (unless refuse), core:archive
// writes a Good done<hash> archive for each queued row and drains them.
type segConsole struct {
	e      *matomotest.Env
	refuse bool
	calls  [][]string
}

func (c *segConsole) Argv(args ...string) []string {
	return append([]string{"php", "console"}, args...)
}
func (c *segConsole) Invalidate(context.Context, archiver.RunOptions, int, string, string) archiver.Result {
	panic("segment repairs never run a plain invalidation")
}

func (c *segConsole) Run(_ context.Context, _ archiver.RunOptions, args ...string) archiver.Result {
	c.calls = append(c.calls, args)
	var site, def, period string
	var dates []string
	for _, a := range args {
		if v, ok := strings.CutPrefix(a, "--sites="); ok {
			site = v
		}
		if v, ok := strings.CutPrefix(a, "--dates="); ok {
			dates = append(dates, v)
		}
		if v, ok := strings.CutPrefix(a, "--segment="); ok {
			def = v
		}
		if v, ok := strings.CutPrefix(a, "--periods="); ok {
			period = v
		}
	}
	if def == "" || c.refuse {
		return archiver.Result{Outcome: archiver.OutcomeSuccess}
	}
	ins := "INSERT INTO {p}archive_invalidations (idarchive, name, idsite, date1, date2, period, ts_invalidated, status, `report`) VALUES (NULL, ?, ?, ?, ?, ?, NOW(), 0, NULL)"
	for _, dr := range dates {
		from, to, _ := strings.Cut(dr, ",")
		if to == "" {
			to = from
		}
		f, _ := time.Parse(time.DateOnly, from)
		l, _ := time.Parse(time.DateOnly, to)
		for d := matomo.DateOf(f); d <= matomo.DateOf(l); d++ {
			p := gapdetect.PeriodNumber(period)
			first, last := gapdetect.PeriodOf(p, d)
			c.e.Exec(ins, "done"+matomo.SegmentHash(def), site, first.String(), last.String(), p)
		}
	}
	return archiver.Result{Outcome: archiver.OutcomeSuccess}
}

func (c *segConsole) ArchiveSites(context.Context, archiver.RunOptions, string, []int, []string) archiver.Result {
	rows, err := c.e.DB.Query("SELECT name, idsite, period, DATE_FORMAT(date1, '%Y-%m-%d'), DATE_FORMAT(date2, '%Y-%m-%d') FROM " + c.e.Settings.TablesPrefix + "archive_invalidations WHERE name LIKE 'done%'")
	if err != nil {
		panic(err)
	}
	type q struct {
		name, date, date2 string
		site, period      int
	}
	var qs []q
	for rows.Next() {
		var x q
		rows.Scan(&x.name, &x.site, &x.period, &x.date, &x.date2)
		qs = append(qs, x)
	}
	rows.Close()
	for _, x := range qs {
		c.e.AddArchive(matomotest.ArchiveRow{IDSite: x.site, Period: x.period, Date1: x.date, Date2: x.date2, Name: x.name, TSArchived: time.Now().Add(time.Second), NbVisits: 1})
	}
	c.e.Exec("DELETE FROM {p}archive_invalidations")
	return archiver.Result{Outcome: archiver.OutcomeSuccess}
}

// Issue 14 (segments): repairable segment gaps are invalidated with
// --segment=<definition> per site and run of days, archived once, and
// checked in the done<hash> rows; unsafe ones are skipped; a segment
// that is no longer stored is not touched; a refused invalidation fails.
func TestRepairSegments(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", ds(40))
	e.Exec(`CREATE TABLE {p}segment (idsegment int(11) NOT NULL AUTO_INCREMENT, name varchar(255) NOT NULL, definition text NOT NULL,
		hash char(32) DEFAULT NULL, login varchar(100) NOT NULL, enable_all_users tinyint(4) NOT NULL DEFAULT 0, enable_only_idsite int(11) DEFAULT NULL,
		auto_archive tinyint(4) NOT NULL DEFAULT 0, ts_created timestamp NULL DEFAULT NULL, ts_last_edit timestamp NULL DEFAULT NULL,
		deleted tinyint(4) NOT NULL DEFAULT 0, PRIMARY KEY (idsegment))`)
	def := "pageUrl=@%2Fshop"
	e.Exec("INSERT INTO {p}segment (name, definition, hash, login, enable_only_idsite, auto_archive, ts_created) VALUES ('s', ?, ?, 'u', 0, 1, NOW())", def, matomo.SegmentHash(def))
	db, err := matomo.Open(e.Settings, matomo.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	gap := func(n int, rep bool, segment string) gapdetect.Gap {
		d := matomo.DateOf(day(n))
		return gapdetect.Gap{IDSite: 1, Period: gapdetect.PeriodDay, Date: d, Date2: d, Kind: gapdetect.Missing, RawVisits: 3, Repairable: rep, Reason: "why", Segment: segment}
	}
	gaps := []gapdetect.Gap{gap(5, true, def), gap(4, true, def), gap(8, true, def), gap(2, false, def), gap(6, true, "pageTitle==gone"),
		{IDSite: 1, Period: gapdetect.PeriodDay, Date: matomo.DateOf(day(9)), Kind: gapdetect.Missing, Repairable: true}} // a plain gap: not ours
	con := &segConsole{e: e}
	r := &Repairer{DB: db, Console: con, Opt: Options{MaxDays: 60}}
	rep, err := r.RepairSegments(context.Background(), gaps)
	if err != nil {
		t.Fatal(err)
	}
	if len(con.calls) != 2 || !strings.Contains(strings.Join(con.calls[0], " "), "--sites=1 --dates="+ds(8)+" --periods=day --segment="+def) ||
		!strings.Contains(strings.Join(con.calls[1], " "), "--dates="+ds(5)+","+ds(4)+" --periods=day --segment="+def) {
		// ds(5) < ds(4): the range runs from the older day.
		t.Errorf("invalidations: %q", con.calls)
	}
	if rep.Counts[Repaired] != 3 || rep.Counts[SkippedUnsafe] != 2 || rep.Invalidations != 3 || len(rep.Days) != 0 || len(rep.Segments) != 5 {
		t.Errorf("report: counts %v, invalidations %d, segments %+v", rep.Counts, rep.Invalidations, rep.Segments)
	}
	for _, o := range rep.Segments {
		if o.Segment == "" || o.Period != "day" {
			t.Errorf("outcome without its segment: %+v", o)
		}
	}

	// Dry run: the commands, nothing run.
	con.calls = nil
	r.Opt.DryRun = true
	rep, err = r.RepairSegments(context.Background(), []gapdetect.Gap{gap(3, true, def)})
	if err != nil || len(con.calls) != 0 || len(rep.Commands) != 2 || rep.Counts["planned"] != 1 {
		t.Fatalf("dry run: %+v %v %q", rep, err, con.calls)
	}
	// Refused invalidation (e.g. past the log-deletion limit): failed.
	r.Opt.DryRun, con.refuse = false, true
	rep, err = r.RepairSegments(context.Background(), []gapdetect.Gap{gap(3, true, def)})
	if err != nil || rep.Counts[FailedResult] != 1 || !strings.Contains(rep.Segments[0].Reason, "queued nothing") {
		t.Fatalf("refused: %+v %v", rep, err)
	}
}

// A segment gap handed to the plain Repair is not planned as a day or a
// period (IsDay is false for it): nothing runs.
func TestRepairIgnoresSegmentGaps(t *testing.T) {
	d := matomo.DateOf(day(5))
	con := &segConsole{}
	r := &Repairer{Console: con, Opt: Options{MaxDays: 60, DryRun: true}}
	rep, err := r.Repair(context.Background(), []gapdetect.Gap{{IDSite: 1, Period: gapdetect.PeriodDay, Date: d, Date2: d, Kind: gapdetect.Missing, Repairable: true, Segment: "actions>=1"}})
	if err != nil || len(rep.Commands) != 0 || len(rep.Days)+len(rep.Periods) != 0 {
		t.Fatalf("plain repair of a segment gap: %+v %v", rep, err)
	}
}

// Issue 14 (segment periods): repairable segment weeks, months and years
// are invalidated with --periods=<period> --segment=<definition>, one
// --dates per period (exactly those), in the same run as the segment days
// (one core:archive), count against max_repair_days with the days (newest
// first), and are checked in the done<hash> period rows: a period Matomo
// queued but did not rebuild fails.
func TestRepairSegmentPeriods(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", ds(400))
	e.Exec(`CREATE TABLE {p}segment (idsegment int(11) NOT NULL AUTO_INCREMENT, name varchar(255) NOT NULL, definition text NOT NULL,
		hash char(32) DEFAULT NULL, login varchar(100) NOT NULL, enable_all_users tinyint(4) NOT NULL DEFAULT 0, enable_only_idsite int(11) DEFAULT NULL,
		auto_archive tinyint(4) NOT NULL DEFAULT 0, ts_created timestamp NULL DEFAULT NULL, ts_last_edit timestamp NULL DEFAULT NULL,
		deleted tinyint(4) NOT NULL DEFAULT 0, PRIMARY KEY (idsegment))`)
	def := "pageUrl=@%2Fshop"
	e.Exec("INSERT INTO {p}segment (name, definition, hash, login, enable_only_idsite, auto_archive, ts_created) VALUES ('s', ?, ?, 'u', 0, 1, NOW())", def, matomo.SegmentHash(def))
	db, err := matomo.Open(e.Settings, matomo.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	today := matomo.DateOf(time.Now().UTC())
	period := func(p int, d matomo.Date) gapdetect.Gap {
		first, last := gapdetect.PeriodOf(p, d)
		return gapdetect.Gap{IDSite: 1, Period: gapdetect.PeriodName(p), Date: first, Date2: last, Kind: gapdetect.Missing, RawVisits: 9, Repairable: true, Segment: def}
	}
	w1, w2 := period(matomo.PeriodWeek, today.AddDays(-14)), period(matomo.PeriodWeek, today.AddDays(-21))
	month := period(matomo.PeriodMonth, today.AddDays(-14).Month().AddDays(-1))
	year := period(matomo.PeriodYear, today.AddDays(-400))
	dayGap := gapdetect.Gap{IDSite: 1, Period: gapdetect.PeriodDay, Date: today.AddDays(-3), Date2: today.AddDays(-3), Kind: gapdetect.Invalidated, RawVisits: 2, Repairable: true, Segment: def}
	con := &segConsole{e: e}
	r := &Repairer{DB: db, Console: con, Opt: Options{MaxDays: 4}}
	rep, err := r.RepairSegments(context.Background(), []gapdetect.Gap{w2, year, month, dayGap, w1})
	if err != nil {
		t.Fatal(err)
	}
	// Budget 4, newest first (by last day): the day, the two weeks, the
	// month; the year waits.
	var calls []string
	for _, c := range con.calls {
		calls = append(calls, strings.Join(c, " "))
	}
	want := []string{
		"core:invalidate-report-data --no-ansi -v --sites=1 --dates=" + dayGap.Date.String() + " --periods=day --segment=" + def,
		"core:invalidate-report-data --no-ansi -v --sites=1 --dates=" + w2.Date.String() + " --dates=" + w1.Date.String() + " --periods=week --segment=" + def,
		"core:invalidate-report-data --no-ansi -v --sites=1 --dates=" + month.Date.String() + " --periods=month --segment=" + def,
	}
	if strings.Join(calls, "\n") != strings.Join(want, "\n") {
		t.Errorf("invalidations:\n got %q\nwant %q", calls, want)
	}
	if rep.Deferred != 1 || rep.Counts[Repaired] != 4 || rep.Invalidations != 4 || len(rep.Segments) != 4 {
		t.Errorf("report: deferred %d, counts %v, invalidations %d, segments %+v", rep.Deferred, rep.Counts, rep.Invalidations, rep.Segments)
	}
	for _, o := range rep.Segments {
		if o.Segment != def || o.Result != Repaired || (o.Period != "day" && o.Date2 <= o.Date) {
			t.Errorf("outcome %+v", o)
		}
	}
	if n := e.Count("SELECT COUNT(*) FROM {p}"+matomo.TableFor(w1.Date)+" WHERE period = 2 AND date1 = ? AND name = ?", w1.Date.String(), "done"+matomo.SegmentHash(def)); n != 1 {
		t.Errorf("%d segment week archives written", n)
	}

	// Dry run: planned, the command names the period.
	con.calls = nil
	r.Opt.DryRun, r.Opt.MaxDays = true, 60
	rep, err = r.RepairSegments(context.Background(), []gapdetect.Gap{year})
	if err != nil || len(con.calls) != 0 || len(rep.Commands) != 2 || rep.Counts["planned"] != 1 ||
		!strings.Contains(strings.Join(rep.Commands[0], " "), "--dates="+year.Date.String()+" --periods=year --segment="+def) || rep.Segments[0].Period != "year" {
		t.Fatalf("dry run: %+v %v", rep, err)
	}
	// Refused (nothing queued): failed, and no archive run.
	r.Opt.DryRun, con.refuse = false, true
	rep, err = r.RepairSegments(context.Background(), []gapdetect.Gap{year})
	if err != nil || rep.Counts[FailedResult] != 1 || !strings.Contains(rep.Segments[0].Reason, "queued nothing for this segment year") || rep.Archive != nil {
		t.Fatalf("refused: %+v %v", rep, err)
	}
	// Queued, but core:archive writes an archive before the period's end
	// (or none): not repaired.
	con.refuse = false
	r.Console = &noArchive{con}
	rep, err = r.RepairSegments(context.Background(), []gapdetect.Gap{year})
	if err != nil || rep.Counts[FailedResult] != 1 || !strings.Contains(rep.Segments[0].Reason, "no complete done") {
		t.Fatalf("not rebuilt: %+v %v", rep, err)
	}
}

// noArchive queues like segConsole, but its core:archive writes nothing.
type noArchive struct{ *segConsole }

func (c *noArchive) ArchiveSites(context.Context, archiver.RunOptions, string, []int, []string) archiver.Result {
	return archiver.Result{Outcome: archiver.OutcomeSuccess}
}
