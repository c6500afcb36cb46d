package archiver

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The test binary doubles as a fake PHP: Run starts it as
// `<test binary> [php options] <console> <command> [args]` with helperEnv set
// (through Console.Env) to the behaviour wanted.
const (
	helperEnv     = "ARCHIVER_TEST_HELPER"
	fixtureEnv    = "ARCHIVER_TEST_FIXTURE"
	ignoreTermEnv = "ARCHIVER_TEST_IGNORE_TERM"
)

func TestMain(m *testing.M) {
	if b := os.Getenv(helperEnv); b != "" {
		os.Exit(helperMain(b))
	}
	os.Exit(m.Run())
}

func helperMain(behaviour string) int {
	out, errOut := os.Stdout, os.Stderr
	switch behaviour {
	case "fixture": // replay a captured Matomo run
		base := os.Getenv(fixtureEnv)
		stdout, err1 := os.ReadFile(base + ".stdout")
		stderr, err2 := os.ReadFile(base + ".stderr")
		code, err3 := os.ReadFile(base + ".exit")
		if err1 != nil || err2 != nil || err3 != nil {
			fmt.Fprintln(errOut, "helper: cannot read fixture", base)
			return 99
		}
		out.Write(stdout)
		errOut.Write(stderr)
		n, _ := strconv.Atoi(strings.TrimSpace(string(code)))
		return n
	case "args":
		for _, a := range os.Args[1:] {
			fmt.Fprintln(out, "arg:"+a)
		}
		wd, _ := os.Getwd()
		fmt.Fprintln(out, "cwd:"+wd)
		for _, e := range os.Environ() {
			fmt.Fprintln(out, "env:"+e)
		}
		return 0
	case "hang", "hang-ignore-term", "term-orphan", "exit-orphan":
		if behaviour == "hang-ignore-term" {
			ignoreTERM()
		}
		pid := spawnGrandchild(behaviour != "hang")
		fmt.Fprintf(out, "grandchild %d\n", pid)
		for d := 20; d < 23; d++ {
			fmt.Fprintf(out, "INFO      [12:00:00] 1  Archived website id 1, period = day, date = 2026-11-%d, segment = '', 5 visits found. Time elapsed: 0.4s\n", d)
		}
		fmt.Fprintln(out, "ready")
		if behaviour == "exit-orphan" {
			return 0
		}
		time.Sleep(time.Hour)
		return 0
	case "grandchild":
		if os.Getenv(ignoreTermEnv) != "" {
			ignoreTERM()
		}
		os.NewFile(3, "ready").Close() // tells the leader we are set up
		time.Sleep(time.Hour)
		return 0
	case "longline":
		out.Write(bytes.Repeat([]byte("x"), 1<<20))
		out.WriteString("\nafter\n")
		out.Write(bytes.Repeat([]byte("y"), 100<<10)) // no final newline
		return 0
	case "garbage":
		var b []byte
		for i := range 1024 {
			b = append(b, byte(i))
		}
		b = append(b, "\n\x1b[31mred\x1b[0m \xff\xfe\x00 \x1b]0;title\x07end\r\n"...)
		b = append(b, "ERROR     [12:00:00] 1  \xc3\x28 Uncaught exception: boom\nok\n"...)
		out.Write(b)
		errOut.Write(b)
		return 0
	case "interleave":
		for i := range 100 {
			fmt.Fprintf(out, "out %d\n", i)
			fmt.Fprintf(errOut, "err %d\n", i)
		}
		return 3
	}
	fmt.Fprintln(errOut, "helper: unknown behaviour", behaviour)
	return 98
}

// ignoreTERM ignores SIGTERM like a stuck PHP process would. (A Go program
// does not inherit an ignored SIGTERM across exec, so each process sets it.)
func ignoreTERM() {
	signal.Ignore(syscall.SIGTERM)
}

// spawnGrandchild starts a sleeping child in our process group that shares
// our stdout/stderr, and returns once it is set up.
func spawnGrandchild(ignoreTerm bool) int {
	r, w, err := os.Pipe()
	if err != nil {
		panic(err)
	}
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), helperEnv+"=grandchild")
	if ignoreTerm {
		cmd.Env = append(cmd.Env, ignoreTermEnv+"=1")
	}
	cmd.Stdout, cmd.Stderr = os.Stdout, os.Stderr
	cmd.ExtraFiles = []*os.File{w}
	if err := cmd.Start(); err != nil {
		panic(err)
	}
	w.Close()
	io.ReadAll(r) // EOF once the grandchild closed fd 3
	return cmd.Process.Pid
}

// record is one JSON log record.
type record map[string]any

func (r record) str(k string) string { s, _ := r[k].(string); return s }

// logSink collects the JSON records of a slog.JSONHandler; hook sees each
// record as it is written (for cancelling a run at a given line).
type logSink struct {
	t    *testing.T
	mu   sync.Mutex
	recs []record
	hook func(record)
}

func (s *logSink) Write(p []byte) (int, error) {
	var r record
	if err := json.Unmarshal(p, &r); err != nil {
		s.t.Errorf("log output is not one JSON record: %v: %q", err, p)
		return len(p), nil
	}
	s.mu.Lock()
	s.recs = append(s.recs, r)
	hook := s.hook
	s.mu.Unlock()
	if hook != nil {
		hook(r)
	}
	return len(p), nil
}

func (s *logSink) records() []record {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]record(nil), s.recs...)
}

// events returns the records with event ev.
func (s *logSink) events(ev string) []record {
	var out []record
	for _, r := range s.records() {
		if r.str("event") == ev {
			out = append(out, r)
		}
	}
	return out
}

// helperConsole is a Console whose "php" is this test binary acting out
// behaviour, logging JSON into the returned sink.
func helperConsole(t *testing.T, behaviour string, env ...string) (*Console, *logSink) {
	t.Helper()
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	sink := &logSink{t: t}
	return &Console{
		PHP:         exe,
		ConsolePath: filepath.Join(dir, "console"),
		Dir:         dir,
		// GORACE: a -race binary otherwise sleeps 1 s before exiting.
		Env:    append([]string{helperEnv + "=" + behaviour, "GORACE=atexit_sleep_ms=0"}, env...),
		Logger: slog.New(slog.NewJSONHandler(sink, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, sink
}

// cancelOnLine returns a context that is cancelled when the run logs line.
func cancelOnLine(t *testing.T, sink *logSink, line string) context.Context {
	ctx, cancel := context.WithCancel(t.Context())
	t.Cleanup(cancel)
	sink.hook = func(r record) {
		if r.str("event") == "console_output" && r.str("msg") == line {
			cancel()
		}
	}
	return ctx
}

// grandchildPID finds the pid the helper printed.
func grandchildPID(t *testing.T, res Result) int {
	t.Helper()
	for _, l := range res.Tail {
		if s, ok := strings.CutPrefix(l, "grandchild "); ok {
			pid, err := strconv.Atoi(s)
			if err != nil {
				t.Fatalf("bad grandchild line %q", l)
			}
			return pid
		}
	}
	t.Fatalf("the helper never printed its grandchild's pid (machine too slow for the timeout?); tail: %q", res.Tail)
	return 0
}

// requireGone fails unless our grandchild pid has died. Death is
// asynchronous (a SIGKILLed process may still be exiting, and its zombie
// waits for init), so this polls /proc for a bounded time.
func requireGone(t *testing.T, pid int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return // reaped
		}
		i := bytes.LastIndexByte(stat, ')')
		if i >= 0 && i+2 < len(stat) && (stat[i+2] == 'Z' || stat[i+2] == 'X') {
			return // dead, waiting to be reaped by init
		}
		env, _ := os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if !bytes.Contains(env, []byte(helperEnv+"=grandchild")) {
			return // the pid now belongs to someone else
		}
		if time.Now().After(deadline) {
			syscall.Kill(pid, syscall.SIGKILL)
			t.Fatalf("grandchild %d still alive after the run: the process group was not killed", pid)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
