// Command bench measures matomod's gap scan against the naive SQL an admin
// would write, side by side on a seeded Matomo-shaped MariaDB database
// (`make bench`, `make bench-large`); it is a tool, not a timed test.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/matomod/matomod/internal/matomotest"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// Exit statuses.
const (
	exitOK       = 0
	exitMismatch = 1 // matomod and the naive query disagree on the gaps
	exitError    = 2 // bad flags, database or seeding error
)

// config is the parsed command line.
type config struct {
	sites, days, visits, window int
	runs, naiveRuns             int
	heapSites, heapDays         int
	archiveRows                 int
	db                          string
	seed                        uint64
	keep, growth                bool
	bufferPool                  int64 // bytes; 0 leaves the server alone
	daemon                      string
	cpuProfile                  string
	rssWait                     time.Duration
	dsn                         string
	args                        []string
}

const autoHeapSites = -1

func parseFlags(args []string, stderr io.Writer) (config, error) {
	c := config{args: args}
	fs := flag.NewFlagSet("bench", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.IntVar(&c.sites, "sites", 200, "number of sites (skewed: a few big, many small)")
	fs.IntVar(&c.days, "days", 120, "days of raw visits per site, ending yesterday (site-local)")
	fs.IntVar(&c.visits, "visits", 500_000, "total rows in log_visit")
	fs.IntVar(&c.window, "window", 365, "gap scan window in days (capped to --days)")
	fs.IntVar(&c.runs, "runs", 5, "timed runs per matomod figure (median; one warm-up run is discarded)")
	fs.IntVar(&c.naiveRuns, "naive-runs", 3, "timed runs per naive-query figure (median)")
	fs.IntVar(&c.heapSites, "heap-sites", autoHeapSites, "sites of the separate archive-only database for the peak-heap and /metrics figures (0: skip; default 10000 when --sites >= 1000, else 1000)")
	fs.IntVar(&c.heapDays, "heap-days", 365, "days of archives per site in the peak-heap database")
	fs.IntVar(&c.archiveRows, "archive-rows", 25, "archive_numeric rows per plain day archive, done flag included (Matomo skips zero values, so small days get fewer)")
	fs.StringVar(&c.db, "db", "matomod_bench", "database to (re)create; the peak-heap one is <db>_10k")
	fs.Uint64Var(&c.seed, "seed", 1, "random seed of the generated data")
	fs.BoolVar(&c.keep, "keep", false, "keep the databases afterwards (default: drop them)")
	fs.BoolVar(&c.growth, "growth", true, "also measure at half the visits to show how scan time grows with log_visit")
	bp := fs.String("buffer-pool", "", "set the server's innodb_buffer_pool_size (e.g. 4G) for the run and restore it after (default: leave the server alone)")
	fs.StringVar(&c.daemon, "daemon", "", "matomod binary for the idle-RSS figure (default: build ./cmd/matomod; \"off\": skip)")
	fs.DurationVar(&c.rssWait, "rss-wait", 0, "how long the daemon idles after its first scan before its RSS is read (default 30s, or 150s when --sites >= 1000: Go forces a GC every 2 minutes)")
	fs.StringVar(&c.cpuProfile, "cpuprofile", "", "write a CPU profile of matomod's full scans at N visits to this file (and of the peak-heap database's to FILE.10k)")
	if err := fs.Parse(args); err != nil {
		return c, err
	}
	if fs.NArg() > 0 {
		return c, fmt.Errorf("unexpected argument %q: every setting is a flag (see -h)", fs.Arg(0))
	}
	check := func(name string, v, lo, hi int) error {
		if v < lo || v > hi {
			return fmt.Errorf("--%s %d: must be between %d and %d", name, v, lo, hi)
		}
		return nil
	}
	for _, e := range []error{
		check("sites", c.sites, 1, 100_000),
		check("days", c.days, 4, 3660),
		check("visits", c.visits, 1, 2_000_000_000),
		check("window", c.window, 1, 3660),
		check("runs", c.runs, 1, 1000),
		check("naive-runs", c.naiveRuns, 1, 1000),
		check("heap-days", c.heapDays, 4, 3660),
		check("archive-rows", c.archiveRows, 2, len(plainMetrics)+1),
	} {
		if e != nil {
			return c, e
		}
	}
	if c.heapSites == autoHeapSites {
		c.heapSites = 1000
		if c.sites >= 1000 {
			c.heapSites = 10_000
		}
	}
	if err := check("heap-sites", c.heapSites, 0, 100_000); err != nil {
		return c, err
	}
	switch {
	case c.rssWait < 0 || c.rssWait > time.Hour:
		return c, fmt.Errorf("--rss-wait %v: must be between 1s and 1h", c.rssWait)
	case c.rssWait == 0 && c.sites >= 1000:
		c.rssWait = 150 * time.Second
	case c.rssWait == 0:
		c.rssWait = 30 * time.Second
	}
	if c.window > c.days {
		c.window = c.days
	}
	if !validDBName(c.db) {
		return c, fmt.Errorf("--db %q: use letters, digits and _ only (at most 50)", c.db)
	}
	if *bp != "" {
		n, err := parseSize(*bp)
		if err != nil {
			return c, fmt.Errorf("--buffer-pool %q: %w", *bp, err)
		}
		c.bufferPool = n
	}
	c.dsn = matomotest.AdminDSN()
	return c, nil
}

func validDBName(s string) bool {
	if s == "" || len(s) > 50 {
		return false
	}
	for _, r := range s {
		if !(r == '_' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
			return false
		}
	}
	return true
}

// parseSize reads 512M, 4G, 1073741824.
func parseSize(s string) (int64, error) {
	mult := int64(1)
	switch strings.ToUpper(s[len(s)-1:]) {
	case "K":
		mult = 1 << 10
	case "M":
		mult = 1 << 20
	case "G":
		mult = 1 << 30
	}
	if mult > 1 {
		s = s[:len(s)-1]
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 {
		return 0, errors.New("not a size: use e.g. 512M or 4G")
	}
	return n * mult, nil
}

func run(args []string, stdout, stderr io.Writer) int {
	c, err := parseFlags(args, stderr)
	if err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return exitOK
		}
		fmt.Fprintln(stderr, "bench:", err)
		return exitError
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	b := &bench{cfg: c, log: stderr}
	rep, err := b.run(ctx)
	if rep != nil {
		rep.print(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, "bench:", err)
		return exitError
	}
	if !rep.agree {
		fmt.Fprintln(stderr, "bench: matomod and the naive query found different gaps (see above)")
		return exitMismatch
	}
	return exitOK
}
