package archiver

import (
	"bytes"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func TestArgv(t *testing.T) {
	c := &Console{PHP: "/usr/bin/php8.2", PHPOptions: []string{"-d", "memory_limit=2G"}, Dir: "/var/www/matomo"}
	got := c.Argv("core:archive", "--no-ansi")
	want := []string{"/usr/bin/php8.2", "-d", "memory_limit=2G", "/var/www/matomo/console", "core:archive", "--no-ansi"}
	if !slices.Equal(got, want) {
		t.Errorf("Argv = %q, want %q", got, want)
	}
	c = &Console{ConsolePath: "/opt/matomo/console"}
	if got := c.Argv("list"); !slices.Equal(got, []string{"php", "/opt/matomo/console", "list"}) {
		t.Errorf("Argv defaults = %q", got)
	}
	if c.dir() != "/opt/matomo" {
		t.Errorf("dir() = %q, want the console's directory", c.dir())
	}
}

func TestArchiveArgs(t *testing.T) {
	tests := []struct {
		url   string
		sites []int
		extra []string
		want  string
		err   string
	}{
		{url: "", want: "core:archive --no-ansi"},
		{url: "https://matomo.example.org/", extra: []string{"--concurrent-archivers=1"},
			want: "core:archive --no-ansi --url=https://matomo.example.org/ --concurrent-archivers=1"},
		{sites: []int{3, 1, 3}, want: "core:archive --no-ansi --force-idsites=1,3"},
		{sites: []int{}, err: "core:archive: empty site list: pass at least one site id"},
		{sites: []int{1, 0}, err: "core:archive: site id 0 is not valid: site ids are positive"},
	}
	for _, tt := range tests {
		got, err := ArchiveArgs(tt.url, tt.sites, tt.extra)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("ArchiveArgs(%q, %v) error %v, want %q", tt.url, tt.sites, err, tt.err)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != tt.want {
			t.Errorf("ArchiveArgs(%q, %v) = %q, %v; want %q", tt.url, tt.sites, got, err, tt.want)
		}
	}
}

func TestInvalidateArgs(t *testing.T) {
	tests := []struct {
		site     int
		from, to string
		want     string
		err      string
	}{
		{3, "2026-11-14", "2026-11-15", "core:invalidate-report-data --no-ansi -v --sites=3 --dates=2026-11-14,2026-11-15 --periods=day", ""},
		{1, "2026-11-20", "2026-11-20", "core:invalidate-report-data --no-ansi -v --sites=1 --dates=2026-11-20 --periods=day", ""},
		{0, "2026-11-20", "2026-11-20", "", "core:invalidate-report-data: site id 0 is not valid: site ids are positive"},
		{1, "2026-13-45", "2026-11-20", "", `core:invalidate-report-data: from date "2026-13-45" is not YYYY-MM-DD: pass a date like 2026-11-20`},
		{1, "2026-11-20", "yesterday", "", `core:invalidate-report-data: to date "yesterday" is not YYYY-MM-DD: pass a date like 2026-11-20`},
		{1, "2026-11-20", "2026-11-10", "", "core:invalidate-report-data: date range 2026-11-20,2026-11-10 is reversed: pass from <= to"},
	}
	for _, tt := range tests {
		got, err := InvalidateArgs(tt.site, tt.from, tt.to)
		if tt.err != "" {
			if err == nil || err.Error() != tt.err {
				t.Errorf("InvalidateArgs(%d, %s, %s) error %v, want %q", tt.site, tt.from, tt.to, err, tt.err)
			}
			continue
		}
		if err != nil || strings.Join(got, " ") != tt.want {
			t.Errorf("InvalidateArgs(%d, %s, %s) = %q, %v; want %q", tt.site, tt.from, tt.to, got, err, tt.want)
		}
		if slices.Contains(got, forbiddenFlag) {
			t.Errorf("InvalidateArgs passes %s", forbiddenFlag)
		}
	}
}

func TestInvalidateAndArchiveSitesRefuseBadInput(t *testing.T) {
	c, sink := helperConsole(t, "args")
	for _, r := range []Result{
		c.Invalidate(t.Context(), RunOptions{}, 1, "2026-11-20", "2026-11-01"),
		c.ArchiveSites(t.Context(), RunOptions{}, "", nil, nil),
	} {
		if r.Outcome != OutcomeFailure || r.ExitCode != -1 || r.Err == nil || r.RunID == "" {
			t.Errorf("got %+v, want a refused run", r)
		}
	}
	if len(sink.events("console_started")) != 0 || len(sink.events("console_finished")) != 2 {
		t.Errorf("records %v", sink.records())
	}
}

func TestCheck(t *testing.T) {
	dir := t.TempDir()
	console := filepath.Join(dir, "console")
	if err := os.WriteFile(console, []byte("<?php\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	notExec := filepath.Join(dir, "php")
	if err := os.WriteFile(notExec, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	exe, _ := os.Executable()

	if err := (&Console{PHP: exe, Dir: dir}).Check(); err != nil {
		t.Errorf("Check() on a good setup: %v", err)
	}
	t.Setenv("PATH", dir)
	tests := []struct {
		c    Console
		want []string
	}{
		{Console{PHP: "php-nope", Dir: dir}, []string{`php_binary "php-nope" not found in PATH: install the PHP CLI or set php_binary to its full path`}},
		{Console{PHP: notExec, Dir: dir}, []string{"php_binary " + notExec + " is not an executable file: set php_binary to the PHP CLI's path"}},
		{Console{PHP: exe, Dir: filepath.Join(dir, "missing")}, []string{
			"matomo console " + filepath.Join(dir, "missing", "console") + ": stat ",
			"matomo directory " + filepath.Join(dir, "missing") + ": stat "}},
		{Console{PHP: exe, ConsolePath: dir}, []string{"matomo console " + dir + " is a directory"}},
	}
	for _, tt := range tests {
		err := tt.c.Check()
		if err == nil {
			t.Errorf("Check(%+v) = nil, want %q", tt.c, tt.want)
			continue
		}
		lines := strings.Split(err.Error(), "\n")
		if len(lines) != len(tt.want) {
			t.Errorf("Check(%+v) = %q, want %d problems", tt.c, err, len(tt.want))
			continue
		}
		for i, w := range tt.want {
			if !strings.HasPrefix(lines[i], w) {
				t.Errorf("Check(%+v) problem %d = %q, want prefix %q", tt.c, i, lines[i], w)
			}
		}
	}
}

func TestCleanLine(t *testing.T) {
	tests := map[string]string{
		"\x1b[32mINFO      [12:14:35] 20095 \x1b[39m ---\n": "INFO      [12:14:35] 20095  ---",
		"a\x1b]8;;http://x\x1b\\link\x1b]8;;\x1b\\b\r\n":    "alinkb",
		"bad \xff\xfe utf8 \xc3":                            "bad \uFFFD utf8 \uFFFD",
		"nul\x00 bell\x07 del\x7f tab\tend   ":              "nul bell del tab\tend",
		"progress 10%\rprogress 20%":                        "progress 10%progress 20%",
	}
	for in, want := range tests {
		if got := cleanLine([]byte(in)); got != want {
			t.Errorf("cleanLine(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestReadLines(t *testing.T) {
	in := "short\n" + strings.Repeat("a", 10) + "\n" + strings.Repeat("b", 25) + "\nend"
	var got []string
	var cut []bool
	readLines(strings.NewReader(in), 16, func(b []byte, truncated bool) {
		got = append(got, string(bytes.TrimSuffix(b, []byte("\n"))))
		cut = append(cut, truncated)
	})
	want := []string{"short", "aaaaaaaaaa", strings.Repeat("b", 16), "end"}
	if !slices.Equal(got, want) || !slices.Equal(cut, []bool{false, false, true, false}) {
		t.Errorf("readLines = %q %v, want %q [false false true false]", got, cut, want)
	}
}

func TestNewRunID(t *testing.T) {
	a, b := NewRunID(), NewRunID()
	if len(a) != 16 || a == b {
		t.Errorf("NewRunID() = %q, %q", a, b)
	}
}
