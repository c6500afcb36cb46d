package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/realmatomo"
)

// Regression (issue 11): global.ini.php's empty [database] keys shadowed
// config.ini.php's, so `check` failed on every real install with no database
// settings in matomod.yml, and maintenance_mode = 1 read as off.
func TestRealCheckReadsMatomoConfig(t *testing.T) {
	t.Parallel()
	in := realmatomo.New(t)
	cfg := config(t, in, "")
	code, out, errOut := cli(t, cfg, "check")
	if code != 0 || !strings.Contains(out, "database "+in.DBName+" reachable") || !strings.Contains(out, "maintenance mode is off") {
		t.Fatalf("check: exit %d\n%s\n%s", code, out, errOut)
	}
	if _, err := in.Console(context.Background(), "config:set", "--section=General", "--key=maintenance_mode", "--value=1"); err != nil {
		t.Fatal(err)
	}
	_, out, _ = cli(t, cfg, "check")
	if !strings.Contains(out, "maintenance mode is on") {
		t.Errorf("maintenance_mode = 1 in config.ini.php not seen:\n%s", out)
	}
	// A repair refuses while Matomo says it is in maintenance.
	if code, _, errOut := cli(t, cfg, "repair"); code != 2 || !strings.Contains(errOut, "maintenance") {
		t.Errorf("repair in maintenance mode: exit %d: %s", code, errOut)
	}
}

// After the template's clean archive there is no gap; then every kind is
// planted on the real Matomo, `gaps` reports exactly those, `repair` (real
// console) leaves only the unrepairable day, and Matomo's own API shows the
// tracked numbers for every repaired day, every other day unchanged, and
// each repaired month equal to the sum of its days.
func TestRealGapsAndRepair(t *testing.T) {
	t.Parallel()
	in := realmatomo.New(t)
	cfg := config(t, in, "")
	ctx := context.Background()
	m := in.Manifest

	if res := gaps(t, cfg); len(res.Gaps) != 0 || res.SitesScanned != len(m.Sites) {
		t.Fatalf("clean archive: %d sites scanned, gaps %v", res.SitesScanned, gapStrings(res.Gaps))
	}
	before := map[int]map[string]int{}
	for _, s := range m.Sites {
		before[s.ID] = visitsByDay(t, in, s.ID)
	}

	old := time.Now().Add(-3 * time.Hour)
	var want []string
	planted := map[string]bool{} // "idsite date" of days to be repaired
	plant := func(idsite int, date, kind string, repairable bool) {
		if planted[fmt.Sprintf("%d %s", idsite, date)] {
			t.Fatalf("site %d %s planted twice", idsite, date)
		}
		if m.Visits[fmt.Sprintf("%d %s", idsite, date)] == 0 {
			t.Fatalf("site %d %s has no tracked visits", idsite, date)
		}
		r := "repairable"
		if !repairable {
			r = "unrepairable"
		} else {
			planted[fmt.Sprintf("%d %s", idsite, date)] = true
		}
		want = append(want, fmt.Sprintf("%d %s %s %s", idsite, date, kind, r))
	}
	nyDST, firstDay := lastDST("America/New_York"), m.FirstDay

	// missing: New York's DST day, a Kolkata day.
	deleteArchives(t, in, 2, nyDST, nyDST, 1)
	plant(2, nyDST, "missing", true)
	deleteArchives(t, in, 3, day(8), day(8), 1)
	plant(3, day(8), "missing", true)
	// missing, a whole month: every archive of site 4 starting in the
	// month of day(6) (days, weeks, the month).
	month := day(6)[:7]
	deleteArchives(t, in, 4, month+"-01", month+"-31", 1, 2, 3)
	for k := range m.Visits {
		var id int
		var d string
		fmt.Sscanf(k, "%d %s", &id, &d)
		if id == 4 && strings.HasPrefix(d, month) && d <= day(1) {
			plant(4, d, "missing", true)
		}
	}
	// missing but unrepairable: the first day of site 5's raw data (its
	// week and month archives stay, so Matomo rebuilds nothing there).
	deleteArchives(t, in, 5, firstDay, firstDay, 1)
	plant(5, firstDay, "missing", false)
	// invalidated with a queue row: Matomo's own invalidation, hours ago.
	if out, err := in.Console(ctx, "core:invalidate-report-data", "--sites=1", "--dates="+day(9), "--periods=day"); err != nil {
		t.Fatal(err, out)
	}
	in.Exec("UPDATE {p}archive_invalidations SET ts_invalidated = ? WHERE idsite = 1", old.UTC().Format(time.DateTime))
	plant(1, day(9), "invalidated", true)
	// invalidated without a queue row: done = 4 in place.
	setDayDone(t, in, 2, day(9), 4, old)
	plant(2, day(9), "invalidated", true)
	// failed: done = 2 (archiving started, never finished), hours ago.
	setDayDone(t, in, 3, day(10), 2, old)
	plant(3, day(10), "failed", true)
	// incomplete: the newest OK archive was written before the day ended
	// (backdated by SQL: a real one needs a run during that day).
	num, _ := archiveTables(day(6))
	in.Exec(fmt.Sprintf("UPDATE %s SET ts_archived = ? WHERE idsite = 1 AND date1 = ? AND period = 1", num), day(6)+" 12:00:00", day(6))
	plant(1, day(6), "incomplete", true)
	// stale: two more visits tracked into an archived day (the tracker
	// leaves report_to_invalidate_*; core:archive does not rebuild it).
	kolkata := realmatomo.Location("Asia/Kolkata")
	d3, _ := time.ParseInLocation(time.DateOnly, day(3), kolkata)
	if err := in.Server().Track(ctx, m.Token, []realmatomo.Visit{{IDSite: 3, At: d3.Add(11 * time.Hour)}, {IDSite: 3, At: d3.Add(13 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	plant(3, day(3), "stale", true)

	slices.Sort(want)
	res := gaps(t, cfg)
	// The periods of these days have gaps of their own (the whole month
	// deleted, the weeks Matomo's invalidation took along): those are
	// TestRealPeriodGapsAndRepair's; here the days are compared, and after
	// the repair every period is.
	if got := gapStrings(dayGaps(res.Gaps)); !slices.Equal(got, want) {
		t.Fatalf("gaps after planting:\n got %q\nwant %q", got, want)
	}
	for _, g := range res.Gaps {
		if g.IDSite == 5 && !strings.Contains(g.Reason, "first day") {
			t.Errorf("unrepairable day's reason: %q", g.Reason)
		}
	}

	// Exit 1: the unrepairable day stays open, and says so.
	code, out, errOut := cli(t, cfg, "repair")
	if code != 1 || !strings.Contains(out, fmt.Sprintf("repaired: %d day(s)", len(planted))) || !strings.Contains(out, "skipped_unsafe: 1 day(s)") {
		t.Fatalf("repair: exit %d\n%s\n%s", code, out, errOut)
	}
	res = gaps(t, cfg)
	if got := gapStrings(res.Gaps); !slices.Equal(got, []string{"5 " + firstDay + " missing unrepairable"}) {
		t.Fatalf("after repair, gaps %q; want only the unrepairable day", got)
	}

	// Matomo's API: repaired days show what was tracked (the stale day its
	// new count), every other day is unchanged.
	for _, s := range m.Sites {
		after := visitsByDay(t, in, s.ID)
		for d, n := range before[s.ID] {
			want := n
			key := fmt.Sprintf("%d %s", s.ID, d)
			if planted[key] {
				want = m.Visits[key]
				if s.ID == 3 && d == day(3) {
					want += 2
				}
			} else if s.ID == 5 && d == firstDay {
				want = 0 // never repaired: Matomo has no archive for it
			}
			if after[d] != want {
				t.Errorf("site %d %s: VisitsSummary %d, want %d (before: %d)", s.ID, d, after[d], want, n)
			}
		}
		// A repaired day's month equals the sum of its days.
		months := map[string]bool{}
		for key := range planted {
			var id int
			var d string
			fmt.Sscanf(key, "%d %s", &id, &d)
			if id == s.ID {
				months[d[:7]] = true
			}
		}
		for mo := range months {
			sum := 0
			for d, n := range after {
				if strings.HasPrefix(d, mo) {
					sum += n
				}
			}
			if got := visitsOf(t, in, s.ID, "month", mo+"-01"); got != sum {
				t.Errorf("site %d month %s: VisitsSummary %d, sum of its days %d", s.ID, mo, got, sum)
			}
		}
	}
	// The unrepairable day was never invalidated.
	var n int
	in.DB.QueryRow(strings.ReplaceAll("SELECT COUNT(*) FROM {p}archive_invalidations WHERE idsite = 5", "{p}", in.Prefix)).Scan(&n)
	if n != 0 {
		t.Errorf("site 5 has %d queued invalidations: the unrepairable day was touched", n)
	}
}

// lastDST is the latest day before today whose local length is not 24 h.
func lastDST(tz string) string {
	loc := realmatomo.Location(tz)
	now := time.Now().UTC()
	for i := 1; i < 370; i++ {
		d := now.AddDate(0, 0, -i)
		s := time.Date(d.Year(), d.Month(), d.Day(), 0, 0, 0, 0, loc)
		e := time.Date(d.Year(), d.Month(), d.Day()+1, 0, 0, 0, 0, loc)
		if e.Sub(s) != 24*time.Hour {
			return d.Format(time.DateOnly)
		}
	}
	return ""
}
