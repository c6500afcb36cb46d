// Package archiver runs Matomo's console (core:archive,
// core:invalidate-report-data) as child processes and turns their output
// into results; it is the only package in matomod that starts processes.
package archiver

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Defaults for RunOptions.
const (
	DefaultTimeout   = 6 * time.Hour
	DefaultKillGrace = 2 * time.Minute
)

// Outcome says how a run ended.
type Outcome string

const (
	OutcomeSuccess Outcome = "success"
	OutcomeFailure Outcome = "failure" // includes runs canceled by ctx (Err wraps context.Canceled)
	OutcomeTimeout Outcome = "timeout"
	OutcomeSkipped Outcome = "skipped" // exit 0 but Matomo said it did not archive; see SkipReason
)

// Skip reasons, for Result.SkipReason.
const (
	SkipMaintenanceMode  = "maintenance_mode"
	SkipConcurrencyLimit = "concurrency_limit"
)

// Command names matomod runs.
const (
	CmdArchive    = "core:archive"
	CmdInvalidate = "core:invalidate-report-data"
)

// forbiddenFlag would let Matomo rebuild days whose raw logs were purged,
// destroying their reports for good; matomod never passes it.
const forbiddenFlag = "--ignore-log-deletion-limit"

// drainTimeout bounds the wait for output pipes once the whole process group
// is gone: only a process that left the group (setsid) can still hold them.
const drainTimeout = 5 * time.Second

// Console runs `<PHP> [PHPOptions...] <ConsolePath> <command> [args...]`.
type Console struct {
	PHP         string   // php_binary: a path, or a name looked up in PATH; "" means "php"
	PHPOptions  []string // php_cli_options, one argument each (e.g. "-d", "memory_limit=2G")
	ConsolePath string   // Matomo's console script; "" means <Dir>/console
	Dir         string   // the Matomo directory, working directory of the run; "" means ConsolePath's directory
	// Env is added to the child's minimal environment (PATH, HOME, LANG) and
	// wins over it; for test knobs. Never logged.
	Env    []string
	Logger *slog.Logger
}

// RunOptions are per run; zero values take the defaults.
type RunOptions struct {
	RunID     string        // "" means NewRunID()
	Timeout   time.Duration // run_timeout; SIGTERM to the process group when reached
	KillGrace time.Duration // kill_grace; SIGKILL to the group this long after SIGTERM
}

// Result is what one run did and what its output said. Counters are zero
// when the output did not mention them.
type Result struct {
	RunID      string
	Command    string   // args[0], e.g. "core:archive"
	Argv       []string // as executed (php resolved through PATH)
	Start      time.Time
	Duration   time.Duration
	ExitCode   int // -1 when the process did not start or was killed by a signal
	Outcome    Outcome
	SkipReason string // SkipMaintenanceMode or SkipConcurrencyLimit when Outcome is skipped
	Killed     bool   // the group needed SIGKILL after kill_grace

	Summary           bool // core:archive printed its `done: N req, T ms, …` line
	ArchivesProcessed int  // `Processed N archives.`, or the Archived lines seen when the run ended before it
	Requests          int  // `done: N req`
	Errors            int  // `done: …, k errors`
	ErrorLines        int  // lines at error level (ERROR/CRITICAL, Uncaught exception, PHP fatal)
	FirstError        string
	SitesFinished     int // `Finished archiving for site N` lines
	SitesTotal        int // N of the last `[n / N done]`
	Archived          []ArchivedLine
	ArchivedCount     int // all Archived lines, also those past the cap on Archived

	Invalidated        []string // dates of `Success. The following dates were invalidated successfully:` (needs -v)
	LogDeletionSkipped []string // dates refused for being older than the log-deletion limit (needs -v)
	LogDeletionWarning string   // that warning in full, lines joined with "\n"

	Tail []string // last 50 non-blank output lines, both streams, in arrival order
	Err  error    // why the outcome is not success or skipped
}

// NewRunID returns a random id that ties a run's log records together.
func NewRunID() string {
	b := make([]byte, 8)
	_, _ = rand.Read(b) // never fails on Linux (crypto/rand panics itself if it ever could not read)
	return hex.EncodeToString(b)
}

func (c *Console) php() string {
	if c.PHP == "" {
		return "php"
	}
	return c.PHP
}

func (c *Console) consolePath() string {
	if c.ConsolePath == "" {
		return filepath.Join(c.Dir, "console")
	}
	return c.ConsolePath
}

func (c *Console) dir() string {
	if c.Dir == "" {
		return filepath.Dir(c.consolePath())
	}
	return c.Dir
}

func (c *Console) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return c.Logger
}

// Argv is the command line Run executes for args, as configured (php not yet
// looked up in PATH). Exported so that a dry run can print it.
func (c *Console) Argv(args ...string) []string {
	argv := make([]string, 0, 2+len(c.PHPOptions)+len(args))
	argv = append(argv, c.php())
	argv = append(argv, c.PHPOptions...)
	argv = append(argv, c.consolePath())
	return append(argv, args...)
}

// ArchiveArgs are the console arguments of core:archive: --url only when url
// is set, --force-idsites when sites are given. --no-ansi keeps colour codes
// out of the output.
func ArchiveArgs(url string, sites []int, extra []string) ([]string, error) {
	args := []string{CmdArchive, "--no-ansi"}
	if url != "" {
		args = append(args, "--url="+url)
	}
	if sites != nil {
		if len(sites) == 0 {
			// Matomo ignores an empty or bad --force-idsites and archives every site.
			return nil, errors.New("core:archive: empty site list: pass at least one site id")
		}
		ids := slices.Clone(sites)
		slices.Sort(ids)
		ids = slices.Compact(ids)
		s := make([]string, len(ids))
		for i, id := range ids {
			if id <= 0 {
				return nil, fmt.Errorf("core:archive: site id %d is not valid: site ids are positive", id)
			}
			s[i] = strconv.Itoa(id)
		}
		args = append(args, "--force-idsites="+strings.Join(s, ","))
	}
	return append(args, extra...), nil
}

// InvalidateArgs are the console arguments that invalidate the day archives
// of site idsite from `from` to `to` (YYYY-MM-DD, inclusive). -v makes Matomo
// print which dates it invalidated and which it refused because of the
// log-deletion limit; without it that refusal is silent.
func InvalidateArgs(idsite int, from, to string) ([]string, error) {
	if idsite <= 0 {
		return nil, fmt.Errorf("core:invalidate-report-data: site id %d is not valid: site ids are positive", idsite)
	}
	f, err := time.Parse(time.DateOnly, from)
	if err != nil {
		return nil, fmt.Errorf("core:invalidate-report-data: from date %q is not YYYY-MM-DD: pass a date like 2026-11-20", from)
	}
	t, err := time.Parse(time.DateOnly, to)
	if err != nil {
		return nil, fmt.Errorf("core:invalidate-report-data: to date %q is not YYYY-MM-DD: pass a date like 2026-11-20", to)
	}
	if t.Before(f) {
		// Matomo accepts a reversed range and silently invalidates only its last date.
		return nil, fmt.Errorf("core:invalidate-report-data: date range %s,%s is reversed: pass from <= to", from, to)
	}
	dates := from
	if to != from {
		dates += "," + to
	}
	return []string{CmdInvalidate, "--no-ansi", "-v", "--sites=" + strconv.Itoa(idsite), "--dates=" + dates, "--periods=day"}, nil
}

// Archive runs core:archive for all sites; url is passed as --url unless "".
func (c *Console) Archive(ctx context.Context, o RunOptions, url string, extra []string) Result {
	args, err := ArchiveArgs(url, nil, extra)
	if err != nil {
		return c.refuse(o, CmdArchive, err)
	}
	return c.Run(ctx, o, args...)
}

// ArchiveSites runs core:archive with --force-idsites for the given sites.
func (c *Console) ArchiveSites(ctx context.Context, o RunOptions, url string, sites []int, extra []string) Result {
	if sites == nil {
		sites = []int{}
	}
	args, err := ArchiveArgs(url, sites, extra)
	if err != nil {
		return c.refuse(o, CmdArchive, err)
	}
	return c.Run(ctx, o, args...)
}

// Invalidate runs core:invalidate-report-data for the days from..to of one
// site (never with --ignore-log-deletion-limit). Exit 0 does not mean the
// days were invalidated: see Invalidated and LogDeletionSkipped, and check the
// archive_invalidations table.
func (c *Console) Invalidate(ctx context.Context, o RunOptions, idsite int, from, to string) Result {
	args, err := InvalidateArgs(idsite, from, to)
	if err != nil {
		return c.refuse(o, CmdInvalidate, err)
	}
	return c.Run(ctx, o, args...)
}

// lookPHP resolves php_binary the way exec would, with an error that says
// how to fix it.
func (c *Console) lookPHP() (string, error) {
	php := c.php()
	if !strings.Contains(php, "/") {
		p, err := exec.LookPath(php)
		if err != nil {
			return "", fmt.Errorf("php_binary %q not found in PATH: install the PHP CLI or set php_binary to its full path: %w", php, err)
		}
		return p, nil
	}
	fi, err := os.Stat(php)
	if err != nil {
		return "", fmt.Errorf("php_binary %s: %w: set php_binary to the PHP CLI's path", php, err)
	}
	if fi.IsDir() || fi.Mode().Perm()&0o111 == 0 {
		return "", fmt.Errorf("php_binary %s is not an executable file: set php_binary to the PHP CLI's path", php)
	}
	return php, nil
}

// Check reports what would keep Run from starting: php_binary missing, the
// console script or the Matomo directory missing. For `matomod check`.
func (c *Console) Check() error {
	var errs []error
	if _, err := c.lookPHP(); err != nil {
		errs = append(errs, err)
	}
	console := c.consolePath()
	if fi, err := os.Stat(console); err != nil {
		errs = append(errs, fmt.Errorf("matomo console %s: %w: set the Matomo directory (or console path) to your Matomo install", console, err))
	} else if fi.IsDir() {
		errs = append(errs, fmt.Errorf("matomo console %s is a directory: point it at the console script inside the Matomo directory", console))
	}
	if err := c.checkDir(); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// checkDir says clearly what exec would report as "fork/exec <php>: no such
// file or directory" when the working directory is missing.
func (c *Console) checkDir() error {
	fi, err := os.Stat(c.dir())
	if err != nil {
		return fmt.Errorf("matomo directory %s: %w: set it to your Matomo install", c.dir(), err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("matomo directory %s is not a directory: set it to your Matomo install", c.dir())
	}
	return nil
}

// environ is the child's environment: enough for PHP and nothing of the
// daemon's own (no NOTIFY_SOCKET, no credentials), then Env.
func (c *Console) environ() []string {
	path := os.Getenv("PATH")
	if path == "" {
		path = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
	}
	env := []string{"PATH=" + path, "LANG=C.UTF-8"}
	if home := os.Getenv("HOME"); home != "" {
		env = append(env, "HOME="+home)
	}
	return append(env, c.Env...) // exec.Cmd keeps the last of duplicate keys
}

// refuse is the Result of a run that was not started: bad arguments,
// php_binary or the Matomo directory missing, ctx already done.
func (c *Console) refuse(o RunOptions, command string, err error) Result {
	res := Result{RunID: o.RunID, Command: command, Start: time.Now(), ExitCode: -1, Outcome: OutcomeFailure, Err: err}
	if res.RunID == "" {
		res.RunID = NewRunID()
	}
	c.logger().Error("console not started", "event", "console_finished", "run_id", res.RunID,
		"command", command, "outcome", res.Outcome, "err", err)
	return res
}

// Run executes the console with args and waits for it and its whole process
// group. It never panics and always returns a Result; Err says what went
// wrong when Outcome is failure or timeout.
func (c *Console) Run(ctx context.Context, o RunOptions, args ...string) Result {
	if len(args) == 0 {
		return c.refuse(o, "", errors.New("no console command given: pass one, e.g. core:archive"))
	}
	for _, a := range args {
		if a == forbiddenFlag || strings.HasPrefix(a, forbiddenFlag+"=") {
			return c.refuse(o, args[0], fmt.Errorf("%s refused: it rebuilds days whose raw logs are gone and destroys their reports; remove it", forbiddenFlag))
		}
	}
	if err := ctx.Err(); err != nil {
		return c.refuse(o, args[0], fmt.Errorf("%s not started: %w", args[0], err))
	}
	php, err := c.lookPHP()
	if err == nil {
		err = c.checkDir()
	}
	if err != nil {
		return c.refuse(o, args[0], err)
	}
	if o.RunID == "" {
		o.RunID = NewRunID()
	}
	if o.Timeout <= 0 {
		o.Timeout = DefaultTimeout
	}
	if o.KillGrace <= 0 {
		o.KillGrace = DefaultKillGrace
	}
	argv := c.Argv(args...)
	argv[0] = php
	res := Result{RunID: o.RunID, Command: args[0], Argv: argv, ExitCode: -1}
	lg := c.logger().With("run_id", o.RunID)
	logCtx := context.WithoutCancel(ctx)

	cmd := exec.Command(php, argv[1:]...)
	cmd.Dir = c.dir()
	cmd.Env = c.environ()

	var mu sync.Mutex
	p := newParser(&res)
	onLine := func(stream string, b []byte, truncated bool) {
		mu.Lock()
		defer mu.Unlock()
		text, level, ok := p.line(stream, b)
		if !ok {
			return
		}
		// The line itself is the message, so `journalctl -u matomod` reads
		// like the console's own output.
		attrs := []slog.Attr{slog.String("event", "console_output"), slog.String("stream", stream)}
		if truncated {
			attrs = append(attrs, slog.Bool("truncated", true))
		}
		lg.LogAttrs(logCtx, level, text, attrs...)
	}

	lg.Info("console started", "event", "console_started", "argv", argv, "dir", cmd.Dir,
		"timeout", o.Timeout.String(), "kill_grace", o.KillGrace.String())
	res.Start = time.Now()
	pr := supervise(ctx, cmd, o.Timeout, o.KillGrace, onLine, lg)
	res.Duration = time.Since(res.Start)

	p.finish() // supervise returned, so both readers are done
	res.Killed = pr.killed
	if pr.state != nil {
		res.ExitCode = pr.state.ExitCode()
	}
	classify(&res, p, pr)

	level := slog.LevelInfo
	switch {
	case errors.Is(res.Err, context.Canceled):
		level = slog.LevelWarn
	case res.Outcome == OutcomeFailure || res.Outcome == OutcomeTimeout:
		level = slog.LevelError
	}
	attrs := []slog.Attr{
		slog.String("event", "console_finished"), slog.String("command", res.Command),
		slog.Int("exit_code", res.ExitCode), slog.Float64("duration_seconds", res.Duration.Seconds()),
		slog.String("outcome", string(res.Outcome)), slog.Int("archives", res.ArchivesProcessed),
		slog.Int("errors", res.Errors),
	}
	if res.SkipReason != "" {
		attrs = append(attrs, slog.String("skip_reason", res.SkipReason))
	}
	if res.Killed {
		attrs = append(attrs, slog.Bool("killed", true))
	}
	if res.Err != nil {
		attrs = append(attrs, slog.String("err", res.Err.Error()))
	}
	lg.LogAttrs(logCtx, level, "console finished", attrs...)
	return res
}

// procResult is what supervise saw of the process.
type procResult struct {
	state   *os.ProcessState // nil when it did not start
	stopped error            // context.DeadlineExceeded or context.Canceled when matomod stopped it
	killed  bool             // SIGKILL after the grace period was needed
	err     error            // could not start or wait
}

// classify decides the outcome. Exit 0 is not enough: Matomo exits 0 when
// it did not archive at all (maintenance mode, concurrency limit).
func classify(r *Result, p *parser, pr procResult) {
	name := r.Command
	if name == "" {
		name = "console"
	}
	detail := func() string {
		switch {
		case r.FirstError != "":
			return ": " + r.FirstError
		case p.lastStderr != "":
			return ": " + p.lastStderr
		}
		return ""
	}
	switch {
	case pr.err != nil:
		r.Outcome, r.Err = OutcomeFailure, fmt.Errorf("%s: %w", name, pr.err)
	case errors.Is(pr.stopped, context.DeadlineExceeded):
		how := "SIGTERM"
		if r.Killed {
			how = "SIGTERM, then SIGKILL after kill_grace"
		}
		r.Outcome, r.Err = OutcomeTimeout, fmt.Errorf("%s ran into its timeout and was stopped with %s: raise run_timeout if runs are this long: %w", name, how, pr.stopped)
	case pr.stopped != nil:
		r.Outcome, r.Err = OutcomeFailure, fmt.Errorf("%s stopped before it finished: %w", name, pr.stopped)
	case r.ExitCode < 0:
		sig := "a signal"
		if pr.state != nil {
			if ws, ok := pr.state.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
				sig = ws.Signal().String()
			}
		}
		r.Outcome, r.Err = OutcomeFailure, fmt.Errorf("%s was killed by %s from outside matomod%s", name, sig, detail())
	case r.ExitCode != 0:
		r.Outcome, r.Err = OutcomeFailure, fmt.Errorf("%s exited with code %d%s", name, r.ExitCode, detail())
	case r.SkipReason != "":
		r.Outcome = OutcomeSkipped
		return
	case r.Errors > 0 || r.ErrorLines > 0:
		r.Outcome, r.Err = OutcomeFailure, fmt.Errorf("%s exited 0 but reported errors%s", name, detail())
	case p.stoppedBy != "":
		r.Outcome, r.Err = OutcomeFailure, fmt.Errorf("%s stopped early: %s", name, p.stoppedBy)
	case r.Command == CmdArchive && !r.Summary:
		r.Outcome, r.Err = OutcomeFailure, fmt.Errorf("%s exited 0 without its summary line (done: N req, …): check console_path points at Matomo's console", name)
	default:
		r.Outcome = OutcomeSuccess
	}
	r.SkipReason = ""
}
