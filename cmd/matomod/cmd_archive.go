package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"

	"github.com/matomod/matomod/internal/archiver"
)

// cmdArchive runs core:archive once, as the cron line did, with matomod's
// timeout, process-group handling and output parsing.
func cmdArchive(ctx context.Context, g *globals, w io.Writer, log *slog.Logger) int {
	s, err := loadSetup(g)
	if err != nil {
		return fail(w, err)
	}
	if reason := pauseFromINI(s); reason != "" {
		log.Warn("archiving skipped", "event", "run_skipped", "reason", reason)
		return exitSkipped
	}
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
