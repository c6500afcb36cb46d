package main

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

// Archive state of a seeded site-day.
const (
	stNone        uint8 = iota // no visits and no archive (Matomo writes none)
	stGood                     // done = 1, written after the local day ended
	stMissing                  // visits but every archive row of the day deleted
	stInvalidated              // done = 4 in place (all three archives), queued long ago
	stFailed                   // done = 2 (crashed run), long ago
	stIncomplete               // done = 1 but written before the local day ended
)

// zipfExponent skews traffic: site k gets a share ∝ 1/k^s (with 1,000
// sites the biggest has 13 %, the smallest 0.013 %).
const zipfExponent = 1.0

// Share of site-days with visits (at least 3 days old) broken per kind.
const (
	shareMissing     = 0.010
	shareInvalidated = 0.005
	shareFailed      = 0.001
	shareIncomplete  = 0.001
)

// zoneNames is the mix of site time zones: DST zones both sides of UTC,
// half- and quarter-hour offsets, and Matomo's manual UTC±h offsets.
var zoneNames = []string{
	"Europe/Berlin", "UTC", "America/New_York", "Asia/Kolkata", "UTC+5.5", "America/Los_Angeles",
	"Asia/Tokyo", "Europe/London", "Australia/Sydney", "America/Sao_Paulo", "Asia/Kathmandu",
	"UTC-3", "Pacific/Auckland", "Africa/Johannesburg", "Asia/Shanghai", "America/Chicago",
}

// site is one seeded site and its planned days.
type site struct {
	id    int
	tz    string
	loc   *time.Location
	first matomo.Date // first seeded site-local day
	today matomo.Date // site-local today at the bench clock
	n     []int32     // raw visits per day (index: date - first)
	state []uint8
	base  []int32 // idarchive of the plain day archive (0: none)
}

func (s *site) date(i int) matomo.Date { return s.first.AddDays(i) }

// dataset is one seeded Matomo database.
type dataset struct {
	env   *matomotest.Env
	now   time.Time // the bench clock: detector and seeding agree on "today"
	sites []*site

	segments, periods bool
	archRows          int   // rows of a plain archive, done included
	nominal           int32 // archived nb_visits of every day (archive-only DB); 0: the raw count
	visits, half1     int64 // planned log_visit rows; rows of the first half
	indexDDL          []string
	halfActive        bool // log_visit holds N/2 and swapTable N (growth runs)
}

// newDataset creates database name with Matomo's schema and the sites.
func newDataset(ctx context.Context, dsn, name, dir string, now time.Time, nSites, days int) (*dataset, error) {
	env, err := matomotest.Create(ctx, dsn, name, dir)
	if err != nil {
		return nil, fmt.Errorf("creating database %s at MATOMOD_TEST_DSN (%s): %w: start MariaDB (make ensure-db) or set MATOMOD_TEST_DSN", name, redactDSN(dsn), err)
	}
	ds := &dataset{env: env, now: now}
	ok := false
	defer func() {
		if !ok {
			env.Drop()
		}
	}()
	locs := map[string]*time.Location{}
	for i := 0; i < nSites; i++ {
		tz := zoneNames[i%len(zoneNames)]
		loc := locs[tz]
		if loc == nil {
			if loc, err = matomo.LoadLocation(tz); err != nil {
				return nil, err // a name in zoneNames is wrong
			}
			locs[tz] = loc
		}
		today := matomo.Today(loc, now)
		ds.sites = append(ds.sites, &site{id: i + 1, tz: tz, loc: loc, first: today.AddDays(-days), today: today,
			n: make([]int32, days), state: make([]uint8, days), base: make([]int32, days)})
	}
	if err := ds.insertSites(ctx); err != nil {
		return nil, fmt.Errorf("inserting sites into %s: %w", name, err)
	}
	ok = true
	return ds, nil
}

func (ds *dataset) table(name string) string { return "`" + ds.env.Prefix + name + "`" }

func (ds *dataset) insertSites(ctx context.Context) error {
	return ds.execStream(ctx, 2, func(emit func(string) bool) {
		var b strings.Builder
		n := 0
		flush := func() bool {
			if n == 0 {
				return true
			}
			ok := emit(b.String())
			b.Reset()
			n = 0
			return ok
		}
		for _, s := range ds.sites {
			if n == 0 {
				b.WriteString("INSERT INTO " + ds.table("site") + " (idsite, name, main_url, ts_created, timezone, currency, sitesearch_keyword_parameters, sitesearch_category_parameters, excluded_ips, excluded_parameters, excluded_user_agents, excluded_referrers, `group`, type) VALUES ")
			} else {
				b.WriteByte(',')
			}
			// Created well before the seeded range, so no day is cut off.
			created := s.first.AddDays(-2).Time()
			fmt.Fprintf(&b, "(%d, 'Site %d', 'https://site%d.example.org', '%s', '%s', 'EUR', '', '', '', '', '', '', '', 'website')",
				s.id, s.id, s.id, created.Format(sqlTime), s.tz)
			if n++; n == 2000 && !flush() {
				return
			}
		}
		flush()
	})
}

// planVisits draws raw visit counts: site weights ~ Zipf (a few big
// sites, many small ones), weekends quieter, Poisson noise. Then it breaks
// ~1 % of the archives (missing), ~0.5 % (invalidated) and a few more.
func (ds *dataset) planVisits(rng *rand.Rand, visits int) {
	weights := make([]float64, len(ds.sites))
	var wsum float64
	for i := range ds.sites {
		weights[i] = 1 / math.Pow(float64(i+1), zipfExponent)
		wsum += weights[i]
	}
	days := len(ds.sites[0].n)
	dayFactor := func(d matomo.Date) float64 {
		switch d.Time().Weekday() {
		case time.Saturday:
			return 0.7
		case time.Sunday:
			return 0.6
		}
		return 1
	}
	var fsum float64
	s0 := ds.sites[0]
	for i := 0; i < days; i++ {
		fsum += dayFactor(s0.date(i))
	}
	for si, s := range ds.sites {
		for i := range s.n {
			lambda := float64(visits) * weights[si] / wsum * dayFactor(s.date(i)) / fsum
			n := poisson(rng, lambda)
			s.n[i] = n
			if n == 0 {
				continue
			}
			s.state[i] = stGood
			ds.visits += int64(n)
			ds.half1 += int64((n + 1) / 2)
			if s.date(i) > s.today.AddDays(-3) {
				continue // recent days are within matomod's grace: leave them good
			}
			switch r := rng.Float64(); {
			case r < shareMissing:
				s.state[i] = stMissing
			case r < shareMissing+shareInvalidated:
				s.state[i] = stInvalidated
			case r < shareMissing+shareInvalidated+shareFailed:
				s.state[i] = stFailed
			case r < shareMissing+shareInvalidated+shareFailed+shareIncomplete:
				s.state[i] = stIncomplete
			}
		}
	}
}

// planArchiveOnly: every site-day has an archive (nominal nb_visits), and
// raw visits exist only for the broken days (2 each) so that their probes
// find something. It is the memory test's database: many sites and days,
// few rows.
func (ds *dataset) planArchiveOnly(rng *rand.Rand) {
	ds.nominal = 3
	for _, s := range ds.sites {
		for i := range s.n {
			s.state[i] = stGood
			if s.date(i) > s.today.AddDays(-3) {
				continue
			}
			switch r := rng.Float64(); {
			case r < shareMissing:
				s.state[i] = stMissing
			case r < shareMissing+shareInvalidated:
				s.state[i] = stInvalidated
			}
			if s.state[i] != stGood {
				s.n[i] = 2
				ds.visits += 2
				ds.half1++
			}
		}
	}
}

func poisson(rng *rand.Rand, lambda float64) int32 {
	if lambda <= 0 {
		return 0
	}
	if lambda < 30 {
		l, k, p := math.Exp(-lambda), int32(0), 1.0
		for {
			p *= rng.Float64()
			if p <= l {
				return k
			}
			k++
		}
	}
	return int32(max(0, math.Round(lambda+math.Sqrt(lambda)*rng.NormFloat64())))
}

const sqlTime = "2006-01-02 15:04:05"

// execStream runs the statements gen emits on workers connections, each
// with unique and foreign key checks off. emit returns false once a
// statement failed; gen should then stop.
func (ds *dataset) execStream(ctx context.Context, workers int, gen func(emit func(string) bool)) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ch := make(chan string)
	var (
		wg      sync.WaitGroup
		errOnce sync.Once
		first   error
	)
	fail := func(err error) {
		errOnce.Do(func() { first = err; cancel() })
	}
	for w := 0; w < workers; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := ds.env.DB.Conn(ctx)
			if err != nil {
				fail(err)
				for range ch {
				}
				return
			}
			defer conn.Close()
			// READ COMMITTED: INSERT … SELECT then takes no shared locks on
			// the source rows and fewer gap locks, so parallel chunks rarely
			// deadlock; the rare deadlock is retried.
			for _, q := range []string{"SET SESSION unique_checks = 0, foreign_key_checks = 0", "SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED"} {
				if _, err := conn.ExecContext(ctx, q); err != nil {
					fail(err)
				}
			}
			for q := range ch {
				if ctx.Err() != nil {
					continue
				}
				_, err := conn.ExecContext(ctx, q)
				for try := 0; try < 5 && retryable(err); try++ {
					time.Sleep(time.Duration(100*(try+1)) * time.Millisecond)
					_, err = conn.ExecContext(ctx, q)
				}
				if err != nil {
					if len(q) > 300 {
						q = q[:300] + "…"
					}
					fail(fmt.Errorf("%w (in %s)", err, q))
				}
			}
		}()
	}
	gen(func(q string) bool {
		select {
		case ch <- q:
			return true
		case <-ctx.Done():
			return false
		}
	})
	close(ch)
	wg.Wait()
	if first != nil {
		return first
	}
	return ctx.Err()
}

// retryable: InnoDB deadlock or lock wait timeout, after which the
// statement was rolled back and may simply run again.
func retryable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && (me.Number == 1213 || me.Number == 1205)
}

func (ds *dataset) exec(ctx context.Context, q string) error {
	if _, err := ds.env.DB.ExecContext(ctx, q); err != nil {
		if len(q) > 300 {
			q = q[:300] + "…"
		}
		return fmt.Errorf("%w (in %s)", err, q)
	}
	return nil
}

// dropScratch removes the generator tables.
func (ds *dataset) dropScratch(ctx context.Context) error {
	return ds.exec(ctx, "DROP TABLE IF EXISTS bench_plan, bench_arch, bench_metric")
}

// tableStats returns rows and bytes (data + indexes) of the tables whose
// name matches like.
func tableStats(ctx context.Context, db *sql.DB, like string) (rows, bytes, avgRow int64, err error) {
	err = db.QueryRowContext(ctx, `SELECT COALESCE(SUM(table_rows), 0), COALESCE(SUM(data_length + index_length), 0), COALESCE(MAX(avg_row_length), 0)
 FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE ?`, like).Scan(&rows, &bytes, &avgRow)
	return
}

// settle makes InnoDB write the seeded tables out (FLUSH TABLES … FOR
// EXPORT flushes their dirty pages), so background flushing does not slow
// down the first measurements after a load.
func (ds *dataset) settle(ctx context.Context) error {
	rows, err := ds.env.DB.QueryContext(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND engine = 'InnoDB'")
	if err != nil {
		return err
	}
	var names []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		names = append(names, "`"+n+"`")
	}
	rows.Close()
	if len(names) == 0 {
		return rows.Err()
	}
	conn, err := ds.env.DB.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if _, err := conn.ExecContext(ctx, "FLUSH TABLES "+strings.Join(names, ", ")+" FOR EXPORT"); err != nil {
		return fmt.Errorf("flushing the seeded tables: %w", err)
	}
	_, err = conn.ExecContext(ctx, "UNLOCK TABLES")
	return err
}
