package gapdetect

import (
	"context"
	"database/sql"
	"fmt"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

// traced is every statement one scan sent, with its arguments.
type traced struct {
	mu    sync.Mutex
	stmts []tracedStmt
}

type tracedStmt struct {
	q    string
	args []any
}

func (tr *traced) add(q string, args ...any) {
	tr.mu.Lock()
	defer tr.mu.Unlock()
	tr.stmts = append(tr.stmts, tracedStmt{q, args})
}

// plan is EXPLAIN's access path of a statement: per table read, the
// access type and the index.
func plan(t *testing.T, db *sql.DB, s tracedStmt) string {
	t.Helper()
	rows, err := db.Query("EXPLAIN "+s.q, s.args...)
	if err != nil {
		// A read of a monthly table that does not exist (days of the
		// window before the first archive): the scan sends it and takes
		// the error as "no rows"; there is no plan to compare.
		if strings.Contains(err.Error(), "Error 1146") {
			return "no such table"
		}
		t.Fatalf("EXPLAIN %.200s: %v", s.q, err)
	}
	defer rows.Close()
	cols, _ := rows.Columns()
	var out []string
	for rows.Next() {
		vals := make([]sql.NullString, len(cols))
		ptrs := make([]any, len(cols))
		for i := range vals {
			ptrs[i] = &vals[i]
		}
		if err := rows.Scan(ptrs...); err != nil {
			t.Fatal(err)
		}
		row := map[string]string{}
		for i, c := range cols {
			row[c] = vals[i].String
		}
		out = append(out, fmt.Sprintf("%s:%s:%s", row["table"], row["type"], row["key"]))
	}
	return strings.Join(out, " ")
}

// Issue 13: sites.include / exclude never change the access path. With
// 1,000 included ids (and one excluded) a full scan sends statements of
// the same shapes as an unfiltered one, and EXPLAIN shows the same access
// path for each: the window-wide reads stay table scans of the monthly
// tables, never a range on index_idsite_dates_period chosen for an id
// list. It fails if the filter is ever pushed into the SQL.
func TestSiteFilterKeepsTheAccessPath(t *testing.T) {
	e := matomotest.New(t)
	e.Exec(`INSERT INTO {p}site (idsite, name, main_url, ts_created, sitesearch_keyword_parameters, sitesearch_category_parameters,
		timezone, currency, excluded_ips, excluded_parameters, excluded_user_agents, excluded_referrers, ` + "`group`" + `, type)
		SELECT seq, CONCAT('Site ', seq), '', '2026-09-01 00:00:00', '', '', IF(seq % 2, 'UTC', 'Europe/Berlin'), 'USD', '', '', '', '', '', 'website' FROM seq_1_to_1000`)
	// Day archives of every site for 20 days of two months (done plus
	// four records each), so the optimizer has real tables to choose
	// plans for; one month and a week archive; a queue row; visits.
	for _, m := range []string{"2026_10", "2026_11"} {
		e.AddDayArchive(1, strings.ReplaceAll(m, "_", "-")+"-01", 1, ts(strings.ReplaceAll(m, "_", "-")+"-02 03:00:00"), 1)
		e.Exec(`INSERT INTO {p}archive_numeric_` + m + ` (idarchive, name, idsite, date1, date2, period, ts_archived, value)
			SELECT 1000 + s.seq * 100 + d.seq, n.name, s.seq, DATE('` + strings.ReplaceAll(m, "_", "-") + `-01') + INTERVAL d.seq DAY,
				DATE('` + strings.ReplaceAll(m, "_", "-") + `-01') + INTERVAL d.seq DAY, 1,
				TIMESTAMP(DATE('` + strings.ReplaceAll(m, "_", "-") + `-01') + INTERVAL d.seq + 1 DAY, '03:00:00'), 1
			FROM seq_1_to_1000 s, seq_1_to_20 d,
				(SELECT 'done' AS name UNION ALL SELECT 'nb_visits' UNION ALL SELECT 'nb_actions' UNION ALL SELECT 'nb_uniq_visitors' UNION ALL SELECT 'sum_visit_length') n`)
	}
	e.AddArchive(matomotest.ArchiveRow{IDSite: 5, Period: matomo.PeriodMonth, Date1: "2026-10-01", Date2: "2026-10-31", Done: 1, TSArchived: ts("2026-11-01 03:00:00"), NbVisits: 3})
	e.AddArchive(matomotest.ArchiveRow{IDSite: 5, Period: matomo.PeriodWeek, Date1: "2026-11-02", Date2: "2026-11-08", Done: 1, TSArchived: ts("2026-11-09 03:00:00"), NbVisits: 3})
	e.AddInvalidation(7, matomo.PeriodDay, "2026-11-05", "2026-11-05", ts("2026-11-06 00:00:00"), 0)
	for id := 1; id <= 9; id++ {
		e.AddVisits(id, ts("2026-11-24 10:00:00"), id)
	}
	e.Exec("ANALYZE TABLE {p}archive_numeric_2026_10, {p}archive_numeric_2026_11, {p}log_visit")

	run := func(include, exclude []int) (*Result, []tracedStmt) {
		tr := &traced{}
		db, err := matomo.Open(e.Settings, matomo.DBOptions{Trace: tr.add})
		if err != nil {
			t.Fatal(err)
		}
		defer db.Close()
		o := Options{Now: func() time.Time { return testNow }, Include: include, Exclude: exclude}
		r, err := New(db, o).Scan(context.Background())
		if err != nil {
			t.Fatal(err)
		}
		return r, tr.stmts
	}
	all, allStmts := run(nil, nil)
	ids := make([]int, 0, 1000)
	for id := 1; id <= 1000; id++ {
		ids = append(ids, id)
	}
	some, someStmts := run(ids, []int{2})
	if some.SitesScanned != all.SitesScanned-1 || !some.Stats.Full {
		t.Fatalf("filtered scan: %d sites (full %t), unfiltered %d", some.SitesScanned, some.Stats.Full, all.SitesScanned)
	}

	// Window-wide statements name no site, no archive id: the filtered
	// scan must send exactly the text the unfiltered one sends, and get
	// the same plan. Per-site statements (targeted reads, probes, first
	// visits, nb_visits by idarchive) differ with the sites by nature;
	// each must reach its table through an index, never a scan of it.
	perSite := regexp.MustCompile(`idsite = \d|idsite IN \(\d|idarchive IN \(\d|SELECT \d+, MIN`)
	plans := map[string]string{}
	for _, s := range allStmts {
		if isSelect(s.q) && !perSite.MatchString(s.q) {
			plans[s.q] = plan(t, e.DB, s)
		}
	}
	var windowWide, archiveReads int
	for _, s := range someStmts {
		if !isSelect(s.q) {
			continue
		}
		got := plan(t, e.DB, s)
		if perSite.MatchString(s.q) {
			for _, step := range strings.Fields(got) {
				table, typ, _ := strings.Cut(step, ":")
				typ, _, _ = strings.Cut(typ, ":")
				if strings.HasPrefix(table, e.Prefix) && (typ == "ALL" || typ == "index") {
					t.Errorf("per-site read scans %s (%s):\n%.300s", table, got, s.q)
				}
			}
			continue
		}
		windowWide++
		want, ok := plans[s.q]
		if !ok {
			t.Errorf("the site filter changed a window-wide statement (the unfiltered scan never sends it):\n%.300s", s.q)
			continue
		}
		if got != want {
			t.Errorf("access path changed by the site filter:\n%.300s\nfiltered:   %s\nunfiltered: %s", s.q, got, want)
		}
		if strings.Contains(s.q, "archive_numeric_2026_") && strings.Contains(s.q, "period IN (1, 2, 3, 4) AND name = 'done'") {
			archiveReads++
			// The done-flag read of a monthly table: the table scan the
			// bench measures against its floor.
			if !strings.Contains(got, "archive_numeric_2026_1") || !strings.Contains(got, ":ALL:") {
				t.Errorf("done-flag read %.200s: plan %s, want a table scan (ALL)", s.q, got)
			}
		}
	}
	if archiveReads != 2 || windowWide < 5 {
		t.Errorf("%d window-wide statements, %d done-flag table reads (want 2): the test no longer sees the reads it is about", windowWide, archiveReads)
	}
}

func isSelect(q string) bool { return strings.HasPrefix(strings.TrimLeft(q, "( "), "SELECT") }
