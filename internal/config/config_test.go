package config

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestDefaultsWhenFileMissing(t *testing.T) {
	c, err := Load(filepath.Join(t.TempDir(), "none.yml"), true)
	if err != nil {
		t.Fatal(err)
	}
	if c.Archive.Schedule != "5 * * * *" || c.Gaps.WindowDays != 365 || c.Gaps.Grace.D() != 2*time.Hour ||
		!c.Gaps.AutoRepair || c.Gaps.MaxRepairDays != 60 || c.StopTimeout.D() != 5*time.Minute ||
		c.StateFile != "/var/lib/matomod/state.json" || c.PHPBinary != "php" {
		t.Fatalf("defaults wrong: %+v", c)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "none.yml"), false); err == nil || !strings.Contains(err.Error(), "no such file") {
		t.Fatalf("explicit missing file: %v", err)
	}
}

func TestParseFull(t *testing.T) {
	y := `
matomo_dir: /srv/matomo
php_binary: /usr/bin/php8.2
php_cli_options: ["-d", "memory_limit=2G"]
database: {host: replica.local, port: 3307, user: matomod_ro, password_file: /run/x, dbname: m, tables_prefix: piwik_}
archive: {url: "https://m.example.org/", schedule: "@every 30m", timezone: Europe/Berlin, jitter: 30s, run_timeout: 3h, kill_grace: 1m, extra_args: ["--concurrent-requests-per-website=2"]}
gaps: {scan_interval: 30m, full_rescan_interval: 7d, window_days: 90, verify_days: 3, grace: 1h, auto_repair: false, max_repair_days: 10}
sites: {include: [1, 3], exclude: [3]}
state_file: /tmp/s.json
stop_timeout: 1m
`
	c := Default()
	if err := Parse([]byte(y), &c); err != nil {
		t.Fatal(err)
	}
	if c.Gaps.FullRescanInterval.D() != 7*24*time.Hour || c.Database.Port != 3307 || c.Archive.Jitter.D() != 30*time.Second ||
		c.Gaps.AutoRepair || len(c.PHPCLIOptions) != 2 || c.ConsolePathOrDefault() != "/srv/matomo/console" {
		t.Fatalf("parsed wrong: %+v", c)
	}
	if !c.SiteSelected(1) || c.SiteSelected(3) || c.SiteSelected(2) {
		t.Fatal("include/exclude wrong")
	}
}

func TestBadConfigErrors(t *testing.T) {
	cases := []struct{ yaml, want string }{
		{"archive:\n  shedule: x\n", "line 2: field shedule not found"},
		{"gaps:\n  grace: 2 hours\n", `line 2: "2 hours" is not a duration`},
		{"database:\n  tables_prefix: \"x; DROP\"\n", "database.tables_prefix: tables_prefix \"x; DROP\" contains characters"},
		{"gaps: {window_days: 0}\n", "gaps.window_days: 0 must be between 1 and 3660"},
		{"role: boss\n", `role: "boss" must be leader or worker`},
		{"sites: {include: [0]}\n", "sites: site id 0 is not a Matomo idsite"},
		{"archive: [\n", "did not find expected node content"},
		{"archive:\n  run_timeout: 0s\n", "archive.run_timeout: 0s is out of range: use a value between 1s and 168h0m0s, e.g. 6h"},
		{"worker:\n  interval: 0s\n", "worker.interval: 0s is out of range"},
		{"archive:\n  kill_grace: 0s\n", "archive.kill_grace: 0s is out of range"},
		{"gaps:\n  full_rescan_interval: 0s\n", "gaps.full_rescan_interval: 0s is out of range"},
		{"gaps:\n  scan_interval: 0s\n", "gaps.scan_interval: 0s is out of range"},
		{"stop_timeout: 0s\n", "stop_timeout: 0s is out of range"},
		{"archive:\n  retry_backoff: 0s\n", "archive.retry_backoff: 0s is out of range"},
	}
	for _, tc := range cases {
		c := Default()
		err := Parse([]byte(tc.yaml), &c)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.yaml, err, tc.want)
			continue
		}
		if strings.Contains(err.Error(), "\n") {
			t.Errorf("%q: error spans lines: %q", tc.yaml, err)
		}
	}
}

func TestPasswordFileAndOverrides(t *testing.T) {
	dir := t.TempDir()
	os.MkdirAll(filepath.Join(dir, "config"), 0o755)
	os.WriteFile(filepath.Join(dir, "config", "config.ini.php"), []byte("; <?php exit; ?> DO NOT REMOVE THIS LINE\n[database]\nhost = \"db\"\nusername = \"matomo\"\npassword = \"inipass\"\ndbname = \"matomo\"\ntables_prefix = \"matomo_\"\n"), 0o644)
	creds := t.TempDir()
	os.WriteFile(filepath.Join(creds, "db-password"), []byte("s3cret\n"), 0o600)
	t.Setenv("CREDENTIALS_DIRECTORY", creds)
	c := Default()
	c.MatomoDir = dir
	c.Database.User = "ro"
	c.Database.PasswordFile = "${CREDENTIALS_DIRECTORY}/db-password"
	m, err := c.LoadMatomo()
	if err != nil {
		t.Fatal(err)
	}
	if m.DB.User != "ro" || string(m.DB.Password) != "s3cret" || m.DB.Host != "db" {
		t.Fatalf("overrides: %+v", m.DB)
	}
	c.Database.PasswordFile = filepath.Join(creds, "missing")
	if _, err := c.LoadMatomo(); err == nil || !strings.Contains(err.Error(), "database.password_file") {
		t.Fatalf("missing password file: %v", err)
	}
}

// The shipped default config must load and equal the built-in defaults.
func TestPackagedConfigIsTheDefault(t *testing.T) {
	c, err := Load("../../packaging/matomod.yml", false)
	if err != nil {
		t.Fatal(err)
	}
	d := Default()
	norm := func(c *Config) {
		c.PHPCLIOptions, c.Archive.ExtraArgs, c.Sites.Include, c.Sites.Exclude = nil, nil, nil, nil
	}
	norm(&c)
	norm(&d)
	if fmt.Sprintf("%+v", c) != fmt.Sprintf("%+v", d) {
		t.Errorf("packaging/matomod.yml differs from Default():\n%+v\n%+v", c, d)
	}
}
