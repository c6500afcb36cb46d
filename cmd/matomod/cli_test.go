package main

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomotest"
)

func cli(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := run(args, &out, &errb)
	return code, out.String(), errb.String()
}

// gapEnv: site 3 (UTC+5.5) with a missing day and a good one.
func gapEnv(t *testing.T) (*matomotest.Env, string) {
	e := matomotest.New(t)
	e.AddSite(3, "UTC+5.5", day(30).Format("2006-01-02"))
	e.SetOption("version_core", matomotest.MatomoVersion)
	e.AddVisits(3, day(20).Add(8*time.Hour), 1) // first raw day
	e.AddDayArchive(3, day(20).Format("2006-01-02"), 1, day(18), 1)
	for _, d := range []int{10, 9} {
		e.AddVisits(3, day(d).Add(8*time.Hour), 4)
	}
	e.AddDayArchive(3, day(9).Format("2006-01-02"), 1, day(7), 4)
	archivePeriods(e, 3, map[time.Time]int64{day(20): 1, day(10): 4, day(9): 4}) // weeks, months and years are fine
	return e, writeConfig(t, e, "")
}

func TestGapsCommand(t *testing.T) {
	e, cfg := gapEnv(t)
	code, out, errOut := cli(t, "--config.file="+cfg, "gaps", "--format=json")
	if code != exitFound {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	var res struct {
		ScannedAt string `json:"scanned_at"`
		Window    struct {
			Since, Until string
		} `json:"window"`
		SitesScanned int              `json:"sites_scanned"`
		Gaps         []map[string]any `json:"gaps"`
		Collection   []map[string]any `json:"collection_gaps"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if res.SitesScanned != 1 || len(res.Gaps) != 1 || res.Window.Since != day(30).Format("2006-01-02") {
		t.Fatalf("result: %s", out)
	}
	g := res.Gaps[0]
	if g["idsite"] != float64(3) || g["date"] != day(10).Format("2006-01-02") || g["kind"] != "missing" ||
		g["raw_visits"] != float64(4) || g["archived_visits"] != nil || g["repairable"] != true || g["reason"] != "" {
		t.Errorf("gap: %v", g)
	}
	keys := []string{}
	for k := range g {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	if strings.Join(keys, ",") != "archived_visits,date,date2,idsite,kind,period,raw_visits,reason,repairable" {
		t.Errorf("gap keys: %v", keys)
	}
	code, out, _ = cli(t, "--config.file="+cfg, "gaps")
	if code != exitFound || !regexp.MustCompile(`3\s+day\s+`+day(10).Format("2006-01-02")+`\s+1\s+missing\s+4\s+-\s+yes`).MatchString(out) {
		t.Errorf("table (%d):\n%s", code, out)
	}
	// No gaps in a window without them: exit 0.
	code, _, _ = cli(t, "--config.file="+cfg, "gaps", "--since="+day(9).Format("2006-01-02"))
	if code != exitOK {
		t.Errorf("window without gaps: exit %d", code)
	}
	_ = e
}

func TestBadInputIsOneClearLine(t *testing.T) {
	_, cfg := gapEnv(t)
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"gaps", "--sites=99"}, "site 99 does not exist"},
		{[]string{"gaps", "--sites=x"}, `"x" is not a site id`},
		{[]string{"gaps", "--since=2026-11-20", "--until=2026-11-01"}, "is after --until"},
		{[]string{"gaps", "--since=2026-13-01"}, "--since \"2026-13-01\" is not a date"},
		{[]string{"repair", "--dates=2026-11-01,2026-11-03"}, "--dates needs exactly one site"},
		{[]string{"repair", "--force"}, "--force only goes with --dates"},
		{[]string{"repair", "--sites=3", "--dates=2026-11-05,2026-11-01", "--dry-run"}, "swap them"},
		{[]string{"gaps", "--format=xml"}, "enum value must be one of"},
	}
	for _, c := range cases {
		code, _, errOut := cli(t, append([]string{"--config.file=" + cfg}, c.args...)...)
		if code != exitError || !strings.Contains(errOut, c.want) || strings.Count(strings.TrimSpace(errOut), "\n") > 0 {
			t.Errorf("%v: exit %d, stderr %q, want one line with %q", c.args, code, errOut, c.want)
		}
	}
	// Config problems name the file and the fix.
	bad := filepath.Join(t.TempDir(), "bad.yml")
	os.WriteFile(bad, []byte("gaps:\n  grace: soon\n"), 0o644)
	code, _, errOut := cli(t, "--config.file="+bad, "gaps")
	if code != exitError || !strings.Contains(errOut, bad+": line 2") || !strings.Contains(errOut, "write e.g.") {
		t.Errorf("bad yaml: %d %q", code, errOut)
	}
	code, _, errOut = cli(t, "--config.file="+cfg, "--matomo.dir=/nonexistent", "gaps")
	if code != exitError || !strings.Contains(errOut, "/nonexistent/config/config.ini.php: not found") {
		t.Errorf("missing matomo dir: %d %q", code, errOut)
	}
}

func TestRepairCommand(t *testing.T) {
	e, cfg := gapEnv(t)
	code, out, errOut := cli(t, "--config.file="+cfg, "repair", "--dry-run")
	if code != exitOK || !strings.Contains(out, "core:invalidate-report-data --no-ansi -v --sites=3 --dates="+day(10).Format("2006-01-02")+" --periods=day") ||
		!strings.Contains(out, "--force-idsites=3") || !strings.Contains(out, "planned: 1 day(s)") {
		t.Fatalf("dry run (%d): %s %s", code, out, errOut)
	}
	if n := e.Count("SELECT COUNT(*) FROM {p}archive_invalidations"); n != 0 {
		t.Fatalf("dry run wrote %d invalidations", n)
	}
	// In maintenance mode a real repair refuses.
	e.SetINI("[General]", "maintenance_mode = 1")
	code, _, errOut = cli(t, "--config.file="+cfg, "repair")
	if code != exitError || !strings.Contains(errOut, "maintenance_mode") {
		t.Errorf("repair in maintenance mode: %d %q", code, errOut)
	}
	e.SetINI()
	code, out, errOut = cli(t, "--config.file="+cfg, "repair")
	if code != exitOK || !strings.Contains(out, "repaired: 1 day(s)") {
		t.Fatalf("repair (%d): %s %s", code, out, errOut)
	}
	if code, _, _ := cli(t, "--config.file="+cfg, "gaps"); code != exitOK {
		t.Errorf("gaps after repair: exit %d", code)
	}
}

func TestCheckCommand(t *testing.T) {
	e, cfg := gapEnv(t)
	code, out, _ := cli(t, "--config.file="+cfg, "check")
	if code != exitOK || !strings.Contains(out, "All checks passed.") || !strings.Contains(out, "Matomo version 5.0.2") {
		t.Fatalf("check (%d):\n%s", code, out)
	}
	if strings.Contains(out, string(e.Settings.Password)) && e.Settings.Password != "" {
		t.Error("check printed the password")
	}
	code, out, _ = cli(t, "--config.file="+cfg, "--config.check")
	if code != exitOK {
		t.Errorf("--config.check: %d\n%s", code, out)
	}
	e.Exec("RENAME TABLE {p}log_visit TO {p}log_visit_x")
	code, out, _ = cli(t, "--config.file="+cfg, "check")
	if code == exitOK || !strings.Contains(out, "[FAIL] Matomo tables missing: matomo_log_visit") {
		t.Errorf("check with a missing table (%d):\n%s", code, out)
	}
}

func TestArchiveCommand(t *testing.T) {
	e, cfg := gapEnv(t)
	code, out, _ := cli(t, "--config.file="+cfg, "archive")
	if code != exitOK || !strings.Contains(out, "core:archive success") {
		t.Errorf("archive (%d): %s", code, out)
	}
	e.SetINI("[General]", "maintenance_mode = 1")
	if code, _, _ := cli(t, "--config.file="+cfg, "archive"); code != exitSkipped {
		t.Errorf("archive in maintenance mode: %d", code)
	}
}

// `matomod --help` and the README's flag table agree.
func TestHelpMatchesREADME(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	g := &globals{}
	app, _ := newApp(g)
	var flags []string
	for _, f := range app.Model().Flags {
		if !f.Hidden {
			flags = append(flags, "--"+f.Name)
		}
	}
	sec := string(readme)
	i := strings.Index(sec, "### Flags")
	if i < 0 {
		t.Fatal("README has no ### Flags section")
	}
	sec = sec[i:]
	if j := strings.Index(sec[4:], "\n## "); j > 0 {
		sec = sec[:j+4]
	}
	documented := map[string]bool{}
	for _, m := range regexp.MustCompile("`(--[a-z.-]+)`").FindAllStringSubmatch(sec, -1) {
		documented[m[1]] = true
	}
	for _, f := range flags {
		if !documented[f] {
			t.Errorf("flag %s is in --help but not in README ### Flags", f)
		}
		delete(documented, f)
	}
	for _, c := range app.Model().Commands {
		for _, f := range c.Flags {
			delete(documented, "--"+f.Name)
			if !strings.Contains(sec, "`--"+f.Name+"`") {
				t.Errorf("flag %s of %s is not in README ### Flags", f.Name, c.Name)
			}
		}
	}
	for f := range documented {
		t.Errorf("README documents %s, which --help does not have", f)
	}
}

// Regression (issue 11): a site whose time zone matomod cannot read was
// skipped in silence ("Scanned 0 sites … No gaps", exit 0).
func TestGapsReportsUnreadableTimeZone(t *testing.T) {
	e := matomotest.New(t)
	e.AddSite(3, "Mars/Base", day(30).Format("2006-01-02"))
	e.AddSite(4, "UTC", day(30).Format("2006-01-02"))
	e.SetOption("version_core", matomotest.MatomoVersion)
	cfg := writeConfig(t, e, "")
	code, out, errOut := cli(t, "--config.file="+cfg, "gaps", "--sites=3")
	if code != exitError || !strings.Contains(errOut, "site 3 not scanned") || !strings.Contains(out, "Skipped 1 site(s) that could not be scanned: 3") {
		t.Errorf("gaps --sites=3: exit %d\n%s\n%s", code, out, errOut)
	}
	// Not named: the scan of the others stands, the skip is still said.
	code, out, errOut = cli(t, "--config.file="+cfg, "gaps")
	if code != exitOK || !strings.Contains(out, "Skipped 1 site(s)") || !strings.Contains(errOut, "site 3 not scanned") {
		t.Errorf("gaps: exit %d\n%s\n%s", code, out, errOut)
	}
}
