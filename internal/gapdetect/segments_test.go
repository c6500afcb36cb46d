package gapdetect

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

// segmentDDL is the segment table of testdata/fixtures/schema.sql (a
// real Matomo 5.0.2 install); matomotest's schema does not create it.
const segmentDDL = `CREATE TABLE IF NOT EXISTS {p}segment (
  idsegment int(11) NOT NULL AUTO_INCREMENT,
  name varchar(255) NOT NULL,
  definition text NOT NULL,
  hash char(32) DEFAULT NULL,
  login varchar(100) NOT NULL,
  enable_all_users tinyint(4) NOT NULL DEFAULT 0,
  enable_only_idsite int(11) DEFAULT NULL,
  auto_archive tinyint(4) NOT NULL DEFAULT 0,
  ts_created timestamp NULL DEFAULT NULL,
  ts_last_edit timestamp NULL DEFAULT NULL,
  deleted tinyint(4) NOT NULL DEFAULT 0,
  PRIMARY KEY (idsegment))`

func addSegment(e *matomotest.Env, def string, idsite, auto, deleted int, created string) {
	e.Exec(segmentDDL)
	e.Exec("INSERT INTO {p}segment (name, definition, hash, login, enable_only_idsite, auto_archive, ts_created, ts_last_edit, deleted) VALUES (?, ?, ?, 'admin', ?, ?, ?, NULL, ?)",
		def, def, matomo.SegmentHash(def), idsite, auto, created, deleted)
}

func segMap(r *Result) map[string]string {
	m := map[string]string{}
	for _, g := range r.SegmentGaps {
		m[fmt.Sprintf("%d %s %s", g.IDSite, g.Segment, g.Date)] = fmt.Sprintf("%s raw=%d rep=%v", g.Kind, g.RawVisits, g.Repairable)
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
	if n := len(r.SegmentGaps); n != 4+5 {
		t.Errorf("beginning_of_time: %d segment gaps, want 9: %v", n, segMap(r))
	}

	// A queued segment day within the grace is being rebuilt: no gap.
	e.AddInvalidation(1, matomo.PeriodDay, "2026-11-11", "2026-11-11", testNow.Add(-time.Minute), 0)
	e.Exec("UPDATE {p}archive_invalidations SET name = ? WHERE idsite = 1 AND date1 = '2026-11-11'", ha)
	d = New(db, Options{Since: day("2026-11-01"), Until: day("2026-11-26"), Now: func() time.Time { return testNow },
		ProcessNewSegmentsFrom: SegmentsFromCreationTime})
	if r, err = d.Scan(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, ok := segMap(r)["1 pageTitle==p3 2026-11-11"]; ok || len(r.SegmentGaps) != 3 {
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
