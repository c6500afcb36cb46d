package archiver

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func TestRunLogsStartOutputAndFinish(t *testing.T) {
	f := loadFixture(t, fixturesDir(t), "d_archive_db_stopped")
	c, sink := helperConsole(t, "fixture", fixtureEnv+"="+f.base)
	r := c.Run(t.Context(), RunOptions{RunID: "run-7"}, f.args...)
	if r.Outcome != OutcomeFailure || r.ExitCode != 255 || r.RunID != "run-7" {
		t.Fatalf("outcome %s exit %d run id %q, want failure 255 run-7", r.Outcome, r.ExitCode, r.RunID)
	}
	if want := c.Argv(f.args...); !slices.Equal(r.Argv, want) {
		t.Errorf("argv %q, want %q", r.Argv, want)
	}
	for _, rec := range sink.records() {
		if rec.str("run_id") != "run-7" {
			t.Errorf("record without run_id: %v", rec)
		}
	}
	if s := sink.events("console_started"); len(s) != 1 || fmt.Sprint(s[0]["argv"]) != fmt.Sprint(toAny(r.Argv)) {
		t.Errorf("console_started records %v", s)
	}
	fin := sink.events("console_finished")
	if len(fin) != 1 || fin[0].str("level") != "ERROR" || fin[0]["exit_code"] != 255.0 || fin[0].str("outcome") != "failure" ||
		!strings.Contains(fin[0].str("err"), "Connection refused") {
		t.Errorf("console_finished records %v", fin)
	}
	var errLines, stderrWarn int
	for _, o := range sink.events("console_output") {
		switch {
		case o.str("stream") == "stdout" && o.str("level") == "ERROR" && strings.Contains(o.str("msg"), "Uncaught exception"):
			errLines++
		case o.str("stream") == "stderr" && o.str("level") == "WARN":
			stderrWarn++
		default:
			t.Errorf("unexpected output record %v", o)
		}
	}
	if errLines != 1 || stderrWarn != 5 {
		t.Errorf("%d error lines on stdout and %d warnings on stderr, want 1 and 5", errLines, stderrWarn)
	}
}

func toAny(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

func TestRunEnvironmentArgvAndDir(t *testing.T) {
	t.Setenv("ARCHIVER_TEST_SECRET", "hunter2")
	t.Setenv("HOME", "/home/matomo")
	c, _ := helperConsole(t, "args", "ARCHIVER_TEST_KNOB=1", "LANG=de_DE.UTF-8")
	c.PHPOptions = []string{"-d", "memory_limit=1G"}
	r := c.Run(t.Context(), RunOptions{}, "test:args", "--x=a b")
	if r.Outcome != OutcomeSuccess {
		t.Fatalf("outcome %s: %v", r.Outcome, r.Err)
	}
	var args, env []string
	cwd := ""
	for _, l := range r.Tail {
		switch {
		case strings.HasPrefix(l, "arg:"):
			args = append(args, l[4:])
		case strings.HasPrefix(l, "env:"):
			env = append(env, l[4:])
		case strings.HasPrefix(l, "cwd:"):
			cwd = l[4:]
		}
	}
	if want := []string{"-d", "memory_limit=1G", c.ConsolePath, "test:args", "--x=a b"}; !slices.Equal(args, want) {
		t.Errorf("child argv %q, want %q", args, want)
	}
	if cwd != c.Dir {
		t.Errorf("child cwd %q, want %q", cwd, c.Dir)
	}
	slices.Sort(env)
	// Env entries come last and win (LANG).
	want := []string{helperEnv + "=args", "GORACE=atexit_sleep_ms=0", "ARCHIVER_TEST_KNOB=1", "HOME=/home/matomo", "LANG=de_DE.UTF-8", "PATH=" + envPath()}
	slices.Sort(want)
	if !slices.Equal(env, want) {
		t.Errorf("child environment %q, want %q", env, want)
	}
}

func envPath() string {
	c := Console{}
	for _, e := range c.environ() {
		if p, ok := strings.CutPrefix(e, "PATH="); ok {
			return p
		}
	}
	return ""
}

func TestRunPHPMissing(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	c := &Console{PHP: "php", Dir: t.TempDir()}
	r := c.Archive(t.Context(), RunOptions{}, "", nil)
	if r.Outcome != OutcomeFailure || r.ExitCode != -1 || r.Err == nil ||
		!strings.HasPrefix(r.Err.Error(), `php_binary "php" not found in PATH: install the PHP CLI or set php_binary to its full path`) {
		t.Errorf("got %s %d %v", r.Outcome, r.ExitCode, r.Err)
	}
}

func TestRunRefusesIgnoreLogDeletionLimit(t *testing.T) {
	c, sink := helperConsole(t, "args")
	for _, flag := range []string{"--ignore-log-deletion-limit", "--ignore-log-deletion-limit=1"} {
		r := c.Run(t.Context(), RunOptions{}, CmdInvalidate, "--sites=1", flag)
		if r.Outcome != OutcomeFailure || r.Err == nil || !strings.Contains(r.Err.Error(), "refused") || len(r.Tail) != 0 {
			t.Errorf("%s: got %s %v tail %q", flag, r.Outcome, r.Err, r.Tail)
		}
	}
	if n := len(sink.events("console_started")); n != 0 {
		t.Errorf("%d runs started", n)
	}
}

func TestRunExitCodeAndInterleavedStreams(t *testing.T) {
	c, sink := helperConsole(t, "interleave")
	r := c.Run(t.Context(), RunOptions{}, "test:interleave")
	if r.Outcome != OutcomeFailure || r.ExitCode != 3 || r.Err == nil || r.Err.Error() != "test:interleave exited with code 3: err 99" {
		t.Fatalf("got %s %d %v", r.Outcome, r.ExitCode, r.Err)
	}
	if len(r.Tail) != tailLines {
		t.Errorf("tail has %d lines, want %d", len(r.Tail), tailLines)
	}
	lines := map[string][]string{}
	for _, o := range sink.events("console_output") {
		s := o.str("stream")
		wantLevel := map[string]string{"stdout": "INFO", "stderr": "WARN"}[s]
		if o.str("level") != wantLevel {
			t.Errorf("%s line %q at %s, want %s", s, o.str("msg"), o.str("level"), wantLevel)
		}
		lines[s] = append(lines[s], o.str("msg"))
	}
	for s, prefix := range map[string]string{"stdout": "out", "stderr": "err"} {
		if len(lines[s]) != 100 {
			t.Fatalf("%d %s lines, want 100", len(lines[s]), s)
		}
		for i, l := range lines[s] {
			if l != fmt.Sprintf("%s %d", prefix, i) {
				t.Fatalf("%s line %d is %q: lines lost or out of order", s, i, l)
			}
		}
	}
}

func TestRunLongLines(t *testing.T) {
	c, sink := helperConsole(t, "longline")
	r := c.Run(t.Context(), RunOptions{}, "test:longline")
	if r.Outcome != OutcomeSuccess {
		t.Fatalf("outcome %s: %v", r.Outcome, r.Err)
	}
	want := []string{strings.Repeat("x", maxLineBytes), "after", strings.Repeat("y", maxLineBytes)}
	if !slices.Equal(r.Tail, want) {
		t.Errorf("tail has %d lines of lengths %v, want 64 KiB x, after, 64 KiB y", len(r.Tail), lens(r.Tail))
	}
	var truncated []bool
	for _, o := range sink.events("console_output") {
		truncated = append(truncated, o["truncated"] == true)
	}
	if !slices.Equal(truncated, []bool{true, false, true}) {
		t.Errorf("truncated flags %v, want [true false true]", truncated)
	}
}

func lens(s []string) []int {
	var n []int
	for _, l := range s {
		n = append(n, len(l))
	}
	return n
}

func TestRunGarbageOutput(t *testing.T) {
	c, sink := helperConsole(t, "garbage")
	r := c.Run(t.Context(), RunOptions{}, "test:garbage")
	// The "ERROR … Uncaught exception" lines (and "ok", which continues the
	// stdout one) make exit 0 a failure.
	if r.Outcome != OutcomeFailure || r.ExitCode != 0 || r.ErrorLines != 3 {
		t.Fatalf("got %s exit %d error lines %d: %v", r.Outcome, r.ExitCode, r.ErrorLines, r.Err)
	}
	if !strings.Contains(r.Err.Error(), "exited 0 but reported errors: \uFFFD( Uncaught exception: boom") {
		t.Errorf("err %v", r.Err)
	}
	for _, l := range r.Tail {
		if !utf8.ValidString(l) || strings.ContainsFunc(l, func(r rune) bool { return r < 0x20 && r != '\t' || r == 0x7f }) {
			t.Errorf("tail line not clean: %q", l)
		}
	}
	if !slices.Contains(r.Tail, "red \uFFFD end") || !slices.Contains(r.Tail, "ok") {
		t.Errorf("escape codes not stripped: %q", r.Tail)
	}
	if len(sink.events("console_finished")) != 1 {
		t.Error("no console_finished record")
	}
}

func TestRunTimeoutKillsGroupIgnoringSIGTERM(t *testing.T) {
	c, sink := helperConsole(t, "hang-ignore-term")
	// The timeout must outlast the helper's start (it prints its
	// grandchild's pid first); the grace period is what gets exceeded.
	r := c.Run(t.Context(), RunOptions{Timeout: time.Second, KillGrace: 300 * time.Millisecond}, "test:hang")
	pid := grandchildPID(t, r)
	requireGone(t, pid)
	if r.Outcome != OutcomeTimeout || !r.Killed || r.ExitCode != -1 || !errors.Is(r.Err, context.DeadlineExceeded) {
		t.Fatalf("got %s killed=%v exit %d: %v", r.Outcome, r.Killed, r.ExitCode, r.Err)
	}
	if !strings.Contains(r.Err.Error(), "then SIGKILL after kill_grace") {
		t.Errorf("err %v", r.Err)
	}
	// Regression: a run stopped at run_timeout reported archives=0 after
	// it had printed three "Archived website" lines.
	if r.ArchivesProcessed != 3 {
		t.Errorf("archives %d, want the 3 Archived lines it printed", r.ArchivesProcessed)
	}
	var signals []string
	for _, rec := range sink.records() {
		if s := rec.str("signal"); s != "" {
			signals = append(signals, rec.str("event")+" "+s)
		}
	}
	if want := []string{"console_stopping SIGTERM", "console_killing SIGKILL"}; !slices.Equal(signals, want) {
		t.Errorf("signal records %q, want %q", signals, want)
	}
	if fin := sink.events("console_finished"); len(fin) != 1 || fin[0].str("outcome") != "timeout" || fin[0]["killed"] != true {
		t.Errorf("console_finished %v", fin)
	}
}

func TestRunCancelStopsGroupWithSIGTERM(t *testing.T) {
	c, sink := helperConsole(t, "hang")
	ctx := cancelOnLine(t, sink, "ready")
	r := c.Run(ctx, RunOptions{KillGrace: time.Minute}, "test:hang")
	requireGone(t, grandchildPID(t, r))
	if r.ArchivesProcessed != 3 {
		t.Errorf("a canceled run reported %d archives, want the 3 Archived lines it printed", r.ArchivesProcessed)
	}
	if r.Outcome != OutcomeFailure || r.Killed || r.ExitCode != -1 || !errors.Is(r.Err, context.Canceled) {
		t.Fatalf("got %s killed=%v exit %d: %v", r.Outcome, r.Killed, r.ExitCode, r.Err)
	}
	if fin := sink.events("console_finished"); len(fin) != 1 || fin[0].str("level") != "WARN" {
		t.Errorf("console_finished %v, want one at WARN", fin)
	}
}

// The leader dies of SIGTERM but its child ignores it: the child must not be
// left behind, and nobody waits for kill_grace.
func TestRunCancelKillsChildThatIgnoresSIGTERM(t *testing.T) {
	c, sink := helperConsole(t, "term-orphan")
	ctx := cancelOnLine(t, sink, "ready")
	r := c.Run(ctx, RunOptions{KillGrace: time.Hour}, "test:hang")
	requireGone(t, grandchildPID(t, r))
	if r.Outcome != OutcomeFailure || r.Killed || !errors.Is(r.Err, context.Canceled) {
		t.Fatalf("got %s killed=%v: %v", r.Outcome, r.Killed, r.Err)
	}
}

// A child still running (and holding the pipes) when the console exits on
// its own is killed, and the run ends without waiting for run_timeout.
func TestRunNormalExitKillsLeftoverChild(t *testing.T) {
	c, _ := helperConsole(t, "exit-orphan")
	r := c.Run(t.Context(), RunOptions{Timeout: time.Hour}, "test:orphan")
	requireGone(t, grandchildPID(t, r))
	if r.Outcome != OutcomeSuccess || r.ExitCode != 0 || r.Killed {
		t.Fatalf("got %s exit %d killed=%v: %v", r.Outcome, r.ExitCode, r.Killed, r.Err)
	}
}

func TestRunDoesNotStart(t *testing.T) {
	c, sink := helperConsole(t, "args")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	r := c.Run(ctx, RunOptions{}, "test:args")
	if r.Outcome != OutcomeFailure || !errors.Is(r.Err, context.Canceled) {
		t.Errorf("cancelled context: got %s %v", r.Outcome, r.Err)
	}
	c.Dir = c.Dir + "/missing"
	r = c.Run(t.Context(), RunOptions{}, "test:args")
	if r.Outcome != OutcomeFailure || r.ExitCode != -1 || r.Err == nil || !strings.HasPrefix(r.Err.Error(), "matomo directory "+c.Dir+": stat ") {
		t.Errorf("missing directory: got %s %d %v", r.Outcome, r.ExitCode, r.Err)
	}
	if n := len(sink.events("console_finished")); n != 2 {
		t.Errorf("%d console_finished records, want 2", n)
	}
}
