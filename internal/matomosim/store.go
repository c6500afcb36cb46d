package main

import (
	"bytes"
	"compress/zlib"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/go-sql-driver/mysql"
	"gopkg.in/ini.v1"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

// store holds every SQL statement the simulator runs against Matomo's DB.
type store struct {
	db      *sql.DB
	prefix  string
	created map[string]bool // monthly archive tables known to exist
}

const sqlTime = "2006-01-02 15:04:05"

func (s *store) t(name string) string { return "`" + s.prefix + name + "`" }

// openStore connects to the DB named in config.ini.php.
func (a *app) openStore(ctx context.Context, cfg *matomo.INIConfig) (*store, error) {
	dsn, err := matomo.DSN(cfg.DB, matomo.DBOptions{ConnectTimeout: 3 * time.Second})
	if err != nil {
		return nil, err
	}
	// Client-side placeholders: one round trip per statement instead of
	// prepare/execute/close, which tripled the cost of a run.
	mc, err := mysql.ParseDSN(dsn)
	if err != nil {
		return nil, err
	}
	mc.InterpolateParams = true
	db, err := sql.Open("mysql", mc.FormatDSN())
	if err != nil {
		return nil, err
	}
	db.SetMaxOpenConns(4)
	if err := db.PingContext(ctx); err != nil {
		db.Close()
		return nil, err
	}
	return &store{db: db, prefix: cfg.DB.TablesPrefix}, nil
}

// pdoMessage renders a driver error the way PDO words it.
func pdoMessage(err error) string {
	var me *mysql.MySQLError
	if errors.As(err, &me) {
		return fmt.Sprintf("SQLSTATE[HY000] [%d] %s", me.Number, me.Message)
	}
	msg := err.Error()
	if strings.Contains(msg, "connection refused") {
		return "SQLSTATE[HY000] [2002] Connection refused"
	}
	return "SQLSTATE[HY000] [2002] " + msg
}

func isNoTable(err error) bool {
	var me *mysql.MySQLError
	return errors.As(err, &me) && me.Number == 1146
}

// todayTTL is Matomo's time_before_today_archive_considered_outdated: the
// option todayArchiveTimeToLive, else [General] in config.ini.php, else 900 s.
func (s *store) todayTTL(ctx context.Context, dir string) time.Duration {
	if v, ok, _ := s.option(ctx, "todayArchiveTimeToLive"); ok {
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	if f, err := ini.LoadSources(ini.LoadOptions{AllowShadows: true, AllowBooleanKeys: true, SpaceBeforeInlineComment: true}, matomo.ConfigINIPath(dir)); err == nil {
		v := strings.Trim(f.Section("General").Key("time_before_today_archive_considered_outdated").String(), `"' `)
		if n, err := strconv.Atoi(v); err == nil && n > 0 {
			return time.Duration(n) * time.Second
		}
	}
	return 900 * time.Second
}

type site struct {
	id      int
	loc     *time.Location
	created matomo.Date
}

func (s *store) sites(ctx context.Context) ([]site, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT idsite, ts_created, timezone FROM "+s.t("site")+" ORDER BY idsite")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []site
	for rows.Next() {
		var st site
		var created sql.NullTime
		var tz string
		if err := rows.Scan(&st.id, &created, &tz); err != nil {
			return nil, err
		}
		st.created = matomo.DateOf(created.Time.UTC())
		if st.loc, err = matomo.LoadLocation(tz); err != nil {
			st.loc = time.UTC // Matomo falls back to UTC for a broken zone
		}
		out = append(out, st)
	}
	return out, rows.Err()
}

func (s *store) option(ctx context.Context, name string) (string, bool, error) {
	var v string
	err := s.db.QueryRowContext(ctx, "SELECT option_value FROM "+s.t("option")+" WHERE option_name = ?", name).Scan(&v)
	if errors.Is(err, sql.ErrNoRows) {
		return "", false, nil
	}
	return v, err == nil, err
}

func (s *store) setOption(ctx context.Context, name, value string) error {
	_, err := s.db.ExecContext(ctx, "INSERT INTO "+s.t("option")+" (option_name, option_value, autoload) VALUES (?, ?, 0) ON DUPLICATE KEY UPDATE option_value = VALUES(option_value)", name, value)
	return err
}

func (s *store) deleteOption(ctx context.Context, name string) error {
	_, err := s.db.ExecContext(ctx, "DELETE FROM "+s.t("option")+" WHERE option_name = ?", name)
	return err
}

// remembered returns the tracker's <rand>_report_to_invalidate_<idsite>_<date>_<pid>
// options of one site.
func (s *store) remembered(ctx context.Context, idsite int) (map[string]matomo.Date, error) {
	key := "report_to_invalidate_" + strconv.Itoa(idsite) + "_"
	rows, err := s.db.QueryContext(ctx, "SELECT option_name FROM "+s.t("option")+" WHERE option_name LIKE ?",
		"%"+strings.ReplaceAll(key, "_", `\_`)+"%")
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]matomo.Date{}
	for rows.Next() {
		var n string
		if err := rows.Scan(&n); err != nil {
			return nil, err
		}
		_, rest, _ := strings.Cut(n, key)
		if len(rest) >= 10 {
			if d, err := matomo.ParseDate(rest[:10]); err == nil {
				out[n] = d
			}
		}
	}
	return out, rows.Err()
}

// visitCounts are raw visits in a window: all, new (visitor_returning = 0)
// and returning ones, the three things the simulated archives hold.
type visitCounts struct{ all, fresh, returning int64 }

func (s *store) visits(ctx context.Context, idsite int, from, to time.Time) (visitCounts, error) {
	var c visitCounts
	// Matomo's window is inclusive: 00:00:00 .. 23:59:59 local.
	err := s.db.QueryRowContext(ctx, "SELECT COUNT(*), COALESCE(SUM(visitor_returning = 0 OR visitor_returning IS NULL), 0), "+
		"COALESCE(SUM(visitor_returning IN (1, 2)), 0) FROM "+s.t("log_visit")+
		" WHERE idsite = ? AND visit_last_action_time >= ? AND visit_last_action_time <= ?",
		idsite, from.UTC().Format(sqlTime), to.Add(-time.Second).UTC().Format(sqlTime)).Scan(&c.all, &c.fresh, &c.returning)
	return c, err
}

type archive struct {
	id    int64
	value int
	ts    time.Time
	nb    int64
}

func (s *store) tables(p period) (numeric, blob string) {
	y, m, _ := p.start.Time().Date()
	n, b := matomotest.ArchiveTableNames(s.prefix, y, int(m))
	return "`" + n + "`", "`" + b + "`"
}

// newestAll returns, per done flag name, the newest archive of a period.
func (s *store) newestAll(ctx context.Context, idsite int, p period) (map[string]archive, error) {
	num, _ := s.tables(p)
	rows, err := s.db.QueryContext(ctx, "SELECT n.name, n.idarchive, n.value, n.ts_archived, (SELECT v.value FROM "+num+
		" v WHERE v.idarchive = n.idarchive AND v.name = 'nb_visits') FROM "+num+
		" n WHERE n.idsite = ? AND n.date1 = ? AND n.date2 = ? AND n.period = ? AND n.name LIKE 'done%' ORDER BY n.ts_archived DESC, n.idarchive DESC",
		idsite, p.start.String(), p.end.String(), p.typ)
	if isNoTable(err) {
		return map[string]archive{}, nil
	}
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string]archive{}
	for rows.Next() {
		var name string
		var a archive
		var val float64
		var nb sql.NullFloat64
		if err := rows.Scan(&name, &a.id, &val, &a.ts, &nb); err != nil {
			return nil, err
		}
		if _, seen := out[name]; !seen {
			a.value, a.nb = int(val), int64(nb.Float64)
			out[name] = a
		}
	}
	return out, rows.Err()
}

// write stores a finished archive (done = 1; nb_visits only when non-zero, as
// Matomo skips zero records), a couple of zlib blobs for the plain archive,
// and removes the older archives of the same period and name.
//
// Same rows and the same idarchive allocation (Matomo's sequence table) as
// matomotest.WriteArchive, but in one transaction and with the monthly tables
// created once per run: a run writes hundreds of archives, and one commit
// per row made a 3-site × 60-day backlog take seconds.
func (s *store) write(ctx context.Context, idsite int, p period, name string, nb int64, ts time.Time, replaces bool) (int64, error) {
	y, m, _ := p.start.Time().Date()
	numName, _ := matomotest.ArchiveTableNames(s.prefix, y, int(m))
	num, blob := s.tables(p)
	if !s.created[numName] {
		if err := matomotest.CreateArchiveTables(ctx, s.db, s.prefix, y, int(m)); err != nil {
			return 0, err
		}
		if s.created == nil {
			s.created = map[string]bool{}
		}
		s.created[numName] = true
	}
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return 0, err
	}
	defer tx.Rollback()
	res, err := tx.ExecContext(ctx, "INSERT INTO "+s.t("sequence")+" (name, value) VALUES (?, LAST_INSERT_ID(1)) ON DUPLICATE KEY UPDATE value = LAST_INSERT_ID(value + 1)", numName)
	if err != nil {
		return 0, fmt.Errorf("sequence for %s: %w", numName, err)
	}
	id, err := res.LastInsertId()
	if err != nil {
		return 0, err
	}
	d1, d2, at := p.start.String(), p.end.String(), ts.UTC().Format(sqlTime)
	q := "INSERT INTO " + num + " (idarchive, name, idsite, date1, date2, period, ts_archived, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?)"
	args := []any{id, name, idsite, d1, d2, p.typ, at, matomo.DoneOK}
	if nb != 0 {
		q += ", (?, ?, ?, ?, ?, ?, ?, ?)"
		args = append(args, id, "nb_visits", idsite, d1, d2, p.typ, at, nb)
	}
	if _, err := tx.ExecContext(ctx, q, args...); err != nil {
		return 0, err
	}
	if name == "done" {
		args = args[:0]
		for _, report := range []string{"Actions_actions", "DevicesDetection_types"} {
			var z bytes.Buffer
			w := zlib.NewWriter(&z)
			fmt.Fprintf(w, `a:1:{i:0;a:2:{i:0;a:2:{s:5:"label";s:9:"simulated";s:9:"nb_visits";i:%d;}i:2;a:0:{}}}`, nb)
			w.Close()
			args = append(args, id, report, idsite, d1, d2, p.typ, at, z.Bytes())
		}
		if _, err := tx.ExecContext(ctx, "INSERT INTO "+blob+" (idarchive, name, idsite, date1, date2, period, ts_archived, value) VALUES (?, ?, ?, ?, ?, ?, ?, ?), (?, ?, ?, ?, ?, ?, ?, ?)", args...); err != nil {
			return 0, err
		}
	}
	if !replaces { // no older archive of this name: nothing to delete
		return id, tx.Commit()
	}
	// The derived table lets MySQL delete from the table it reads.
	old := "SELECT idarchive FROM (SELECT idarchive FROM " + num + " WHERE idsite = ? AND date1 = ? AND date2 = ? AND period = ? AND name = ? AND idarchive <> ?) o"
	for _, t := range []string{blob, num} { // blob first: it is found through numeric
		if _, err := tx.ExecContext(ctx, "DELETE FROM "+t+" WHERE idarchive IN ("+old+")", idsite, d1, d2, p.typ, name, id); err != nil {
			return 0, err
		}
	}
	return id, tx.Commit()
}

// markInvalidated sets the done flags of a period's archives to 4 in place
// (ts_archived unchanged) and returns the idarchive of the newest archive
// named name, or 0.
func (s *store) markInvalidated(ctx context.Context, idsite int, p period, name string) (int64, error) {
	all, err := s.newestAll(ctx, idsite, p)
	if err != nil {
		return 0, err
	}
	pattern := name
	if name == "done" { // the all-plugins archive takes its segment/plugin archives along
		pattern = "done%"
	} else if !strings.Contains(name, ".") {
		pattern = name + "%"
	}
	num, _ := s.tables(p)
	_, err = s.db.ExecContext(ctx, "UPDATE "+num+" SET value = ? WHERE idsite = ? AND date1 = ? AND date2 = ? AND period = ? AND name LIKE ?",
		matomo.DoneInvalidated, idsite, p.start.String(), p.end.String(), p.typ, pattern)
	if isNoTable(err) {
		err = nil
	}
	return all[name].id, err
}

type queueKey struct {
	idsite int
	p      period
	name   string
}

type queueRow struct {
	id      int64
	key     queueKey
	tsInval time.Time
}

// queued lists status-0 rows of a site in Matomo's processing order.
func (s *store) queued(ctx context.Context, idsite int, status int) ([]queueRow, error) {
	rows, err := s.db.QueryContext(ctx, "SELECT idinvalidation, name, date1, date2, period, ts_invalidated FROM "+s.t("archive_invalidations")+
		" WHERE idsite = ? AND status = ? ORDER BY date1 DESC, period ASC, CHAR_LENGTH(name) ASC, idinvalidation ASC", idsite, status)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []queueRow
	for rows.Next() {
		var r queueRow
		var d1, d2 time.Time
		var ts sql.NullTime
		if err := rows.Scan(&r.id, &r.key.name, &d1, &d2, &r.key.p.typ, &ts); err != nil {
			return nil, err
		}
		r.tsInval = ts.Time
		r.key.idsite = idsite
		r.key.p.start, r.key.p.end = matomo.DateOf(d1), matomo.DateOf(d2)
		out = append(out, r)
	}
	return out, rows.Err()
}

func (s *store) insertInvalidations(ctx context.Context, keys []queueKey, idarchives []int64, ts time.Time) error {
	if len(keys) == 0 {
		return nil
	}
	var b strings.Builder
	args := make([]any, 0, 7*len(keys))
	b.WriteString("INSERT INTO " + s.t("archive_invalidations") + " (idarchive, name, idsite, date1, date2, period, ts_invalidated, status) VALUES ")
	for i, k := range keys {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString("(?, ?, ?, ?, ?, ?, ?, 0)")
		var ida any
		if idarchives[i] != 0 {
			ida = idarchives[i]
		}
		args = append(args, ida, k.name, k.idsite, k.p.start.String(), k.p.end.String(), k.p.typ, ts.UTC().Format(sqlTime))
	}
	_, err := s.db.ExecContext(ctx, b.String(), args...)
	return err
}

func (s *store) startInvalidations(ctx context.Context, rows []queueRow, ts time.Time) error {
	ids := make([]string, len(rows))
	for i, r := range rows {
		ids[i] = strconv.FormatInt(r.id, 10)
	}
	_, err := s.db.ExecContext(ctx, "UPDATE "+s.t("archive_invalidations")+" SET status = 1, ts_started = ? WHERE idinvalidation IN ("+strings.Join(ids, ",")+")", ts.UTC().Format(sqlTime))
	return err
}

// finishInvalidation deletes a processed row and queued duplicates that
// were already there when it started.
func (s *store) finishInvalidation(ctx context.Context, r queueRow, started time.Time) error {
	_, err := s.db.ExecContext(ctx, "DELETE FROM "+s.t("archive_invalidations")+" WHERE idinvalidation = ? OR (idsite = ? AND period = ? AND date1 = ? AND date2 = ? AND name = ? AND status = 0 AND ts_invalidated <= ?)",
		r.id, r.key.idsite, r.key.p.typ, r.key.p.start.String(), r.key.p.end.String(), r.key.name, started.UTC().Format(sqlTime))
	return err
}

func (s *store) deleteInvalidation(ctx context.Context, id int64) error {
	_, err := s.db.ExecContext(ctx, "DELETE FROM "+s.t("archive_invalidations")+" WHERE idinvalidation = ?", id)
	return err
}

// resetFailed puts rows stuck "in progress" for over a day back in the
// queue, as Matomo does at the start of a run.
func (s *store) resetFailed(ctx context.Context, now time.Time) (int64, error) {
	res, err := s.db.ExecContext(ctx, "UPDATE "+s.t("archive_invalidations")+" SET status = 0, ts_started = NULL WHERE status = 1 AND COALESCE(ts_started, ts_invalidated) < ?",
		now.Add(-24*time.Hour).UTC().Format(sqlTime))
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}

// withNamedLock runs fn under a MariaDB named lock (Matomo guards its shared
// site queue the same way).
func (s *store) withNamedLock(ctx context.Context, name string, fn func() error) error {
	conn, err := s.db.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 30)", name).Scan(&got); err != nil {
		return err
	}
	if got.Int64 != 1 {
		return fmt.Errorf("named lock %s not acquired within 30 s", name)
	}
	defer conn.ExecContext(context.Background(), "DO RELEASE_LOCK(?)", name)
	return fn()
}

// logDeletion reads delete_logs_enable / delete_logs_older_than: option rows
// override config.ini.php.
func (s *store) logDeletion(ctx context.Context, cfg *matomo.INIConfig) (bool, int) {
	enabled, days := cfg.DeleteLogsEnable, cfg.DeleteLogsOlderThan
	if v, ok, _ := s.option(ctx, "delete_logs_enable"); ok {
		enabled = v == "1" || strings.EqualFold(v, "true")
	}
	if v, ok, _ := s.option(ctx, "delete_logs_older_than"); ok {
		if n, err := strconv.Atoi(strings.TrimSpace(v)); err == nil && n > 0 {
			days = n
		}
	}
	return enabled, days
}
