package main

import (
	"context"
	"sync"
	"time"

	"github.com/matomod/matomod/internal/archiver"
)

// ensureWorker starts, once, the loop of a role: worker instance: whenever
// Matomo's invalidation queue has work and archiving is not paused, run
// worker.concurrency core:archive processes side by side. Matomo lets
// concurrent archivers share its queue ("Continuing ongoing archiving
// run"). Workers never take the leader lock, never scan, never invalidate.
func (d *daemon) ensureWorker(ctx context.Context) {
	if d.leaderCancel != nil {
		return
	}
	wctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	d.leaderCancel, d.leaderDone = cancel, done
	go func() {
		defer close(done)
		for {
			d.workerRound(wctx)
			d.mu.Lock()
			every := d.s.cfg.Worker.Interval.D()
			d.mu.Unlock()
			select {
			case <-wctx.Done():
				return
			case <-time.After(every):
			}
		}
	}()
}

func (d *daemon) workerRound(ctx context.Context) {
	d.mu.Lock()
	s, db := d.s, d.db
	d.mu.Unlock()
	if p := *d.paused.Load(); p != "" {
		return
	}
	b, err := db.InvalidationBacklog(ctx)
	if err != nil || b.Queued == 0 {
		return
	}
	a := s.cfg.Archive
	var wg sync.WaitGroup
	for i := 0; i < s.cfg.Worker.Concurrency; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runID := archiver.NewRunID()
			log := d.log.With("run_id", runID)
			log.Info("worker archive run started", "event", "run_started", "queued", b.Queued)
			res := s.console(d.log).Archive(ctx, archiver.RunOptions{RunID: runID, Timeout: a.RunTimeout.D(), KillGrace: a.KillGrace.D()}, a.URL, a.ExtraArgs)
			log.Info("worker archive run finished", "event", "run_finished", "outcome", string(res.Outcome), "exit_code", res.ExitCode,
				"archives", res.ArchivesProcessed, "duration", res.Duration.Round(time.Millisecond))
		}()
	}
	wg.Wait()
}
