package main

import (
	"context"
	"database/sql"
	"fmt"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
)

// targetFloor is the full scan's target since issue 13: done rows sit about
// four to a data page, so any correct read touches nearly every page of
// the monthly tables; the cheapest such read is the floor.
const targetFloor = 1.2

// windowTables are the monthly archive_numeric tables a full scan of the
// window reads (every table from the window's first month on).
func (b *bench) windowTables(ctx context.Context, ds *dataset, db *matomo.DB) ([]string, error) {
	since := ds.sites[0].today
	for _, s := range ds.sites {
		since = min(since, s.today.AddDays(-b.cfg.window))
	}
	all, err := db.ArchiveTables(ctx)
	if err != nil {
		return nil, err
	}
	var tables []string
	for _, t := range all {
		if t.Month >= since.Month() {
			tables = append(tables, t.Name)
		}
	}
	return tables, nil
}

// floorSQL is the cheapest read of a monthly table that still touches
// every page the done-flag read does: the same table scan of the clustered
// index with the same filter, returning one count instead of the rows (no
// transfer, no decoding, no Go). IGNORE INDEX keeps the optimizer off
// index_period_archived, which covers (period, name) through the primary
// key and would skip the data pages.
func floorSQL(db *matomo.DB, table string) string {
	return "SELECT COUNT(*) FROM " + db.T(table) + " IGNORE INDEX (index_period_archived) WHERE period = 1 AND name = 'done'"
}

// floorScan runs floorSQL over tables on two connections, as the full scan
// reads two tables at once, and returns the wall time and the rows counted.
func floorScan(ctx context.Context, db *matomo.DB, tables []string) (time.Duration, int64, error) {
	const workers = 2
	next := make(chan string)
	var (
		mu    sync.Mutex
		total int64
		first error
		wg    sync.WaitGroup
	)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for t := range next {
				var n int64
				err := db.SQL().QueryRowContext(ctx, floorSQL(db, t)).Scan(&n)
				mu.Lock()
				total += n
				if err != nil && first == nil {
					first = fmt.Errorf("table-scan floor of %s: %w", t, err)
				}
				mu.Unlock()
			}
		}()
	}
	for _, t := range tables {
		next <- t
	}
	close(next)
	wg.Wait()
	return time.Since(start), total, first
}

// openFloor is the floor's own pool: two connections, opened before the
// timed runs so connecting is not timed.
func openFloor(ds *dataset) (*matomo.DB, error) {
	return matomo.Open(ds.env.Settings, matomo.DBOptions{QueryTimeout: 30 * time.Minute, MaxOpenConns: 2})
}

// loadAvg is the 1-minute load average (-1 when unknown): the machine is
// shared, so every figure carries the load it was measured under.
func loadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// loads prints the range of 1-minute load averages read after each run.
func loads(ls []float64) string {
	lo, hi := -1.0, -1.0
	for _, l := range ls {
		if l < 0 {
			continue
		}
		if lo < 0 || l < lo {
			lo = l
		}
		hi = max(hi, l)
	}
	switch {
	case lo < 0:
		return "?"
	case fmt.Sprintf("%.1f", lo) == fmt.Sprintf("%.1f", hi):
		return fmt.Sprintf("%.1f", lo)
	}
	return fmt.Sprintf("%.1f–%.1f", lo, hi)
}

// statusCounter reads one server-wide SHOW GLOBAL STATUS counter; -1 when
// unknown.
func statusCounter(ctx context.Context, db *sql.DB, name string) int64 {
	var n string
	var v int64
	if err := db.QueryRowContext(ctx, "SHOW GLOBAL STATUS LIKE '"+name+"'").Scan(&n, &v); err != nil {
		return -1
	}
	return v
}

// pageRequests is the buffer-pool page requests per steady rescan.
type pageRequests struct{ median, spread, background string }

// requestPairs is how many steady rescans are counted, each after an idle
// interval as long as the rescan: the counter is server-wide, and on a
// shared server other clients' requests land in both.
const requestPairs = 15

// pageRequests counts Innodb_buffer_pool_read_requests around steady
// rescans of det, each preceded by an interval of the same length with no
// rescan, so the report can set the rescan's count beside the server's
// background over as long a time.
func (b *bench) pageRequests(ctx context.Context, ds *dataset, det *gapdetect.Detector, d time.Duration) (pageRequests, error) {
	counter := func() int64 { return statusCounter(ctx, ds.env.DB, "Innodb_buffer_pool_read_requests") }
	var scans, idle []int64
	for range requestPairs {
		q0 := counter()
		time.Sleep(d)
		q1 := counter()
		s, err := rescan(ctx, det)
		if err != nil {
			return pageRequests{}, err
		}
		q2 := counter()
		if q0 < 0 || q1 < 0 || q2 < 0 {
			return pageRequests{median: "?", spread: "-", background: "steady rescans: not measured (SHOW GLOBAL STATUS failed)"}, nil
		}
		if s.full {
			return pageRequests{}, fmt.Errorf("a steady rescan counted for page requests was a full scan")
		}
		scans, idle = append(scans, q2-q1), append(idle, q1-q0)
		d = s.dur
	}
	slices.Sort(scans)
	slices.Sort(idle)
	mid := func(v []int64) int64 { return v[len(v)/2] }
	return pageRequests{
		median: thousands(mid(scans)),
		spread: fmt.Sprintf("%s – %s (%d)", thousands(scans[0]), thousands(scans[len(scans)-1]), len(scans)),
		background: fmt.Sprintf("%d steady rescans, each after an interval as long with no rescan, in which the server counted %s (%s – %s): other clients and background work; the rescan's own share is about the difference of the medians, %s",
			len(scans), thousands(mid(idle)), thousands(idle[0]), thousands(idle[len(idle)-1]), thousands(mid(scans)-mid(idle))),
	}, nil
}
