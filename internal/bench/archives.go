package main

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

// Segment archives beside every plain archive: the whole archive of a
// stored auto-archived segment, visitorType==new (storedSegment; its hash
// is md5 of the definition), which matomod checks, and VisitFrequency's
// plugin archive of its other built-in segment (observed in
// fixtures/tables/a_archive_numeric_after_first_run.tsv), which it never
// reads.
var segmentDone = []string{
	"done" + storedSegmentHash,
	"donefea44bece172bc9696ae57c26888bf8a.VisitsSummary",
}

// The stored segment of the bench (SegmentEditor.add with auto-archive).
const (
	storedSegmentDefinition = "visitorType==new"
	storedSegmentHash       = "90a5a511e1974bca37613b6daec137ba"
)

// insertStoredSegment registers the stored segment for all sites, created
// before the first seeded day (process_new_segments_from is Matomo's
// default, beginning_of_time: every day of the window is due).
func (ds *dataset) insertStoredSegment(ctx context.Context) error {
	first := ds.sites[0].first
	for _, s := range ds.sites {
		first = min(first, s.first)
	}
	if err := ds.exec(ctx, strings.ReplaceAll(matomotest.SegmentDDL, "{p}", ds.env.Prefix)); err != nil {
		return err
	}
	return ds.exec(ctx, fmt.Sprintf("INSERT INTO %s (name, definition, hash, login, enable_all_users, enable_only_idsite, auto_archive, ts_created, deleted)"+
		" VALUES ('New visitors', '%s', '%s', 'admin', 1, 0, 1, '%s', 0)",
		ds.table("segment"), storedSegmentDefinition, storedSegmentHash, first.AddDays(-3).Time().Format(sqlTime)))
}

type metric struct {
	name   string
	factor float64 // value = round(nb_visits × factor); Matomo skips zero values
}

// plainMetrics are numeric records of a plain day archive in the order
// --archive-rows takes them (nb_visits first: the detector reads it).
var plainMetrics = []metric{
	{"nb_visits", 1}, {"nb_actions", 3.1}, {"nb_uniq_visitors", 0.8}, {"sum_visit_length", 190},
	{"bounce_count", 0.45}, {"max_actions", 0.2}, {"Actions_nb_pageviews", 2.6}, {"Actions_nb_uniq_pageviews", 2.1},
	{"Referrers_distinctKeywords", 0.05}, {"Referrers_distinctWebsites", 0.03}, {"Referrers_distinctWebsitesUrls", 0.05},
	{"UserCountry_distinctCountries", 0.02}, {"Actions_nb_outlinks", 0.12}, {"Actions_nb_uniq_outlinks", 0.1},
	{"Referrers_distinctSearchEngines", 0.02}, {"PagePerformance_network_time", 30}, {"PagePerformance_servery_time", 120},
	{"PagePerformance_transfer_time", 20}, {"PagePerformance_domprocessing_time", 300}, {"PagePerformance_domcompletion_time", 200},
	{"PagePerformance_onload_time", 10}, {"PagePerformance_pageload_time", 700}, {"nb_visits_converted", 0.03},
	{"Goal_nb_conversions", 0.03}, {"Actions_nb_searches", 0.06}, {"Actions_nb_keywords", 0.04}, {"Actions_nb_downloads", 0.04},
	{"Actions_nb_uniq_downloads", 0.03}, {"Referrers_distinctSocialNetworks", 0.01}, {"Goal_revenue", 1.7},
	{"nb_users", 0.05}, {"Referrers_distinctCampaigns", 0.005},
}

// segmentMetrics are the VisitsSummary records of each segment archive;
// share splits nb_visits between the two segments.
var segmentMetrics = []metric{
	{"nb_visits", 1}, {"nb_actions", 3.1}, {"nb_uniq_visitors", 0.8}, {"sum_visit_length", 190},
	{"bounce_count", 0.45}, {"max_actions", 0.2}, {"nb_visits_converted", 0.03}, {"nb_users", 0.05},
}
var segmentShare = []float64{0.35, 0.65}

// archRow is one archive of bench_arch (the plain one and, with segments,
// the two segment archives at base+1 and base+2).
type archRow struct {
	tbl          string // YYYY_MM of date1
	base         int32
	idsite       int
	date1, date2 matomo.Date
	period       int
	ts           time.Time
	done, segs   int // done value of the plain and of the segment archives
	n            int32
}

// archiveTS is when a good archive of day d was written: shortly after
// the local day ended (the hourly cron), never after the bench clock.
func (ds *dataset) archiveTS(s *site, d matomo.Date, end time.Time) time.Time {
	ts := end.Add(time.Duration(5+(s.id*7+int(d))%55) * time.Minute)
	if ts.After(ds.now) {
		ts = ds.now
	}
	return ts
}

// writeArchives writes the numeric archive rows: plain, segment and (if
// periods) week/month/year archives, through bench_arch × bench_metric,
// one INSERT … SELECT per chunk of a monthly table; then the sequence rows
// and the invalidation queue rows of the invalidated days.
func (ds *dataset) writeArchives(ctx context.Context) error {
	for _, q := range []string{
		`CREATE TABLE bench_metric (kind tinyint NOT NULL, name varchar(190) NOT NULL, factor double NOT NULL, isdone tinyint NOT NULL, PRIMARY KEY (kind, name)) ENGINE=InnoDB`,
		`CREATE TABLE bench_arch (tbl char(7) NOT NULL, base int NOT NULL, idsite int NOT NULL, date1 date NOT NULL, date2 date NOT NULL,
  period tinyint NOT NULL, ts datetime NOT NULL, done tinyint NOT NULL, segdone tinyint NOT NULL, n int NOT NULL, PRIMARY KEY (tbl, base)) ENGINE=InnoDB`,
	} {
		if err := ds.exec(ctx, q); err != nil {
			return err
		}
	}
	if ds.segments {
		if err := ds.insertStoredSegment(ctx); err != nil {
			return err
		}
	}
	var mq strings.Builder
	mq.WriteString("INSERT INTO bench_metric VALUES (0, 'done', 0, 1)")
	for _, m := range plainMetrics[:ds.archRows-1] {
		fmt.Fprintf(&mq, ", (0, '%s', %g, 0)", m.name, m.factor)
	}
	if ds.segments {
		for k, name := range segmentDone {
			fmt.Fprintf(&mq, ", (%d, '%s', 0, 1)", k+1, name)
			for _, m := range segmentMetrics {
				fmt.Fprintf(&mq, ", (%d, '%s', %g, 0)", k+1, m.name, m.factor*segmentShare[k])
			}
		}
	}
	if err := ds.exec(ctx, mq.String()); err != nil {
		return err
	}

	// Archives in Go, then into bench_arch. idarchive counts per table.
	next := map[string]int32{}
	step := int32(1)
	if ds.segments {
		step = 3
	}
	alloc := func(tbl string) int32 {
		b := next[tbl] + 1
		next[tbl] = b + step - 1
		return b
	}
	tblOf := func(d matomo.Date) string { return d.Time().Format("2006_01") }
	var invalidated []archRow
	gen := func(emit func(string) bool) {
		var b strings.Builder
		rows := 0
		add := func(a archRow) bool {
			if rows == 0 {
				b.WriteString("INSERT INTO bench_arch VALUES ")
			} else {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "('%s',%d,%d,'%s','%s',%d,'%s',%d,%d,%d)", a.tbl, a.base, a.idsite, a.date1, a.date2, a.period, a.ts.Format(sqlTime), a.done, a.segs, a.n)
			if rows++; rows == 3000 {
				ok := emit(b.String())
				b.Reset()
				rows = 0
				return ok
			}
			return true
		}
		for _, s := range ds.sites {
			for i, st := range s.state {
				if st == stNone {
					continue
				}
				d := s.date(i)
				tbl := tblOf(d)
				base := alloc(tbl) // missing archives leave a hole, as deleted ones do
				if st == stMissing {
					continue
				}
				s.base[i] = base
				_, end := matomo.DayBounds(s.loc, d)
				a := archRow{tbl: tbl, base: base, idsite: s.id, date1: d, date2: d, period: matomo.PeriodDay,
					ts: ds.archiveTS(s, d, end), done: matomo.DoneOK, segs: matomo.DoneOK, n: s.n[i]}
				if ds.nominal > 0 {
					a.n = ds.nominal
				}
				switch st {
				case stInvalidated:
					a.done, a.segs = matomo.DoneInvalidated, matomo.DoneInvalidated
					invalidated = append(invalidated, a)
				case stFailed:
					a.done, a.ts = matomo.DoneError, end.Add(10*time.Minute)
				case stIncomplete:
					a.ts = end.Add(-3 * time.Hour)
				}
				if !add(a) {
					return
				}
			}
			if ds.periods {
				for _, a := range ds.periodArchives(s) {
					a.base = alloc(a.tbl)
					if !add(a) {
						return
					}
				}
			}
		}
		if rows > 0 {
			emit(b.String())
		}
	}
	if err := ds.execStream(ctx, 2, gen); err != nil {
		return err
	}

	tables := make([]string, 0, len(next))
	for t := range next {
		tables = append(tables, t)
	}
	sort.Strings(tables)
	for _, t := range tables {
		var y, m int
		fmt.Sscanf(t, "%d_%d", &y, &m)
		if err := matomotest.CreateArchiveTables(ctx, ds.env.DB, ds.env.Prefix, y, m); err != nil {
			return err
		}
	}
	// Chunks of ~20k archives; the two workers usually fill different tables.
	err := ds.execStream(ctx, 2, func(emit func(string) bool) {
		for _, t := range tables {
			for lo := int32(1); lo <= next[t]; lo += 20_000 * step {
				q := fmt.Sprintf(`INSERT INTO %s (idarchive, name, idsite, date1, date2, period, ts_archived, value)
SELECT a.base + m.kind, m.name, a.idsite, a.date1, a.date2, a.period, a.ts,
 IF(m.isdone = 1, IF(m.kind = 0, a.done, a.segdone), ROUND(a.n * m.factor))
FROM bench_arch a STRAIGHT_JOIN bench_metric m
WHERE a.tbl = '%s' AND a.base BETWEEN %d AND %d AND (m.isdone = 1 OR ROUND(a.n * m.factor) >= 1)`,
					ds.table("archive_numeric_"+t), t, lo, lo+20_000*step-1)
				if !emit(q) {
					return
				}
			}
		}
	})
	if err != nil {
		return err
	}
	// Matomo allocates idarchive through the sequence table: keep it right
	// for anything (the simulator) that archives into this database later.
	var sq strings.Builder
	sq.WriteString("INSERT INTO " + ds.table("sequence") + " (name, value) VALUES ")
	for i, t := range tables {
		if i > 0 {
			sq.WriteByte(',')
		}
		fmt.Fprintf(&sq, "('%sarchive_numeric_%s', %d)", ds.env.Prefix, t, next[t])
	}
	if err := ds.exec(ctx, sq.String()); err != nil {
		return err
	}
	if err := ds.queue(ctx, invalidated, ds.now.Add(-3*time.Hour)); err != nil {
		return err
	}
	for _, t := range tables {
		if err := ds.exec(ctx, "ANALYZE TABLE "+ds.table("archive_numeric_"+t)); err != nil {
			return err
		}
	}
	return ds.exec(ctx, "INSERT INTO "+ds.table("option")+" (option_name, option_value, autoload) VALUES ('version_core', '"+matomotest.MatomoVersion+"', 1)")
}

// queue writes archive_invalidations rows (status 0) for day archives, as
// core:invalidate-report-data does.
func (ds *dataset) queue(ctx context.Context, rows []archRow, at time.Time) error {
	for off := 0; off < len(rows); off += 2000 {
		var b strings.Builder
		b.WriteString("INSERT INTO " + ds.table("archive_invalidations") + " (idarchive, name, idsite, date1, date2, period, ts_invalidated, status) VALUES ")
		for i, a := range rows[off:min(off+2000, len(rows))] {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(&b, "(%d, 'done', %d, '%s', '%s', 1, '%s', 0)", a.base, a.idsite, a.date1, a.date2, at.UTC().Format(sqlTime))
		}
		if err := ds.exec(ctx, b.String()); err != nil {
			return err
		}
	}
	return nil
}

// periodArchives are a site's week, month and year archives over the
// seeded days (the detector skips them; they make the tables realistic).
func (ds *dataset) periodArchives(s *site) []archRow {
	type key struct {
		period int
		d1     matomo.Date
	}
	acc := map[key]*archRow{}
	var order []key
	for i, n := range s.n {
		if ds.nominal > 0 {
			n = ds.nominal // archive-only: every day archived with the nominal count
		}
		if n == 0 {
			continue
		}
		d := s.date(i)
		t := d.Time()
		monday := d.AddDays(-((int(t.Weekday()) + 6) % 7))
		month := d.Month()
		year := matomo.NewDate(t.Year(), 1, 1)
		for _, k := range []key{{matomo.PeriodWeek, monday}, {matomo.PeriodMonth, month}, {matomo.PeriodYear, year}} {
			a := acc[k]
			if a == nil {
				var d2 matomo.Date
				switch k.period {
				case matomo.PeriodWeek:
					d2 = monday.AddDays(6)
				case matomo.PeriodMonth:
					d2 = month.AddDays(40).Month().AddDays(-1)
				default:
					d2 = matomo.NewDate(t.Year(), 12, 31)
				}
				a = &archRow{tbl: k.d1.Time().Format("2006_01"), idsite: s.id, date1: k.d1, date2: d2, period: k.period,
					done: matomo.DoneOK, segs: matomo.DoneOK}
				acc[k] = a
				order = append(order, k)
			}
			a.n += n
		}
	}
	out := make([]archRow, 0, len(order))
	for _, k := range order {
		// Written after the period ended (the cron's first run after its
		// last day), whether or not that day had visits: a week whose
		// Sunday was quiet is still complete.
		a := acc[k]
		_, end := matomo.DayBounds(s.loc, a.date2)
		a.ts = ds.archiveTS(s, a.date2, end.Add(time.Hour))
		out = append(out, *a)
	}
	return out
}
