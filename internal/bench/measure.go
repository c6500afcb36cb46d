package main

import (
	"context"
	"database/sql"
	"fmt"
	"runtime"
	rtmetrics "runtime/metrics"
	"slices"
	"time"

	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
)

// heapSampler records, while a scan runs, the peak of the heap's object
// bytes (live and not yet collected: what the process really holds) and
// the peak live heap as the GC last marked it (what the scan needs; the
// first depends on GC pacing and CPU contention, the second does not).
type heapSampler struct {
	stop, done         chan struct{}
	base, peak         uint64
	liveBase, livePeak uint64
}

const (
	heapMetric = "/memory/classes/heap/objects:bytes"
	liveMetric = "/gc/heap/live:bytes"
)

func readHeap() (objects, live uint64) {
	s := []rtmetrics.Sample{{Name: heapMetric}, {Name: liveMetric}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64()
}

// startHeap collects garbage first, so the peaks count only what the
// measured code allocates on top of what is live now.
func startHeap() *heapSampler {
	runtime.GC()
	h := &heapSampler{stop: make(chan struct{}), done: make(chan struct{})}
	h.base, h.liveBase = readHeap()
	h.peak, h.livePeak = h.base, h.liveBase
	go func() {
		defer close(h.done)
		t := time.NewTicker(500 * time.Microsecond)
		defer t.Stop()
		for {
			select {
			case <-h.stop:
				return
			case <-t.C:
				h.sample()
			}
		}
	}()
	return h
}

func (h *heapSampler) sample() {
	o, l := readHeap()
	h.peak, h.livePeak = max(h.peak, o), max(h.livePeak, l)
}

// end returns the peaks above the baselines. A GC right after the run
// marks what the scan's result and state still hold.
func (h *heapSampler) end() (peak, live uint64) {
	close(h.stop)
	<-h.done
	h.sample()
	runtime.GC()
	h.sample()
	return h.peak - h.base, h.livePeak - h.liveBase
}

// sample is one timed run.
type sample struct {
	dur   time.Duration
	trips int64
	heap  uint64
	live  uint64
	full  bool
	load  float64 // 1-minute load average right after the run
	res   *gapdetect.Result
}

// summary is the median of several samples.
type summary struct {
	runs            int
	median, min     time.Duration
	max             time.Duration
	trips           int64
	heap, live      uint64 // largest peaks of the runs
	probes, doneRow int
	diskPages       int64             // InnoDB pages read from disk per run (-1: unknown)
	loads           []float64         // 1-minute load average after each run
	res             *gapdetect.Result // of the last run
}

func summarize(ss []sample) summary {
	if len(ss) == 0 {
		return summary{}
	}
	d := make([]time.Duration, len(ss))
	var s summary
	for i, x := range ss {
		d[i] = x.dur
		s.loads = append(s.loads, x.load)
		s.heap, s.live = max(s.heap, x.heap), max(s.live, x.live)
	}
	slices.Sort(d)
	s.runs, s.median, s.min, s.max = len(ss), d[len(d)/2], d[0], d[len(d)-1]
	if len(d)%2 == 0 {
		s.median = (d[len(d)/2-1] + d[len(d)/2]) / 2
	}
	last := ss[len(ss)-1]
	s.trips, s.res = last.trips, last.res
	if last.res != nil {
		s.probes, s.doneRow = last.res.Stats.Probes, last.res.Stats.DoneRows
	}
	return s
}

// detectorOptions are the daemon's defaults except: the bench clock (so
// every scan agrees on "yesterday"), the window, and no stale check (the
// naive query cannot see staleness either).
func (b *bench) detectorOptions(window int) gapdetect.Options {
	now := b.now
	return gapdetect.Options{WindowDays: window, VerifyDays: -1, Now: func() time.Time { return now }}
}

// fullScan is a scan as a fresh process does it: a new connection pool and
// a new detector with no saved state.
func (b *bench) fullScan(ctx context.Context, ds *dataset, o gapdetect.Options) (sample, error) {
	db, err := matomo.Open(ds.env.Settings, matomo.DBOptions{QueryTimeout: 30 * time.Minute})
	if err != nil {
		return sample{}, err
	}
	defer db.Close()
	det := gapdetect.New(db, o)
	h := startHeap()
	start := time.Now()
	res, err := det.Scan(ctx)
	dur := time.Since(start)
	heap, live := h.end()
	if err != nil {
		return sample{}, fmt.Errorf("matomod gap scan: %w", err)
	}
	if !res.Stats.Full {
		return sample{}, fmt.Errorf("a scan by a new detector was not a full scan: the figure would be mislabelled")
	}
	return sample{dur: dur, trips: res.Stats.RoundTrips, heap: heap, live: live, full: true, load: loadAvg(), res: res}, nil
}

// fullScans runs one discarded warm-up scan and n timed ones.
func (b *bench) fullScans(ctx context.Context, ds *dataset, n, window int, what string) (summary, error) {
	o := b.detectorOptions(window)
	if _, err := b.fullScan(ctx, ds, o); err != nil {
		return summary{}, err
	}
	var ss []sample
	r0 := poolReads(ctx, ds.env.DB)
	for i := 0; i < n; i++ {
		s, err := b.fullScan(ctx, ds, o)
		if err != nil {
			return summary{}, err
		}
		b.progress("%s: full scan %d/%d: %v, %d round trips", what, i+1, n, s.dur.Round(time.Millisecond), s.trips)
		ss = append(ss, s)
	}
	sum := summarize(ss)
	sum.diskPages = perRun(r0, poolReads(ctx, ds.env.DB), n)
	return sum, nil
}

// poolReads is the server's count of pages InnoDB had to read from disk
// (not found in the buffer pool); -1 when unknown. Server-wide, so other
// clients' reads count too.
func poolReads(ctx context.Context, db *sql.DB) int64 {
	var name string
	var n int64
	if err := db.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE 'Innodb_buffer_pool_reads'").Scan(&name, &n); err != nil {
		return -1
	}
	return n
}

// addPoolReads runs f and adds the InnoDB pages it read from disk to *acc
// (-1 once any count is unknown).
func addPoolReads(ctx context.Context, db *sql.DB, acc *int64, f func() error) error {
	r0 := poolReads(ctx, db)
	err := f()
	if r1 := poolReads(ctx, db); r0 < 0 || r1 < 0 || *acc < 0 {
		*acc = -1
	} else {
		*acc += r1 - r0
	}
	return err
}

func perRun(before, after int64, runs int) int64 {
	if before < 0 || after < 0 || runs == 0 {
		return -1
	}
	return (after - before) / int64(runs)
}

// rescan times one scan of a detector that keeps its state.
func rescan(ctx context.Context, det *gapdetect.Detector) (sample, error) {
	h := startHeap()
	start := time.Now()
	res, err := det.Scan(ctx)
	dur := time.Since(start)
	heap, live := h.end()
	if err != nil {
		return sample{}, fmt.Errorf("matomod rescan: %w", err)
	}
	return sample{dur: dur, trips: res.Stats.RoundTrips, heap: heap, live: live, full: res.Stats.Full, load: loadAvg(), res: res}, nil
}

// gapSet is the set of site-days a result reports, ignoring kinds. Week,
// month and year gaps are left out: the naive query knows only days.
func gapSet(r *gapdetect.Result) map[matomo.SiteDate]gapdetect.Kind {
	m := make(map[matomo.SiteDate]gapdetect.Kind, len(r.Gaps))
	for _, g := range r.Gaps {
		if g.IsDay() {
			m[matomo.SiteDate{IDSite: g.IDSite, Date: g.Date}] = g.Kind
		}
	}
	return m
}

// diff returns the keys only in a and only in b, sorted.
func diff[V, W any](a map[matomo.SiteDate]V, b map[matomo.SiteDate]W) (onlyA, onlyB []matomo.SiteDate) {
	for k := range a {
		if _, ok := b[k]; !ok {
			onlyA = append(onlyA, k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			onlyB = append(onlyB, k)
		}
	}
	less := func(x, y matomo.SiteDate) int {
		if x.IDSite != y.IDSite {
			return x.IDSite - y.IDSite
		}
		return int(x.Date - y.Date)
	}
	slices.SortFunc(onlyA, less)
	slices.SortFunc(onlyB, less)
	return onlyA, onlyB
}

func kindCounts(r *gapdetect.Result) map[gapdetect.Kind]int {
	m := map[gapdetect.Kind]int{}
	for _, g := range r.Gaps {
		if g.IsDay() {
			m[g.Kind]++
		}
	}
	return m
}
