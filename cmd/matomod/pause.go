package main

import (
	"context"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/metrics"
)

// pauseFromINI reads config.ini.php afresh: Matomo's updater flips these
// flags while it runs, so a cached copy would be wrong.
func pauseFromINI(s *setup) string {
	ini, err := matomo.ReadConfigINI(s.cfg.MatomoDir)
	if err != nil {
		return "" // unreadable now: the run itself will say so
	}
	switch {
	case ini.MaintenanceMode:
		return metrics.PausedMaintenanceMode
	case !ini.RecordStatistics:
		return metrics.PausedTrackingDisabled
	}
	return ""
}

// pauseReason adds a pending core:update: version_core in the DB older
// than core/Version.php.
func pauseReason(ctx context.Context, s *setup, db *matomo.DB) (reason string, version string) {
	if r := pauseFromINI(s); r != "" {
		return r, ""
	}
	opts, err := db.ReadOptions(ctx)
	if err != nil {
		return "", ""
	}
	code, err := matomo.CodeVersion(s.cfg.MatomoDir)
	if err == nil && opts.VersionCore != "" && matomo.VersionLess(opts.VersionCore, code) {
		return metrics.PausedUpdatePending, opts.VersionCore
	}
	return "", opts.VersionCore
}
