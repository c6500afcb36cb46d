package matomo

import (
	"context"
	"crypto/md5"
	"database/sql"
	"encoding/hex"
	"fmt"
	"strings"
	"time"
)

// StoredSegment is a row of Matomo's `segment` table that core:archive
// archives: auto_archive = 1 and deleted = 0.
//
// Facts relied on (Matomo 5.0.2, observed on a real install and read in
// core/CronArchive/SegmentArchiving.php, see ../shared/MATOMO.md "Second
// look"):
//   - the archives of a stored segment carry the done flag 'done' + hash,
//     hash = md5(urldecode(definition)), the value Matomo also stores in
//     segment.hash (`pageTitle==p3` → done30e2319d24c0ce455e6c767e96ee5b37);
//   - the segment is archived for a site when enable_only_idsite is 0
//     (NULL: all sites) or that site (SegmentArchiving::isSegmentForSite);
//   - once invalidated with --segment, core:archive writes the segment's
//     day archive for every day that has visits on the site, also when no
//     visit matches the segment (a zero archive): the site-day's raw
//     visits, not the segment's matches, say whether an archive is due;
//   - flags done<md5>.VisitsSummary belong to VisitFrequency's built-in
//     segments, never to a stored one: only the exact name 'done<hash>'
//     is read.
type StoredSegment struct {
	ID         int
	Definition string
	Hash       string // segment.hash, or md5(urldecode(definition)) when empty
	IDSite     int    // enable_only_idsite; 0: all sites
	Created    time.Time
	LastEdit   time.Time // zero: none
}

// Flag is the done-row name of the segment's archives.
func (s StoredSegment) Flag() string { return "done" + s.Hash }

// ForSite reports whether Matomo archives the segment for idsite.
func (s StoredSegment) ForSite(idsite int) bool { return s.IDSite == 0 || s.IDSite == idsite }

// SegmentHash is Matomo's Segment::getHash of a stored definition:
// md5(urldecode(definition)).
func SegmentHash(definition string) string {
	h := md5.Sum([]byte(phpURLDecode(definition)))
	return hex.EncodeToString(h[:])
}

// phpURLDecode is PHP's urldecode: '+' is a space, %XX a byte, and a
// malformed escape stays as it is.
func phpURLDecode(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c == '+':
			b.WriteByte(' ')
		case c == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]):
			b.WriteByte(unhex(s[i+1])<<4 | unhex(s[i+2]))
			i += 2
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case c >= '0' && c <= '9':
		return c - '0'
	case c >= 'a' && c <= 'f':
		return c - 'a' + 10
	default:
		return c - 'A' + 10
	}
}

// StoredSegmentsSQL reads the auto-archived, not deleted stored segments
// (a tiny table: read in full once per scan).
func (d *DB) StoredSegmentsSQL() string {
	return "SELECT idsegment, definition, COALESCE(hash, ''), COALESCE(enable_only_idsite, 0)," +
		" COALESCE(UNIX_TIMESTAMP(ts_created), 0), COALESCE(UNIX_TIMESTAMP(ts_last_edit), 0) FROM " + d.T("segment") +
		" WHERE auto_archive = 1 AND deleted = 0 ORDER BY idsegment"
}

// StoredSegments returns the segments core:archive archives. A missing
// segment table (a trimmed test schema) means none.
func (d *DB) StoredSegments(ctx context.Context) ([]StoredSegment, error) {
	rows, cancel, err := d.query(ctx, d.StoredSegmentsSQL())
	if err != nil {
		if isNoSuchTable(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading stored segments: %w", err)
	}
	defer cancel()
	defer rows.Close()
	var out []StoredSegment
	for rows.Next() {
		var s StoredSegment
		var created, edit int64
		if err := rows.Scan(&s.ID, &s.Definition, &s.Hash, &s.IDSite, &created, &edit); err != nil {
			return nil, fmt.Errorf("reading stored segments: %w", err)
		}
		if s.Definition == "" {
			continue // Matomo skips it too (reArchiveSegment's sanity check)
		}
		s.Hash = strings.ToLower(strings.TrimSpace(s.Hash))
		if len(s.Hash) != 32 {
			s.Hash = SegmentHash(s.Definition)
		}
		if created > 0 {
			s.Created = time.Unix(created, 0).UTC()
		}
		if edit > 0 {
			s.LastEdit = time.Unix(edit, 0).UTC()
		}
		out = append(out, s)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("reading stored segments: %w", err)
	}
	return out, nil
}

// SegmentDoneFlagsSQL reads one monthly table's day done rows of n
// segment flags (name IN (?, …)): a ref lookup (period = 1) on index_period_archived
// (period = 1), the name filtered on the rows read. Only the hashes of
// segments in use are asked for, so the rows returned are few.
func (d *DB) SegmentDoneFlagsSQL(table string, n int) string {
	return d.segmentFlagsSQL(table, "period = 1", n)
}

// SegmentPeriodFlagsSQL reads one monthly table's week, month and year
// done rows of n segment flags: the same lookup as SegmentDoneFlagsSQL,
// a range (period IN (2, 3, 4)) on index_period_archived. A period's rows
// live in the table of its first day (date1), so the tables before the
// window that hold a week or the year reaching into it are read with it.
func (d *DB) SegmentPeriodFlagsSQL(table string, n int) string {
	return d.segmentFlagsSQL(table, "period IN (2, 3, 4)", n)
}

func (d *DB) segmentFlagsSQL(table, period string, n int) string {
	return "SELECT " + doneCols + ", name FROM " + d.T(table) +
		" FORCE INDEX (index_period_archived) WHERE " + period + " AND name IN (" +
		strings.TrimSuffix(strings.Repeat("?,", max(n, 1)), ",") + ")"
}

// SegmentDoneFlags calls fn with each day done row of the given segment
// hashes in table; a missing table holds none.
func (d *DB) SegmentDoneFlags(ctx context.Context, table string, hashes []string, fn func(hash string, f DoneFlag)) error {
	return d.segmentFlags(ctx, d.SegmentDoneFlagsSQL(table, len(hashes)), table, hashes, fn)
}

// SegmentPeriodFlags calls fn with each week, month and year done row of
// the given segment hashes in table; a missing table holds none.
func (d *DB) SegmentPeriodFlags(ctx context.Context, table string, hashes []string, fn func(hash string, f DoneFlag)) error {
	return d.segmentFlags(ctx, d.SegmentPeriodFlagsSQL(table, len(hashes)), table, hashes, fn)
}

func (d *DB) segmentFlags(ctx context.Context, q, table string, hashes []string, fn func(hash string, f DoneFlag)) error {
	if len(hashes) == 0 {
		return nil
	}
	args := make([]any, len(hashes))
	for i, h := range hashes {
		args[i] = "done" + h
	}
	rows, cancel, err := d.query(ctx, q, args...)
	if err != nil {
		if isNoSuchTable(err) {
			return nil
		}
		return fmt.Errorf("reading segment done flags from %s%s: %w", d.prefix, table, err)
	}
	defer cancel()
	defer rows.Close()
	var name string
	if err := scanFlagsInto(rows, func(f DoneFlag) { fn(strings.TrimPrefix(name, "done"), f) }, &name); err != nil {
		return fmt.Errorf("reading segment done flags from %s%s: %w", d.prefix, table, err)
	}
	return nil
}

// SegmentInvalidation is the newest queue row of a segment's day archive.
type SegmentInvalidation struct {
	Hash string
	DayInvalidation
}

// SegmentDayInvalidations reads the queued day invalidations of the given
// segment hashes in [from, to]; a missing table (Matomo 3) holds none.
func (d *DB) SegmentDayInvalidations(ctx context.Context, from, to Date, hashes []string) ([]SegmentInvalidation, error) {
	rows, err := d.segmentInvalidations(ctx, "period = 1", from, to, hashes)
	inv := make([]SegmentInvalidation, len(rows))
	for i, r := range rows {
		inv[i] = SegmentInvalidation{Hash: r.Hash, DayInvalidation: DayInvalidation{IDSite: r.IDSite, Date: r.Date,
			TSInvalidated: r.TSInvalidated, InProgress: r.InProgress}}
	}
	return inv, err
}

// SegmentPeriodInvalidation is the newest queue row of a segment's week,
// month or year archive.
type SegmentPeriodInvalidation struct {
	Hash string
	PeriodInvalidation
}

// SegmentPeriodInvalidations reads the queued week, month and year
// invalidations of the given segment hashes whose date1 is in [from, to];
// a missing table (Matomo 3) holds none.
func (d *DB) SegmentPeriodInvalidations(ctx context.Context, from, to Date, hashes []string) ([]SegmentPeriodInvalidation, error) {
	return d.segmentInvalidations(ctx, "period IN (2, 3, 4)", from, to, hashes)
}

// segmentInvalidations reads the newest queue row of each segment
// archive of the periods (an SQL condition of ours) with date1 in
// [from, to].
func (d *DB) segmentInvalidations(ctx context.Context, periods string, from, to Date, hashes []string) ([]SegmentPeriodInvalidation, error) {
	if len(hashes) == 0 {
		return nil, nil
	}
	args := []any{from.String(), to.String()}
	for _, h := range hashes {
		args = append(args, "done"+h)
	}
	q := "SELECT name, idsite, period, date1, MAX(ts_invalidated), MAX(status) FROM " + d.T("archive_invalidations") +
		" WHERE " + periods + " AND date1 BETWEEN ? AND ? AND name IN (" +
		strings.TrimSuffix(strings.Repeat("?,", len(hashes)), ",") + ") GROUP BY name, idsite, period, date1"
	rows, cancel, err := d.query(ctx, q, args...)
	if err != nil {
		if isNoSuchTable(err) {
			return nil, nil
		}
		return nil, fmt.Errorf("reading segment rows of %sarchive_invalidations: %w", d.prefix, err)
	}
	defer cancel()
	defer rows.Close()
	var inv []SegmentPeriodInvalidation
	for rows.Next() {
		var v SegmentPeriodInvalidation
		var name string
		var date time.Time
		var ts sql.NullTime
		var st sql.NullInt64
		if err := rows.Scan(&name, &v.IDSite, &v.Period, &date, &ts, &st); err != nil {
			return nil, fmt.Errorf("reading segment rows of %sarchive_invalidations: %w", d.prefix, err)
		}
		v.Hash = strings.TrimPrefix(name, "done")
		v.Date = DateOf(date)
		v.TSInvalidated = ts.Time
		v.InProgress = st.Int64 == 1
		inv = append(inv, v)
	}
	return inv, rows.Err()
}

// TableFlagsSQL is DoneFlagsSQL for a scan that also wants n stored
// segments' done<hash> rows: the same table scan (the rows are on the
// same pages), one more column, the segment's position (-1: the plain
// 'done'). With n = 0 it is DoneFlagsSQL's statement with that column.
// Reading them in their own query through index_period_archived cost a
// second pass over every day row of the table (measured ×1.6 the plain
// read at the bench's default size).
func (d *DB) TableFlagsSQL(table string, sites []int, n int) string {
	return "SELECT " + doneCols + ", " + flagIndex(n) + " FROM " + d.T(table) +
		" WHERE period IN (1, 2, 3, 4) AND " + flagNames(n) + siteFilter(sites)
}

// PeriodTableFlagsSQL is PeriodFlagsSQL with n stored segments' rows.
func (d *DB) PeriodTableFlagsSQL(table string, n int) string {
	return "SELECT " + doneCols + ", " + flagIndex(n) + " FROM " + d.T(table) +
		" FORCE INDEX (index_period_archived) WHERE period IN (2, 3, 4) AND " + flagNames(n)
}

func flagIndex(n int) string {
	if n == 0 {
		return "-1"
	}
	return "FIELD(name, 'done'" + strings.Repeat(", ?", n) + ") - 2"
}

func flagNames(n int) string {
	if n == 0 {
		return "name = 'done'"
	}
	return "name IN ('done'" + strings.Repeat(", ?", n) + ")"
}

// TableFlags reads a monthly table's plain and segment done rows
// (TableFlagsSQL; PeriodTableFlagsSQL when periodsOnly): fn gets seg -1
// for a plain row, i for hashes[i]'s. A missing table means no rows.
func (d *DB) TableFlags(ctx context.Context, table string, sites []int, hashes []string, periodsOnly bool, fn func(seg int, f DoneFlag)) error {
	q := d.TableFlagsSQL(table, sites, len(hashes))
	if periodsOnly {
		q = d.PeriodTableFlagsSQL(table, len(hashes))
	}
	args := make([]any, 0, 2*len(hashes))
	for range 2 {
		for _, h := range hashes {
			args = append(args, "done"+h)
		}
	}
	rows, cancel, err := d.query(ctx, q, args...)
	if err != nil {
		if isNoSuchTable(err) {
			return nil
		}
		return fmt.Errorf("reading done flags from %s%s: %w", d.prefix, table, err)
	}
	defer cancel()
	defer rows.Close()
	var seg int
	if err := scanFlagsInto(rows, func(f DoneFlag) { fn(seg, f) }, &seg); err != nil {
		return fmt.Errorf("reading done flags from %s%s: %w", d.prefix, table, err)
	}
	return nil
}
