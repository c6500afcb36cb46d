package main

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"runtime"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/matomod/matomod/internal/metrics"
)

// heapFigures seeds the archive-only database (many sites × days, few
// visits), measures the full scan's peak heap there, and a /metrics
// scrape with that scan's gaps cached.
func (b *bench) heapFigures(ctx context.Context, dir string, rng *rand.Rand) error {
	c := b.cfg
	name := c.db + "_10k"
	b.progress("seeding %s: %d sites × %d days of archives", name, c.heapSites, c.heapDays)
	start := time.Now()
	hs, err := newDataset(ctx, c.dsn, name, filepath.Join(dir, "matomo10k"), b.now, c.heapSites, c.heapDays)
	if err != nil {
		return err
	}
	defer b.cleanup(hs)
	hs.archRows = 2
	// Weeks, months and years archived as Matomo does: an install whose
	// every period lacks an archive is a different figure (issue 14
	// measured it: 586,378 period gaps at 10,000 sites, 18 s, 597 MiB).
	hs.periods = true
	hs.planArchiveOnly(rng)
	for _, f := range []func(context.Context) error{
		hs.loadPlan, hs.dropIndexes,
		func(ctx context.Context) error { return hs.loadVisits(ctx, 1) },
		func(ctx context.Context) error { return hs.loadVisits(ctx, 2) },
		hs.addIndexes, hs.writeArchives, hs.dropScratch, hs.settle,
	} {
		if err := f(ctx); err != nil {
			return fmt.Errorf("seeding %s: %w", name, err)
		}
	}
	expected := 0
	for _, s := range hs.sites {
		for _, st := range s.state {
			if st == stMissing || st == stInvalidated {
				expected++
			}
		}
		// The plan is not needed any more: free it so it does not
		// distort the heap figure (GC pacing follows the live heap).
		s.n, s.state, s.base = nil, nil, nil
	}
	seedDur := time.Since(start)
	runtime.GC()
	runs := min(c.runs, 3)
	prof := ""
	if c.cpuProfile != "" {
		prof = c.cpuProfile + ".10k"
	}
	sum, err := b.profiled(prof, func() (summary, error) { return b.fullScans(ctx, hs, runs, c.heapDays, "heap") })
	if err != nil {
		return err
	}
	scale := ""
	if c.heapSites < 10_000 || c.heapDays < 365 {
		scale = " *"
	}
	r := b.rep
	r.data = append(r.data, fmt.Sprintf("%s: %d sites × %d days of day archives (done + nb_visits only) and their weeks, months and years, %d broken (1 %% missing, 0.5 %% invalidated) with 2 raw visits each; seeded in %s",
		name, c.heapSites, c.heapDays, expected, secs(seedDur)))
	r.add(row{figure: fmt.Sprintf("gap scan, %d sites × %d days", c.heapSites, c.heapDays), kind: "full", median: dur(sum.median), spread: spread(sum),
		trips: itoa(sum.trips), disk: pages(sum.diskPages), heap: heapOf(sum), target: "≤ 64 MiB heap", verdict: verdictMax(float64(sum.heap), targetHeap) + scale})
	if got := len(gapSet(sum.res)); got != expected { // days; the seeded periods are good
		r.agree = false
		r.checks = append(r.checks, fmt.Sprintf("%s: matomod found %d gaps, %d were seeded", name, got, expected))
	} else if periods := len(sum.res.Gaps) - got; periods != 0 {
		r.agree = false
		r.checks = append(r.checks, fmt.Sprintf("%s: matomod found %d week, month or year gaps, none were seeded", name, periods))
	} else {
		r.checks = append(r.checks, fmt.Sprintf("%s: matomod found the %d seeded gaps", name, got))
	}

	snap := metrics.GapSnapshotOf(sum.res)
	full, size, err := scrapeMedian(snap, 200)
	if err != nil {
		return err
	}
	empty, _, err := scrapeMedian(metrics.GapSnapshot{}, 200)
	if err != nil {
		return err
	}
	r.add(row{figure: fmt.Sprintf("/metrics scrape, %d sites (%d with gaps)", c.heapSites, len(snap.Sites)), kind: "cached snapshot, no DB query",
		median: dur(full), spread: "(200)", trips: "0", heap: "-", target: "≤ 10 ms", verdict: verdictMax(float64(full), float64(targetScrape)) + scale})
	r.add(row{figure: "  vs empty registry", kind: "cached snapshot", median: fmt.Sprintf("×%.1f", float64(full)/float64(empty)),
		spread: "empty: " + dur(empty), target: "-"})
	encoded, _, err := scrapeMedianWith(snap, 200, true)
	if err != nil {
		return err
	}
	r.add(row{figure: "  with metrics.EncodedGaps", kind: "encoded once per scan", median: dur(encoded), spread: "(200)", trips: "0", heap: "-",
		target: "≤ 10 ms", verdict: verdictMax(float64(encoded), float64(targetScrape)) + scale})
	r.notes = append(r.notes, fmt.Sprintf("%s full scan: %d round trips, %s done rows read, %s probes (detector stats)", name, sum.trips, thousands(int64(sum.doneRow)), thousands(int64(sum.probes))))
	r.notes = append(r.notes, fmt.Sprintf("/metrics: median of 200 in-process scrapes (promhttp handler, text format, gzip) after 10 warm-ups; response %d KiB gzipped", size/1024))
	return nil
}

// scrapeMedian serves /metrics from a registry holding snap, as the daemon
// does, n times after 10 warm-ups, and returns the median time and the
// response size.
func scrapeMedian(snap metrics.GapSnapshot, n int) (time.Duration, int, error) {
	return scrapeMedianWith(snap, n, false)
}

// scrapeMedianWith: encoded serves the gap families from
// metrics.EncodedGaps (prepared once per scan) instead of the registry.
func scrapeMedianWith(snap metrics.GapSnapshot, n int, encoded bool) (time.Duration, int, error) {
	reg := prometheus.NewRegistry()
	m, err := metrics.New(reg, metrics.BuildInfo{Version: "bench", Revision: "bench", GoVersion: runtime.Version()})
	if err != nil {
		return 0, 0, err
	}
	m.SetMatomo(metrics.MatomoSnapshot{Version: "5.0.2", Queued: 10, OldestQueued: time.Now().Add(-time.Hour)})
	var h http.Handler
	if encoded {
		enc := metrics.NewEncodedGaps()
		if err := enc.Set(snap); err != nil {
			return 0, 0, err
		}
		h = enc.Handler(reg)
	} else {
		m.SetGaps(snap)
		h = promhttp.HandlerFor(reg, promhttp.HandlerOpts{})
	}
	var ds []time.Duration
	size := 0
	for i := 0; i < n+10; i++ {
		req := httptest.NewRequest(http.MethodGet, "/metrics", nil)
		req.Header.Set("Accept", "text/plain;version=0.0.4;q=1,*/*;q=0.1")
		req.Header.Set("Accept-Encoding", "gzip")
		rec := httptest.NewRecorder()
		t := time.Now()
		h.ServeHTTP(rec, req)
		d := time.Since(t)
		if rec.Code != http.StatusOK {
			return 0, 0, fmt.Errorf("/metrics scrape: status %d: %s", rec.Code, rec.Body.String())
		}
		if i >= 10 {
			ds = append(ds, d)
		}
		size = rec.Body.Len()
	}
	slices.Sort(ds)
	return ds[len(ds)/2], size, nil
}
