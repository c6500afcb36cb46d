package main

// The replay test rebuilds the lab of ../shared/fixtures (4 sites, the same
// raw visits per site-local day) and replays the captured console scenarios
// in their original order against the simulator, with MATOMOSIM_NOW set to
// each scenario's start time and the experimenter's manual steps (deleting a
// day's archives, maintenance mode, stopping the DB, log-deletion options,
// late SQL visits, a 5 s today TTL) done in between.
//
// Compared, per scenario: the exit code; stdout and stderr line by line
// after normalising what we do not simulate — the clock in "[HH:MM:SS]", the
// pid, every "Time elapsed", the ms in "done: N req, T ms" and the seconds
// in "last executed without error Ns ago" — and the Matomo path
// (/var/www/matomo there, the test's directory here). The order of
// "Archived website id …" lines is compared too: the simulator reproduces
// Matomo's batches of three. Not compared: `list` beyond its header line and
// the `--help` texts (not simulated), and for the concurrent m1 runs only
// the union of archived lines (which process takes which site is timing).
//
// Table effects compared with the captured tables/*.tsv: archive done flags
// and nb_visits (per site, period, dates and done-flag name; idarchive and
// ts_archived are not compared), archive_invalidations rows (site, period,
// dates, name, status, whether idarchive is NULL), the drained queue, the
// consumed report_to_invalidate options, and tz_window_check.tsv's newest
// archived nb_visits per site-local day (including the stale site 4 day).

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

type tsv struct {
	header []string
	rows   [][]string
}

func readTSV(t *testing.T, path string) tsv {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var out tsv
	for _, l := range strings.Split(strings.TrimRight(string(b), "\n"), "\n") {
		if strings.HasPrefix(l, "#") || l == "" {
			continue
		}
		if out.header == nil {
			out.header = strings.Split(l, "\t")
			continue
		}
		out.rows = append(out.rows, strings.Split(l, "\t"))
	}
	return out
}

func (x tsv) col(name string) int {
	for i, h := range x.header {
		if h == name {
			return i
		}
	}
	panic("no column " + name)
}

// labSite mirrors tables/site_rows.tsv.
var labSites = []struct {
	id int
	tz string
}{{1, "UTC"}, {2, "America/New_York"}, {3, "Asia/Kolkata"}, {4, "UTC+5.5"}}

// lateVisits are the rows README.md says were inserted by SQL just before
// the exp_gap runs (site 4; times from exp_gap_before.tsv's note).
var lateVisits = []string{"2026-10-29 10:00:00", "2026-11-05 10:00:00", "2026-11-05 11:00:00", "2026-11-20 10:00:00", "2026-11-20 10:30:00"}

// seedLab creates the sites, the visits present before the first run and the
// tracker's remembered dates. Visit times are solved from two captured
// tables: the count per site-local day (tz_window_check.tsv) and per UTC day
// (log_visit_counts_utc_day.tsv); each stretch where one local day and one
// UTC day overlap gets the count both tables force on it.
func seedLab(t *testing.T, e *matomotest.Env, fx string) {
	t.Helper()
	for _, s := range labSites {
		e.AddSite(s.id, s.tz, "2026-10-28")
	}
	e.SetOption("version_core", "5.0.2")
	late := map[int]map[string]int{4: {}}
	lateUTC := map[string]int{}
	for _, v := range lateVisits {
		ts, _ := time.Parse(sqlTime, v)
		loc, _ := matomo.LoadLocation("UTC+5.5")
		late[4][matomo.DateOf(ts.In(loc)).String()]++
		lateUTC[ts.Format("2006-01-02")]++
	}
	local := map[int]map[matomo.Date]int{}
	utc := map[int]map[matomo.Date]int{}
	w := readTSV(t, filepath.Join(fx, "tables", "tz_window_check.tsv"))
	for _, r := range w.rows {
		id, _ := strconv.Atoi(r[w.col("idsite")])
		n, _ := strconv.Atoi(r[w.col("raw_visits")])
		d, _ := matomo.ParseDate(r[w.col("local_date")])
		if local[id] == nil {
			local[id] = map[matomo.Date]int{}
		}
		local[id][d] += n - late[id][d.String()]
	}
	c := readTSV(t, filepath.Join(fx, "tables", "log_visit_counts_utc_day.tsv"))
	for _, r := range c.rows {
		id, _ := strconv.Atoi(r[c.col("idsite")])
		n, _ := strconv.Atoi(r[c.col("visits")])
		d, _ := matomo.ParseDate(r[c.col("utc_day")])
		if utc[id] == nil {
			utc[id] = map[matomo.Date]int{}
		}
		if id == 4 {
			n -= lateUTC[d.String()]
		}
		utc[id][d] += n
	}
	capture := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC) // all visits precede the first run
	for _, s := range labSites {
		loc, _ := matomo.LoadLocation(s.tz)
		from := time.Date(2026, 10, 20, 0, 0, 0, 0, time.UTC)
		to := time.Date(2026, 12, 2, 0, 0, 0, 0, time.UTC)
		var cuts []time.Time
		for d := matomo.DateOf(from); d.Time().Before(to); d++ {
			a, _ := matomo.DayBounds(loc, d)
			cuts = append(cuts, d.Time(), a)
		}
		sort.Slice(cuts, func(i, j int) bool { return cuts[i].Before(cuts[j]) })
		cuts = slices.CompactFunc(cuts, func(a, b time.Time) bool { return a.Equal(b) })
		remL, remU := local[s.id], utc[s.id]
		for i := 0; i+1 < len(cuts); i++ {
			a, b := cuts[i], cuts[i+1]
			ld, ud := matomo.DateOf(a.In(loc)), matomo.DateOf(a)
			lEnds := matomo.DateOf(b.In(loc)) != ld
			uEnds := matomo.DateOf(b) != ud
			var x int
			switch {
			case lEnds && uEnds:
				x = remL[ld]
				if remU[ud] != x {
					t.Fatalf("site %d: local %s and UTC %s disagree", s.id, ld, ud)
				}
			case lEnds:
				x = remL[ld]
			case uEnds:
				x = remU[ud]
			}
			if x > remL[ld] || x > remU[ud] {
				t.Fatalf("site %d: cannot place %d visits in %s..%s", s.id, x, a, b)
			}
			remL[ld] -= x
			remU[ud] -= x
			end := b
			if end.After(capture) {
				end = capture
			}
			for k := 0; k < x; k++ {
				at := a.Add(end.Sub(a) * time.Duration(k+1) / time.Duration(x+1)).Truncate(time.Second)
				e.AddVisits(s.id, at, 1)
			}
		}
	}
	o := readTSV(t, filepath.Join(fx, "tables", "option_report_to_invalidate_after_tracking.tsv"))
	for _, r := range o.rows {
		e.SetOption(r[0], r[1])
	}
}

type replay struct {
	t   *testing.T
	e   *matomotest.Env
	fx  string
	sim string
}

type scenario struct {
	name, started string
	args          []string
}

func (r *replay) scenario(name string) scenario {
	r.t.Helper()
	b, err := os.ReadFile(filepath.Join(r.fx, "console", name+".txt"))
	if err != nil {
		r.t.Fatal(err)
	}
	s := scenario{name: name}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "# argv: php console"); ok {
			s.args = strings.Fields(v)
		}
		if v, ok := strings.CutPrefix(l, "# started_utc: "); ok {
			s.started = strings.TrimSpace(v)
		}
	}
	return s
}

func (r *replay) command(s scenario, env ...string) *exec.Cmd {
	cmd := exec.Command(r.sim, append([]string{filepath.Join(r.e.Dir, "console")}, s.args...)...)
	cmd.Dir = r.e.Dir
	cmd.Env = append(append(os.Environ(), "MATOMOSIM_NOW="+s.started), env...)
	return cmd
}

func (r *replay) exec(s scenario, env ...string) (string, string, int) {
	r.t.Helper()
	cmd := r.command(s, env...)
	var out, errb strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		r.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

var (
	reClock   = regexp.MustCompile(`\[\d\d:\d\d:\d\d\] \d+ `)
	reElapsed = regexp.MustCompile(`Time elapsed: [0-9.]+s`)
	reDoneMs  = regexp.MustCompile(`done: (\d+) req, \d+ ms`)
	reAgo     = regexp.MustCompile(`without error .* ago\.`)
)

func (r *replay) norm(s string, ours bool) []string {
	if ours {
		s = strings.ReplaceAll(s, r.e.Dir, "/var/www/matomo")
	}
	s = reClock.ReplaceAllString(s, "[T] PID ")
	s = reElapsed.ReplaceAllString(s, "Time elapsed: Xs")
	s = reDoneMs.ReplaceAllString(s, "done: $1 req, X ms")
	s = reAgo.ReplaceAllString(s, "without error X ago.")
	return strings.Split(s, "\n")
}

func (r *replay) fixture(name, ext string) string {
	b, err := os.ReadFile(filepath.Join(r.fx, "console", name+"."+ext))
	if err != nil {
		r.t.Fatal(err)
	}
	return string(b)
}

// same runs a scenario and compares exit code, stdout and stderr.
func (r *replay) same(name string, env ...string) {
	r.t.Helper()
	out, errOut, code := r.exec(r.scenario(name), env...)
	r.compare(name, out, errOut, code)
}

func (r *replay) compare(name, out, errOut string, code int) {
	r.t.Helper()
	want, _ := strconv.Atoi(strings.TrimSpace(r.fixture(name, "exit")))
	if code != want {
		r.t.Errorf("%s: exit %d, real Matomo %d\nstdout:\n%s\nstderr:\n%s", name, code, want, out, errOut)
	}
	r.lines(name+" stdout", r.norm(out, true), r.norm(r.fixture(name, "stdout"), false))
	r.lines(name+" stderr", r.norm(errOut, true), r.norm(r.fixture(name, "stderr"), false))
}

func (r *replay) lines(what string, got, want []string) {
	r.t.Helper()
	if slices.Equal(got, want) {
		return
	}
	for i := 0; i < max(len(got), len(want)); i++ {
		g, w := "<none>", "<none>"
		if i < len(got) {
			g = got[i]
		}
		if i < len(want) {
			w = want[i]
		}
		if g != w {
			r.t.Errorf("%s differs at line %d:\n got: %q\nwant: %q", what, i+1, g, w)
			return
		}
	}
}

// archives renders the done%/nb_visits rows of all numeric tables, one
// string per archive, for the sites/periods keep selects.
func (r *replay) archives(keep func(site, period int, date1 string) bool) []string {
	r.t.Helper()
	rows, err := r.e.DB.Query("SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE 'matomo\\_archive\\_numeric\\_%'")
	if err != nil {
		r.t.Fatal(err)
	}
	var tables []string
	for rows.Next() {
		var n string
		rows.Scan(&n)
		tables = append(tables, n)
	}
	rows.Close()
	var raw [][]string
	for _, tb := range tables {
		q, err := r.e.DB.Query("SELECT ?, idarchive, name, idsite, date1, date2, period, value FROM `"+tb+"` WHERE name LIKE 'done%' OR name = 'nb_visits'", tb)
		if err != nil {
			r.t.Fatal(err)
		}
		for q.Next() {
			var tbl, name string
			var id, site, period int
			var d1, d2 time.Time
			var v float64
			if err := q.Scan(&tbl, &id, &name, &site, &d1, &d2, &period, &v); err != nil {
				r.t.Fatal(err)
			}
			raw = append(raw, []string{tbl, strconv.Itoa(id), name, strconv.Itoa(site), d1.Format("2006-01-02"), d2.Format("2006-01-02"), strconv.Itoa(period), strconv.FormatFloat(v, 'f', -1, 64)})
		}
		q.Close()
	}
	return archiveSet(raw, 0, 1, 2, 3, 4, 5, 6, 7, keep)
}

func (r *replay) archivesTSV(file string, keep func(site, period int, date1 string) bool) []string {
	x := readTSV(r.t, filepath.Join(r.fx, "tables", file))
	return archiveSet(x.rows, x.col("tbl"), x.col("idarchive"), x.col("name"), x.col("idsite"), x.col("date1"), x.col("date2"), x.col("period"), x.col("value"), keep)
}

func archiveSet(rows [][]string, tbl, id, name, site, d1, d2, period, value int, keep func(int, int, string) bool) []string {
	type arch struct{ key, done, nb string }
	byID := map[string]*arch{}
	for _, r := range rows {
		k := r[tbl] + "/" + r[id]
		a := byID[k]
		if a == nil {
			a = &arch{nb: "-"}
			byID[k] = a
		}
		s, _ := strconv.Atoi(r[site])
		p, _ := strconv.Atoi(r[period])
		if !keep(s, p, r[d1]) {
			delete(byID, k)
			continue
		}
		if r[name] == "nb_visits" {
			a.nb = r[value]
		} else {
			a.key = fmt.Sprintf("site %s %s %s..%s %s", r[site], periodLabels[p], r[d1], r[d2], r[name])
			a.done = r[value]
		}
	}
	var out []string
	for _, a := range byID {
		out = append(out, a.key+" done="+a.done+" nb_visits="+a.nb)
	}
	sort.Strings(out)
	return out
}

func (r *replay) sameArchives(file string, keep func(site, period int, date1 string) bool) {
	r.t.Helper()
	got, want := r.archives(keep), r.archivesTSV(file, keep)
	if !slices.Equal(got, want) {
		r.t.Errorf("archives differ from %s:\n%s", file, setDiff(got, want))
	}
}

func (r *replay) queue() []string {
	rows, err := r.e.DB.Query("SELECT idarchive IS NULL, name, idsite, date1, date2, period, status FROM matomo_archive_invalidations")
	if err != nil {
		r.t.Fatal(err)
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var null bool
		var name string
		var site, period, status int
		var d1, d2 time.Time
		rows.Scan(&null, &name, &site, &d1, &d2, &period, &status)
		out = append(out, queueLine(site, period, d1.Format("2006-01-02"), d2.Format("2006-01-02"), name, status, null))
	}
	sort.Strings(out)
	return out
}

func queueLine(site, period int, d1, d2, name string, status int, null bool) string {
	return fmt.Sprintf("site %d %s %s..%s %s status=%d idarchive_null=%v", site, periodLabels[period], d1, d2, name, status, null)
}

func (r *replay) sameQueue(file string) {
	r.t.Helper()
	x := readTSV(r.t, filepath.Join(r.fx, "tables", file))
	var want []string
	for _, row := range x.rows {
		site, _ := strconv.Atoi(row[x.col("idsite")])
		period, _ := strconv.Atoi(row[x.col("period")])
		status, _ := strconv.Atoi(row[x.col("status")])
		want = append(want, queueLine(site, period, row[x.col("date1")], row[x.col("date2")], row[x.col("name")], status, row[x.col("idarchive")] == "NULL"))
	}
	sort.Strings(want)
	if got := r.queue(); !slices.Equal(got, want) {
		r.t.Errorf("archive_invalidations differ from %s:\n%s", file, setDiff(got, want))
	}
}

func setDiff(got, want []string) string {
	var b strings.Builder
	for _, g := range got {
		if !slices.Contains(want, g) {
			b.WriteString("  extra:   " + g + "\n")
		}
	}
	for _, w := range want {
		if !slices.Contains(got, w) {
			b.WriteString("  missing: " + w + "\n")
		}
	}
	return b.String()
}

func all(int, int, string) bool { return true }

func between(d, from, to string) bool { return d >= from && d <= to }

func TestReplayFixtures(t *testing.T) {
	fx := matomotest.Fixtures(t)
	r := &replay{t: t, e: matomotest.New(t), fx: fx, sim: matomotest.Simulator(t)}
	e := r.e
	seedLab(t, e, fx)

	// (l) version and list.
	r.same("version_V")
	r.same("version_V_noansi")
	r.same("core_version")
	out, _, code := r.exec(r.scenario("list_noansi"))
	if first := strings.SplitN(out, "\n", 2)[0]; code != 0 || first != "Matomo 5.0.2" {
		t.Errorf("list: exit %d, first line %q", code, first)
	}

	// (a) first run: 56 archives printed, 16 more built silently.
	r.same("a_archive_first_run")
	r.sameArchives("a_archive_numeric_after_first_run.tsv", all)
	r.sameQueue("a_archive_invalidations_after_first_run.tsv")
	if n := e.Count("SELECT COUNT(*) FROM {p}option WHERE option_name LIKE '%report\\_to\\_invalidate\\_%'"); n != 0 {
		t.Errorf("%d report_to_invalidate options left after the first run", n)
	}
	for _, o := range []string{"LastCompletedFullArchiving", "LastFullArchivingStartTime", "CronArchive.lastInvalidationTime"} {
		if e.Count("SELECT COUNT(*) FROM {p}option WHERE option_name = ?", o) != 1 {
			t.Errorf("option %s not set", o)
		}
	}

	// (b) nothing to do; --ansi colours.
	r.same("b_archive_second_run")
	r.same("b_archive_third_run_ansi")

	// A deleted day and a done=4 day without a queue row are not rebuilt.
	for _, tb := range []string{"numeric", "blob"} {
		e.Exec("DELETE FROM {p}archive_" + tb + "_2026_11 WHERE idsite = 1 AND period = 1 AND date1 = '2026-11-20'")
	}
	e.Exec("UPDATE {p}archive_numeric_2026_11 SET value = 4 WHERE idsite = 1 AND period = 1 AND date1 = '2026-11-19' AND name = 'done'")
	site1Days := func(s, p int, d string) bool { return s == 1 && p == 1 && between(d, "2026-11-18", "2026-11-21") }
	r.sameArchives("exp_delete_and_done4_before.tsv", site1Days)
	r.same("exp_delete_and_done4_run")
	r.sameArchives("exp_delete_and_done4_after.tsv", site1Days)

	// (h, g) dry run, invalidation, re-archiving.
	r.same("h_invalidate_dry_run")
	r.sameQueue("a_archive_invalidations_after_first_run.tsv")
	site3 := func(s, p int, d string) bool {
		return s == 3 && (p == 1 && between(d, "2026-11-13", "2026-11-16") || p > 1)
	}
	r.sameArchives("g_archive_numeric_before_invalidation.tsv", site3)
	r.same("g1_invalidate_site3_days")
	r.sameQueue("g_archive_invalidations_queued.tsv")
	r.sameArchives("g_archive_numeric_after_invalidation.tsv", site3)
	r.same("g2_archive_after_invalidation")
	r.sameQueue("g_archive_invalidations_after_rearchive.tsv")
	r.sameArchives("g_archive_numeric_after_rearchive.tsv", site3)

	// (e, f) site selection and command line errors.
	for _, n := range []string{"e1_archive_force_idsites_1", "e2_archive_force_idsites_abc", "e3_archive_force_idsites_99",
		"f_archive_unknown_option", "f2_unknown_command", "f3_unknown_command"} {
		r.same(n)
	}

	// (i) invalidation edge cases, then the run that works their queue.
	for _, n := range []string{"i1_invalidate_bad_site", "i2_invalidate_site_abc", "i3_invalidate_bad_date", "i4_invalidate_missing_dates",
		"i5_invalidate_before_site_creation", "i6_invalidate_future_date", "i7_invalidate_bad_period", "i8_invalidate_range_reversed"} {
		r.same(n)
	}
	r.sameQueue("i_archive_invalidations_after_i_scenarios.tsv")
	site1 := func(s, p int, d string) bool {
		return s == 1 && (p == 1 && (between(d, "2026-11-09", "2026-11-21") || d >= "2026-12-01") || p > 1)
	}
	r.sameArchives("i_archive_numeric_site1_before_i9.tsv", site1)
	r.same("i9_archive_after_i_scenarios")
	r.sameArchives("i_archive_numeric_site1_after_i9.tsv", site1)
	r.sameQueue("i_archive_invalidations_after_i9.tsv")

	// (c) maintenance mode: core:archive stops, invalidation still queues.
	e.SetINI("[General]", "maintenance_mode = 1")
	r.same("c_archive_maintenance_mode")
	r.same("c2_invalidate_maintenance_mode")
	r.same("c3_version_maintenance_mode")
	r.sameQueue("exp_deleted_day_invalidated_queue.tsv")
	e.SetINI()

	// (d) database down: point config.ini.php at a closed port.
	if cfg, err := os.ReadFile(matomo.ConfigINIPath(e.Dir)); err == nil && strings.Contains(string(cfg), "\nport = ") {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		port := l.Addr().(*net.TCPAddr).Port
		l.Close()
		down := regexp.MustCompile(`\nport = \d+`).ReplaceAllString(string(cfg), fmt.Sprintf("\nport = %d", port))
		if err := os.WriteFile(matomo.ConfigINIPath(e.Dir), []byte(down), 0o640); err != nil {
			t.Fatal(err)
		}
		r.same("d_archive_db_stopped")
		r.same("d2_invalidate_db_stopped")
		r.same("d3_version_db_stopped")
		e.SetINI()
	} else {
		t.Log("test DB reached through a socket: DB-down scenarios skipped")
	}

	r.same("exp_deleted_day_invalidated_archive")
	r.sameArchives("exp_deleted_day_invalidated_after.tsv", func(s, p int, d string) bool {
		return s == 1 && (p == 1 && between(d, "2026-11-18", "2026-11-21") || p > 1)
	})

	// (j) log deletion limit of 10 days, set as option rows.
	e.SetOption("delete_logs_enable", "1").SetOption("delete_logs_older_than", "10")
	r.same("j1_invalidate_older_than_log_deletion")
	r.same("j2_invalidate_range_across_log_deletion")
	r.same("j3_invalidate_ignore_log_deletion_limit")
	r.sameQueue("j_archive_invalidations_after_j.tsv")
	r.same("j1v_invalidate_older_than_log_deletion_verbose")
	r.same("j2v_invalidate_range_across_log_deletion_verbose")
	r.same("j3v_invalidate_ignore_log_deletion_limit_verbose")
	e.Exec("DELETE FROM {p}option WHERE option_name LIKE 'delete\\_logs\\_%'")
	r.same("j4_archive_after_j")

	// (m) two archivers sharing the site queue.
	r.same("m0_invalidate_all_sites_range")
	r.concurrent("m1_concurrent_first", "m1_concurrent_second", false)
	m0 := r.scenario("m0_invalidate_all_sites_range")
	m0.started = r.scenario("m2_concurrent_first").started
	if _, _, code := r.exec(m0); code != 0 {
		t.Fatal("re-creating the m0 queue failed")
	}
	r.concurrent("m2_concurrent_first", "m2_concurrent_second_limit1", true)

	// (g3-g5) -v, --periods=all --cascade and the run after it.
	r.same("g3_invalidate_verbose")
	r.same("g4_invalidate_all_periods_cascade")
	r.sameQueue("g4_archive_invalidations_queued.tsv")
	r.same("g5_archive_after_cascade")

	// Gap experiment: late SQL visits on old days are not picked up while
	// today's archive is fresh; with a 5 s today TTL the month and year are
	// rebuilt, missing days silently, the stale week reused.
	for _, v := range lateVisits {
		ts, _ := time.Parse(sqlTime, v)
		e.AddVisits(4, ts, 1)
	}
	gap := func(s, p int, d string) bool {
		return s == 4 && (p == 1 && slices.Contains([]string{"2026-10-29", "2026-11-05", "2026-11-20", "2026-11-27"}, d) || p > 1)
	}
	r.sameArchives("exp_gap_before.tsv", gap)
	r.same("exp_gap_run1")
	e.SetINI("[General]", "time_before_today_archive_considered_outdated = 5")
	r.same("exp_gap_run2_today_outdated")
	e.SetINI()
	r.sameArchives("exp_gap_after.tsv", gap)

	r.same("b4_archive_no_ansi_flag")
	out, _, _ = r.exec(r.scenario("list_default"))
	if first := strings.SplitN(out, "\n", 2)[0]; first != "Matomo 5.0.2" {
		t.Errorf("list: first line %q", first)
	}

	// End of session.
	r.sameArchives("final_archive_numeric_all.tsv", all)
	r.sameQueue("final_archive_invalidations.tsv")
	w := readTSV(t, filepath.Join(fx, "tables", "tz_window_check.tsv"))
	for _, row := range w.rows {
		site, _ := strconv.Atoi(row[w.col("idsite")])
		d, _ := matomo.ParseDate(row[w.col("local_date")])
		raw, _ := strconv.Atoi(row[w.col("raw_visits")])
		var got int
		e.DB.QueryRow("SELECT COUNT(*) FROM matomo_log_visit WHERE idsite = ? AND visit_last_action_time BETWEEN ? AND ?",
			site, row[w.col("utc_from")], row[w.col("utc_to")]).Scan(&got)
		if got != raw {
			t.Errorf("site %d %s: %d raw visits in the UTC window, want %d", site, d, got, raw)
		}
		st := &store{db: e.DB, prefix: e.Prefix}
		archs, err := st.newestAll(context.Background(), site, periodOf(matomo.PeriodDay, d))
		a, ok := archs["done"]
		if err != nil || !ok || strconv.FormatInt(a.nb, 10) != row[w.col("archive_nb_visits")] {
			t.Errorf("site %d %s: archived nb_visits %d (found %v, %v), want %s", site, d, a.nb, ok, err, row[w.col("archive_nb_visits")])
		}
	}
}

// concurrent starts the first run slowed down, starts the second once the
// first is working on its first site, and compares. With limitOne the
// second must refuse to run and the first archives everything alone.
func (r *replay) concurrent(first, second string, limitOne bool) {
	t := r.t
	t.Helper()
	c1 := r.command(r.scenario(first), "MATOMOSIM_SLEEP_PER_ARCHIVE=30ms")
	pipe, err := c1.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := c1.Start(); err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{})
	var out1 strings.Builder
	scanned := make(chan struct{})
	go func() {
		defer close(scanned)
		sc := bufio.NewScanner(pipe)
		once := false
		for sc.Scan() {
			out1.WriteString(sc.Text() + "\n")
			if !once && strings.Contains(sc.Text(), "Start processing archives for site") {
				once = true
				close(started)
			}
		}
		if !once {
			close(started)
		}
	}()
	<-started
	out2, err2, code2 := r.exec(r.scenario(second))
	<-scanned
	code1 := 0
	if err := c1.Wait(); err != nil {
		code1 = -1
	}
	if limitOne {
		r.compare(second, out2, err2, code2)
		r.compare(first, out1.String(), "", code1)
		return
	}
	if code1 != 0 || code2 != 0 {
		t.Errorf("%s/%s: exit %d and %d", first, second, code1, code2)
	}
	archived := func(s string) []string {
		var out []string
		for _, l := range r.norm(s, true) {
			if i := strings.Index(l, "Archived website id"); i >= 0 {
				out = append(out, l[i:])
			}
		}
		sort.Strings(out)
		return out
	}
	got := archived(out1.String() + out2)
	want := archived(r.fixture(first, "stdout") + r.fixture(second, "stdout"))
	if !slices.Equal(got, want) {
		t.Errorf("%s + %s archived lines differ:\n%s", first, second, setDiff(got, want))
	}
	for _, l := range []string{"- Continuing ongoing archiving run by pulling from shared idSite queue.", "2 out of 3 archivers running currently"} {
		if !strings.Contains(out2, l) {
			t.Errorf("%s: no %q in\n%s", second, l, out2)
		}
	}
}
