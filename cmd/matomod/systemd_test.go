package main

import (
	"log/slog"
	"net"
	"path/filepath"
	"regexp"
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
	// Malformed before: "MONOTONIC_USEC=MONOTONIC_USEC=…".
	if m := next(t, ch); !regexp.MustCompile(`^RELOADING=1\nMONOTONIC_USEC=[0-9]+$`).MatchString(m) {
		t.Errorf("got %q", m)
	}
	n.Watchdog()
	if m := next(t, ch); m != "WATCHDOG=1" {
		t.Errorf("got %q", m)
	}
	n.Stopping()
	if m := next(t, ch); m != "STOPPING=1" {
		t.Errorf("got %q", m)
	}
}
