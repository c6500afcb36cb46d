package matomo_test

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

func ts(s string) time.Time {
	t, _ := time.Parse("2006-01-02 15:04:05", s)
	return t
}

func open(t *testing.T, e *matomotest.Env) *matomo.DB {
	t.Helper()
	db, err := matomo.Open(e.Settings, matomo.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	if err := db.Ping(context.Background()); err != nil {
		t.Fatal(err)
	}
	return db
}

func TestAdapter(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-10-28").AddSite(2, "UTC+5.5", "2026-11-01").AddSite(3, "Nowhere/Land", "2026-11-01")
	e.AddVisits(1, ts("2026-11-20 10:00:00"), 3).AddVisits(1, ts("2026-11-21 00:00:00"), 1).AddVisits(2, ts("2026-11-20 18:29:59"), 1)
	id := e.AddDayArchive(1, "2026-11-20", 1, ts("2026-11-21 01:00:00"), 3)
	e.AddDayArchive(1, "2026-10-31", 4, ts("2026-11-01 01:00:00"), 7)
	e.AddInvalidation(1, 1, "2026-10-31", "2026-10-31", ts("2026-11-26 10:00:00"), 0)
	e.AddInvalidation(1, 3, "2026-10-01", "2026-10-31", ts("2026-11-26 09:00:00"), 1)
	e.SetOption("version_core", "5.0.2").SetOption("delete_logs_enable", "1").SetOption("delete_logs_older_than", "90").
		SetOption("LastCompletedFullArchiving", "1795781616").SetOption("1kH1_report_to_invalidate_1_2026-11-26_10510", "1")
	db := open(t, e)
	ctx := context.Background()

	sites, err := db.Sites(ctx)
	if err != nil || len(sites) != 3 {
		t.Fatalf("sites: %v %v", sites, err)
	}
	if sites[1].Loc == nil || sites[1].Created.String() != "2026-11-01" || sites[2].TZErr == nil {
		t.Fatalf("site details: %+v", sites)
	}
	tables, err := db.ArchiveTables(ctx)
	if err != nil || len(tables) != 2 || tables[0].Name != "archive_numeric_2026_10" || tables[1].Month.String() != "2026-11-01" {
		t.Fatalf("archive tables: %+v %v", tables, err)
	}
	var flags []matomo.DoneFlag
	if err := db.DoneFlags(ctx, []string{"archive_numeric_2026_11", "archive_numeric_2026_10"}, nil, time.Time{}, func(f matomo.DoneFlag) { flags = append(flags, f) }); err != nil {
		t.Fatal(err)
	}
	if len(flags) != 2 || flags[0].IDArchive != id || flags[0].Value != 1 || flags[1].Value != 4 {
		t.Fatalf("flags: %+v", flags)
	}
	flags = nil
	db.DoneFlags(ctx, []string{"archive_numeric_2026_11", "archive_numeric_2026_10"}, []int{1}, ts("2026-11-10 00:00:00"), func(f matomo.DoneFlag) { flags = append(flags, f) })
	if len(flags) != 1 || flags[0].Date.String() != "2026-11-20" {
		t.Fatalf("flags since: %+v", flags)
	}
	nb, err := db.NbVisits(ctx, "archive_numeric_2026_11", []int64{id})
	if err != nil || nb[id] != 3 {
		t.Fatalf("nb_visits: %v %v", nb, err)
	}
	loc, _ := matomo.LoadLocation("UTC+5.5")
	d, _ := matomo.ParseDate("2026-11-20")
	s2, e2 := matomo.DayBounds(loc, d)
	s1, e1 := matomo.DayBounds(time.UTC, d)
	counts, err := db.CountVisits(ctx, []matomo.Probe{{IDSite: 1, From: s1, To: e1}, {IDSite: 2, From: s2, To: e2}, {IDSite: 1, From: e1, To: e1.Add(24 * time.Hour)}})
	if err != nil || counts[0] != 3 || counts[1] != 1 || counts[2] != 1 {
		t.Fatalf("counts: %v %v", counts, err)
	}
	fv, err := db.FirstVisits(ctx, []int{1, 2, 3})
	if err != nil || len(fv) != 2 || !fv[2].Equal(ts("2026-11-20 18:29:59")) {
		t.Fatalf("first visits: %v %v", fv, err)
	}
	o, err := db.ReadOptions(ctx)
	if err != nil || o.VersionCore != "5.0.2" || !*o.DeleteLogsEnable || *o.DeleteLogsOlderThan != 90 ||
		o.LastCompletedFullArchiving.Unix() != 1795781616 || o.ReportsToInvalidate != 1 {
		t.Fatalf("options: %+v %v", o, err)
	}
	b, err := db.InvalidationBacklog(ctx)
	if err != nil || !b.Present || b.Queued != 1 || b.InProgress != 1 || !b.OldestQueued.Equal(ts("2026-11-26 10:00:00")) {
		t.Fatalf("backlog: %+v %v", b, err)
	}
	inv, ok, err := db.DayInvalidations(ctx, matomo.NewDate(2026, 10, 1), matomo.NewDate(2026, 11, 30), nil)
	if err != nil || !ok || len(inv) != 1 || inv[0].Date.String() != "2026-10-31" {
		t.Fatalf("day invalidations: %+v %v %v", inv, ok, err)
	}
	present, err := db.TablesPresent(ctx)
	if err != nil || !present["log_visit"] || !present["archive_invalidations"] {
		t.Fatalf("tables: %v %v", present, err)
	}
}

func TestUnreachableDBErrorHidesPassword(t *testing.T) {
	db, err := matomo.Open(matomo.DBSettings{Host: "127.0.0.1", Port: 1, User: "u", Password: "hunter2", DBName: "x", TablesPrefix: "matomo_"},
		matomo.DBOptions{ConnectTimeout: 200 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.Ping(context.Background())
	if err == nil || strings.Contains(err.Error(), "hunter2") || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("ping error: %v", err)
	}
}

// explain returns (type, key) of the first EXPLAIN row for q.
func explain(t *testing.T, db *sql.DB, q string, args ...any) (string, string) {
	t.Helper()
	rows, err := db.Query("EXPLAIN "+q, args...)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	if !rows.Next() {
		t.Fatal("no EXPLAIN row")
	}
	vals := make([]sql.NullString, len(cols))
	ptrs := make([]any, len(cols))
	for i := range vals {
		ptrs[i] = &vals[i]
	}
	rows.Scan(ptrs...)
	var typ, key string
	for i, c := range cols {
		switch c {
		case "type":
			typ = vals[i].String
		case "key":
			key = vals[i].String
		}
	}
	return typ, key
}

// The gap probe must be an index range seek on index_idsite_datetime, and
// the incremental read a range on index_period_archived: never a scan.
func TestQueryPlans(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-01-01").AddSite(2, "UTC", "2026-01-01")
	for d := 1; d <= 28; d++ {
		day := matomo.NewDate(2026, 11, d)
		e.AddVisits(1, day.Time().Add(10*time.Hour), 3).AddVisits(2, day.Time().Add(11*time.Hour), 2)
		e.AddDayArchive(1, day.String(), 1, day.Time().Add(25*time.Hour), 3)
	}
	e.Exec("ANALYZE TABLE {p}log_visit, {p}archive_numeric_2026_11")
	db := open(t, e)
	d := matomo.NewDate(2026, 11, 10)
	s, en := matomo.DayBounds(time.UTC, d)
	probe := db.ProbeSQL([]matomo.Probe{{IDSite: 1, From: s, To: en}, {IDSite: 2, From: s, To: en}})
	if typ, key := explain(t, e.DB, probe); typ != "range" || key != "index_idsite_datetime" {
		t.Errorf("probe plan: type=%s key=%s, want range on index_idsite_datetime", typ, key)
	}
	spans := db.VisitTimesSQL([]matomo.SiteSpans{{IDSite: 1, Spans: []matomo.Span{{From: s, To: en}, {From: en.Add(48 * time.Hour), To: en.Add(72 * time.Hour)}}}})
	if typ, key := explain(t, e.DB, spans); typ != "range" || key != "index_idsite_datetime" {
		t.Errorf("visit-times plan: type=%s key=%s, want range on index_idsite_datetime", typ, key)
	}
	var got []time.Time
	if err := db.VisitTimes(context.Background(), []matomo.SiteSpans{{IDSite: 1, Spans: []matomo.Span{{From: s, To: en}}}}, func(id int, at time.Time) { got = append(got, at) }); err != nil || len(got) != 3 {
		t.Errorf("visit times: %v %v", got, err)
	}
	if typ, key := explain(t, e.DB, db.DoneFlagsSinceSQL("archive_numeric_2026_11", nil), ts("2026-11-27 00:00:00")); typ != "range" || key != "index_period_archived" {
		t.Errorf("incremental plan: type=%s key=%s, want range on index_period_archived", typ, key)
	}
	if typ, key := explain(t, e.DB, db.NewVisitSlotsSQL(), 10, 20); typ != "range" || key != "PRIMARY" {
		t.Errorf("new-visits plan: type=%s key=%s, want range on PRIMARY", typ, key)
	}
	keys := []matomo.SiteDate{{IDSite: 1, Date: d}, {IDSite: 2, Date: d.AddDays(1)}, {IDSite: 2, Date: d.AddDays(2)}}
	if typ, key := explain(t, e.DB, db.DoneFlagsForSQL("archive_numeric_2026_11", matomo.Spans(keys))); typ != "range" || key != "index_idsite_dates_period" {
		t.Errorf("targeted plan: type=%s key=%s, want range on index_idsite_dates_period", typ, key)
	}
	if typ, key := explain(t, e.DB, db.DayVisitsSQL("archive_numeric_2026_11", matomo.Spans(keys))); typ != "range" || key != "index_idsite_dates_period" {
		t.Errorf("day visits by runs: type=%s key=%s, want range on index_idsite_dates_period", typ, key)
	}
}

// Site-days fold into runs of consecutive days per site; the runs read
// exactly the rows of those days, with nb_visits by archive.
func TestSpansAndDayVisits(t *testing.T) {
	d, _ := matomo.ParseDate("2026-11-10")
	got := matomo.Spans([]matomo.SiteDate{{2, d.AddDays(1)}, {1, d}, {2, d}, {1, d.AddDays(2)}, {2, d.AddDays(1)}, {1, d.AddDays(1)}, {1, d.AddDays(4)}})
	want := []matomo.DateSpan{{1, d, d.AddDays(2)}, {1, d.AddDays(4), d.AddDays(4)}, {2, d, d.AddDays(1)}}
	if !slices.Equal(got, want) {
		t.Errorf("Spans: %v, want %v", got, want)
	}
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-01-01")
	for i := range 6 {
		e.AddDayArchive(1, d.AddDays(i).String(), 1, ts("2026-11-20 01:00:00"), int64(10+i))
	}
	e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: matomo.PeriodDay, Date1: d.AddDays(1).String(), Done: 4, TSArchived: ts("2026-11-21 01:00:00"), NbVisits: -1})
	db := open(t, e)
	read := func(spans []matomo.DateSpan) map[string]string {
		out := map[string]string{}
		err := db.DayVisits(context.Background(), "archive_numeric_2026_11", spans, func(f matomo.DoneFlag, nb int64, ok bool) {
			out[fmt.Sprintf("%s/%d", f.Date, f.Value)] = fmt.Sprint(nb, ok)
		})
		if err != nil {
			t.Fatal(err)
		}
		return out
	}
	if got := read(matomo.Spans([]matomo.SiteDate{{1, d}, {1, d.AddDays(1)}, {1, d.AddDays(4)}})); len(got) != 4 ||
		got["2026-11-10/1"] != "10 true" || got["2026-11-11/1"] != "11 true" || got["2026-11-11/4"] != "0 false" || got["2026-11-14/1"] != "14 true" {
		t.Errorf("by runs: %v", got)
	}
	if got := read(nil); len(got) != 7 || got["2026-11-15/1"] != "15 true" {
		t.Errorf("whole table: %v", got)
	}
	if err := db.DayVisits(context.Background(), "archive_numeric_2020_01", nil, func(matomo.DoneFlag, int64, bool) {}); err != nil {
		t.Errorf("missing table: %v", err)
	}
}

// The change signals: table signatures move on insert, delete, update in
// place and re-creation; tracker options parse, junk names are skipped;
// visit bounds and new-visit slots.
func TestChangeSignals(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-01-01")
	e.AddDayArchive(1, "2026-11-10", 1, ts("2026-11-11 01:00:00"), 3)
	db := open(t, e)
	ctx := context.Background()
	sig := func() matomo.TableSig {
		t.Helper()
		sigs, err := db.ArchiveTableSigs(ctx)
		if err != nil || len(sigs) != 1 || sigs[0].Name != "archive_numeric_2026_11" {
			t.Fatalf("sigs %+v, %v", sigs, err)
		}
		return sigs[0]
	}
	s0 := sig()
	if s0.Created.IsZero() || !s0.Recent {
		t.Errorf("fresh table: %+v (want a creation time, recent)", s0)
	}
	e.Exec("UPDATE {p}archive_numeric_2026_11 SET value = 4 WHERE name = 'done'")
	if s := sig(); s.Updated.IsZero() || !s.Recent {
		t.Errorf("after an update in place: %+v", s)
	}
	seq := sig().Seq
	e.AddDayArchive(1, "2026-11-11", 1, ts("2026-11-12 01:00:00"), 3)
	if s := sig(); s.Seq != seq+1 || seq == 0 {
		t.Errorf("sequence: %d after a new archive, %d before", s.Seq, seq)
	}
	e.Exec("DROP TABLE {p}archive_numeric_2026_11")
	e.AddDayArchive(1, "2026-11-10", 1, ts("2026-11-11 01:00:00"), 3)
	if s := sig(); s.Created.Before(s0.Created) {
		t.Errorf("re-created table: created %v before %v", s.Created, s0.Created)
	}

	e.SetOption("1kH1_report_to_invalidate_1_2026-11-26_10510", "1").
		SetOption("report_to_invalidate_12_2026-02-03", "1").
		SetOption("xx_report_to_invalidate_abc_2026-13-45_1", "1").
		SetOption("report_to_invalidate_1_2026-02-30_7", "1")
	reps, err := db.ReportsToInvalidate(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(reps) != 2 || reps[0].IDSite+reps[1].IDSite != 13 {
		t.Errorf("reports: %+v (want sites 1 and 12; junk names and impossible dates skipped)", reps)
	}

	e.AddVisits(1, ts("2026-11-10 10:07:00"), 2)
	b, err := db.ReadVisitBounds(ctx)
	if err != nil || b.Min != 1 || b.Max != 2 || b.Created.IsZero() {
		t.Fatalf("bounds %+v, %v", b, err)
	}
	e.AddVisits(1, ts("2026-11-12 23:59:00"), 1)
	slots, err := db.NewVisitSlots(ctx, b.Max, b.Max+1)
	want := ts("2026-11-12 23:45:00").Unix() / matomo.SlotSeconds
	if err != nil || len(slots) != 1 || slots[0].IDSite != 1 || slots[0].Slot != want {
		t.Errorf("slots %+v, %v; want slot %d", slots, err, want)
	}
}

// NewestDone + Good: the newest plain done flag decides, segment flags do
// not count, and an archive written before the local day ended is not good.
func TestNewestDoneGood(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "America/New_York", "2026-01-01")
	e.AddDayArchive(1, "2026-11-10", 1, ts("2026-11-11 06:00:00"), 3)
	e.AddDayArchive(1, "2026-11-10", 4, ts("2026-11-12 06:00:00"), 3) // newer, invalidated
	e.AddDayArchive(1, "2026-11-11", 1, ts("2026-11-12 04:30:00"), 3) // before 05:00 UTC: the local day had not ended
	e.AddDayArchive(1, "2026-11-12", 1, ts("2026-11-13 05:00:00"), 3)
	e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: 1, Date1: "2026-11-13", Name: "done.VisitsSummary", TSArchived: ts("2026-11-14 06:00:00"), NbVisits: 1})
	db := open(t, e)
	loc, _ := matomo.LoadLocation("America/New_York")
	var keys []matomo.SiteDate
	for d := 10; d <= 13; d++ {
		keys = append(keys, matomo.SiteDate{IDSite: 1, Date: matomo.NewDate(2026, 11, d)})
	}
	newest, err := db.NewestDone(context.Background(), keys)
	if err != nil {
		t.Fatal(err)
	}
	want := []bool{false, false, true, false}
	for i, k := range keys {
		f, ok := newest[k]
		if got := ok && f.Good(loc); got != want[i] {
			t.Errorf("%s: good %v (%+v), want %v", k.Date, got, f, want[i])
		}
	}
	if _, ok := newest[keys[3]]; ok {
		t.Error("a plugin done flag counted as the day's archive")
	}
}
