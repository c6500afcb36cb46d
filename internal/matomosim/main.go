package main

import (
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"time"
	"unicode/utf8"

	"github.com/go-sql-driver/mysql"

	"github.com/matomod/matomod/internal/matomo"
)

func main() {
	knobsFromPHPOptions(os.Args[1:])
	if os.Getenv("MATOMOSIM_IGNORE_TERM") == "1" {
		signal.Ignore(syscall.SIGTERM)
	}
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// app is one console invocation.
type app struct {
	dir     string // Matomo root, absolute
	console string // console path as given
	out     io.Writer
	errw    io.Writer
	ansi    bool
	quiet   bool
	verbose int
	pid     int
	started time.Time // real clock at start
	base    time.Time // simulated clock at start
	version string
	cmd     *command // the running command, for the synopsis under errors
	knobs   knobs
	warned  bool // a warning was logged: Matomo 5 then exits 1 unless --ignore-warn
}

// now is the simulated clock: MATOMOSIM_NOW plus the real time elapsed.
func (a *app) now() time.Time { return a.base.Add(time.Since(a.started)).UTC() }

func run(args []string, stdout, stderr io.Writer) int {
	k, err := readKnobs()
	if err != nil {
		fmt.Fprintln(stderr, "matomosim:", err)
		return 2
	}
	a := &app{out: stdout, errw: stderr, ansi: true, pid: os.Getpid(), started: time.Now(), base: time.Now(), knobs: k}
	if !k.now.IsZero() {
		a.base = k.now
	}
	console, rest := splitPHPArgs(args)
	if console == "" {
		fmt.Fprintln(stdout, "Usage: php [options] [-f] <file> [--] [args...]")
		return 1
	}
	if _, err := os.Stat(console); err != nil {
		fmt.Fprintf(stdout, "Could not open input file: %s\n", console)
		return 1
	}
	a.console = console
	abs, err := filepath.Abs(console)
	if err != nil {
		fmt.Fprintln(stderr, "matomosim:", err)
		return 1
	}
	a.dir = filepath.Dir(abs)
	a.version = "5.0.2"
	if v, err := matomo.CodeVersion(a.dir); err == nil {
		a.version = v
	}
	code := a.dispatch(rest)
	if k.exit >= 0 {
		code = k.exit
	}
	return code
}

// splitPHPArgs skips the PHP CLI's own options and returns the script path
// and the script's arguments.
func splitPHPArgs(args []string) (string, []string) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		switch {
		case a == "--":
			continue
		case a == "-f" && i+1 < len(args):
			return args[i+1], args[i+2:]
		case a == "-d" || a == "-c" || a == "-z":
			i++ // option with a separate value
		case strings.HasPrefix(a, "-") && a != "-":
			// -dX=Y, -cFILE, -n, -q, -e, -H, -C: no separate value
		default:
			return a, args[i+1:]
		}
	}
	return "", nil
}

// knobsFromPHPOptions turns PHP ini options `-d MATOMOSIM_HANG=30s` (given
// before the console path, as matomod's php_cli_options are) into knobs, so
// tests can set them through matomod's own config: matomod passes its
// children a minimal environment.
func knobsFromPHPOptions(args []string) {
	for i := 0; i < len(args); i++ {
		v := args[i]
		switch {
		case v == "-d" && i+1 < len(args):
			i++
			v = args[i]
		case strings.HasPrefix(v, "-d"):
			v = v[2:]
		case strings.HasPrefix(v, "-"):
			continue
		default:
			return // the console path: options end here
		}
		if k, val, ok := strings.Cut(v, "="); ok && strings.HasPrefix(k, "MATOMOSIM_") {
			os.Setenv(k, val)
		}
	}
}

// --- Symfony-like command line ---

type optMode int

const (
	valueNone optMode = iota
	valueRequired
	valueOptional
)

type optDef struct {
	name, short string
	mode        optMode
	array       bool
}

type command struct {
	name, desc string
	opts       []optDef
	run        func(a *app, in *input) int
}

var globalOpts = []optDef{
	{name: "help", short: "h"}, {name: "quiet", short: "q"}, {name: "version", short: "V"},
	{name: "ansi"}, {name: "no-ansi"}, {name: "no-interaction", short: "n"},
	{name: "matomo-domain", mode: valueOptional}, {name: "xhprof"}, {name: "ignore-warn"},
	{name: "verbose", short: "v", mode: valueOptional},
}

var archiveOpts = []optDef{
	{name: "url", mode: valueRequired},
	{name: "skip-idsites", mode: valueOptional},
	{name: "skip-all-segments"},
	{name: "force-idsites", mode: valueOptional},
	{name: "skip-segments-today"},
	{name: "force-periods", mode: valueOptional},
	{name: "force-date-last-n", mode: valueOptional},
	{name: "force-date-range", mode: valueOptional},
	{name: "force-idsegments", mode: valueRequired},
	{name: "concurrent-requests-per-website", mode: valueOptional},
	{name: "concurrent-archivers", mode: valueOptional},
	{name: "max-websites-to-process", mode: valueRequired},
	{name: "max-archives-to-process", mode: valueRequired},
	{name: "disable-scheduled-tasks"},
	{name: "accept-invalid-ssl-certificate"},
	{name: "php-cli-options", mode: valueOptional},
	{name: "force-all-websites"},
	{name: "force-report", mode: valueOptional},
}

var invalidateOpts = []optDef{
	{name: "dates", mode: valueRequired, array: true},
	{name: "sites", mode: valueRequired},
	{name: "periods", mode: valueRequired},
	{name: "segment", mode: valueRequired, array: true},
	{name: "cascade"},
	{name: "dry-run"},
	{name: "plugin", mode: valueRequired},
	{name: "ignore-log-deletion-limit"},
}

func commands() []*command {
	return []*command{
		{name: "core:archive", desc: "Runs the CLI archiver. It is an important tool for general maintenance and to keep Piwik very fast.", opts: archiveOpts, run: runArchive},
		{name: "core:invalidate-report-data", desc: "Invalidate archived report data by date range, site and period.", opts: invalidateOpts, run: runInvalidate},
		{name: "core:version", desc: "Returns the current version information", run: func(a *app, _ *input) int {
			fmt.Fprintln(a.out, a.version)
			return 0
		}},
		{name: "list", desc: "List commands", run: runList},
		{name: "help", desc: "Display help for a command", run: nil},
		{name: "climulti:request", desc: "Parses and executes the given query. See Piwik\\CliMulti. Intended only for system usage.", opts: []optDef{{name: "superuser"}}, run: runClimulti},
	}
}

// synopsis is Symfony's one-line usage, e.g. "core:archive [--url URL] …".
func (c *command) synopsis() string {
	var b strings.Builder
	b.WriteString(c.name)
	for _, o := range c.opts {
		v := strings.ToUpper(o.name)
		switch o.mode {
		case valueNone:
			fmt.Fprintf(&b, " [--%s]", o.name)
		case valueRequired:
			fmt.Fprintf(&b, " [--%s %s]", o.name, v)
		case valueOptional:
			fmt.Fprintf(&b, " [--%s [%s]]", o.name, v)
		}
	}
	return b.String()
}

type input struct {
	vals  map[string][]string
	given map[string]bool
}

func (in *input) has(n string) bool { return in.given[n] }

func (in *input) str(n, def string) string {
	if v := in.vals[n]; len(v) > 0 {
		return v[len(v)-1]
	}
	return def
}

func (in *input) all(n string) []string { return in.vals[n] }

const argvInputPHP = "vendor/prefixed/symfony/console/Input/ArgvInput.php"

func (a *app) dispatch(tokens []string) int {
	// The app-level flags work wherever they appear, as in Symfony.
	name, nameAt := "", -1
	for i, t := range tokens {
		if t == "--" {
			break
		}
		switch {
		case t == "--no-ansi":
			a.ansi = false
		case t == "-q" || t == "--quiet":
			a.quiet = true
		case t == "-v" || t == "--verbose":
			a.verbose = max(a.verbose, 1)
		case t == "-vv":
			a.verbose = max(a.verbose, 2)
		case t == "-vvv":
			a.verbose = 3
		case strings.HasPrefix(t, "--verbose="):
			n, _ := strconv.Atoi(strings.TrimPrefix(t, "--verbose="))
			a.verbose = max(a.verbose, n)
		}
		if name == "" && !strings.HasPrefix(t, "-") && (i == 0 || tokens[i-1] != "--matomo-domain") {
			name, nameAt = t, i
		}
	}
	for _, t := range tokens {
		if t == "--ansi" {
			a.ansi = true
		}
	}
	for _, t := range tokens {
		if t == "--version" || t == "-V" {
			if a.ansi {
				fmt.Fprintf(a.out, "Matomo \x1b[32m%s\x1b[39m\n", a.version)
			} else {
				fmt.Fprintf(a.out, "Matomo %s\n", a.version)
			}
			return 0
		}
	}
	if name == "" {
		name = "list"
	} else {
		tokens = append(append([]string{}, tokens[:nameAt]...), tokens[nameAt+1:]...)
	}
	cmd, cerr := findCommand(name)
	if cerr != nil {
		return a.fail(cerr)
	}
	a.cmd = cmd
	for _, t := range tokens {
		if t == "--help" || t == "-h" {
			return a.help(cmd)
		}
	}
	in, cerr := parseInput(cmd, tokens)
	if cerr != nil {
		return a.fail(cerr)
	}
	if cmd.name == "help" {
		target := cmd
		if args := in.all(""); len(args) > 0 {
			if c, err := findCommand(args[0]); err == nil {
				target = c
			}
		}
		return a.help(target)
	}
	return cmd.run(a, in)
}

func findCommand(name string) (*command, *consoleErr) {
	cmds := commands()
	for _, c := range cmds {
		if c.name == name {
			return c, nil
		}
	}
	appPHP := "vendor/prefixed/symfony/console/Application.php"
	if i := strings.LastIndex(name, ":"); i >= 0 {
		ns := name[:i]
		nsRE := regexp.MustCompile("^" + prefixExpr(ns) + "$")
		found := false
		for _, c := range cmds {
			if j := strings.LastIndex(c.name, ":"); j >= 0 && nsRE.MatchString(c.name[:j]) {
				found = true
			}
		}
		if !found {
			return nil, &consoleErr{file: appPHP, line: 551, symfony: true,
				msg: fmt.Sprintf("There are no commands defined in the %q namespace.", ns)}
		}
	}
	re := regexp.MustCompile("^" + prefixExpr(name))
	var hits []*command
	for _, c := range cmds {
		if re.MatchString(c.name) {
			hits = append(hits, c)
		}
	}
	switch len(hits) {
	case 1:
		return hits[0], nil
	case 0:
		return nil, &consoleErr{file: appPHP, line: 737, symfony: true, msg: fmt.Sprintf("Command %q is not defined.", name)}
	}
	return nil, &consoleErr{file: appPHP, line: 770, symfony: true, msg: fmt.Sprintf("Command %q is ambiguous.", name)}
}

// prefixExpr is Symfony's abbreviation matcher: every ':'-part may be a prefix.
func prefixExpr(name string) string {
	parts := strings.Split(name, ":")
	for i, p := range parts {
		parts[i] = regexp.QuoteMeta(p) + "[^:]*"
	}
	return strings.Join(parts, ":")
}

func parseInput(cmd *command, tokens []string) (*input, *consoleErr) {
	defs := append(append([]optDef{}, globalOpts...), cmd.opts...)
	find := func(long, short string) *optDef {
		for i := range defs {
			if (long != "" && defs[i].name == long) || (short != "" && defs[i].short == short) {
				return &defs[i]
			}
		}
		return nil
	}
	in := &input{vals: map[string][]string{}, given: map[string]bool{}}
	argErr := func(line int, f string, args ...any) *consoleErr {
		return &consoleErr{file: argvInputPHP, line: line, symfony: true, msg: fmt.Sprintf(f, args...)}
	}
	var positional []string
	noMore := false
	for i := 0; i < len(tokens); i++ {
		t := tokens[i]
		switch {
		case noMore || t == "" || t == "-" || !strings.HasPrefix(t, "-"):
			positional = append(positional, t)
		case t == "--":
			noMore = true
		case strings.HasPrefix(t, "--"):
			name, val, hasVal := strings.Cut(t[2:], "=")
			d := find(name, "")
			if d == nil {
				return nil, argErr(194, "The \"--%s\" option does not exist.", name)
			}
			if !hasVal && d.mode != valueNone && i+1 < len(tokens) {
				if next := tokens[i+1]; next == "" || next[0] != '-' {
					val, hasVal = next, true
					i++
				}
			}
			if d.mode == valueNone && hasVal {
				return nil, argErr(225, "The \"--%s\" option does not accept a value.", name)
			}
			if d.mode == valueRequired && !hasVal {
				return nil, argErr(221, "The \"--%s\" option requires a value.", name)
			}
			in.given[d.name] = true
			if hasVal {
				in.vals[d.name] = append(in.vals[d.name], val)
			}
		default:
			s := t[1:]
			if strings.Trim(s, "v") == "" {
				in.given["verbose"] = true
				continue
			}
			for j := 0; j < len(s); j++ {
				d := find("", s[j:j+1])
				if d == nil {
					return nil, argErr(155, "The \"-%s\" option does not exist.", s[j:j+1])
				}
				in.given[d.name] = true
				if d.mode != valueNone {
					if j+1 < len(s) {
						in.vals[d.name] = append(in.vals[d.name], s[j+1:])
					} else if i+1 < len(tokens) && (tokens[i+1] == "" || tokens[i+1][0] != '-') {
						in.vals[d.name] = append(in.vals[d.name], tokens[i+1])
						i++
					} else if d.mode == valueRequired {
						return nil, argErr(221, "The \"--%s\" option requires a value.", d.name)
					}
					break
				}
			}
		}
	}
	if len(positional) > 0 {
		if cmd.name == "help" || cmd.name == "list" {
			in.vals[""] = positional
		} else if cmd.name != "climulti:request" {
			return nil, argErr(181, "No arguments expected for %q command, got %q.", cmd.name, positional[0])
		}
	}
	return in, nil
}

func (a *app) help(c *command) int {
	fmt.Fprintf(a.out, "Description:\n  %s\n\nUsage:\n  %s [options]\n\nOptions:\n", c.desc, c.name)
	for _, o := range append(append([]optDef{}, c.opts...), globalOpts...) {
		fmt.Fprintf(a.out, "  --%s\n", o.name)
	}
	return 0
}

func runList(a *app, _ *input) int {
	fmt.Fprintf(a.out, "Matomo %s\n\nUsage:\n  command [options] [arguments]\n\nAvailable commands:\n", a.version)
	cmds := commands()
	sort.Slice(cmds, func(i, j int) bool { return cmds[i].name < cmds[j].name })
	for _, c := range cmds {
		fmt.Fprintf(a.out, "  %-42s %s\n", c.name, c.desc)
	}
	return 0
}

// --- output ---

var levelColour = map[string]string{"INFO": "32", "WARNING": "36", "ERROR": "33", "DEBUG": "37"}

// log writes one Matomo log line: level padded to 10, UTC time, pid, two
// spaces, message. Real Matomo colours it even into a pipe unless --no-ansi.
func (a *app) log(level, format string, args ...any) {
	if level == "WARNING" {
		a.warned = true
	}
	if a.quiet {
		return
	}
	msg := format
	if len(args) > 0 {
		msg = fmt.Sprintf(format, args...)
	}
	prefix := fmt.Sprintf("%-10s[%s] %d ", level, a.now().Format("15:04:05"), a.pid)
	if a.ansi {
		prefix = "\x1b[" + levelColour[level] + "m" + prefix + "\x1b[39m"
	}
	fmt.Fprintf(a.out, "%s %s\n", prefix, msg)
}

func (a *app) info(format string, args ...any) { a.log("INFO", format, args...) }

func (a *app) section(title string) {
	a.info("---------------------------")
	if title != "" {
		a.info("%s", title)
	}
}

// consoleErr is an uncaught PHP exception as Matomo's console reports it.
type consoleErr struct {
	file    string // relative to the Matomo root
	line    int
	msg     string
	prev    *consoleErr
	symfony bool // Symfony's own console exceptions get no "In file line N:" header
	exit    int  // 0 means 1
}

// fail prints the exception like Matomo: one ERROR line on stdout, Symfony's
// boxed message (and the command synopsis) on stderr.
func (a *app) fail(e *consoleErr) int {
	a.log("ERROR", "Uncaught exception: %s(%d): %s [Query: , CLI mode: 1]", filepath.Join(a.dir, e.file), e.line, e.msg)
	width := 80
	if c, err := strconv.Atoi(strings.TrimSpace(os.Getenv("COLUMNS"))); err == nil && c > 0 {
		width = c
	}
	width--
	style := func(code, reset, s string) string {
		if !a.ansi {
			return s
		}
		return "\x1b[" + code + "m" + s + "\x1b[" + reset + "m"
	}
	var b strings.Builder
	b.WriteString("\n")
	for x := e; x != nil; x = x.prev {
		var lines []string
		longest := 0
		for _, l := range strings.Split(strings.TrimSpace(x.msg), "\n") {
			for _, chunk := range splitWidth(l, width-4) {
				lines = append(lines, chunk)
				longest = max(longest, utf8.RuneCountInString(chunk)+4)
			}
		}
		if !x.symfony {
			b.WriteString(style("33", "39", fmt.Sprintf("In %s line %d:", filepath.Base(x.file), x.line)) + "\n")
		}
		empty := style("37;41", "39;49", strings.Repeat(" ", longest)) + "\n"
		b.WriteString(empty)
		for _, l := range lines {
			b.WriteString(style("37;41", "39;49", "  "+l+"  "+strings.Repeat(" ", longest-4-utf8.RuneCountInString(l))) + "\n")
		}
		b.WriteString(empty + "\n")
	}
	if a.cmd != nil {
		b.WriteString(style("32", "39", a.cmd.synopsis()) + "\n\n")
	}
	io.WriteString(a.errw, b.String())
	if e.exit != 0 {
		return e.exit
	}
	return 1
}

// dbFail reports a database error met after start-up.
func (a *app) dbFail(err error) int {
	msg := "SQLSTATE[HY000]: General error: " + err.Error()
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		state := "HY000"
		if me.SQLState != [5]byte{} {
			state = string(me.SQLState[:])
		}
		msg = fmt.Sprintf("SQLSTATE[%s]: %s", state, me.Message)
	}
	return a.fail(&consoleErr{file: "libs/Zend/Db/Statement/Pdo.php", line: 234, msg: msg})
}

// hang is MATOMOSIM_HANG: stay alive before finishing.
func (a *app) hang() {
	if a.knobs.hang > 0 {
		time.Sleep(a.knobs.hang)
	}
}

func splitWidth(s string, w int) []string {
	r := []rune(s)
	if len(r) == 0 {
		return []string{""}
	}
	var out []string
	for len(r) > w {
		out = append(out, string(r[:w]))
		r = r[w:]
	}
	return append(out, string(r))
}
