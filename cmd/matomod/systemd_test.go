package main

import (
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// listenNotify stands in for systemd: a unixgram socket at NOTIFY_SOCKET.
func listenNotify(t *testing.T) <-chan string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "notify.sock")
	conn, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: path, Net: "unixgram"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	t.Setenv("NOTIFY_SOCKET", path)
	ch := make(chan string, 100)
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := conn.Read(buf)
			if err != nil {
				close(ch)
				return
			}
			ch <- string(buf[:n])
		}
	}()
	return ch
}

func next(t *testing.T, ch <-chan string) string {
	t.Helper()
	select {
	case m := <-ch:
		return m
	case <-time.After(5 * time.Second):
		t.Fatal("no sd_notify message")
		return ""
	}
}

func TestNotifier(t *testing.T) {
	ch := listenNotify(t)
	n := &notifier{log: slog.New(slog.DiscardHandler)}
	n.Ready()
	if m := next(t, ch); m != "READY=1" {
		t.Errorf("got %q", m)
	}
	n.Status("next archive 14:05 UTC")
	n.Status("next archive 14:05 UTC") // unchanged: not sent again
	n.Status("archiving now")
	if m := next(t, ch); m != "STATUS=next archive 14:05 UTC" {
		t.Errorf("got %q", m)
	}
	if m := next(t, ch); m != "STATUS=archiving now" {
		t.Errorf("got %q", m)
	}
	n.Reloading()
	if m := next(t, ch); !strings.HasPrefix(m, "RELOADING=1\nMONOTONIC_USEC=") {
		t.Errorf("got %q", m)
	}
	n.Stopping()
	if m := next(t, ch); m != "STOPPING=1" {
		t.Errorf("got %q", m)
	}
}

// WATCHDOG=1 goes out at half WATCHDOG_USEC only while alive() holds.
func TestWatchdogOnlyWhileAlive(t *testing.T) {
	ch := listenNotify(t)
	t.Setenv("WATCHDOG_USEC", "200000") // 200 ms: pings every 100 ms
	t.Setenv("WATCHDOG_PID", "")
	n := &notifier{log: slog.New(slog.DiscardHandler)}
	alive := make(chan bool, 1)
	alive <- true
	state := true
	stop := make(chan struct{})
	go n.watchdog(stop, func() bool {
		select {
		case state = <-alive:
		default:
		}
		return state
	})
	defer close(stop)
	if m := next(t, ch); m != "WATCHDOG=1" {
		t.Fatalf("got %q", m)
	}
	alive <- false
	// Drain what was in flight, then expect silence.
	deadline := time.After(600 * time.Millisecond)
	quiet := time.Now()
	for {
		select {
		case m := <-ch:
			if time.Since(quiet) > 250*time.Millisecond {
				t.Fatalf("watchdog ping %q while not alive", m)
			}
		case <-deadline:
			return
		}
	}
}
