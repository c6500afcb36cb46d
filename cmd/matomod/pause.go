package main

import (
	"context"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/metrics"
)

// pauseFromINI reads config.ini.php afresh: Matomo's updater flips these
// flags while it runs, so a cached copy would be wrong.
func pauseFromINI(s *setup) (string, error) {
	ini, err := matomo.ReadConfigINI(s.cfg.MatomoDir)
	if err != nil {
		return "", err
	}
	switch {
	case ini.MaintenanceMode:
		return metrics.PausedMaintenanceMode, nil
	case !ini.RecordStatistics:
		return metrics.PausedTrackingDisabled, nil
	}
	return "", nil
}

// pauseReason adds a pending core:update: version_core in the DB older
// than core/Version.php. An error means the state is unknown.
func pauseReason(ctx context.Context, s *setup, db *matomo.DB) (reason, version string, err error) {
	if r, err := pauseFromINI(s); r != "" || err != nil {
		return r, "", err
	}
	opts, err := db.ReadOptions(ctx)
	if err != nil {
		return "", "", err
	}
	code, err := matomo.CodeVersion(s.cfg.MatomoDir)
	if err == nil && opts.VersionCore != "" && matomo.VersionLess(opts.VersionCore, code) {
		return metrics.PausedUpdatePending, opts.VersionCore, nil
	}
	return "", opts.VersionCore, nil
}
