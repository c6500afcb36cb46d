package daemon

import (
	"context"
	"sync"
	"time"

	"github.com/matomod/matomod/internal/archiver"
	"github.com/matomod/matomod/internal/metrics"
)

// work starts a worker term: whenever Matomo's invalidation queue has work
// and archiving is not paused, run worker.concurrency core:archive
// processes side by side. Matomo lets concurrent archivers share its queue,
// so workers take neither lock; they never scan and never invalidate.
func (d *Daemon) work() *term {
	t := newTerm(RoleWorker, nil)
	go func() {
		defer close(t.done)
		for {
			d.workerRound(t)
			timer := time.NewTimer(d.env.Load().Settings.WorkerInterval)
			select {
			case <-t.stop.Done():
				timer.Stop()
				return
			case <-timer.C:
			}
		}
	}()
	return t
}

// workerRound runs its archivers under t.kill, not t.stop: like the
// leader's run, a worker's runs get stop_timeout to finish on SIGTERM.
func (d *Daemon) workerRound(t *term) {
	env := d.env.Load()
	if *d.paused.Load() != "" || t.stop.Err() != nil {
		return
	}
	qctx, cancel := context.WithTimeout(t.stop, d.PingTimeout)
	queued, err := env.Matomo.Queued(qctx)
	cancel()
	if err != nil || queued == 0 {
		return
	}
	var wg sync.WaitGroup
	for range env.Settings.WorkerConcurrency {
		wg.Add(1)
		go func() {
			defer wg.Done()
			runID := archiver.NewRunID()
			log := d.Log.With("run_id", runID, "role", RoleWorker)
			log.Info("worker archive run started", "event", "run_started", "queued", queued)
			res := env.Console.Archive(t.kill, runID)
			log.Info("worker archive run finished", "event", "run_finished", "outcome", string(res.Outcome), "exit_code", res.ExitCode,
				"archives", res.ArchivesProcessed, "duration", res.Duration.Round(time.Millisecond))
			d.Metrics.WorkerRunFinished(workerResult(res), res.Duration)
		}()
	}
	wg.Wait()
}

func workerResult(r archiver.Result) string {
	switch r.Outcome {
	case archiver.OutcomeSuccess:
		return metrics.RunSuccess
	case archiver.OutcomeTimeout:
		return metrics.RunTimeout
	case archiver.OutcomeSkipped:
		if r.SkipReason == archiver.SkipConcurrencyLimit {
			return metrics.RunSkippedOverlap
		}
		return metrics.RunSkippedPaused
	}
	return metrics.RunFailure
}
