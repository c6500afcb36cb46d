package main

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
)

// swapTable holds the other size of log_visit while growth is measured:
// N/2 (a copy of the first half) while log_visit holds N, and N while
// log_visit holds N/2. Swapping is one atomic RENAME TABLE, so the two
// sizes can alternate run by run and see the same machine load.
const swapTable = "log_visit_swap"

// copyHalf copies the first half of the visits (ids 1..half1, loaded
// first) into swapTable, before log_visit's secondary indexes exist.
func (ds *dataset) copyHalf(ctx context.Context) error {
	if err := ds.exec(ctx, "CREATE TABLE "+ds.table(swapTable)+" LIKE "+ds.table("log_visit")); err != nil {
		return err
	}
	const chunk = 250_000
	return ds.execStream(ctx, 2, func(emit func(string) bool) {
		for lo := int64(1); lo <= ds.half1; lo += chunk {
			if !emit(fmt.Sprintf("INSERT INTO %s SELECT * FROM %s WHERE idvisit BETWEEN %d AND %d",
				ds.table(swapTable), ds.table("log_visit"), lo, min(lo+chunk-1, ds.half1))) {
				return
			}
		}
	})
}

// indexSwap adds log_visit's secondary indexes to swapTable.
func (ds *dataset) indexSwap(ctx context.Context) error {
	if err := ds.exec(ctx, "ALTER TABLE "+ds.table(swapTable)+" "+strings.Join(ds.indexDDL, ", ")); err != nil {
		return err
	}
	return ds.exec(ctx, "ANALYZE TABLE "+ds.table(swapTable))
}

// useHalf makes log_visit hold N/2 (half) or N visits.
func (ds *dataset) useHalf(ctx context.Context, half bool) error {
	if ds.halfActive == half {
		return nil
	}
	lv, sw, tmp := ds.table("log_visit"), ds.table(swapTable), ds.table("log_visit_swap_tmp")
	if err := ds.exec(ctx, fmt.Sprintf("RENAME TABLE %s TO %s, %s TO %s, %s TO %s", lv, tmp, sw, lv, tmp, sw)); err != nil {
		return fmt.Errorf("swapping log_visit sizes: %w", err)
	}
	ds.halfActive = half
	return nil
}

// dropSwap puts N back into log_visit and drops the other size.
func (ds *dataset) dropSwap(ctx context.Context) error {
	if err := ds.useHalf(ctx, false); err != nil {
		return err
	}
	return ds.exec(ctx, "DROP TABLE IF EXISTS "+ds.table(swapTable))
}

// sizeFigures are the runs of one log_visit size.
type sizeFigures struct {
	visits                  int64
	mat, floor, naive       []sample
	matDisk, floorDisk, nvD int64 // InnoDB pages read from disk, all runs
	naiveTrips              int64
	naiveRes                *naiveResult
	floorRows               int64
}

// diskPer is pages read from disk per run (-1 when unknown).
func diskPer(total int64, runs int) int64 {
	if total < 0 || runs == 0 {
		return -1
	}
	return total / int64(runs)
}

// rounds measures matomod's full scan, the table-scan floor and the naive
// query at each size in turn (N/2 then N when half is set), round after
// round, so every size sees the same load; one discarded warm-up round
// first. matRuns rounds time matomod and the floor, naiveRuns the naive
// query.
func (b *bench) rounds(ctx context.Context, ds *dataset, nv *naive, fl *matomo.DB, tables []string, half bool, matRuns, naiveRuns int) (h, n *sizeFigures, err error) {
	o := b.detectorOptions(b.cfg.window)
	n = &sizeFigures{visits: ds.visits}
	sizes := []*sizeFigures{n}
	if half {
		h = &sizeFigures{visits: ds.half1}
		sizes = []*sizeFigures{h, n}
	}
	reads := func(acc *int64, f func() error) error { return addPoolReads(ctx, ds.env.DB, acc, f) }
	for round := -1; round < max(matRuns, naiveRuns); round++ {
		for _, sz := range sizes {
			what := "N"
			if sz == h {
				what = "N/2"
			}
			if err := ds.useHalf(ctx, sz == h); err != nil {
				return nil, nil, err
			}
			label := fmt.Sprintf("round %d/%d", round+1, max(matRuns, naiveRuns))
			if round < 0 {
				label = "warm-up"
			}
			if round < matRuns {
				var s sample
				if err := reads(&sz.matDisk, func() (err error) { s, err = b.fullScan(ctx, ds, o); return err }); err != nil {
					return nil, nil, err
				}
				var d time.Duration
				var rows int64
				if err := reads(&sz.floorDisk, func() (err error) { d, rows, err = floorScan(ctx, fl, tables); return err }); err != nil {
					return nil, nil, err
				}
				b.progress("%s %s: full scan %v (%d round trips; %s), table-scan floor %v, load %.2f", what, label,
					s.dur.Round(time.Millisecond), s.trips, stages(s.res), d.Round(time.Millisecond), s.load)
				if round >= 0 {
					sz.mat = append(sz.mat, s)
					sz.floor = append(sz.floor, sample{dur: d, trips: int64(len(tables)), load: loadAvg()})
					sz.floorRows = rows
				} else {
					sz.matDisk, sz.floorDisk = 0, 0
				}
			}
			if round < naiveRuns {
				var r *naiveResult
				if err := reads(&sz.nvD, func() (err error) { r, err = nv.runRetry(ctx, false, b.progress); return err }); err != nil {
					return nil, nil, err
				}
				l := loadAvg()
				b.progress("%s %s: naive query %v (%d groups), load %.2f", what, label, r.dur.Round(time.Millisecond), r.groups, l)
				if round >= 0 {
					sz.naive = append(sz.naive, sample{dur: r.dur, trips: int64(r.trips), load: l})
					sz.naiveRes, sz.naiveTrips = r, int64(r.trips)
				} else {
					sz.nvD = 0
				}
			}
		}
	}
	return h, n, ds.useHalf(ctx, false)
}

// perRound lists the growth N/2 → N of each round with the load of its N
// run: "×1.05 (load 2.1)".
func perRound(h, n []sample) string {
	var p []string
	for i := range min(len(h), len(n)) {
		p = append(p, fmt.Sprintf("×%.2f (load %.1f → %.1f)", float64(n[i].dur)/float64(h[i].dur), h[i].load, n[i].load))
	}
	return strings.Join(p, ", ")
}

// ratios lists a/b run by run.
func ratios(a, b []sample) string {
	var p []string
	for i := range min(len(a), len(b)) {
		p = append(p, fmt.Sprintf("×%.2f", float64(a[i].dur)/float64(b[i].dur)))
	}
	return strings.Join(p, ", ")
}

// stages renders a scan's stage times for the progress log.
func stages(res *gapdetect.Result) string {
	if res == nil {
		return ""
	}
	var b strings.Builder
	for i, st := range res.Stats.Stages {
		if i > 0 {
			b.WriteByte(' ')
		}
		fmt.Fprintf(&b, "%s %v", st.Name, st.Duration.Round(time.Millisecond))
	}
	return b.String()
}
