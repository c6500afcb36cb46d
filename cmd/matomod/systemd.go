package main

import (
	"log/slog"
	"sync"
	"time"

	sd "github.com/coreos/go-systemd/v22/daemon"
)

// notifier speaks sd_notify: READY=1 only after the checks pass, STATUS=
// kept current, WATCHDOG=1 only while the scheduler loop is alive,
// RELOADING=1/READY=1 around SIGHUP, STOPPING=1 on shutdown. Without
// NOTIFY_SOCKET every call is a no-op.
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

// Reloading must carry MONOTONIC_USEC for Type=notify-reload; harmless
// for Type=notify.
func (n *notifier) Reloading() {
	n.send(sd.SdNotifyReloading + "\nMONOTONIC_USEC=" + sd.SdNotifyMonotonicUsec())
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

// watchdog pings at half WATCHDOG_USEC while alive() holds; a stuck loop
// stops the pings and systemd restarts us.
func (n *notifier) watchdog(stop <-chan struct{}, alive func() bool) {
	interval, err := sd.SdWatchdogEnabled(false)
	if err != nil || interval <= 0 {
		return
	}
	t := time.NewTicker(interval / 2)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			if alive() {
				n.send(sd.SdNotifyWatchdog)
			} else {
				n.log.Error("scheduler loop is not alive: withholding the watchdog ping so systemd restarts matomod", "event", "watchdog_withheld")
			}
		}
	}
}
