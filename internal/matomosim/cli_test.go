package main

import (
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/matomod/matomod/internal/matomo"
)

// runIn runs the simulator in-process against a bare Matomo directory (no
// database: only commands that do not need one).
func runIn(t *testing.T, args ...string) (string, string, int) {
	t.Helper()
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "config"), 0o755)
	os.WriteFile(filepath.Join(dir, "console"), []byte("<?php\n"), 0o644)
	var out, errb strings.Builder
	argv := []string{}
	for _, a := range args {
		argv = append(argv, strings.ReplaceAll(a, "CONSOLE", filepath.Join(dir, "console")))
	}
	code := run(argv, &out, &errb)
	return out.String(), strings.ReplaceAll(errb.String(), dir, "/var/www/matomo"), code
}

func TestCommandLine(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		out, err   string
		code       int
		outContain string
	}{
		{args: []string{"-d", "memory_limit=1G", "-dmax_execution_time=0", "-n", "CONSOLE", "--version", "--no-ansi"}, out: "Matomo 5.0.2\n"},
		{args: []string{"CONSOLE", "-V"}, out: "Matomo \x1b[32m5.0.2\x1b[39m\n"},
		{args: []string{"CONSOLE", "core:vers"}, out: "5.0.2\n"},
		{args: []string{"CONSOLE", "core:archive", "-V"}, out: "Matomo \x1b[32m5.0.2\x1b[39m\n"},
		{args: []string{"/nonexistent/console", "core:archive"}, out: "Could not open input file: /nonexistent/console\n", code: 1},
		{args: []string{"CONSOLE", "no-such:command", "--no-ansi"}, code: 1, outContain: "Uncaught exception: ",
			err: "\n                                                             \n  There are no commands defined in the \"no-such\" namespace.  \n                                                             \n\n"},
		{args: []string{"CONSOLE", "core:", "--no-ansi"}, code: 1, outContain: `Command "core:" is ambiguous.`},
		{args: []string{"CONSOLE", "core:archive", "--bogus", "--no-ansi"}, code: 1, outContain: `The "--bogus" option does not exist.`},
		{args: []string{"CONSOLE", "core:archive", "--url", "--no-ansi"}, code: 1, outContain: `The "--url" option requires a value.`},
		{args: []string{"CONSOLE", "core:archive", "stray", "--no-ansi"}, code: 1, outContain: `No arguments expected for "core:archive" command, got "stray".`},
		{args: []string{"CONSOLE", "list", "--no-ansi"}, outContain: "Matomo 5.0.2\n"},
		{args: []string{"CONSOLE", "core:archive", "--help"}, outContain: "core:archive [options]"},
	} {
		out, errOut, code := runIn(t, tc.args...)
		if code != tc.code || (tc.out != "" && out != tc.out) || !strings.Contains(out, tc.outContain) || (tc.err != "" && errOut != tc.err) {
			t.Errorf("%v: exit %d\nstdout %q\nstderr %q", tc.args, code, out, errOut)
		}
	}
}

func TestErrorBoxWrapsAt79Columns(t *testing.T) {
	t.Setenv("COLUMNS", "")
	var out, errb strings.Builder
	a := &app{out: &out, errw: &errb, dir: "/var/www/matomo", cmd: &command{name: "x:y", opts: []optDef{{name: "dates", mode: valueRequired}}}}
	a.fail(&consoleErr{file: "a/B.php", line: 7, msg: strings.Repeat("0123456789", 8)})
	want := "\nIn B.php line 7:\n" +
		strings.Repeat(" ", 79) + "\n" +
		"  " + strings.Repeat("0123456789", 7) + "01234  \n" +
		"  56789" + strings.Repeat(" ", 72) + "\n" +
		strings.Repeat(" ", 79) + "\n\n" +
		"x:y [--dates DATES]\n\n"
	if errb.String() != want {
		t.Errorf("stderr:\n%q\nwant\n%q", errb.String(), want)
	}
	if !strings.HasPrefix(out.String(), "ERROR     [") || !strings.Contains(out.String(), "  Uncaught exception: /var/www/matomo/a/B.php(7): 0123") {
		t.Errorf("stdout %q", out.String())
	}
}

func TestPeriods(t *testing.T) {
	d := func(s string) matomo.Date { v, _ := matomo.ParseDate(s); return v }
	str := func(ps []period) []string {
		var out []string
		for _, p := range ps {
			out = append(out, p.label()+" "+p.start.String())
		}
		return out
	}
	if w := periodOf(matomo.PeriodWeek, d("2026-11-01")); w.start != d("2026-10-26") || w.end != d("2026-11-01") {
		t.Errorf("week of Sunday 2026-11-01: %v..%v", w.start, w.end)
	}
	nov := periodOf(matomo.PeriodMonth, d("2026-11-15"))
	want := []string{"day 2026-11-01", "week 2026-11-02", "week 2026-11-09", "week 2026-11-16", "week 2026-11-23", "day 2026-11-30"}
	if got := str(nov.subperiods()); !slices.Equal(got, want) {
		t.Errorf("November is built from %v, want %v", got, want)
	}
	if got := str(periodOf(matomo.PeriodWeek, d("2026-10-28")).parents()); !slices.Equal(got, []string{"month 2026-10-01", "month 2026-11-01", "year 2026-01-01"}) {
		t.Errorf("parents of the week across October/November: %v", got)
	}
	year := str(periodOf(matomo.PeriodYear, d("2026-05-05")).cascade())
	if !slices.Contains(year, "week 2026-12-28") || slices.Contains(year, "day 2027-01-01") || len(year) != 12+53+365 {
		t.Errorf("cascade of 2026: %d periods, week 2026-12-28 %v", len(year), slices.Contains(year, "week 2026-12-28"))
	}
	starts, ok := periodDates(matomo.PeriodDay, "2026-11-20,2026-11-10", d("2026-11-27").Time())
	if !ok || len(starts) != 1 || starts[0] != d("2026-11-10") {
		t.Errorf("reversed range: %v %v", starts, ok)
	}
	if _, ok := periodDates(matomo.PeriodDay, "2026-13-45", d("2026-11-27").Time()); ok {
		t.Error("2026-13-45 accepted")
	}
}
