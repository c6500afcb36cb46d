package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/matomod/matomod/internal/archiver"
	"github.com/matomod/matomod/internal/matomo"
)

// cmdArchive runs core:archive once, as the cron line did, with matomod's
// timeout, process-group handling and output parsing.
// It runs under the archive lock, as the daemon's runs do: a manual run
// while the daemon (on any host) archives waits up to lockWait, then says
// who holds the lock.
func cmdArchive(ctx context.Context, g *globals, lockWait time.Duration, w io.Writer, log *slog.Logger) int {
	s, err := loadSetup(g)
	if err != nil {
		return fail(w, err)
	}
	if reason, _ := pauseFromINI(s); reason != "" {
		log.Warn("archiving skipped", "event", "run_skipped", "reason", reason)
		return exitSkipped
	}
	db, err := s.openDB()
	if err != nil {
		return fail(w, err)
	}
	defer db.Close()
	lock, err := archiveLock(ctx, db, lockWait)
	if err != nil {
		fmt.Fprintf(w, "core:archive not started: %v\n", err)
		if errors.Is(err, matomo.ErrLockBusy) {
			return exitSkipped
		}
		return exitError
	}
	defer lock.Release()
	con := s.console(log)
	res := con.Archive(ctx, archiver.RunOptions{Timeout: s.cfg.Archive.RunTimeout.D(), KillGrace: s.cfg.Archive.KillGrace.D()}, s.cfg.Archive.URL, s.cfg.Archive.ExtraArgs)
	fmt.Fprintf(w, "core:archive %s: exit code %d, %s, %d archives processed, %d errors\n", res.Outcome, res.ExitCode, res.Duration.Round(1e6), res.ArchivesProcessed, res.Errors)
	switch res.Outcome {
	case archiver.OutcomeSuccess:
		return exitOK
	case archiver.OutcomeSkipped:
		fmt.Fprintf(w, "skipped: %s\n", res.SkipReason)
		return exitSkipped
	}
	if res.Err != nil {
		fmt.Fprintf(w, "error: %v\n", res.Err)
	}
	return exitFound
}
