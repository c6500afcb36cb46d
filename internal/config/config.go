// Package config loads matomod's own settings (matomod.yml) and merges them
// with Matomo's config.ini.php into the one Config the daemon runs with.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/matomod/matomod/internal/matomo"
)

// DefaultPath is where packages install matomod.yml.
const DefaultPath = "/etc/matomod/matomod.yml"

// Config is matomod.yml. Key names are a public contract: never rename.
type Config struct {
	MatomoDir     string   `yaml:"matomo_dir"`
	PHPBinary     string   `yaml:"php_binary"`
	ConsolePath   string   `yaml:"console_path"`
	PHPCLIOptions []string `yaml:"php_cli_options"`
	Database      Database `yaml:"database"`
	Archive       Archive  `yaml:"archive"`
	Gaps          Gaps     `yaml:"gaps"`
	Sites         Sites    `yaml:"sites"`
	StateFile     string   `yaml:"state_file"`
	StopTimeout   Duration `yaml:"stop_timeout"`
	Role          string   `yaml:"role"`
	Worker        Worker   `yaml:"worker"`
}

// Database overrides config.ini.php's [database] (e.g. a read-only replica
// user). Empty values fall through to config.ini.php.
type Database struct {
	Host         string `yaml:"host"`
	Port         int    `yaml:"port"`
	Socket       string `yaml:"socket"`
	User         string `yaml:"user"`
	PasswordFile string `yaml:"password_file"`
	DBName       string `yaml:"dbname"`
	TablesPrefix string `yaml:"tables_prefix"`
}

// Archive is the core:archive schedule and limits.
type Archive struct {
	URL          string   `yaml:"url"`
	Schedule     string   `yaml:"schedule"`
	Timezone     string   `yaml:"timezone"`
	Jitter       Duration `yaml:"jitter"`
	RunTimeout   Duration `yaml:"run_timeout"`
	KillGrace    Duration `yaml:"kill_grace"`
	ExtraArgs    []string `yaml:"extra_args"`
	Retries      int      `yaml:"retries"`
	RetryBackoff Duration `yaml:"retry_backoff"`
}

// Gaps configures detection and repair.
type Gaps struct {
	ScanInterval       Duration `yaml:"scan_interval"`
	FullRescanInterval Duration `yaml:"full_rescan_interval"`
	WindowDays         int      `yaml:"window_days"`
	VerifyDays         int      `yaml:"verify_days"`
	Grace              Duration `yaml:"grace"`
	AutoRepair         bool     `yaml:"auto_repair"`
	MaxRepairDays      int      `yaml:"max_repair_days"`
	// A site "normally has traffic every day" when at least this fraction
	// of its window days have visits; only then are zero-visit days
	// between traffic reported as collection gaps.
	CollectionGapMinTrafficDays float64 `yaml:"collection_gap_min_traffic_days"`
}

// Sites limits which sites matomod scans and repairs.
type Sites struct {
	Include []int `yaml:"include"`
	Exclude []int `yaml:"exclude"`
}

// Worker is for role: worker instances.
type Worker struct {
	Concurrency int      `yaml:"concurrency"`
	Interval    Duration `yaml:"interval"`
}

// Duration accepts Go durations ("90s", "2h") and whole days ("7d").
type Duration time.Duration

// D is the time.Duration value.
func (d Duration) D() time.Duration { return time.Duration(d) }

func (d Duration) String() string { return time.Duration(d).String() }

// UnmarshalYAML parses a duration and names the bad value.
func (d *Duration) UnmarshalYAML(n *yaml.Node) error {
	var s string
	if err := n.Decode(&s); err != nil {
		return err
	}
	v, err := ParseDuration(s)
	if err != nil {
		return fmt.Errorf("line %d: %w", n.Line, err)
	}
	*d = Duration(v)
	return nil
}

// MarshalYAML prints the duration as Go does.
func (d Duration) MarshalYAML() (any, error) { return time.Duration(d).String(), nil }

// ParseDuration is time.ParseDuration plus a "d" (24 h) unit.
func ParseDuration(s string) (time.Duration, error) {
	s = strings.TrimSpace(s)
	if days, ok := strings.CutSuffix(s, "d"); ok {
		var n int
		if _, err := fmt.Sscanf(days, "%d", &n); err == nil && fmt.Sprint(n) == days && n >= 0 {
			return time.Duration(n) * 24 * time.Hour, nil
		}
	}
	v, err := time.ParseDuration(s)
	if err != nil || v < 0 {
		return 0, fmt.Errorf("%q is not a duration: write e.g. 90s, 30m, 2h or 7d", s)
	}
	return v, nil
}

// Default returns the settings used for every key the file leaves out.
func Default() Config {
	return Config{
		MatomoDir: "/var/www/matomo",
		PHPBinary: "php",
		Archive: Archive{
			Schedule:     "5 * * * *",
			RunTimeout:   Duration(6 * time.Hour),
			KillGrace:    Duration(2 * time.Minute),
			Retries:      3,
			RetryBackoff: Duration(time.Minute),
		},
		Gaps: Gaps{
			ScanInterval:                Duration(time.Hour),
			FullRescanInterval:          Duration(24 * time.Hour),
			WindowDays:                  365,
			VerifyDays:                  7,
			Grace:                       Duration(2 * time.Hour),
			AutoRepair:                  true,
			MaxRepairDays:               60,
			CollectionGapMinTrafficDays: 0.9,
		},
		StateFile:   "/var/lib/matomod/state.json",
		StopTimeout: Duration(5 * time.Minute),
		Role:        "leader",
		Worker:      Worker{Concurrency: 1, Interval: Duration(time.Minute)},
	}
}

// Load reads path over the defaults. A missing file is fine when optional
// (the default path): every key has a default.
func Load(path string, optional bool) (Config, error) {
	c := Default()
	data, err := os.ReadFile(path)
	if err != nil {
		if optional && errors.Is(err, fs.ErrNotExist) {
			return c, nil
		}
		return c, fmt.Errorf("%s: %w: create it (see packaging/matomod.yml) or pass --config.file", path, unwrapPathErr(err))
	}
	if err := Parse(data, &c); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

func unwrapPathErr(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

// Parse decodes YAML strictly (an unknown key is an error naming its line)
// into c and validates the result.
func Parse(data []byte, c *Config) error {
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true)
	if err := dec.Decode(c); err != nil && !errors.Is(err, io.EOF) {
		msg := strings.TrimPrefix(err.Error(), "yaml: ")
		msg = strings.TrimPrefix(msg, "unmarshal errors:\n  ")
		msg = strings.ReplaceAll(msg, "\n  ", "; ")
		msg = strings.ReplaceAll(msg, "in type config.", "in section ")
		return fmt.Errorf("%s: fix the YAML (keys are listed in packaging/matomod.yml)", msg)
	}
	return c.Validate()
}

// Validate checks values that YAML types cannot.
func (c *Config) Validate() error {
	bad := func(key, msg string) error { return fmt.Errorf("%s: %s", key, msg) }
	if c.Database.TablesPrefix != "" {
		if err := matomo.ValidatePrefix(c.Database.TablesPrefix); err != nil {
			return bad("database.tables_prefix", err.Error())
		}
	}
	if c.Database.Port < 0 || c.Database.Port > 65535 {
		return bad("database.port", fmt.Sprintf("%d is not a port number", c.Database.Port))
	}
	if c.Archive.Schedule == "" {
		return bad("archive.schedule", "is empty: use e.g. \"5 * * * *\" or @hourly")
	}
	// Every duration has a floor (0 would make a loop spin or a child be
	// killed at once) and a ceiling (a typo such as 5000h is not a setting).
	for _, r := range []struct {
		key      string
		v        Duration
		min, max time.Duration
		example  string
	}{
		{"archive.run_timeout", c.Archive.RunTimeout, time.Second, 7 * 24 * time.Hour, "6h"},
		{"archive.kill_grace", c.Archive.KillGrace, time.Second, time.Hour, "2m"},
		{"archive.jitter", c.Archive.Jitter, 0, 24 * time.Hour, "30s"},
		{"archive.retry_backoff", c.Archive.RetryBackoff, time.Second, 24 * time.Hour, "1m"},
		{"gaps.scan_interval", c.Gaps.ScanInterval, time.Second, 7 * 24 * time.Hour, "1h"},
		{"gaps.full_rescan_interval", c.Gaps.FullRescanInterval, time.Minute, 90 * 24 * time.Hour, "24h"},
		{"gaps.grace", c.Gaps.Grace, 0, 30 * 24 * time.Hour, "2h"},
		{"stop_timeout", c.StopTimeout, time.Second, 24 * time.Hour, "5m"},
		{"worker.interval", c.Worker.Interval, time.Second, 24 * time.Hour, "1m"},
	} {
		if r.v.D() < r.min || r.v.D() > r.max {
			return bad(r.key, fmt.Sprintf("%s is out of range: use a value between %s and %s, e.g. %s", r.v, r.min, r.max, r.example))
		}
	}
	if c.Archive.Retries < 0 || c.Archive.Retries > 20 {
		return bad("archive.retries", "must be between 0 and 20")
	}
	if c.Gaps.WindowDays < 1 || c.Gaps.WindowDays > 3660 {
		return bad("gaps.window_days", fmt.Sprintf("%d must be between 1 and 3660", c.Gaps.WindowDays))
	}
	if c.Gaps.VerifyDays < 0 || c.Gaps.VerifyDays > c.Gaps.WindowDays {
		return bad("gaps.verify_days", "must be between 0 and gaps.window_days")
	}
	if c.Gaps.MaxRepairDays < 0 {
		return bad("gaps.max_repair_days", "must not be negative (0 disables repair)")
	}
	if f := c.Gaps.CollectionGapMinTrafficDays; f <= 0 || f > 1 {
		return bad("gaps.collection_gap_min_traffic_days", "must be a fraction in (0, 1], e.g. 0.9")
	}
	for _, id := range append(append([]int{}, c.Sites.Include...), c.Sites.Exclude...) {
		if id < 1 {
			return bad("sites", fmt.Sprintf("site id %d is not a Matomo idsite (1 or more)", id))
		}
	}
	switch c.Role {
	case "leader", "worker":
	default:
		return bad("role", fmt.Sprintf("%q must be leader or worker", c.Role))
	}
	if c.Worker.Concurrency < 1 || c.Worker.Concurrency > 64 {
		return bad("worker.concurrency", "must be between 1 and 64")
	}
	return nil
}

// ConsolePathOrDefault is console_path, or <matomo_dir>/console.
func (c *Config) ConsolePathOrDefault() string {
	if c.ConsolePath != "" {
		return c.ConsolePath
	}
	return filepath.Join(c.MatomoDir, "console")
}

// Matomo is everything read from Matomo's side, merged with overrides.
type Matomo struct {
	INI *matomo.INIConfig
	DB  matomo.DBSettings
}

// LoadMatomo reads config.ini.php under matomo_dir and applies the database
// overrides of matomod.yml (password from password_file, which may name
// ${CREDENTIALS_DIRECTORY} for systemd LoadCredential=).
func (c *Config) LoadMatomo() (*Matomo, error) {
	ini, err := matomo.ReadConfigINI(c.MatomoDir)
	if err != nil {
		return nil, err
	}
	db := ini.DB
	o := c.Database
	if o.Host != "" {
		db.Host, db.Socket = o.Host, ""
	}
	if o.Port != 0 {
		db.Port = o.Port
	}
	if o.Socket != "" {
		db.Socket = o.Socket
	}
	if o.User != "" {
		db.User = o.User
	}
	if o.DBName != "" {
		db.DBName = o.DBName
	}
	if o.TablesPrefix != "" {
		db.TablesPrefix = o.TablesPrefix
	}
	if o.PasswordFile != "" {
		p := os.Expand(o.PasswordFile, func(k string) string {
			if k == "CREDENTIALS_DIRECTORY" {
				return os.Getenv(k)
			}
			return "${" + k + "}"
		})
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("database.password_file %s: %w: check the path (with systemd, LoadCredential= and ${CREDENTIALS_DIRECTORY})", p, unwrapPathErr(err))
		}
		db.Password = matomo.Secret(strings.TrimRight(string(b), "\r\n"))
	}
	return &Matomo{INI: ini, DB: db}, nil
}

// SiteSelected applies sites.include / sites.exclude.
func (c *Config) SiteSelected(id int) bool {
	for _, x := range c.Sites.Exclude {
		if x == id {
			return false
		}
	}
	if len(c.Sites.Include) == 0 {
		return true
	}
	for _, x := range c.Sites.Include {
		if x == id {
			return true
		}
	}
	return false
}
