package gapdetect

import (
	"context"
	"fmt"
	"maps"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

// archivedSite seeds site 1 (UTC) with visits and good day archives from
// 10-25 to 11-26, n visits a day.
func archivedSite(e *matomotest.Env, n int) {
	e.AddSite(1, "UTC", "2026-10-20")
	for d := day("2026-10-25"); d <= day("2026-11-26"); d++ {
		e.AddVisits(1, d.Time().Add(10*time.Hour), n)
		e.AddDayArchive(1, d.String(), 1, d.Time().Add(25*time.Hour), int64(n))
	}
}

// same checks that the long-lived detector's incremental view equals
// what a fresh detector's full scan sees on the same data.
func same(t *testing.T, step string, inc *Result, db *matomo.DB, o Options) {
	t.Helper()
	fresh := scan(t, New(db, o))
	if a, b := allGapMap(inc), allGapMap(fresh); !maps.Equal(a, b) {
		t.Errorf("%s: incremental %v\nfresh full %v", step, a, b)
	}
	if a, b := collMap(inc), collMap(fresh); !slices.Equal(a, b) {
		t.Errorf("%s: collection gaps: incremental %v, fresh full %v", step, a, b)
	}
}

func collMap(r *Result) []string {
	var out []string
	for _, c := range r.CollectionGaps {
		out = append(out, fmt.Sprintf("%d %s", c.IDSite, c.Date))
	}
	return out
}

// Every cause of a gap is seen by the next incremental scan (issue 13),
// not by the next full rescan 24 h later.
func TestFreshness(t *testing.T) {
	e := matomotest.New(t)
	archivedSite(e, 3)
	now := testNow
	o := Options{Now: func() time.Time { return now }}
	db := openDB(t, e)
	d := New(db, o)
	d.SetLastArchiveRun(ts("2026-11-27 00:05:00"))
	if g := gapMap(scan(t, d)); len(g) != 0 {
		t.Fatalf("first scan: %v", g)
	}
	step := func(name string, want map[string]string) *Result {
		t.Helper()
		now = now.Add(time.Minute)
		r := scan(t, d)
		if r.Stats.Full && name != "max idvisit rolled back" {
			t.Errorf("%s: scan was full", name)
		}
		if g := gapMap(r); !maps.Equal(g, want) {
			t.Errorf("%s: got %v, want %v", name, g, want)
		}
		return r
	}
	want := map[string]string{}

	// A deleted day archive: no new row anywhere, index_period_archived
	// unchanged.
	e.Exec("DELETE FROM {p}archive_numeric_2026_11 WHERE idsite = 1 AND date1 = '2026-11-12' AND period = 1")
	want["1 2026-11-12"] = "missing 3/null repairable"
	step("archive deleted", want)

	// Visits tracked later into an archived day of the verify range.
	e.AddVisits(1, ts("2026-11-24 11:00:00"), 2)
	want["1 2026-11-24"] = "stale 5/3 repairable"
	step("late visits", want)

	// Invalidation in place, ts_archived unchanged, no queue row.
	e.Exec("UPDATE {p}archive_numeric_2026_11 SET value = 4 WHERE idsite = 1 AND date1 = '2026-11-15' AND name = 'done'")
	want["1 2026-11-15"] = "invalidated 3/3 repairable"
	step("done 1 -> 4 in place", want)
	// ... and back (4 -> 1 in place).
	e.Exec("UPDATE {p}archive_numeric_2026_11 SET value = 1 WHERE idsite = 1 AND date1 = '2026-11-15' AND name = 'done'")
	delete(want, "1 2026-11-15")
	step("done 4 -> 1 in place", want)

	// A monthly table dropped: every October day is missing.
	e.Exec("DROP TABLE {p}archive_numeric_2026_10")
	for d := day("2026-10-25"); d <= day("2026-10-31"); d++ {
		want["1 "+d.String()] = "missing 3/null repairable"
	}
	// The first raw day is never repairable.
	want["1 2026-10-25"] = "missing 3/null unsafe: first day of the site's raw data: it may be partly purged"
	step("table dropped", want)
	// ... and restored (created again with its rows).
	e.Exec("CREATE TABLE {p}archive_numeric_2026_10 LIKE {p}archive_numeric_2026_11")
	for d := day("2026-10-25"); d <= day("2026-10-31"); d++ {
		e.AddDayArchive(1, d.String(), 1, d.Time().Add(25*time.Hour), 3)
		delete(want, "1 "+d.String())
	}
	r := step("table restored", want)
	same(t, "table restored", r, db, o)

	// log_visit rolled back (a restore of an older dump): the late
	// visits are gone, so 11-24 is good again.
	e.Exec("DELETE FROM {p}log_visit WHERE idsite = 1 AND visit_last_action_time >= '2026-11-24 10:30:00' AND visit_last_action_time < '2026-11-25'")
	delete(want, "1 2026-11-24")
	if r = step("max idvisit rolled back", want); !r.Stats.Full {
		t.Error("max idvisit rolled back: scan was not full")
	}
}

// A day the tracker remembered (report_to_invalidate option) is checked
// for staleness by every scan, even outside the verify range.
func TestReportToInvalidateDay(t *testing.T) {
	e := matomotest.New(t)
	archivedSite(e, 3)
	now := testNow
	o := Options{Now: func() time.Time { return now }}
	db := openDB(t, e)
	d := New(db, o)
	d.SetLastArchiveRun(ts("2026-11-27 00:05:00"))
	scan(t, d)
	// Visits into 11-05 (outside the 7 verify days) plus the option the
	// tracker leaves: seen at once, and by a fresh full scan alike.
	e.AddVisits(1, ts("2026-11-05 12:00:00"), 2)
	e.SetOption("1kH1_report_to_invalidate_1_2026-11-05_10510", "1")
	now = now.Add(time.Minute)
	r := scan(t, d)
	if g := gapMap(r)["1 2026-11-05"]; g != "stale 5/3 repairable" {
		t.Errorf("incremental: %q", g)
	}
	same(t, "report_to_invalidate", r, db, o)
}

// Issue 15: collection gaps are one rule, the same whichever scan
// computes them: a full scan, an incremental one after visits arrived in
// empty days and queue rows came and went, and a fresh detector's.
func TestCollectionGapsAgree(t *testing.T) {
	e := matomotest.New(t)
	for id := 1; id <= 3; id++ {
		e.AddSite(id, "UTC", "2026-11-01")
	}
	for d := day("2026-11-01"); d <= day("2026-11-26"); d++ {
		for id := 1; id <= 3; id++ {
			if (id == 1 && d == day("2026-11-12")) || (id == 2 && (d == day("2026-11-08") || d == day("2026-11-20"))) {
				continue // planted zero-visit days
			}
			e.AddVisits(id, d.Time().Add(10*time.Hour), 2)
			e.AddDayArchive(id, d.String(), 1, d.Time().Add(25*time.Hour), 2)
		}
	}
	// A queued zero-visit day of site 3.
	e.Exec("DELETE FROM {p}log_visit WHERE idsite = 3 AND visit_last_action_time >= '2026-11-14' AND visit_last_action_time < '2026-11-15'")
	e.Exec("DELETE FROM {p}archive_numeric_2026_11 WHERE idsite = 3 AND date1 = '2026-11-14'")
	e.AddInvalidation(3, 1, "2026-11-14", "2026-11-14", testNow.Add(-time.Hour), 0)
	now := testNow
	o := Options{Now: func() time.Time { return now }}
	db := openDB(t, e)
	d := New(db, o)
	r := scan(t, d)
	want := []string{"1 2026-11-12", "2 2026-11-08", "2 2026-11-20", "3 2026-11-14"}
	if got := collMap(r); !slices.Equal(got, want) {
		t.Errorf("full scan: %v, want %v", got, want)
	}
	// Visits arrive in site 2's 11-20 (no archive yet); the queue row of
	// site 3 goes away without an archive (zero visits).
	e.AddVisits(2, ts("2026-11-20 09:00:00"), 1)
	e.Exec("DELETE FROM {p}archive_invalidations")
	now = now.Add(time.Minute)
	r = scan(t, d)
	if r.Stats.Full {
		t.Fatal("second scan was full")
	}
	want = []string{"1 2026-11-12", "2 2026-11-08", "3 2026-11-14"}
	if got := collMap(r); !slices.Equal(got, want) {
		t.Errorf("incremental scan: %v, want %v", got, want)
	}
	same(t, "collection gaps", r, db, o)
}

// sites.include/exclude with a thousand ids filter rows in Go: the same
// reads as without a filter (the server's plan cannot change with the
// list), and the same gaps minus the sites left out.
func TestThousandIncludedSites(t *testing.T) {
	e := matomotest.New(t)
	e.Exec(`INSERT INTO {p}site (idsite, name, main_url, ts_created, sitesearch_keyword_parameters, sitesearch_category_parameters,
		timezone, currency, excluded_ips, excluded_parameters, excluded_user_agents, excluded_referrers, ` + "`group`" + `, type)
		SELECT seq, CONCAT('Site ', seq), '', '2026-11-01 00:00:00', '', '', 'UTC', 'USD', '', '', '', '', '', 'website' FROM seq_1_to_1000`)
	for id := 1; id <= 3; id++ {
		e.AddVisits(id, ts("2026-11-10 10:00:00"), id)
	}
	o := Options{Now: func() time.Time { return testNow }}
	db := openDB(t, e)
	all := scan(t, New(db, o))
	var include []int
	for id := 1; id <= 1000; id++ {
		include = append(include, id)
	}
	o.Include, o.Exclude = include, []int{2}
	some := scan(t, New(db, o))
	want := gapMap(all)
	delete(want, "2 2026-11-10")
	if got := gapMap(some); !maps.Equal(got, want) || len(got) != 2 {
		t.Errorf("filtered: %v, want %v", got, want)
	}
	if some.SitesScanned != 999 || some.Stats.RoundTrips != all.Stats.RoundTrips {
		t.Errorf("filtered scan: %d sites, %d round trips; unfiltered: %d round trips", some.SitesScanned, some.Stats.RoundTrips, all.Stats.RoundTrips)
	}
}

// Issue 11: a site whose time zone matomod cannot read is never skipped
// in silence: the result names it with the reason (the CLI prints it and
// must exit non-zero; the metric matomod_gap_scan_sites_skipped counts it).
func TestUnreadableTimeZoneIsReported(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-11-01").AddSite(3, "Europe/Atlantis", "2026-11-01").AddSite(4, "UTC+99", "2026-11-01")
	e.AddVisits(3, ts("2026-11-10 10:00:00"), 2)
	db := openDB(t, e)
	r := scan(t, New(db, Options{Now: func() time.Time { return testNow }, Include: []int{3}}))
	if r.SitesScanned != 0 || len(r.SiteErrors) != 1 || r.SiteErrors[0].IDSite != 3 ||
		!strings.Contains(r.SiteErrors[0].Error, `"Europe/Atlantis" is unknown`) {
		t.Errorf("--sites 3: scanned %d, errors %+v", r.SitesScanned, r.SiteErrors)
	}
	r = scan(t, New(db, Options{Now: func() time.Time { return testNow }}))
	if r.SitesScanned != 1 || len(r.SiteErrors) != 2 || r.SiteErrors[1].IDSite != 4 || !strings.Contains(r.SiteErrors[1].Error, "not a valid UTC offset") {
		t.Errorf("all sites: scanned %d, errors %+v", r.SitesScanned, r.SiteErrors)
	}
	if _, err := New(db, Options{Now: func() time.Time { return testNow }}).Assess(context.Background(), 3, day("2026-11-10"), day("2026-11-10")); err == nil ||
		!strings.Contains(err.Error(), "Europe/Atlantis") {
		t.Errorf("repair --dates on the site: %v", err)
	}
}
