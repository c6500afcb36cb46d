package gapdetect

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

// Differential test (issue 13): random changes of the kinds Matomo, an
// operator or a restore make to a Matomo-shaped database; after each one
// the long-lived detector's incremental view must equal a fresh
// detector's full scan.
func TestIncrementalEqualsFullScan(t *testing.T) {
	seed := uint64(time.Now().UnixNano())
	steps := 60
	if testing.Short() {
		steps = 20
	}
	t.Logf("seed %d (set MATOMOD_DIFF_SEED to replay)", seed)
	if s := envSeed(t); s != 0 {
		seed = s
	}
	rng := rand.New(rand.NewPCG(seed, 1))
	e := matomotest.New(t)
	zones := []string{"UTC", "America/New_York", "Asia/Kolkata"}
	for id, tz := range zones {
		e.AddSite(id+1, tz, "2026-10-01")
	}
	first, last := day("2026-10-20"), day("2026-11-26")
	randDay := func() matomo.Date { return first + matomo.Date(rng.IntN(int(last-first)+1)) }
	dropped := false
	// existingDay is a day whose monthly table exists.
	existingDay := func() matomo.Date {
		if d := randDay(); !dropped || d >= day("2026-11-01") {
			return d
		}
		return day("2026-11-01") + matomo.Date(rng.IntN(26))
	}
	randSite := func() int { return 1 + rng.IntN(len(zones)) }
	loc := func(id int) *time.Location { l, _ := matomo.LoadLocation(zones[id-1]); return l }
	// A middle of the local day, in UTC.
	noon := func(id int, d matomo.Date) time.Time {
		s, _ := matomo.DayBounds(loc(id), d)
		return s.Add(12 * time.Hour)
	}
	raw := func(id int, d matomo.Date) int64 {
		s, end := matomo.DayBounds(loc(id), d)
		return int64(e.Count("SELECT COUNT(*) FROM {p}log_visit WHERE idsite = ? AND visit_last_action_time >= ? AND visit_last_action_time < ?", id, s, end))
	}
	archive := func(id int, d matomo.Date, done int) {
		_, end := matomo.DayBounds(loc(id), d)
		at := end.Add(time.Hour)
		if rng.IntN(5) == 0 {
			at = end.Add(-time.Hour) // written during the day: incomplete
		}
		e.AddDayArchive(id, d.String(), done, at, raw(id, d))
	}
	for id := 1; id <= len(zones); id++ {
		for d := first; d <= last; d++ {
			if rng.IntN(10) == 0 {
				continue // a zero-visit day
			}
			e.AddVisits(id, noon(id, d), 1+rng.IntN(3))
			if rng.IntN(8) != 0 {
				archive(id, d, matomo.DoneOK)
			}
		}
	}
	// A stored segment archived on most days (its candidates' raw counts
	// are kept between scans: late visits must reach them).
	const segDef = "visitorType==new"
	addSegment(e, segDef, 0, 1, 0, "2026-09-01 00:00:00")
	segArchive := func(id int, d matomo.Date) {
		_, end := matomo.DayBounds(loc(id), d)
		e.AddArchive(matomotest.ArchiveRow{IDSite: id, Period: matomo.PeriodDay, Date1: d.String(), Name: "done" + matomo.SegmentHash(segDef),
			Done: matomo.DoneOK, TSArchived: end.Add(time.Hour), NbVisits: 0})
	}
	for id := 1; id <= len(zones); id++ {
		for d := first; d <= last; d++ {
			if rng.IntN(4) != 0 {
				segArchive(id, d)
			}
		}
	}
	now := testNow
	o := Options{Now: func() time.Time { return now }}
	db := openDB(t, e)
	run := ts("2026-11-27 00:05:00")
	d := New(db, o)
	d.SetLastArchiveRun(run)
	scan(t, d)

	var log []string
	ops := []func() string{
		func() string { // Matomo archives a day
			id, dd := randSite(), randDay()
			archive(id, dd, []int{1, 1, 1, 2, 4, 5}[rng.IntN(6)])
			if dd < day("2026-11-01") {
				dropped = false // writing an archive creates the table
			}
			return fmt.Sprintf("archive %d %s", id, dd)
		},
		func() string { // a week, month or year archived (sum of its days, now), or re-archived late
			id, dd := randSite(), existingDay()
			p := []int{matomo.PeriodWeek, matomo.PeriodMonth, matomo.PeriodYear}[rng.IntN(3)]
			first, last := PeriodOf(p, dd)
			if dropped && first < day("2026-11-01") {
				return "no period archive (its table is gone)"
			}
			var sum int64
			for x := first; x <= last; x++ {
				sum += raw(id, x)
			}
			sum -= int64(rng.IntN(2)) // sometimes one visit short: stale once a day is newer
			_, end := matomo.DayBounds(loc(id), last)
			at := now.Add(-time.Duration(rng.IntN(5)) * time.Hour)
			if rng.IntN(3) == 0 {
				at = end.Add(time.Hour)
			}
			e.AddArchive(matomotest.ArchiveRow{IDSite: id, Period: p, Date1: first.String(), Date2: last.String(),
				Done: []int{1, 1, 1, 4, 2}[rng.IntN(5)], TSArchived: at, NbVisits: max(sum, 0)})
			return fmt.Sprintf("period %d archive %d %s at %s", p, id, first, at.Format(time.DateTime))
		},
		func() string { // Matomo queues a week, month or year
			id, dd := randSite(), randDay()
			p := []int{matomo.PeriodWeek, matomo.PeriodMonth, matomo.PeriodYear}[rng.IntN(3)]
			first, last := PeriodOf(p, dd)
			e.AddInvalidation(id, p, first.String(), last.String(), now.Add(-time.Duration(rng.IntN(4))*time.Hour), 0)
			return fmt.Sprintf("queued period %d %d %s", p, id, first)
		},
		func() string { // a day re-archived now, after its periods
			id, dd := randSite(), existingDay()
			e.AddDayArchive(id, dd.String(), matomo.DoneOK, now, raw(id, dd))
			return fmt.Sprintf("re-archive day %d %s", id, dd)
		},
		func() string { // an archive deleted (purge, operator, lost rows)
			id, dd := randSite(), existingDay()
			e.Exec("DELETE FROM {p}"+matomo.TableFor(dd)+" WHERE idsite = ? AND date1 = ? AND period = 1", id, dd.String())
			return fmt.Sprintf("delete archive %d %s", id, dd)
		},
		func() string { // done value changed in place
			id, dd := randSite(), existingDay()
			v := []int{1, 4, 2}[rng.IntN(3)]
			e.Exec("UPDATE {p}"+matomo.TableFor(dd)+" SET value = ? WHERE idsite = ? AND date1 = ? AND period = 1 AND name = 'done'", v, id, dd.String())
			return fmt.Sprintf("done := %d %d %s", v, id, dd)
		},
		func() string { // visits tracked late into a past day
			id, dd := randSite(), randDay()
			n := 1 + rng.IntN(3)
			e.AddVisits(id, noon(id, dd).Add(time.Hour), n)
			return fmt.Sprintf("late visits %d %s +%d", id, dd, n)
		},
		func() string { // the tracker remembers a day
			id, dd := randSite(), randDay()
			e.AddVisits(id, noon(id, dd).Add(2*time.Hour), 1)
			e.SetOption(fmt.Sprintf("x1Y2_report_to_invalidate_%d_%s_%d", id, dd, rng.IntN(99999)), "1")
			return fmt.Sprintf("report_to_invalidate %d %s", id, dd)
		},
		func() string { // Matomo queues a day; or works the queue off
			if rng.IntN(2) == 0 {
				e.Exec("DELETE FROM {p}archive_invalidations")
				return "queue emptied"
			}
			id, dd := randSite(), randDay()
			e.AddInvalidation(id, 1, dd.String(), dd.String(), now.Add(-time.Duration(rng.IntN(4))*time.Hour), 0)
			return fmt.Sprintf("queued %d %s", id, dd)
		},
		func() string { // October's table dropped, or restored with some rows
			if !dropped {
				e.Exec("DROP TABLE IF EXISTS {p}archive_numeric_2026_10")
				dropped = true
				return "drop 2026_10"
			}
			e.Exec("CREATE TABLE IF NOT EXISTS {p}archive_numeric_2026_10 LIKE {p}archive_numeric_2026_11")
			for id := 1; id <= len(zones); id++ {
				for dd := first; dd < day("2026-11-01"); dd++ {
					if rng.IntN(2) == 0 {
						archive(id, dd, matomo.DoneOK)
					}
				}
			}
			dropped = false
			return "restore 2026_10"
		},
		func() string { // time passes: grace periods end, the window moves at midnight
			d := time.Duration(10+rng.IntN(300)) * time.Minute
			now = now.Add(d)
			return fmt.Sprintf("time passes %v (now %s)", d, now.Format(time.DateTime))
		},
		func() string { // the stored segment archived on a day, or its day archive deleted
			id, dd := randSite(), existingDay()
			if rng.IntN(2) == 0 {
				segArchive(id, dd)
				return fmt.Sprintf("segment archive %d %s", id, dd)
			}
			e.Exec("DELETE FROM {p}"+matomo.TableFor(dd)+" WHERE idsite = ? AND date1 = ? AND period = 1 AND name = ?", id, dd.String(), "done"+matomo.SegmentHash(segDef))
			return fmt.Sprintf("delete segment archive %d %s", id, dd)
		},
		func() string { // log purge: the oldest raw visits go (ids follow time)
			e.Exec("DELETE FROM {p}log_visit ORDER BY idvisit LIMIT 2")
			return "purge the 2 oldest visits"
		},
	}
	segSeen := 0
	for i := range steps {
		log = append(log, ops[rng.IntN(len(ops))]())
		now = now.Add(time.Minute)
		inc := scan(t, d)
		fd := New(db, o)
		fd.SetLastArchiveRun(run)
		fresh := scan(t, fd)
		a, b := allGapMap(inc), allGapMap(fresh)
		segSeen += len(inc.SegmentGaps)
		maps.Copy(a, segRawMap(inc))
		maps.Copy(b, segRawMap(fresh))
		if !maps.Equal(a, b) || !slices.Equal(collMap(inc), collMap(fresh)) {
			t.Fatalf("step %d (full=%v) after\n  %s\nincremental differs from a fresh full scan:\n%s\ncollection gaps: %v vs %v",
				i, inc.Stats.Full, strings.Join(log, "\n  "), diffMaps(a, b), collMap(inc), collMap(fresh))
		}
	}
	if segSeen == 0 {
		t.Error("no scan saw a segment gap: the differential test no longer covers the stored segment")
	}
}

func diffMaps(inc, full map[string]string) string {
	var out []string
	for k, v := range inc {
		if full[k] != v {
			out = append(out, fmt.Sprintf("  %s: incremental %q, full %q", k, v, full[k]))
		}
	}
	for k, v := range full {
		if _, ok := inc[k]; !ok {
			out = append(out, fmt.Sprintf("  %s: incremental none, full %q", k, v))
		}
	}
	slices.Sort(out)
	return strings.Join(out, "\n")
}

func envSeed(t *testing.T) uint64 {
	t.Helper()
	var s uint64
	if v := getenv("MATOMOD_DIFF_SEED"); v != "" {
		if _, err := fmt.Sscan(v, &s); err != nil {
			t.Fatalf("MATOMOD_DIFF_SEED=%q: not a number", v)
		}
	}
	return s
}

var getenv = os.Getenv

// segRawMap renders segment gaps with their raw visits and verdict.
func segRawMap(r *Result) map[string]string {
	m := map[string]string{}
	for _, g := range r.SegmentGaps {
		m[fmt.Sprintf("seg %d %s %s..%s", g.IDSite, g.Period, g.Date, g.Date2)] = fmt.Sprintf("%s raw=%d repairable=%t %s", g.Kind, g.RawVisits, g.Repairable, g.Reason)
	}
	return m
}
