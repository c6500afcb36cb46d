// Package scheduler decides when the archive job runs: on a cron schedule, once more at start if
// a run was missed while the daemon was down, again with backoff after a failure, never two at
// once. It knows only time; the job is handed to it.
package scheduler

import (
	"context"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"runtime/debug"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/robfig/cron/v3"
)

// Defaults for the zero values of Config.
const (
	DefaultRetries     = 3
	DefaultRetryBase   = time.Minute
	DefaultRetryFactor = 4
)

// beatEvery is the longest the loop sleeps. Each wake-up stamps the heartbeat and re-reads the
// wall clock, so a clock jump is noticed within this time rather than when a timer set before
// the jump fires (Go timers run on the monotonic clock).
const beatEvery = time.Second

// Outcome is what a run reports. The zero value is Failure, so a job that forgets to say
// otherwise is retried rather than counted as a success.
type Outcome int

const (
	Failure Outcome = iota // retried with backoff
	Success                // LastSuccess is updated and persisted
	Skipped                // the job chose not to work (e.g. maintenance mode): no retry, no LastSuccess
)

func (o Outcome) String() string {
	switch o {
	case Success:
		return "success"
	case Skipped:
		return "skipped"
	default:
		return "failure"
	}
}

// Trigger reasons.
const (
	ReasonSchedule = "schedule"
	ReasonCatchup  = "catchup"
	ReasonRetry    = "retry"
	ReasonManual   = "manual" // RunNow with an empty reason
)

// SkipOverlap is the reason passed to Observer.OnSkip when a trigger finds a run in progress.
const SkipOverlap = "overlap"

// Trigger says why a run was started.
type Trigger struct {
	// Scheduled is the trigger time the run is for: the cron time for schedule, the first missed
	// cron time for catchup, the original trigger's time for retry, the request time for manual.
	Scheduled time.Time
	Reason    string
	// Attempt is 1 for a first try and counts up through retries.
	Attempt int
}

// Job does the work. It must return soon after ctx is cancelled, which only happens when Stop
// gives up waiting.
type Job func(ctx context.Context, t Trigger) Outcome

// Observer is told about runs so the daemon can count them. OnSkip is called on the scheduler
// loop, OnRunStart and OnRunEnd on the run's goroutine; all must be quick and safe for
// concurrent use, and must not call RunNow.
type Observer interface {
	OnSkip(reason string)
	OnRunStart(t Trigger)
	OnRunEnd(t Trigger, o Outcome, took time.Duration)
}

// Config holds the archive.* settings. Zero values mean the defaults.
type Config struct {
	// Schedule is a 5-field cron expression or a descriptor (@hourly, @daily, @every 30m), with
	// an optional "CRON_TZ=Area/City " prefix that overrides Timezone.
	Schedule string
	// Timezone is the IANA zone the schedule is read in; empty means the machine's local time.
	Timezone string
	// Jitter delays scheduled and catch-up runs by a random duration in [0, Jitter). A run
	// waiting out its jitter counts as running, so keep Jitter well below the schedule interval.
	Jitter time.Duration
	// Retries is how many times a failed run is retried; 0 means DefaultRetries, negative none.
	Retries int
	// RetryBase is the wait before the first retry; each further wait is RetryFactor times longer.
	RetryBase   time.Duration
	RetryFactor int
	// StateFile is where LastRun/LastSuccess are kept; empty means DefaultStateFile.
	StateFile string
}

// Scheduler runs one Job per Config. Create it with New, then Start and Stop it once.
type Scheduler struct {
	cfg    Config
	sched  cron.Schedule
	loc    *time.Location
	job    Job
	logger *slog.Logger
	obs    Observer
	// now reads the wall clock. Tests replace it to make the clock jump, which the fake clock
	// of testing/synctest cannot do.
	now func() time.Time

	manual   chan manualReq
	done     chan result // capacity 1: at most one run is ever in flight
	stopping chan struct{}
	loopDone chan struct{}
	wg       sync.WaitGroup // the run goroutine

	life      sync.Mutex // guards started, stopped, cancelJob
	started   bool
	stopped   bool
	jobCtx    context.Context
	cancelJob context.CancelFunc

	// Owned by the loop goroutine.
	busy    bool      // a run was started and its result not yet received
	nextAt  time.Time // next cron trigger
	retry   *Trigger  // pending retry, if any
	retryAt time.Time

	running atomic.Bool // for Running: set when a run starts, cleared by the run goroutine

	mu       sync.Mutex // guards next and lastBeat for the getters
	next     time.Time
	lastBeat time.Time

	stateMu sync.Mutex // guards state and serializes writes of the state file
	state   State
}

type manualReq struct {
	reason string
	reply  chan bool
}

type result struct {
	trigger Trigger
	outcome Outcome
	aborted bool // stopped while waiting out the jitter; the job never ran
}

// New checks cfg, loads the state file and returns a Scheduler that is not started yet. An
// unreadable or corrupt state file is logged as a warning and treated as empty. obs may be nil.
func New(cfg Config, job Job, logger *slog.Logger, obs Observer) (*Scheduler, error) {
	if job == nil {
		return nil, fmt.Errorf("scheduler: job is nil")
	}
	if logger == nil {
		return nil, fmt.Errorf("scheduler: logger is nil")
	}
	sched, err := parseSchedule(cfg.Schedule)
	if err != nil {
		return nil, fmt.Errorf("archive.schedule %q: %w: use 5 fields (m h dom mon dow) or @hourly/@every 1h", cfg.Schedule, err)
	}
	loc := time.Local
	if cfg.Timezone != "" {
		if loc, err = time.LoadLocation(cfg.Timezone); err != nil {
			return nil, fmt.Errorf("archive.timezone %q: %w: use an IANA name such as Europe/Berlin, or leave it empty for the local time", cfg.Timezone, err)
		}
	}
	if sched.Next(time.Now().In(loc)).IsZero() {
		return nil, fmt.Errorf("archive.schedule %q: never fires: use a date that exists, e.g. 0 3 28 2 *", cfg.Schedule)
	}
	switch {
	case cfg.Jitter < 0:
		return nil, fmt.Errorf("archive.jitter %s: must not be negative", cfg.Jitter)
	case cfg.RetryBase < 0:
		return nil, fmt.Errorf("archive.retry_base %s: must not be negative", cfg.RetryBase)
	case cfg.RetryFactor < 0:
		return nil, fmt.Errorf("archive.retry_factor %d: must be 1 or more", cfg.RetryFactor)
	}
	if cfg.Retries == 0 {
		cfg.Retries = DefaultRetries
	}
	cfg.Retries = max(cfg.Retries, 0)
	if cfg.RetryBase == 0 {
		cfg.RetryBase = DefaultRetryBase
	}
	if cfg.RetryFactor == 0 {
		cfg.RetryFactor = DefaultRetryFactor
	}
	if cfg.StateFile == "" {
		cfg.StateFile = DefaultStateFile
	}
	if obs == nil {
		obs = nopObserver{}
	}
	st, err := LoadState(cfg.StateFile)
	if err != nil {
		logger.Warn("ignoring the state file", "event", "state_unreadable", "path", cfg.StateFile, "err", err)
	}
	return &Scheduler{
		state:    st,
		cfg:      cfg,
		sched:    sched,
		loc:      loc,
		job:      job,
		logger:   logger,
		obs:      obs,
		now:      time.Now,
		manual:   make(chan manualReq),
		done:     make(chan result, 1),
		stopping: make(chan struct{}),
		loopDone: make(chan struct{}),
	}, nil
}

// parseSchedule wraps cron.ParseStandard, whose v3.0.1 parser panics on some input (a CRON_TZ=
// prefix with nothing after it) and silently turns "@every -5m" or "@every 0s" into every second;
// bad configuration must be an error, not a crash or a run every second.
func parseSchedule(spec string) (s cron.Schedule, err error) {
	defer func() {
		if r := recover(); r != nil {
			s, err = nil, fmt.Errorf("cannot parse: %v", r)
		}
	}()
	s, err = cron.ParseStandard(spec)
	if err != nil {
		return nil, err
	}
	if _, ok := s.(cron.ConstantDelaySchedule); ok {
		_, text, _ := strings.Cut(spec, "@every ")
		if d, err := time.ParseDuration(strings.TrimSpace(text)); err == nil && d < time.Second {
			return nil, fmt.Errorf("@every %s is shorter than the minimum of 1s", d)
		}
	}
	return s, nil
}

// Start decides on a catch-up run and starts the loop; it does not block.
// Cancelling ctx stops triggering, like Stop, but does not cancel a running job: only Stop does
// that, when its own ctx expires. Start after Start or Stop does nothing.
func (s *Scheduler) Start(ctx context.Context) {
	s.life.Lock()
	defer s.life.Unlock()
	if s.started || s.stopped {
		return
	}
	s.started = true
	s.jobCtx, s.cancelJob = context.WithCancel(context.WithoutCancel(ctx))

	st := s.State()
	now := s.now()
	s.setNext(s.sched.Next(now.In(s.loc)))

	// Like systemd's Persistent=true: if a trigger fell between the last success and now, the
	// daemon was down (or failing) when it was due, so run once now. Without a last success
	// this is a first start and there is nothing to catch up.
	var first *Trigger
	if !st.LastSuccess.IsZero() {
		if missed := s.sched.Next(st.LastSuccess.In(s.loc)); !missed.After(now) {
			first = &Trigger{Scheduled: missed, Reason: ReasonCatchup, Attempt: 1}
			s.logger.Info("a scheduled run was missed while matomod was down; running it now",
				"event", "archive_catchup", "missed", missed, "last_success", st.LastSuccess)
		}
	}
	s.logger.Info("scheduler started", "event", "scheduler_started",
		"schedule", s.cfg.Schedule, "next", s.nextAt, "last_success", st.LastSuccess)
	go s.loop(ctx, first)
}

// loop is the only goroutine that starts runs, so "is a run in progress" needs no lock. It never
// runs job code: jobs run on their own goroutine and report back on s.done.
func (s *Scheduler) loop(ctx context.Context, first *Trigger) {
	defer close(s.loopDone)
	timer := time.NewTimer(beatEvery)
	defer timer.Stop()
	if first != nil {
		s.startRun(*first, true)
	}
	for {
		now := s.now()
		s.setBeat(now)
		s.fireDue(now)
		timer.Reset(s.wait(now))
		select {
		case <-timer.C:
		case req := <-s.manual:
			req.reply <- s.startRun(Trigger{Scheduled: s.now(), Reason: req.reason, Attempt: 1}, false)
		case res := <-s.done:
			s.finish(res)
		case <-s.stopping:
			return
		case <-ctx.Done():
			return
		}
	}
}

// fireDue starts the cron trigger and the pending retry if their time has come. However many
// cron times passed since the last wake-up (clock jump, suspend, a stalled loop), one run
// starts, and the next trigger is computed from now, not from the missed time.
func (s *Scheduler) fireDue(now time.Time) {
	// The clock went back: without this the next run would wait for the old, later time.
	if n := s.sched.Next(now.In(s.loc)); !n.IsZero() && n.Before(s.nextAt) {
		s.setNext(n)
	}
	if !s.nextAt.IsZero() && !s.nextAt.After(now) {
		due := s.nextAt
		s.setNext(s.sched.Next(now.In(s.loc)))
		if later := s.sched.Next(due); !later.After(now) {
			s.logger.Warn("several scheduled runs were due at once (clock jump or suspend); running once",
				"event", "archive_triggers_merged", "first_due", due, "now", now)
		}
		s.startRun(Trigger{Scheduled: due, Reason: ReasonSchedule, Attempt: 1}, true)
	}
	// A scheduled run that started above has cleared the retry: it supersedes it.
	if s.retry != nil && !s.retryAt.After(now) {
		t := *s.retry
		s.retry = nil
		s.startRun(t, false)
	}
}

// wait is how long the loop may sleep: until the next trigger or retry, at most beatEvery.
func (s *Scheduler) wait(now time.Time) time.Duration {
	d := beatEvery
	if !s.nextAt.IsZero() {
		d = min(d, s.nextAt.Sub(now))
	}
	if s.retry != nil {
		d = min(d, s.retryAt.Sub(now))
	}
	return max(d, 0)
}

// startRun starts t unless a run is in progress, in which case it reports an overlap skip.
// Any new run supersedes a pending retry.
func (s *Scheduler) startRun(t Trigger, jitter bool) bool {
	if s.busy {
		s.logger.Warn("archive run skipped: the previous run is still going",
			"event", "run_skipped", "reason", SkipOverlap, "trigger", t.Reason, "scheduled", t.Scheduled)
		s.obs.OnSkip(SkipOverlap)
		return false
	}
	s.busy = true
	s.retry = nil
	s.running.Store(true)
	var delay time.Duration
	if jitter && s.cfg.Jitter > 0 {
		delay = rand.N(s.cfg.Jitter)
	}
	s.wg.Add(1)
	go s.run(t, delay)
	return true
}

// run executes one run on its own goroutine. The result is always sent, even if the job
// panics, so the loop can never lose track of the run and skip every later trigger (the
// robfig/cron SkipIfStillRunning-outside-Recover trap).
func (s *Scheduler) run(t Trigger, delay time.Duration) {
	defer s.wg.Done()
	res := result{trigger: t, aborted: true}
	defer func() {
		s.running.Store(false)
		s.done <- res // never blocks: capacity 1, and the loop drains it before the next run
	}()
	if delay > 0 {
		timer := time.NewTimer(delay)
		defer timer.Stop()
		select {
		case <-timer.C:
		case <-s.loopDone:
			return
		}
	}

	// Round(0) keeps only the wall time, as the state file does; start measures the duration.
	startWall, start := s.now().Round(0), time.Now()
	s.stateMu.Lock()
	s.state.LastRun = startWall
	s.stateMu.Unlock()
	s.logger.Debug("archive run started", "event", "archive_started",
		"reason", t.Reason, "attempt", t.Attempt, "scheduled", t.Scheduled)
	s.obs.OnRunStart(t)

	out := s.call(t)

	took := time.Since(start)
	s.updateState(func(st *State) {
		if out == Success {
			st.LastSuccess = s.now().Round(0)
		}
	})
	s.logger.Debug("archive run finished", "event", "archive_finished",
		"reason", t.Reason, "attempt", t.Attempt, "outcome", out.String(), "duration", took)
	s.obs.OnRunEnd(t, out, took)
	res = result{trigger: t, outcome: out}
}

// call runs the job, turning a panic into a Failure.
func (s *Scheduler) call(t Trigger) (out Outcome) {
	defer func() {
		if r := recover(); r != nil {
			s.logger.Error("archive job panicked", "event", "archive_panic",
				"reason", t.Reason, "attempt", t.Attempt, "panic", r, "stack", string(debug.Stack()))
			out = Failure
		}
	}()
	return s.job(s.jobCtx, t)
}

// finish takes a run's result on the loop and schedules a retry after a failure. A retry that
// would start at or after the next cron trigger is dropped: that run takes over.
func (s *Scheduler) finish(res result) {
	s.busy = false
	if res.aborted || res.outcome != Failure {
		return
	}
	t := res.trigger
	if t.Attempt > s.cfg.Retries {
		if s.cfg.Retries > 0 {
			s.logger.Warn("archive run failed and no retries are left", "event", "archive_retries_exhausted",
				"attempts", t.Attempt, "next", s.nextAt)
		}
		return
	}
	delay := s.backoff(t.Attempt)
	at := s.now().Add(delay)
	if !at.Before(s.nextAt) {
		s.logger.Info("archive retry dropped: the next scheduled run comes first", "event", "archive_retry_dropped",
			"attempt", t.Attempt+1, "retry_at", at, "next", s.nextAt)
		return
	}
	s.retry = &Trigger{Scheduled: t.Scheduled, Reason: ReasonRetry, Attempt: t.Attempt + 1}
	s.retryAt = at
	s.logger.Info("archive run failed; retrying", "event", "archive_retry_scheduled",
		"attempt", t.Attempt+1, "delay", delay, "retry_at", at)
}

// backoff is the wait after failed attempt n (1-based): RetryBase * RetryFactor^(n-1), kept far
// from overflowing (any wait that long is dropped in favour of the next trigger anyway).
func (s *Scheduler) backoff(n int) time.Duration {
	const ceiling = 10 * 365 * 24 * time.Hour
	d := s.cfg.RetryBase
	for range n - 1 {
		if d >= ceiling/time.Duration(max(s.cfg.RetryFactor, 1)) {
			return ceiling
		}
		d *= time.Duration(s.cfg.RetryFactor)
	}
	return d
}

// RunNow asks for a run now, without jitter, and reports whether it started: false while a run
// is in progress (counted as an overlap skip) or when the scheduler is not running. An empty
// reason means ReasonManual.
func (s *Scheduler) RunNow(reason string) bool {
	if reason == "" {
		reason = ReasonManual
	}
	s.life.Lock()
	started := s.started
	s.life.Unlock()
	if !started {
		return false
	}
	req := manualReq{reason: reason, reply: make(chan bool, 1)}
	select {
	case s.manual <- req:
		return <-req.reply
	case <-s.loopDone:
		return false
	}
}

// Stop stops triggering and waits for a running job. If ctx ends first, the job's context is
// cancelled and Stop returns at once with an error; it does not wait for the job to react.
func (s *Scheduler) Stop(ctx context.Context) error {
	s.life.Lock()
	wasStarted, wasStopped := s.started, s.stopped
	if !wasStopped {
		s.stopped = true
		close(s.stopping)
	}
	s.life.Unlock()
	if !wasStarted {
		return nil
	}
	<-s.loopDone
	s.setNext(time.Time{})
	defer s.cancelJob()
	if err := s.Wait(ctx); err != nil {
		s.logger.Warn("archive run still going at shutdown; cancelling it", "event", "archive_cancelled")
		return fmt.Errorf("stopping scheduler: the archive run did not finish in time and was cancelled: %w", ctx.Err())
	}
	if !wasStopped {
		s.logger.Info("scheduler stopped", "event", "scheduler_stopped")
	}
	return nil
}

// Wait waits for a running job to return, until ctx ends. After a Stop
// that had to cancel the job, it lets the caller see the job wind down
// (the archiver needs up to kill_grace) instead of exiting under it.
func (s *Scheduler) Wait(ctx context.Context) error {
	idle := make(chan struct{})
	go func() {
		s.wg.Wait()
		close(idle)
	}()
	select {
	case <-idle:
		return nil
	case <-ctx.Done():
		return fmt.Errorf("the archive run has not ended: %w", ctx.Err())
	}
}

// Next is the next cron trigger (retries aside); zero before Start and after Stop.
func (s *Scheduler) Next() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.next
}

// Running reports whether a run is in progress, including one waiting out its jitter.
func (s *Scheduler) Running() bool { return s.running.Load() }

// LastBeat is when the loop last woke up; zero before Start.
func (s *Scheduler) LastBeat() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.lastBeat
}

// Alive reports whether the loop woke up within maxAge of now, for the systemd watchdog. The
// loop wakes at least every second and runs no job code, so a long archive run keeps it alive
// (a long run is not a hung daemon; the archiver bounds the run itself) while a loop that is
// stuck or has ended does not. maxAge should be a few seconds.
func (s *Scheduler) Alive(now time.Time, maxAge time.Duration) bool {
	select {
	case <-s.loopDone:
		return false
	default:
	}
	beat := s.LastBeat()
	return !beat.IsZero() && now.Sub(beat) <= maxAge
}

// State returns a copy of the current state.
func (s *Scheduler) State() State {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	return s.state
}

// UpdateState changes the state and writes the state file; the change is kept in memory even if
// writing fails. Use it for timestamps other parts of the daemon want to keep across restarts.
func (s *Scheduler) UpdateState(fn func(*State)) error {
	s.stateMu.Lock()
	defer s.stateMu.Unlock()
	fn(&s.state)
	return SaveState(s.cfg.StateFile, s.state)
}

// updateState is UpdateState for the scheduler's own writes: a failure is logged, never fatal.
func (s *Scheduler) updateState(fn func(*State)) {
	if err := s.UpdateState(fn); err != nil {
		s.logger.Warn("could not save the state file", "event", "state_save_failed", "path", s.cfg.StateFile, "err", err)
	}
}

func (s *Scheduler) setNext(t time.Time) {
	s.nextAt = t
	s.mu.Lock()
	s.next = t
	s.mu.Unlock()
}

func (s *Scheduler) setBeat(t time.Time) {
	s.mu.Lock()
	s.lastBeat = t
	s.mu.Unlock()
}

type nopObserver struct{}

func (nopObserver) OnSkip(string)                            {}
func (nopObserver) OnRunStart(Trigger)                       {}
func (nopObserver) OnRunEnd(Trigger, Outcome, time.Duration) {}
