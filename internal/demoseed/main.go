// Command demoseed builds the demo's throw-away Matomo: database
// matomod_demo with 3 sites in 3 time zones and 60 days of visits, archived
// by the console simulator, then broken in every way matomod detects. It
// writes a Matomo directory and a matomod.yml for `make demo`. Never part
// of the product binary.
package main

import (
	"context"
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

func main() {
	dir := flag.String("dir", "/tmp/matomod-demo", "where to write the fake Matomo directory and matomod.yml")
	sim := flag.String("sim", "", "path of the console simulator binary (stands in for php)")
	dbName := flag.String("db", "matomod_demo", "database to (re)create")
	flag.Parse()
	if err := run(*dir, *sim, *dbName); err != nil {
		fmt.Fprintln(os.Stderr, "demoseed:", err)
		os.Exit(1)
	}
}

func run(dir, sim, dbName string) error {
	if sim == "" {
		return fmt.Errorf("--sim is required")
	}
	ctx := context.Background()
	matomoDir := filepath.Join(dir, "matomo")
	os.RemoveAll(dir)
	if err := os.MkdirAll(matomoDir, 0o755); err != nil {
		return err
	}
	e, err := matomotest.Create(ctx, matomotest.AdminDSN(), dbName, matomoDir)
	if err != nil {
		return fmt.Errorf("creating database %s: %w", dbName, err)
	}
	now := time.Now().UTC()
	sites := []struct {
		id int
		tz string
	}{{1, "Europe/Berlin"}, {2, "America/New_York"}, {3, "UTC+5.5"}}
	today := matomo.DateOf(now)
	first := today.AddDays(-60)
	rng := rand.New(rand.NewPCG(1, 2))
	for _, s := range sites {
		e.AddSite(s.id, s.tz, first.AddDays(-1).String())
		// Site 3 loses its raw data of two days mid-window (a restore):
		// a collection gap.
		for d := first; d < today; d++ {
			if s.id == 3 && (d == today.AddDays(-30) || d == today.AddDays(-29)) {
				continue
			}
			n := 3 + rng.IntN(8)
			base := d.Time().Add(6 * time.Hour)
			for i := 0; i < n; i++ {
				e.AddVisits(s.id, base.Add(time.Duration(rng.IntN(12*60))*time.Minute), 1)
			}
		}
	}
	if e.Err != nil {
		return e.Err
	}
	// Archive every day through the simulator, as Matomo would after an
	// invalidation of the whole range.
	console := filepath.Join(matomoDir, "console")
	simRun := func(args ...string) error {
		cmd := exec.Command(sim, append([]string{console}, args...)...)
		cmd.Dir = matomoDir
		out, err := cmd.CombinedOutput()
		if err != nil {
			return fmt.Errorf("simulator %s: %v\n%s", strings.Join(args, " "), err, out)
		}
		return nil
	}
	if err := simRun("core:invalidate-report-data", "--sites=1,2,3", "--dates="+first.String()+","+today.AddDays(-1).String(), "--periods=day"); err != nil {
		return err
	}
	if err := simRun("core:archive", "--no-ansi", "--url=http://matomo.example.org/"); err != nil {
		return err
	}
	// Break it: one of each gap kind.
	d := func(n int) string { return today.AddDays(-n).String() }
	old := now.Add(-72 * time.Hour)
	// missing: site 1 lost three consecutive day archives (cron was down).
	for _, n := range []int{20, 19, 18} {
		e.Exec("DELETE n FROM {p}"+matomo.TableFor(today.AddDays(-n))+" n JOIN {p}"+matomo.TableFor(today.AddDays(-n))+" f ON f.idarchive = n.idarchive WHERE f.idsite = 1 AND f.period = 1 AND f.date1 = ?", d(n))
	}
	// invalidated: site 2, done = 4 in place, never rebuilt.
	e.Exec("UPDATE {p}"+matomo.TableFor(today.AddDays(-10))+" SET value = 4, ts_archived = ? WHERE idsite = 2 AND period = 1 AND date1 = ? AND name LIKE 'done%'", old, d(10))
	// failed: site 2, a crashed archive (done = 2).
	e.Exec("UPDATE {p}"+matomo.TableFor(today.AddDays(-12))+" SET value = 2, ts_archived = ? WHERE idsite = 2 AND period = 1 AND date1 = ? AND name = 'done'", old, d(12))
	// incomplete: site 3, archived while the day was still going on.
	e.Exec("UPDATE {p}"+matomo.TableFor(today.AddDays(-5))+" SET ts_archived = ? WHERE idsite = 3 AND period = 1 AND date1 = ?", today.AddDays(-5).Time().Add(2*time.Hour), d(5))
	// stale: site 1, late raw visits imported after the day was archived.
	loc, _ := matomo.LoadLocation("Europe/Berlin")
	s, _ := matomo.DayBounds(loc, today.AddDays(-3))
	e.AddVisits(1, s.Add(9*time.Hour), 5)
	// log deletion at 45 days: site 1 loses an archive older than that,
	// which must be reported but never repaired.
	e.SetOption("delete_logs_enable", "1").SetOption("delete_logs_older_than", "45")
	e.Exec("DELETE n FROM {p}"+matomo.TableFor(today.AddDays(-50))+" n JOIN {p}"+matomo.TableFor(today.AddDays(-50))+" f ON f.idarchive = n.idarchive WHERE f.idsite = 1 AND f.period = 1 AND f.date1 = ?", d(50))
	e.SetOption("version_core", matomotest.MatomoVersion)
	if e.Err != nil {
		return e.Err
	}
	cfg := fmt.Sprintf(`# matomod.yml for the demo (make demo)
matomo_dir: %s
php_binary: %s        # the console simulator stands in for PHP
archive:
  url: "http://matomo.example.org/"
  schedule: "@every 20s"
  run_timeout: 2m
  kill_grace: 5s
gaps:
  scan_interval: 15s
  max_repair_days: 60
state_file: %s
stop_timeout: 30s
`, matomoDir, sim, filepath.Join(dir, "state.json"))
	if err := os.WriteFile(filepath.Join(dir, "matomod.yml"), []byte(cfg), 0o644); err != nil {
		return err
	}
	fmt.Printf("demo Matomo ready: database %s, directory %s, config %s\n", dbName, matomoDir, filepath.Join(dir, "matomod.yml"))
	return nil
}
