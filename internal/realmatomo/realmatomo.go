// Package realmatomo installs the real Matomo release once (headless, over
// HTTP, with sites and backdated visits archived by Matomo's own console) and
// hands each test its own copy of that install: directory and database.
package realmatomo

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/matomod/matomod/internal/matomotest"
)

// harnessVersion changes whenever what Build plants changes, so that a
// cached template from an older harness is never reused.
const harnessVersion = "3"

// TarballEnv names the Matomo 5 release the suite runs against.
const TarballEnv = "MATOMOD_MATOMO_TARBALL"

// Tarball is the release to test against: $MATOMOD_MATOMO_TARBALL, else
// ../shared/matomo/matomo-5.0.2.tar.gz beside the repository.
func Tarball() string {
	if p := os.Getenv(TarballEnv); p != "" {
		return p
	}
	root := matomotest.RepoRoot()
	if root == "" {
		return ""
	}
	return filepath.Join(filepath.Dir(root), "shared", "matomo", "matomo-5.0.2.tar.gz")
}

// Missing says why the real Matomo cannot run here ("" when it can).
func Missing() string {
	tb := Tarball()
	if tb == "" {
		return "no Matomo release: set " + TarballEnv
	}
	if _, err := os.Stat(tb); err != nil {
		return fmt.Sprintf("Matomo release %s not found: set %s to a Matomo 5 .tar.gz or directory", tb, TarballEnv)
	}
	out, err := exec.Command(phpBinary(), "-m").Output()
	if err != nil {
		return "php not found: run scripts/ensure-php.sh (installs php8.2-cli and the extensions Matomo needs)"
	}
	for _, m := range []string{"pdo_mysql", "mbstring", "xml", "curl", "gd", "intl"} {
		if !strings.Contains(strings.ToLower(string(out)), "\n"+m+"\n") {
			return "php has no " + m + " extension: run scripts/ensure-php.sh"
		}
	}
	return ""
}

// Require skips the test when PHP or the release is absent, except under
// CI=true, where that is a failure.
func Require(t testing.TB) {
	t.Helper()
	if why := Missing(); why != "" {
		if os.Getenv("CI") == "true" {
			t.Fatalf("real Matomo: %s (CI=true: .ci/run installs PHP)", why)
		}
		t.Skip("real Matomo: " + why)
	}
}

// Site is one site of the template install.
type Site struct {
	ID       int    `json:"id"`
	Name     string `json:"name"`
	Timezone string `json:"timezone"`
}

// Manifest describes a built template: what was installed and planted.
type Manifest struct {
	Harness  string    `json:"harness"`
	Built    time.Time `json:"built"`
	Today    string    `json:"today"` // UTC day the visits were planned from
	DBName   string    `json:"dbname"`
	Prefix   string    `json:"prefix"`
	User     string    `json:"user"`
	Password string    `json:"password"`
	Token    string    `json:"token"`
	Sites    []Site    `json:"sites"`
	// Visits counts the tracked visits per "idsite YYYY-MM-DD" (site-local day).
	Visits   map[string]int `json:"visits"`
	FirstDay string         `json:"first_day"`
	LastDay  string         `json:"last_day"`
	// BuildSeconds is how long installing, tracking and archiving took.
	BuildSeconds float64 `json:"build_seconds"`
}

// Template is the installed Matomo every test copies.
type Template struct {
	Dir      string // installed Matomo directory (read-only for tests)
	Manifest Manifest
}

// DBConfig is how the harness reaches MariaDB (from MATOMOD_TEST_DSN).
type DBConfig struct {
	Host, User, Password, Name, Prefix string
	Port                               int
}

func adminConfig() (DBConfig, *mysql.Config, error) {
	cfg, err := mysql.ParseDSN(matomotest.AdminDSN())
	if err != nil {
		return DBConfig{}, nil, fmt.Errorf("MATOMOD_TEST_DSN: %w", err)
	}
	if cfg.Net != "tcp" {
		return DBConfig{}, nil, errors.New("MATOMOD_TEST_DSN: the real-Matomo suite needs a TCP address (PHP connects to it too)")
	}
	host, port, _ := strings.Cut(cfg.Addr, ":")
	d := DBConfig{Host: host, User: cfg.User, Password: cfg.Passwd, Port: 3306, Prefix: "matomo_"}
	fmt.Sscan(port, &d.Port)
	cfg.DBName = ""
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	return d, cfg, nil
}

// openAdmin connects to the server without a default database.
func openAdmin() (DBConfig, *mysql.Config, *sql.DB, error) {
	d, cfg, err := adminConfig()
	if err != nil {
		return d, nil, nil, err
	}
	db, err := sql.Open("mysql", cfg.FormatDSN())
	return d, cfg, db, err
}

func cacheRoot() string {
	if d := os.Getenv("MATOMOD_REALMATOMO_CACHE"); d != "" {
		return d
	}
	return filepath.Join(os.TempDir(), "matomod-realmatomo")
}

func fileKey(path string) (string, error) {
	st, err := os.Stat(path)
	if err != nil {
		return "", err
	}
	h := sha256.New()
	if st.IsDir() {
		fmt.Fprintf(h, "dir %s %d", path, st.ModTime().UnixNano())
	} else {
		f, err := os.Open(path)
		if err != nil {
			return "", err
		}
		defer f.Close()
		if _, err := io.Copy(h, f); err != nil {
			return "", err
		}
	}
	return hex.EncodeToString(h.Sum(nil))[:10], nil
}

// Get returns the template, building it when no valid one is cached. Build
// holds a file lock, so test processes started together build it once.
func Get(ctx context.Context, logf func(string, ...any)) (*Template, error) {
	if why := Missing(); why != "" {
		return nil, errors.New(why)
	}
	k, err := fileKey(Tarball())
	if err != nil {
		return nil, err
	}
	now := time.Now().UTC()
	key := k + "-h" + harnessVersion + "-" + now.Format("20060102")
	root := cacheRoot()
	if err := os.MkdirAll(root, 0o755); err != nil {
		return nil, err
	}
	lock, err := os.OpenFile(filepath.Join(root, "build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return nil, err
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return nil, err
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)

	dir := filepath.Join(root, key)
	if t, err := load(ctx, dir); err == nil {
		return t, nil
	}
	if err := os.RemoveAll(dir); err != nil {
		return nil, err
	}
	pruneOld(ctx, root, key)
	logf("real Matomo: building the template install in %s (once per day and release)", dir)
	t, err := build(ctx, dir, templateDB(root, key), now, logf)
	if err != nil {
		return nil, fmt.Errorf("building the real Matomo template: %w", err)
	}
	return t, nil
}

// templateDB names the template's database after the cache directory and
// the key, so that two caches (a developer's and a CI run's on the same
// server) never rebuild each other's database.
func templateDB(root, key string) string {
	h := sha256.Sum256([]byte(root))
	return "matomod_rm_" + hex.EncodeToString(h[:3]) + "_" + strings.ReplaceAll(key, "-", "_")
}

// pruneOld removes the templates of other days and releases: their
// directories and databases.
func pruneOld(ctx context.Context, root, keep string) {
	entries, _ := os.ReadDir(root)
	for _, e := range entries {
		if e.IsDir() && e.Name() != keep {
			os.RemoveAll(filepath.Join(root, e.Name()))
		}
	}
	_, _, db, err := openAdmin()
	if err != nil {
		return
	}
	defer db.Close()
	mine := templateDB(root, "")
	rows, err := db.QueryContext(ctx, "SELECT SCHEMA_NAME FROM information_schema.SCHEMATA WHERE SCHEMA_NAME LIKE ?", strings.ReplaceAll(mine, "_", "\\_")+"%")
	if err != nil {
		return
	}
	var old []string
	for rows.Next() {
		var n string
		if rows.Scan(&n) == nil && n != templateDB(root, keep) {
			old = append(old, n)
		}
	}
	rows.Close()
	for _, n := range old {
		db.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+n+"`")
	}
}

// load accepts a cached template whose manifest and database both exist.
func load(ctx context.Context, dir string) (*Template, error) {
	b, err := os.ReadFile(filepath.Join(dir, "manifest.json"))
	if err != nil {
		return nil, err
	}
	t := &Template{Dir: filepath.Join(dir, "matomo")}
	if err := json.Unmarshal(b, &t.Manifest); err != nil {
		return nil, err
	}
	_, _, db, err := openAdmin()
	if err != nil {
		return nil, err
	}
	defer db.Close()
	var n int
	if err := db.QueryRowContext(ctx, "SELECT COUNT(*) FROM information_schema.TABLES WHERE TABLE_SCHEMA = ?", t.Manifest.DBName).Scan(&n); err != nil {
		return nil, err
	}
	if n < 20 {
		return nil, fmt.Errorf("template database %s is gone", t.Manifest.DBName)
	}
	return t, nil
}

// Instance is one test's own Matomo: a copy of the template's directory and
// database.
type Instance struct {
	Dir      string // the Matomo directory (config/config.ini.php points at DBName)
	DBName   string
	Prefix   string
	DB       *sql.DB
	Manifest Manifest
	server   *Server
	t        testing.TB
}

// New gives the test its own copy of the template install; its database is
// dropped at cleanup.
func New(t testing.TB) *Instance {
	t.Helper()
	Require(t)
	ctx := context.Background()
	tmpl, err := Get(ctx, t.Logf)
	if err != nil {
		t.Fatal(err)
	}
	inst, err := tmpl.Copy(ctx, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	inst.t = t
	t.Cleanup(inst.Close)
	return inst
}

// Copy makes a new database and a Matomo directory under parent from the
// template.
func (tm *Template) Copy(ctx context.Context, parent string) (*Instance, error) {
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "matomod_rt_" + hex.EncodeToString(b[:])
	_, cfg, admin, err := openAdmin()
	if err != nil {
		return nil, err
	}
	defer admin.Close()
	if err := copyDatabase(ctx, admin, tm.Manifest.DBName, name); err != nil {
		return nil, err
	}
	dir := filepath.Join(parent, "matomo")
	if out, err := exec.CommandContext(ctx, "cp", "-a", tm.Dir, dir).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("copying the Matomo directory: %v: %s", err, out)
	}
	// Caches in tmp/ describe the template's database.
	_ = os.RemoveAll(filepath.Join(dir, "tmp", "cache"))
	ini := filepath.Join(dir, "config", "config.ini.php")
	c, err := os.ReadFile(ini)
	if err != nil {
		return nil, err
	}
	if !strings.Contains(string(c), tm.Manifest.DBName) {
		return nil, fmt.Errorf("%s does not name the template database %s", ini, tm.Manifest.DBName)
	}
	if err := os.WriteFile(ini, []byte(strings.ReplaceAll(string(c), tm.Manifest.DBName, name)), 0o644); err != nil {
		return nil, err
	}
	cfg.DBName = name
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	return &Instance{Dir: dir, DBName: name, Prefix: tm.Manifest.Prefix, DB: db, Manifest: tm.Manifest}, nil
}

func copyDatabase(ctx context.Context, admin *sql.DB, from, to string) error {
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+to+"` CHARACTER SET utf8mb4"); err != nil {
		return err
	}
	rows, err := admin.QueryContext(ctx, "SELECT TABLE_NAME FROM information_schema.TABLES WHERE TABLE_SCHEMA = ? AND TABLE_TYPE = 'BASE TABLE'", from)
	if err != nil {
		return err
	}
	var tables []string
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			rows.Close()
			return err
		}
		tables = append(tables, n)
	}
	rows.Close()
	if err := rows.Err(); err != nil {
		return err
	}
	for _, tb := range tables {
		dst, src := "`"+to+"`.`"+tb+"`", "`"+from+"`.`"+tb+"`"
		if _, err := admin.ExecContext(ctx, "CREATE TABLE "+dst+" LIKE "+src); err != nil {
			return fmt.Errorf("copying %s: %w", tb, err)
		}
		if _, err := admin.ExecContext(ctx, "INSERT INTO "+dst+" SELECT * FROM "+src); err != nil {
			return fmt.Errorf("copying %s: %w", tb, err)
		}
	}
	return nil
}

// Close stops the instance's web server and drops its database.
func (in *Instance) Close() {
	if in.server != nil {
		in.server.Close()
		in.server = nil
	}
	if in.DB != nil {
		in.DB.Exec("DROP DATABASE IF EXISTS `" + in.DBName + "`")
		in.DB.Close()
		in.DB = nil
	}
}

// Server starts (once) PHP's web server on the instance's directory.
func (in *Instance) Server() *Server {
	in.t.Helper()
	if in.server == nil {
		s, err := StartServer(context.Background(), in.Dir)
		if err != nil {
			in.t.Fatal(err)
		}
		in.server = s
	}
	return in.server
}

// Console runs the real console in the instance's directory.
func (in *Instance) Console(ctx context.Context, args ...string) (string, error) {
	return console(ctx, in.Dir, args...)
}

// Exec runs SQL with {p} replaced by the table prefix.
func (in *Instance) Exec(q string, args ...any) {
	in.t.Helper()
	if _, err := in.DB.Exec(strings.ReplaceAll(q, "{p}", in.Prefix), args...); err != nil {
		in.t.Fatalf("%s: %v", q, err)
	}
}

// DayVisits is Matomo's own nb_visits for one period of a site, from
// VisitsSummary.get (0 when Matomo has no archive).
func (in *Instance) DayVisits(ctx context.Context, idsite int, period, date string, segment string) (int, error) {
	p := map[string][]string{"idSite": {fmt.Sprint(idsite)}, "period": {period}, "date": {date}}
	if segment != "" {
		p["segment"] = []string{segment}
	}
	var out map[string]any
	var raw json.RawMessage
	if err := in.Server().API(ctx, in.Manifest.Token, "VisitsSummary.get", p, &raw); err != nil {
		return 0, err
	}
	// An empty report is [] rather than an object.
	if json.Unmarshal(raw, &out) != nil {
		return 0, nil
	}
	switch v := out["nb_visits"].(type) {
	case float64:
		return int(v), nil
	case string:
		var n int
		fmt.Sscan(v, &n)
		return n, nil
	}
	return 0, nil
}
