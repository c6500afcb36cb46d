package main

import (
	"log/slog"
	"strings"
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// notifier speaks sd_notify for internal/daemon, which decides when.
// Without NOTIFY_SOCKET every call is a no-op.
type notifier struct {
	log    *slog.Logger
	mu     sync.Mutex
	status string
}

func (n *notifier) send(state string) {
	if _, err := sd.SdNotify(false, state); err != nil {
		n.log.Warn("sd_notify failed", "event", "sd_notify_failed", "err", err)
	}
}

func (n *notifier) Ready()    { n.send(sd.SdNotifyReady) }
func (n *notifier) Stopping() { n.send(sd.SdNotifyStopping) }
func (n *notifier) Watchdog() { n.send(sd.SdNotifyWatchdog) }

// Reloading must carry MONOTONIC_USEC for Type=notify-reload; harmless for
// Type=notify. SdNotifyMonotonicUsec already returns "MONOTONIC_USEC=…".
func (n *notifier) Reloading() {
	n.send(sd.SdNotifyReloading + "\n" + strings.TrimSpace(sd.SdNotifyMonotonicUsec()))
}

// Status sends STATUS= when it changed.
func (n *notifier) Status(s string) {
	n.mu.Lock()
	changed := s != n.status
	n.status = s
	n.mu.Unlock()
	if changed {
		n.send("STATUS=" + s)
	}
}

// watchdogInterval is WATCHDOG_USEC when it is meant for us (0: off).
func watchdogInterval() time.Duration {
	d, err := sd.SdWatchdogEnabled(false)
	if err != nil {
		return 0
	}
	return d
}
