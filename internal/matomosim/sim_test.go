package main

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

const testNow = "2026-11-27T12:09:33Z"

// console runs the simulator binary like matomod runs PHP.
func console(t *testing.T, e *matomotest.Env, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(matomotest.Simulator(t), append([]string{"-d", "memory_limit=1G", filepath.Join(e.Dir, "console")}, args...)...)
	cmd.Dir = e.Dir
	cmd.Env = append(append(os.Environ(), "MATOMOSIM_NOW="+testNow), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

func TestBacklogOfSixtyDays(t *testing.T) {
	e := matomotest.New(t)
	start := matomo.NewDate(2026, 9, 28)
	for id, tz := range map[int]string{1: "UTC", 2: "America/New_York", 3: "Asia/Kolkata"} {
		e.AddSite(id, tz, "2026-09-01")
		loc, _ := matomo.LoadLocation(tz)
		for i := 0; i < 60; i++ {
			from, _ := matomo.DayBounds(loc, start.AddDays(i))
			e.AddVisits(id, from.Add(10*time.Hour), 1+i%3)
		}
	}
	_, _, code := console(t, e, nil, "core:invalidate-report-data", "--sites=1,2,3", "--dates=2026-09-28,2026-11-26", "--periods=day")
	if code != 0 {
		t.Fatalf("invalidate: exit %d", code)
	}
	t0 := time.Now()
	out, errOut, code := console(t, e, nil, "core:archive", "--url=http://localhost/", "--no-ansi")
	t.Logf("archiving 3 sites × 60 days took %v", time.Since(t0))
	if code != 0 || errOut != "" {
		t.Fatalf("core:archive: exit %d\n%s\n%s", code, out, errOut)
	}
	if n := e.Count("SELECT COUNT(*) FROM {p}archive_invalidations"); n != 0 {
		t.Errorf("%d queue rows left", n)
	}
	if n := strings.Count(out, "period = day,"); n != 180 {
		t.Errorf("%d day archives printed, want 180", n)
	}
	st := &store{db: e.DB, prefix: e.Prefix}
	for id := 1; id <= 3; id++ {
		for i := 0; i < 60; i++ {
			archs, err := st.newestAll(context.Background(), id, periodOf(matomo.PeriodDay, start.AddDays(i)))
			a, ok := archs["done"]
			if err != nil || !ok || a.value != matomo.DoneOK || a.nb != int64(1+i%3) {
				t.Fatalf("site %d day %s: %+v %v %v", id, start.AddDays(i), a, ok, err)
			}
		}
	}
	archs, err := st.newestAll(context.Background(), 2, periodOf(matomo.PeriodYear, start))
	y, ok := archs["done"]
	if err != nil || !ok || y.nb != 120 {
		t.Errorf("site 2 year: %+v %v %v, want 120 visits", y, ok, err)
	}
}

func TestKnobExitAndNow(t *testing.T) {
	e := matomotest.New(t)
	out, _, code := console(t, e, []string{"MATOMOSIM_EXIT=3"}, "core:version")
	if code != 3 || out != "5.0.2\n" {
		t.Errorf("MATOMOSIM_EXIT=3: exit %d, stdout %q", code, out)
	}
	_, errOut, code := console(t, e, []string{"MATOMOSIM_NOW=yesterday"}, "core:version")
	if code != 2 || !strings.Contains(errOut, "MATOMOSIM_NOW") {
		t.Errorf("bad MATOMOSIM_NOW: exit %d, stderr %q", code, errOut)
	}
	out, _, _ = console(t, e, []string{"MATOMOSIM_NOW=2026-01-02T03:04:05Z"}, "core:archive", "--no-ansi")
	if !strings.Contains(out, "[03:04:05] ") {
		t.Errorf("log lines do not use MATOMOSIM_NOW:\n%s", out)
	}
	if v := optionInt(t, e, "LastCompletedFullArchiving"); v < 1767323045 || v > 1767323045+60 {
		t.Errorf("LastCompletedFullArchiving = %d, want about 1767323045", v)
	}
}

func optionInt(t *testing.T, e *matomotest.Env, name string) int64 {
	t.Helper()
	var v string
	if err := e.DB.QueryRow("SELECT option_value FROM "+e.Prefix+"option WHERE option_name = ?", name).Scan(&v); err != nil {
		t.Fatalf("option %s: %v", name, err)
	}
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

func TestKnobGarbageAndHugeLine(t *testing.T) {
	e := matomotest.New(t)
	out, errOut, code := console(t, e, []string{"MATOMOSIM_GARBAGE=1", "MATOMOSIM_HUGE_LINE=100000"}, "core:archive", "--no-ansi")
	if code != 0 {
		t.Fatalf("exit %d", code)
	}
	if utf8.ValidString(out) || utf8.ValidString(errOut) {
		t.Error("MATOMOSIM_GARBAGE=1 printed only valid UTF-8")
	}
	if !strings.Contains(out, "\n"+strings.Repeat("x", 100000)+"\n") || strings.Contains(out, strings.Repeat("x", 100001)) {
		t.Error("no line of exactly 100000 bytes")
	}
	if !strings.Contains(out, "Done archiving!") {
		t.Errorf("normal output missing:\n%.2000s", out)
	}
}

func TestKnobRunlog(t *testing.T) {
	e := matomotest.New(t)
	for i := 0; i < 2; i++ {
		if _, _, code := console(t, e, []string{"MATOMOSIM_RUNLOG=1"}, "core:archive"); code != 0 {
			t.Fatalf("exit %d", code)
		}
	}
	var n, open int
	e.DB.QueryRow("SELECT COUNT(*), SUM(ended IS NULL) FROM matomosim_runs").Scan(&n, &open)
	if n != 2 || open != 0 {
		t.Errorf("matomosim_runs: %d rows, %d without end", n, open)
	}
	var overlap int
	e.DB.QueryRow("SELECT COUNT(*) FROM matomosim_runs a JOIN matomosim_runs b ON a.id < b.id AND a.ended > b.started").Scan(&overlap)
	if overlap != 0 {
		t.Errorf("%d sequential runs recorded as overlapping", overlap)
	}
}

// startHanging starts core:archive in its own process group with
// MATOMOSIM_HANG and returns once it has printed line.
func startHanging(t *testing.T, e *matomotest.Env, line string, env ...string) (*exec.Cmd, <-chan string) {
	t.Helper()
	cmd := exec.Command(matomotest.Simulator(t), filepath.Join(e.Dir, "console"), "core:archive", "--no-ansi")
	cmd.Dir = e.Dir
	cmd.Env = append(append(os.Environ(), "MATOMOSIM_NOW="+testNow, "MATOMOSIM_HANG=60s"), env...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	pipe, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL) })
	seen := make(chan struct{})
	rest := make(chan string, 1)
	go func() {
		var b strings.Builder
		sc := bufio.NewScanner(pipe)
		found := false
		for sc.Scan() {
			b.WriteString(sc.Text() + "\n")
			if !found && strings.Contains(sc.Text(), line) {
				found = true
				close(seen)
			}
		}
		if !found {
			close(seen)
		}
		rest <- b.String()
	}()
	<-seen
	return cmd, rest
}

func TestKnobHangEndsOnSIGTERM(t *testing.T) {
	e := matomotest.New(t)
	cmd, rest := startHanging(t, e, "Starting Matomo reports archiving...")
	cmd.Process.Signal(syscall.SIGTERM)
	err := cmd.Wait()
	out := <-rest
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	if err == nil || !ok || !ws.Signaled() || ws.Signal() != syscall.SIGTERM {
		t.Errorf("want death by SIGTERM, got %v", err)
	}
	if strings.Contains(out, "Done archiving!") {
		t.Error("a hanging run finished before the signal")
	}
}

func TestKnobIgnoreTerm(t *testing.T) {
	e := matomotest.New(t)
	cmd, _ := startHanging(t, e, "Starting Matomo reports archiving...", "MATOMOSIM_IGNORE_TERM=1")
	status, err := os.ReadFile("/proc/" + strconv.Itoa(cmd.Process.Pid) + "/status")
	if err != nil {
		t.Skip("no /proc")
	}
	for _, l := range strings.Split(string(status), "\n") {
		if v, ok := strings.CutPrefix(l, "SigIgn:"); ok {
			mask, _ := strconv.ParseUint(strings.TrimSpace(v), 16, 64)
			if mask&(1<<(uint(syscall.SIGTERM)-1)) == 0 {
				t.Errorf("SIGTERM not ignored: SigIgn %s", strings.TrimSpace(v))
			}
		}
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
}

func TestKnobSpawnChild(t *testing.T) {
	e := matomotest.New(t)
	pidfile := filepath.Join(t.TempDir(), "child.pid")
	cmd, _ := startHanging(t, e, "Spawned a climulti:request child", "MATOMOSIM_SPAWN_CHILD="+pidfile)
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	child, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	pgid, err := syscall.Getpgid(child)
	if err != nil || pgid != cmd.Process.Pid {
		t.Fatalf("child %d: process group %d (%v), want the archiver's %d", child, pgid, err, cmd.Process.Pid)
	}
	cmdline, _ := os.ReadFile("/proc/" + strconv.Itoa(child) + "/cmdline")
	if !bytes.Contains(cmdline, []byte("climulti:request")) {
		t.Errorf("child command line %q", cmdline)
	}
	// Killing the group takes the child along.
	syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
	cmd.Wait()
	for deadline := time.Now().Add(10 * time.Second); alive(child); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("child %d survived the group kill", child)
		}
	}
}

// alive reports a live (not zombie) process.
func alive(pid int) bool {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b[bytes.LastIndexByte(b, ')')+1:]))
	return len(f) > 0 && f[0] != "Z"
}

func TestSpawnedChildEndsWithNormalRun(t *testing.T) {
	e := matomotest.New(t)
	pidfile := filepath.Join(t.TempDir(), "child.pid")
	if _, _, code := console(t, e, []string{"MATOMOSIM_SPAWN_CHILD=" + pidfile}, "core:archive"); code != 0 {
		t.Fatalf("exit %d", code)
	}
	b, err := os.ReadFile(pidfile)
	if err != nil {
		t.Fatal(err)
	}
	if pid, _ := strconv.Atoi(strings.TrimSpace(string(b))); alive(pid) {
		t.Errorf("child %d outlived a normal run", pid)
	}
}

// The gap matomod exists for: a past day whose archive is gone is not
// rebuilt by core:archive, not even when its month is rebuilt (the week
// holding it still has a done = 1 archive), until someone invalidates it.
func TestDeletedDayStaysMissingUntilInvalidated(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(1, "Europe/Berlin", "2026-10-01")
	now, _ := time.Parse(time.RFC3339, testNow)
	e.AddVisits(1, now.Add(-time.Hour), 2)
	e.AddVisits(1, now.Add(-24*time.Hour), 3)
	e.AddVisits(1, time.Date(2026, 11, 20, 12, 0, 0, 0, time.UTC), 4)
	st := &store{db: e.DB, prefix: e.Prefix}
	day := func(d string) (archive, bool) {
		p, _ := matomo.ParseDate(d)
		archs, err := st.newestAll(context.Background(), 1, periodOf(matomo.PeriodDay, p))
		if err != nil {
			t.Fatal(err)
		}
		a, ok := archs["done"]
		return a, ok
	}
	out, _, code := console(t, e, nil, "core:archive", "--no-ansi")
	// Printed: today, yesterday, their week, month, year. The old day's
	// week (and the day) are built silently as parts of the month.
	if code != 0 || strings.Count(out, "Archived website id 1") != 5 {
		t.Fatalf("first run: exit %d\n%s", code, out)
	}
	if a, ok := day("2026-11-20"); !ok || a.nb != 4 || strings.Contains(out, "2026-11-20") {
		t.Fatalf("old day: %+v %v (want built silently)", a, ok)
	}
	e.Exec("DELETE FROM {p}archive_numeric_2026_11 WHERE period = 1 AND date1 = '2026-11-20'")
	later := []string{"MATOMOSIM_NOW=2026-11-27T13:00:00Z"} // today's archive is outdated: month rebuilt
	out, _, _ = console(t, e, later, "core:archive", "--no-ansi")
	if _, ok := day("2026-11-20"); ok || !strings.Contains(out, "period = month, date = 2026-11-01, segment = '', 9 visits found") {
		t.Fatalf("deleted day rebuilt (or month not rebuilt from the stale week):\n%s", out)
	}
	_, _, code = console(t, e, later, "core:invalidate-report-data", "--sites=1", "--dates=2026-11-20", "--periods=day")
	if code != 0 || e.Count("SELECT COUNT(*) FROM {p}archive_invalidations WHERE status = 0") != 4 {
		t.Fatalf("invalidate: exit %d, %d rows", code, e.Count("SELECT COUNT(*) FROM {p}archive_invalidations"))
	}
	out, _, _ = console(t, e, later, "core:archive", "--no-ansi")
	if a, ok := day("2026-11-20"); !ok || a.nb != 4 || !strings.Contains(out, "period = day, date = 2026-11-20, segment = '', 4 visits found") {
		t.Fatalf("after invalidation: %+v %v\n%s", a, ok, out)
	}
	if n := e.Count("SELECT COUNT(*) FROM {p}archive_invalidations"); n != 0 {
		t.Errorf("%d queue rows left", n)
	}
	// A queue row written by someone else (no done = 4 anywhere) is worked too.
	e.AddVisits(1, time.Date(2026, 11, 10, 12, 0, 0, 0, time.UTC), 1)
	e.AddInvalidation(1, matomo.PeriodDay, "2026-11-10", "2026-11-10", now, 0)
	out, _, _ = console(t, e, later, "core:archive", "--no-ansi")
	if a, ok := day("2026-11-10"); !ok || a.nb != 1 || !strings.Contains(out, "date = 2026-11-10") {
		t.Errorf("queued day: %+v %v\n%s", a, ok, out)
	}
}
