package gapdetect

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

func addSegment(e *matomotest.Env, def string, idsite, auto, deleted int, created string) {
	e.Exec(matomotest.SegmentDDL)
	e.Exec("INSERT INTO {p}segment (name, definition, hash, login, enable_only_idsite, auto_archive, ts_created, ts_last_edit, deleted) VALUES (?, ?, ?, 'admin', ?, ?, ?, NULL, ?)",
		def, def, matomo.SegmentHash(def), idsite, auto, created, deleted)
}

func segMap(r *Result) map[string]string {
	m := map[string]string{}
	for _, g := range r.SegmentGaps {
		k := fmt.Sprintf("%d %s %s", g.IDSite, g.Segment, g.Date)
		if g.Period != PeriodDay {
			k = fmt.Sprintf("%d %s %s %s..%s", g.IDSite, g.Segment, g.Period, g.Date, g.Date2)
		}
		m[k] = fmt.Sprintf("%s raw=%d rep=%v", g.Kind, g.RawVisits, g.Repairable)
	}
	return m
}

// Issue 14 (segments): a segment gap is a site-day in [segment start,
// window end] with raw visits whose newest done<hash> day archive is
// missing or bad; deleted, not auto-archived and other sites' segments,
// VisitFrequency's done<hash>.VisitsSummary flags and days before the
// segment's start (process_new_segments_from) are not; plain gaps are
// unchanged.
func TestSegmentGaps(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-10-01")
	e.AddSite(2, "Europe/Paris", "2026-10-01")
	a, b := "pageTitle==p3", "browserCode==FF;pageUrl=@%2Fshop"
	addSegment(e, a, 0, 1, 0, "2026-11-10 09:00:00")
	addSegment(e, b, 2, 1, 0, "2026-11-01 09:00:00")
	addSegment(e, "pageTitle==gone", 0, 1, 1, "2026-11-01 09:00:00")   // deleted
	addSegment(e, "pageTitle==manual", 0, 0, 0, "2026-11-01 09:00:00") // browser-archived only
	ha, hb := "done"+matomo.SegmentHash(a), "done"+matomo.SegmentHash(b)
	seg := func(id int, name, d string, done int, at time.Time) {
		e.AddArchive(matomotest.ArchiveRow{IDSite: id, Period: matomo.PeriodDay, Date1: d, Name: name, Done: done, TSArchived: at, NbVisits: 0})
	}
	for d := 5; d <= 13; d++ {
		day := fmt.Sprintf("2026-11-%02d", d)
		e.AddVisits(1, ts(day+" 12:00:00"), 2)
		e.AddDayArchive(1, day, matomo.DoneOK, ts(day+" 23:59:59").Add(2*time.Hour), 2)
		// VisitFrequency's flag for segment a: not a stored segment's archive.
		e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: matomo.PeriodDay, Date1: day, Name: ha + ".VisitsSummary", Done: 1, TSArchived: ts(day + " 23:59:59").Add(2 * time.Hour), NbVisits: 0})
	}
	seg(1, ha, "2026-11-10", 1, ts("2026-11-11 02:00:00"))
	seg(1, ha, "2026-11-12", 4, ts("2026-11-13 02:00:00")) // invalidated long ago
	seg(1, ha, "2026-11-13", 1, ts("2026-11-13 15:00:00")) // written during the day: incomplete
	seg(1, ha, "2026-11-14", 1, ts("2026-11-15 02:00:00")) // no visits that day: no gap anyway
	seg(1, "done"+matomo.SegmentHash("pageTitle==gone"), "2026-11-11", 1, ts("2026-11-12 02:00:00"))
	// Site 2 (Paris): visits on its 11-11 only.
	e.AddVisits(2, ts("2026-11-11 10:00:00"), 3)
	e.AddDayArchive(2, "2026-11-11", matomo.DoneOK, ts("2026-11-12 02:00:00"), 3)
	seg(2, ha, "2026-11-11", 1, ts("2026-11-12 02:00:00"))
	seg(2, hb, "2026-11-11", 2, ts("2026-11-12 02:00:00")) // an error row, long ago

	db := openDB(t, e)
	d := New(db, Options{Since: day("2026-11-01"), Until: day("2026-11-26"), Now: func() time.Time { return testNow },
		ProcessNewSegmentsFrom: SegmentsFromCreationTime})
	r, err := d.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, g := range r.Gaps {
		if g.IsDay() || g.Segment != "" {
			t.Errorf("plain gap: %+v, want no day gap (weeks are missing, and stay plain)", g)
		}
	}
	want := map[string]string{
		"1 pageTitle==p3 2026-11-11":                    "missing raw=2 rep=true",
		"1 pageTitle==p3 2026-11-12":                    "invalidated raw=2 rep=true",
		"1 pageTitle==p3 2026-11-13":                    "incomplete raw=2 rep=true",
		"2 browserCode==FF;pageUrl=@%2Fshop 2026-11-11": "failed raw=3 rep=false", // the site's first raw day: same safety rules as days
		// The segments' weeks that ended have no archive either (those
		// before site 1's segment start, 11-10, are not due).
		"1 pageTitle==p3 week 2026-11-09..2026-11-15":                    "missing raw=10 rep=true",
		"2 browserCode==FF;pageUrl=@%2Fshop week 2026-11-09..2026-11-15": "missing raw=3 rep=true",
		"2 pageTitle==p3 week 2026-11-09..2026-11-15":                    "missing raw=3 rep=true",
	}
	got := segMap(r)
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("segment gaps:\n got %v\nwant %v", got, want)
	}
	for _, g := range r.SegmentGaps {
		if g.IsDay() || !g.IsSegment() {
			t.Errorf("a segment gap is no plain day gap: %+v", g)
		}
	}
	if plan, _ := PlanRepairs(r.SegmentGaps, 100); len(plan) != 0 {
		t.Errorf("plain repair plan took segment gaps: %+v", plan)
	}

	// A rescan reads segment rows only from tables it reads again (their
	// signature moved, or is too recent to trust), and finds the same
	// gaps; a segment archive deleted since is seen by the next one.
	r2, err := d.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if r2.Stats.Full || (r2.Stats.SegmentRows != 0 && r2.Stats.TablesRead == 0) || fmt.Sprint(segMap(r2)) != fmt.Sprint(want) {
		t.Errorf("steady rescan: full %v, %d segment rows read, gaps %v", r2.Stats.Full, r2.Stats.SegmentRows, segMap(r2))
	}
	e.Exec("DELETE FROM {p}archive_numeric_2026_11 WHERE idsite = 1 AND date1 = '2026-11-10' AND name = ?", ha)
	r2, err = d.Scan(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := segMap(r2)["1 pageTitle==p3 2026-11-10"]; !ok || r2.Stats.Full || r2.Stats.SegmentRows == 0 {
		t.Errorf("after deleting a segment archive: full %v, %d segment rows read, gaps %v", r2.Stats.Full, r2.Stats.SegmentRows, segMap(r2))
	}
	seg(1, ha, "2026-11-10", 1, ts("2026-11-11 02:00:00"))

	// beginning_of_time: site 1's days before the creation are due too.
	d = New(db, Options{Since: day("2026-11-01"), Until: day("2026-11-26"), Now: func() time.Time { return testNow }})
	if r, err = d.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(r.SegmentGaps); n != 4+5+4 {
		t.Errorf("beginning_of_time: %d segment gaps, want 9 days and 4 weeks: %v", n, segMap(r))
	}

	// A queued segment day within the grace is being rebuilt: no gap.
	e.AddInvalidation(1, matomo.PeriodDay, "2026-11-11", "2026-11-11", testNow.Add(-time.Minute), 0)
	e.Exec("UPDATE {p}archive_invalidations SET name = ? WHERE idsite = 1 AND date1 = '2026-11-11'", ha)
	d = New(db, Options{Since: day("2026-11-01"), Until: day("2026-11-26"), Now: func() time.Time { return testNow },
		ProcessNewSegmentsFrom: SegmentsFromCreationTime})
	if r, err = d.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := segMap(r)["1 pageTitle==p3 2026-11-11"]; ok || len(r.SegmentGaps) != 3+3 {
		t.Errorf("queued segment day reported: %v", segMap(r))
	}
}

func TestSegmentStart(t *testing.T) {
	now := ts("2026-12-03 10:00:00")
	site := matomo.Site{ID: 3, Created: day("2024-05-01"), HasCrDat: true}
	s := matomo.StoredSegment{Created: ts("2026-11-10 23:30:00"), LastEdit: ts("2026-11-20 01:00:00")}
	for _, c := range []struct {
		setting string
		idsite  int
		want    string
		ok      bool
	}{
		{"segment_creation_time", 0, "2026-11-10", true},
		{"segment_last_edit_time", 0, "2026-11-20", true},
		{"last10", 0, "2026-10-31", true},
		{"editLast2", 0, "2026-11-18", true},
		{"beginning_of_time", 0, "2019-12-03", true},
		{"", 0, "2019-12-03", true},
		{"beginning_of_time", 3, "2024-05-01", true}, // a site-specific segment: not before the site
	} {
		s.IDSite = c.idsite
		got, ok := SegmentStart(s, c.setting, now, site)
		if got.String() != c.want || ok != c.ok {
			t.Errorf("%s (site %d): %s %v, want %s %v", c.setting, c.idsite, got, ok, c.want, c.ok)
		}
	}
	if _, ok := SegmentStart(matomo.StoredSegment{}, "segment_creation_time", now, site); ok {
		t.Error("no ts_created: Matomo has no start")
	}
	if got := matomo.SegmentHash("pageTitle==p3"); got != "30e2319d24c0ce455e6c767e96ee5b37" {
		t.Errorf("hash %s, want the one observed on Matomo", got)
	}
}

// Issue 14 (segment periods): each week, month and year of a stored
// segment that ended, overlaps the window and has traffic on or after the
// segment's start needs a good done<hash> archive of that period: the
// plain periods' kinds and rules (Classify), the current week, month and
// year skipped, a week queued within the grace not a gap, a week that
// begins before the segment's start but ends after it due (Matomo skips
// only periods that end before it), one that ends before it not; the
// log-deletion protection of plain periods applies (against the segment's
// own archives); a steady rescan reads no segment rows.
func TestSegmentPeriodGaps(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-09-01")
	const def = "pageTitle==p3"
	addSegment(e, def, 0, 1, 0, "2026-10-14 09:00:00") // start (segment_creation_time): Wednesday 10-14
	h := "done" + matomo.SegmentHash(def)
	at := func(d string, hours int) time.Time { return ts(d + " 00:00:00").Add(time.Duration(hours) * time.Hour) }
	segArchive := func(p int, d1, d2 string, done int, tsArchived time.Time) {
		e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: p, Date1: d1, Date2: d2, Name: h, Done: done, TSArchived: tsArchived, NbVisits: 1})
	}
	for _, d := range []string{"2026-10-06", "2026-10-14", "2026-10-20", "2026-10-27", "2026-11-03", "2026-11-10", "2026-11-17", "2026-11-24"} {
		e.AddVisits(1, ts(d+" 12:00:00"), 2)
		e.AddDayArchive(1, d, matomo.DoneOK, at(d, 25), 2)
		if d >= "2026-10-14" {
			segArchive(matomo.PeriodDay, d, d, matomo.DoneOK, at(d, 25)) // every segment day is good
		}
	}
	// Week 10-05..10-11 ends before the segment's start: no archive, no gap.
	// Week 10-12..10-18 begins before it: missing is a gap.
	segArchive(matomo.PeriodWeek, "2026-10-19", "2026-10-25", matomo.DoneInvalidated, at("2026-10-26", 1))
	segArchive(matomo.PeriodWeek, "2026-10-26", "2026-11-01", matomo.DoneError, at("2026-11-02", 1))
	segArchive(matomo.PeriodWeek, "2026-11-02", "2026-11-08", matomo.DoneOK, at("2026-11-08", 10)) // before its end
	segArchive(matomo.PeriodWeek, "2026-11-09", "2026-11-15", matomo.DoneOK, at("2026-11-16", 1))  // good
	segArchive(matomo.PeriodWeek, "2026-11-16", "2026-11-22", matomo.DoneInvalidated, at("2026-11-23", 1))
	e.AddInvalidation(1, matomo.PeriodWeek, "2026-11-16", "2026-11-22", testNow.Add(-time.Minute), 0) // being rebuilt
	e.Exec("UPDATE {p}archive_invalidations SET name = ? WHERE period = 2", h)
	segArchive(matomo.PeriodMonth, "2026-10-01", "2026-10-31", matomo.DoneOK, at("2026-11-01", 1)) // good
	// The current week 11-23..11-29, November and 2026 have no segment
	// archive: partial by design, not gaps.
	// A plain week archive named done is no segment archive.
	e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: matomo.PeriodWeek, Date1: "2026-10-12", Date2: "2026-10-18", TSArchived: at("2026-10-19", 1), NbVisits: 2})
	time.Sleep(2 * time.Second) // table signatures older than "recent": the rescan trusts them

	db := openDB(t, e)
	opt := Options{Since: day("2026-10-01"), Until: day("2026-11-26"), Now: func() time.Time { return testNow },
		ProcessNewSegmentsFrom: SegmentsFromCreationTime}
	d := New(db, opt)
	r := scan(t, d)
	want := map[string]string{
		"1 pageTitle==p3 week 2026-10-12..2026-10-18": "missing raw=2 rep=true",
		"1 pageTitle==p3 week 2026-10-19..2026-10-25": "invalidated raw=2 rep=true",
		"1 pageTitle==p3 week 2026-10-26..2026-11-01": "failed raw=2 rep=true",
		"1 pageTitle==p3 week 2026-11-02..2026-11-08": "incomplete raw=2 rep=true",
	}
	if got := segMap(r); fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("segment period gaps:\n got %v\nwant %v", got, want)
	}
	for _, g := range r.SegmentGaps {
		if g.Segment != def || g.Period != PeriodWeek || g.Date2 != g.Date.AddDays(6) || g.ArchivedVisits != nil || g.IsDay() {
			t.Errorf("segment period gap %+v", g)
		}
	}
	for _, g := range r.Gaps {
		if g.IsSegment() {
			t.Errorf("a segment gap among the plain gaps: %+v", g)
		}
	}

	// Steady rescan: no segment row is read again, the same gaps.
	r2 := scan(t, d)
	if r2.Stats.Full || r2.Stats.SegmentRows != 0 || fmt.Sprint(segMap(r2)) != fmt.Sprint(want) {
		t.Errorf("steady rescan: full %v, %d segment rows read, gaps %v", r2.Stats.Full, r2.Stats.SegmentRows, segMap(r2))
	}
	// A deleted segment month is seen by the next incremental scan.
	e.Exec("DELETE FROM {p}archive_numeric_2026_10 WHERE period = 3 AND name = ?", h)
	r2 = scan(t, d)
	if got := segMap(r2)["1 pageTitle==p3 month 2026-10-01..2026-10-31"]; got != "missing raw=8 rep=true" || r2.Stats.Full || r2.Stats.SegmentRows == 0 {
		t.Errorf("after deleting the segment month: %q, full %v, %d segment rows read, gaps %v", got, r2.Stats.Full, r2.Stats.SegmentRows, segMap(r2))
	}

	// A segment start on Thursday 10-15: the week 10-12..10-18 has
	// traffic only before it (10-14) and is not due; on Monday 10-19 the
	// week ended before it and is not due.
	for _, created := range []string{"2026-10-15 09:00:00", "2026-10-19 09:00:00"} {
		e.Exec("UPDATE {p}segment SET ts_created = ?", created)
		r = scan(t, New(db, opt))
		if _, ok := segMap(r)["1 pageTitle==p3 week 2026-10-12..2026-10-18"]; ok || len(r.SegmentGaps) != 4 {
			t.Errorf("segment created %s: %v", created, segMap(r))
		}
	}

	// Log deletion on: rebuilding the segment's October (and 2026, whose
	// earlier months have no segment archive) would rebuild segment days
	// whose raw data may be purged: not repairable, as for plain periods.
	opt.DeleteLogsEnable, opt.DeleteLogsOlderThan = true, 40
	r = scan(t, New(db, opt))
	g := segMap(r)["1 pageTitle==p3 week 2026-11-02..2026-11-08"]
	if !strings.HasPrefix(g, "incomplete raw=2 rep=false") {
		t.Errorf("week 11-02 with log deletion: %q, want unrepairable", g)
	}
	for _, x := range r.SegmentGaps {
		if x.Period != PeriodDay && (x.Repairable || !strings.Contains(x.Reason, "may be purged")) {
			t.Errorf("with log deletion: %+v", x)
		}
	}
}

// Repairing a segment day makes Matomo rebuild the segment's week and
// month, and with them every segment day lacking an archive: a segment
// day gap whose raw data may be purged (older than the log-deletion
// limit) protects the segment's other gap days of its week and month, as
// ProtectPeriods does for plain days; another segment's days are not
// touched.
func TestSegmentDaysProtectPeriods(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-09-01")
	a, b := "pageTitle==p3", "actions>=2"
	addSegment(e, a, 0, 1, 0, "2026-10-01 09:00:00")
	addSegment(e, b, 0, 1, 0, "2026-10-01 09:00:00")
	for _, d := range []string{"2026-10-16", "2026-10-18", "2026-10-28"} {
		e.AddVisits(1, ts(d+" 12:00:00"), 2)
		e.AddDayArchive(1, d, matomo.DoneOK, ts(d+" 00:00:00").Add(25*time.Hour), 2)
		if d != "2026-10-16" {
			e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: matomo.PeriodDay, Date1: d, Name: "done" + matomo.SegmentHash(b), Done: matomo.DoneOK, TSArchived: ts(d + " 00:00:00").Add(25 * time.Hour), NbVisits: 1})
		}
	}
	e.AddVisits(1, ts("2026-09-20 12:00:00"), 1) // the first raw day is earlier
	// Log deletion keeps 40 days: the limit is 2026-10-18.
	d := New(openDB(t, e), Options{Since: day("2026-10-01"), Until: day("2026-11-26"), Now: func() time.Time { return testNow },
		ProcessNewSegmentsFrom: SegmentsFromCreationTime, DeleteLogsEnable: true, DeleteLogsOlderThan: 40})
	r := scan(t, d)
	got := map[string]string{}
	for _, g := range r.SegmentGaps {
		if g.Period == PeriodDay {
			got[g.Segment+" "+g.Date.String()] = fmt.Sprint(g.Repairable, " ", g.Reason)
		}
	}
	for k, want := range map[string]string{
		a + " 2026-10-16": "false older than the log-deletion limit",
		a + " 2026-10-18": "false its week holds 2026-10-16",
		a + " 2026-10-28": "false its month holds 2026-10-16",
		b + " 2026-10-16": "false older than the log-deletion limit",
	} {
		if !strings.HasPrefix(got[k], want) {
			t.Errorf("%s: %q, want %q…", k, got[k], want)
		}
	}
	if len(got) != 4 {
		t.Errorf("segment day gaps: %v", got)
	}
}

// A stored segment Matomo never archived is a gap on every day with
// traffic; a steady rescan must not count those days' raw visits again
// (it did, one range per day and period on every scan: 465 probes per
// rescan at the bench's default size). Late visits into one of them are
// counted again (TestIncrementalEqualsFullScan checks the numbers).
func TestNeverArchivedSegmentCountedOnce(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-10-01")
	for d := day("2026-10-05"); d <= day("2026-11-20"); d++ {
		e.AddVisits(1, d.Time().Add(12*time.Hour), 2)
		e.AddDayArchive(1, d.String(), matomo.DoneOK, d.Time().Add(26*time.Hour), 2)
	}
	addSegment(e, "visitorType==new", 0, 1, 0, "2026-09-01 00:00:00")
	d := New(openDB(t, e), Options{Now: func() time.Time { return testNow }, VerifyDays: -1})
	first := scan(t, d)
	if len(first.SegmentGaps) < 47 || first.Stats.Probes == 0 {
		t.Fatalf("first scan: %d segment gaps, %d probes", len(first.SegmentGaps), first.Stats.Probes)
	}
	again := scan(t, d)
	if again.Stats.Full || again.Stats.Probes != 0 || len(again.SegmentGaps) != len(first.SegmentGaps) {
		t.Errorf("steady rescan: full %t, %d probes (want 0), %d segment gaps (want %d)", again.Stats.Full, again.Stats.Probes, len(again.SegmentGaps), len(first.SegmentGaps))
	}
	e.AddVisits(1, ts("2026-11-10 13:00:00"), 3)
	late := scan(t, d)
	for _, g := range late.SegmentGaps {
		if g.Period == PeriodDay && g.Date == day("2026-11-10") && g.RawVisits != 5 {
			t.Errorf("late visits: segment day 2026-11-10 raw %d, want 5", g.RawVisits)
		}
	}
}
