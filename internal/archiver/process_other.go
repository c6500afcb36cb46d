//go:build !linux

package archiver

import (
	"context"
	"errors"
	"log/slog"
	"os/exec"
	"time"
)

// supervise needs Linux: it relies on waitid(WNOWAIT) to signal the
// console's process group safely (see process_linux.go).
func supervise(_ context.Context, _ *exec.Cmd, _, _ time.Duration,
	_ func(string, []byte, bool), _ *slog.Logger) procResult {
	return procResult{err: errors.New("running the Matomo console is supported on Linux only")}
}
