package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
)

// waitEvent sleeps (fake time) until ev is logged, at most max.
func (h *harness) waitEvent(ev string, max time.Duration) time.Duration {
	h.t.Helper()
	start := time.Now()
	for len(h.logs.events(ev)) == 0 {
		if time.Since(start) > max {
			h.t.Fatalf("no %s within %v\n%s", ev, max, h.logs.String())
		}
		time.Sleep(100 * time.Millisecond)
	}
	return time.Since(start)
}

// maxGap is the longest silence between WATCHDOG=1 pings in [from, to].
func (h *harness) maxGap(from, to time.Time) time.Duration {
	last, gap := from, time.Duration(0)
	for _, at := range h.n.times("WATCHDOG=1") {
		if at.Before(from) || at.After(to) {
			continue
		}
		gap = max(gap, at.Sub(last))
		last = at
	}
	return max(gap, to.Sub(last))
}

// Issue 12: SIGHUP during a 170 s run stopped WATCHDOG=1 for 40 s and a
// shorter stop_timeout SIGTERMed the run. Now the run goes on, the
// watchdog keeps its pace, and the new schedule starts when the run ends.
func TestReloadDuringLongRunKeepsRunAndWatchdog(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := settings(t)
		s.StopTimeout = 10 * time.Second
		h := newHarness(t, s)
		h.con.took = 170 * time.Second
		h.start()
		time.Sleep(61 * time.Second) // @every 1m: the run starts at 1m
		if h.con.running.Load() != 1 {
			t.Fatalf("no run in progress at 61s\n%s", h.logs.String())
		}
		h.nextEnv = func() (*Env, error) {
			n := s
			n.Schedule.Schedule = "@every 2m"
			return h.newEnv(n), nil
		}
		hup := time.Now()
		h.reload <- struct{}{}
		h.waitEvent("config_reloaded", 5*time.Second)
		time.Sleep(200 * time.Second)
		if g := h.maxGap(hup, time.Now()); g > 5*time.Second {
			t.Errorf("WATCHDOG=1 silent for %v after SIGHUP (WATCHDOG_USEC 10s)", g)
		}
		if h.con.cancelled.Load() != 0 || h.con.finished.Load() != 1 {
			t.Errorf("run cancelled %d, finished %d: a reload must not stop a run", h.con.cancelled.Load(), h.con.finished.Load())
		}
		applied, ended := h.logs.events("schedule_applied"), h.logs.events("run_finished")
		at := func(ev map[string]any) time.Time {
			t, _ := time.Parse(time.RFC3339Nano, fmt.Sprint(ev["time"]))
			return t
		}
		if len(applied) != 1 || len(ended) != 1 || at(applied[0]).Before(at(ended[0])) {
			t.Fatalf("the new schedule must apply at the end of the run: schedule_applied %v, run_finished %v", applied, ended)
		}
		if err, _ := h.stop(); err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// A reload with the same settings keeps the scheduler (and its leader
// term): no stop, no restart.
func TestReloadSameScheduleKeepsLeading(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, settings(t))
		h.start()
		h.waitEvent("leader_acquired", 10*time.Second)
		h.reload <- struct{}{}
		h.waitEvent("config_reloaded", 5*time.Second)
		time.Sleep(10 * time.Second)
		if n := len(h.logs.events("term_stopping")) + len(h.logs.events("schedule_applied")); n != 0 {
			t.Errorf("a reload without changes restarted the leader's work\n%s", h.logs.String())
		}
		h.stop()
	})
}

// Issue 12: a reload accepted a config whose DB is unreachable and
// dropped the working one.
func TestReloadRejectsUnreachableDatabase(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, settings(t))
		h.start()
		h.waitEvent("leader_acquired", 10*time.Second)
		h.nextEnv = func() (*Env, error) {
			e := h.newEnv(h.env.Settings)
			e.Matomo, e.DBKey, e.Pool = &fakeDB{blackhole: true}, "other", "other"
			return e, nil
		}
		h.reload <- struct{}{}
		h.waitEvent("config_reload_failed", 10*time.Second)
		if err := fmt.Sprint(h.logs.events("config_reload_failed")[0]["err"]); !strings.Contains(err, "does not answer") {
			t.Errorf("reload error: %s", err)
		}
		if h.d.env.Load() != h.env {
			t.Error("the failed reload replaced the configuration")
		}
		if v := h.metric("matomod_config_last_reload_successful"); v != 0 {
			t.Errorf("matomod_config_last_reload_successful %v", v)
		}
		if len(h.logs.events("leader_lost"))+len(h.logs.events("term_stopping")) != 0 {
			t.Error("the failed reload stopped leading")
		}
		h.stop()
	})
}

// Issue 12: one failed ping dropped leadership and stopped a run. A DB
// blip is db_down; the leader lock (its own connection) still holds.
func TestDatabaseBlipKeepsLeadershipAndRun(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, settings(t))
		h.con.took = 170 * time.Second
		h.start()
		time.Sleep(70 * time.Second)
		h.db.set(func(f *fakeDB) { f.down = true })
		h.waitEvent("db_down", 10*time.Second)
		if h.d.NotReady() != "database unreachable" {
			t.Errorf("/readyz while the DB is down: %q", h.d.NotReady())
		}
		time.Sleep(30 * time.Second)
		h.db.set(func(f *fakeDB) { f.down = false })
		h.waitEvent("db_up", 10*time.Second)
		time.Sleep(150 * time.Second)
		if n := len(h.logs.events("leader_lost")); n != 0 {
			t.Errorf("leader_lost after a DB blip: %d", n)
		}
		if h.con.cancelled.Load() != 0 || h.con.finished.Load() != 1 {
			t.Errorf("run cancelled %d, finished %d", h.con.cancelled.Load(), h.con.finished.Load())
		}
		if v := h.metric("matomod_leader"); v != 1 {
			t.Errorf("matomod_leader %v", v)
		}
		h.stop()
	})
}

// Issue 12: a blackholed DB was noticed only after 33 s.
func TestBlackholedDatabaseNoticedQuickly(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, settings(t))
		h.start()
		h.waitEvent("leader_acquired", 10*time.Second)
		h.db.set(func(f *fakeDB) { f.blackhole = true })
		if took := h.waitEvent("db_down", time.Minute); took > 10*time.Second { // 33 s before
			t.Errorf("blackholed DB noticed after %v", took)
		}
		h.db.set(func(f *fakeDB) { f.blackhole = false })
		h.stop()
	})
}

// Losing the lock itself ends leadership; the run in progress gets
// stop_timeout and the lock is given up only after it.
func TestLeaderLockLostLetsRunFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, settings(t))
		h.con.took = 100 * time.Second
		h.start()
		time.Sleep(70 * time.Second)
		h.db.leaderLock().lost.Store(true)
		h.waitEvent("leader_lost", 10*time.Second)
		if v := h.metric("matomod_leader"); v != 0 {
			t.Errorf("matomod_leader %v after the lock was lost", v)
		}
		time.Sleep(100 * time.Second)
		if h.con.cancelled.Load() != 0 || h.con.finished.Load() != 1 {
			t.Errorf("run cancelled %d, finished %d", h.con.cancelled.Load(), h.con.finished.Load())
		}
		h.waitEvent("leader_acquired", 10*time.Second) // the lock is free again (fake)
		h.stop()
	})
}

// Issue 12: archive_cancelled was logged when no run existed.
func TestLeaderLostIdleCancelsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, settings(t))
		h.start()
		h.waitEvent("leader_acquired", 10*time.Second)
		h.db.leaderLock().lost.Store(true)
		h.waitEvent("leader_lost", 10*time.Second)
		time.Sleep(5 * time.Second)
		if ev := h.logs.events("archive_cancelled"); len(ev) != 0 {
			t.Errorf("archive_cancelled without a run: %v", ev)
		}
		h.stop()
	})
}

// Issue 12: boot with the DB down failed the unit after 90 s. READY=1
// goes out at once, STATUS= says what is awaited, the watchdog beats.
func TestStartWithDatabaseDownKeepsSystemdInformed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, settings(t))
		h.db.set(func(f *fakeDB) { f.down = true })
		start := time.Now()
		h.start()
		time.Sleep(5 * time.Minute)
		if r := h.n.times("READY=1"); len(r) != 1 || r[0].Sub(start) > time.Second {
			t.Errorf("READY=1 at %v", r)
		}
		if !h.n.has("STATUS=waiting for the database") {
			t.Error("no STATUS= saying the daemon waits for the database")
		}
		if g := h.maxGap(start, time.Now()); g > 5*time.Second {
			t.Errorf("WATCHDOG=1 silent for %v while waiting for the DB", g)
		}
		if h.d.NotReady() == "" {
			t.Error("/readyz ready while the DB is down")
		}
		h.db.set(func(f *fakeDB) { f.down = false })
		h.waitEvent("leader_acquired", 2*time.Minute)
		if h.d.NotReady() != "" {
			t.Errorf("/readyz: %s", h.d.NotReady())
		}
		h.stop()
	})
}

// Issue 15: SIGTERM stopped a worker's runs at once. They get
// stop_timeout, like the leader's.
func TestWorkerStopLetsRunsFinish(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := settings(t)
		s.Role = RoleWorker
		h := newHarness(t, s)
		h.db.set(func(f *fakeDB) { f.queued = 230 })
		h.con.took = time.Minute
		h.start()
		time.Sleep(10 * time.Second)
		if h.con.running.Load() != 2 {
			t.Fatalf("%d worker runs in progress, want 2\n%s", h.con.running.Load(), h.logs.String())
		}
		err, took := h.stop()
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		if h.con.cancelled.Load() != 0 || h.con.finished.Load() != 2 {
			t.Errorf("worker runs cancelled %d, finished %d", h.con.cancelled.Load(), h.con.finished.Load())
		}
		if took > time.Minute {
			t.Errorf("stopping took %v", took)
		}
		if v := h.metric("matomod_archive_runs_total", "result", "success", "role", "worker"); v != 2 {
			t.Errorf("worker runs counted %v, want 2", v)
		}
		if v := h.metric("matomod_archive_runs_total", "result", "success", "role", "leader"); v != 0 {
			t.Errorf("worker runs counted as the leader's: %v", v)
		}
	})
}

// After stop_timeout, work is cancelled rather than waited for forever.
func TestWorkerStopCancelsAfterStopTimeout(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := settings(t)
		s.Role, s.StopTimeout = RoleWorker, 20*time.Second
		h := newHarness(t, s)
		h.db.set(func(f *fakeDB) { f.queued = 1 })
		h.con.took = time.Hour
		h.start()
		time.Sleep(10 * time.Second)
		_, took := h.stop()
		if h.con.cancelled.Load() != 2 || took < 20*time.Second || took > 25*time.Second {
			t.Errorf("cancelled %d after %v", h.con.cancelled.Load(), took)
		}
	})
}

// Issue 12: `run` exited 0 when its HTTP listener failed.
func TestFatalErrorEndsRunWithIt(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, settings(t))
		h.start()
		h.fatal <- errors.New("serving HTTP: listen tcp 127.0.0.1:9809: bind: address already in use")
		if err := <-h.done; err == nil || !strings.Contains(err.Error(), "address already in use") {
			t.Errorf("Run: %v", err)
		}
		if !h.n.has("STOPPING=1") {
			t.Error("no STOPPING=1")
		}
	})
}

// Issue 12: one lock for every core:archive: a scheduled run while
// `matomod archive` runs from a shell is skipped, and says who holds it.
func TestScheduledRunSkipsWhileArchiveLockHeld(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, settings(t))
		h.db.set(func(f *fakeDB) { f.archiveBy = "matomo@shellhost:40112" })
		h.start()
		time.Sleep(65 * time.Second)
		if h.con.started.Load() != 0 {
			t.Error("core:archive started while another holds the archive lock")
		}
		ev := h.logs.events("run_skipped")
		if len(ev) == 0 || !strings.Contains(fmt.Sprint(ev[0]["err"]), "shellhost") {
			t.Errorf("run_skipped: %v", ev)
		}
		if v := h.metric("matomod_archive_runs_total", "result", "skipped_overlap", "role", "leader"); v != 1 {
			t.Errorf("skipped_overlap %v", v)
		}
		h.stop()
	})
}

// Issue 12: pause-check errors were ignored.
func TestPauseCheckErrorIsLoggedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, settings(t))
		h.db.set(func(f *fakeDB) { f.pauseErr = errors.New("config.ini.php: permission denied") })
		h.start()
		time.Sleep(30 * time.Second)
		if n := len(h.logs.events("pause_check_failed")); n != 1 {
			t.Errorf("pause_check_failed logged %d times, want once", n)
		}
		h.stop()
	})
}

// Issue 11: a refused repair was retried every scan and the same unsafe
// days were counted again each time (4 days, 12 counts in 3 cycles).
func TestRepairOutcomesCountedOncePerDay(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := settings(t)
		s.ScanInterval = time.Minute
		s.Schedule.Schedule = "@daily"
		h := newHarness(t, s)
		base := matomo.Date(20000)
		for i := range 4 {
			h.det.gaps = append(h.det.gaps, gapdetect.Gap{IDSite: 1, Date: base + matomo.Date(i), Kind: gapdetect.Missing, RawVisits: 3,
				Reason: "raw visits older than delete_logs_older_than"})
		}
		refused := gapdetect.Gap{IDSite: 2, Date: base, Kind: gapdetect.Missing, RawVisits: 5, Repairable: true}
		h.det.gaps = append(h.det.gaps, refused)
		h.start()
		time.Sleep(4 * time.Minute)
		if n := h.det.scans.Load(); n < 3 {
			t.Fatalf("%d scans", n)
		}
		if v := h.metric("matomod_repairs_total", "result", "skipped_unsafe"); v != 4 {
			t.Errorf("skipped_unsafe counted %v, want 4", v)
		}
		if v := h.metric("matomod_repairs_total", "result", "failed"); v != 1 {
			t.Errorf("failed counted %v, want 1", v)
		}
		if n := h.rep.tried[matomo.SiteDate{IDSite: 2, Date: base}]; n != 1 {
			t.Errorf("refused day tried %d times, want once", n)
		}
		ev := h.logs.events("repair_held_back")
		if len(ev) != 1 || !strings.Contains(fmt.Sprint(ev[0]["reason"]), "refused") {
			t.Errorf("repair_held_back: %v", ev)
		}
		// New facts (more raw visits): tried again.
		h.det.mu.Lock()
		h.det.gaps[4].RawVisits = 9
		h.det.mu.Unlock()
		time.Sleep(2 * time.Minute)
		h.rep.mu.Lock()
		n := h.rep.tried[matomo.SiteDate{IDSite: 2, Date: base}]
		h.rep.mu.Unlock()
		if n != 2 {
			t.Errorf("refused day tried %d times after its facts changed, want 2", n)
		}
		h.stop()
	})
}

// A plain day refused again after the backoff, with the same facts, is
// held back for another backoff, not retried every scan from then on.
func TestRefusedDayHeldBackAgainAfterBackoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := settings(t)
		s.ScanInterval = time.Minute
		s.Schedule.Schedule = "@daily"
		h := newHarness(t, s)
		h.d.RepairBackoff = time.Hour
		day := matomo.Date(20400)
		h.det.gaps = []gapdetect.Gap{{IDSite: 2, Period: gapdetect.PeriodDay, Date: day, Date2: day, Kind: gapdetect.Missing, RawVisits: 5, Repairable: true}}
		h.start()
		time.Sleep(90 * time.Minute)
		h.rep.mu.Lock()
		n := h.rep.tried[matomo.SiteDate{IDSite: 2, Date: day}]
		h.rep.mu.Unlock()
		if n != 2 {
			t.Errorf("refused day tried %d times in 90 min with a 1 h backoff, want 2", n)
		}
		if v := h.metric("matomod_repairs_total", "result", "failed"); v != 1 {
			t.Errorf("failed counted %v, want 1", v)
		}
		h.stop()
	})
}

// Issue 11: a site whose time zone cannot be read was skipped in silence.
// The daemon warns once per site (and again if the reason changes).
func TestSkippedSiteWarnedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := settings(t)
		s.ScanInterval = time.Minute
		h := newHarness(t, s)
		h.det.skipped = []gapdetect.SiteError{{IDSite: 6, Error: `time zone "Mars/Base" unknown`}}
		h.start()
		time.Sleep(4 * time.Minute)
		ev := h.logs.events("site_skipped")
		if len(ev) != 1 || fmt.Sprint(ev[0]["idsite"]) != "6" || !strings.Contains(fmt.Sprint(ev[0]["reason"]), "Mars/Base") {
			t.Errorf("site_skipped: %v", ev)
		}
		h.stop()
	})
}

// A week's gap and the gap of its Monday are two gaps: logged, held back
// and counted apart (they were keyed by site and date alone).
func TestWeekAndItsMondayAreTwoGaps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := settings(t)
		s.ScanInterval = time.Minute
		s.Schedule.Schedule = "@daily"
		h := newHarness(t, s)
		monday := matomo.Date(20416) // 2025-11-24, a Monday
		h.det.gaps = []gapdetect.Gap{
			{IDSite: 1, Period: gapdetect.PeriodDay, Date: monday, Date2: monday, Kind: gapdetect.Missing, RawVisits: 3, Reason: "unsafe"},
			{IDSite: 1, Period: "week", Date: monday, Date2: monday + 6, Kind: gapdetect.Missing, RawVisits: 9, Reason: "unsafe"},
		}
		h.start()
		time.Sleep(3 * time.Minute)
		if n := len(h.logs.events("gap_found")); n != 2 {
			t.Errorf("gap_found logged %d times, want 2 (the day and its week)", n)
		}
		if v := h.metric("matomod_repairs_total", "result", "skipped_unsafe"); v != 2 {
			t.Errorf("skipped_unsafe counted %v, want 2", v)
		}
		h.stop()
	})
}

// The watchdog is withheld when the scheduler loop is not alive.
func TestWatchdogOnlyWhileAlive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, settings(t))
		h.start()
		h.waitEvent("leader_acquired", 10*time.Second)
		time.Sleep(20 * time.Second)
		if len(h.n.times("WATCHDOG=1")) < 3 {
			t.Fatal("no watchdog pings")
		}
		// A scheduler whose loop has ended stands for a stuck one.
		sch := h.d.sched.Load()
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		sch.Stop(ctx)
		cancel()
		h.d.sched.Store(sch)
		from := time.Now()
		time.Sleep(20 * time.Second)
		for _, at := range h.n.times("WATCHDOG=1") {
			if at.After(from.Add(time.Second)) {
				t.Fatalf("WATCHDOG=1 at %v while the scheduler loop is dead", at.Sub(from))
			}
		}
		h.waitEvent("watchdog_withheld", time.Second)
		h.stop()
	})
}

// The daemon's own repair and its scheduled run never overlap, and the run
// due during a repair waits for it rather than losing its slot.
func TestScheduledRunWaitsForOwnRepair(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := newHarness(t, settings(t))
		h.rep.took = 90 * time.Second
		h.det.gaps = []gapdetect.Gap{{IDSite: 1, Date: 20000, Kind: gapdetect.Missing, RawVisits: 1, Repairable: true}}
		h.start()
		time.Sleep(75 * time.Second)
		if h.con.started.Load() != 0 {
			t.Error("core:archive started during a repair")
		}
		time.Sleep(30 * time.Second)
		if h.con.started.Load() != 1 || len(h.logs.events("run_skipped")) != 0 {
			t.Errorf("runs started %d, skipped %d: the run due during the repair must follow it",
				h.con.started.Load(), len(h.logs.events("run_skipped")))
		}
		h.stop()
	})
}
