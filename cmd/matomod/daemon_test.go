package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/exporter-toolkit/web"
	"golang.org/x/crypto/bcrypt"

	"github.com/matomod/matomod/internal/matomotest"
)

func TestMain(m *testing.M) {
	tick = 200 * time.Millisecond
	os.Exit(m.Run())
}

// logBuf collects JSON log records for assertions.
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

func (l *logBuf) records() []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil {
			out = append(out, m)
		}
	}
	return out
}

func (l *logBuf) events(ev string) []map[string]any {
	var out []map[string]any
	for _, r := range l.records() {
		if r["event"] == ev {
			out = append(out, r)
		}
	}
	return out
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, what string, timeout time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if cond() {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatalf("timed out after %v waiting for %s", timeout, what)
}

// running is a daemon started in-process; its console runs are real
// processes of the simulator.
type running struct {
	t      *testing.T
	logs   *logBuf
	notify <-chan string
	cancel context.CancelFunc
	done   chan int
	addr   string
	cfg    string
}

func freePort(t *testing.T) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// writeConfig writes matomod.yml for env e with the simulator as PHP.
func writeConfig(t *testing.T, e *matomotest.Env, extra string) string {
	t.Helper()
	dir := t.TempDir()
	y := fmt.Sprintf(`matomo_dir: %s
php_binary: %s
archive:
  schedule: "@every 1s"
  run_timeout: 30s
  kill_grace: 1s
state_file: %s
stop_timeout: 5s
%s`, e.Dir, matomotest.Simulator(t), filepath.Join(dir, "state.json"), extra)
	if !strings.Contains(extra, "gaps:") {
		y += "gaps:\n  scan_interval: 1s\n"
	}
	p := filepath.Join(dir, "matomod.yml")
	if err := os.WriteFile(p, []byte(y), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func startDaemon(t *testing.T, cfgPath string, webConfig string) *running {
	t.Helper()
	r := &running{t: t, logs: &logBuf{}, notify: listenNotify(t), done: make(chan int, 1), addr: freePort(t), cfg: cfgPath}
	g := &globals{configFile: cfgPath, web: &web.FlagConfig{WebListenAddresses: &[]string{r.addr},
		WebSystemdSocket: new(bool), WebConfigFile: &webConfig}}
	log := slog.New(slog.NewJSONHandler(r.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	r.cancel = cancel
	go func() { r.done <- runDaemon(ctx, g, log) }()
	t.Cleanup(func() {
		cancel()
		select {
		case <-r.done:
		case <-time.After(30 * time.Second):
			t.Error("daemon did not stop")
		}
		if t.Failed() {
			t.Logf("daemon log:\n%s", r.logs.String())
		}
	})
	return r
}

// stop cancels the daemon (as SIGTERM does) and returns its exit code.
func (r *running) stop() int {
	r.cancel()
	select {
	case c := <-r.done:
		r.done <- c
		return c
	case <-time.After(30 * time.Second):
		r.t.Fatal("daemon did not stop within 30s")
		return -1
	}
}

func (r *running) get(path string) (int, string) {
	resp, err := http.Get("http://" + r.addr + path)
	if err != nil {
		return 0, err.Error()
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func (r *running) waitNotify(want string, timeout time.Duration) {
	r.t.Helper()
	deadline := time.After(timeout)
	for {
		select {
		case m := <-r.notify:
			if strings.HasPrefix(m, want) {
				return
			}
		case <-deadline:
			r.t.Fatalf("no %q on NOTIFY_SOCKET within %v", want, timeout)
		}
	}
}

var day = func(d int) time.Time { return time.Now().UTC().Truncate(24*time.Hour).AddDate(0, 0, -d) }

// The daemon against a Matomo with gaps: READY after checks, archive runs
// on schedule, the missing day is repaired, metrics and health are served,
// and SIGTERM ends it cleanly.
func TestDaemonSchedulesScansAndRepairs(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", day(30).Format("2006-01-02"))
	e.SetOption("version_core", matomotest.MatomoVersion)
	for d := 20; d >= 1; d-- {
		e.AddVisits(1, day(d).Add(10*time.Hour), 2)
		if d != 5 && d != 6 {
			e.AddDayArchive(1, day(d).Format("2006-01-02"), 1, day(d-1).Add(time.Hour), 2)
		}
	}
	r := startDaemon(t, writeConfig(t, e, ""), "")
	r.waitNotify("READY=1", 20*time.Second)
	waitFor(t, "an archive run", 20*time.Second, func() bool { return len(r.logs.events("run_finished")) > 0 })
	waitFor(t, "the two missing days repaired", 40*time.Second, func() bool { return len(r.logs.events("repair_finished")) >= 2 })
	if n := e.Count("SELECT COUNT(*) FROM {p}"+"archive_numeric_"+day(5).Format("2006_01")+" WHERE idsite = 1 AND period = 1 AND name = 'done' AND value = 1 AND date1 = ?", day(5).Format("2006-01-02")); n != 1 {
		t.Errorf("day -5 has %d good archives after repair", n)
	}
	// The two days, and the weeks, month and year Matomo rebuilt with them
	// that had gaps of their own.
	if code, body := r.get("/metrics"); code != 200 || !strings.Contains(body, `matomod_archive_runs_total{result="success",role="leader"}`) ||
		!strings.Contains(body, "matomod_leader 1") || !regexp.MustCompile(`matomod_repairs_total\{result="repaired"\} [2-9]`).MatchString(body) {
		t.Errorf("/metrics: %d\n%s", code, grepLines(body, "matomod_archive_runs_total", "matomod_leader", "matomod_repairs_total"))
	}
	if code, _ := r.get("/healthz"); code != 200 {
		t.Errorf("/healthz %d", code)
	}
	if code, body := r.get("/readyz"); code != 200 {
		t.Errorf("/readyz %d %s", code, body)
	}
	if code := r.stop(); code != 0 {
		t.Errorf("exit code %d", code)
	}
	r.waitNotify("STOPPING=1", 5*time.Second)
	if len(r.logs.events("gap_found")) < 2 {
		t.Errorf("gap_found events: %v", r.logs.events("gap_found"))
	}
}

func grepLines(s string, prefixes ...string) string {
	var out []string
	for _, l := range strings.Split(s, "\n") {
		for _, p := range prefixes {
			if strings.HasPrefix(l, p) {
				out = append(out, l)
			}
		}
	}
	return strings.Join(out, "\n")
}

// DB down at start: READY=1 with a waiting STATUS=, not /readyz, retrying,
// no exit; ready once it answers.
func TestDaemonWaitsForDatabase(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-01-01")
	proxy := newTCPProxy(t, "127.0.0.1:3306")
	proxy.setUp(false)
	e.Settings.Host, e.Settings.Port = "127.0.0.1", proxy.port()
	e.SetINI()
	r := startDaemon(t, writeConfig(t, e, ""), "")
	waitFor(t, "not_ready logged", 10*time.Second, func() bool { return len(r.logs.events("not_ready")) >= 2 })
	if code, body := r.get("/readyz"); code != 503 || !strings.Contains(body, "starting") {
		t.Errorf("/readyz while DB down: %d %s", code, body)
	}
	select {
	case c := <-r.done:
		t.Fatalf("daemon exited (%d) while the DB was down", c)
	default:
	}
	// Issue 12: READY=1 waited for the DB and a long outage at boot failed
	// the unit. READY=1 now comes at once; STATUS= says what is awaited.
	r.waitNotify("READY=1", time.Second)
	r.waitNotify("STATUS=waiting for the database", 5*time.Second)
	proxy.setUp(true)
	waitFor(t, "ready", 30*time.Second, func() bool { return len(r.logs.events("ready")) == 1 })
	waitFor(t, "leader", 10*time.Second, func() bool { return len(r.logs.events("leader_acquired")) == 1 })
	// Lost mid-run and back: db_down, leadership dropped, then regained.
	proxy.setUp(false)
	waitFor(t, "db_down", 10*time.Second, func() bool { return len(r.logs.events("db_down")) >= 1 })
	if code, _ := r.get("/readyz"); code != 503 {
		t.Errorf("/readyz with DB lost: %d", code)
	}
	proxy.setUp(true)
	waitFor(t, "db_up and leader again", 20*time.Second, func() bool {
		return len(r.logs.events("db_up")) >= 1 && len(r.logs.events("leader_acquired")) >= 2
	})
}

// A broken config on SIGHUP is logged and the old one stays in force; a
// good one is applied.
func TestDaemonReload(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-01-01")
	e.SetOption("version_core", matomotest.MatomoVersion)
	cfg := writeConfig(t, e, "")
	r := startDaemon(t, cfg, "")
	r.waitNotify("READY=1", 20*time.Second)
	good, _ := os.ReadFile(cfg)
	os.WriteFile(cfg, append(good, []byte("archive_typo: 1\n")...), 0o644)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, "config_reload_failed", 10*time.Second, func() bool { return len(r.logs.events("config_reload_failed")) == 1 })
	if f := r.logs.events("config_reload_failed")[0]; !strings.Contains(fmt.Sprint(f["err"]), "archive_typo") {
		t.Errorf("reload error does not name the key: %v", f)
	}
	r.waitNotify("RELOADING=1", 5*time.Second)
	r.waitNotify("READY=1", 5*time.Second)
	if _, body := r.get("/metrics"); !strings.Contains(body, "matomod_config_last_reload_successful 0") {
		t.Error("reload failure not in metrics")
	}
	os.WriteFile(cfg, good, 0o644)
	syscall.Kill(os.Getpid(), syscall.SIGHUP)
	waitFor(t, "config_reloaded", 10*time.Second, func() bool { return len(r.logs.events("config_reloaded")) == 1 })
	if _, body := r.get("/metrics"); !strings.Contains(body, "matomod_config_last_reload_successful 1") {
		t.Error("reload success not in metrics")
	}
}

// A missing console keeps the daemon not ready with a clear error.
func TestDaemonConsoleMissing(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-01-01")
	cfg := writeConfig(t, e, "console_path: /nonexistent/console\n")
	r := startDaemon(t, cfg, "")
	waitFor(t, "not_ready", 10*time.Second, func() bool { return len(r.logs.events("not_ready")) >= 1 })
	if err := fmt.Sprint(r.logs.events("not_ready")[0]["err"]); !strings.Contains(err, "/nonexistent/console") {
		t.Errorf("error does not name the console: %s", err)
	}
	if code, _ := r.get("/readyz"); code != 503 {
		t.Errorf("/readyz %d", code)
	}
}

// Basic auth from --web.config.file: 401 without, 200 with credentials.
func TestWebConfigBasicAuth(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", "2026-01-01")
	wc := filepath.Join(t.TempDir(), "web.yml")
	hash, err := bcrypt.GenerateFromPassword([]byte("s3cret"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(wc, []byte("basic_auth_users:\n  prometheus: "+string(hash)+"\n"), 0o644)
	r := startDaemon(t, writeConfig(t, e, ""), wc)
	waitFor(t, "server up", 10*time.Second, func() bool { c, _ := r.get("/metrics"); return c != 0 })
	if c, _ := r.get("/metrics"); c != 401 {
		t.Errorf("without credentials: %d", c)
	}
	req, _ := http.NewRequest("GET", "http://"+r.addr+"/metrics", nil)
	req.SetBasicAuth("prometheus", "s3cret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("with credentials: %d", resp.StatusCode)
	}
}

// Issue 13: a restart was a full scan. The scan state is saved beside the
// state file after each scan, so the restarted daemon's first scan is a
// steady (incremental) one.
func TestRestartScansIncrementally(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "UTC", day(30).Format("2006-01-02"))
	e.SetOption("version_core", matomotest.MatomoVersion)
	for d := 10; d >= 2; d-- {
		e.AddVisits(1, day(d).Add(10*time.Hour), 2)
		e.AddDayArchive(1, day(d).Format("2006-01-02"), 1, day(d-1).Add(time.Hour), 2)
	}
	cfg := writeConfig(t, e, "")
	firstScan := func(r *running) map[string]any {
		t.Helper()
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			for _, rec := range r.logs.records() {
				if rec["event"] == "gap_scan_finished" {
					return rec
				}
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Fatal("no gap scan within 30 s")
		return nil
	}
	r := startDaemon(t, cfg, "")
	if rec := firstScan(r); rec["full"] != true {
		t.Fatalf("first scan of a new daemon: %v", rec)
	}
	if c := r.stop(); c != exitOK {
		t.Fatalf("exit %d", c)
	}
	if _, err := os.Stat(filepath.Join(filepath.Dir(cfg), "gapscan.json")); err != nil {
		t.Fatalf("no scan state beside the state file: %v", err)
	}
	r = startDaemon(t, cfg, "")
	if rec := firstScan(r); rec["full"] != false {
		t.Errorf("first scan after a restart was full: %v", rec)
	}
}
