package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/matomod/matomod/internal/archiver"
	"github.com/matomod/matomod/internal/config"
	"github.com/matomod/matomod/internal/daemon"
	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/repair"
	"github.com/matomod/matomod/internal/scheduler"
)

// setup is everything built from the two config files.
type setup struct {
	cfg config.Config
	mat *config.Matomo
}

// loadSetup reads matomod.yml (optional at its default path) and Matomo's
// config.ini.php.
func loadSetup(g *globals) (*setup, error) {
	cfg, err := config.Load(g.configFile, g.configFile == config.DefaultPath)
	if err != nil {
		return nil, err
	}
	if g.matomoDir != "" {
		cfg.MatomoDir = g.matomoDir
	}
	mat, err := cfg.LoadMatomo()
	if err != nil {
		return nil, err
	}
	s := &setup{cfg: cfg, mat: mat}
	if err := s.validate(); err != nil {
		return nil, err
	}
	return s, nil
}

// validate checks what config.Validate cannot see alone: the schedule and
// its time zone. run, reload, check and --config.check all come through
// here, so none accepts what another refuses.
func (s *setup) validate() error {
	_, err := scheduler.New(s.settings().Schedule, func(context.Context, scheduler.Trigger) scheduler.Outcome { return scheduler.Skipped },
		slog.New(slog.DiscardHandler), nil)
	return err
}

// settings maps the configuration onto the daemon's.
func (s *setup) settings() daemon.Settings {
	c := s.cfg
	a := c.Archive
	retries := a.Retries
	if retries == 0 {
		retries = -1 // the scheduler's 0 means its default
	}
	return daemon.Settings{
		Role: c.Role,
		Schedule: scheduler.Config{Schedule: a.Schedule, Timezone: a.Timezone, Jitter: a.Jitter.D(),
			Retries: retries, RetryBase: a.RetryBackoff.D(), StateFile: c.StateFile},
		StopTimeout:       c.StopTimeout.D(),
		KillGrace:         a.KillGrace.D(),
		ScanInterval:      c.Gaps.ScanInterval.D(),
		AutoRepair:        c.Gaps.AutoRepair,
		MaxRepairDays:     c.Gaps.MaxRepairDays,
		WorkerConcurrency: c.Worker.Concurrency,
		WorkerInterval:    c.Worker.Interval.D(),
	}
}

func (s *setup) openDB() (*matomo.DB, error) {
	return matomo.Open(s.mat.DB, matomo.DBOptions{MaxOpenConns: 5})
}

func (s *setup) console(log *slog.Logger) *archiver.Console {
	return &archiver.Console{
		PHP:         s.cfg.PHPBinary,
		PHPOptions:  s.cfg.PHPCLIOptions,
		ConsolePath: s.cfg.ConsolePathOrDefault(),
		Dir:         s.cfg.MatomoDir,
		Logger:      log,
	}
}

func (s *setup) detectorOptions() gapdetect.Options {
	c := s.cfg
	return gapdetect.Options{
		WindowDays:             c.Gaps.WindowDays,
		VerifyDays:             verifyDays(c.Gaps.VerifyDays),
		Grace:                  c.Gaps.Grace.D(),
		Include:                c.Sites.Include,
		Exclude:                c.Sites.Exclude,
		CollectionMinTraffic:   c.Gaps.CollectionGapMinTrafficDays,
		DeleteLogsEnable:       s.mat.INI.DeleteLogsEnable,
		DeleteLogsOlderThan:    s.mat.INI.DeleteLogsOlderThan,
		ProcessNewSegmentsFrom: s.mat.INI.ProcessNewSegmentsFrom,
		FullRescanInterval:     c.Gaps.FullRescanInterval.D(),
	}
}

// verifyDays maps the config's 0 ("off") to the detector's negative.
func verifyDays(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

func (s *setup) repairOptions(log *slog.Logger, dry bool) repair.Options {
	return repair.Options{
		URL:       s.cfg.Archive.URL,
		ExtraArgs: s.cfg.Archive.ExtraArgs,
		MaxDays:   s.cfg.Gaps.MaxRepairDays,
		DryRun:    dry,
		Timeout:   s.cfg.Archive.RunTimeout.D(),
		KillGrace: s.cfg.Archive.KillGrace.D(),
		Logger:    log,
	}
}

// parseSites reads --sites 1,3.
func parseSites(s string) ([]int, error) {
	if s == "" {
		return nil, nil
	}
	var out []int
	for _, p := range strings.Split(s, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(p))
		if err != nil || n < 1 {
			return nil, fmt.Errorf("--sites %q: %q is not a site id: use e.g. --sites 1,3", s, p)
		}
		out = append(out, n)
	}
	return out, nil
}

func parseDateFlag(name, v string) (matomo.Date, error) {
	if v == "" {
		return 0, nil
	}
	d, err := matomo.ParseDate(v)
	if err != nil {
		return 0, fmt.Errorf("--%s %q is not a date: use YYYY-MM-DD", name, v)
	}
	return d, nil
}

// archiveLock takes the lock every core:archive matomod starts is run
// under, waiting up to wait; busy errors name the holder and the fix.
func archiveLock(ctx context.Context, db *matomo.DB, wait time.Duration) (*matomo.Lock, error) {
	l, err := db.WaitLock(ctx, db.ArchiveLockName(), wait)
	if errors.Is(err, matomo.ErrLockBusy) {
		return nil, fmt.Errorf("another core:archive started by matomod is running (%w): wait for it, or pass --lock.wait=30m to wait up to 30 minutes", err)
	}
	return l, err
}
