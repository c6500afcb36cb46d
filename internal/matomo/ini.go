package matomo

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"gopkg.in/ini.v1"
)

// DBSettings is how to reach Matomo's database. Password is never printed:
// it is a Secret whose String() hides the value.
type DBSettings struct {
	Host         string
	Port         int
	Socket       string
	User         string
	Password     Secret
	DBName       string
	TablesPrefix string
	Charset      string
	EnableSSL    bool
	SSLCA        string
	SSLCert      string
	SSLKey       string
	SSLNoVerify  bool
}

// Secret holds a password; fmt and slog print it as "<redacted>".
type Secret string

func (Secret) String() string { return "<redacted>" }

// LogValue keeps the secret out of structured logs too.
func (Secret) LogValue() string { return "<redacted>" }

// MarshalText keeps the secret out of JSON output.
func (Secret) MarshalText() ([]byte, error) { return []byte("<redacted>"), nil }

// INIConfig is what matomod needs from Matomo's config/config.ini.php
// (with config/global.ini.php defaults underneath, when present).
type INIConfig struct {
	Path             string
	DB               DBSettings
	MaintenanceMode  bool
	RecordStatistics bool
	// Log deletion as configured in [Deletelogs]; option rows in the DB
	// override these (see Options).
	DeleteLogsEnable    bool
	DeleteLogsOlderThan int
	// ProcessNewSegmentsFrom is [General] process_new_segments_from:
	// from which day core:archive archives a stored segment.
	ProcessNewSegmentsFrom string
}

var prefixRE = regexp.MustCompile(`^[A-Za-z0-9_]*$`)

// ValidatePrefix refuses table prefixes that could smuggle SQL into the
// identifiers we build from them.
func ValidatePrefix(p string) error {
	if !prefixRE.MatchString(p) {
		return fmt.Errorf("tables_prefix %q contains characters other than letters, digits and _: fix it in config.ini.php or matomod.yml", p)
	}
	return nil
}

// ConfigINIPath is where Matomo keeps its local config under dir.
func ConfigINIPath(dir string) string { return filepath.Join(dir, "config", "config.ini.php") }

// ReadConfigINI reads dir/config/config.ini.php over dir/config/global.ini.php.
func ReadConfigINI(dir string) (*INIConfig, error) {
	path := ConfigINIPath(dir)
	c := &INIConfig{
		Path:                path,
		RecordStatistics:    true,
		DeleteLogsOlderThan: 180,
		DB:                  DBSettings{Host: "127.0.0.1", Charset: "utf8mb4", TablesPrefix: "matomo_"},
	}
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("%s: not found: point --matomo.dir (or matomo_dir) at the Matomo installation directory", path)
		}
		return nil, fmt.Errorf("%s: %w: run matomod as a user that can read it (usually www-data)", path, err)
	}
	own, err := loadINI(path, data)
	if err != nil {
		return nil, err
	}
	if !own.HasSection("database") {
		return nil, fmt.Errorf("%s: no [database] section: finish Matomo's installer first, or set database: in matomod.yml", path)
	}
	// Matomo merges config.ini.php over global.ini.php key by key: a key
	// present in config.ini.php wins, an absent one keeps global's value.
	// global.ini.php ships every [database] key with an empty value, so
	// the two files must never be read as one (the first value would win).
	var global *ini.File
	gpath := filepath.Join(dir, "config", "global.ini.php")
	if gdata, err := os.ReadFile(gpath); err == nil {
		if global, err = loadINI(gpath, gdata); err != nil {
			return nil, err
		}
	}
	get := func(section, key string) (string, bool) {
		for _, f := range []*ini.File{own, global} {
			if f == nil || !f.HasSection(section) {
				continue
			}
			if s := f.Section(section); s.HasKey(key) {
				return unquote(s.Key(key).String()), true
			}
		}
		return "", false
	}
	str := func(k, def string) string {
		if v, ok := get("database", k); ok {
			return v
		}
		return def
	}
	// An empty host (global.ini.php's value) means Matomo's default too.
	if h := str("host", ""); h != "" {
		c.DB.Host = h
	}
	c.DB.User = str("username", "")
	c.DB.Password = Secret(str("password", ""))
	c.DB.DBName = str("dbname", "")
	c.DB.TablesPrefix = str("tables_prefix", c.DB.TablesPrefix)
	c.DB.Socket = str("unix_socket", "")
	c.DB.Charset = str("charset", c.DB.Charset)
	c.DB.SSLCA = str("ssl_ca", "")
	c.DB.SSLCert = str("ssl_cert", "")
	c.DB.SSLKey = str("ssl_key", "")
	c.DB.EnableSSL = truthy(str("enable_ssl", "0"))
	c.DB.SSLNoVerify = truthy(str("ssl_no_verify", "0"))
	if p := str("port", ""); p != "" {
		n, err := strconv.Atoi(p)
		if err != nil || n < 0 || n > 65535 {
			return nil, fmt.Errorf("%s: [database] port = %q is not a port number: fix it", path, p)
		}
		c.DB.Port = n
	}
	// Matomo accepts "host:port" in host as well.
	if h, p, ok := strings.Cut(c.DB.Host, ":"); ok && !strings.Contains(p, ":") {
		if n, err := strconv.Atoi(p); err == nil {
			c.DB.Host, c.DB.Port = h, n
		}
	}
	if err := ValidatePrefix(c.DB.TablesPrefix); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if v, ok := get("General", "maintenance_mode"); ok {
		c.MaintenanceMode = truthy(v)
	}
	if v, ok := get("General", "process_new_segments_from"); ok {
		c.ProcessNewSegmentsFrom = v
	}
	if v, ok := get("Tracker", "record_statistics"); ok {
		c.RecordStatistics = truthy(v)
	}
	if v, ok := get("Deletelogs", "delete_logs_enable"); ok {
		c.DeleteLogsEnable = truthy(v)
	}
	if v, ok := get("Deletelogs", "delete_logs_older_than"); ok {
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			c.DeleteLogsOlderThan = n
		}
	}
	return c, nil
}

// loadINI parses one of Matomo's INI files. A parse error never quotes the
// file's text, which may hold the database password: it names the line
// and the key instead.
func loadINI(path string, data []byte) (*ini.File, error) {
	opts := ini.LoadOptions{
		AllowShadows:              true, // key[] = v arrays
		UnescapeValueDoubleQuotes: true,
		SpaceBeforeInlineComment:  true,
		AllowBooleanKeys:          true,
	}
	f, err := ini.LoadSources(opts, data)
	if err == nil {
		return f, nil
	}
	for i, line := range strings.Split(string(data), "\n") {
		if _, lerr := ini.LoadSources(opts, []byte(line)); lerr != nil {
			key, _, _ := strings.Cut(strings.TrimSpace(line), "=")
			return nil, fmt.Errorf("%s: malformed INI at line %d (key %q; value not shown): fix its quoting (Matomo would fail to read it too)", path, i+1, strings.TrimSpace(key))
		}
	}
	return nil, fmt.Errorf("%s: malformed INI (details not shown, they may quote a password): fix the file (Matomo would fail to read it too)", path)
}

func unquote(s string) string {
	s = strings.TrimSpace(s)
	if len(s) >= 2 && (s[0] == '"' && s[len(s)-1] == '"' || s[0] == '\'' && s[len(s)-1] == '\'') {
		return s[1 : len(s)-1]
	}
	return s
}

// truthy follows PHP's parse_ini_file: 1/on/yes/true are true.
func truthy(s string) bool {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "1", "on", "yes", "true":
		return true
	}
	return false
}

var versionRE = regexp.MustCompile(`const\s+VERSION\s*=\s*['"]([^'"]+)['"]`)

// CodeVersion reads the version of the Matomo code from core/Version.php, to
// compare with the DB's version_core (a pending core:update pauses archiving).
func CodeVersion(dir string) (string, error) {
	path := filepath.Join(dir, "core", "Version.php")
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("%s: %w", path, err)
	}
	m := versionRE.FindSubmatch(b)
	if m == nil {
		return "", fmt.Errorf("%s: no `const VERSION = '…'` found: is this a Matomo directory?", path)
	}
	return string(m[1]), nil
}

// VersionLess compares dotted Matomo versions ("5.0.2" < "5.1.0-b1" < "5.1.0").
func VersionLess(a, b string) bool {
	pa, pb := splitVersion(a), splitVersion(b)
	for i := 0; i < 3; i++ {
		if pa.n[i] != pb.n[i] {
			return pa.n[i] < pb.n[i]
		}
	}
	// A pre-release sorts before the release.
	if (pa.pre == "") != (pb.pre == "") {
		return pa.pre != ""
	}
	return pa.pre < pb.pre
}

type version struct {
	n   [3]int
	pre string
}

func splitVersion(s string) version {
	var v version
	main, pre, _ := strings.Cut(s, "-")
	v.pre = strings.ToLower(pre)
	for i, p := range strings.SplitN(main, ".", 3) {
		v.n[i], _ = strconv.Atoi(p)
	}
	return v
}

func oneLine(err error) string {
	return strings.Join(strings.Fields(strings.ReplaceAll(err.Error(), "\n", " ")), " ")
}
