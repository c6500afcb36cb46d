package scheduler

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"
	_ "time/tzdata" // the timezone tests must not depend on the machine's zoneinfo
)

// epoch is where the synctest fake clock starts.
var epoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

type call struct {
	at time.Time
	t  Trigger
}

// recorder is both the Observer and the place jobs record their calls.
type recorder struct {
	mu    sync.Mutex
	calls []call
	skips []string
	ends  []Outcome
}

func (r *recorder) OnSkip(reason string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.skips = append(r.skips, reason)
}
func (r *recorder) OnRunStart(Trigger) {}
func (r *recorder) OnRunEnd(_ Trigger, o Outcome, _ time.Duration) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.ends = append(r.ends, o)
}

// wrap records each call of fn with the fake time it started at.
func (r *recorder) wrap(fn Job) Job {
	return func(ctx context.Context, t Trigger) Outcome {
		r.mu.Lock()
		r.calls = append(r.calls, call{time.Now(), t})
		r.mu.Unlock()
		return fn(ctx, t)
	}
}

func (r *recorder) snapshot() ([]call, []string, []Outcome) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]call(nil), r.calls...), append([]string(nil), r.skips...), append([]Outcome(nil), r.ends...)
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

func succeed(context.Context, Trigger) Outcome { return Success }
func fail(context.Context, Trigger) Outcome    { return Failure }

// sleep waits (fake time) for the given duration, then lets every goroutine settle.
func sleep(d time.Duration) {
	time.Sleep(d)
	synctest.Wait()
}

// newTest builds a Scheduler in UTC with a state file in a temp dir, stopped at cleanup.
func newTest(t *testing.T, cfg Config, job Job) (*Scheduler, *recorder, *logBuf) {
	t.Helper()
	if cfg.Timezone == "" {
		cfg.Timezone = "UTC"
	}
	if cfg.StateFile == "" {
		cfg.StateFile = filepath.Join(t.TempDir(), "state.json")
	}
	rec := &recorder{}
	logs := &logBuf{}
	s, err := New(cfg, rec.wrap(job), slog.New(slog.NewTextHandler(logs, nil)), rec)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Stop(context.Background()); err != nil {
			t.Error(err)
		}
	})
	return s, rec, logs
}

func at(h, m, s int) time.Time {
	return epoch.Add(time.Duration(h)*time.Hour + time.Duration(m)*time.Minute + time.Duration(s)*time.Second)
}

// checkCalls compares the start time, reason and attempt of each call.
func checkCalls(t *testing.T, got []call, want ...call) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d calls %v, want %d %v", len(got), got, len(want), want)
	}
	for i := range want {
		if !got[i].at.Equal(want[i].at) || got[i].t.Reason != want[i].t.Reason || got[i].t.Attempt != want[i].t.Attempt {
			t.Errorf("call %d: got %s %s attempt %d, want %s %s attempt %d", i,
				got[i].at.Format(time.TimeOnly), got[i].t.Reason, got[i].t.Attempt,
				want[i].at.Format(time.TimeOnly), want[i].t.Reason, want[i].t.Attempt)
		}
	}
}

func c(when time.Time, reason string, attempt int) call {
	return call{when, Trigger{Reason: reason, Attempt: attempt}}
}

func TestNewRejectsBadConfig(t *testing.T) {
	state := filepath.Join(t.TempDir(), "state.json")
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{Schedule: "x"}, `archive.schedule "x": expected exactly 5 fields, found 1: [x]: use 5 fields (m h dom mon dow) or @hourly/@every 1h`},
		{Config{Schedule: "* * * * * *"}, `archive.schedule "* * * * * *": expected exactly 5 fields, found 6: [* * * * * *]: use 5 fields (m h dom mon dow) or @hourly/@every 1h`},
		{Config{Schedule: "@fortnightly"}, `archive.schedule "@fortnightly": unrecognized descriptor: @fortnightly: use 5 fields (m h dom mon dow) or @hourly/@every 1h`},
		{Config{Schedule: ""}, `archive.schedule "": empty spec string: use 5 fields (m h dom mon dow) or @hourly/@every 1h`},
		// robfig/cron v3.0.1 panics on this one; it must be an error.
		{Config{Schedule: "CRON_TZ=Europe/Berlin"}, `archive.schedule "CRON_TZ=Europe/Berlin": cannot parse: `},
		{Config{Schedule: "CRON_TZ=Mars/Base @daily"}, `archive.schedule "CRON_TZ=Mars/Base @daily": provided bad location Mars/Base: unknown time zone Mars/Base: use 5 fields`},
		{Config{Schedule: "@every -5m"}, `archive.schedule "@every -5m": @every -5m0s is shorter than the minimum of 1s: use 5 fields`},
		{Config{Schedule: "CRON_TZ=UTC @every 500ms"}, `archive.schedule "CRON_TZ=UTC @every 500ms": @every 500ms is shorter than the minimum of 1s: use 5 fields`},
		{Config{Schedule: "0 3 30 2 *"}, `archive.schedule "0 3 30 2 *": never fires: use a date that exists, e.g. 0 3 28 2 *`},
		{Config{Schedule: "@daily", Timezone: "Mars/Base"}, `archive.timezone "Mars/Base": unknown time zone Mars/Base: use an IANA name such as Europe/Berlin, or leave it empty for the local time`},
		{Config{Schedule: "@daily", Jitter: -time.Second}, `archive.jitter -1s: must not be negative`},
		{Config{Schedule: "@daily", RetryBase: -time.Second}, `archive.retry_base -1s: must not be negative`},
		{Config{Schedule: "@daily", RetryFactor: -1}, `archive.retry_factor -1: must be 1 or more`},
	} {
		tc.cfg.StateFile = state
		_, err := New(tc.cfg, succeed, slog.New(slog.DiscardHandler), nil)
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("New(%+v):\n got  %v\n want %s", tc.cfg, err, tc.want)
		}
	}
}

func TestRunsOnSchedule(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, rec, _ := newTest(t, Config{Schedule: "0 * * * *"}, succeed)
		if !s.Next().IsZero() {
			t.Errorf("Next before Start = %v, want zero", s.Next())
		}
		s.Start(t.Context())
		if got := s.Next(); !got.Equal(at(1, 0, 0)) {
			t.Errorf("Next = %v, want 01:00", got)
		}
		sleep(3*time.Hour + time.Second)
		calls, skips, ends := rec.snapshot()
		checkCalls(t, calls, c(at(1, 0, 0), ReasonSchedule, 1), c(at(2, 0, 0), ReasonSchedule, 1), c(at(3, 0, 0), ReasonSchedule, 1))
		for i, cl := range calls {
			if !cl.t.Scheduled.Equal(cl.at) {
				t.Errorf("call %d: Scheduled = %v, want %v", i, cl.t.Scheduled, cl.at)
			}
		}
		if len(skips) != 0 || len(ends) != 3 {
			t.Errorf("skips %v, ends %v", skips, ends)
		}
		if got := s.Next(); !got.Equal(at(4, 0, 0)) {
			t.Errorf("Next = %v, want 04:00", got)
		}
	})
}

func TestEverySecond(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, rec, _ := newTest(t, Config{Schedule: "@every 1s"}, succeed)
		s.Start(t.Context())
		sleep(5*time.Second + time.Second/2)
		calls, _, _ := rec.snapshot()
		checkCalls(t, calls, c(at(0, 0, 1), "schedule", 1), c(at(0, 0, 2), "schedule", 1), c(at(0, 0, 3), "schedule", 1),
			c(at(0, 0, 4), "schedule", 1), c(at(0, 0, 5), "schedule", 1))
	})
}

func TestTimezone(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		for _, tc := range []struct {
			schedule, tz string
			want         time.Time
		}{
			{"0 3 * * *", "UTC", at(3, 0, 0)},
			{"0 3 * * *", "Europe/Berlin", at(2, 0, 0)}, // UTC+1 in January
			{"CRON_TZ=America/New_York 0 3 * * *", "Europe/Berlin", at(8, 0, 0)},
		} {
			s, _, _ := newTest(t, Config{Schedule: tc.schedule, Timezone: tc.tz}, succeed)
			s.Start(t.Context())
			if got := s.Next(); !got.Equal(tc.want) {
				t.Errorf("%q in %s: Next = %v, want %v", tc.schedule, tc.tz, got.UTC(), tc.want)
			}
		}
	})
}

func TestOverlapIsSkippedAndCounted(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, rec, logs := newTest(t, Config{Schedule: "@every 1s"}, func(context.Context, Trigger) Outcome {
			time.Sleep(2500 * time.Millisecond)
			return Success
		})
		s.Start(t.Context())
		sleep(9500 * time.Millisecond)
		calls, skips, _ := rec.snapshot()
		checkCalls(t, calls, c(at(0, 0, 1), "schedule", 1), c(at(0, 0, 4), "schedule", 1), c(at(0, 0, 7), "schedule", 1))
		if want := []string{"overlap", "overlap", "overlap", "overlap", "overlap", "overlap"}; strings.Join(skips, ",") != strings.Join(want, ",") {
			t.Errorf("skips = %v, want %v", skips, want)
		}
		if got := strings.Count(logs.String(), "event=run_skipped reason=overlap"); got != 6 {
			t.Errorf("logged %d overlap skips, want 6:\n%s", got, logs)
		}
	})
}

func TestPanicDoesNotBlockLaterRuns(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int32
		s, rec, logs := newTest(t, Config{Schedule: "@every 1s"}, func(context.Context, Trigger) Outcome {
			if n.Add(1) == 1 {
				panic("boom")
			}
			return Success
		})
		s.Start(t.Context())
		sleep(3*time.Second + time.Second/2)
		calls, skips, ends := rec.snapshot()
		checkCalls(t, calls, c(at(0, 0, 1), "schedule", 1), c(at(0, 0, 2), "schedule", 1), c(at(0, 0, 3), "schedule", 1))
		if len(skips) != 0 {
			t.Errorf("skips = %v, want none", skips)
		}
		// OnRunEnd is called after the recovered panic, with Failure.
		if len(ends) != 3 || ends[0] != Failure || ends[1] != Success {
			t.Errorf("outcomes = %v, want [failure success success]", ends)
		}
		if !strings.Contains(logs.String(), "event=archive_panic") || !strings.Contains(logs.String(), "panic=boom") {
			t.Errorf("panic not logged:\n%s", logs)
		}
		if s.Running() {
			t.Error("Running after the panicking run ended")
		}
	})
}

func writeState(t *testing.T, st State) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "state.json")
	if err := SaveState(path, st); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestCatchupOnStart(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		// Hourly at :30; the clock starts at 00:00. A success at 22:45 the day before means the
		// 23:30 run was missed.
		path := writeState(t, State{LastSuccess: epoch.Add(-75 * time.Minute)})
		s, rec, logs := newTest(t, Config{Schedule: "30 * * * *", StateFile: path}, succeed)
		s.Start(t.Context())
		sleep(31 * time.Minute)
		calls, _, _ := rec.snapshot()
		checkCalls(t, calls, c(at(0, 0, 0), ReasonCatchup, 1), c(at(0, 30, 0), ReasonSchedule, 1))
		if want := epoch.Add(-30 * time.Minute); !calls[0].t.Scheduled.Equal(want) {
			t.Errorf("catch-up Scheduled = %v, want the missed 23:30", calls[0].t.Scheduled)
		}
		if !strings.Contains(logs.String(), "event=archive_catchup") {
			t.Errorf("catch-up not logged:\n%s", logs)
		}
	})
}

func TestNoCatchup(t *testing.T) {
	for name, st := range map[string]*State{
		"not missed":  {LastSuccess: epoch.Add(-15 * time.Minute)}, // 23:45: next due 00:30
		"first start": nil,
		"no success":  {LastRun: epoch.Add(-5 * time.Hour)},
	} {
		t.Run(name, func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				cfg := Config{Schedule: "30 * * * *"}
				if st != nil {
					cfg.StateFile = writeState(t, *st)
				}
				s, rec, _ := newTest(t, cfg, succeed)
				s.Start(t.Context())
				sleep(31 * time.Minute)
				calls, _, _ := rec.snapshot()
				checkCalls(t, calls, c(at(0, 30, 0), ReasonSchedule, 1))
			})
		})
	}
}

func TestCorruptStateFileIsIgnored(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "state.json")
		if err := os.WriteFile(path, []byte(`{"last_success": "2000-`), 0o600); err != nil {
			t.Fatal(err)
		}
		s, rec, logs := newTest(t, Config{Schedule: "30 * * * *", StateFile: path}, succeed)
		if !strings.Contains(logs.String(), "level=WARN") || !strings.Contains(logs.String(), "event=state_unreadable") {
			t.Errorf("corrupt state file not reported:\n%s", logs)
		}
		if s.State() != (State{}) {
			t.Errorf("State = %+v, want empty", s.State())
		}
		s.Start(t.Context())
		sleep(31 * time.Minute)
		calls, _, _ := rec.snapshot()
		checkCalls(t, calls, c(at(0, 30, 0), ReasonSchedule, 1)) // no catch-up from a corrupt file
		st, err := LoadState(path)
		if err != nil || !st.LastSuccess.Equal(at(0, 30, 0)) {
			t.Errorf("after a successful run: LoadState = %+v, %v; want last_success 00:30", st, err)
		}
	})
}

func TestOutcomesAndState(t *testing.T) {
	for _, tc := range []struct {
		out         Outcome
		lastSuccess time.Time
		calls       []call
	}{
		{Success, at(1, 0, 5), []call{c(at(1, 0, 0), "schedule", 1)}},
		// Skipped: no retry and LastSuccess untouched.
		{Skipped, time.Time{}, []call{c(at(1, 0, 0), "schedule", 1)}},
		// Failure: retried.
		{Failure, time.Time{}, []call{c(at(1, 0, 0), "schedule", 1), c(at(1, 1, 5), "retry", 2)}},
	} {
		t.Run(tc.out.String(), func(t *testing.T) {
			synctest.Test(t, func(t *testing.T) {
				s, rec, _ := newTest(t, Config{Schedule: "0 * * * *", Retries: 1}, func(context.Context, Trigger) Outcome {
					time.Sleep(5 * time.Second)
					return tc.out
				})
				s.Start(t.Context())
				sleep(time.Hour + 10*time.Minute)
				calls, _, ends := rec.snapshot()
				checkCalls(t, calls, tc.calls...)
				if ends[0] != tc.out {
					t.Errorf("OnRunEnd outcome = %v, want %v", ends[0], tc.out)
				}
				want := State{LastRun: tc.calls[len(tc.calls)-1].at, LastSuccess: tc.lastSuccess}
				got, err := LoadState(s.cfg.StateFile)
				if err != nil || !got.LastRun.Equal(want.LastRun) || !got.LastSuccess.Equal(want.LastSuccess) {
					t.Errorf("state file = %+v, %v; want %+v", got, err, want)
				}
				if mem := s.State(); !mem.LastRun.Equal(got.LastRun) || !mem.LastSuccess.Equal(got.LastSuccess) {
					t.Errorf("State() = %+v, file %+v", s.State(), got)
				}
			})
		})
	}
}

func TestRetryBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, rec, logs := newTest(t, Config{Schedule: "0 * * * *"}, fail)
		s.Start(t.Context())
		sleep(2*time.Hour + time.Second)
		calls, _, _ := rec.snapshot()
		// 1m, 4m, 16m after each failure; then nothing until the next hour.
		checkCalls(t, calls,
			c(at(1, 0, 0), ReasonSchedule, 1), c(at(1, 1, 0), ReasonRetry, 2), c(at(1, 5, 0), ReasonRetry, 3),
			c(at(1, 21, 0), ReasonRetry, 4), c(at(2, 0, 0), ReasonSchedule, 1))
		for _, cl := range calls[1:4] {
			if !cl.t.Scheduled.Equal(at(1, 0, 0)) {
				t.Errorf("retry Scheduled = %v, want the original 01:00", cl.t.Scheduled)
			}
		}
		if !strings.Contains(logs.String(), "event=archive_retries_exhausted") {
			t.Errorf("exhausted retries not logged:\n%s", logs)
		}
	})
}

func TestRetryStopsAfterSuccess(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int32
		s, rec, _ := newTest(t, Config{Schedule: "0 * * * *"}, func(context.Context, Trigger) Outcome {
			if n.Add(1) == 1 {
				return Failure
			}
			return Success
		})
		s.Start(t.Context())
		sleep(time.Hour + 59*time.Minute)
		calls, _, _ := rec.snapshot()
		checkCalls(t, calls, c(at(1, 0, 0), ReasonSchedule, 1), c(at(1, 1, 0), ReasonRetry, 2))
	})
}

func TestRetryDroppedWhenNextTriggerComesFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, rec, logs := newTest(t, Config{Schedule: "*/10 * * * *"}, fail)
		s.Start(t.Context())
		sleep(20*time.Minute + time.Second)
		calls, _, _ := rec.snapshot()
		// The third retry would be at 00:31, after the 00:20 trigger: dropped.
		checkCalls(t, calls,
			c(at(0, 10, 0), ReasonSchedule, 1), c(at(0, 11, 0), ReasonRetry, 2), c(at(0, 15, 0), ReasonRetry, 3),
			c(at(0, 20, 0), ReasonSchedule, 1))
		if !strings.Contains(logs.String(), "event=archive_retry_dropped attempt=4") {
			t.Errorf("dropped retry not logged:\n%s", logs)
		}
	})
}

func TestJitter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const jitter = 10 * time.Minute
		s, rec, _ := newTest(t, Config{Schedule: "0 * * * *", Jitter: jitter}, succeed)
		s.Start(t.Context())
		sleep(24*time.Hour + 30*time.Minute)
		calls, _, _ := rec.snapshot()
		if len(calls) != 24 {
			t.Fatalf("got %d runs in 24h, want 24", len(calls))
		}
		var delayed int
		for i, cl := range calls {
			d := cl.at.Sub(cl.t.Scheduled)
			if !cl.t.Scheduled.Equal(at(i+1, 0, 0)) || d < 0 || d >= jitter {
				t.Errorf("run %d: scheduled %v, started %v later; want [0, %v) after %v", i, cl.t.Scheduled, d, jitter, at(i+1, 0, 0))
			}
			if d > 0 {
				delayed++
			}
		}
		if delayed == 0 {
			t.Error("no run was delayed: jitter not applied")
		}
	})
}

// TestClockJumpForward makes the wall clock jump by 10 hours: one run, not ten, and the next
// one on the schedule of the new time.
func TestClockJumpForward(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, rec, logs := newTest(t, Config{Schedule: "0 * * * *"}, succeed)
		var offset atomic.Int64
		s.now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		s.Start(t.Context())
		sleep(30 * time.Minute)
		offset.Store(int64(10 * time.Hour)) // wall clock now reads 10:30
		sleep(20 * time.Minute)             // 10:50
		calls, _, _ := rec.snapshot()
		if len(calls) != 1 || calls[0].t.Reason != ReasonSchedule || !calls[0].t.Scheduled.Equal(at(1, 0, 0)) {
			t.Fatalf("after the jump: calls %v, want one run for 01:00", calls)
		}
		// Noticed within a heartbeat, not when the pre-jump timer would have fired (01:00).
		if d := calls[0].at.Sub(at(0, 30, 0)); d > beatEvery {
			t.Errorf("jump noticed after %v, want within %v", d, beatEvery)
		}
		if got := s.Next(); !got.Equal(at(11, 0, 0)) {
			t.Errorf("Next = %v, want 11:00", got)
		}
		if !strings.Contains(logs.String(), "event=archive_triggers_merged") {
			t.Errorf("merged triggers not logged:\n%s", logs)
		}
		sleep(11 * time.Minute) // 11:01 on the wall clock
		calls, _, _ = rec.snapshot()
		if len(calls) != 2 || !calls[1].t.Scheduled.Equal(at(11, 0, 0)) {
			t.Errorf("calls %v, want a second run for 11:00", calls)
		}
	})
}

// TestClockJumpBack: after the wall clock goes back two days the next run is the next hour of
// the new time, not two days away.
func TestClockJumpBack(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, rec, _ := newTest(t, Config{Schedule: "0 * * * *"}, succeed)
		var offset atomic.Int64
		s.now = func() time.Time { return time.Now().Add(time.Duration(offset.Load())) }
		s.Start(t.Context())
		sleep(30 * time.Minute)
		offset.Store(int64(-48 * time.Hour))
		sleep(31 * time.Minute) // wall clock 01:01 two days earlier
		calls, _, _ := rec.snapshot()
		if want := at(1, 0, 0).Add(-48 * time.Hour); len(calls) != 1 || !calls[0].t.Scheduled.Equal(want) {
			t.Errorf("calls %v, want one run for %v", calls, want)
		}
	})
}

func TestStopWaitsForRunningJob(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var cancelled atomic.Bool
		s, rec, _ := newTest(t, Config{Schedule: "@every 1m"}, func(ctx context.Context, _ Trigger) Outcome {
			select {
			case <-time.After(5 * time.Second):
			case <-ctx.Done():
				cancelled.Store(true)
			}
			return Success
		})
		s.Start(t.Context())
		if !s.RunNow("") {
			t.Fatal("RunNow on an idle scheduler did not start a run")
		}
		synctest.Wait()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		start := time.Now()
		if err := s.Stop(ctx); err != nil {
			t.Fatalf("Stop: %v", err)
		}
		if took := time.Since(start); took != 5*time.Second {
			t.Errorf("Stop returned after %v, want when the job ended (5s)", took)
		}
		if cancelled.Load() {
			t.Error("the job's context was cancelled before the stop timeout")
		}
		if s.Running() || !s.Next().IsZero() || s.RunNow("") {
			t.Errorf("after Stop: Running %v, Next %v, RunNow still runs", s.Running(), s.Next())
		}
		sleep(time.Hour)
		calls, _, _ := rec.snapshot()
		checkCalls(t, calls, c(epoch, ReasonManual, 1)) // nothing triggered after Stop
	})
}

func TestStopCancelsJobWhenItsContextExpires(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var cancelledAt atomic.Int64
		s, _, _ := newTest(t, Config{Schedule: "@every 1m"}, func(ctx context.Context, _ Trigger) Outcome {
			<-ctx.Done()
			cancelledAt.Store(int64(time.Since(epoch)))
			return Failure
		})
		s.Start(t.Context())
		s.RunNow("")
		sleep(30 * time.Second)
		if cancelledAt.Load() != 0 {
			t.Fatal("job cancelled before Stop")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		err := s.Stop(ctx)
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("Stop = %v, want a deadline error", err)
		}
		synctest.Wait()
		if got := time.Duration(cancelledAt.Load()); got != 40*time.Second {
			t.Errorf("job cancelled at %v, want when Stop's context expired (40s)", got)
		}
	})
}

func TestStopDuringJitterSkipsTheRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, rec, _ := newTest(t, Config{Schedule: "@every 1m", Jitter: 50 * time.Second}, succeed)
		s.Start(t.Context())
		time.Sleep(time.Minute)
		synctest.Wait()
		if !s.Running() {
			// Zero jitter was drawn; the run is already over. Unlikely (1 in 5e10) but not wrong.
			t.Skip("no jitter drawn")
		}
		start := time.Now()
		if err := s.Stop(context.Background()); err != nil {
			t.Fatal(err)
		}
		if time.Since(start) != 0 {
			t.Errorf("Stop waited %v for a run that had not begun", time.Since(start))
		}
		calls, _, _ := rec.snapshot()
		if len(calls) != 0 {
			t.Errorf("job ran after Stop: %v", calls)
		}
	})
}

func TestStartContextStopsTriggering(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var cancelled atomic.Bool
		s, rec, _ := newTest(t, Config{Schedule: "@every 1m"}, func(ctx context.Context, _ Trigger) Outcome {
			select {
			case <-time.After(90 * time.Second):
			case <-ctx.Done():
				cancelled.Store(true)
			}
			return Success
		})
		ctx, cancel := context.WithCancel(context.Background())
		s.Start(ctx)
		sleep(time.Minute + time.Second)
		cancel() // SIGTERM: stop triggering, but let the running job finish
		sleep(time.Hour)
		calls, _, _ := rec.snapshot()
		checkCalls(t, calls, c(at(0, 1, 0), ReasonSchedule, 1))
		if cancelled.Load() || s.Running() {
			t.Errorf("job cancelled %v, still running %v; want it to finish normally", cancelled.Load(), s.Running())
		}
	})
}

func TestRunNow(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, rec, _ := newTest(t, Config{Schedule: "0 3 * * *", Jitter: time.Hour}, func(context.Context, Trigger) Outcome {
			time.Sleep(time.Minute)
			return Success
		})
		if s.RunNow("") {
			t.Error("RunNow before Start started a run")
		}
		s.Start(t.Context())
		if !s.RunNow("sighup") {
			t.Fatal("RunNow on an idle scheduler did not start a run")
		}
		synctest.Wait()
		if !s.Running() {
			t.Error("Running = false during a run")
		}
		if s.RunNow("") {
			t.Error("RunNow during a run started another")
		}
		sleep(time.Minute)
		calls, skips, _ := rec.snapshot()
		checkCalls(t, calls, c(epoch, "sighup", 1)) // no jitter for manual runs
		if len(skips) != 1 || skips[0] != SkipOverlap {
			t.Errorf("skips = %v, want [overlap]", skips)
		}
		if s.Running() {
			t.Error("Running = true after the run")
		}
	})
}

func TestManualRunSupersedesPendingRetry(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var n atomic.Int32
		s, rec, _ := newTest(t, Config{Schedule: "0 * * * *"}, func(context.Context, Trigger) Outcome {
			if n.Add(1) == 1 {
				return Failure
			}
			return Success
		})
		s.Start(t.Context())
		sleep(time.Hour + 30*time.Second) // failed at 01:00, retry pending for 01:01
		s.RunNow("")
		sleep(10 * time.Minute)
		calls, _, _ := rec.snapshot()
		checkCalls(t, calls, c(at(1, 0, 0), ReasonSchedule, 1), c(at(1, 0, 30), ReasonManual, 1))
	})
}

func TestLiveness(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _, _ := newTest(t, Config{Schedule: "@every 1m"}, func(ctx context.Context, _ Trigger) Outcome {
			time.Sleep(time.Hour) // a long, blocking job must not starve the heartbeat
			return Success
		})
		if s.Alive(time.Now(), time.Minute) {
			t.Error("Alive before Start")
		}
		s.Start(t.Context())
		s.RunNow("")
		synctest.Wait()
		for range 30 {
			sleep(1700 * time.Millisecond)
			if !s.Alive(time.Now(), 2*time.Second) {
				t.Fatalf("not Alive at %v with a run in progress (%v); last beat %v", time.Since(epoch), s.Running(), s.LastBeat().Sub(epoch))
			}
		}
		if !s.Running() {
			t.Error("the long job is not running")
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		_ = s.Stop(ctx)
		if s.Alive(time.Now(), time.Hour) {
			t.Error("Alive after Stop")
		}
		sleep(time.Hour) // let the job end so the bubble can finish
	})
}

func TestUpdateStateKeepsRunTimes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s, _, _ := newTest(t, Config{Schedule: "0 * * * *"}, succeed)
		s.Start(t.Context())
		sleep(time.Hour + time.Second)
		if err := s.UpdateState(func(st *State) { st.LastRun = at(5, 0, 0) }); err != nil {
			t.Fatal(err)
		}
		got, err := LoadState(s.cfg.StateFile)
		if err != nil || !got.LastRun.Equal(at(5, 0, 0)) || !got.LastSuccess.Equal(at(1, 0, 0)) {
			t.Errorf("state file = %+v, %v", got, err)
		}
	})
}
