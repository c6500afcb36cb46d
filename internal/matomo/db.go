package matomo

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"database/sql"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-sql-driver/mysql"
)

// Done flag values of Matomo's archive done rows (core/DataAccess/ArchiveWriter.php).
const (
	DoneOK               = 1
	DoneError            = 2
	DoneOKTemporary      = 3
	DoneInvalidated      = 4
	DonePartial          = 5
	DoneErrorInvalidated = 6
)

// Periods as stored in archive tables.
const (
	PeriodDay   = 1
	PeriodWeek  = 2
	PeriodMonth = 3
	PeriodYear  = 4
	PeriodRange = 5
)

// DBOptions tune the connection; zero values take the defaults.
type DBOptions struct {
	ConnectTimeout time.Duration // default 5s
	QueryTimeout   time.Duration // default 30s, applied to every query
	MaxOpenConns   int           // default 4
	// Trace, when set, sees the text of every statement sent (tests use
	// it to EXPLAIN what a scan really runs).
	Trace func(query string, args ...any)
}

// DB is matomod's read access to Matomo's database. Every SQL string
// matomod runs against Matomo lives in this package.
type DB struct {
	db      *sql.DB
	prefix  string
	dbName  string
	timeout time.Duration
	trace   func(string, ...any)

	mu          sync.Mutex
	roundTrips  int64
	hasInvalTbl *bool
}

var tlsSeq struct {
	sync.Mutex
	n int
}

// DSN builds the go-sql-driver DSN for s (UTC, parseTime, timeouts). It
// contains the password: never log it.
func DSN(s DBSettings, o DBOptions) (string, error) {
	o = o.withDefaults()
	if err := ValidatePrefix(s.TablesPrefix); err != nil {
		return "", err
	}
	if s.DBName == "" {
		return "", errors.New("database name is empty: set [database] dbname in config.ini.php or database.dbname in matomod.yml")
	}
	c := mysql.NewConfig()
	c.User = s.User
	c.Passwd = string(s.Password)
	c.DBName = s.DBName
	if s.Socket != "" {
		c.Net, c.Addr = "unix", s.Socket
	} else {
		host := s.Host
		if host == "" || host == "localhost" {
			// Matomo's "localhost" means the default socket to PDO; TCP to
			// loopback reaches the same server without guessing a path.
			host = "127.0.0.1"
		}
		port := s.Port
		if port == 0 {
			port = 3306
		}
		c.Net, c.Addr = "tcp", fmt.Sprintf("%s:%d", host, port)
		if strings.Contains(host, ":") {
			c.Addr = fmt.Sprintf("[%s]:%d", host, port)
		}
	}
	c.ParseTime = true
	c.Loc = time.UTC
	c.Timeout = o.ConnectTimeout
	c.ReadTimeout = o.QueryTimeout + 5*time.Second
	c.WriteTimeout = o.QueryTimeout + 5*time.Second
	c.Params = map[string]string{"time_zone": "'+00:00'"}
	if s.Charset != "" {
		if err := c.Apply(mysql.Charset(s.Charset, "")); err != nil {
			return "", err
		}
	}
	if s.EnableSSL {
		tc := &tls.Config{InsecureSkipVerify: s.SSLNoVerify} //nolint:gosec // operator's explicit ssl_no_verify
		if s.SSLCA != "" {
			pem, err := os.ReadFile(s.SSLCA)
			if err != nil {
				return "", fmt.Errorf("ssl_ca %s: %w", s.SSLCA, err)
			}
			pool := x509.NewCertPool()
			if !pool.AppendCertsFromPEM(pem) {
				return "", fmt.Errorf("ssl_ca %s: no PEM certificate found", s.SSLCA)
			}
			tc.RootCAs = pool
		}
		if s.SSLCert != "" || s.SSLKey != "" {
			cert, err := tls.LoadX509KeyPair(s.SSLCert, s.SSLKey)
			if err != nil {
				return "", fmt.Errorf("ssl_cert/ssl_key: %w", err)
			}
			tc.Certificates = []tls.Certificate{cert}
		}
		if s.Socket == "" {
			tc.ServerName, _, _ = strings.Cut(c.Addr, ":")
		}
		tlsSeq.Lock()
		tlsSeq.n++
		name := "matomod" + strconv.Itoa(tlsSeq.n)
		tlsSeq.Unlock()
		if err := mysql.RegisterTLSConfig(name, tc); err != nil {
			return "", err
		}
		c.TLSConfig = name
	}
	return c.FormatDSN(), nil
}

func (o DBOptions) withDefaults() DBOptions {
	if o.ConnectTimeout <= 0 {
		o.ConnectTimeout = 5 * time.Second
	}
	if o.QueryTimeout <= 0 {
		o.QueryTimeout = 30 * time.Second
	}
	if o.MaxOpenConns <= 0 {
		o.MaxOpenConns = 4
	}
	return o
}

// Open returns a pool for Matomo's DB. It does not connect: call Ping.
func Open(s DBSettings, o DBOptions) (*DB, error) {
	o = o.withDefaults()
	dsn, err := DSN(s, o)
	if err != nil {
		return nil, err
	}
	db, err := sql.Open("mysql", dsn)
	if err != nil {
		return nil, fmt.Errorf("database %s: %w", s.DBName, err)
	}
	db.SetMaxOpenConns(o.MaxOpenConns)
	db.SetMaxIdleConns(o.MaxOpenConns)
	db.SetConnMaxLifetime(10 * time.Minute)
	db.SetConnMaxIdleTime(2 * time.Minute)
	return &DB{db: db, prefix: s.TablesPrefix, dbName: s.DBName, timeout: o.QueryTimeout, trace: o.Trace}, nil
}

// Close releases the pool.
func (d *DB) Close() error { return d.db.Close() }

// SQL exposes the pool for leader election, which needs a dedicated conn.
func (d *DB) SQL() *sql.DB { return d.db }

// Name is the database name (used to name the leader lock).
func (d *DB) Name() string { return d.dbName }

// Prefix is the validated tables_prefix.
func (d *DB) Prefix() string { return d.prefix }

// RoundTrips counts queries sent, for the benchmark.
func (d *DB) RoundTrips() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.roundTrips
}

func (d *DB) count(q string, args ...any) {
	d.mu.Lock()
	d.roundTrips++
	d.mu.Unlock()
	if d.trace != nil {
		d.trace(q, args...)
	}
}

func (d *DB) ctx(parent context.Context) (context.Context, context.CancelFunc) {
	return context.WithTimeout(parent, d.timeout)
}

// T returns the quoted, prefixed table name. name is always one of ours.
func (d *DB) T(name string) string { return "`" + d.prefix + name + "`" }

func (d *DB) query(ctx context.Context, q string, args ...any) (*sql.Rows, context.CancelFunc, error) {
	ctx, cancel := d.ctx(ctx)
	d.count(q, args...)
	rows, err := d.db.QueryContext(ctx, q, args...)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	return rows, cancel, nil
}

// queryRow is QueryRowContext, counted and traced like query.
func (d *DB) queryRow(ctx context.Context, q string, args ...any) *sql.Row {
	d.count(q, args...)
	return d.db.QueryRowContext(ctx, q, args...)
}

// Ping checks the DB answers.
func (d *DB) Ping(ctx context.Context) error {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	d.count("ping")
	if err := d.db.PingContext(ctx); err != nil {
		return fmt.Errorf("database %s unreachable: %w", d.dbName, err)
	}
	return nil
}

// Site is one Matomo website.
type Site struct {
	ID       int
	Name     string
	TZName   string
	Loc      *time.Location // nil when TZName is invalid (TZErr says why)
	TZErr    error
	Created  Date // date part of ts_created (UTC)
	HasCrDat bool
}

// Sites lists every site with its time zone resolved.
func (d *DB) Sites(ctx context.Context) ([]Site, error) {
	rows, cancel, err := d.query(ctx, "SELECT idsite, name, ts_created, timezone FROM "+d.T("site")+" ORDER BY idsite")
	if err != nil {
		return nil, fmt.Errorf("reading %ssite: %w", d.prefix, err)
	}
	defer cancel()
	defer rows.Close()
	var out []Site
	for rows.Next() {
		var s Site
		var created sql.NullTime
		var name, tz sql.NullString // NULLs must skip one site, not fail the scan
		if err := rows.Scan(&s.ID, &name, &created, &tz); err != nil {
			return nil, fmt.Errorf("reading %ssite: %w", d.prefix, err)
		}
		if created.Valid {
			s.Created, s.HasCrDat = DateOf(created.Time.UTC()), true
		}
		s.Name, s.TZName = name.String, tz.String
		s.Loc, s.TZErr = LoadLocation(s.TZName)
		if s.TZErr != nil {
			s.TZErr = fmt.Errorf("site %d: %w", s.ID, s.TZErr)
		}
		out = append(out, s)
	}
	return out, rows.Err()
}

// TablesPresent reports which of the tables matomod reads exist.
func (d *DB) TablesPresent(ctx context.Context) (map[string]bool, error) {
	rows, cancel, err := d.query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name IN (?, ?, ?, ?)",
		d.prefix+"site", d.prefix+"log_visit", d.prefix+"option", d.prefix+"archive_invalidations")
	if err != nil {
		return nil, err
	}
	defer cancel()
	defer rows.Close()
	out := map[string]bool{"site": false, "log_visit": false, "option": false, "archive_invalidations": false}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		out[strings.TrimPrefix(n, d.prefix)] = true
	}
	return out, rows.Err()
}

// ArchiveTable is one archive_numeric_YYYY_MM table; Month is its first day.
type ArchiveTable struct {
	Name  string // without prefix
	Month Date
}

var archiveTableRE = regexp.MustCompile(`^archive_numeric_(\d{4})_(\d{2})$`)

// ArchiveTables lists the monthly numeric tables, oldest first.
func (d *DB) ArchiveTables(ctx context.Context) ([]ArchiveTable, error) {
	rows, cancel, err := d.query(ctx, "SELECT table_name FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name LIKE ?",
		likeEscape(d.prefix+"archive_numeric_")+"%")
	if err != nil {
		return nil, fmt.Errorf("listing archive tables: %w", err)
	}
	defer cancel()
	defer rows.Close()
	var out []ArchiveTable
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		m := archiveTableRE.FindStringSubmatch(strings.TrimPrefix(n, d.prefix))
		if m == nil {
			continue
		}
		y, _ := strconv.Atoi(m[1])
		mo, _ := strconv.Atoi(m[2])
		if mo < 1 || mo > 12 {
			continue
		}
		out = append(out, ArchiveTable{Name: strings.TrimPrefix(n, d.prefix), Month: NewDate(y, time.Month(mo), 1)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Month < out[j].Month })
	return out, rows.Err()
}

func likeEscape(s string) string {
	r := strings.NewReplacer(`\`, `\\`, `_`, `\_`, `%`, `\%`)
	return r.Replace(s)
}

// DoneFlag is one no-segment archive's done row: a day's (Period 1, or 0
// where only day rows are read) or a week's, month's or year's.
type DoneFlag struct {
	IDSite     int
	Date       Date // date1: the day, or the first day of the period
	IDArchive  int64
	Value      int
	TSArchived time.Time
	Period     int  // PeriodDay … PeriodYear; 0 when not read
	Date2      Date // the period's last day; 0 (or Date) for a day
}

// Last is the last day the archive covers.
func (f DoneFlag) Last() Date {
	if f.Date2 > f.Date {
		return f.Date2
	}
	return f.Date
}

// Newer reports whether f supersedes g for the same site-day: the newest
// ts_archived wins, then the highest idarchive (Matomo's own rule).
func (f DoneFlag) Newer(g DoneFlag) bool {
	if !f.TSArchived.Equal(g.TSArchived) {
		return f.TSArchived.After(g.TSArchived)
	}
	return f.IDArchive > g.IDArchive
}

// Good reports whether f, the newest plain done flag of a site-day or
// period (see Newer), is a complete OK archive of it in loc: done = 1 (or
// the deprecated 3) written at or after the end of its last local day. An
// archive written before that is partial by nature, yet carries done = 1
// (Matomo's determineIfArchivePermanent). This is the one definition of
// "the day (period) is archived" that gap detection and repair's check
// both use.
func (f DoneFlag) Good(loc *time.Location) bool {
	if f.IDArchive == 0 || loc == nil || (f.Value != DoneOK && f.Value != DoneOKTemporary) {
		return false
	}
	return !f.TSArchived.Before(DayEnd(loc, f.Last()))
}

// IsOK reports whether f's done value says the archive finished (1, or 3).
func (f DoneFlag) IsOK() bool { return f.Value == DoneOK || f.Value == DoneOKTemporary }

// DoneFlagsSQL is the full read of one monthly table's day, week, month
// and year done rows (the periods live in the table of their date1, so one
// scan serves them all; they add about a fifth to the day rows). Only the
// row named exactly 'done' is the archive: segment (done<hash>) and plugin
// (done.Plugin) flags do not count. A table scan measured faster than
// index_idsite_dates_period for this (every row of period 1 is wanted).
func (d *DB) DoneFlagsSQL(table string, sites []int) string {
	q := "SELECT " + doneCols + " FROM " + d.T(table) +
		" WHERE period IN (1, 2, 3, 4) AND name = 'done'"
	return q + siteFilter(sites)
}

// PeriodFlagsSQL reads only the week, month and year done rows of a table:
// a range on index_period_archived (period is its first column), for the
// tables before the window that hold a period reaching into it (the
// previous year's January, the month of the window's first Monday).
func (d *DB) PeriodFlagsSQL(table string) string {
	return "SELECT " + doneCols + " FROM " + d.T(table) +
		" FORCE INDEX (index_period_archived) WHERE period IN (2, 3, 4) AND name = 'done'"
}

// PeriodFlags reads PeriodFlagsSQL; a missing table means no rows.
func (d *DB) PeriodFlags(ctx context.Context, table string, fn func(DoneFlag)) error {
	rows, cancel, err := d.query(ctx, d.PeriodFlagsSQL(table))
	if err != nil {
		if isNoSuchTable(err) {
			return nil
		}
		return fmt.Errorf("reading period done flags from %s%s: %w", d.prefix, table, err)
	}
	if err := scanFlags(rows, cancel, fn); err != nil {
		return fmt.Errorf("reading period done flags from %s%s: %w", d.prefix, table, err)
	}
	return nil
}

// DoneFlagsSinceSQL reads day done rows archived at or after since, through
// index_period_archived (a range on (period, ts_archived)).
func (d *DB) DoneFlagsSinceSQL(table string, sites []int) string {
	return "SELECT " + doneCols + " FROM " + d.T(table) +
		" FORCE INDEX (index_period_archived) WHERE period = 1 AND ts_archived >= ? AND name = 'done'" + siteFilter(sites)
}

func siteFilter(sites []int) string {
	if len(sites) == 0 {
		return ""
	}
	var b strings.Builder
	b.WriteString(" AND idsite IN (")
	for i, s := range sites {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(strconv.Itoa(s))
	}
	b.WriteByte(')')
	return b.String()
}

// DoneFlags reads every day done row of the given monthly tables (one query
// per table), or with since non-zero only those archived at or after since.
// fn is called for each row; rows are not buffered.
func (d *DB) DoneFlags(ctx context.Context, tables []string, sites []int, since time.Time, fn func(DoneFlag)) error {
	if !since.IsZero() && len(tables) > 0 {
		// The incremental read is a handful of index ranges: one round
		// trip for all tables.
		branches := make([]string, len(tables))
		args := make([]any, len(tables))
		for i, t := range tables {
			branches[i] = "(" + d.DoneFlagsSinceSQL(t, sites) + ")"
			args[i] = since.UTC()
		}
		rows, cancel, err := d.query(ctx, strings.Join(branches, " UNION ALL "), args...)
		if err == nil {
			err = scanFlags(rows, cancel, fn)
		}
		if err != nil && !isNoSuchTable(err) {
			return fmt.Errorf("reading new done flags: %w", err)
		}
		if err == nil {
			return nil
		}
		// A table was dropped between listing and reading: per table.
	}
	for _, t := range tables {
		var (
			rows   *sql.Rows
			cancel context.CancelFunc
			err    error
		)
		if since.IsZero() {
			rows, cancel, err = d.query(ctx, d.DoneFlagsSQL(t, sites))
		} else {
			rows, cancel, err = d.query(ctx, d.DoneFlagsSinceSQL(t, sites), since.UTC())
		}
		if err != nil {
			if isNoSuchTable(err) { // dropped between listing and reading
				continue
			}
			return fmt.Errorf("reading done flags from %s%s: %w", d.prefix, t, err)
		}
		err = scanFlags(rows, cancel, fn)
		if err != nil {
			return fmt.Errorf("reading done flags from %s%s: %w", d.prefix, t, err)
		}
	}
	return nil
}

func isNoSuchTable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1146
}

// NbVisits reads nb_visits of the given archives of one monthly table.
func (d *DB) NbVisits(ctx context.Context, table string, ids []int64) (map[int64]int64, error) {
	out := make(map[int64]int64, len(ids))
	for len(ids) > 0 {
		n := min(len(ids), 1000)
		batch := ids[:n]
		ids = ids[n:]
		var b strings.Builder
		b.WriteString("SELECT idarchive, value FROM " + d.T(table) + " WHERE name = 'nb_visits' AND idarchive IN (")
		for i, id := range batch {
			if i > 0 {
				b.WriteByte(',')
			}
			b.WriteString(strconv.FormatInt(id, 10))
		}
		b.WriteByte(')')
		rows, cancel, err := d.query(ctx, b.String())
		if err != nil {
			return nil, fmt.Errorf("reading nb_visits from %s%s: %w", d.prefix, table, err)
		}
		err = func() error {
			defer cancel()
			defer rows.Close()
			for rows.Next() {
				var id int64
				var v float64
				if err := rows.Scan(&id, &v); err != nil {
					return err
				}
				out[id] = int64(v)
			}
			return rows.Err()
		}()
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Probe asks how many raw visits site IDSite has in [From, To) (UTC).
type Probe struct {
	IDSite   int
	From, To time.Time
}

const sqlTime = "2006-01-02 15:04:05"

// ProbeSQL counts visits for each probe, one UNION ALL branch per probe, each
// an index range on index_idsite_datetime. Values are generated (ints and
// formatted times), never user text, so they are inlined.
func (d *DB) ProbeSQL(probes []Probe) string {
	var b strings.Builder
	lv := d.T("log_visit")
	for i, p := range probes {
		if i > 0 {
			b.WriteString(" UNION ALL ")
		}
		fmt.Fprintf(&b, "SELECT %d AS k, COUNT(*) AS n FROM %s FORCE INDEX (index_idsite_datetime) WHERE idsite = %d AND visit_last_action_time >= '%s' AND visit_last_action_time < '%s'",
			i, lv, p.IDSite, p.From.UTC().Format(sqlTime), p.To.UTC().Format(sqlTime))
	}
	return b.String()
}

// ProbeBatch is how many site-days one round trip counts.
const ProbeBatch = 400

// CountVisits returns the raw visit count of each probe, batched.
func (d *DB) CountVisits(ctx context.Context, probes []Probe) ([]int64, error) {
	out := make([]int64, len(probes))
	for off := 0; off < len(probes); off += ProbeBatch {
		batch := probes[off:min(off+ProbeBatch, len(probes))]
		rows, cancel, err := d.query(ctx, d.ProbeSQL(batch))
		if err != nil {
			return nil, fmt.Errorf("counting raw visits in %slog_visit: %w", d.prefix, err)
		}
		err = func() error {
			defer cancel()
			defer rows.Close()
			for rows.Next() {
				var k int
				var n int64
				if err := rows.Scan(&k, &n); err != nil {
					return err
				}
				if k >= 0 && k < len(batch) {
					out[off+k] = n
				}
			}
			return rows.Err()
		}()
		if err != nil {
			return nil, fmt.Errorf("counting raw visits in %slog_visit: %w", d.prefix, err)
		}
	}
	return out, nil
}

// FirstVisits returns each site's earliest raw visit (UTC); sites without
// visits are absent. MIN on the index prefix is answered from the index.
func (d *DB) FirstVisits(ctx context.Context, sites []int) (map[int]time.Time, error) {
	out := map[int]time.Time{}
	for off := 0; off < len(sites); off += ProbeBatch {
		batch := sites[off:min(off+ProbeBatch, len(sites))]
		var b strings.Builder
		for i, s := range batch {
			if i > 0 {
				b.WriteString(" UNION ALL ")
			}
			fmt.Fprintf(&b, "SELECT %d, MIN(visit_last_action_time) FROM %s WHERE idsite = %d", s, d.T("log_visit"), s)
		}
		rows, cancel, err := d.query(ctx, b.String())
		if err != nil {
			return nil, fmt.Errorf("reading first visits: %w", err)
		}
		err = func() error {
			defer cancel()
			defer rows.Close()
			for rows.Next() {
				var id int
				var t sql.NullTime
				if err := rows.Scan(&id, &t); err != nil {
					return err
				}
				if t.Valid {
					out[id] = t.Time.UTC()
				}
			}
			return rows.Err()
		}()
		if err != nil {
			return nil, fmt.Errorf("reading first visits: %w", err)
		}
	}
	return out, nil
}

// Options is what matomod reads from Matomo's option table.
type Options struct {
	VersionCore string
	// Log deletion: nil when no option row exists (config.ini.php applies).
	DeleteLogsEnable           *bool
	DeleteLogsOlderThan        *int
	LastCompletedFullArchiving time.Time
	LastFullArchivingStart     time.Time
	ReportsToInvalidate        int // pending *_report_to_invalidate_* rows
}

// ReadOptions reads the option rows matomod cares about.
func (d *DB) ReadOptions(ctx context.Context) (Options, error) {
	var o Options
	rows, cancel, err := d.query(ctx, "SELECT option_name, option_value FROM "+d.T("option")+
		" WHERE option_name IN ('version_core', 'delete_logs_enable', 'delete_logs_older_than', 'LastCompletedFullArchiving', 'LastFullArchivingStartTime')")
	if err != nil {
		return o, fmt.Errorf("reading %soption: %w", d.prefix, err)
	}
	err = func() error {
		defer cancel()
		defer rows.Close()
		for rows.Next() {
			var name, val string
			if err := rows.Scan(&name, &val); err != nil {
				return err
			}
			switch name {
			case "version_core":
				o.VersionCore = val
			case "delete_logs_enable":
				b := truthy(val)
				o.DeleteLogsEnable = &b
			case "delete_logs_older_than":
				if n, err := strconv.Atoi(strings.TrimSpace(val)); err == nil && n > 0 {
					o.DeleteLogsOlderThan = &n
				}
			case "LastCompletedFullArchiving":
				o.LastCompletedFullArchiving = unixOption(val)
			case "LastFullArchivingStartTime":
				o.LastFullArchivingStart = unixOption(val)
			}
		}
		return rows.Err()
	}()
	if err != nil {
		return o, fmt.Errorf("reading %soption: %w", d.prefix, err)
	}
	ctx2, cancel2 := d.ctx(ctx)
	defer cancel2()
	err = d.queryRow(ctx2, "SELECT COUNT(*) FROM "+d.T("option")+" WHERE option_name LIKE '%report\\_to\\_invalidate\\_%'").Scan(&o.ReportsToInvalidate)
	if err != nil {
		return o, fmt.Errorf("reading %soption: %w", d.prefix, err)
	}
	return o, nil
}

func unixOption(v string) time.Time {
	n, err := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
	if err != nil || n <= 0 {
		return time.Time{}
	}
	return time.Unix(n, 0).UTC()
}

// DayInvalidation is the newest queue row for a no-segment day archive.
type DayInvalidation struct {
	IDSite        int
	Date          Date
	TSInvalidated time.Time
	InProgress    bool
}

// DayInvalidations reads queued day invalidations in [from, to] (site-local
// dates). ok is false when the table does not exist (Matomo 3).
func (d *DB) DayInvalidations(ctx context.Context, from, to Date, sites []int) (inv []DayInvalidation, ok bool, err error) {
	q := "SELECT idsite, date1, MAX(ts_invalidated), MAX(status) FROM " + d.T("archive_invalidations") +
		" WHERE period = 1 AND name = 'done' AND date1 BETWEEN ? AND ?" + siteFilter(sites) + " GROUP BY idsite, date1"
	rows, cancel, err := d.query(ctx, q, from.String(), to.String())
	if err != nil {
		if isNoSuchTable(err) {
			return nil, false, nil
		}
		return nil, false, fmt.Errorf("reading %sarchive_invalidations: %w", d.prefix, err)
	}
	defer cancel()
	defer rows.Close()
	for rows.Next() {
		var v DayInvalidation
		var date time.Time
		var ts sql.NullTime
		var st sql.NullInt64
		if err := rows.Scan(&v.IDSite, &date, &ts, &st); err != nil {
			return nil, true, err
		}
		v.Date = DateOf(date)
		v.TSInvalidated = ts.Time
		v.InProgress = st.Int64 == 1
		inv = append(inv, v)
	}
	return inv, true, rows.Err()
}

// PeriodInvalidation is the newest queue row of a no-segment week, month
// or year archive.
type PeriodInvalidation struct {
	IDSite        int
	Period        int
	Date          Date // date1
	TSInvalidated time.Time
	InProgress    bool
}

// PeriodInvalidations reads queued week, month and year invalidations
// whose date1 is in [from, to]. A missing table (Matomo 3) means none.
func (d *DB) PeriodInvalidations(ctx context.Context, from, to Date, sites []int) ([]PeriodInvalidation, error) {
	q := "SELECT idsite, period, date1, MAX(ts_invalidated), MAX(status) FROM " + d.T("archive_invalidations") +
		" WHERE period IN (2, 3, 4) AND name = 'done' AND date1 BETWEEN ? AND ?" + siteFilter(sites) + " GROUP BY idsite, period, date1"
	rows, cancel, err := d.query(ctx, q, from.String(), to.String())
	if err != nil {
		if isNoSuchTable(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading %sarchive_invalidations: %w", d.prefix, err)
	}
	defer cancel()
	defer rows.Close()
	var inv []PeriodInvalidation
	for rows.Next() {
		var v PeriodInvalidation
		var date time.Time
		var ts sql.NullTime
		var st sql.NullInt64
		if err := rows.Scan(&v.IDSite, &v.Period, &date, &ts, &st); err != nil {
			return nil, fmt.Errorf("reading %sarchive_invalidations: %w", d.prefix, err)
		}
		v.Date = DateOf(date)
		v.TSInvalidated = ts.Time
		v.InProgress = st.Int64 == 1
		inv = append(inv, v)
	}
	return inv, rows.Err()
}

// PeriodKey names one site's week, month or year by its first day.
type PeriodKey struct {
	IDSite int
	Period int
	Date   Date
}

// NewestPeriodDone reads the newest plain done flag of each given week,
// month or year (absent: no archive), for repair's check after a run.
func (d *DB) NewestPeriodDone(ctx context.Context, keys []PeriodKey) (map[PeriodKey]DoneFlag, error) {
	byTable := map[string][]PeriodKey{}
	for _, k := range keys {
		byTable[TableFor(k.Date)] = append(byTable[TableFor(k.Date)], k)
	}
	out := make(map[PeriodKey]DoneFlag, len(keys))
	for t, ks := range byTable {
		for off := 0; off < len(ks); off += ProbeBatch {
			batch := ks[off:min(off+ProbeBatch, len(ks))]
			var b strings.Builder
			b.WriteString("SELECT " + doneCols + " FROM " + d.T(t) + " WHERE name = 'done' AND (")
			for i, k := range batch {
				if i > 0 {
					b.WriteString(" OR ")
				}
				fmt.Fprintf(&b, "(idsite = %d AND date1 = '%s' AND period = %d)", k.IDSite, k.Date, k.Period)
			}
			b.WriteString(")")
			rows, cancel, err := d.query(ctx, b.String())
			if err != nil {
				if isNoSuchTable(err) {
					break
				}
				return nil, fmt.Errorf("reading period done flags from %s%s: %w", d.prefix, t, err)
			}
			err = scanFlags(rows, cancel, func(f DoneFlag) {
				k := PeriodKey{IDSite: f.IDSite, Period: f.Period, Date: f.Date}
				if n, ok := out[k]; !ok || f.Newer(n) {
					out[k] = f
				}
			})
			if err != nil {
				return nil, fmt.Errorf("reading period done flags from %s%s: %w", d.prefix, t, err)
			}
		}
	}
	return out, nil
}

// Backlog is Matomo's invalidation queue in summary.
type Backlog struct {
	Present                        bool // the table exists
	Queued, InProgress             int
	OldestQueued, OldestInProgress time.Time
}

// InvalidationBacklog summarises archive_invalidations by status.
func (d *DB) InvalidationBacklog(ctx context.Context) (Backlog, error) {
	var b Backlog
	rows, cancel, err := d.query(ctx, "SELECT status, COUNT(*), MIN(ts_invalidated), MIN(ts_started) FROM "+d.T("archive_invalidations")+" GROUP BY status")
	if err != nil {
		if isNoSuchTable(err) {
			return b, nil
		}
		return b, fmt.Errorf("reading %sarchive_invalidations: %w", d.prefix, err)
	}
	defer cancel()
	defer rows.Close()
	b.Present = true
	for rows.Next() {
		var st sql.NullInt64
		var n int
		var inv, started sql.NullTime
		if err := rows.Scan(&st, &n, &inv, &started); err != nil {
			return b, err
		}
		if st.Int64 == 1 {
			b.InProgress += n
			t := started.Time
			if !started.Valid {
				t = inv.Time
			}
			b.OldestInProgress = t
		} else {
			b.Queued += n
			b.OldestQueued = inv.Time
		}
	}
	return b, rows.Err()
}

// SiteDate names one site-day.
type SiteDate struct {
	IDSite int
	Date   Date
}

// DateSpan is a run of days [From, To] of one site.
type DateSpan struct {
	IDSite   int
	From, To Date
}

// Spans folds site-days into runs of consecutive days (sorted by site,
// then date; duplicates dropped).
func Spans(keys []SiteDate) []DateSpan {
	keys = slices.Clone(keys)
	slices.SortFunc(keys, func(a, b SiteDate) int {
		if a.IDSite != b.IDSite {
			return a.IDSite - b.IDSite
		}
		return int(a.Date - b.Date)
	})
	var out []DateSpan
	for _, k := range keys {
		if n := len(out); n > 0 && out[n-1].IDSite == k.IDSite && k.Date <= out[n-1].To+1 {
			out[n-1].To = max(out[n-1].To, k.Date)
			continue
		}
		out = append(out, DateSpan{IDSite: k.IDSite, From: k.Date, To: k.Date})
	}
	return out
}

// spanFilter is an OR of (idsite, date1) ranges that the range optimizer
// turns into ranges on index_idsite_dates_period: a run of days costs one
// index dive, not one per day (measured 3× faster than point ranges for
// a site's month).
func spanFilter(b *strings.Builder, col string, spans []DateSpan) {
	b.WriteString(" AND (")
	for i, sp := range spans {
		if i > 0 {
			b.WriteString(" OR ")
		}
		if sp.From == sp.To {
			fmt.Fprintf(b, "(%sidsite = %d AND %sdate1 = '%s')", col, sp.IDSite, col, sp.From)
		} else {
			fmt.Fprintf(b, "(%sidsite = %d AND %sdate1 BETWEEN '%s' AND '%s')", col, sp.IDSite, col, sp.From, sp.To)
		}
	}
	b.WriteString(")")
}

// DoneFlagsForSQL reads the day done rows of runs of site-days of one
// monthly table.
func (d *DB) DoneFlagsForSQL(table string, spans []DateSpan) string {
	var b strings.Builder
	b.WriteString("SELECT " + doneCols + " FROM " + d.T(table) + " WHERE period = 1 AND name = 'done'")
	spanFilter(&b, "", spans)
	return b.String()
}

// DoneFlagsFor reads the day done rows of the given site-days, which must
// all fall in table's month. A missing table means no rows.
func (d *DB) DoneFlagsFor(ctx context.Context, table string, keys []SiteDate, fn func(DoneFlag)) error {
	spans := Spans(keys)
	for off := 0; off < len(spans); off += ProbeBatch {
		batch := spans[off:min(off+ProbeBatch, len(spans))]
		rows, cancel, err := d.query(ctx, d.DoneFlagsForSQL(table, batch))
		if err != nil {
			if isNoSuchTable(err) {
				return nil
			}
			return fmt.Errorf("reading done flags from %s%s: %w", d.prefix, table, err)
		}
		if err := scanFlags(rows, cancel, fn); err != nil {
			return fmt.Errorf("reading done flags from %s%s: %w", d.prefix, table, err)
		}
	}
	return nil
}

// DayVisitsSQL reads the day done rows of one monthly table with the
// nb_visits of each archive (a primary-key lookup per row): of the given
// runs of site-days, or of every site-day when spans is nil (a table
// scan, chosen when the runs would cover much of the table: a month of
// 400 sites by ranges measured slower than the whole table's scan).
func (d *DB) DayVisitsSQL(table string, spans []DateSpan) string {
	var b strings.Builder
	t := d.T(table)
	b.WriteString("SELECT d.idsite, TO_DAYS(d.date1) - 719528, d.idarchive, d.value, UNIX_TIMESTAMP(d.ts_archived), d.period, TO_DAYS(d.date2) - 719528, n.value FROM " +
		t + " d LEFT JOIN " + t + " n ON n.idarchive = d.idarchive AND n.name = 'nb_visits' WHERE d.period = 1 AND d.name = 'done'")
	if spans != nil {
		spanFilter(&b, "d.", spans)
	}
	return b.String()
}

// DayVisits calls fn with every day done row of the given runs of
// site-days (all of table's days when spans is nil) and the archive's
// nb_visits (ok false when it has none). A missing table means no rows.
func (d *DB) DayVisits(ctx context.Context, table string, spans []DateSpan, fn func(f DoneFlag, nb int64, ok bool)) error {
	for first := true; first || len(spans) > 0; first = false {
		batch := spans
		if spans != nil {
			batch = spans[:min(ProbeBatch, len(spans))]
			spans = spans[len(batch):]
		}
		if err := d.dayVisits(ctx, table, batch, fn); err != nil {
			return fmt.Errorf("reading day archives with nb_visits from %s%s: %w", d.prefix, table, err)
		}
	}
	return nil
}

func (d *DB) dayVisits(ctx context.Context, table string, spans []DateSpan, fn func(DoneFlag, int64, bool)) error {
	rows, cancel, err := d.query(ctx, d.DayVisitsSQL(table, spans))
	if err != nil {
		if isNoSuchTable(err) {
			return nil
		}
		return err
	}
	defer cancel()
	defer rows.Close()
	var nb sql.NullFloat64
	return scanFlagsInto(rows, func(f DoneFlag) { fn(f, int64(nb.Float64), nb.Valid) }, &nb)
}

// doneCols reads a done row as integers: days since 1970-01-01 for date1
// and Unix seconds for ts_archived (the session time zone is UTC). Millions
// of rows are read per full scan; integers cost far less to decode than
// DATE and DATETIME values.
const doneCols = "idsite, TO_DAYS(date1) - 719528, idarchive, value, UNIX_TIMESTAMP(ts_archived), period, TO_DAYS(date2) - 719528"

func scanFlags(rows *sql.Rows, cancel context.CancelFunc, fn func(DoneFlag)) error {
	defer cancel()
	defer rows.Close()
	return scanFlagsInto(rows, fn)
}

// scanFlagsInto scans doneCols, then the extra columns into extra (read
// them in fn), for each row.
func scanFlagsInto(rows *sql.Rows, fn func(DoneFlag), extra ...any) error {
	var (
		f         DoneFlag
		day, day2 sql.NullInt64
		val       sql.NullFloat64
		ts        sql.NullInt64
	)
	dest := append([]any{&f.IDSite, &day, &f.IDArchive, &val, &ts, &f.Period, &day2}, extra...)
	for rows.Next() {
		if err := rows.Scan(dest...); err != nil {
			return err
		}
		f.Date, f.Date2 = Date(day.Int64), Date(day2.Int64)
		f.Value = int(val.Float64)
		f.TSArchived = time.Time{}
		if ts.Valid {
			f.TSArchived = time.Unix(ts.Int64, 0).UTC()
		}
		fn(f)
	}
	return rows.Err()
}

// TableFor is the numeric archive table (without prefix) holding archives
// whose date1 is d.
func TableFor(d Date) string {
	y, m, _ := d.Time().Date()
	b := make([]byte, 0, 23)
	b = append(b, "archive_numeric_"...)
	b = strconv.AppendInt(b, int64(y), 10)
	b = append(b, '_', byte('0'+int(m)/10), byte('0'+int(m)%10))
	return string(b)
}

// Now returns the database server's UTC clock, the watermark for
// incremental reads (ts_archived is written with the server's clock).
func (d *DB) Now(ctx context.Context) (time.Time, error) {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	var t time.Time
	if err := d.queryRow(ctx, "SELECT UTC_TIMESTAMP()").Scan(&t); err != nil {
		return time.Time{}, fmt.Errorf("database %s: %w", d.dbName, err)
	}
	return t.UTC(), nil
}

// Span is a UTC time range [From, To).
type Span struct{ From, To time.Time }

// SiteSpans asks for the raw visits of one site inside some spans.
type SiteSpans struct {
	IDSite int
	Spans  []Span
}

// VisitTimesSQL lists the last-action times of the visits inside the
// spans: per site one index scan of index_idsite_datetime over several
// ranges, sites joined by UNION ALL. Values are generated, never user text.
func (d *DB) VisitTimesSQL(req []SiteSpans) string {
	var b strings.Builder
	lv := d.T("log_visit")
	for i, r := range req {
		if i > 0 {
			b.WriteString(" UNION ALL ")
		}
		fmt.Fprintf(&b, "(SELECT idsite, UNIX_TIMESTAMP(visit_last_action_time) FROM %s FORCE INDEX (index_idsite_datetime) WHERE idsite = %d AND (", lv, r.IDSite)
		for j, s := range r.Spans {
			if j > 0 {
				b.WriteString(" OR ")
			}
			fmt.Fprintf(&b, "visit_last_action_time >= '%s' AND visit_last_action_time < '%s'", s.From.UTC().Format(sqlTime), s.To.UTC().Format(sqlTime))
		}
		b.WriteString("))")
	}
	return b.String()
}

// spansPerQuery bounds one statement's size.
const spansPerQuery = 2000

// VisitTimes calls fn with every visit inside the requested spans. Gap
// candidates are days without archives, which have few or no visits, so
// fetching the times is cheaper than one COUNT per day: the server does one
// multi-range index scan per site instead of a subquery per day.
func (d *DB) VisitTimes(ctx context.Context, req []SiteSpans, fn func(idsite int, t time.Time)) error {
	for len(req) > 0 {
		n, spans := 0, 0
		for n < len(req) && (n == 0 || spans+len(req[n].Spans) <= spansPerQuery) {
			spans += len(req[n].Spans)
			n++
		}
		rows, cancel, err := d.query(ctx, d.VisitTimesSQL(req[:n]))
		if err != nil {
			return fmt.Errorf("reading raw visits from %slog_visit: %w", d.prefix, err)
		}
		err = func() error {
			defer cancel()
			defer rows.Close()
			for rows.Next() {
				var id int
				var ts int64
				if err := rows.Scan(&id, &ts); err != nil {
					return err
				}
				fn(id, time.Unix(ts, 0).UTC())
			}
			return rows.Err()
		}()
		if err != nil {
			return fmt.Errorf("reading raw visits from %slog_visit: %w", d.prefix, err)
		}
		req = req[n:]
	}
	return nil
}

// TableSig is what information_schema says of one monthly archive table:
// the cheap, exact signal that anything in it changed. InnoDB sets
// UPDATE_TIME at every committed insert, update or delete (in memory: it
// reads NULL again after a server restart or when the table leaves the
// dictionary cache, which only costs a re-read); CREATE_TIME changes when
// the table is dropped and created again (a restore). Deleted archive rows
// and done values changed in place leave no other trace: index_period_archived
// only shows rows written since a watermark.
type TableSig struct {
	ArchiveTable
	Created, Updated time.Time // zero for NULL
	// Recent: UPDATE_TIME is within a second of the server clock, so a
	// change later in the same second would not move it: read again.
	Recent bool
	// Seq is the table's row in Matomo's sequence table (the last
	// idarchive handed out): it moves with every new archive even when
	// UPDATE_TIME was lost (NULL after an eviction).
	Seq int64
}

// ArchiveTableSigs lists the monthly numeric tables with their signals,
// oldest first, in one query.
func (d *DB) ArchiveTableSigs(ctx context.Context) ([]TableSig, error) {
	rows, cancel, err := d.query(ctx, "SELECT t.table_name, t.create_time, t.update_time, COALESCE(t.update_time >= NOW() - INTERVAL 1 SECOND, 0), COALESCE(s.value, 0)"+
		" FROM information_schema.tables t LEFT JOIN "+d.T("sequence")+" s ON s.name = t.table_name"+
		" WHERE t.table_schema = DATABASE() AND t.table_name LIKE ?",
		likeEscape(d.prefix+"archive_numeric_")+"%")
	if err != nil {
		return nil, fmt.Errorf("listing archive tables: %w", err)
	}
	defer cancel()
	defer rows.Close()
	var out []TableSig
	for rows.Next() {
		var n string
		var c, u sql.NullTime
		var recent int
		var seq sql.NullInt64
		if err := rows.Scan(&n, &c, &u, &recent, &seq); err != nil {
			return nil, fmt.Errorf("listing archive tables: %w", err)
		}
		t, ok := parseArchiveTable(strings.TrimPrefix(n, d.prefix))
		if !ok {
			continue
		}
		out = append(out, TableSig{ArchiveTable: t, Created: c.Time, Updated: u.Time, Recent: recent == 1, Seq: seq.Int64})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Month < out[j].Month })
	return out, rows.Err()
}

func parseArchiveTable(name string) (ArchiveTable, bool) {
	m := archiveTableRE.FindStringSubmatch(name)
	if m == nil {
		return ArchiveTable{}, false
	}
	y, _ := strconv.Atoi(m[1])
	mo, _ := strconv.Atoi(m[2])
	if mo < 1 || mo > 12 {
		return ArchiveTable{}, false
	}
	return ArchiveTable{Name: name, Month: NewDate(y, time.Month(mo), 1)}, true
}

// VisitBounds is log_visit's idvisit range and creation time: MAX moving
// up means new visits, MIN moving up a purge, MAX moving down or a new
// CREATE_TIME a restore.
type VisitBounds struct {
	Min, Max int64
	Created  time.Time
}

// ReadVisitBounds reads VisitBounds; MIN and MAX are the ends of the
// primary key, answered without reading rows.
func (d *DB) ReadVisitBounds(ctx context.Context) (VisitBounds, error) {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	var b VisitBounds
	var c sql.NullTime
	err := d.queryRow(ctx, "SELECT (SELECT COALESCE(MIN(idvisit), 0) FROM "+d.T("log_visit")+"), (SELECT COALESCE(MAX(idvisit), 0) FROM "+d.T("log_visit")+
		"), (SELECT create_time FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?)", d.prefix+"log_visit").Scan(&b.Min, &b.Max, &c)
	if err != nil {
		return b, fmt.Errorf("reading %slog_visit bounds: %w", d.prefix, err)
	}
	b.Created = c.Time
	return b, nil
}

// VisitSlot is one 15-minute slot (Unix seconds / 900) with visits of a
// site. Every UTC offset in use is a multiple of 15 minutes, so a slot
// lies inside one site-local day.
type VisitSlot struct {
	IDSite int
	Slot   int64
}

// SlotSeconds is the length of a VisitSlot.
const SlotSeconds = 900

// NewVisitSlotsSQL is NewVisitSlots' query: a range on the primary key.
func (d *DB) NewVisitSlotsSQL() string {
	return "SELECT idsite, FLOOR(UNIX_TIMESTAMP(visit_last_action_time) / 900) FROM " + d.T("log_visit") +
		" WHERE idvisit > ? AND idvisit <= ? GROUP BY 1, 2"
}

// NewVisitSlots returns the slots of the visits with after < idvisit <=
// upto: a primary-key range, grouped on the server so that a busy hour
// of tracking comes back as a few rows per site.
func (d *DB) NewVisitSlots(ctx context.Context, after, upto int64) ([]VisitSlot, error) {
	rows, cancel, err := d.query(ctx, d.NewVisitSlotsSQL(), after, upto)
	if err != nil {
		return nil, fmt.Errorf("reading new visits from %slog_visit: %w", d.prefix, err)
	}
	defer cancel()
	defer rows.Close()
	var out []VisitSlot
	for rows.Next() {
		var s VisitSlot
		var slot sql.NullInt64
		if err := rows.Scan(&s.IDSite, &slot); err != nil {
			return nil, fmt.Errorf("reading new visits from %slog_visit: %w", d.prefix, err)
		}
		s.Slot = slot.Int64
		out = append(out, s)
	}
	return out, rows.Err()
}

// ReportToInvalidate is an option row the tracker leaves for a site-day
// that received hits after it was archived
// (`<prefix>_report_to_invalidate_<idsite>_<YYYY-MM-DD>_<pid>`).
type ReportToInvalidate struct {
	Name string
	SiteDate
}

var reportRE = regexp.MustCompile(`report_to_invalidate_(\d+)_(\d{4}-\d{2}-\d{2})`)

// ReportsToInvalidate lists those rows; names that do not parse are
// skipped (they name nothing matomod can check).
func (d *DB) ReportsToInvalidate(ctx context.Context) ([]ReportToInvalidate, error) {
	rows, cancel, err := d.query(ctx, "SELECT option_name FROM "+d.T("option")+" WHERE option_name LIKE '%report\\_to\\_invalidate\\_%'")
	if err != nil {
		return nil, fmt.Errorf("reading %soption: %w", d.prefix, err)
	}
	defer cancel()
	defer rows.Close()
	var out []ReportToInvalidate
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, fmt.Errorf("reading %soption: %w", d.prefix, err)
		}
		m := reportRE.FindStringSubmatch(n)
		if m == nil {
			continue
		}
		id, err1 := strconv.Atoi(m[1])
		day, err2 := ParseDate(m[2])
		if err1 != nil || err2 != nil {
			continue
		}
		out = append(out, ReportToInvalidate{Name: n, SiteDate: SiteDate{IDSite: id, Date: day}})
	}
	return out, rows.Err()
}

// Identity names the database a saved scan state describes: server,
// schema, prefix and the creation time of log_visit (a restore creates
// it again).
func (d *DB) Identity(ctx context.Context) (string, error) {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	var host, schema string
	var port int
	var c sql.NullTime
	err := d.queryRow(ctx, "SELECT @@hostname, @@port, DATABASE(), (SELECT create_time FROM information_schema.tables WHERE table_schema = DATABASE() AND table_name = ?)",
		d.prefix+"log_visit").Scan(&host, &port, &schema, &c)
	if err != nil {
		return "", fmt.Errorf("database %s: %w", d.dbName, err)
	}
	return fmt.Sprintf("%s:%d/%s/%s/%d", host, port, schema, d.prefix, c.Time.Unix()), nil
}

// NewestDone reads the newest plain day done flag (see Newer) of each
// site-day, grouped by monthly table; days without one are absent. With
// DoneFlag.Good it is the one way to ask "is this day archived?", for the
// repair's check after a run as for the scan.
func (d *DB) NewestDone(ctx context.Context, keys []SiteDate) (map[SiteDate]DoneFlag, error) {
	byTable := map[string][]SiteDate{}
	for _, k := range keys {
		t := TableFor(k.Date)
		byTable[t] = append(byTable[t], k)
	}
	out := make(map[SiteDate]DoneFlag, len(keys))
	for t, ks := range byTable {
		err := d.DoneFlagsFor(ctx, t, ks, func(f DoneFlag) {
			k := SiteDate{IDSite: f.IDSite, Date: f.Date}
			if n, ok := out[k]; !ok || f.Newer(n) {
				out[k] = f
			}
		})
		if err != nil {
			return nil, err
		}
	}
	return out, nil
}
