package matomotest

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/go-sql-driver/mysql"

	"github.com/matomod/matomod/internal/matomo"
)

// DefaultDSN reaches the local test server; MATOMOD_TEST_DSN overrides it.
const DefaultDSN = "root@tcp(127.0.0.1:3306)/"

// AdminDSN is the DSN (without database) tests and the demo connect with.
func AdminDSN() string {
	if v := os.Getenv("MATOMOD_TEST_DSN"); v != "" {
		return v
	}
	return DefaultDSN
}

// MatomoVersion is the code version the fake Matomo directory claims.
const MatomoVersion = "5.0.2"

// Env is one throw-away Matomo: a database with Matomo's tables and a
// Matomo directory whose config/config.ini.php points at it.
type Env struct {
	t        testing.TB
	DB       *sql.DB // connected to the throw-away database
	admin    *sql.DB
	Name     string
	Prefix   string
	Settings matomo.DBSettings
	Dir      string // fake Matomo directory (config/, core/Version.php, console, tmp/)
	Err      error  // first seeding error when there is no testing.TB
}

// New creates a fresh database for one test and drops it at cleanup. With no
// reachable server it skips, except under CI=true, where it fails.
func New(t testing.TB) *Env {
	t.Helper()
	var b [4]byte
	_, _ = rand.Read(b[:])
	name := "matomod_t_" + hex.EncodeToString(b[:])
	e, err := Create(context.Background(), AdminDSN(), name, t.TempDir())
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatalf("test database: %v (CI=true: a reachable MariaDB is required; .ci/run starts one)", err)
		}
		t.Skipf("no MariaDB/MySQL reachable at MATOMOD_TEST_DSN (%s): %v", redact(AdminDSN()), err)
	}
	e.t = t
	t.Cleanup(e.Drop)
	return e
}

func redact(dsn string) string {
	c, err := mysql.ParseDSN(dsn)
	if err != nil {
		return "unparsable DSN"
	}
	c.Passwd = ""
	return c.FormatDSN()
}

// Create makes database name (dropping an old one of that name) with
// Matomo's schema and a Matomo directory under dir.
func Create(ctx context.Context, adminDSN, name, dir string) (*Env, error) {
	cfg, err := mysql.ParseDSN(adminDSN)
	if err != nil {
		return nil, fmt.Errorf("MATOMOD_TEST_DSN: %w", err)
	}
	cfg.ParseTime = true
	cfg.Loc = time.UTC
	cfg.MultiStatements = false
	if cfg.Params == nil {
		cfg.Params = map[string]string{}
	}
	cfg.Params["time_zone"] = "'+00:00'"
	cfg.DBName = ""
	admin, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	if err := admin.PingContext(pctx); err != nil {
		admin.Close()
		return nil, err
	}
	if _, err := admin.ExecContext(ctx, "DROP DATABASE IF EXISTS `"+name+"`"); err != nil {
		admin.Close()
		return nil, err
	}
	if _, err := admin.ExecContext(ctx, "CREATE DATABASE `"+name+"` CHARACTER SET utf8mb4"); err != nil {
		admin.Close()
		return nil, err
	}
	cfg.DBName = name
	db, err := sql.Open("mysql", cfg.FormatDSN())
	if err != nil {
		admin.Close()
		return nil, err
	}
	db.SetMaxOpenConns(8)
	e := &Env{DB: db, admin: admin, Name: name, Prefix: "matomo_", Dir: dir}
	if err := CreateSchema(ctx, db, e.Prefix); err != nil {
		e.Drop()
		return nil, err
	}
	e.Settings = matomo.DBSettings{Host: "", User: cfg.User, Password: matomo.Secret(cfg.Passwd),
		DBName: name, TablesPrefix: e.Prefix, Charset: "utf8mb4"}
	switch cfg.Net {
	case "unix":
		e.Settings.Socket = cfg.Addr
	default:
		host, port, _ := strings.Cut(cfg.Addr, ":")
		e.Settings.Host = host
		fmt.Sscan(port, &e.Settings.Port)
	}
	if err := e.WriteMatomoDir(nil); err != nil {
		e.Drop()
		return nil, err
	}
	return e, nil
}

// Drop removes the database.
func (e *Env) Drop() {
	if e.DB != nil {
		e.DB.Close()
	}
	if e.admin != nil {
		e.admin.Exec("DROP DATABASE IF EXISTS `" + e.Name + "`")
		e.admin.Close()
	}
}

func (e *Env) fail(err error) {
	if err == nil {
		return
	}
	if e.t != nil {
		e.t.Helper()
		e.t.Fatal(err)
	}
	if e.Err == nil {
		e.Err = err
	}
}

// Exec runs SQL with {p} replaced by the table prefix.
func (e *Env) Exec(q string, args ...any) {
	if e.t != nil {
		e.t.Helper()
	}
	_, err := e.DB.Exec(strings.ReplaceAll(q, "{p}", e.Prefix), args...)
	e.fail(err)
}

// WriteMatomoDir writes config/config.ini.php (with extra lines appended
// verbatim, e.g. "[General]\nmaintenance_mode = 1") over the release's own
// config/global.ini.php, core/Version.php, a console file and tmp/.
func (e *Env) WriteMatomoDir(extra []string) error {
	for _, d := range []string{"config", "core", "tmp"} {
		if err := os.MkdirAll(filepath.Join(e.Dir, d), 0o755); err != nil {
			return err
		}
	}
	// Every real install has global.ini.php, with every [database] key
	// present and empty: without it here, no test would see what matomod
	// reads on a real install.
	global, err := os.ReadFile(GlobalINI())
	if err != nil {
		return fmt.Errorf("the release's global.ini.php (testdata/matomo): %w", err)
	}
	if err := os.WriteFile(filepath.Join(e.Dir, "config", "global.ini.php"), global, 0o644); err != nil {
		return err
	}
	var b strings.Builder
	b.WriteString("; <?php exit; ?> DO NOT REMOVE THIS LINE\n")
	b.WriteString("; file automatically generated or modified by Matomo; you can manually override the default values in global.ini.php by redefining them in this file.\n")
	b.WriteString("[database]\n")
	fmt.Fprintf(&b, "host = %q\n", e.Settings.Host)
	if e.Settings.Port != 0 {
		fmt.Fprintf(&b, "port = %d\n", e.Settings.Port)
	}
	if e.Settings.Socket != "" {
		fmt.Fprintf(&b, "unix_socket = %q\n", e.Settings.Socket)
	}
	fmt.Fprintf(&b, "username = %q\n", e.Settings.User)
	fmt.Fprintf(&b, "password = %q\n", string(e.Settings.Password))
	fmt.Fprintf(&b, "dbname = %q\n", e.Settings.DBName)
	fmt.Fprintf(&b, "tables_prefix = %q\n", e.Settings.TablesPrefix)
	b.WriteString("charset = \"utf8mb4\"\nadapter = \"PDO\\MYSQL\"\nschema = \"Mariadb\"\n\n")
	b.WriteString("[General]\nsalt = \"0123456789abcdef\"\ntrusted_hosts[] = \"127.0.0.1:8080\"\ntrusted_hosts[] = \"localhost\"\n\n")
	for _, l := range extra {
		b.WriteString(l + "\n")
	}
	if err := os.WriteFile(matomo.ConfigINIPath(e.Dir), []byte(b.String()), 0o640); err != nil {
		return err
	}
	ver := "<?php\nnamespace Piwik;\n\nfinal class Version\n{\n    const VERSION = '" + MatomoVersion + "';\n}\n"
	if err := os.WriteFile(filepath.Join(e.Dir, "core", "Version.php"), []byte(ver), 0o644); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(e.Dir, "console"), []byte("#!/usr/bin/env php\n<?php // stand-in: tests run the simulator as php_binary\n"), 0o755)
}

// SetINI rewrites config.ini.php with extra sections (maintenance mode etc.).
func (e *Env) SetINI(extra ...string) {
	if e.t != nil {
		e.t.Helper()
	}
	e.fail(e.WriteMatomoDir(extra))
}

// AddSite inserts a site with an IANA or UTC±h time zone, created at
// midnight UTC of created (YYYY-MM-DD).
func (e *Env) AddSite(id int, tz, created string) *Env {
	if e.t != nil {
		e.t.Helper()
	}
	e.Exec(`INSERT INTO {p}site (idsite, name, main_url, ts_created, timezone, currency, sitesearch_keyword_parameters,
		sitesearch_category_parameters, excluded_ips, excluded_parameters, excluded_user_agents, excluded_referrers, `+"`group`"+`, type)
		VALUES (?, ?, ?, ?, ?, 'USD', '', '', '', '', '', '', '', 'website')`,
		id, fmt.Sprintf("Site %d", id), fmt.Sprintf("https://site%d.example.org", id), created+" 00:00:00", tz)
	return e
}

// AddVisits inserts n visits of site idsite whose last action is at
// lastAction (UTC), each 30 s apart going back.
func (e *Env) AddVisits(idsite int, lastAction time.Time, n int) *Env {
	if e.t != nil {
		e.t.Helper()
	}
	for i := 0; i < n; i++ {
		last := lastAction.Add(-time.Duration(i) * 30 * time.Second).UTC()
		e.Exec(`INSERT INTO {p}log_visit (idsite, idvisitor, visit_last_action_time, config_id, location_ip,
			visit_first_action_time, visitor_returning, visitor_count_visits, visit_total_actions, visit_total_time)
			VALUES (?, UNHEX('0102030405060708'), ?, UNHEX('0807060504030201'), UNHEX('7f000001'), ?, 0, 1, 2, 60)`,
			idsite, last, last.Add(-time.Minute))
	}
	return e
}

// ArchiveRow is one archive as Matomo writes it: a done row plus nb_visits.
type ArchiveRow struct {
	IDSite     int
	Period     int    // matomo.PeriodDay …
	Date1      string // site-local YYYY-MM-DD
	Date2      string // defaults to Date1
	Name       string // done flag name; default "done"
	Done       int    // done value; default 1
	TSArchived time.Time
	NbVisits   int64 // written unless negative
}

// WriteArchive writes a into the monthly tables of its date1 (creating them)
// with an idarchive from the sequence table, as Matomo does. Shared by the
// harness and the simulator.
func WriteArchive(ctx context.Context, db *sql.DB, prefix string, a ArchiveRow) (int64, error) {
	if a.Date2 == "" {
		a.Date2 = a.Date1
	}
	if a.Name == "" {
		a.Name = "done"
	}
	if a.Done == 0 {
		a.Done = matomo.DoneOK
	}
	var y, m int
	if _, err := fmt.Sscanf(a.Date1, "%4d-%2d", &y, &m); err != nil {
		return 0, fmt.Errorf("archive date1 %q: %w", a.Date1, err)
	}
	if err := CreateArchiveTables(ctx, db, prefix, y, m); err != nil {
		return 0, err
	}
	numeric, _ := ArchiveTableNames(prefix, y, m)
	id, err := NextIDArchive(ctx, db, prefix, numeric)
	if err != nil {
		return 0, err
	}
	ins := "INSERT INTO `" + numeric + "` (idarchive, name, idsite, date1, date2, period, ts_archived, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
	if _, err := db.ExecContext(ctx, ins, id, a.Name, a.IDSite, a.Date1, a.Date2, a.Period, a.TSArchived.UTC(), a.Done); err != nil {
		return 0, err
	}
	if a.NbVisits >= 0 {
		if _, err := db.ExecContext(ctx, ins, id, "nb_visits", a.IDSite, a.Date1, a.Date2, a.Period, a.TSArchived.UTC(), a.NbVisits); err != nil {
			return 0, err
		}
	}
	return id, nil
}

// NextIDArchive allocates the next idarchive of a numeric table through
// the sequence table (Matomo's core/Sequence.php does the same).
func NextIDArchive(ctx context.Context, db *sql.DB, prefix, numericTable string) (int64, error) {
	res, err := db.ExecContext(ctx, "INSERT INTO `"+prefix+"sequence` (name, value) VALUES (?, LAST_INSERT_ID(1)) ON DUPLICATE KEY UPDATE value = LAST_INSERT_ID(value + 1)", numericTable)
	if err != nil {
		return 0, fmt.Errorf("sequence for %s: %w", numericTable, err)
	}
	return res.LastInsertId()
}

// AddArchive writes an archive (see WriteArchive) and returns its idarchive.
func (e *Env) AddArchive(a ArchiveRow) int64 {
	if e.t != nil {
		e.t.Helper()
	}
	id, err := WriteArchive(context.Background(), e.DB, e.Prefix, a)
	e.fail(err)
	return id
}

// AddDayArchive is the common case: a done day archive with nb_visits.
func (e *Env) AddDayArchive(idsite int, date string, done int, tsArchived time.Time, nbVisits int64) int64 {
	if e.t != nil {
		e.t.Helper()
	}
	return e.AddArchive(ArchiveRow{IDSite: idsite, Period: matomo.PeriodDay, Date1: date, Done: done, TSArchived: tsArchived, NbVisits: nbVisits})
}

// AddInvalidation inserts an archive_invalidations row for the plain done
// archive of a period.
func (e *Env) AddInvalidation(idsite int, period int, date1, date2 string, tsInvalidated time.Time, status int) *Env {
	if e.t != nil {
		e.t.Helper()
	}
	e.Exec(`INSERT INTO {p}archive_invalidations (idarchive, name, idsite, date1, date2, period, ts_invalidated, status)
		VALUES (NULL, 'done', ?, ?, ?, ?, ?, ?)`, idsite, date1, date2, period, tsInvalidated.UTC(), status)
	return e
}

// SetOption upserts an option row.
func (e *Env) SetOption(name, value string) *Env {
	if e.t != nil {
		e.t.Helper()
	}
	e.Exec("INSERT INTO {p}option (option_name, option_value, autoload) VALUES (?, ?, 0) ON DUPLICATE KEY UPDATE option_value = VALUES(option_value)", name, value)
	return e
}

// Count runs a COUNT query ({p} replaced) and returns the number.
func (e *Env) Count(q string, args ...any) int {
	if e.t != nil {
		e.t.Helper()
	}
	var n int
	e.fail(e.DB.QueryRow(strings.ReplaceAll(q, "{p}", e.Prefix), args...).Scan(&n))
	return n
}
