package archiver

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"time"
)

const (
	// maxLineBytes cuts console lines: a stack trace or a serialized API
	// response can be huge, and a line is read whole before it is logged.
	maxLineBytes = 64 << 10
	// tailLines is how many output lines a Result keeps for the failure report.
	tailLines = 50
	// maxArchived bounds Result.Archived so that a runaway output cannot
	// grow memory without limit; ArchivedCount still counts every line.
	maxArchived = 100_000
)

// readLines calls fn for every line of r (without the line break). A line
// longer than max is passed cut to max bytes with truncated set, and the rest
// of it is skipped. fn must not keep b. It returns when r reports EOF or an
// error (a pipe closed under it is not worth reporting).
func readLines(r io.Reader, max int, fn func(b []byte, truncated bool)) {
	br := bufio.NewReaderSize(r, max)
	for {
		b, err := br.ReadSlice('\n')
		switch {
		case err == nil:
			fn(b, false)
		case errors.Is(err, bufio.ErrBufferFull):
			fn(b, true)
			for errors.Is(err, bufio.ErrBufferFull) {
				_, err = br.ReadSlice('\n')
			}
			if err != nil {
				return
			}
		default:
			if len(b) > 0 {
				fn(b, false)
			}
			return
		}
	}
}

// ansiRE matches terminal escape sequences: CSI (colours, cursor moves),
// OSC (titles, links) and two-byte escapes. Matomo colours its output even
// when stdout is a pipe.
var ansiRE = regexp.MustCompile(`\x1b(?:\[[0-?]*[ -/]*[@-~]|\][^\x07\x1b]*(?:\x07|\x1b\\)?|[@-Z\\-_])`)

// cleanLine turns raw bytes into printable text: no escape sequences, valid
// UTF-8, no control characters but tabs, no trailing blanks.
func cleanLine(b []byte) string {
	b = bytes.TrimRight(b, "\r\n")
	if bytes.IndexByte(b, 0x1b) >= 0 {
		b = ansiRE.ReplaceAll(b, nil)
	}
	s := strings.ToValidUTF8(string(b), "\uFFFD")
	s = strings.Map(func(r rune) rune {
		if r == '\t' || (r >= 0x20 && r != 0x7f) {
			return r
		}
		return -1
	}, s)
	return strings.TrimRight(s, " \t")
}

// Matomo's console log line: `INFO      [12:09:33] 12597  message`.
var prefixRE = regexp.MustCompile(`^(DEBUG|INFO|NOTICE|WARNING|ERROR|CRITICAL|ALERT|EMERGENCY) +\[[^\]]*\] +(?:[0-9]+ )?(.*)$`)

var matomoLevels = map[string]slog.Level{
	"DEBUG":     slog.LevelDebug,
	"INFO":      slog.LevelInfo,
	"NOTICE":    slog.LevelInfo,
	"WARNING":   slog.LevelWarn,
	"ERROR":     slog.LevelError,
	"CRITICAL":  slog.LevelError,
	"ALERT":     slog.LevelError,
	"EMERGENCY": slog.LevelError,
}

var (
	archivedRE  = regexp.MustCompile(`^Archived website id ([0-9]+), period = ([a-z]+), date = ([0-9,-]+), segment = '(.*)', (?:plugin = ([^,]*), )?(?:report = ([^,]*), )?([0-9]+) visits found\.(?: Time elapsed: ([0-9.,]+)s)?`)
	finishedRE  = regexp.MustCompile(`^Finished archiving for site [0-9]+\b.*?(?:\[([0-9]+) / ([0-9]+) done\])?$`)
	processedRE = regexp.MustCompile(`^Processed ([0-9]+) archives\.`)
	doneRE      = regexp.MustCompile(`^done: ([0-9]+) req, [0-9]+ ms, (?:no error|([0-9]+) errors?)`)
	// PHP's own fatal messages, written to stderr when display_errors=stderr.
	phpFatalRE = regexp.MustCompile(`^(?:PHP )?(?:Fatal error|Parse error)\b`)
)

const (
	logDeletionPrefix = "Warning: the following Dates have not been invalidated, because they are earlier than your Log Deletion limit:"
	invalidatedPrefix = "Success. The following dates were invalidated successfully:"
)

// ArchivedLine is one `Archived website id …` line of core:archive.
type ArchivedLine struct {
	IDSite  int
	Period  string // day, week, month, year, range
	Date    string // period start in the site's calendar; "from,to" for ranges
	Segment string // "" for the plain archive
	Plugin  string // set for plugin-only archives (done.<Plugin>)
	Visits  int
	Elapsed time.Duration
}

// parser reads console lines into a Result as they arrive. It keeps state
// across lines (multi-line messages) and is not safe for concurrent use.
type parser struct {
	res *Result

	lastLevel  map[string]slog.Level // level of the last Matomo-prefixed line, per stream
	inWarning  bool                  // inside the multi-line log-deletion warning
	warning    []string
	stoppedBy  string // "Archiving will stop now because …" other than the skip reasons
	lastStderr string
	tail       []string
	// processedLine: the run printed `Processed N archives.`
	processedLine bool
}

func newParser(res *Result) *parser {
	return &parser{res: res, lastLevel: map[string]slog.Level{}}
}

// line digests one raw line from stream ("stdout" or "stderr") and returns
// its cleaned text and the level to log it at; ok is false for blank lines.
func (p *parser) line(stream string, raw []byte) (text string, level slog.Level, ok bool) {
	text = cleanLine(raw)
	if strings.TrimSpace(text) == "" {
		return "", 0, false
	}
	p.keep(text)

	msg := strings.TrimSpace(text)
	if m := prefixRE.FindStringSubmatch(text); m != nil {
		level = matomoLevels[m[1]]
		msg = strings.TrimSpace(m[2])
		p.lastLevel[stream] = level
		if stream == "stdout" {
			p.inWarning = false
		}
	} else if stream == "stderr" {
		// Unprefixed stderr is Symfony's boxed exception and the command
		// synopsis (the same message is on stdout as ERROR), or PHP's own
		// warnings and notices: worth a warning, not an error, unless fatal.
		level = slog.LevelWarn
		if phpFatalRE.MatchString(msg) {
			level = slog.LevelError
		}
	} else {
		// Continuation of a multi-line message: same level as its first line.
		level = p.lastLevel[stream]
		if p.inWarning {
			p.warning = append(p.warning, msg)
		}
	}
	if strings.Contains(msg, "Uncaught exception") {
		level = slog.LevelError
	}
	if stream == "stderr" {
		p.lastStderr = msg
	} else {
		p.parse(msg)
	}
	if level >= slog.LevelError {
		p.res.ErrorLines++
		if p.res.FirstError == "" {
			p.res.FirstError = msg
		}
	}
	return text, level, true
}

func (p *parser) keep(text string) {
	if len(p.tail) == tailLines {
		copy(p.tail, p.tail[1:])
		p.tail = p.tail[:tailLines-1]
	}
	p.tail = append(p.tail, text)
}

// parse extracts what a stdout message says about the run.
func (p *parser) parse(msg string) {
	r := p.res
	switch {
	case strings.HasPrefix(msg, "Archived website id "):
		m := archivedRE.FindStringSubmatch(msg)
		if m == nil {
			return
		}
		r.ArchivedCount++
		if len(r.Archived) >= maxArchived {
			return
		}
		a := ArchivedLine{Period: m[2], Date: m[3], Segment: m[4], Plugin: m[5]}
		a.IDSite, _ = strconv.Atoi(m[1])
		a.Visits, _ = strconv.Atoi(m[7])
		if s, err := strconv.ParseFloat(strings.ReplaceAll(m[8], ",", ""), 64); err == nil && m[8] != "" {
			a.Elapsed = time.Duration(s * float64(time.Second))
		}
		r.Archived = append(r.Archived, a)
	case strings.HasPrefix(msg, "Finished archiving for site "):
		r.SitesFinished++
		if m := finishedRE.FindStringSubmatch(msg); m != nil && m[2] != "" {
			r.SitesTotal, _ = strconv.Atoi(m[2])
		}
	case strings.HasPrefix(msg, "Processed "):
		if m := processedRE.FindStringSubmatch(msg); m != nil {
			r.ArchivesProcessed, _ = strconv.Atoi(m[1])
			p.processedLine = true
		}
	case strings.HasPrefix(msg, "done: "):
		if m := doneRE.FindStringSubmatch(msg); m != nil {
			r.Summary = true
			r.Requests, _ = strconv.Atoi(m[1])
			r.Errors, _ = strconv.Atoi(m[2]) // "" (no error) gives 0
		}
	case strings.Contains(msg, "because maintenance mode is enabled"):
		// "Archiving won't run because …" at start, "Archiving will stop now
		// because …" when maintenance mode is switched on during a run.
		r.SkipReason = SkipMaintenanceMode
	case strings.HasPrefix(msg, "Reached maximum concurrent archivers allowed"),
		strings.HasPrefix(msg, "Archiving will stop now because") && strings.Contains(msg, "archivers are already running"):
		r.SkipReason = SkipConcurrencyLimit
	case strings.HasPrefix(msg, "Archiving will stop now because"),
		strings.HasPrefix(msg, "Archiving stopped by stop archiver exception"):
		// e.g. "… because signal to abort received": someone stopped it.
		p.stoppedBy = msg
	case strings.HasPrefix(msg, logDeletionPrefix):
		p.inWarning = true
		p.warning = append(p.warning[:0], msg)
		r.LogDeletionSkipped = append(r.LogDeletionSkipped, dateList(msg[len(logDeletionPrefix):])...)
	case strings.HasPrefix(msg, invalidatedPrefix):
		r.Invalidated = append(r.Invalidated, dateList(msg[len(invalidatedPrefix):])...)
	}
}

// dateList splits Matomo's ", "-separated date lists.
func dateList(s string) []string {
	var out []string
	for _, d := range strings.Split(s, ",") {
		if d = strings.TrimSpace(d); d != "" {
			out = append(out, d)
		}
	}
	return out
}

// finish copies what only makes sense at the end into the Result.
func (p *parser) finish() {
	p.res.Tail = p.tail
	// A run stopped before its summary (timeout, SIGTERM) still archived
	// what it printed: count those lines rather than report 0.
	if !p.processedLine {
		p.res.ArchivesProcessed = p.res.ArchivedCount
	}
	if len(p.warning) > 0 {
		p.res.LogDeletionWarning = strings.Join(p.warning, "\n")
	}
}
