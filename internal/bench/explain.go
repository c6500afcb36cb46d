package main

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/matomod/matomod/internal/matomo"
)

// breakdown is explain's report lines, each prefixed, or the failure.
func (b *bench) breakdown(ctx context.Context, ds *dataset, full summary, prefix string) []string {
	lines, err := b.explain(ctx, ds, full)
	if err != nil {
		b.progress("breakdown failed: %v", err)
		return []string{prefix + "breakdown failed: " + err.Error()}
	}
	for i := range lines {
		lines[i] = prefix + lines[i]
	}
	return lines
}

// explain re-runs the two kinds of query a full scan spends its time on,
// with the detector's own SQL (matomo.DB builds it), and says how the full
// scan's median splits between them: reading every day done flag of the
// window, and counting raw visits of the candidate days.
func (b *bench) explain(ctx context.Context, ds *dataset, full summary) ([]string, error) {
	db, err := matomo.Open(ds.env.Settings, matomo.DBOptions{QueryTimeout: 30 * time.Minute})
	if err != nil {
		return nil, err
	}
	defer db.Close()
	tables, err := b.windowTables(ctx, ds, db)
	if err != nil {
		return nil, err
	}
	// 1. the done-flag reads.
	start := time.Now()
	returned := 0
	biggest, biggestRows, scanned := "", int64(-1), int64(0)
	for _, t := range tables {
		rows, err := db.SQL().QueryContext(ctx, db.DoneFlagsSQL(t, nil))
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			returned++
		}
		rows.Close()
	}
	doneDur := time.Since(start)
	for _, t := range tables {
		var n int64
		db.SQL().QueryRowContext(ctx, "SELECT COALESCE(table_rows, 0) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?", db.Prefix()+t).Scan(&n)
		scanned += n
		if n > biggestRows {
			biggest, biggestRows = t, n
		}
	}

	// 2. the probes: every window day without a good archive, as a full
	// scan counts them (no archive at all, or one that is not good).
	var probes []matomo.Probe
	for _, s := range ds.sites {
		for i, st := range s.state {
			if d := s.date(i); d >= s.today.AddDays(-b.cfg.window) && st != stGood {
				from, to := matomo.DayBounds(s.loc, d)
				probes = append(probes, matomo.Probe{IDSite: s.id, From: from, To: to})
			}
		}
	}
	start = time.Now()
	if _, err := db.CountVisits(ctx, probes); err != nil {
		return nil, err
	}
	probeDur := time.Since(start)
	rest := "≈ 0 (the scan overlaps reads that are re-run one after another here)"
	if d := full.median - doneDur - probeDur; d > 0 {
		rest = dur(d)
	}
	out := []string{
		fmt.Sprintf("full scan median %s ≈ done-flag reads %s (re-run one table at a time: %d monthly tables, a table scan each, ≈%s archive_numeric rows read to return %s 'done' rows)",
			dur(full.median), dur(doneDur), len(tables), thousands(scanned), thousands(int64(returned))),
		fmt.Sprintf("  + raw-visit probes %s (%s candidate site-days, %d queries of ≤ %d index ranges on index_idsite_datetime)",
			dur(probeDur), thousands(int64(len(probes))), (len(probes)+matomo.ProbeBatch-1)/matomo.ProbeBatch, matomo.ProbeBatch),
		fmt.Sprintf("  + the rest %s (sites, options, queue, nb_visits of open days, first visits, Go); measured separately, so only roughly additive", rest),
		fmt.Sprintf("full scan: %d round trips, %s probes, %s done rows read (detector stats)", full.trips, thousands(int64(full.probes)), thousands(int64(full.doneRow))),
	}
	if biggest != "" {
		if line, err := analyze(ctx, db, biggest); err == nil {
			out = append(out, line)
		} else {
			out = append(out, "ANALYZE failed: "+err.Error())
		}
	}
	return out, nil
}

// analyze runs MariaDB's ANALYZE FORMAT=JSON on one done-flag read and
// summarises the plan: access type, rows examined and time.
func analyze(ctx context.Context, db *matomo.DB, table string) (string, error) {
	var js string
	if err := db.SQL().QueryRowContext(ctx, "ANALYZE FORMAT=JSON "+db.DoneFlagsSQL(table, nil)).Scan(&js); err != nil {
		return "", err
	}
	type planTable struct {
		Access    string  `json:"access_type"`
		Key       string  `json:"key"`
		RRows     float64 `json:"r_rows"`
		RFiltered float64 `json:"r_filtered"`
		Stats     struct {
			Pages int64 `json:"pages_accessed"`
		} `json:"r_engine_stats"`
	}
	var plan struct {
		QueryBlock struct {
			Time   float64    `json:"r_total_time_ms"`
			Table  *planTable `json:"table"`
			Nested []struct {
				Table *planTable `json:"table"`
			} `json:"nested_loop"`
		} `json:"query_block"`
	}
	if err := json.Unmarshal([]byte(js), &plan); err != nil {
		return "", err
	}
	t := plan.QueryBlock.Table
	if t == nil && len(plan.QueryBlock.Nested) > 0 {
		t = plan.QueryBlock.Nested[0].Table
	}
	if t == nil {
		return "", fmt.Errorf("unexpected ANALYZE output: %.200s", js)
	}
	key := ""
	if t.Key != "" {
		key = " on " + t.Key
	}
	return fmt.Sprintf("ANALYZE of the done-flag read of %s%s: access %s%s, %s rows examined (%s pages), %.2f %% kept, %.0f ms",
		db.Prefix(), table, t.Access, key, thousands(int64(t.RRows)), thousands(t.Stats.Pages), t.RFiltered, plan.QueryBlock.Time), nil
}
