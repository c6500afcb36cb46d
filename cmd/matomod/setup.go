package main

import (
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

	"github.com/matomod/matomod/internal/archiver"
	"github.com/matomod/matomod/internal/config"
	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/repair"
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
	return &setup{cfg: cfg, mat: mat}, nil
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
		WindowDays:           c.Gaps.WindowDays,
		VerifyDays:           verifyDays(c.Gaps.VerifyDays),
		Grace:                c.Gaps.Grace.D(),
		Include:              c.Sites.Include,
		Exclude:              c.Sites.Exclude,
		CollectionMinTraffic: c.Gaps.CollectionGapMinTrafficDays,
		DeleteLogsEnable:     s.mat.INI.DeleteLogsEnable,
		DeleteLogsOlderThan:  s.mat.INI.DeleteLogsOlderThan,
		FullRescanInterval:   c.Gaps.FullRescanInterval.D(),
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

func since(t time.Time, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	return now.Sub(t).Round(time.Second).String() + " ago"
}
