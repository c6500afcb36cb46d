package gapdetect

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

var testNow = time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

func ts(s string) time.Time {
	t, err := time.Parse("2006-01-02 15:04:05", s)
	if err != nil {
		panic(err)
	}
	return t
}

func openDB(t *testing.T, e *matomotest.Env) *matomo.DB {
	t.Helper()
	db, err := matomo.Open(e.Settings, matomo.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	return db
}

func scan(t *testing.T, d *Detector) *Result {
	t.Helper()
	r, err := d.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return r
}

// gapMap renders day gaps as "idsite date kind raw/archived repairable"
// (the tests written before periods were checked: their fixtures hold
// day archives only, so every week and month with traffic is missing).
func gapMap(r *Result) map[string]string {
	return renderGaps(r, false)
}

// allGapMap adds the week, month and year gaps, keyed "idsite period date".
func allGapMap(r *Result) map[string]string {
	return renderGaps(r, true)
}

func renderGaps(r *Result, periods bool) map[string]string {
	m := map[string]string{}
	for _, g := range r.Gaps {
		key := itoa(int64(g.IDSite)) + " " + g.Date.String()
		if !g.IsDay() {
			if !periods {
				continue
			}
			key = itoa(int64(g.IDSite)) + " " + g.Period + " " + g.Date.String()
		}
		a := "null"
		if g.ArchivedVisits != nil {
			a = itoa(*g.ArchivedVisits)
		}
		rep := "repairable"
		if !g.Repairable {
			rep = "unsafe: " + g.Reason
		}
		m[key] = string(g.Kind) + " " + itoa(g.RawVisits) + "/" + a + " " + rep
	}
	return m
}

func itoa(n int64) string {
	return strings.TrimSpace(strings.Replace(string(rune('0'))+"", "0", "", 1) + jsonNum(n))
}

func jsonNum(n int64) string { b, _ := json.Marshal(n); return string(b) }

// One scenario with every kind, several time zones, two monthly tables
// and a missing one, checked in one full scan.
func TestScanKinds(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-10-28").
		AddSite(2, "America/New_York", "2026-10-28").
		AddSite(3, "Asia/Kolkata", "2026-10-28").
		AddSite(4, "UTC+5.5", "2026-11-10") // created mid-window
	// Site 1 (UTC): first visit day is 10-29 (unsafe to repair).
	e.AddVisits(1, ts("2026-10-29 10:00:00"), 1)
	e.AddDayArchive(1, "2026-10-29", 1, ts("2026-10-30 01:00:00"), 1)
	// missing: 11-12 has 3 visits and no archive (November table exists).
	e.AddVisits(1, ts("2026-11-12 10:00:00"), 3)
	// good: 11-13 archived after the day.
	e.AddVisits(1, ts("2026-11-13 10:00:00"), 2)
	e.AddDayArchive(1, "2026-11-13", 1, ts("2026-11-14 01:00:00"), 2)
	// incomplete: archived during the day.
	e.AddVisits(1, ts("2026-11-14 23:00:00"), 4)
	e.AddDayArchive(1, "2026-11-14", 1, ts("2026-11-14 12:00:00"), 2)
	// invalidated, no queue row, old ts_archived.
	e.AddVisits(1, ts("2026-11-15 10:00:00"), 2)
	e.AddDayArchive(1, "2026-11-15", 4, ts("2026-11-16 01:00:00"), 2)
	// invalidated with a fresh queue row: not a gap yet.
	e.AddVisits(1, ts("2026-11-16 10:00:00"), 2)
	e.AddDayArchive(1, "2026-11-16", 4, ts("2026-11-17 01:00:00"), 2)
	e.AddInvalidation(1, 1, "2026-11-16", "2026-11-16", testNow.Add(-10*time.Minute), 0)
	// failed: only done = 2 older than grace; 11-18 done=2 fresh: not yet.
	e.AddVisits(1, ts("2026-11-17 10:00:00"), 1)
	e.AddDayArchive(1, "2026-11-17", 2, ts("2026-11-18 01:00:00"), -1)
	e.AddVisits(1, ts("2026-11-18 10:00:00"), 1)
	e.AddDayArchive(1, "2026-11-18", 2, testNow.Add(-5*time.Minute), -1)
	// OK archive plus a newer invalidated one: invalidated.
	e.AddVisits(1, ts("2026-11-19 10:00:00"), 5)
	e.AddDayArchive(1, "2026-11-19", 1, ts("2026-11-20 01:00:00"), 5)
	e.AddDayArchive(1, "2026-11-19", 4, ts("2026-11-21 01:00:00"), 5)
	// Segment and plugin flags do not count: missing.
	e.AddVisits(1, ts("2026-11-20 10:00:00"), 2)
	e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: 1, Date1: "2026-11-20", Name: "done90a5a511e1974bca37613b6daec137ba.VisitsSummary", TSArchived: ts("2026-11-21 01:00:00"), NbVisits: 2})
	e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: 1, Date1: "2026-11-20", Name: "done.VisitsSummary", TSArchived: ts("2026-11-21 01:00:00"), NbVisits: 2})
	// stale (verify days): raw 6 > archived 4.
	e.AddVisits(1, ts("2026-11-23 10:00:00"), 6)
	e.AddDayArchive(1, "2026-11-23", 1, ts("2026-11-24 01:00:00"), 4)
	// raw < archived is normal.
	e.AddVisits(1, ts("2026-11-24 10:00:00"), 3)
	e.AddDayArchive(1, "2026-11-24", 1, ts("2026-11-25 01:00:00"), 5)
	// week/month archives are not day archives.
	e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: 2, Date1: "2026-11-09", Date2: "2026-11-15", TSArchived: ts("2026-11-16 01:00:00"), NbVisits: 9})

	// Site 2 (New York): 11-01 is 25 h long; a visit at 11-02 04:30 UTC
	// is still local 11-01. October table holds 10-30, no archive.
	e.AddVisits(2, ts("2026-10-29 12:00:00"), 1)
	e.AddDayArchive(2, "2026-10-29", 1, ts("2026-10-30 06:00:00"), 1)
	e.AddVisits(2, ts("2026-10-31 03:30:00"), 1) // local 10-30
	e.AddVisits(2, ts("2026-11-02 04:30:00"), 2) // local 11-01 (EST starts 05:00 UTC)

	// Site 3 (Kolkata): visit at 11-14 18:45 UTC is local 11-15.
	e.AddVisits(3, ts("2026-11-01 10:00:00"), 1)
	e.AddDayArchive(3, "2026-11-01", 1, ts("2026-11-02 01:00:00"), 1)
	e.AddVisits(3, ts("2026-11-14 18:45:00"), 2)

	// Site 4 (UTC+5.5), created 11-10: visits before creation are ignored.
	e.AddVisits(4, ts("2026-11-05 10:00:00"), 3)
	e.AddVisits(4, ts("2026-11-16 18:15:00"), 1) // local 11-16 23:45
	e.AddVisits(4, ts("2026-11-16 18:45:00"), 1) // local 11-17 00:15

	d := New(openDB(t, e), Options{Now: func() time.Time { return testNow }})
	d.SetLastArchiveRun(ts("2026-11-27 00:05:00"))
	r := scan(t, d)
	got := gapMap(r)
	want := map[string]string{
		"1 2026-11-12": "missing 3/null repairable",
		"1 2026-11-14": "incomplete 4/2 repairable",
		"1 2026-11-15": "invalidated 2/2 repairable",
		"1 2026-11-17": "failed 1/null repairable",
		"1 2026-11-19": "invalidated 5/5 repairable",
		"1 2026-11-20": "missing 2/null repairable",
		"1 2026-11-23": "stale 6/4 repairable",
		"2 2026-10-30": "missing 1/null repairable",
		"2 2026-11-01": "missing 2/null repairable",
		"3 2026-11-15": "missing 2/null repairable",
		"4 2026-11-16": "missing 1/null repairable", // raw visits from before its creation exist
		"4 2026-11-17": "missing 1/null repairable",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	for k, v := range got {
		if _, ok := want[k]; !ok {
			t.Errorf("unexpected gap %s: %s", k, v)
		}
	}
	if r.SitesScanned != 4 || !r.Stats.Full {
		t.Errorf("sites scanned %d, full %v", r.SitesScanned, r.Stats.Full)
	}
	if r.Window.Since.String() != "2026-10-28" || r.Window.Until.String() != "2026-11-26" {
		t.Errorf("window %v", r.Window)
	}
	// Failed archive of 11-17 has no nb_visits: archived_visits is 0, not null.
	for _, g := range r.Gaps {
		if g.Kind == Missing && g.ArchivedVisits != nil {
			t.Errorf("missing gap with archived visits: %+v", g)
		}
	}
}

func TestScanSafetyRules(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-01-01")
	e.SetOption("delete_logs_enable", "1").SetOption("delete_logs_older_than", "10")
	e.AddVisits(1, ts("2026-11-01 10:00:00"), 1) // first raw day
	for _, day := range []string{"2026-11-10", "2026-11-16", "2026-11-17", "2026-11-26"} {
		e.AddVisits(1, ts(day+" 10:00:00"), 2)
	}
	// invalidated day whose raw data mostly went: unsafe.
	e.AddVisits(1, ts("2026-11-20 10:00:00"), 1)
	e.AddDayArchive(1, "2026-11-20", 4, ts("2026-11-21 01:00:00"), 40)
	d := New(openDB(t, e), Options{Now: func() time.Time { return testNow }})
	got := gapMap(scan(t, d))
	const tooOld = "older than the log-deletion limit (delete_logs_older_than = 10 days): Matomo invalidates no day before 2026-11-17"
	want := map[string]string{
		"1 2026-11-01": "missing 1/null unsafe: " + tooOld,
		// today (UTC) 11-27 - 10 = 11-17 is the oldest day Matomo invalidates.
		"1 2026-11-10": "missing 2/null unsafe: " + tooOld,
		"1 2026-11-16": "missing 2/null unsafe: " + tooOld,
		// Repairable by itself, but its week holds 11-16 (see ProtectPeriods).
		"1 2026-11-17": "missing 2/null unsafe: its week holds 2026-11-16, which has no usable archive and whose raw data may be purged: Matomo would rebuild that day too when it rebuilds the week",
		"1 2026-11-20": "invalidated 1/40 unsafe: raw visits (1) are less than half of the archived 40: raw data may be partly purged, rebuilding would lose reports",
		"1 2026-11-26": "missing 2/null unsafe: yesterday: waiting for the scheduled core:archive run",
	}
	for k, v := range want {
		if got[k] != v {
			t.Errorf("%s: got %q, want %q", k, got[k], v)
		}
	}
	if len(got) != len(want) {
		t.Errorf("got %d gaps, want %d: %v", len(got), len(want), got)
	}
	// Once a run started after yesterday ended, yesterday is repairable by
	// itself, but November holds days whose raw data may be purged.
	d.SetLastArchiveRun(ts("2026-11-27 00:05:00"))
	d.Invalidate()
	if g := gapMap(scan(t, d))["1 2026-11-26"]; g != "missing 2/null unsafe: its month holds 2026-11-01, which has no usable archive and whose raw data may be purged: Matomo would rebuild that day too when it rebuilds the month" {
		t.Errorf("yesterday after a run: %q", g)
	}
}

func TestScanWindowAndSites(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-01-01").AddSite(2, "UTC", "2026-01-01").AddSite(3, "Mars/Olympus", "2026-01-01")
	e.AddVisits(1, ts("2026-11-10 10:00:00"), 1).AddVisits(1, ts("2026-11-20 10:00:00"), 1).AddVisits(2, ts("2026-11-20 10:00:00"), 1)
	since, _ := matomo.ParseDate("2026-11-15")
	until, _ := matomo.ParseDate("2026-11-25")
	d := New(openDB(t, e), Options{Now: func() time.Time { return testNow }, Since: since, Until: until, Include: []int{1, 3}})
	r := scan(t, d)
	got := gapMap(r)
	if len(got) != 1 || got["1 2026-11-20"] == "" {
		t.Errorf("window/site filter: %v", got)
	}
	if len(r.SiteErrors) != 1 || r.SiteErrors[0].IDSite != 3 || !strings.Contains(r.SiteErrors[0].Error, "Mars/Olympus") {
		t.Errorf("site errors: %+v", r.SiteErrors)
	}
	// Unknown site and reversed window: clear errors.
	_, err := New(openDB(t, e), Options{Include: []int{99}, Now: func() time.Time { return testNow }}).Scan(context.Background())
	if err == nil || !strings.Contains(err.Error(), "site 99 does not exist") {
		t.Errorf("unknown site: %v", err)
	}
	_, err = New(openDB(t, e), Options{Since: until, Until: since, Now: func() time.Time { return testNow }}).Scan(context.Background())
	if err == nil || !strings.Contains(err.Error(), "is after --until") {
		t.Errorf("reversed window: %v", err)
	}
}

func TestCollectionGaps(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-11-01").AddSite(2, "UTC", "2026-11-01")
	for d := 1; d <= 26; d++ {
		day := matomo.NewDate(2026, 11, d).String()
		if d != 12 && d != 13 { // site 1: daily traffic but a 2-day outage
			e.AddVisits(1, ts(day+" 10:00:00"), 1)
			e.AddDayArchive(1, day, 1, ts(day+" 23:59:59").Add(time.Hour), 1)
		}
		if d%3 == 0 { // site 2: sparse, no collection gaps
			e.AddVisits(2, ts(day+" 10:00:00"), 1)
			e.AddDayArchive(2, day, 1, ts(day+" 23:59:59").Add(time.Hour), 1)
		}
	}
	r := scan(t, New(openDB(t, e), Options{Now: func() time.Time { return testNow }}))
	if len(gapMap(r)) != 0 {
		t.Errorf("gaps: %v", gapMap(r))
	}
	if len(r.CollectionGaps) != 2 || r.CollectionGaps[0].Date.String() != "2026-11-12" || r.CollectionGaps[1].Date.String() != "2026-11-13" {
		t.Errorf("collection gaps: %+v", r.CollectionGaps)
	}
}

// The second scan is incremental and sees new archives, in-place
// invalidations and queue rows.
func TestIncrementalRescan(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-11-01")
	e.AddVisits(1, ts("2026-11-10 10:00:00"), 2)
	e.AddVisits(1, ts("2026-11-11 10:00:00"), 3)
	e.AddDayArchive(1, "2026-11-11", 1, ts("2026-11-12 01:00:00"), 3)
	e.AddVisits(1, ts("2026-11-12 10:00:00"), 1)
	e.AddDayArchive(1, "2026-11-12", 2, ts("2026-11-13 01:00:00"), -1)
	now := testNow
	d := New(openDB(t, e), Options{Now: func() time.Time { return now }})
	r := scan(t, d)
	if g := gapMap(r); len(g) != 2 || !strings.HasPrefix(g["1 2026-11-10"], "missing") || !strings.HasPrefix(g["1 2026-11-12"], "failed") {
		t.Fatalf("first scan: %v", g)
	}
	// Matomo archives 11-10 (new row), flips 11-12 from 2 to 1 in place
	// (old ts_archived), and invalidates 11-11 in place with a queue row.
	e.AddDayArchive(1, "2026-11-10", 1, time.Now().UTC(), 2)
	e.Exec("UPDATE {p}archive_numeric_2026_11 SET value = 1 WHERE idsite = 1 AND date1 = '2026-11-12' AND name = 'done'")
	e.Exec("UPDATE {p}archive_numeric_2026_11 SET value = 4 WHERE idsite = 1 AND date1 = '2026-11-11' AND name = 'done'")
	e.AddInvalidation(1, 1, "2026-11-11", "2026-11-11", now.Add(-3*time.Hour), 0)
	now = now.Add(time.Hour)
	r = scan(t, d)
	if r.Stats.Full {
		t.Fatal("second scan was full")
	}
	g := gapMap(r)
	if len(g) != 1 || g["1 2026-11-11"] != "invalidated 3/3 repairable" {
		t.Fatalf("incremental scan: %v", g)
	}
	// A steady rescan does no probe.
	r = scan(t, d)
	if r.Stats.Full || r.Stats.Probes > 1 {
		t.Errorf("steady rescan: full=%v probes=%d", r.Stats.Full, r.Stats.Probes)
	}
	// After FullRescanInterval the scan is full again.
	now = now.Add(25 * time.Hour)
	if r = scan(t, d); !r.Stats.Full {
		t.Error("no full rescan after the interval")
	}
}

func TestPlanRepairs(t *testing.T) {
	mk := func(site int, day string, rep bool) Gap {
		d, _ := matomo.ParseDate(day)
		return Gap{IDSite: site, Date: d, Repairable: rep}
	}
	gaps := []Gap{mk(3, "2018-02-20", true), mk(3, "2018-02-21", true), mk(3, "2018-02-22", false), mk(3, "2018-02-23", true),
		mk(3, "2018-02-24", true), mk(1, "2018-02-21", true)}
	plan, deferred := PlanRepairs(gaps, 60)
	var s []string
	for _, r := range plan {
		s = append(s, itoa(int64(r.IDSite))+":"+r.From.String()+".."+r.To.String())
	}
	if strings.Join(s, " ") != "1:2018-02-21..2018-02-21 3:2018-02-20..2018-02-21 3:2018-02-23..2018-02-24" || deferred != 0 {
		t.Errorf("plan %v deferred %d", s, deferred)
	}
	plan, deferred = PlanRepairs(gaps, 2) // newest first, oldest deferred
	if deferred != 3 || len(plan) != 1 || plan[0].From.String() != "2018-02-23" || plan[0].To.String() != "2018-02-24" {
		t.Errorf("bounded plan %+v deferred %d", plan, deferred)
	}
}
