package archiver

import (
	"bytes"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/matomod/matomod/internal/matomotest"
)

// fixturesDir is Matomo's captured console output (testdata/fixtures).
func fixturesDir(t *testing.T) string {
	t.Helper()
	return filepath.Join(matomotest.Fixtures(t), "console")
}

type fixture struct {
	name           string
	args           []string // console arguments from the "# argv:" header
	exit           int
	stdout, stderr []byte
	base           string
}

func loadFixture(t *testing.T, dir, name string) fixture {
	t.Helper()
	f := fixture{name: name, base: filepath.Join(dir, name)}
	read := func(ext string) []byte {
		b, err := os.ReadFile(f.base + ext)
		if err != nil {
			t.Fatal(err)
		}
		return b
	}
	f.stdout, f.stderr = read(".stdout"), read(".stderr")
	var err error
	if f.exit, err = strconv.Atoi(strings.TrimSpace(string(read(".exit")))); err != nil {
		t.Fatalf("%s.exit: %v", name, err)
	}
	for l := range strings.Lines(string(read(".txt"))) {
		if argv, ok := strings.CutPrefix(strings.TrimSpace(l), "# argv: php console "); ok {
			f.args = strings.Fields(argv)
		}
	}
	if len(f.args) == 0 {
		t.Fatalf("%s.txt has no '# argv: php console …' header", name)
	}
	return f
}

func allFixtures(t *testing.T) []fixture {
	dir := fixturesDir(t)
	names, err := filepath.Glob(filepath.Join(dir, "*.exit"))
	if err != nil || len(names) == 0 {
		t.Fatalf("no fixtures in %s: %v", dir, err)
	}
	var fs []fixture
	for _, n := range names {
		fs = append(fs, loadFixture(t, dir, strings.TrimSuffix(filepath.Base(n), ".exit")))
	}
	return fs
}

// analyze parses captured output the way Run does, without a process:
// stdout first, then stderr.
func analyze(args []string, exit int, stdout, stderr []byte) Result {
	res := Result{Command: args[0], ExitCode: exit}
	p := newParser(&res)
	for _, s := range []struct {
		name string
		data []byte
	}{{"stdout", stdout}, {"stderr", stderr}} {
		readLines(bytes.NewReader(s.data), maxLineBytes, func(b []byte, _ bool) { p.line(s.name, b) })
	}
	p.finish()
	classify(&res, p, procResult{})
	return res
}

func TestParseFixtures(t *testing.T) {
	dir := fixturesDir(t)
	type want struct {
		outcome                      Outcome
		skip                         string
		summary                      bool
		processed, requests, errors  int
		finished, total, archived    int
		errorLines                   int
		firstError, errText          string // substrings
		invalidated, logDeletionDays []string
		warning                      string
	}
	tests := map[string]want{
		"a_archive_first_run":            {outcome: OutcomeSuccess, summary: true, processed: 56, requests: 56, finished: 4, total: 4, archived: 56},
		"b4_archive_no_ansi_flag":        {outcome: OutcomeSuccess, summary: true, finished: 4, total: 4},
		"b_archive_third_run_ansi":       {outcome: OutcomeSuccess, summary: true, finished: 4, total: 4},
		"c_archive_maintenance_mode":     {outcome: OutcomeSkipped, skip: SkipMaintenanceMode},
		"c2_invalidate_maintenance_mode": {outcome: OutcomeSuccess},
		"d_archive_db_stopped": {outcome: OutcomeFailure, errorLines: 1,
			firstError: "SQLSTATE[HY000] [2002] Connection refused", errText: "core:archive exited with code 255: Uncaught exception"},
		"d2_invalidate_db_stopped": {outcome: OutcomeFailure, errorLines: 1,
			firstError: "there are no sites with IDs = 1", errText: "core:invalidate-report-data exited with code 1"},
		"e1_archive_force_idsites_1":  {outcome: OutcomeSuccess, summary: true, finished: 1, total: 1},
		"e3_archive_force_idsites_99": {outcome: OutcomeSuccess, summary: true},
		"f_archive_unknown_option": {outcome: OutcomeFailure, errorLines: 1,
			firstError: `The "--no-such-option" option does not exist.`, errText: "exited with code 1"},
		"f2_unknown_command":            {outcome: OutcomeSuccess, summary: true, finished: 4, total: 4},
		"f3_unknown_command":            {outcome: OutcomeFailure, errorLines: 1, firstError: `no commands defined in the "no-such" namespace`},
		"g1_invalidate_site3_days":      {outcome: OutcomeSuccess},
		"g2_archive_after_invalidation": {outcome: OutcomeSuccess, summary: true, processed: 5, requests: 5, finished: 4, total: 4, archived: 5},
		"g3_invalidate_verbose":         {outcome: OutcomeSuccess, invalidated: []string{"2026-11-14", "2026-11-15"}},
		"g4_invalidate_all_periods_cascade": {outcome: OutcomeSuccess,
			invalidated: []string{"2026-11-01", "2026-10-26", "2026-11-01", "2026-01-01"}},
		"g5_archive_after_cascade":              {outcome: OutcomeSuccess, summary: true, processed: 27, requests: 27, finished: 4, total: 4, archived: 27},
		"h_invalidate_dry_run":                  {outcome: OutcomeSuccess},
		"i3_invalidate_bad_date":                {outcome: OutcomeFailure, errorLines: 1, firstError: "Invalid date or date range specifier '2026-13-45'"},
		"i8_invalidate_range_reversed":          {outcome: OutcomeSuccess},
		"j1_invalidate_older_than_log_deletion": {outcome: OutcomeSuccess},
		"j1v_invalidate_older_than_log_deletion_verbose": {outcome: OutcomeSuccess,
			logDeletionDays: []string{"2026-11-12"},
			warning: "Warning: the following Dates have not been invalidated, because they are earlier than your Log Deletion limit: 2026-11-12\n" +
				"The last day with logs is 2026-11-17.\n" +
				"Please disable 'Delete old Logs' or set it to a higher deletion threshold (eg. 180 days or 365 years).'."},
		"j2v_invalidate_range_across_log_deletion_verbose": {outcome: OutcomeSuccess,
			logDeletionDays: []string{"2026-11-12", "2026-11-13", "2026-11-14", "2026-11-15", "2026-11-16"},
			invalidated:     []string{"2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"},
			warning:         "Please disable 'Delete old Logs'"},
		"m1_concurrent_first":         {outcome: OutcomeSuccess, summary: true, processed: 33, requests: 33, finished: 2, total: 4, archived: 33},
		"m1_concurrent_second":        {outcome: OutcomeSuccess, summary: true, processed: 29, requests: 29, finished: 2, total: 3, archived: 29},
		"m2_concurrent_second_limit1": {outcome: OutcomeSkipped, skip: SkipConcurrencyLimit},
		"core_archive_help":           {outcome: OutcomeFailure, errText: "without its summary line"},
		"version_V":                   {outcome: OutcomeSuccess},
	}
	for name, w := range tests {
		t.Run(name, func(t *testing.T) {
			f := loadFixture(t, dir, name)
			r := analyze(f.args, f.exit, f.stdout, f.stderr)
			if r.Outcome != w.outcome || r.SkipReason != w.skip {
				t.Errorf("outcome %s/%q, want %s/%q (err %v)", r.Outcome, r.SkipReason, w.outcome, w.skip, r.Err)
			}
			if r.ExitCode != f.exit {
				t.Errorf("exit code %d, want %d", r.ExitCode, f.exit)
			}
			got := []int{r.ArchivesProcessed, r.Requests, r.Errors, r.SitesFinished, r.SitesTotal, r.ArchivedCount, len(r.Archived), r.ErrorLines}
			exp := []int{w.processed, w.requests, w.errors, w.finished, w.total, w.archived, w.archived, w.errorLines}
			if !slices.Equal(got, exp) {
				t.Errorf("processed, requests, errors, finished, total, archived, len(Archived), errorLines = %v, want %v", got, exp)
			}
			if r.Summary != w.summary {
				t.Errorf("summary %v, want %v", r.Summary, w.summary)
			}
			if !strings.Contains(r.FirstError, w.firstError) || (w.firstError == "") != (r.FirstError == "") {
				t.Errorf("first error %q, want it to contain %q", r.FirstError, w.firstError)
			}
			if (r.Err == nil) != (w.errText == "" && w.outcome != OutcomeFailure) || (r.Err != nil && !strings.Contains(r.Err.Error(), w.errText)) {
				t.Errorf("err %v, want one containing %q", r.Err, w.errText)
			}
			if !slices.Equal(r.Invalidated, w.invalidated) {
				t.Errorf("invalidated %q, want %q", r.Invalidated, w.invalidated)
			}
			if !slices.Equal(r.LogDeletionSkipped, w.logDeletionDays) {
				t.Errorf("log deletion skipped %q, want %q", r.LogDeletionSkipped, w.logDeletionDays)
			}
			if !strings.Contains(r.LogDeletionWarning, w.warning) || (w.warning == "") != (r.LogDeletionWarning == "") {
				t.Errorf("log deletion warning %q, want it to contain %q", r.LogDeletionWarning, w.warning)
			}
		})
	}
}

func TestParseArchivedLines(t *testing.T) {
	f := loadFixture(t, fixturesDir(t), "a_archive_first_run")
	r := analyze(f.args, f.exit, f.stdout, f.stderr)
	if len(r.Archived) != 56 {
		t.Fatalf("%d archived lines, want 56", len(r.Archived))
	}
	first := ArchivedLine{IDSite: 1, Period: "day", Date: "2026-11-27", Visits: 2, Elapsed: 855 * time.Millisecond}
	if r.Archived[0] != first {
		t.Errorf("first archived line %+v, want %+v", r.Archived[0], first)
	}
	// "Archived website id 3, period = day, date = 2026-11-20, segment = '', 5 visits found. Time elapsed: 0.833s"
	site3 := ArchivedLine{IDSite: 3, Period: "day", Date: "2026-11-20", Visits: 5, Elapsed: 833 * time.Millisecond}
	if !slices.Contains(r.Archived, site3) {
		t.Errorf("no %+v among the archived lines", site3)
	}
	periods := map[string]int{}
	for _, a := range r.Archived {
		periods[a.Period]++
	}
	if want := map[string]int{"day": 40, "week": 8, "month": 4, "year": 4}; !reflect.DeepEqual(periods, want) {
		t.Errorf("archived per period %v, want %v", periods, want)
	}
}

func TestParseColouredOutput(t *testing.T) {
	f := loadFixture(t, fixturesDir(t), "b4_archive_no_ansi_flag")
	if !bytes.Contains(f.stdout, []byte("\x1b[32m")) {
		t.Fatal("fixture b4 is expected to be coloured")
	}
	r := analyze(f.args, f.exit, f.stdout, f.stderr)
	if want := "INFO      [12:14:36] 20095  Done archiving!"; !slices.Contains(r.Tail, want) {
		t.Errorf("tail %q lacks %q", r.Tail, want)
	}
}

// TestAllFixtures feeds every captured run through the parser and through a
// real process replaying it, and checks that both agree and nothing leaks
// (escape codes, invalid UTF-8).
func TestAllFixtures(t *testing.T) {
	for _, f := range allFixtures(t) {
		t.Run(f.name, func(t *testing.T) {
			t.Parallel()
			direct := analyze(f.args, f.exit, f.stdout, f.stderr)
			if f.exit != 0 && direct.Outcome != OutcomeFailure {
				t.Errorf("exit %d gave outcome %s", f.exit, direct.Outcome)
			}
			for _, l := range direct.Tail {
				if !utf8.ValidString(l) || strings.ContainsAny(l, "\x1b\x00\r\n") {
					t.Errorf("tail line not clean: %q", l)
				}
			}

			c, _ := helperConsole(t, "fixture", fixtureEnv+"="+f.base)
			r := c.Run(t.Context(), RunOptions{}, f.args...)
			if slices.Contains(f.args, forbiddenFlag) {
				if r.Outcome != OutcomeFailure || r.Err == nil || !strings.Contains(r.Err.Error(), forbiddenFlag+" refused") || r.Argv != nil {
					t.Errorf("%s was not refused: %+v", forbiddenFlag, r)
				}
				return
			}
			// Stream order differs between the two (two pipes), so the tail
			// is compared as a set.
			if !sameSet(r.Tail, direct.Tail) {
				t.Errorf("tail via process %q\nwant %q", r.Tail, direct.Tail)
			}
			errString := func(e error) string {
				if e == nil {
					return ""
				}
				return e.Error()
			}
			if errString(r.Err) != errString(direct.Err) {
				t.Errorf("err via process %v, want %v", r.Err, direct.Err)
			}
			for _, x := range []*Result{&r, &direct} {
				x.RunID, x.Argv, x.Start, x.Duration, x.Tail, x.Err = "", nil, time.Time{}, 0, nil, nil
			}
			if !reflect.DeepEqual(r, direct) {
				t.Errorf("via process:\n%+v\nparsed:\n%+v", r, direct)
			}
		})
	}
}

func sameSet(a, b []string) bool {
	a, b = slices.Clone(a), slices.Clone(b)
	slices.Sort(a)
	slices.Sort(b)
	return slices.Equal(a, b)
}
