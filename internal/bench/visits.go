package main

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"time"

	"github.com/matomod/matomod/internal/matomo"
)

// loadPlan writes bench_plan: one row per site-day with visits, with the
// UTC bounds of the site-local day and where its visits' ids start.
func (ds *dataset) loadPlan(ctx context.Context) error {
	if err := ds.exec(ctx, `CREATE TABLE bench_plan (
  id int NOT NULL PRIMARY KEY, idsite int NOT NULL, start_utc datetime NOT NULL, secs int NOT NULL,
  n int NOT NULL, n1 int NOT NULL, c1 bigint NOT NULL, c2 bigint NOT NULL) ENGINE=InnoDB`); err != nil {
		return err
	}
	return ds.execStream(ctx, 2, func(emit func(string) bool) {
		var b strings.Builder
		rows, id := 0, 0
		c1, c2 := int64(0), ds.half1
		for _, s := range ds.sites {
			for i, n := range s.n {
				if n == 0 {
					continue
				}
				id++
				start, end := matomo.DayBounds(s.loc, s.date(i))
				n1 := (n + 1) / 2
				if rows == 0 {
					b.WriteString("INSERT INTO bench_plan VALUES ")
				} else {
					b.WriteByte(',')
				}
				fmt.Fprintf(&b, "(%d,%d,'%s',%d,%d,%d,%d,%d)", id, s.id, start.Format(sqlTime), int(end.Sub(start)/time.Second), n, n1, c1, c2)
				c1 += int64(n1)
				c2 += int64(n - n1)
				if rows++; rows == 3000 {
					if !emit(b.String()) {
						return
					}
					b.Reset()
					rows = 0
				}
			}
		}
		if rows > 0 {
			emit(b.String())
		}
	})
}

// visitColumns fill log_visit like the tracker does (≈60 columns, realistic
// widths). v.r is a per-visit pseudo-random number.
const visitColumns = `idvisit, idsite, idvisitor, visit_last_action_time, config_id, location_ip, profilable, user_id,
 visit_first_action_time, visit_goal_buyer, visit_goal_converted, visitor_returning, visitor_seconds_since_first,
 visitor_seconds_since_order, visitor_count_visits, visit_entry_idaction_name, visit_entry_idaction_url,
 visit_exit_idaction_name, visit_exit_idaction_url, visit_total_actions, visit_total_interactions,
 visit_total_searches, referer_keyword, referer_name, referer_type, referer_url, location_browser_lang,
 config_browser_engine, config_browser_name, config_browser_version, config_client_type, config_device_brand,
 config_device_model, config_device_type, config_os, config_os_version, visit_total_events, visitor_localtime,
 visitor_seconds_since_last, config_resolution, config_cookie, config_flash, config_java, config_pdf,
 config_quicktime, config_realplayer, config_silverlight, config_windowsmedia, visit_total_time,
 location_city, location_country, location_latitude, location_longitude, location_region, last_idlink_va,
 custom_dimension_1, custom_dimension_2`

const visitValues = `v.id, v.idsite,
 UNHEX(SUBSTRING(MD5(CONCAT(v.idsite, 'v', v.r MOD 50000)), 1, 16)),
 v.t,
 UNHEX(SUBSTRING(MD5(CONCAT(v.idsite, 'c', v.r)), 1, 16)),
 UNHEX(LPAD(HEX((v.r * 4099) MOD 4294901760), 8, '0')),
 1, IF(v.r MOD 10 = 0, CONCAT('user', v.r MOD 5000, '@example.org'), NULL),
 v.t - INTERVAL (v.r MOD 1200) SECOND, 0, v.r MOD 20 = 0, v.r MOD 3 = 0, v.r MOD 864000,
 NULL, 1 + v.r MOD 7, 1 + v.r MOD 5000, 1 + v.r MOD 5003,
 1 + v.r MOD 4999, 1 + v.r MOD 5009, 1 + v.r MOD 9, 1 + v.r MOD 9,
 v.r MOD 2, ELT(1 + v.r MOD 4, NULL, 'matomo analytics', 'web analytics gdpr', NULL),
 ELT(1 + v.r MOD 5, 'Google', 'DuckDuckGo', 'news.ycombinator.com', NULL, 'Bing'), 1 + v.r MOD 6,
 CONCAT('https://www.', ELT(1 + v.r MOD 5, 'google.com', 'duckduckgo.com', 'news.ycombinator.com', 'example.net', 'bing.com'), '/search?q=matomo+archive+', v.r MOD 997),
 ELT(1 + v.r MOD 3, 'en-us,en;q=0.9', 'de-de,de;q=0.9', 'fr-fr'),
 'Blink', ELT(1 + v.r MOD 5, 'CH', 'FF', 'SF', 'ED', 'OP'), CONCAT(100 + v.r MOD 30, '.0'), 1,
 ELT(1 + v.r MOD 5, 'AP', 'SA', 'GO', 'XI', ''),
 ELT(1 + v.r MOD 4, 'iPhone', 'Galaxy S23', 'Pixel 8', 'generic desktop'), v.r MOD 3,
 ELT(1 + v.r MOD 5, 'WIN', 'MAC', 'LIN', 'AND', 'IOS'), CONCAT(10 + v.r MOD 5), v.r MOD 3, SEC_TO_TIME(v.r MOD 86400),
 v.r MOD 100000, ELT(1 + v.r MOD 4, '1920x1080', '2560x1440', '390x844', '1366x768'), 1, 0, 0, 1,
 0, 0, 0, 0, v.r MOD 1800,
 ELT(1 + v.r MOD 6, 'Berlin', 'New York', 'Mumbai', 'Paris', 'Sao Paulo', NULL),
 ELT(1 + v.r MOD 6, 'de', 'us', 'in', 'fr', 'br', 'gb'), (v.r MOD 180000) / 1000 - 90, (v.r MOD 360000) / 1000 - 180,
 ELT(1 + v.r MOD 6, 'BE', 'NY', 'MH', 'IDF', 'SP', 'ENG'), NULL,
 IF(v.r MOD 4 = 0, CONCAT('plan-', v.r MOD 3), NULL), IF(v.r MOD 7 = 0, 'newsletter-2026', NULL)`

// loadVisits inserts one half of the planned visits (half 1: the first
// ceil(n/2) of each day, half 2: the rest), with INSERT … SELECT joining
// bench_plan with MariaDB's sequence engine, in chunks of ~250k rows.
func (ds *dataset) loadVisits(ctx context.Context, half int) error {
	maxN := int32(1)
	for _, s := range ds.sites {
		for _, n := range s.n {
			maxN = max(maxN, n)
		}
	}
	seqCond, id := "s.seq <= p.n1", "p.c1 + s.seq"
	if half == 2 {
		seqCond, id = "s.seq BETWEEN p.n1 + 1 AND p.n", "p.c2 + s.seq - p.n1"
	}
	// The time of visit k of a day: spread over the day's UTC span, always
	// inside [start, end) so the site-local count is exact.
	inner := fmt.Sprintf(`SELECT %s AS id, p.idsite, p.start_utc + INTERVAL ((s.seq * 7919 + p.id * 104729) MOD p.secs) SECOND AS t,
 (s.seq * 2654435761 + p.id * 40503) MOD 1000003 AS r
 FROM bench_plan p STRAIGHT_JOIN seq_1_to_%d s ON %s`, id, maxN, seqCond)
	return ds.execStream(ctx, 2, func(emit func(string) bool) {
		id, from, rows := 0, 1, int64(0)
		for _, s := range ds.sites {
			for _, n := range s.n {
				if n == 0 {
					continue
				}
				id++
				h := int64((n + 1) / 2)
				if half == 2 {
					h = int64(n) - h
				}
				if rows += h; rows >= 250_000 {
					if !emit(fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM (%s WHERE p.id BETWEEN %d AND %d) v",
						ds.table("log_visit"), visitColumns, visitValues, inner, from, id)) {
						return
					}
					from, rows = id+1, 0
				}
			}
		}
		if from <= id {
			emit(fmt.Sprintf("INSERT INTO %s (%s) SELECT %s FROM (%s WHERE p.id BETWEEN %d AND %d) v",
				ds.table("log_visit"), visitColumns, visitValues, inner, from, id))
		}
	})
}

var keyRE = regexp.MustCompile("(?m)^\\s*KEY (`[^`]+`) (\\(.*\\))")

// dropIndexes drops log_visit's secondary indexes (a bulk load into an
// InnoDB table is faster without them; adding them after sorts once).
func (ds *dataset) dropIndexes(ctx context.Context) error {
	var name, ddl string
	if err := ds.env.DB.QueryRowContext(ctx, "SHOW CREATE TABLE "+ds.table("log_visit")).Scan(&name, &ddl); err != nil {
		return err
	}
	var drops []string
	ds.indexDDL = ds.indexDDL[:0]
	for _, m := range keyRE.FindAllStringSubmatch(ddl, -1) {
		drops = append(drops, "DROP KEY "+m[1])
		ds.indexDDL = append(ds.indexDDL, "ADD KEY "+m[1]+" "+strings.TrimSuffix(m[2], ","))
	}
	if len(drops) == 0 {
		return fmt.Errorf("no secondary index found on %slog_visit: the harness schema changed", ds.env.Prefix)
	}
	return ds.exec(ctx, "ALTER TABLE "+ds.table("log_visit")+" "+strings.Join(drops, ", "))
}

func (ds *dataset) addIndexes(ctx context.Context) error {
	if err := ds.exec(ctx, "ALTER TABLE "+ds.table("log_visit")+" "+strings.Join(ds.indexDDL, ", ")); err != nil {
		return err
	}
	return ds.exec(ctx, "ANALYZE TABLE "+ds.table("log_visit"))
}
