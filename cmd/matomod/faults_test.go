package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomotest"
)

// knobs passes simulator knobs through php_cli_options, the way any PHP
// option reaches the console.
func knobs(kv ...string) string {
	var b strings.Builder
	b.WriteString("php_cli_options: [")
	for i, k := range kv {
		if i > 0 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "\"-d\", %q", k)
	}
	b.WriteString("]\n")
	return b.String()
}

func newSite(t *testing.T) *matomotest.Env {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-01-01")
	e.SetOption("version_core", matomotest.MatomoVersion)
	return e
}

func TestDaemonConsoleFailsAndRetries(t *testing.T) {
	e := newSite(t)
	cfg := writeConfig(t, e, knobs("MATOMOSIM_EXIT=1")+noRepair)
	// Retries back off from 1s; the 1s schedule drops most of them, which
	// is the rule: a retry never runs into the next scheduled run.
	r := startDaemon(t, cfg, "")
	waitFor(t, "two failed runs", 20*time.Second, func() bool { return len(r.logs.events("run_failed")) >= 2 })
	f := r.logs.events("run_failed")[0]
	if f["exit_code"] != float64(1) || f["run_id"] == "" {
		t.Errorf("run_failed record: %v", f)
	}
	if _, body := r.get("/metrics"); !strings.Contains(body, `matomod_archive_runs_total{result="failure",role="leader"}`) ||
		!strings.Contains(body, "matomod_archive_last_exit_code 1") {
		t.Errorf("metrics:\n%s", grepLines(body, "matomod_archive_runs_total", "matomod_archive_last_exit_code"))
	}
}

// A console that hangs past run_timeout and ignores SIGTERM: the group is
// killed after kill_grace, the run counts as a timeout, and the child it
// spawned in its group (like climulti:request) is gone too.
func TestDaemonRunTimeoutKillsGroup(t *testing.T) {
	e := newSite(t)
	pidfile := filepath.Join(t.TempDir(), "child.pid")
	cfg := writeConfig(t, e, knobs("MATOMOSIM_HANG=60s", "MATOMOSIM_IGNORE_TERM=1", "MATOMOSIM_SPAWN_CHILD="+pidfile)+
		noRepair)
	cfg = rewrite(t, cfg, "run_timeout: 30s", "run_timeout: 1s")
	r := startDaemon(t, cfg, "")
	waitFor(t, "run_timeout", 20*time.Second, func() bool { return len(r.logs.events("run_timeout")) >= 1 })
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatalf("the simulator did not spawn its child: %v", err)
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	waitFor(t, "the spawned child to be gone", 10*time.Second, func() bool { return !processAlive(pid) })
	if _, body := r.get("/metrics"); !strings.Contains(body, `matomod_archive_runs_total{result="timeout",role="leader"} 1`) {
		t.Errorf("metrics:\n%s", grepLines(body, "matomod_archive_runs_total"))
	}
}

// processAlive: a zombie (state Z) counts as gone.
func processAlive(pid int) bool {
	if pid <= 0 || syscall.Kill(pid, 0) != nil {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return len(f) > 2 && f[2] != "Z"
}

func rewrite(t *testing.T, path, old, new string) string {
	t.Helper()
	b, _ := os.ReadFile(path)
	if !strings.Contains(string(b), old) {
		t.Fatalf("%s has no %q", path, old)
	}
	os.WriteFile(path, []byte(strings.Replace(string(b), old, new, 1)), 0o644)
	return path
}

// Garbage and a 1 MiB line in the output do not break the run or the log.
func TestDaemonSurvivesGarbageOutput(t *testing.T) {
	e := newSite(t)
	cfg := writeConfig(t, e, knobs("MATOMOSIM_GARBAGE=1", "MATOMOSIM_HUGE_LINE=1048576")+noRepair)
	r := startDaemon(t, cfg, "")
	waitFor(t, "a finished run", 20*time.Second, func() bool { return len(r.logs.events("run_finished")) >= 1 })
	truncated := false
	for _, rec := range r.logs.events("console_output") {
		if rec["truncated"] == true {
			truncated = true
			if n := len(fmt.Sprint(rec["msg"])); n > 70*1024 {
				t.Errorf("a logged line is %d bytes", n)
			}
		}
	}
	if !truncated {
		t.Error("the 1 MiB line was not logged as truncated")
	}
}

// SIGTERM during a run: the run may finish until stop_timeout, then it is
// stopped as on timeout; the daemon exits 0 and saves its state.
func TestDaemonStopDuringRun(t *testing.T) {
	e := newSite(t)
	cfg := writeConfig(t, e, knobs("MATOMOSIM_HANG=60s")+noRepair)
	cfg = rewrite(t, cfg, "stop_timeout: 5s", "stop_timeout: 1s")
	r := startDaemon(t, cfg, "")
	waitFor(t, "a run in progress", 20*time.Second, func() bool { return len(r.logs.events("run_started")) >= 1 })
	time.Sleep(200 * time.Millisecond)
	start := time.Now()
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d", code)
	}
	if d := time.Since(start); d > 10*time.Second {
		t.Errorf("stopping took %v with stop_timeout 1s and kill_grace 1s", d)
	}
	if len(r.logs.events("run_failed"))+len(r.logs.events("run_timeout")) == 0 {
		t.Error("the stopped run was not reported")
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(cfg), "state.json")); err != nil {
		t.Errorf("state not saved: %v", err)
	}
}

// A corrupt state file is reported and treated as empty, never fatal.
func TestDaemonCorruptStateFile(t *testing.T) {
	e := newSite(t)
	cfg := writeConfig(t, e, noRepair)
	os.WriteFile(filepath.Join(filepath.Dir(cfg), "state.json"), []byte("{not json"), 0o600)
	r := startDaemon(t, cfg, "")
	waitFor(t, "a finished run", 20*time.Second, func() bool { return len(r.logs.events("run_finished")) >= 1 })
	if len(r.logs.events("state_unreadable")) == 0 {
		t.Error("corrupt state file not reported")
	}
}

// Maintenance mode pauses runs (logged once, counted, /readyz 503) and
// archiving resumes by itself when it clears.
func TestDaemonPausesInMaintenanceMode(t *testing.T) {
	e := newSite(t)
	e.SetINI("[General]", "maintenance_mode = 1")
	r := startDaemon(t, writeConfig(t, e, ""), "")
	waitFor(t, "paused", 20*time.Second, func() bool { return len(r.logs.events("paused")) == 1 })
	waitFor(t, "a skipped run", 20*time.Second, func() bool { return len(r.logs.events("run_skipped")) >= 2 })
	if len(r.logs.events("paused")) != 1 {
		t.Errorf("paused logged %d times", len(r.logs.events("paused")))
	}
	if code, body := r.get("/readyz"); code != 503 || !strings.Contains(body, "maintenance_mode") {
		t.Errorf("/readyz %d %s", code, body)
	}
	if _, body := r.get("/metrics"); !strings.Contains(body, `matomod_paused{reason="maintenance_mode"} 1`) ||
		strings.Contains(body, `matomod_archive_runs_total{result="skipped_paused",role="leader"} 0`) {
		t.Errorf("metrics:\n%s", grepLines(body, "matomod_paused", "matomod_archive_runs_total"))
	}
	if len(r.logs.events("run_started")) != 0 {
		t.Error("an archive ran in maintenance mode")
	}
	e.SetINI()
	waitFor(t, "resumed and a run", 20*time.Second, func() bool {
		return len(r.logs.events("resumed")) == 1 && len(r.logs.events("run_finished")) >= 1
	})
}

// A pending core:update (version_core older than core/Version.php) pauses.
func TestDaemonPausesForPendingUpdate(t *testing.T) {
	e := newSite(t)
	e.SetOption("version_core", "4.16.0")
	r := startDaemon(t, writeConfig(t, e, ""), "")
	waitFor(t, "paused", 20*time.Second, func() bool { return len(r.logs.events("paused")) == 1 })
	if p := r.logs.events("paused")[0]; p["reason"] != "update_pending" {
		t.Errorf("paused record %v", p)
	}
}

const noRepair = "gaps:\n  scan_interval: 1s\n  auto_repair: false\n"
