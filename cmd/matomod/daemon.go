package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/matomod/matomod/internal/archiver"
	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/metrics"
	"github.com/matomod/matomod/internal/repair"
	"github.com/matomod/matomod/internal/scheduler"
)

// tick is how often the control loop checks the DB, the leader lock and
// the pause state; followers retry the lock at this pace.
var tick = 3 * time.Second

// daemon is `matomod run`.
type daemon struct {
	g   *globals
	log *slog.Logger
	n   *notifier
	reg *prometheus.Registry
	met *metrics.Metrics

	mu  sync.Mutex // guards the fields below against reload
	s   *setup
	db  *matomo.DB
	det *gapdetect.Detector

	// work serialises archive runs and repairs: never both at once.
	work sync.Mutex

	leaderCancel context.CancelFunc // stops the leader's scheduler and scans
	leaderDone   chan struct{}
	sched        atomic.Pointer[scheduler.Scheduler]
	lock         *matomo.Lock
	scanReq      chan struct{}

	ready    atomic.Bool
	dbUp     atomic.Bool
	leader   atomic.Bool
	paused   atomic.Pointer[string]
	beat     atomic.Int64 // control loop heartbeat, unix nanoseconds
	lastScan atomic.Pointer[gapdetect.Result]
	lastOK   atomic.Int64 // last successful archive run end, unix seconds

	reported map[matomo.SiteDate]gapdetect.Kind // gaps already logged (scan goroutine only)
}

func runDaemon(ctx context.Context, g *globals, log *slog.Logger) int {
	s, err := loadSetup(g)
	if err != nil {
		log.Error("cannot start: bad configuration", "event", "config_invalid", "err", err)
		return exitError
	}
	if _, err := newScheduler(s, nil, log, nil); err != nil { // validate the schedule up front
		log.Error("cannot start: bad configuration", "event", "config_invalid", "err", err)
		return exitError
	}
	d := &daemon{g: g, log: log, n: &notifier{log: log}, reg: prometheus.NewRegistry(), s: s,
		scanReq: make(chan struct{}, 1), reported: map[matomo.SiteDate]gapdetect.Kind{}}
	d.paused.Store(new(string))
	d.met, err = metrics.New(d.reg, metrics.BuildInfo{Version: version.Version, Revision: version.GetRevision(), GoVersion: runtime.Version()})
	if err != nil {
		log.Error("cannot register metrics", "err", err)
		return exitError
	}
	d.met.ConfigReloaded(true, time.Now())
	if d.db, err = s.openDB(); err != nil {
		log.Error("cannot start: bad database settings", "event", "config_invalid", "err", err)
		return exitError
	}
	d.det = gapdetect.New(d.db, s.detectorOptions())

	srv, serveErr := d.serveHTTP()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	stopWatchdog := make(chan struct{})
	go d.n.watchdog(stopWatchdog, d.alive)
	log.Info("matomod starting", "event", "starting", "version", version.Version, "matomo_dir", s.cfg.MatomoDir,
		"database", s.mat.DB.DBName, "role", s.cfg.Role, "schedule", s.cfg.Archive.Schedule)

	d.controlLoop(ctx, hup, serveErr)

	d.n.Stopping()
	log.Info("stopping", "event", "stopping", "stop_timeout", s.cfg.StopTimeout.D())
	d.stopLeading(s.cfg.StopTimeout.D())
	close(stopWatchdog)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	d.db.Close()
	log.Info("stopped", "event", "stopped")
	return exitOK
}

// alive is what the watchdog and /healthz report: the control loop ticked
// recently and, when leading, the scheduler loop too.
func (d *daemon) alive() bool {
	now := time.Now()
	if now.Sub(time.Unix(0, d.beat.Load())) > 10*tick+10*time.Second {
		return false
	}
	if s := d.sched.Load(); s != nil && !s.Alive(now, 30*time.Second) {
		return false
	}
	return true
}

// controlLoop runs until ctx ends: it waits for the DB and console (with
// backoff, not ready meanwhile), then holds or seeks the leader lock and
// follows the pause state on every tick.
func (d *daemon) controlLoop(ctx context.Context, hup <-chan os.Signal, serveErr <-chan error) {
	t := time.NewTimer(0)
	defer t.Stop()
	backoff := time.Second
	for {
		select {
		case <-ctx.Done():
			return
		case err := <-serveErr:
			d.log.Error("HTTP server failed: check --web.listen-address and --web.config.file", "event", "http_failed", "err", err)
			return
		case <-hup:
			d.reload(ctx)
			continue
		case <-t.C:
		}
		d.beat.Store(time.Now().UnixNano())
		next := tick
		if !d.ready.Load() {
			if err := d.startupChecks(ctx); err != nil {
				d.n.Status("not ready: " + err.Error())
				d.log.Error("not ready, retrying", "event", "not_ready", "err", err, "retry_in", backoff)
				next, backoff = backoff, min(2*backoff, time.Minute)
				t.Reset(next)
				continue
			}
			d.ready.Store(true)
			d.n.Ready()
			d.log.Info("ready", "event", "ready")
		}
		d.step(ctx)
		d.updateStatus()
		t.Reset(next)
	}
}

// startupChecks gate READY=1: the database answers and the console can run.
func (d *daemon) startupChecks(ctx context.Context) error {
	d.mu.Lock()
	s, db := d.s, d.db
	d.mu.Unlock()
	if err := d.checkDB(ctx, db); err != nil {
		return err
	}
	return s.console(nil).Check()
}

func (d *daemon) checkDB(ctx context.Context, db *matomo.DB) error {
	err := db.Ping(ctx)
	up := err == nil
	if d.dbUp.Swap(up) != up {
		if up {
			d.log.Info("database reachable", "event", "db_up")
		} else {
			d.log.Error("database unreachable", "event", "db_down", "err", err)
		}
	}
	d.met.SetDBUp(up)
	return err
}

// step is one control-loop tick once ready.
func (d *daemon) step(ctx context.Context) {
	d.mu.Lock()
	s, db := d.s, d.db
	d.mu.Unlock()
	if err := d.checkDB(ctx, db); err != nil {
		if d.lock != nil {
			d.loseLeadership("database unreachable: " + err.Error())
		}
		return
	}
	d.followPause(ctx, s, db)
	if s.cfg.Role == "worker" {
		d.ensureWorker(ctx)
		return
	}
	if d.lock == nil {
		l, ok, err := db.TryLock(ctx, db.LeaderLockName())
		if err != nil {
			d.log.Warn("cannot try the leader lock", "event", "leader_lock_error", "err", err)
		}
		if ok {
			d.lock = l
			d.becomeLeader(ctx)
		} else {
			d.met.SetLeader(false)
		}
		return
	}
	if err := d.lock.Check(ctx); err != nil {
		d.loseLeadership(err.Error())
	}
}

// followPause reads the pause state and logs only its changes.
func (d *daemon) followPause(ctx context.Context, s *setup, db *matomo.DB) {
	reason, _ := pauseReason(ctx, s, db)
	old := *d.paused.Swap(&reason)
	if old != reason {
		if reason != "" {
			d.log.Warn("archiving paused", "event", "paused", "reason", reason)
		} else {
			d.log.Info("archiving resumed", "event", "resumed", "was", old)
		}
	}
	if reason == "" {
		d.met.SetPaused()
	} else {
		d.met.SetPaused(reason)
	}
}

func (d *daemon) becomeLeader(ctx context.Context) {
	d.leader.Store(true)
	d.met.SetLeader(true)
	d.log.Info("leader lock acquired: scheduling archive runs, scans and repairs", "event", "leader_acquired", "lock", d.db.LeaderLockName())
	lctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	d.leaderCancel, d.leaderDone = cancel, done
	d.mu.Lock()
	s := d.s
	d.mu.Unlock()
	sch, err := newScheduler(s, d.archiveJob, d.log, d)
	if err != nil { // validated at load; a reload keeps the old config on error
		d.log.Error("cannot schedule", "err", err)
		cancel()
		close(done)
		return
	}
	d.sched.Store(sch)
	sch.Start(lctx)
	d.met.SetNextRun(sch.Next())
	go func() {
		defer close(done)
		d.scanLoop(lctx)
	}()
}

// loseLeadership stops new work at once; a run in progress is stopped too,
// unless the lock can be taken again right away.
func (d *daemon) loseLeadership(why string) {
	if d.lock != nil {
		d.lock.Release()
		d.lock = nil
	}
	d.log.Error("leader lock lost: stopping all work", "event", "leader_lost", "reason", why)
	d.stopLeading(0)
	d.leader.Store(false)
	d.met.SetLeader(false)
	// A follower must not keep serving the gaps it saw as leader, or the
	// gap alerts would fire from two instances.
	d.met.SetGaps(metrics.GapSnapshot{})
	d.lastScan.Store(nil)
}

// stopLeading stops the scheduler (letting a run finish within grace) and
// the scan loop.
func (d *daemon) stopLeading(grace time.Duration) {
	if sch := d.sched.Swap(nil); sch != nil {
		ctx, cancel := context.WithTimeout(context.Background(), grace)
		if err := sch.Stop(ctx); err != nil {
			d.log.Warn("archive run stopped before it finished", "event", "run_stopped", "err", err)
			// The run was cancelled: the archiver signals PHP's group and
			// escalates to SIGKILL after kill_grace; wait for that.
			d.mu.Lock()
			kg := d.s.cfg.Archive.KillGrace.D()
			d.mu.Unlock()
			wctx, wcancel := context.WithTimeout(context.Background(), kg+10*time.Second)
			if err := sch.Wait(wctx); err != nil {
				d.log.Error("giving up on the archive run", "event", "run_abandoned", "err", err)
			}
			wcancel()
		}
		cancel()
	}
	if d.leaderCancel != nil {
		d.leaderCancel()
		<-d.leaderDone
		d.leaderCancel = nil
	}
	if d.lock != nil {
		d.lock.Release()
		d.lock = nil
	}
}

// newScheduler maps the archive.* settings.
func newScheduler(s *setup, job scheduler.Job, log *slog.Logger, obs scheduler.Observer) (*scheduler.Scheduler, error) {
	a := s.cfg.Archive
	retries := a.Retries
	if retries == 0 {
		retries = -1
	}
	if job == nil {
		job = func(context.Context, scheduler.Trigger) scheduler.Outcome { return scheduler.Skipped }
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	return scheduler.New(scheduler.Config{Schedule: a.Schedule, Timezone: a.Timezone, Jitter: a.Jitter.D(),
		Retries: retries, RetryBase: a.RetryBackoff.D(), StateFile: s.cfg.StateFile}, job, log, obs)
}

// OnSkip, OnRunStart and OnRunEnd make the daemon a scheduler.Observer.
func (d *daemon) OnSkip(reason string) {
	d.met.RunFinished(metrics.RunSkippedOverlap, time.Now(), 0, -1) // the scheduler logs it
}

func (d *daemon) OnRunStart(scheduler.Trigger) {}

func (d *daemon) OnRunEnd(scheduler.Trigger, scheduler.Outcome, time.Duration) {
	if s := d.sched.Load(); s != nil {
		d.met.SetNextRun(s.Next())
	}
}

// archiveJob is one scheduled core:archive run.
func (d *daemon) archiveJob(ctx context.Context, t scheduler.Trigger) scheduler.Outcome {
	d.mu.Lock()
	s, db, det := d.s, d.db, d.det
	d.mu.Unlock()
	if reason, _ := pauseReason(ctx, s, db); reason != "" {
		d.met.RunFinished(metrics.RunSkippedPaused, time.Now(), 0, -1)
		d.log.Info("archive run skipped: archiving is paused", "event", "run_skipped", "reason", reason)
		return scheduler.Skipped
	}
	d.work.Lock()
	defer d.work.Unlock()
	runID := archiver.NewRunID()
	log := d.log.With("run_id", runID)
	start := time.Now()
	d.met.RunStarted(start)
	log.Info("archive run started", "event", "run_started", "trigger", t.Reason, "attempt", t.Attempt)
	a := s.cfg.Archive
	res := s.console(d.log).Archive(ctx, archiver.RunOptions{RunID: runID, Timeout: a.RunTimeout.D(), KillGrace: a.KillGrace.D()}, a.URL, a.ExtraArgs)
	det.SetLastArchiveRun(res.Start)
	fields := []any{"exit_code", res.ExitCode, "duration", res.Duration.Round(time.Millisecond), "archives", res.ArchivesProcessed,
		"errors", res.Errors, "sites", res.SitesFinished, "trigger", t.Reason}
	var out scheduler.Outcome
	switch res.Outcome {
	case archiver.OutcomeSuccess:
		d.met.RunFinished(metrics.RunSuccess, start, res.Duration, res.ExitCode)
		d.lastOK.Store(time.Now().Unix())
		log.Info("archive run finished", append(fields, "event", "run_finished")...)
		out = scheduler.Success
	case archiver.OutcomeSkipped:
		result := metrics.RunSkippedPaused
		if res.SkipReason == archiver.SkipConcurrencyLimit {
			result = metrics.RunSkippedOverlap
		}
		d.met.RunFinished(result, start, res.Duration, res.ExitCode)
		log.Warn("archive run did not archive", append(fields, "event", "run_skipped", "reason", res.SkipReason)...)
		out = scheduler.Skipped
	case archiver.OutcomeTimeout:
		d.met.RunFinished(metrics.RunTimeout, start, res.Duration, res.ExitCode)
		log.Error("archive run timed out and was stopped", append(fields, "event", "run_timeout", "err", res.Err, "last_lines", strings.Join(res.Tail, "\n"))...)
		out = scheduler.Failure
	default:
		d.met.RunFinished(metrics.RunFailure, start, res.Duration, res.ExitCode)
		log.Error("archive run failed", append(fields, "event", "run_failed", "err", res.Err, "last_lines", strings.Join(res.Tail, "\n"))...)
		out = scheduler.Failure
	}
	select { // scan after every run
	case d.scanReq <- struct{}{}:
	default:
	}
	return out
}

// scanLoop scans every gaps.scan_interval and after each archive run, and
// repairs between runs when auto_repair is on.
func (d *daemon) scanLoop(ctx context.Context) {
	d.mu.Lock()
	interval := d.s.cfg.Gaps.ScanInterval.D()
	d.mu.Unlock()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		d.scanAndRepair(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		case <-d.scanReq:
		}
	}
}

func (d *daemon) scanAndRepair(ctx context.Context) {
	d.mu.Lock()
	s, db, det := d.s, d.db, d.det
	d.mu.Unlock()
	d.refreshMatomo(ctx, db)
	res, err := det.Scan(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.met.GapScanFailed(time.Now())
			d.log.Error("gap scan failed", "event", "gap_scan_failed", "err", err)
		}
		return
	}
	d.lastScan.Store(res)
	d.met.GapScanFinished(time.Now(), res.Stats.Duration, res.SitesScanned)
	d.met.SetGaps(metrics.GapSnapshotOf(res))
	d.logNewGaps(res)
	d.log.Info("gap scan finished", "event", "gap_scan_finished", "gaps", len(res.Gaps), "repairable", len(res.Repairable()),
		"collection_gaps", len(res.CollectionGaps), "sites", res.SitesScanned, "full", res.Stats.Full,
		"duration", res.Stats.Duration.Round(time.Millisecond), "round_trips", res.Stats.RoundTrips)
	if !s.cfg.Gaps.AutoRepair || len(res.Repairable()) == 0 || s.cfg.Gaps.MaxRepairDays == 0 {
		return
	}
	if p := *d.paused.Load(); p != "" {
		return
	}
	if !d.work.TryLock() { // an archive run is going on: repair after it
		return
	}
	defer d.work.Unlock()
	r := &repair.Repairer{DB: db, Console: s.console(d.log), Scanner: det, Opt: s.repairOptions(d.log, false)}
	rep, err := r.Repair(ctx, res.Gaps)
	if err != nil {
		d.log.Error("repair failed", "event", "repair_failed", "err", err)
		return
	}
	d.met.Invalidations(rep.Invalidations)
	d.met.Repairs(metrics.RepairRepaired, rep.Counts[repair.Repaired])
	d.met.Repairs(metrics.RepairFailed, rep.Counts[repair.FailedResult])
	d.met.Repairs(metrics.RepairSkippedUnsafe, rep.Counts[repair.SkippedUnsafe])
	if rep.Deferred > 0 {
		d.log.Warn("more repairable gap days than gaps.max_repair_days: the oldest wait for the next cycle", "event", "repair_deferred", "deferred", rep.Deferred)
	}
	if rep.After != nil {
		d.lastScan.Store(rep.After)
		d.met.SetGaps(metrics.GapSnapshotOf(rep.After))
	}
}

// logNewGaps logs each gap once, when first seen, and its disappearance.
func (d *daemon) logNewGaps(res *gapdetect.Result) {
	seen := make(map[matomo.SiteDate]gapdetect.Kind, len(res.Gaps))
	for _, g := range res.Gaps {
		k := matomo.SiteDate{IDSite: g.IDSite, Date: g.Date}
		seen[k] = g.Kind
		if d.reported[k] == g.Kind {
			continue
		}
		d.log.Warn("gap found", "event", "gap_found", "idsite", g.IDSite, "date", g.Date.String(), "kind", string(g.Kind),
			"raw_visits", g.RawVisits, "repairable", g.Repairable, "reason", g.Reason)
	}
	d.reported = seen
}

// refreshMatomo caches Matomo's own state for /metrics.
func (d *daemon) refreshMatomo(ctx context.Context, db *matomo.DB) {
	snap := metrics.MatomoSnapshot{}
	opts, err := db.ReadOptions(ctx)
	if err != nil {
		return
	}
	b, err := db.InvalidationBacklog(ctx)
	if err != nil {
		return
	}
	snap.Version = opts.VersionCore
	snap.LastCompletedArchiving = opts.LastCompletedFullArchiving
	snap.Queued, snap.InProgress = b.Queued, b.InProgress
	snap.OldestQueued, snap.OldestInProgress = b.OldestQueued, b.OldestInProgress
	// The control loop reads the pause state every tick; no need to read
	// config.ini.php and the options again here.
	reason := *d.paused.Load()
	snap.MaintenanceMode = reason == metrics.PausedMaintenanceMode
	snap.UpdatePending = reason == metrics.PausedUpdatePending
	d.met.SetMatomo(snap)
}

// updateStatus keeps systemd's STATUS= line current.
func (d *daemon) updateStatus() {
	var parts []string
	switch {
	case d.s.cfg.Role == "worker":
		parts = append(parts, "worker")
	case !d.leader.Load():
		parts = append(parts, "follower (another matomod holds the leader lock)")
	}
	if s := d.sched.Load(); s != nil {
		if s.Running() {
			parts = append(parts, "archiving now")
		} else if n := s.Next(); !n.IsZero() {
			parts = append(parts, "next archive "+n.UTC().Format("15:04 MST"))
		}
		if ok := s.State().LastSuccess; !ok.IsZero() {
			parts = append(parts, "last ok "+ok.UTC().Format("15:04")+" ("+since(ok, time.Now())+")")
		}
	}
	if p := *d.paused.Load(); p != "" {
		parts = append(parts, "paused: "+p)
	}
	if r := d.lastScan.Load(); r != nil {
		parts = append(parts, fmt.Sprintf("%d gaps", len(r.Gaps)))
	}
	d.n.Status(strings.Join(parts, "; "))
}

// reload re-reads both config files; an invalid new config is logged and
// the old one stays in force.
func (d *daemon) reload(ctx context.Context) {
	d.n.Reloading()
	defer d.n.Ready()
	s, err := loadSetup(d.g)
	if err == nil {
		_, err = newScheduler(s, nil, nil, nil)
	}
	var db *matomo.DB
	if err == nil {
		db, err = s.openDB()
	}
	if err != nil {
		d.met.ConfigReloaded(false, time.Now())
		d.log.Error("config reload failed: keeping the old configuration", "event", "config_reload_failed", "err", err)
		return
	}
	wasLeader := d.lock != nil
	if wasLeader {
		d.stopLeading(d.s.cfg.StopTimeout.D())
	}
	d.mu.Lock()
	old := d.db
	d.s, d.db = s, db
	d.det = gapdetect.New(db, s.detectorOptions())
	d.mu.Unlock()
	old.Close()
	d.met.ConfigReloaded(true, time.Now())
	d.log.Info("configuration reloaded", "event", "config_reloaded", "schedule", s.cfg.Archive.Schedule, "role", s.cfg.Role)
	d.leader.Store(false)
	d.step(ctx) // retake the lock with the new settings
}

// serveHTTP starts /metrics, /healthz and /readyz (exporter-toolkit: TLS
// and basic auth from --web.config.file). No pprof here.
func (d *daemon) serveHTTP() (*http.Server, <-chan error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.HandlerFor(d.reg, promhttp.HandlerOpts{ErrorLog: slog.NewLogLogger(d.log.Handler(), slog.LevelError)}))
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if !d.alive() {
			http.Error(w, "scheduler loop is not alive", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if reason := d.notReady(); reason != "" {
			http.Error(w, reason, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "matomod: /metrics /healthz /readyz")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() {
		if err := web.ListenAndServe(srv, d.g.web, d.log); err != nil && !errors.Is(err, http.ErrServerClosed) {
			errc <- err
		}
	}()
	return srv, errc
}

func (d *daemon) notReady() string {
	switch {
	case !d.ready.Load():
		return "starting: database or console not available yet"
	case !d.dbUp.Load():
		return "database unreachable"
	}
	if p := *d.paused.Load(); p != "" {
		return "archiving paused: " + p
	}
	return ""
}
