package main

import (
	"bytes"
	"fmt"
	"log"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

// Issue 12, end to end: SIGHUP during a long run (a real simulator
// process). WATCHDOG=1 keeps coming at half the interval, the run is not
// cancelled although it outlasts stop_timeout, the reload is applied.
func TestReloadDuringRunKeepsRunAndWatchdog(t *testing.T) {
	e := newSite(t)
	t.Setenv("WATCHDOG_USEC", "1000000")
	t.Setenv("WATCHDOG_PID", "")
	cfg := writeConfig(t, e, knobs("MATOMOSIM_HANG=6s")+noRepair)
	cfg = rewrite(t, cfg, "stop_timeout: 5s", "stop_timeout: 1s")
	r := startDaemon(t, cfg, "")
	waitFor(t, "a run in progress", 20*time.Second, func() bool { return len(r.logs.events("run_started")) >= 1 })
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	last, worst := time.Now(), time.Duration(0)
	deadline := time.Now().Add(8 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case m := <-r.notify:
			if m == "WATCHDOG=1" {
				worst = max(worst, time.Since(last))
				last = time.Now()
			}
		case <-time.After(100 * time.Millisecond):
		}
	}
	worst = max(worst, time.Since(last))
	if worst > 900*time.Millisecond {
		t.Errorf("WATCHDOG=1 silent for %v after SIGHUP (WATCHDOG_USEC 1s)", worst)
	}
	waitFor(t, "the run to end", 10*time.Second, func() bool { return len(r.logs.events("run_finished")) >= 1 })
	if n := len(r.logs.events("config_reloaded")); n != 1 {
		t.Errorf("config_reloaded %d times", n)
	}
	if ev := append(r.logs.events("run_failed"), r.logs.events("run_stopped")...); len(ev) != 0 {
		t.Errorf("the reload stopped the run: %v", ev)
	}
}

// Issue 12: a reload threw the gap detector away, so the next scan was a
// full one.
func TestReloadKeepsDetectorState(t *testing.T) {
	e := newSite(t)
	e.AddVisits(1, day(3).Add(10*time.Hour), 2)
	cfg := writeConfig(t, e, noRepair)
	cfg = rewrite(t, cfg, `schedule: "@every 1s"`, `schedule: "@daily"`)
	r := startDaemon(t, cfg, "")
	waitFor(t, "a full scan", 20*time.Second, func() bool { return len(r.logs.events("gap_scan_finished")) >= 1 })
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, "config_reloaded", 10*time.Second, func() bool { return len(r.logs.events("config_reloaded")) == 1 })
	n := len(r.logs.events("gap_scan_finished"))
	waitFor(t, "a scan after the reload", 10*time.Second, func() bool { return len(r.logs.events("gap_scan_finished")) > n })
	if ev := r.logs.events("gap_scan_finished"); ev[0]["full"] != true || ev[len(ev)-1]["full"] != false {
		t.Errorf("scans full: first %v, after reload %v; want true, false", ev[0]["full"], ev[len(ev)-1]["full"])
	}
}

// Issue 12: `run` exited 0 when its HTTP listener failed, so
// Restart=on-failure never restarted it.
func TestRunFailsWhenHTTPCannotListen(t *testing.T) {
	e := newSite(t)
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer busy.Close()
	for name, web := range map[string][]string{
		"address in use":  {"--web.listen-address=" + busy.Addr().String()},
		"bad web config":  {"--web.listen-address=127.0.0.1:0", "--web.config.file=/nonexistent/web.yml"},
		"bad listen addr": {"--web.listen-address=127.0.0.1:99999"},
	} {
		t.Run(name, func(t *testing.T) {
			done := make(chan int, 1)
			var out, errb bytes.Buffer
			go func() {
				done <- run(append([]string{"--config.file=" + writeConfig(t, e, noRepair), "--log.format=json"}, append(web, "run")...), &out, &errb)
			}()
			select {
			case code := <-done:
				if code != exitError || !strings.Contains(errb.String(), "http_failed") {
					t.Errorf("exit %d\n%s", code, errb.String())
				}
			case <-time.After(30 * time.Second):
				syscall.Kill(os.Getpid(), syscall.SIGTERM)
				t.Fatal("run kept running without its HTTP listener")
			}
		})
	}
}

// Issue 12: manual runs took no lock; `matomod archive` while the daemon
// archives ran a second core:archive beside it. Now it names the holder,
// or waits with --lock.wait and runs after.
func TestManualArchiveWaitsForDaemonRun(t *testing.T) {
	e := newSite(t)
	cfg := writeConfig(t, e, knobs("MATOMOSIM_HANG=3s", "MATOMOSIM_RUNLOG=1")+noRepair)
	r := startDaemon(t, cfg, "")
	waitFor(t, "a run in progress", 20*time.Second, func() bool { return len(r.logs.events("run_started")) >= 1 })
	code, out, _ := cli(t, "--config.file="+cfg, "archive")
	if code != exitSkipped || !strings.Contains(out, "held by another connection: connection") || !strings.Contains(out, "--lock.wait") {
		t.Errorf("archive while the daemon archives (%d): %s", code, out)
	}
	code, out, _ = cli(t, "--config.file="+cfg, "archive", "--lock.wait=20s")
	if code != exitOK {
		t.Errorf("archive --lock.wait (%d): %s", code, out)
	}
	if len(r.logs.events("run_skipped")) == 0 {
		t.Error("the daemon ran while `matomod archive` held the lock")
	}
	r.stop()
	// No two core:archive runs overlapped (the simulator logs each).
	if n := e.Count("SELECT COUNT(*) FROM matomosim_runs a JOIN matomosim_runs b ON a.id < b.id AND a.started < COALESCE(b.ended, UTC_TIMESTAMP(6)) AND b.started < COALESCE(a.ended, UTC_TIMESTAMP(6))"); n != 0 {
		t.Errorf("%d overlapping core:archive runs", n)
	}
}

// Issue 12: two concurrent repairs each reported the other's days as
// failed. The second waits for the first or says who holds the lock.
func TestConcurrentRepairsTakeTurns(t *testing.T) {
	e, cfg := gapEnv(t)
	db, err := matomo.Open(e.Settings, matomo.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	l, err := db.WaitLock(t.Context(), db.ArchiveLockName(), 0)
	if err != nil {
		t.Fatal(err)
	}
	code, _, errOut := cli(t, "--config.file="+cfg, "repair")
	if code != exitSkipped || !strings.Contains(errOut, "held by another connection: connection") {
		t.Errorf("repair while another holds the archive lock (%d): %s", code, errOut)
	}
	if n := e.Count("SELECT COUNT(*) FROM {p}archive_invalidations"); n != 0 {
		t.Errorf("the refused repair invalidated %d rows", n)
	}
	go func() {
		time.Sleep(time.Second)
		l.Release()
	}()
	code, out, errOut := cli(t, "--config.file="+cfg, "repair", "--lock.wait=30s")
	if code != exitOK || !strings.Contains(out, "repaired: 1 day(s)") {
		t.Errorf("repair --lock.wait (%d): %s %s", code, out, errOut)
	}
}

// Issue 15: SIGTERM stopped a worker's runs at once. They finish within
// stop_timeout, and the worker exits 0; they count as role="worker".
func TestWorkerStopLetsRunsFinish(t *testing.T) {
	e := newSite(t)
	for d := 1; d <= 3; d++ {
		e.AddVisits(1, day(d).Add(10*time.Hour), 2)
		e.AddInvalidation(1, 1, day(d).Format("2006-01-02"), day(d).Format("2006-01-02"), time.Now().Add(-time.Hour), 0)
	}
	cfg := writeConfig(t, e, knobs("MATOMOSIM_HANG=3s")+noRepair+"role: worker\nworker:\n  concurrency: 2\n  interval: 1s\n")
	r := startDaemon(t, cfg, "")
	waitFor(t, "two worker runs", 20*time.Second, func() bool { return len(r.logs.events("run_started")) >= 2 })
	if code := r.stop(); code != exitOK {
		t.Errorf("exit code %d", code)
	}
	fin := r.logs.events("run_finished")
	if len(fin) < 2 {
		t.Fatalf("worker runs finished: %d", len(fin))
	}
	for _, f := range fin {
		if f["outcome"] != "success" {
			t.Errorf("worker run stopped by SIGTERM: %v", f)
		}
	}
}

// Issue 11: `check` passed with php_binary: /bin/false and with a schedule
// and time zone that `run` refuses.
func TestCheckValidatesLikeRun(t *testing.T) {
	e := newSite(t)
	cases := []struct{ name, old, new, want string }{
		{"php", "php_binary: " + matomotest.Simulator(t), "php_binary: /bin/false", "core:version exited 1"},
		{"schedule", `schedule: "@every 1s"`, `schedule: '61 * * * *'`, "archive.schedule"},
		{"timezone", `schedule: "@every 1s"`, "schedule: \"@hourly\"\n  timezone: Mars/Base", "archive.timezone"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			cfg := rewrite(t, writeConfig(t, e, ""), tc.old, tc.new)
			for _, args := range [][]string{{"check"}, {"--config.check"}} {
				code, out, _ := cli(t, append([]string{"--config.file=" + cfg}, args...)...)
				if code == exitOK || !strings.Contains(out, tc.want) {
					t.Errorf("%v (%d):\n%s", args, code, out)
				}
			}
			if tc.name != "php" {
				r := startDaemon(t, cfg, "")
				select {
				case code := <-r.done:
					r.done <- code
					if code != exitError {
						t.Errorf("run: exit %d", code)
					}
				case <-time.After(10 * time.Second):
					t.Error("run accepted what check refused")
				}
			}
		})
	}
}

// Issue 12: a reload accepted a config whose database does not answer and
// dropped the working one.
func TestReloadRefusesUnreachableDatabase(t *testing.T) {
	e := newSite(t)
	cfg := writeConfig(t, e, noRepair)
	r := startDaemon(t, cfg, "")
	waitFor(t, "leader", 20*time.Second, func() bool { return len(r.logs.events("leader_acquired")) == 1 })
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := dead.Addr().(*net.TCPAddr).Port
	dead.Close()
	good, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(good, []byte(fmt.Sprintf("database:\n  host: 127.0.0.1\n  port: %d\n", port))...), 0o644)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, "config_reload_failed", 20*time.Second, func() bool { return len(r.logs.events("config_reload_failed")) == 1 })
	if err := fmt.Sprint(r.logs.events("config_reload_failed")[0]["err"]); !strings.Contains(err, "does not answer") {
		t.Errorf("reload error: %s", err)
	}
	n := len(r.logs.events("run_finished"))
	waitFor(t, "runs going on with the old database", 10*time.Second, func() bool { return len(r.logs.events("run_finished")) > n })
	if len(r.logs.events("leader_lost"))+len(r.logs.events("db_down")) != 0 {
		t.Error("the refused reload cost leadership or the database")
	}
}

// Issue 12: the MySQL driver's own lines ("[mysql] … unexpected EOF")
// bypassed the log format.
func TestMySQLDriverLinesUseTheLogFormat(t *testing.T) {
	t.Cleanup(func() { mysql.SetLogger(log.New(os.Stderr, "[mysql] ", log.Ldate|log.Ltime|log.Lshortfile)) })
	// A "server" that hangs up during the handshake: the driver logs it.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	e := matomotest.New(t)
	e.Settings.Host, e.Settings.Port = "127.0.0.1", ln.Addr().(*net.TCPAddr).Port
	e.SetINI()
	code, _, errOut := cli(t, "--config.file="+writeConfig(t, e, ""), "--log.format=json", "gaps")
	if code != exitError {
		t.Errorf("gaps against a server that hangs up: exit %d", code)
	}
	var driver []string
	for _, l := range strings.Split(errOut, "\n") {
		if strings.Contains(l, "EOF") && !strings.Contains(l, `"level"`) {
			t.Errorf("driver line outside the log format: %q", l)
		}
		if strings.Contains(l, `"event":"mysql_driver"`) {
			driver = append(driver, l)
		}
	}
	if len(driver) == 0 {
		t.Errorf("no mysql_driver record in:\n%s", errOut)
	}
}
