package matomo_test

import (
	"context"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

// Issue 14 (segments): the stored-segment read keeps auto-archived, not
// deleted segments (hash from the row, or md5(urldecode(definition)));
// the segment done read returns only exact done<hash> day rows of the
// hashes asked, through a range on index_period_archived.
func TestSegmentReads(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-01-01")
	e.Exec(`CREATE TABLE {p}segment (idsegment int(11) NOT NULL AUTO_INCREMENT, name varchar(255) NOT NULL, definition text NOT NULL,
		hash char(32) DEFAULT NULL, login varchar(100) NOT NULL, enable_all_users tinyint(4) NOT NULL DEFAULT 0, enable_only_idsite int(11) DEFAULT NULL,
		auto_archive tinyint(4) NOT NULL DEFAULT 0, ts_created timestamp NULL DEFAULT NULL, ts_last_edit timestamp NULL DEFAULT NULL,
		deleted tinyint(4) NOT NULL DEFAULT 0, PRIMARY KEY (idsegment))`)
	ins := "INSERT INTO {p}segment (name, definition, hash, login, enable_only_idsite, auto_archive, ts_created, deleted) VALUES ('n', ?, ?, 'u', ?, ?, '2026-11-01 10:00:00', ?)"
	e.Exec(ins, "pageTitle==p3", "30e2319d24c0ce455e6c767e96ee5b37", 0, 1, 0)
	e.Exec(ins, "pageUrl=@%2Fshop", nil, 1, 1, 0) // no hash stored
	e.Exec(ins, "pageTitle==x", nil, 0, 0, 0)     // not auto-archived
	e.Exec(ins, "pageTitle==y", nil, 0, 1, 1)     // deleted
	p3 := "done30e2319d24c0ce455e6c767e96ee5b37"
	for d := 1; d <= 20; d++ {
		day := matomo.NewDate(2026, 11, d)
		e.AddDayArchive(1, day.String(), 1, day.Time().Add(25*time.Hour), 3)
	}
	a := e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: matomo.PeriodDay, Date1: "2026-11-03", Name: p3, Done: 4, TSArchived: ts("2026-11-04 01:00:00")})
	e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: matomo.PeriodDay, Date1: "2026-11-03", Name: p3 + ".VisitsSummary", TSArchived: ts("2026-11-04 01:00:00")})
	e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: matomo.PeriodWeek, Date1: "2026-11-02", Date2: "2026-11-08", Name: p3, TSArchived: ts("2026-11-09 01:00:00")})
	e.Exec("ANALYZE TABLE {p}archive_numeric_2026_11")
	db := open(t, e)
	ctx := context.Background()

	segs, err := db.StoredSegments(ctx)
	if err != nil || len(segs) != 2 {
		t.Fatalf("stored segments: %+v %v", segs, err)
	}
	if segs[0].Flag() != p3 || segs[1].Hash != matomo.SegmentHash("pageUrl=@%2Fshop") || segs[1].IDSite != 1 ||
		!segs[1].ForSite(1) || segs[1].ForSite(2) || !segs[0].ForSite(7) || segs[0].Created.IsZero() {
		t.Errorf("stored segments: %+v", segs)
	}
	if matomo.SegmentHash("pageUrl=@%2Fshop") != matomo.SegmentHash("pageUrl=@/shop") {
		t.Error("the hash is of the urldecoded definition")
	}
	var got []matomo.DoneFlag
	if err := db.SegmentDoneFlags(ctx, "archive_numeric_2026_11", []string{segs[0].Hash, segs[1].Hash}, func(h string, f matomo.DoneFlag) {
		if h != segs[0].Hash {
			t.Errorf("hash %q", h)
		}
		got = append(got, f)
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].IDArchive != a || got[0].Value != 4 || got[0].Date.String() != "2026-11-03" {
		t.Errorf("segment done rows: %+v", got)
	}
	if err := db.SegmentDoneFlags(ctx, "archive_numeric_2019_01", []string{segs[0].Hash}, func(string, matomo.DoneFlag) {}); err != nil {
		t.Errorf("a missing table holds none: %v", err)
	}
	if typ, key := explain(t, e.DB, db.SegmentDoneFlagsSQL("archive_numeric_2026_11", 2), p3, "done"+segs[1].Hash); (typ != "ref" && typ != "range") || key != "index_period_archived" {
		t.Errorf("segment done plan: type=%s key=%s, want a ref (period = 1) on index_period_archived", typ, key)
	}
	inv, err := db.SegmentDayInvalidations(ctx, matomo.NewDate(2026, 11, 1), matomo.NewDate(2026, 11, 30), []string{segs[0].Hash})
	if err != nil || len(inv) != 0 {
		t.Errorf("segment invalidations: %+v %v", inv, err)
	}
}

// Issue 14 (segment periods): the segment period read returns only the
// week, month and year done<hash> rows of the hashes asked, through
// index_period_archived; the segment period queue read only their rows.
func TestSegmentPeriodReads(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-01-01")
	p3 := "30e2319d24c0ce455e6c767e96ee5b37"
	for d := 1; d <= 20; d++ {
		day := matomo.NewDate(2026, 11, d)
		e.AddDayArchive(1, day.String(), 1, day.Time().Add(25*time.Hour), 3)
	}
	e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: matomo.PeriodDay, Date1: "2026-11-03", Name: "done" + p3, TSArchived: ts("2026-11-04 01:00:00")})
	w := e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: matomo.PeriodWeek, Date1: "2026-11-02", Date2: "2026-11-08", Name: "done" + p3, Done: 4, TSArchived: ts("2026-11-09 01:00:00")})
	e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: matomo.PeriodWeek, Date1: "2026-11-02", Date2: "2026-11-08", Name: "done" + p3 + ".VisitsSummary", TSArchived: ts("2026-11-09 01:00:00")})
	e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: matomo.PeriodWeek, Date1: "2026-11-02", Date2: "2026-11-08", TSArchived: ts("2026-11-09 01:00:00")})
	e.AddInvalidation(1, matomo.PeriodWeek, "2026-11-02", "2026-11-08", ts("2026-11-20 01:00:00"), 0)
	e.AddInvalidation(1, matomo.PeriodMonth, "2026-11-01", "2026-11-30", ts("2026-11-20 01:00:00"), 0)
	e.Exec("UPDATE {p}archive_invalidations SET name = ? WHERE period = 2", "done"+p3)
	e.Exec("ANALYZE TABLE {p}archive_numeric_2026_11")
	db := open(t, e)
	ctx := context.Background()
	var got []matomo.DoneFlag
	if err := db.SegmentPeriodFlags(ctx, "archive_numeric_2026_11", []string{p3}, func(h string, f matomo.DoneFlag) {
		if h != p3 {
			t.Errorf("hash %q", h)
		}
		got = append(got, f)
	}); err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].IDArchive != w || got[0].Period != matomo.PeriodWeek || got[0].Value != 4 || got[0].Date2.String() != "2026-11-08" {
		t.Errorf("segment period rows: %+v", got)
	}
	if typ, key := explain(t, e.DB, db.SegmentPeriodFlagsSQL("archive_numeric_2026_11", 1), "done"+p3); typ != "range" || key != "index_period_archived" {
		t.Errorf("segment period plan: type=%s key=%s, want a range on index_period_archived", typ, key)
	}
	inv, err := db.SegmentPeriodInvalidations(ctx, matomo.NewDate(2026, 1, 1), matomo.NewDate(2026, 11, 30), []string{p3})
	if err != nil || len(inv) != 1 || inv[0].Period != matomo.PeriodWeek || inv[0].Date.String() != "2026-11-02" || inv[0].Hash != p3 {
		t.Errorf("segment period invalidations: %+v %v", inv, err)
	}
}
