package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"strings"
	"sync"

	"github.com/coreos/go-systemd/v22/journal"
)

// newLogger builds the one logger of the process. format "" or "auto"
// means journal under systemd (JOURNAL_STREAM names our stderr) and logfmt
// elsewhere.
func newLogger(level, format string, w io.Writer) (*slog.Logger, error) {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		return nil, fmt.Errorf("--log.level %q: use debug, info, warn or error", level)
	}
	opts := &slog.HandlerOptions{Level: lv}
	if format == "" || format == "auto" {
		format = "logfmt"
		if ok, _ := journal.StderrIsJournalStream(); ok && journal.Enabled() {
			format = "journal"
		}
	}
	switch format {
	case "logfmt":
		return slog.New(slog.NewTextHandler(w, opts)), nil
	case "json":
		return slog.New(slog.NewJSONHandler(w, opts)), nil
	case "journal":
		return slog.New(newJournalHandler(lv, journal.Send)), nil
	}
	return nil, fmt.Errorf("--log.format %q: use logfmt, json or journal", format)
}

// journalHandler sends native journal entries: PRIORITY from the level,
// MESSAGE, and every attribute as an UPPERCASE field, those of ours with the
// MATOMOD_ prefix (journalctl -u matomod MATOMOD_IDSITE=3). journald drops
// fields whose names are not [A-Z0-9_], so names are mapped to that set.
type journalHandler struct {
	level  slog.Leveler
	send   func(msg string, p journal.Priority, vars map[string]string) error
	attrs  []slog.Attr
	groups []string
	mu     *sync.Mutex
}

func newJournalHandler(l slog.Leveler, send func(string, journal.Priority, map[string]string) error) *journalHandler {
	return &journalHandler{level: l, send: send, mu: &sync.Mutex{}}
}

func (h *journalHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

func (h *journalHandler) Handle(_ context.Context, r slog.Record) error {
	vars := map[string]string{"SYSLOG_IDENTIFIER": "matomod"}
	prefix := strings.Join(h.groups, "_")
	var add func(a slog.Attr, prefix string)
	add = func(a slog.Attr, prefix string) {
		v := a.Value.Resolve()
		name := a.Key
		if prefix != "" {
			name = prefix + "_" + name
		}
		if v.Kind() == slog.KindGroup {
			for _, g := range v.Group() {
				add(g, name)
			}
			return
		}
		if a.Key == "" {
			return
		}
		vars[journalField(name)] = v.String()
	}
	for _, a := range h.attrs {
		add(a, "")
	}
	r.Attrs(func(a slog.Attr) bool { add(a, prefix); return true })
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.send(r.Message, priority(r.Level), vars)
}

func (h *journalHandler) WithAttrs(as []slog.Attr) slog.Handler {
	c := *h
	prefix := strings.Join(h.groups, "_")
	for _, a := range as {
		if prefix != "" {
			a.Key = prefix + "_" + a.Key
		}
		c.attrs = append(slices.Clip(c.attrs), a)
	}
	return &c
}

func (h *journalHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	c := *h
	c.groups = append(slices.Clip(c.groups), name)
	return &c
}

func priority(l slog.Level) journal.Priority {
	switch {
	case l >= slog.LevelError:
		return journal.PriErr
	case l >= slog.LevelWarn:
		return journal.PriWarning
	case l >= slog.LevelInfo:
		return journal.PriInfo
	}
	return journal.PriDebug
}

// journalField maps an attribute key to a journal field name: err →
// MATOMOD_ERR, idsite → MATOMOD_IDSITE, run_id → MATOMOD_RUN_ID.
func journalField(k string) string {
	var b strings.Builder
	b.WriteString("MATOMOD_")
	for _, c := range strings.ToUpper(k) {
		if c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' {
			b.WriteRune(c)
		} else {
			b.WriteByte('_')
		}
	}
	return b.String()
}

// fatalf reports an error from before the logger exists; exit status 2.
func fatalf(format string, a ...any) int {
	fmt.Fprintf(os.Stderr, "matomod: "+format+"\n", a...)
	return 2
}

// mysqlLogger puts the MySQL driver's own lines ("[mysql] … unexpected
// EOF") through our logger, so they carry the log format and an event.
type mysqlLogger struct{ log *slog.Logger }

func (l mysqlLogger) Print(v ...any) {
	l.log.Warn(strings.TrimSpace(fmt.Sprint(v...)), "event", "mysql_driver")
}
