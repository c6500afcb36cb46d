package main

import (
	"context"
	"database/sql"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/matomod/matomod/internal/matomo"
)

// naiveTmpTable is the naive query's session tmp_table_size and
// max_heap_table_size (1 GiB).
const naiveTmpTable = "1073741824"

// naive is the query an admin would write: count every visit per site and
// day in one GROUP BY over log_visit, and anti-join the day done flags.
// It shares no code with the detector (only the time zone name parser), so
// agreeing with it is evidence.
type naive struct {
	db     *sql.DB
	prefix string
	now    time.Time
	window int
}

func openNaive(dsn, dbName, prefix string, now time.Time, window int) (*naive, error) {
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("MATOMOD_TEST_DSN: %w", err)
	}
	c.DBName = dbName
	c.ParseTime = true
	c.Loc = time.UTC
	if c.Params == nil {
		c.Params = map[string]string{}
	}
	c.Params["time_zone"] = "'+00:00'"
	// The setting a DBA gives this query: its GROUP BY has millions of
	// groups (site × UTC hour); with the server's default 16 MiB the
	// temporary table spills to disk and the query measures the disk.
	c.Params["tmp_table_size"] = naiveTmpTable
	c.Params["max_heap_table_size"] = naiveTmpTable
	db, err := sql.Open("mysql", c.FormatDSN())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(2)
	return &naive{db: db, prefix: prefix, now: now, window: window}, nil
}

func (n *naive) t(name string) string { return "`" + n.prefix + name + "`" }

// nsite is one site as the naive code sees it.
type nsite struct {
	loc          *time.Location
	quarter      bool
	since, until matomo.Date
	counts       []int64 // by date - since
}

// naiveResult is one naive run.
type naiveResult struct {
	dur    time.Duration
	trips  int
	sites  map[int]*nsite
	gaps   map[matomo.SiteDate]bool
	groups int // rows the GROUP BY returned
}

// localEnd is the first instant after site-local day d.
func localEnd(loc *time.Location, d matomo.Date) time.Time {
	t := d.AddDays(1).Time()
	return time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
}

// runRetry is run, tried once more after a server error: a multi-minute
// GROUP BY spills to an on-disk temporary table, which a tmp cleaner on a
// shared host can remove under the server.
func (n *naive) runRetry(ctx context.Context, utc bool, progress func(string, ...any)) (*naiveResult, error) {
	r, err := n.run(ctx, utc)
	if err != nil && ctx.Err() == nil {
		progress("naive query failed, retrying once: %v", err)
		r, err = n.run(ctx, utc)
	}
	return r, err
}

// run executes the naive query. utc picks the common wrong variant that
// groups by DATE(visit_last_action_time), i.e. by UTC day.
func (n *naive) run(ctx context.Context, utc bool) (*naiveResult, error) {
	start := time.Now()
	r := &naiveResult{sites: map[int]*nsite{}, gaps: map[matomo.SiteDate]bool{}}
	// 1. sites and their windows (the same rule as matomod's: the last
	// `window` site-local days before today, not before the site existed).
	rows, err := n.db.QueryContext(ctx, "SELECT idsite, timezone, ts_created FROM "+n.t("site"))
	r.trips++
	if err != nil {
		return nil, err
	}
	var from time.Time
	var quarter []string
	for rows.Next() {
		var id int
		var tz string
		var created sql.NullTime
		if err := rows.Scan(&id, &tz, &created); err != nil {
			rows.Close()
			return nil, err
		}
		loc, err := matomo.LoadLocation(tz)
		if err != nil {
			rows.Close()
			return nil, err
		}
		s := &nsite{loc: loc, until: matomo.DateOf(n.now.In(loc)).AddDays(-1)}
		s.since = s.until.AddDays(1 - n.window)
		if created.Valid && matomo.DateOf(created.Time.UTC()) > s.since {
			s.since = matomo.DateOf(created.Time.UTC())
		}
		s.counts = make([]int64, int(s.until-s.since)+1)
		t := s.since.Time()
		first := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, loc)
		if from.IsZero() || first.Before(from) {
			from = first
		}
		// Whole-hour buckets fold into local days unless the zone has a
		// half- or quarter-hour offset in the window.
		for d := s.since; d <= s.until+1; d++ {
			if localEnd(loc, d.AddDays(-1)).Unix()%3600 != 0 {
				s.quarter = true
			}
		}
		if s.quarter && !utc {
			quarter = append(quarter, strconv.Itoa(id))
		}
		r.sites[id] = s
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	// 2. the GROUP BY over log_visit.
	var q string
	if utc {
		q = "SELECT idsite, DATE(visit_last_action_time), COUNT(*) FROM " + n.t("log_visit") +
			" WHERE visit_last_action_time >= ? GROUP BY 1, 2 ORDER BY NULL"
	} else {
		size := "3600"
		if len(quarter) > 0 {
			size = "IF(idsite IN (" + strings.Join(quarter, ",") + "), 900, 3600)"
		}
		q = "SELECT idsite, FLOOR(UNIX_TIMESTAMP(visit_last_action_time) / " + size + "), COUNT(*) FROM " + n.t("log_visit") +
			" WHERE visit_last_action_time >= ? GROUP BY 1, 2 ORDER BY NULL"
	}
	rows, err = n.db.QueryContext(ctx, q, from.UTC())
	r.trips++
	if err != nil {
		return nil, fmt.Errorf("naive query: %w", err)
	}
	for rows.Next() {
		var id int
		var bucket, cnt int64
		var day time.Time
		var err error
		if utc {
			err = rows.Scan(&id, &day, &cnt)
		} else {
			err = rows.Scan(&id, &bucket, &cnt)
		}
		if err != nil {
			rows.Close()
			return nil, err
		}
		r.groups++
		s := r.sites[id]
		if s == nil {
			continue
		}
		var d matomo.Date
		switch {
		case utc:
			d = matomo.DateOf(day)
		case s.quarter:
			d = matomo.DateOf(time.Unix(bucket*900, 0).In(s.loc))
		default:
			d = matomo.DateOf(time.Unix(bucket*3600, 0).In(s.loc))
		}
		if d >= s.since && d <= s.until {
			s.counts[d-s.since] += cnt
		}
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return nil, err
	}

	// 3. every monthly table's day done flags, in one UNION ALL.
	rows, err = n.db.QueryContext(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE ?",
		strings.ReplaceAll(n.prefix, "_", `\_`)+`archive\_numeric\_%`)
	r.trips++
	if err != nil {
		return nil, err
	}
	var parts []string
	for rows.Next() {
		var t string
		if err := rows.Scan(&t); err != nil {
			rows.Close()
			return nil, err
		}
		parts = append(parts, "SELECT idsite, date1, value, ts_archived FROM `"+t+"` WHERE period = 1 AND name = 'done'")
	}
	rows.Close()
	good := map[matomo.SiteDate]bool{}
	if len(parts) > 0 {
		rows, err = n.db.QueryContext(ctx, strings.Join(parts, " UNION ALL "))
		r.trips++
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var id int
			var d1 time.Time
			var val sql.NullFloat64
			var ts sql.NullTime
			if err := rows.Scan(&id, &d1, &val, &ts); err != nil {
				rows.Close()
				return nil, err
			}
			s := r.sites[id]
			if s == nil || !ts.Valid || (val.Float64 != 1 && val.Float64 != 3) {
				continue
			}
			d := matomo.DateOf(d1)
			if !ts.Time.Before(localEnd(s.loc, d)) {
				good[matomo.SiteDate{IDSite: id, Date: d}] = true
			}
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	// 4. the anti-join: days with visits and no good archive.
	for id, s := range r.sites {
		for i, c := range s.counts {
			k := matomo.SiteDate{IDSite: id, Date: s.since.AddDays(i)}
			if c > 0 && !good[k] {
				r.gaps[k] = true
			}
		}
	}
	r.dur = time.Since(start)
	return r, nil
}

// count returns the naive count of a site-day (0 outside the window).
func (r *naiveResult) count(id int, d matomo.Date) int64 {
	s := r.sites[id]
	if s == nil || d < s.since || d > s.until {
		return 0
	}
	return s.counts[d-s.since]
}
