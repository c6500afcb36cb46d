package gapdetect

import (
	"maps"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

// periodMap renders only the week, month and year gaps.
func periodMap(r *Result) map[string]string {
	m := allGapMap(r)
	for k := range gapMap(r) {
		delete(m, k)
	}
	return m
}

func TestPeriodOf(t *testing.T) {
	for _, c := range []struct {
		p           int
		d, from, to string
	}{
		{matomo.PeriodWeek, "2026-11-01", "2026-10-26", "2026-11-01"}, // Sunday: the week began Monday in October
		{matomo.PeriodWeek, "2026-11-02", "2026-11-02", "2026-11-08"},
		{matomo.PeriodWeek, "2027-01-01", "2026-12-28", "2027-01-03"},
		{matomo.PeriodMonth, "2028-02-10", "2028-02-01", "2028-02-29"},
		{matomo.PeriodYear, "2026-07-04", "2026-01-01", "2026-12-31"},
		{matomo.PeriodDay, "2026-07-04", "2026-07-04", "2026-07-04"},
	} {
		f, l := PeriodOf(c.p, day(c.d))
		if f.String() != c.from || l.String() != c.to {
			t.Errorf("PeriodOf(%d, %s) = %s..%s, want %s..%s", c.p, c.d, f, l, c.from, c.to)
		}
	}
	if got := periodsFrom(day("2027-01-02")); got.String() != "2026-12-28" {
		t.Errorf("periodsFrom(2027-01-02) = %s: the week of the window's first day began in 2026", got)
	}
	if got := periodsFrom(day("2026-11-02")); got.String() != "2026-01-01" {
		t.Errorf("periodsFrom(2026-11-02) = %s, want the year's first day", got)
	}
}

// Each kind of period gap, on a UTC site, with day archives good
// everywhere: the day scan finds nothing, the period checks find exactly
// these.
func TestPeriodKinds(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-09-01")
	at := func(d string, h int) time.Time { return ts(d + " 00:00:00").Add(time.Duration(h) * time.Hour) }
	goodDay := func(d string, n int) {
		e.AddVisits(1, ts(d+" 12:00:00"), n)
		e.AddDayArchive(1, d, matomo.DoneOK, at(d, 25), int64(n))
	}
	period := func(p int, d1, d2 string, done int, tsArchived time.Time, nb int64) {
		e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: p, Date1: d1, Date2: d2, Done: done, TSArchived: tsArchived, NbVisits: nb})
	}
	// Good week, and its month (October) invalidated two days ago.
	goodDay("2026-10-05", 1)
	period(matomo.PeriodWeek, "2026-10-05", "2026-10-11", matomo.DoneOK, at("2026-10-10", 0), 1) // before its end: incomplete
	period(matomo.PeriodMonth, "2026-10-01", "2026-10-31", matomo.DoneInvalidated, at("2026-11-01", 1), 1)
	// A good week.
	goodDay("2026-11-03", 2)
	goodDay("2026-11-04", 3)
	period(matomo.PeriodWeek, "2026-11-02", "2026-11-08", matomo.DoneOK, at("2026-11-09", 1), 5)
	e.AddDayArchive(1, "2026-11-04", matomo.DoneOK, at("2026-11-25", 1), 3) // after its week, same count: not stale
	// A week with no archive.
	goodDay("2026-11-10", 1)
	// A week archived before one of its days was re-archived with more visits.
	goodDay("2026-11-17", 0)
	e.AddVisits(1, ts("2026-11-17 13:00:00"), 4)
	period(matomo.PeriodWeek, "2026-11-16", "2026-11-22", matomo.DoneOK, at("2026-11-23", 1), 3)
	e.AddDayArchive(1, "2026-11-17", matomo.DoneOK, at("2026-11-24", 1), 4)
	// The current week, month and year have no archive: not gaps.
	goodDay("2026-11-24", 2)

	d := New(openDB(t, e), Options{Now: func() time.Time { return testNow }})
	r := scan(t, d)
	if g := gapMap(r); len(g) != 0 {
		t.Errorf("day gaps: %v", g)
	}
	want := map[string]string{
		"1 week 2026-10-05":  "incomplete 1/1 repairable",
		"1 month 2026-10-01": "invalidated 1/1 repairable",
		"1 week 2026-11-09":  "missing 1/null repairable",
		"1 week 2026-11-16":  "stale 4/3 repairable",
	}
	if got := periodMap(r); !maps.Equal(got, want) {
		t.Errorf("period gaps:\n got %v\nwant %v", got, want)
	}
	for _, g := range r.Gaps {
		if _, last := PeriodOf(PeriodNumber(g.Period), g.Date); g.Date2 != last {
			t.Errorf("%s %s: date2 %s, want %s", g.Period, g.Date, g.Date2, last)
		}
	}
	// The rescan reads nothing new and says the same.
	if r2 := scan(t, d); r2.Stats.Full || !maps.Equal(periodMap(r2), want) {
		t.Errorf("incremental rescan (full=%v): %v", r2.Stats.Full, periodMap(r2))
	}
	// The week re-archived with the sum: no longer stale, seen incrementally.
	period(matomo.PeriodWeek, "2026-11-16", "2026-11-22", matomo.DoneOK, at("2026-11-25", 1), 4)
	delete(want, "1 week 2026-11-16")
	if r3 := scan(t, d); r3.Stats.Full || !maps.Equal(periodMap(r3), want) {
		t.Errorf("after re-archiving the week (full=%v): %v", r3.Stats.Full, periodMap(r3))
	}
	// A day of a week already checked is re-archived with one more visit:
	// the sum is read again (its facts moved) and the week is stale.
	e.AddVisits(1, ts("2026-11-04 15:00:00"), 1)
	e.AddDayArchive(1, "2026-11-04", matomo.DoneOK, at("2026-11-26", 1), 4)
	want["1 week 2026-11-02"] = "stale 6/5 repairable"
	if r4 := scan(t, d); r4.Stats.Full || !maps.Equal(periodMap(r4), want) {
		t.Errorf("after a day of a checked week got more visits (full=%v): %v", r4.Stats.Full, periodMap(r4))
	}
}

// A window that starts in December reads the year's archive from the table
// of its January (outside the window's tables), and a period is not
// repairable when Matomo would rebuild, with it, a day past the
// log-deletion limit without a known archive: invalidating December
// invalidates 2026, which rebuilds the months that have no archive
// (June to November here) from their days.
func TestPeriodsBeforeTheWindow(t *testing.T) {
	now := time.Date(2027, 1, 10, 12, 0, 0, 0, time.UTC)
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-06-01")
	for _, d := range []string{"2026-12-22", "2026-12-23"} {
		e.AddVisits(1, ts(d+" 12:00:00"), 2)
		e.AddDayArchive(1, d, matomo.DoneOK, ts(d+" 23:00:00").Add(2*time.Hour), 2)
	}
	e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: matomo.PeriodYear, Date1: "2026-01-01", Date2: "2026-12-31", TSArchived: ts("2027-01-01 02:00:00"), NbVisits: 4})
	e.AddArchive(matomotest.ArchiveRow{IDSite: 1, Period: matomo.PeriodWeek, Date1: "2026-12-21", Date2: "2026-12-27", TSArchived: ts("2026-12-28 02:00:00"), NbVisits: 4})
	e.SetOption("delete_logs_enable", "1").SetOption("delete_logs_older_than", "30")
	r := scan(t, New(openDB(t, e), Options{Now: func() time.Time { return now }, WindowDays: 20}))
	want := map[string]string{
		"1 month 2026-12-01": "missing 4/null unsafe: Matomo would rebuild 2026-06-01 with this month (it has no usable archive) and its raw data may be purged: rebuilding would lose reports",
	}
	if got := periodMap(r); !maps.Equal(got, want) {
		t.Errorf("period gaps:\n got %v\nwant %v", got, want)
	}
}

func TestPeriodRepairable(t *testing.T) {
	loc := time.UTC
	base := func() PeriodFacts {
		return PeriodFacts{DayFacts: DayFacts{Date: day("2026-11-09"), Loc: loc, Now: testNow, Raw: 5},
			Period: matomo.PeriodWeek, Last: day("2026-11-15")}
	}
	s := Safety{LastArchiveRun: testNow}
	for _, c := range []struct {
		name   string
		mod    func(*PeriodFacts)
		kind   Kind
		ok     bool
		reason string
	}{
		{"plain", func(*PeriodFacts) {}, Missing, true, ""},
		{"no raw", func(f *PeriodFacts) { f.Raw = 0 }, Missing, false, "no raw visits in log_visit for this week: nothing to rebuild from"},
		{"current", func(f *PeriodFacts) {
			f.Period, f.Date, f.Last = matomo.PeriodMonth, day("2026-11-01"), day("2026-11-30")
		}, Missing, false, "the current month: the scheduled core:archive run archives it"},
		{"at risk", func(f *PeriodFacts) { f.AtRisk = day("2026-11-01") }, Missing, false, "Matomo would rebuild 2026-11-01 with this week (it has no usable archive) and its raw data may be purged: rebuilding would lose reports"},
		{"half", func(f *PeriodFacts) { f.Archived = i64(11) }, Invalidated, false, "raw visits (5) are less than half of the archived 11: raw data may be partly purged, rebuilding would lose reports"},
		{"stale ignores half", func(f *PeriodFacts) { f.Archived = i64(11) }, Stale, true, ""},
		{"ended yesterday, no run since", func(f *PeriodFacts) {
			f.Date, f.Last = day("2026-11-20"), day("2026-11-26")
		}, Missing, false, "ended yesterday: waiting for the scheduled core:archive run"},
	} {
		f := base()
		c.mod(&f)
		ss := s
		if c.name == "ended yesterday, no run since" {
			ss.LastArchiveRun = ts("2026-11-26 20:00:00")
		}
		ok, why := PeriodRepairable(f, c.kind, ss)
		if ok != c.ok || why != c.reason {
			t.Errorf("%s: got %v %q, want %v %q", c.name, ok, why, c.ok, c.reason)
		}
	}
}

// Day archives without raw visits (purged raw data, or an install that
// never archived its periods): no week, month or year is a gap, and none
// is counted in log_visit: the site's first visit says there is nothing.
func TestPeriodsWithoutRawVisitsCostNoProbes(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "Europe/Berlin", "2026-09-01")
	for d := day("2026-09-01"); d <= day("2026-11-26"); d++ {
		e.AddDayArchive(1, d.String(), matomo.DoneOK, d.Time().Add(30*time.Hour), 5)
	}
	r := scan(t, New(openDB(t, e), Options{Now: func() time.Time { return testNow }, VerifyDays: -1})) // no day recounts
	if len(r.Gaps) != 0 || r.Stats.Probes != 0 {
		t.Errorf("gaps %v, %d probes: want none", allGapMap(r), r.Stats.Probes)
	}
}

// When every period is a suspect (its days were archived again after it,
// as after re-archiving days without their periods), the sum check reads
// each monthly table once: it once read every day of every suspect by
// point ranges, 400 to a statement, then their nb_visits by id, and took
// 27.7 s (798 statements) at the bench's large size; 2.3 s now. The stale
// months and weeks are still found.
func TestManySuspectPeriodsReadEachTableOnce(t *testing.T) {
	e := matomotest.New(t)
	const sites = 60
	e.Exec(`INSERT INTO {p}site (idsite, name, main_url, ts_created, sitesearch_keyword_parameters, sitesearch_category_parameters,
		timezone, currency, excluded_ips, excluded_parameters, excluded_user_agents, excluded_referrers, ` + "`group`" + `, type)
		SELECT seq, CONCAT('Site ', seq), '', '2026-09-01 00:00:00', '', '', 'UTC', 'USD', '', '', '', '', '', 'website' FROM seq_1_to_60`)
	// Day archives of October (2 visits each, archived on Nov 20, after
	// the month's archive of Nov 2) and the October month archive with
	// one visit fewer than its days' sum on every site: 60 stale months.
	e.AddDayArchive(1, "2026-10-01", matomo.DoneOK, ts("2026-11-20 01:00:00"), 2)
	e.Exec(`INSERT INTO {p}archive_numeric_2026_10 (idarchive, name, idsite, date1, date2, period, ts_archived, value)
		SELECT 1000 + s.seq * 100 + d.seq, n.name, s.seq, DATE('2026-09-30') + INTERVAL d.seq DAY, DATE('2026-09-30') + INTERVAL d.seq DAY, 1,
			'2026-11-20 01:00:00', IF(n.name = 'done', 1, 2)
		FROM seq_1_to_60 s, seq_1_to_31 d, (SELECT 'done' AS name UNION ALL SELECT 'nb_visits') n WHERE NOT (s.seq = 1 AND d.seq = 1)`)
	e.Exec(`INSERT INTO {p}archive_numeric_2026_10 (idarchive, name, idsite, date1, date2, period, ts_archived, value)
		SELECT 100000 + s.seq, n.name, s.seq, '2026-10-01', '2026-10-31', 3, '2026-11-02 01:00:00', IF(n.name = 'done', 1, 61)
		FROM seq_1_to_60 s, (SELECT 'done' AS name UNION ALL SELECT 'nb_visits') n`)
	var dayReads, nbReads int
	tr := func(q string, _ ...any) {
		if strings.Contains(q, "archive_numeric_2026_10") && strings.Contains(q, "name = 'nb_visits' AND idarchive IN") {
			nbReads++ // by archive id: the months' own, and once the days'
		}
		if strings.Contains(q, "archive_numeric_2026_10") && strings.Contains(strings.ReplaceAll(q, "d.", ""), "period = 1 AND name = 'done'") {
			dayReads++
		}
	}
	db, err := matomo.Open(e.Settings, matomo.DBOptions{Trace: tr})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	r := scan(t, New(db, Options{Now: func() time.Time { return testNow }, VerifyDays: -1}))
	stale := 0
	for _, g := range r.Gaps {
		if g.Period == PeriodMonth && g.Kind == Stale && g.Date == day("2026-10-01") && g.ArchivedVisits != nil && *g.ArchivedVisits == 61 {
			stale++
		}
	}
	if stale != sites {
		t.Errorf("%d stale Octobers, want %d: %v", stale, sites, periodMap(r))
	}
	if dayReads != 1 || nbReads != 1 {
		t.Errorf("October's day archives were read by %d statements and nb_visits by id by %d for the sum check, want 1 (the whole table with nb_visits) and 1 (the months' own)", dayReads, nbReads)
	}
}
