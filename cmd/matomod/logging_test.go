package main

import (
	"bytes"
	"log/slog"
	"strings"
	"testing"

	"github.com/coreos/go-systemd/v22/journal"
)

type sent struct {
	msg  string
	prio journal.Priority
	vars map[string]string
}

func TestJournalHandlerFields(t *testing.T) {
	var got []sent
	h := newJournalHandler(slog.LevelInfo, func(m string, p journal.Priority, v map[string]string) error {
		got = append(got, sent{m, p, v})
		return nil
	})
	log := slog.New(h).With("run_id", "r1")
	log.Debug("hidden")
	log.With("idsite", 3).Warn("gap found", "event", "gap_found", "date", "2026-11-20", "raw-visits", 12)
	log.WithGroup("console").Error("line", "stream", "stderr")
	if len(got) != 2 {
		t.Fatalf("sent %d entries, want 2 (debug filtered)", len(got))
	}
	g := got[0]
	if g.msg != "gap found" || g.prio != journal.PriWarning {
		t.Errorf("first entry: %+v", g)
	}
	for k, v := range map[string]string{"MATOMOD_RUN_ID": "r1", "MATOMOD_IDSITE": "3", "MATOMOD_EVENT": "gap_found",
		"MATOMOD_DATE": "2026-11-20", "MATOMOD_RAW_VISITS": "12", "SYSLOG_IDENTIFIER": "matomod"} {
		if g.vars[k] != v {
			t.Errorf("%s = %q, want %q (all: %v)", k, g.vars[k], v, g.vars)
		}
	}
	if got[1].prio != journal.PriErr || got[1].vars["MATOMOD_CONSOLE_STREAM"] != "stderr" {
		t.Errorf("grouped entry: %+v", got[1])
	}
}

func TestNewLoggerFormats(t *testing.T) {
	var b bytes.Buffer
	l, err := newLogger("debug", "json", &b)
	if err != nil {
		t.Fatal(err)
	}
	l.Info("x", "event", "run_started")
	if !strings.Contains(b.String(), `"event":"run_started"`) {
		t.Errorf("json: %s", b.String())
	}
	b.Reset()
	l, _ = newLogger("info", "logfmt", &b)
	l.Info("x", "event", "run_started")
	if !strings.Contains(b.String(), "event=run_started") {
		t.Errorf("logfmt: %s", b.String())
	}
	// Outside systemd (no JOURNAL_STREAM), auto is logfmt.
	t.Setenv("JOURNAL_STREAM", "")
	b.Reset()
	l, _ = newLogger("info", "auto", &b)
	l.Info("x")
	if !strings.Contains(b.String(), "level=INFO") {
		t.Errorf("auto: %s", b.String())
	}
	for _, bad := range [][2]string{{"loud", "logfmt"}, {"info", "xml"}} {
		if _, err := newLogger(bad[0], bad[1], &b); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}
