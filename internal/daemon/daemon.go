// Package daemon keeps one Matomo archived: it leads (or works), schedules
// core:archive under the archive lock, scans for gaps and repairs them, and
// keeps systemd informed, while its control loop never waits on any of it.
package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync/atomic"
	"time"

	"github.com/matomod/matomod/internal/archiver"
	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/metrics"
	"github.com/matomod/matomod/internal/scheduler"
)

// Defaults for the zero values of Daemon's tuning fields.
const (
	DefaultTick          = 3 * time.Second
	DefaultPingTimeout   = 5 * time.Second
	DefaultLockTimeout   = 2 * time.Minute
	DefaultRepairBackoff = 24 * time.Hour
)

// Daemon is `matomod run`. Set the exported fields, then call Run once.
type Daemon struct {
	Log     *slog.Logger
	Metrics Metrics
	Notify  Notifier
	Load    Loader
	Clock   Clock // nil: the real clock
	// Watchdog is WATCHDOG_USEC (0: off); WATCHDOG=1 goes out at half of it.
	Watchdog time.Duration
	// Tick paces health checks, lock checks and follower lock attempts.
	Tick time.Duration
	// PingTimeout bounds the database ping: a blackholed database is
	// db_down within Tick+PingTimeout.
	PingTimeout time.Duration
	// LockTimeout bounds a leader lock check. Keep it long: a check that
	// times out closes the lock's connection, which loses the lock.
	LockTimeout time.Duration
	// RepairBackoff is how long a day whose repair failed is left alone
	// while nothing about it changes.
	RepairBackoff time.Duration

	env      atomic.Pointer[Env]
	ready    atomic.Bool
	dbUp     atomic.Bool
	leading  atomic.Bool
	paused   atomic.Pointer[string]
	beat     atomic.Int64
	sched    atomic.Pointer[scheduler.Scheduler]
	lastScan atomic.Pointer[gapdetect.Result]

	// busy is held by this daemon's scheduled run or repair: a run waits
	// for a repair in progress instead of skipping its slot, a repair skips
	// while a run goes. Others' runs are kept out by the archive lock.
	busy chan struct{}

	// Owned by the scan goroutine of the current leader term.
	reported map[gapKey]gapdetect.Kind
	tried    map[gapKey]attempt
	skipped  map[int]string // sites the last scan could not read, and why
}

func (d *Daemon) now() time.Time {
	if d.Clock == nil {
		return time.Now()
	}
	return d.Clock.Now()
}

func (d *Daemon) defaults() {
	if d.Tick <= 0 {
		d.Tick = DefaultTick
	}
	if d.PingTimeout <= 0 {
		d.PingTimeout = DefaultPingTimeout
	}
	if d.LockTimeout <= 0 {
		d.LockTimeout = DefaultLockTimeout
	}
	if d.RepairBackoff <= 0 {
		d.RepairBackoff = DefaultRepairBackoff
	}
	if d.Log == nil {
		d.Log = slog.New(slog.DiscardHandler)
	}
	if d.Clock == nil {
		d.Clock = realClock{}
	}
	d.reported = map[gapKey]gapdetect.Kind{}
	d.tried = map[gapKey]attempt{}
	d.paused.Store(new(string))
	d.busy = make(chan struct{}, 1)
}

// Alive is what /healthz reports: the control loop ticked recently and the
// scheduler loop of a leader is alive.
func (d *Daemon) Alive() bool {
	now := time.Now()
	if beat := d.beat.Load(); beat == 0 || now.Sub(time.Unix(0, beat)) > 3*d.Tick+10*time.Second {
		return false
	}
	if s := d.sched.Load(); s != nil && !s.Alive(now, 30*time.Second) {
		return false
	}
	return true
}

// NotReady is what /readyz reports: "" when ready to archive.
func (d *Daemon) NotReady() string {
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

// term is one stretch of leading or working: its goroutines stop when stop
// is cancelled, and work in progress is cancelled (kill) only once the stop
// timeout has passed.
type term struct {
	role    string
	lock    Lock
	sched   *scheduler.Scheduler
	stop    context.Context
	cancel  context.CancelFunc
	kill    context.Context
	killFn  context.CancelFunc
	done    chan struct{} // scan loop or worker loop ended
	scanReq chan struct{}

	pending  *scheduler.Config // new schedule for the next run boundary
	swapping bool
	checking bool // a lock check is in flight
}

func newTerm(role string, lock Lock) *term {
	t := &term{role: role, lock: lock, done: make(chan struct{}), scanReq: make(chan struct{}, 1)}
	t.stop, t.cancel = context.WithCancel(context.Background())
	t.kill, t.killFn = context.WithCancel(context.Background())
	return t
}

// checkResult is what a health check found.
type checkResult struct {
	dbErr      error
	consoleErr error
	pause      string
	pauseErr   error
	lock       Lock // leader lock taken by this check
	lockErr    error
}

type loadResult struct {
	env *Env
	err error
}

type lockResult struct {
	t   *term
	err error
}

type swapResult struct{ t *term }

// Run runs until ctx ends or fatal delivers an error, then stops gracefully
// and returns that error (nil after ctx ended). reload asks for a reload.
func (d *Daemon) Run(ctx context.Context, env *Env, reload <-chan struct{}, fatal <-chan error) error {
	d.defaults()
	d.env.Store(env)
	d.Metrics.ConfigReloaded(true, d.now())
	// READY=1 means "configuration valid, serving /metrics": a database
	// that is down at boot is waited for with STATUS= and /readyz, so a
	// long outage never fails the unit (see README "systemd").
	d.Notify.Ready()
	d.Notify.Status("waiting for the database")
	d.beat.Store(time.Now().UnixNano())

	var (
		leader, worker *term
		stopping       = map[*term]bool{}
		closeAfter     = map[*term]*Env{} // envs to close once a term is stopped
		checking       bool
		loading        bool
		nextCheck      time.Time
		backoff        = time.Second
		runErr         error
		shutting       bool
		lastPauseErr   string
		checkDone      = make(chan checkResult, 1)
		lockDone       = make(chan lockResult, 4) // a stopped term's check may still answer
		loadDone       = make(chan loadResult, 1)
		swapDone       = make(chan swapResult, 1)
		termDone       = make(chan *term, 4)
	)
	tick := time.NewTicker(d.Tick)
	defer tick.Stop()
	var wd <-chan time.Time
	if d.Watchdog > 0 {
		w := time.NewTicker(d.Watchdog / 2)
		defer w.Stop()
		wd = w.C
	}
	stopTerm := func(t *term, why string) {
		if t == nil || stopping[t] {
			return
		}
		stopping[t] = true
		if t.role == RoleLeader {
			d.leading.Store(false)
			d.Metrics.SetLeader(false)
			// A follower must not serve the gaps it saw as leader, or the
			// gap alerts would fire from two instances.
			d.Metrics.SetGaps(metrics.GapSnapshot{})
			d.lastScan.Store(nil)
		}
		go d.stopTerm(t, d.env.Load().Settings, why, termDone)
	}
	shutdown := func(why string) {
		if shutting {
			return
		}
		shutting = true
		d.Notify.Stopping()
		d.Log.Info("stopping", "event", "stopping", "reason", why, "stop_timeout", d.env.Load().Settings.StopTimeout)
		stopTerm(leader, why)
		stopTerm(worker, why)
		leader, worker = nil, nil
	}
	startCheck := func() {
		checking = true
		env := d.env.Load()
		wantLock := !shutting && leader == nil && env.Settings.Role == RoleLeader && !anyRole(stopping, RoleLeader)
		c, console := ctx, !d.ready.Load()
		go func() { checkDone <- d.check(c, env, console, wantLock) }()
	}

	startCheck()
	for {
		if shutting && len(stopping) == 0 && !loading && !checking {
			if env := d.env.Load(); env.Close != nil {
				env.Close()
			}
			d.Log.Info("stopped", "event", "stopped")
			return runErr
		}
		ticked := false
		select {
		case <-ctx.Done():
			shutdown("signal")
			ctx = context.Background() // stop selecting on it
		case err := <-fatal:
			runErr = err
			fatal = nil
			shutdown("fatal error")
		case <-reload:
			if loading || shutting {
				d.Log.Warn("reload ignored: a reload or shutdown is in progress", "event", "reload_ignored")
				continue
			}
			loading = true
			d.Notify.Reloading()
			cur := d.env.Load()
			c := ctx
			go func() { loadDone <- d.load(c, cur) }()
		case res := <-loadDone:
			loading = false
			cur := d.env.Load()
			if shutting && res.err == nil {
				res.err = errors.New("stopping")
			}
			if res.err != nil {
				d.Metrics.ConfigReloaded(false, d.now())
				d.Log.Error("config reload failed: keeping the old configuration", "event", "config_reload_failed", "err", res.err)
				if res.env != nil && res.env.Pool != cur.Pool && res.env.Close != nil {
					res.env.Close()
				}
				d.Notify.Ready()
				continue
			}
			n := res.env
			d.env.Store(n)
			d.Metrics.ConfigReloaded(true, d.now())
			d.Log.Info("configuration reloaded", "event", "config_reloaded", "schedule", n.Settings.Schedule.Schedule, "role", n.Settings.Role)
			old := cur
			var holder *term
			if n.DBKey != old.DBKey || n.Settings.Role != old.Settings.Role {
				// Another database has its own leader lock; another role
				// its own loop. Work in progress still gets stop_timeout.
				stopTerm(leader, "configuration reloaded: database or role changed")
				stopTerm(worker, "configuration reloaded: database or role changed")
				holder = firstNonNil(leader, worker)
				leader, worker = nil, nil
			} else if leader != nil && n.Settings.Schedule != old.Settings.Schedule {
				s := n.Settings.Schedule
				leader.pending = &s
			}
			if old.Pool != n.Pool && old.Close != nil {
				if holder != nil {
					closeAfter[holder] = old
				} else {
					old.Close()
				}
			}
			d.Notify.Ready()
		case res := <-checkDone:
			checking = false
			d.applyCheck(res)
			if res.pauseErr != nil && res.pauseErr.Error() != lastPauseErr {
				d.Log.Warn("cannot read the pause state: keeping the last one", "event", "pause_check_failed", "err", res.pauseErr)
			}
			lastPauseErr = errString(res.pauseErr)
			// Ready before leading: whoever sees leader_acquired of a
			// healthy start sees /readyz ready too.
			checkErr := errors.Join(res.dbErr, res.consoleErr)
			if !d.ready.Load() && checkErr == nil {
				d.ready.Store(true)
				d.Log.Info("ready", "event", "ready")
			}
			if res.lock != nil {
				if shutting || leader != nil {
					res.lock.Release()
				} else {
					leader = d.lead(res.lock)
				}
			}
			if !d.ready.Load() { // so checkErr != nil
				d.Notify.Status("waiting for the database and console: " + checkErr.Error())
				d.Log.Error("not ready, retrying", "event", "not_ready", "err", checkErr, "retry_in", backoff)
				nextCheck = d.now().Add(backoff)
				backoff = min(2*backoff, time.Minute)
				continue
			}
			if !shutting && worker == nil && d.env.Load().Settings.Role == RoleWorker && !anyRole(stopping, RoleWorker) {
				worker = d.work()
			}
		case res := <-lockDone:
			res.t.checking = false
			if res.err != nil && res.t == leader {
				d.Log.Error("leader lock lost: stopping scheduling; a run in progress gets stop_timeout to finish", "event", "leader_lost", "reason", res.err.Error())
				stopTerm(leader, "leader lock lost")
				leader = nil
			}
		case res := <-swapDone:
			t := res.t
			t.swapping = false
			if t != leader || t.pending == nil {
				continue
			}
			s := *t.pending
			t.pending = nil
			sch, err := d.newScheduler(s, t)
			if err != nil { // validated at load; keep leading without runs is worse
				d.Log.Error("cannot apply the new schedule", "event", "schedule_failed", "err", err)
				stopTerm(leader, "schedule failed")
				leader = nil
				continue
			}
			t.sched = sch
			d.sched.Store(sch)
			sch.Start(t.stop)
			d.Metrics.SetNextRun(sch.Next())
			d.Log.Info("new schedule in force", "event", "schedule_applied", "schedule", s.Schedule, "next", sch.Next())
		case t := <-termDone:
			delete(stopping, t)
			if e := closeAfter[t]; e != nil {
				delete(closeAfter, t)
				e.Close()
			}
		case <-wd:
			if d.schedAlive() {
				d.Notify.Watchdog()
			} else {
				d.Log.Error("scheduler loop is not alive: withholding the watchdog ping so systemd restarts matomod", "event", "watchdog_withheld")
			}
			continue
		case <-tick.C:
			ticked = true
		}
		// Periodic work only on ticks: after an event it would spin, since
		// fast checks answer at once.
		if !ticked {
			continue
		}
		d.beat.Store(time.Now().UnixNano())
		if !checking && !shutting && !d.now().Before(nextCheck) {
			startCheck()
		}
		if leader != nil && !leader.checking && leader.lock != nil {
			leader.checking = true
			t := leader
			go func() {
				cctx, cancel := context.WithTimeout(context.Background(), d.LockTimeout)
				defer cancel()
				lockDone <- lockResult{t: t, err: t.lock.Check(cctx)}
			}()
		}
		if leader != nil && leader.pending != nil && !leader.swapping && leader.sched != nil && !leader.sched.Running() {
			// At a run boundary: the old scheduler stops at once, the new
			// one starts when it has.
			leader.swapping = true
			old, t := leader.sched, leader
			d.sched.CompareAndSwap(old, nil)
			go func() {
				sctx, cancel := context.WithTimeout(context.Background(), d.env.Load().Settings.StopTimeout)
				defer cancel()
				old.Stop(sctx)
				swapDone <- swapResult{t: t}
			}()
		}
		if !shutting && d.ready.Load() {
			d.updateStatus(leader, worker)
		}
	}
}

func anyRole(ts map[*term]bool, role string) bool {
	for t := range ts {
		if t.role == role {
			return true
		}
	}
	return false
}

func firstNonNil(ts ...*term) *term {
	for _, t := range ts {
		if t != nil {
			return t
		}
	}
	return nil
}

func (d *Daemon) schedAlive() bool {
	s := d.sched.Load()
	return s == nil || s.Alive(time.Now(), 30*time.Second)
}

// load builds the new Env and checks, before anything is replaced, that
// its database answers and its console can run.
func (d *Daemon) load(ctx context.Context, cur *Env) loadResult {
	n, err := d.Load(ctx, cur)
	if err != nil {
		return loadResult{err: err}
	}
	pctx, cancel := context.WithTimeout(ctx, d.PingTimeout)
	defer cancel()
	if err := n.Matomo.Ping(pctx); err != nil {
		return loadResult{env: n, err: fmt.Errorf("the new configuration's database does not answer: %w", err)}
	}
	if err := n.Console.Check(ctx); err != nil {
		return loadResult{env: n, err: err}
	}
	return loadResult{env: n}
}

// check pings the database, reads the pause state, and tries the leader
// lock when asked to; it runs off the control loop.
func (d *Daemon) check(ctx context.Context, env *Env, console, wantLock bool) checkResult {
	var r checkResult
	pctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.PingTimeout)
	r.dbErr = env.Matomo.Ping(pctx)
	cancel()
	if console {
		r.consoleErr = env.Console.Check(ctx)
	}
	if r.dbErr != nil {
		return r
	}
	pctx, cancel = context.WithTimeout(context.WithoutCancel(ctx), d.PingTimeout)
	r.pause, r.pauseErr = env.Matomo.PauseReason(pctx)
	cancel()
	if wantLock && r.consoleErr == nil {
		lctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), d.PingTimeout)
		r.lock, r.lockErr = env.Locks.Leader(lctx)
		cancel()
	}
	return r
}

func (d *Daemon) applyCheck(r checkResult) {
	up := r.dbErr == nil
	if d.dbUp.Swap(up) != up {
		if up {
			d.Log.Info("database reachable", "event", "db_up")
		} else {
			d.Log.Error("database unreachable", "event", "db_down", "err", r.dbErr)
		}
	}
	d.Metrics.SetDBUp(up)
	if r.lockErr != nil && !errors.Is(r.lockErr, matomo.ErrLockBusy) {
		d.Log.Warn("cannot try the leader lock", "event", "leader_lock_error", "err", r.lockErr)
	}
	if !up || r.pauseErr != nil {
		return
	}
	reason := r.pause
	old := *d.paused.Swap(&reason)
	if old != reason {
		if reason != "" {
			d.Log.Warn("archiving paused", "event", "paused", "reason", reason)
		} else {
			d.Log.Info("archiving resumed", "event", "resumed", "was", old)
		}
	}
	if reason == "" {
		d.Metrics.SetPaused()
	} else {
		d.Metrics.SetPaused(reason)
	}
}

// lead starts a leader term: the scheduler and the scan loop.
func (d *Daemon) lead(lock Lock) *term {
	env := d.env.Load()
	t := newTerm(RoleLeader, lock)
	sch, err := d.newScheduler(env.Settings.Schedule, t)
	if err != nil {
		d.Log.Error("cannot schedule", "event", "schedule_failed", "err", err)
		lock.Release()
		return nil
	}
	t.sched = sch
	d.leading.Store(true)
	d.Metrics.SetLeader(true)
	d.Log.Info("leader lock acquired: scheduling archive runs, scans and repairs", "event", "leader_acquired")
	d.sched.Store(sch)
	sch.Start(t.stop)
	d.Metrics.SetNextRun(sch.Next())
	go func() {
		defer close(t.done)
		d.scanLoop(t)
	}()
	return t
}

// stopTerm ends a term without hurry: no new work at once, work in
// progress within StopTimeout, then cancelled (the archiver escalates to
// SIGKILL after kill_grace). The leader lock goes last, so no other
// instance leads while our run still goes.
func (d *Daemon) stopTerm(t *term, s Settings, why string, done chan<- *term) {
	defer func() { done <- t }()
	log := d.Log.With("role", t.role)
	log.Info("stopping "+t.role+" work", "event", "term_stopping", "reason", why, "stop_timeout", s.StopTimeout)
	t.cancel()
	grace, cancel := context.WithTimeout(context.Background(), s.StopTimeout)
	defer cancel()
	if t.sched != nil {
		d.sched.CompareAndSwap(t.sched, nil)
		if err := t.sched.Stop(grace); err != nil {
			log.Warn("archive run stopped before it finished", "event", "run_stopped", "err", err)
		}
	}
	select {
	case <-t.done:
	case <-grace.Done():
		log.Warn("work still going after stop_timeout: cancelling it", "event", "work_cancelled")
	}
	t.killFn()
	wait, wcancel := context.WithTimeout(context.Background(), s.KillGrace+10*time.Second)
	defer wcancel()
	if t.sched != nil {
		if err := t.sched.Wait(wait); err != nil {
			log.Error("giving up on the archive run", "event", "run_abandoned", "err", err)
		}
	}
	select {
	case <-t.done:
	case <-wait.Done():
		log.Error("giving up on work that does not stop", "event", "run_abandoned")
	}
	if t.lock != nil {
		t.lock.Release()
	}
	if t.role == RoleLeader {
		d.Metrics.SetNextRun(time.Time{})
	}
}

func (d *Daemon) newScheduler(c scheduler.Config, t *term) (*scheduler.Scheduler, error) {
	return scheduler.New(c, d.archiveJob(t), d.Log, observer{d})
}

// observer counts what the scheduler decides on its own.
type observer struct{ d *Daemon }

func (o observer) OnSkip(string) {
	o.d.Metrics.RunFinished(metrics.RunSkippedOverlap, time.Now(), 0, -1) // the scheduler logs it
}

func (o observer) OnRunStart(scheduler.Trigger) {}

func (o observer) OnRunEnd(scheduler.Trigger, scheduler.Outcome, time.Duration) {
	if s := o.d.sched.Load(); s != nil {
		o.d.Metrics.SetNextRun(s.Next())
	}
}

// archiveJob is one scheduled core:archive run, under the archive lock.
func (d *Daemon) archiveJob(t *term) scheduler.Job {
	return func(ctx context.Context, tr scheduler.Trigger) scheduler.Outcome {
		env := d.env.Load()
		if reason := *d.paused.Load(); reason != "" {
			d.Metrics.RunFinished(metrics.RunSkippedPaused, time.Now(), 0, -1)
			d.Log.Info("archive run skipped: archiving is paused", "event", "run_skipped", "reason", reason)
			return scheduler.Skipped
		}
		select {
		case d.busy <- struct{}{}:
			defer func() { <-d.busy }()
		case <-t.kill.Done():
			return scheduler.Skipped
		case <-ctx.Done():
			return scheduler.Skipped
		}
		lctx, cancel := context.WithTimeout(ctx, d.PingTimeout)
		lock, err := env.Locks.Archive(lctx)
		cancel()
		if err != nil {
			if errors.Is(err, matomo.ErrLockBusy) {
				d.Metrics.RunFinished(metrics.RunSkippedOverlap, time.Now(), 0, -1)
				d.Log.Warn("archive run skipped: another core:archive started by matomod is running", "event", "run_skipped", "reason", "archive_lock_held", "err", err)
				return scheduler.Skipped
			}
			d.Metrics.RunFinished(metrics.RunFailure, time.Now(), 0, -1)
			d.Log.Error("archive run not started: cannot take the archive lock", "event", "run_failed", "err", err)
			return scheduler.Failure
		}
		defer lock.Release()
		// The scheduler cancels ctx only after stop_timeout; kill says the
		// same for the term.
		ctx, stop := context.WithCancel(ctx)
		defer stop()
		go func() {
			select {
			case <-t.kill.Done():
				stop()
			case <-ctx.Done():
			}
		}()
		out := d.archive(ctx, env, tr)
		select { // scan after every run
		case t.scanReq <- struct{}{}:
		default:
		}
		return out
	}
}

func (d *Daemon) archive(ctx context.Context, env *Env, tr scheduler.Trigger) scheduler.Outcome {
	runID := archiver.NewRunID()
	log := d.Log.With("run_id", runID)
	start := time.Now()
	d.Metrics.RunStarted(start)
	log.Info("archive run started", "event", "run_started", "trigger", tr.Reason, "attempt", tr.Attempt)
	res := env.Console.Archive(ctx, runID)
	env.Detector.SetLastArchiveRun(res.Start)
	fields := []any{"exit_code", res.ExitCode, "duration", res.Duration.Round(time.Millisecond), "archives", res.ArchivesProcessed,
		"errors", res.Errors, "sites", res.SitesFinished, "trigger", tr.Reason}
	switch res.Outcome {
	case archiver.OutcomeSuccess:
		d.Metrics.RunFinished(metrics.RunSuccess, start, res.Duration, res.ExitCode)
		log.Info("archive run finished", append(fields, "event", "run_finished")...)
		return scheduler.Success
	case archiver.OutcomeSkipped:
		result := metrics.RunSkippedPaused
		if res.SkipReason == archiver.SkipConcurrencyLimit {
			result = metrics.RunSkippedOverlap
		}
		d.Metrics.RunFinished(result, start, res.Duration, res.ExitCode)
		log.Warn("archive run did not archive", append(fields, "event", "run_skipped", "reason", res.SkipReason)...)
		return scheduler.Skipped
	case archiver.OutcomeTimeout:
		d.Metrics.RunFinished(metrics.RunTimeout, start, res.Duration, res.ExitCode)
		log.Error("archive run timed out and was stopped", append(fields, "event", "run_timeout", "err", res.Err, "last_lines", strings.Join(res.Tail, "\n"))...)
		return scheduler.Failure
	}
	d.Metrics.RunFinished(metrics.RunFailure, start, res.Duration, res.ExitCode)
	log.Error("archive run failed", append(fields, "event", "run_failed", "err", res.Err, "last_lines", strings.Join(res.Tail, "\n"))...)
	return scheduler.Failure
}

// updateStatus keeps systemd's STATUS= line current.
func (d *Daemon) updateStatus(leader, worker *term) {
	var parts []string
	switch {
	case worker != nil:
		parts = append(parts, "worker")
	case leader == nil:
		parts = append(parts, "follower (another matomod holds the leader lock)")
	}
	if !d.dbUp.Load() {
		parts = append(parts, "database unreachable")
	}
	if leader != nil && leader.sched != nil {
		s := leader.sched
		if s.Running() {
			parts = append(parts, "archiving now")
		} else if n := s.Next(); !n.IsZero() {
			parts = append(parts, "next archive "+n.UTC().Format("15:04 MST"))
		}
		if ok := s.State().LastSuccess; !ok.IsZero() {
			parts = append(parts, "last ok "+ok.UTC().Format("15:04")+" ("+since(ok, d.now())+")")
		}
	}
	if p := *d.paused.Load(); p != "" {
		parts = append(parts, "paused: "+p)
	}
	if r := d.lastScan.Load(); r != nil {
		parts = append(parts, fmt.Sprintf("%d gaps", len(r.Gaps)))
	}
	d.Notify.Status(strings.Join(parts, "; "))
}

func since(t, now time.Time) string {
	return now.Sub(t).Round(time.Second).String() + " ago"
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
