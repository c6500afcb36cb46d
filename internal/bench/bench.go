package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
)

// bench is one benchmark run.
type bench struct {
	cfg config
	log io.Writer // progress
	now time.Time // the bench clock, fixed for the whole run
	rep *report
}

func (b *bench) progress(format string, a ...any) {
	fmt.Fprintf(b.log, "bench: "+format+"\n", a...)
}

// Targets of the scale issue; atScale says whether this run is as big as
// the size they are stated for.
const (
	targetSpeedup  = 100.0
	targetRescan   = 50 * time.Millisecond
	targetGrowth   = 1.1
	targetHeap     = 64 << 20
	targetScrape   = 10 * time.Millisecond
	targetRSS      = 30 << 20
	largeCommand   = "make bench-large   (= go run ./internal/bench --sites 1000 --days 400 --visits 20000000; add BENCH_ARGS='--buffer-pool 12G' for warm figures if the server's pool is smaller than the data, ~11 GiB)"
	invalidateRate = 0.01
)

func (b *bench) atScale() bool {
	return b.cfg.sites >= 1000 && b.cfg.window >= 365 && b.cfg.visits >= 20_000_000
}

func (b *bench) run(ctx context.Context) (*report, error) {
	c := b.cfg
	b.now = time.Now().UTC().Truncate(time.Second)
	rep := &report{agree: true, cmd: "go run ./internal/bench " + strings.Join(c.args, " ")}
	b.rep = rep

	srv, err := serverInfo(ctx, c.dsn)
	if err != nil {
		return nil, fmt.Errorf("MariaDB at MATOMOD_TEST_DSN (%s) is not reachable: %w: run make ensure-db or set MATOMOD_TEST_DSN", redactDSN(c.dsn), err)
	}
	if c.bufferPool > 0 {
		restore, err := setBufferPool(ctx, c.dsn, c.bufferPool, srv.bufferPool, b.progress)
		if err != nil {
			return nil, err
		}
		defer restore()
		srv.bufferPool = c.bufferPool
	}
	rep.header = append(rep.header,
		fmt.Sprintf("matomod gap-scan benchmark, %s", b.now.Format("2006-01-02 15:04 UTC")),
		fmt.Sprintf("host: %s/%s, %d CPUs, %s; MariaDB %s, innodb_buffer_pool_size %s", runtime.GOOS, runtime.GOARCH, runtime.NumCPU(), runtime.Version(), srv.version, mib(uint64(srv.bufferPool))),
		"command: "+rep.cmd)

	dir, err := os.MkdirTemp("", "matomod-bench-")
	if err != nil {
		return rep, err
	}
	defer os.RemoveAll(dir)

	b.progress("seeding %s: %d sites × %d days, %d visits", c.db, c.sites, c.days, c.visits)
	ds, err := newDataset(ctx, c.dsn, c.db, filepath.Join(dir, "matomo"), b.now, c.sites, c.days)
	if err != nil {
		return rep, err
	}
	defer b.cleanup(ds)
	rng := rand.New(rand.NewPCG(c.seed, 0x6d61746f6d6f64))
	if err := b.mainFigures(ctx, ds, rng, srv.bufferPool); err != nil {
		return rep, err
	}
	// The main database's plan is not needed any more: free it so it does
	// not inflate the next heap figure (GC pacing follows the live heap).
	for _, s := range ds.sites {
		s.n, s.state, s.base = nil, nil, nil
	}

	// The archive-only database for memory and /metrics at 10,000 sites.
	if c.heapSites > 0 {
		if err := b.heapFigures(ctx, dir, rng); err != nil {
			return rep, err
		}
	} else {
		rep.add(row{figure: "gap scan peak heap", kind: "-", median: "not measured (--heap-sites 0)", target: "≤ 64 MiB"})
	}
	b.daemonFigure(ctx, ds, dir)

	rep.footer = append(rep.footer,
		"Kinds: \"full\" = a new connection pool and a new detector with no saved state (what a fresh process does);",
		"\"rescan\" = the same detector's next scan, reading only what changed (the daemon's scans between full rescans).",
		"Medians of the runs after one discarded warm-up run; peak heap = highest runtime/metrics "+heapMetric,
		"  during a run, above its value after a GC just before it (garbage included); live = highest "+liveMetric,
		"  the GC marked during or right after the run; round trips = queries sent (matomo.DB.RoundTrips);",
		"  disk reads = InnoDB pages read from disk per run (Innodb_buffer_pool_reads, server-wide).")
	if !b.atScale() {
		rep.footer = append(rep.footer, "* targets are stated for 1,000 sites × 365 days × 20 M visits; this run is smaller, so that verdict is indicative only.")
	}
	rep.footer = append(rep.footer, "Full-size figures: "+largeCommand)
	return rep, nil
}

// step is one named seeding step.
type step struct {
	name string
	f    func(context.Context) error
}

// seeder runs seeding steps and keeps their times for the report.
type seeder struct {
	b      *bench
	db     string
	phases []string
	total  time.Duration
}

func (s *seeder) do(ctx context.Context, steps ...step) error {
	for _, st := range steps {
		t := time.Now()
		err := st.f(ctx)
		d := time.Since(t)
		s.total += d
		s.phases = append(s.phases, fmt.Sprintf("%s %s", st.name, secs(d)))
		s.b.progress("  %s: %s", st.name, secs(d))
		if err != nil {
			return fmt.Errorf("seeding %s (%s): %w", s.db, st.name, err)
		}
	}
	return nil
}

// mainFigures seeds the main database (half the visits first when
// measuring growth), runs matomod's scans and the naive query side by
// side, compares their gaps and adds the figures to the report.
func (b *bench) mainFigures(ctx context.Context, ds *dataset, rng *rand.Rand, pool int64) error {
	c := b.cfg
	ds.segments, ds.periods, ds.archRows = true, true, c.archiveRows
	t := time.Now()
	ds.planVisits(rng, c.visits)
	sd := &seeder{b: b, db: c.db, total: time.Since(t)}
	steps := []step{
		{"plan", ds.loadPlan},
		{"drop indexes", ds.dropIndexes},
		{"visits (1st half)", func(ctx context.Context) error { return ds.loadVisits(ctx, 1) }},
	}
	if c.growth {
		// Both sizes live in the database at once, swapped by RENAME
		// TABLE between runs, so N/2 and N alternate round by round.
		steps = append(steps, step{"copy of the 1st half (N/2)", ds.copyHalf})
	}
	steps = append(steps, step{"visits (2nd half)", func(ctx context.Context) error { return ds.loadVisits(ctx, 2) }},
		step{"log_visit indexes", ds.addIndexes})
	if c.growth {
		steps = append(steps, step{"N/2 copy's indexes", ds.indexSwap})
	}
	steps = append(steps, step{"archives", ds.writeArchives}, step{"flush", ds.settle})
	if err := sd.do(ctx, steps...); err != nil {
		return err
	}
	if err := ds.dropScratch(ctx); err != nil {
		return err
	}
	nv, err := openNaive(c.dsn, c.db, ds.env.Prefix, b.now, c.window)
	if err != nil {
		return err
	}
	defer nv.db.Close()
	fl, err := openFloor(ds)
	if err != nil {
		return err
	}
	defer fl.Close()
	tables, err := b.windowTables(ctx, ds, fl)
	if err != nil {
		return err
	}

	// matomod's full scan, the table-scan floor and the naive query, in
	// rounds; with --growth each round runs N/2 then N.
	matRuns, naiveRuns := c.runs, c.naiveRuns
	if c.growth {
		matRuns, naiveRuns = max(matRuns, 3), max(naiveRuns, 3)
	}
	b.progress("measuring: %d rounds of matomod + floor, %d of the naive query (growth: %v)", matRuns, naiveRuns, c.growth)
	var half, at *sizeFigures
	if _, err := b.profiled(c.cpuProfile, func() (summary, error) {
		half, at, err = b.rounds(ctx, ds, nv, fl, tables, c.growth, matRuns, naiveRuns)
		return summary{}, err
	}); err != nil {
		return err
	}
	if c.growth {
		if err := ds.dropSwap(ctx); err != nil {
			return err
		}
	}
	b.describeData(ctx, ds, sd.total, sd.phases, pool)
	full := summarize(at.mat)
	full.diskPages = diskPer(at.matDisk, len(at.mat))
	floor := summarize(at.floor)
	floor.diskPages = diskPer(at.floorDisk, len(at.floor))
	nsum := summarize(at.naive)
	nsum.diskPages = diskPer(at.nvD, len(at.naive))
	nfull := naiveSummary{median: nsum.median, trips: at.naiveTrips, res: at.naiveRes, sum: nsum}

	b.progress("naive query, UTC dates (the wrong one): 1 run")
	r0 := poolReads(ctx, nv.db)
	utcRes, err := nv.runRetry(ctx, true, b.progress)
	if err != nil {
		return err
	}
	utcLoad := loadAvg()
	utcReads := perRun(r0, poolReads(ctx, nv.db), 1)
	b.compare(ds, full, nfull, utcRes)
	breakdown := b.breakdown(ctx, ds, full, "")
	steady, inval, run, requests, err := b.rescans(ctx, ds, rng, full.res)
	if err != nil {
		return err
	}

	rep := b.rep
	scale := ""
	if !b.atScale() {
		scale = " *"
	}
	overFloor := float64(full.median) / float64(floor.median)
	rep.add(row{figure: fmt.Sprintf("gap scan, %d visits", ds.visits), kind: "full", median: dur(full.median), spread: spread(full), load: loads(full.loads),
		trips: itoa(full.trips), disk: pages(full.diskPages), heap: heapOf(full), target: fmt.Sprintf("≤ %.1f× floor", targetFloor), verdict: verdictMax(overFloor, targetFloor)})
	rep.add(row{figure: fmt.Sprintf("table-scan floor, %d tables", len(tables)), kind: "floor, 2 connections", median: dur(floor.median), spread: spread(floor), load: loads(floor.loads),
		trips: itoa(int64(len(tables))), disk: pages(floor.diskPages), heap: "-", target: "-"})
	rep.add(row{figure: "  full scan / floor", kind: "same rounds", median: fmt.Sprintf("×%.2f", overFloor), spread: "per round: " + ratios(at.mat, at.floor),
		target: fmt.Sprintf("≤ ×%.1f", targetFloor), verdict: verdictMax(overFloor, targetFloor)})
	rep.add(row{figure: "naive query, per-site time zone, DBA's best", kind: "full (no state)", median: dur(nfull.median), spread: spread(nfull.sum), load: loads(nsum.loads),
		trips: itoa(nfull.trips), disk: pages(nfull.sum.diskPages), heap: "-", target: "-"})
	speed := float64(nfull.median) / float64(full.median)
	rep.add(row{figure: "  naive / matomod", kind: "full vs full", median: fmt.Sprintf("%.0f×", speed), spread: "per round: " + ratios(at.naive, at.mat), target: "≥ 100×",
		verdict: verdictMin(speed, targetSpeedup) + scale})
	rep.add(row{figure: "naive query, UTC dates (wrong)", kind: "full (no state)", median: dur(utcRes.dur), spread: "(1 run)", load: loads([]float64{utcLoad}),
		trips: itoa(int64(utcRes.trips)), disk: pages(utcReads), heap: "-", target: "-"})
	rep.add(row{figure: "steady-state rescan", kind: "rescan, nothing changed", median: dur(steady.median), spread: spread(steady), load: loads(steady.loads),
		trips: itoa(steady.trips), disk: pages(steady.diskPages), heap: heapOf(steady), target: "≤ 50 ms", verdict: verdictMax(float64(steady.median), float64(targetRescan)) + scale})
	rep.add(row{figure: "  buffer-pool page requests", kind: "per steady rescan, server-wide", median: requests.median, spread: requests.spread, load: loads(steady.loads),
		target: "- (before: 45,317 at the large size)"})
	rep.add(row{figure: "rescan after 1 % invalidated", kind: "rescan, 1 % of days invalidated", median: dur(inval.median), spread: spread(inval), load: loads(inval.loads),
		trips: itoa(inval.trips), disk: pages(inval.diskPages), heap: heapOf(inval), target: "-"})
	rep.add(row{figure: "rescan after an archive run", kind: "rescan, every site's yesterday re-archived", median: dur(run.median), spread: spread(run), load: loads(run.loads),
		trips: itoa(run.trips), disk: pages(run.diskPages), heap: heapOf(run), target: "-"})
	if c.growth {
		hm := summarize(half.mat)
		hm.diskPages = diskPer(half.matDisk, len(half.mat))
		hn := summarize(half.naive)
		hn.diskPages = diskPer(half.nvD, len(half.naive))
		gm := float64(full.median) / float64(hm.median)
		gn := float64(nsum.median) / float64(hn.median)
		rep.add(row{figure: fmt.Sprintf("gap scan at N/2 = %d visits", ds.half1), kind: "full", median: dur(hm.median), spread: spread(hm), load: loads(hm.loads),
			trips: itoa(hm.trips), disk: pages(hm.diskPages), heap: heapOf(hm), target: "-"})
		rep.add(row{figure: "  growth N/2 → N, matomod", kind: "alternating rounds", median: fmt.Sprintf("×%.2f", gm),
			spread: "per round: " + ratios(at.mat, half.mat), target: "≤ ×1.1", verdict: verdictMax(gm, targetGrowth) + scale})
		rep.add(row{figure: fmt.Sprintf("naive query at N/2 = %d visits", ds.half1), kind: "full (no state)", median: dur(hn.median),
			spread: spread(hn), load: loads(hn.loads), trips: itoa(half.naiveTrips), disk: pages(hn.diskPages), heap: "-", target: "-"})
		rep.add(row{figure: "  growth N/2 → N, naive", kind: "alternating rounds", median: fmt.Sprintf("×%.2f", gn),
			spread: "per round: " + ratios(at.naive, half.naive), target: "-"})
		hf := summarize(half.floor)
		rep.notes = append(rep.notes,
			fmt.Sprintf("growth N/2 → N per round (load after the N/2 run → after the N run): matomod %s; naive %s", perRound(half.mat, at.mat), perRound(half.naive, at.naive)),
			fmt.Sprintf("table-scan floor at N/2: %s (%s, load %s): the archives do not change with log_visit", dur(hf.median), spread(hf), loads(hf.loads)))
	}
	rep.notes = append(rep.notes,
		fmt.Sprintf("table-scan floor: %s per %s (the done-flag read's table scan of every page, returning a count: %s rows), %d tables over 2 connections as the full scan reads them",
			"SELECT COUNT(*) … IGNORE INDEX (index_period_archived) WHERE period = 1 AND name = 'done'", "monthly table", thousands(at.floorRows), len(tables)),
		"naive query, DBA's best: one GROUP BY idsite, UTC hour over the covering index_idsite_datetime, ORDER BY NULL (no sort), with the session setting it needs: tmp_table_size = max_heap_table_size = 1 GiB, so its millions of groups stay in an in-memory temporary table instead of spilling to disk (at the server default of 16 MiB, issue 13 measured 138 s against 33 s at the large size)")
	rep.notes = append(rep.notes, breakdown...)
	rep.notes = append(rep.notes,
		fmt.Sprintf("steady-state rescan: %d round trips, %s done rows read, %s probes (detector stats)", steady.trips, thousands(int64(steady.doneRow)), thousands(int64(steady.probes))),
		"buffer-pool page requests: Innodb_buffer_pool_read_requests (server-wide) before and after each of "+requests.background,
		fmt.Sprintf("rescan after 1 %% invalidated: %d round trips, %s done rows read, %s probes (detector stats)", inval.trips, thousands(int64(inval.doneRow)), thousands(int64(inval.probes))),
		fmt.Sprintf("rescan after an archive run: %d round trips, %s done rows read (the monthly table it wrote to, re-read in full: its information_schema UPDATE_TIME moved), %s probes (detector stats)", run.trips, thousands(int64(run.doneRow)), thousands(int64(run.probes))))
	return nil
}

func (b *bench) cleanup(ds *dataset) {
	if b.cfg.keep {
		ds.env.DB.Close()
		b.progress("kept database %s (--keep)", ds.env.Name)
		return
	}
	ds.env.Drop()
}

// describeData adds the data section of the report.
func (b *bench) describeData(ctx context.Context, ds *dataset, seedDur time.Duration, phases []string, pool int64) {
	c := b.cfg
	counts := map[uint8]int{}
	withVisits, empty := 0, 0
	for _, s := range ds.sites {
		for i, st := range s.state {
			if s.date(i) < s.today.AddDays(-c.window) {
				continue
			}
			counts[st]++
			if s.n[i] > 0 {
				withVisits++
			} else {
				empty++
			}
		}
	}
	lvRows, lvBytes, lvAvg, _ := tableStats(ctx, ds.env.DB, ds.env.Prefix+"log\\_visit")
	anRows, anBytes, _, _ := tableStats(ctx, ds.env.DB, ds.env.Prefix+"archive\\_numeric\\_%")
	var nt int
	ds.env.DB.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE ?", ds.env.Prefix+"archive\\_numeric\\_%").Scan(&nt)
	big := ds.sites[0].n
	var bigSum int64
	for _, n := range big {
		bigSum += int64(n)
	}
	r := b.rep
	r.data = append(r.data,
		fmt.Sprintf("%d sites in %d time zones, %d days each (until yesterday, site-local); scan window %d days", len(ds.sites), min(len(ds.sites), len(zoneNames)), c.days, c.window),
		fmt.Sprintf("log_visit: %d rows (≈%d by table stats), %s with indexes, avg row %d B; biggest site %d visits (%.1f %%)", ds.visits, lvRows, mib(uint64(lvBytes)), lvAvg, bigSum, 100*float64(bigSum)/float64(max(ds.visits, 1))),
		fmt.Sprintf("archive_numeric: ≈%d rows in %d monthly tables, %s; 3 archives per site-day (plain + 2 segments), up to %d rows per plain one, plus week/month/year archives", anRows, nt, mib(uint64(anBytes)), c.archiveRows),
		fmt.Sprintf("site-days in the window: %d with visits, %d without (no archive, probed each full scan); broken: %d missing, %d invalidated (queued), %d failed, %d incomplete",
			withVisits, empty, counts[stMissing], counts[stInvalidated], counts[stFailed], counts[stIncomplete]),
		fmt.Sprintf("seeding took %s (%s)", secs(seedDur), strings.Join(phases, ", ")),
	)
	if total := lvBytes + anBytes; total > pool {
		r.data = append(r.data, fmt.Sprintf("NOTE: log_visit + archives (%s) do not fit innodb_buffer_pool_size (%s): \"warm\" runs still read from disk; rerun with --buffer-pool %dG for warm figures",
			mib(uint64(total)), mib(uint64(pool)), total>>30+2))
	}
}

// compare checks matomod's gaps against the naive query's and the seeding.
func (b *bench) compare(ds *dataset, full summary, nfull naiveSummary, utc *naiveResult) {
	r := b.rep
	mat := gapSet(full.res)
	kinds := kindCounts(full.res)
	expected := map[matomo.SiteDate]bool{}
	// The stored segment's archive shares each day's fate but for a crash
	// (done = 2 on the plain archive only): missing, invalidated in place
	// (never queued for the segment), written before the day ended.
	expectedSeg := map[matomo.SiteDate]bool{}
	badCounts, utcWrong, nonUTC := 0, 0, 0
	for _, s := range ds.sites {
		for i, n := range s.n {
			d := s.date(i)
			if d < s.today.AddDays(-b.cfg.window) {
				continue
			}
			switch s.state[i] {
			case stMissing, stInvalidated, stFailed, stIncomplete:
				expected[matomo.SiteDate{IDSite: s.id, Date: d}] = true
			}
			switch s.state[i] {
			case stMissing, stInvalidated, stIncomplete:
				expectedSeg[matomo.SiteDate{IDSite: s.id, Date: d}] = true
			}
			if nfull.res.count(s.id, d) != int64(n) {
				badCounts++
			}
			if s.tz != "UTC" {
				nonUTC++
				if utc.count(s.id, d) != int64(n) {
					utcWrong++
				}
			}
		}
	}
	onlyMat, onlyNaive := diff(mat, nfull.res.gaps)
	same := len(onlyMat) == 0 && len(onlyNaive) == 0
	r.checks = append(r.checks, fmt.Sprintf("matomod gaps: %d (missing %d, invalidated %d, failed %d, incomplete %d, stale %d); naive query: %d; seeded: %d",
		len(mat), kinds[gapdetect.Missing], kinds[gapdetect.Invalidated], kinds[gapdetect.Failed], kinds[gapdetect.Incomplete], kinds[gapdetect.Stale],
		len(nfull.res.gaps), len(expected)))
	if same {
		r.checks = append(r.checks, fmt.Sprintf("same gaps: yes (%d site-days)", len(mat)))
	} else {
		r.agree = false
		r.checks = append(r.checks, fmt.Sprintf("same gaps: NO: %d only in matomod's (e.g. %s), %d only in the naive query's (e.g. %s)",
			len(onlyMat), examples(onlyMat), len(onlyNaive), examples(onlyNaive)))
	}
	if a, bb := diff(mat, expected); len(a)+len(bb) > 0 {
		r.agree = false
		r.checks = append(r.checks, fmt.Sprintf("matomod vs seeded gaps: NO: %d extra (e.g. %s), %d not found (e.g. %s)", len(a), examples(a), len(bb), examples(bb)))
	}
	plainPeriods := 0
	for _, g := range full.res.Gaps {
		if g.Period != gapdetect.PeriodDay {
			plainPeriods++
		}
	}
	if plainPeriods > 0 {
		r.agree = false
		r.checks = append(r.checks, fmt.Sprintf("week, month and year gaps: NO: %d found, none seeded", plainPeriods))
	} else {
		r.checks = append(r.checks, "week, month and year gaps: none, as seeded")
	}
	segDays, segPeriods := map[matomo.SiteDate]bool{}, 0
	for _, g := range full.res.SegmentGaps {
		if g.Period == gapdetect.PeriodDay {
			segDays[matomo.SiteDate{IDSite: g.IDSite, Date: g.Date}] = true
		} else {
			segPeriods++
		}
	}
	if a, bb := diff(segDays, expectedSeg); len(a)+len(bb) > 0 || segPeriods > 0 {
		r.agree = false
		r.checks = append(r.checks, fmt.Sprintf("stored segment %s: matomod vs seeded segment gaps: NO: %d extra days (e.g. %s), %d not found (e.g. %s), %d weeks, months or years (want 0)",
			storedSegmentDefinition, len(a), examples(a), len(bb), examples(bb), segPeriods))
	} else {
		r.checks = append(r.checks, fmt.Sprintf("stored segment %s: %d segment gap days, as seeded; no segment week, month or year gap", storedSegmentDefinition, len(segDays)))
	}
	if badCounts > 0 {
		r.agree = false
		r.checks = append(r.checks, fmt.Sprintf("naive per-site-time-zone counts differ from the seeded counts on %d site-days: the seeder or the naive fold is wrong", badCounts))
	} else {
		r.checks = append(r.checks, "naive per-site-time-zone counts equal the seeded counts on every site-day of the window: yes")
	}
	ua, ub := diff(utc.gaps, nfull.res.gaps)
	r.checks = append(r.checks, fmt.Sprintf("UTC-date naive query is wrong: visit counts differ on %d of %d non-UTC site-days; gaps: %d false, %d missed",
		utcWrong, nonUTC, len(ua), len(ub)))
}

func examples(ks []matomo.SiteDate) string {
	if len(ks) == 0 {
		return "none"
	}
	var p []string
	for _, k := range ks[:min(3, len(ks))] {
		p = append(p, fmt.Sprintf("site %d %s", k.IDSite, k.Date))
	}
	return strings.Join(p, ", ")
}

// naiveSummary is the median of naive runs.
type naiveSummary struct {
	median time.Duration
	trips  int64
	res    *naiveResult
	sum    summary
}

// rescans times the steady-state rescan and the rescan after 1 % of the
// days were invalidated, checking each is incremental and finds the same
// gaps as the full scan (new invalidations are within matomod's grace).
func (b *bench) rescans(ctx context.Context, ds *dataset, rng *rand.Rand, ref *gapdetect.Result) (steady, inval, run summary, req pageRequests, err error) {
	db, err := matomo.Open(ds.env.Settings, matomo.DBOptions{QueryTimeout: 30 * time.Minute})
	if err != nil {
		return steady, inval, run, req, err
	}
	defer db.Close()
	det := gapdetect.New(db, b.detectorOptions(b.cfg.window))
	first, err := rescan(ctx, det)
	if err != nil {
		return steady, inval, run, req, err
	}
	if !first.full {
		return steady, inval, run, req, errors.New("the first scan of a new detector was not full")
	}
	want := gapSet(ref)
	check := func(s sample, what string) error {
		if s.full {
			return fmt.Errorf("%s was a full scan: it would be mislabelled as a rescan", what)
		}
		got := gapSet(s.res)
		a, bb := diff(got, want)
		if len(a)+len(bb) > 0 && b.rep.agree {
			b.rep.agree = false
			kind := ""
			if len(a) > 0 {
				for _, g := range s.res.Gaps {
					if g.IDSite == a[0].IDSite && g.Date == a[0].Date {
						kind = fmt.Sprintf(" (first extra: %s, raw %d, %s)", g.Kind, g.RawVisits, g.Reason)
					}
				}
			}
			b.rep.checks = append(b.rep.checks, fmt.Sprintf("%s gaps differ from the full scan's: %d extra (e.g. %s), %d lost (e.g. %s)%s", what, len(a), examples(a), len(bb), examples(bb), kind))
		}
		return nil
	}
	if _, err := rescan(ctx, det); err != nil { // warm-up
		return steady, inval, run, req, err
	}
	var ss []sample
	r0 := poolReads(ctx, ds.env.DB)
	for i := 0; i < b.cfg.runs; i++ {
		s, err := rescan(ctx, det)
		if err != nil {
			return steady, inval, run, req, err
		}
		if err := check(s, "steady-state rescan"); err != nil {
			return steady, inval, run, req, err
		}
		ss = append(ss, s)
	}
	steady = summarize(ss)
	steady.diskPages = perRun(r0, poolReads(ctx, ds.env.DB), b.cfg.runs)
	if req, err = b.pageRequests(ctx, ds, det, steady.median); err != nil {
		return steady, inval, run, req, err
	}
	b.progress("steady-state rescan: median %v, %d round trips, %s buffer-pool page requests", steady.median, steady.trips, req.median)

	ss = ss[:0]
	var reads int64
	for i := 0; i < b.cfg.runs; i++ {
		picks := ds.pickGood(rng, b.cfg.window, invalidateRate)
		mark, err := ds.invalidate(ctx, picks)
		if err != nil {
			return steady, inval, run, req, fmt.Errorf("invalidating 1 %% of the days: %w", err)
		}
		var s sample
		if err := addPoolReads(ctx, ds.env.DB, &reads, func() (err error) { s, err = rescan(ctx, det); return err }); err != nil {
			return steady, inval, run, req, err
		}
		if err := check(s, "rescan after 1 % invalidated"); err != nil {
			return steady, inval, run, req, err
		}
		b.progress("rescan after invalidating %d site-days: %v, %d round trips, %d probes", len(picks), s.dur.Round(time.Millisecond), s.trips, s.res.Stats.Probes)
		ss = append(ss, s)
		if err := ds.restore(ctx, picks, mark); err != nil {
			return steady, inval, run, req, fmt.Errorf("restoring invalidated days: %w", err)
		}
		s, err = rescan(ctx, det)
		if err != nil {
			return steady, inval, run, req, err
		}
		if err := check(s, "rescan after re-archiving"); err != nil {
			return steady, inval, run, req, err
		}
	}
	inval = summarize(ss)
	inval.diskPages = perRun(0, reads, b.cfg.runs)

	// The routine case: a core:archive run re-archived every site's
	// yesterday (new rows in the current month's table, old ones deleted).
	ss = ss[:0]
	reads = 0
	for i := 0; i < b.cfg.runs; i++ {
		picks := ds.pickDay(1)
		var mark int64
		if err := ds.env.DB.QueryRowContext(ctx, "SELECT COALESCE(MAX(idinvalidation), 0) FROM "+ds.table("archive_invalidations")).Scan(&mark); err != nil {
			return steady, inval, run, req, err
		}
		if err := ds.restore(ctx, picks, mark); err != nil {
			return steady, inval, run, req, fmt.Errorf("re-archiving yesterday: %w", err)
		}
		var s sample
		if err := addPoolReads(ctx, ds.env.DB, &reads, func() (err error) { s, err = rescan(ctx, det); return err }); err != nil {
			return steady, inval, run, req, err
		}
		if err := check(s, "rescan after an archive run"); err != nil {
			return steady, inval, run, req, err
		}
		b.progress("rescan after re-archiving %d site-days: %v, %d round trips, %d tables read", len(picks), s.dur.Round(time.Millisecond), s.trips, s.res.Stats.TablesRead)
		ss = append(ss, s)
	}
	run = summarize(ss)
	run.diskPages = perRun(0, reads, b.cfg.runs)
	return steady, inval, run, req, nil
}

// serverInfo is what the header says about the database server.
type server struct {
	version    string
	bufferPool int64
}

func adminDB(dsn string) (*sql.DB, error) {
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, fmt.Errorf("MATOMOD_TEST_DSN: %w", err)
	}
	c.DBName = ""
	return sql.Open("mysql", c.FormatDSN())
}

func serverInfo(ctx context.Context, dsn string) (server, error) {
	var s server
	db, err := adminDB(dsn)
	if err != nil {
		return s, err
	}
	defer db.Close()
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	err = db.QueryRowContext(ctx, "SELECT VERSION(), @@innodb_buffer_pool_size").Scan(&s.version, &s.bufferPool)
	return s, err
}

// setBufferPool resizes the server's buffer pool for the run; restore puts
// the old size back.
func setBufferPool(ctx context.Context, dsn string, size, old int64, progress func(string, ...any)) (restore func(), err error) {
	db, err := adminDB(dsn)
	if err != nil {
		return nil, err
	}
	set := func(ctx context.Context, n int64) error {
		if _, err := db.ExecContext(ctx, fmt.Sprintf("SET GLOBAL innodb_buffer_pool_size = %d", n)); err != nil {
			return fmt.Errorf("--buffer-pool: %w (needs a user with SUPER or SYSTEM_VARIABLES_ADMIN)", err)
		}
		for i := 0; i < 600; i++ { // the resize runs in the background
			var cur int64
			if err := db.QueryRowContext(ctx, "SELECT @@innodb_buffer_pool_size").Scan(&cur); err == nil && cur >= n {
				return nil
			}
			time.Sleep(100 * time.Millisecond)
		}
		return nil
	}
	progress("setting innodb_buffer_pool_size to %s (was %s)", mib(uint64(size)), mib(uint64(old)))
	if err := set(ctx, size); err != nil {
		db.Close()
		return nil, err
	}
	return func() {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := set(ctx, old); err != nil {
			progress("restoring innodb_buffer_pool_size: %v", err)
		}
		db.Close()
	}, nil
}

func redactDSN(dsn string) string {
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "unparsable DSN"
	}
	c.Passwd = ""
	return c.FormatDSN()
}

// profiled runs f under a CPU profile written to path (none when empty).
func (b *bench) profiled(path string, f func() (summary, error)) (summary, error) {
	if path == "" {
		return f()
	}
	out, err := os.Create(path)
	if err != nil {
		return summary{}, fmt.Errorf("--cpuprofile: %w", err)
	}
	defer out.Close()
	if err := pprof.StartCPUProfile(out); err != nil {
		return summary{}, fmt.Errorf("--cpuprofile: %w", err)
	}
	defer b.progress("CPU profile of these full scans written to %s (go tool pprof -top %s)", path, path)
	defer pprof.StopCPUProfile()
	return f()
}
