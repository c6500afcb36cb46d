//go:build linux

package archiver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os/exec"
	"runtime"
	"sync"
	"syscall"
	"time"
	"unsafe"
)

// supervise starts cmd in its own process group, streams both pipes to
// onLine and waits until the leader has exited, every other member of its
// group is gone and the pipes are drained.
//
// When ctx is done or timeout passes, the whole group gets SIGTERM, and
// SIGKILL if the leader is still there after grace. exec.Cmd's own
// Cancel/WaitDelay is not used: WaitDelay kills only the leader, and once
// Wait has reaped the leader its pid (the group id) may be reused, so
// signalling the group afterwards could hit strangers. Instead the leader's
// exit is observed with waitid(WNOWAIT), which leaves it a zombie: its pid
// stays reserved while the rest of the group (climulti:request children,
// anything that ignored SIGTERM) is killed, and only then is it reaped.
func supervise(ctx context.Context, cmd *exec.Cmd, timeout, grace time.Duration,
	onLine func(stream string, b []byte, truncated bool), lg *slog.Logger) procResult {
	var pr procResult
	// Pdeathsig: if matomod itself is SIGKILLed, PHP dies with it instead
	// of archiving on unsupervised next to the next leader's run. The
	// signal is tied to the thread that forked, so that thread is kept
	// (locked) until the child has been reaped.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		pr.err = err
		return pr
	}
	stderr, err := cmd.StderrPipe()
	if err != nil {
		pr.err = err
		return pr
	}
	if err := cmd.Start(); err != nil {
		pr.err = fmt.Errorf("could not start: %w", err)
		return pr
	}
	pgid := cmd.Process.Pid // Setpgid: the leader's pid is the group id

	var readers sync.WaitGroup
	readers.Go(func() {
		readLines(stdout, maxLineBytes, func(b []byte, tr bool) { onLine("stdout", b, tr) })
	})
	readers.Go(func() {
		readLines(stderr, maxLineBytes, func(b []byte, tr bool) { onLine("stderr", b, tr) })
	})
	drained := make(chan struct{})
	go func() { readers.Wait(); close(drained) }()

	exited := make(chan error, 1)
	go func() { exited <- waitExited(pgid) }()

	runCtx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var waitErr error
	select {
	case waitErr = <-exited:
	case <-runCtx.Done():
		select {
		case waitErr = <-exited: // it finished just as time ran out
		default:
			pr.stopped = runCtx.Err()
			waitErr, pr.killed = stopGroup(pgid, grace, exited, pr.stopped, lg)
		}
	}
	if waitErr == nil {
		// The leader is a zombie now, so pgid is still ours: whatever is left
		// of its group outlived the run and would be orphaned.
		_ = syscall.Kill(-pgid, syscall.SIGKILL)
	} else {
		lg.Error("cannot watch the console process; its children may outlive it", "event", "console_wait_failed", "err", waitErr)
	}

	t := time.NewTimer(drainTimeout)
	select {
	case <-drained:
	case <-t.C:
		lg.Warn("console output still open after its process group ended; closing it", "event", "console_output_abandoned")
		_ = stdout.Close()
		_ = stderr.Close()
		<-drained
	}
	t.Stop()

	err = cmd.Wait() // a non-zero exit is an *exec.ExitError, not a failure to wait
	pr.state = cmd.ProcessState
	if err != nil && pr.state == nil {
		pr.err = err
	}
	return pr
}

// stopGroup sends SIGTERM to the group, and SIGKILL if the leader has not
// exited after grace. It returns once the leader has exited.
func stopGroup(pgid int, grace time.Duration, exited <-chan error, why error, lg *slog.Logger) (waitErr error, killed bool) {
	reason := "run_timeout"
	if errors.Is(why, context.Canceled) {
		reason = "canceled"
	}
	lg.Warn("stopping console", "event", "console_stopping", "signal", "SIGTERM", "reason", reason, "pgid", pgid)
	_ = syscall.Kill(-pgid, syscall.SIGTERM)
	t := time.NewTimer(grace)
	defer t.Stop()
	select {
	case waitErr = <-exited:
		return waitErr, false
	case <-t.C:
	}
	lg.Warn("console ignored SIGTERM", "event", "console_killing", "signal", "SIGKILL", "kill_grace", grace.String(), "pgid", pgid)
	_ = syscall.Kill(-pgid, syscall.SIGKILL)
	return <-exited, true
}

// waitExited blocks until process pid has exited without reaping it
// (waitid with WNOWAIT), so its pid cannot be reused yet.
func waitExited(pid int) error {
	var info [128]byte // siginfo_t
	for {
		_, _, e := syscall.Syscall6(syscall.SYS_WAITID, 1 /* P_PID */, uintptr(pid),
			uintptr(unsafe.Pointer(&info[0])), syscall.WEXITED|syscall.WNOWAIT, 0, 0)
		switch e {
		case 0:
			return nil
		case syscall.EINTR:
			continue
		default:
			return e
		}
	}
}
