package matomo_test

import (
	"context"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

// Issue 14: the table read returns week, month and year done rows with
// their period and date2 (segment and plugin flags still excluded); the
// period-only read of a table before the window is a range on
// index_period_archived; queue rows and the newest flag of named periods
// are read per period.
func TestPeriodReads(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-01-01")
	for d := 1; d <= 28; d++ {
		day := matomo.NewDate(2026, 11, d)
		e.AddDayArchive(1, day.String(), 1, day.Time().Add(25*time.Hour), 3)
	}
	week := e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: matomo.PeriodWeek, Date1: "2026-11-09", Date2: "2026-11-15", TSArchived: ts("2026-11-16 01:00:00"), NbVisits: 21})
	old := e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: matomo.PeriodMonth, Date1: "2026-11-01", Date2: "2026-11-30", TSArchived: ts("2026-11-20 01:00:00"), NbVisits: 9})
	month := e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: matomo.PeriodMonth, Date1: "2026-11-01", Date2: "2026-11-30", Done: 4, TSArchived: ts("2026-12-01 01:00:00"), NbVisits: 84})
	e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: matomo.PeriodWeek, Date1: "2026-11-09", Date2: "2026-11-15", Name: "done30e2319d24c0ce455e6c767e96ee5b37", TSArchived: ts("2026-11-16 01:00:00"), NbVisits: 1})
	e.AddInvalidation(1, matomo.PeriodMonth, "2026-11-01", "2026-11-30", ts("2026-12-02 10:00:00"), 0)
	e.AddInvalidation(1, matomo.PeriodDay, "2026-11-03", "2026-11-03", ts("2026-12-02 10:00:00"), 0)
	e.Exec("ANALYZE TABLE {p}archive_numeric_2026_11")
	db := open(t, e)
	ctx := context.Background()

	periods := map[int64]matomo.DoneFlag{}
	days := 0
	if err := db.DoneFlags(ctx, []string{"archive_numeric_2026_11"}, nil, time.Time{}, func(f matomo.DoneFlag) {
		if f.Period == matomo.PeriodDay {
			days++
		} else {
			periods[f.IDArchive] = f
		}
	}); err != nil {
		t.Fatal(err)
	}
	if days != 28 || len(periods) != 3 || periods[week].Date2.String() != "2026-11-15" || periods[week].Period != matomo.PeriodWeek ||
		periods[month].Value != 4 || periods[old].Last().String() != "2026-11-30" {
		t.Fatalf("table read: %d days, periods %+v", days, periods)
	}
	// Good: written after the end of the period's last day, not its first.
	if !periods[week].Good(time.UTC) || periods[old].Good(time.UTC) {
		t.Errorf("Good: week %v (want true), month archived on the 20th %v (want false)", periods[week].Good(time.UTC), periods[old].Good(time.UTC))
	}
	var only []matomo.DoneFlag
	if err := db.PeriodFlags(ctx, "archive_numeric_2026_11", func(f matomo.DoneFlag) { only = append(only, f) }); err != nil || len(only) != 3 {
		t.Fatalf("period flags: %+v %v", only, err)
	}
	if err := db.PeriodFlags(ctx, "archive_numeric_2019_01", func(matomo.DoneFlag) {}); err != nil {
		t.Errorf("a missing table holds no period: %v", err)
	}
	if typ, key := explain(t, e.DB, db.PeriodFlagsSQL("archive_numeric_2026_11")); typ != "range" || key != "index_period_archived" {
		t.Errorf("period-only plan: type=%s key=%s, want range on index_period_archived", typ, key)
	}
	inv, err := db.PeriodInvalidations(ctx, matomo.NewDate(2026, 1, 1), matomo.NewDate(2026, 12, 31), nil)
	if err != nil || len(inv) != 1 || inv[0].Period != matomo.PeriodMonth || inv[0].Date.String() != "2026-11-01" {
		t.Fatalf("period invalidations: %+v %v", inv, err)
	}
	keys := []matomo.PeriodKey{{IDSite: 1, Period: matomo.PeriodMonth, Date: matomo.NewDate(2026, 11, 1)}, {IDSite: 1, Period: matomo.PeriodYear, Date: matomo.NewDate(2026, 1, 1)}}
	newest, err := db.NewestPeriodDone(ctx, keys)
	if err != nil || len(newest) != 1 || newest[keys[0]].IDArchive != month {
		t.Fatalf("newest period done: %+v %v", newest, err)
	}
}
