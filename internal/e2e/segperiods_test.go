package e2e

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/realmatomo"
)

// segmentPeriodRows counts a segment's done<hash> archives of one site's
// period (value 1: OK) in the table of its first day.
func segmentPeriodRows(t *testing.T, in *realmatomo.Instance, hash string, period int, date1 matomo.Date) (ok, all int) {
	t.Helper()
	num, _ := archiveTables(date1.String())
	q := strings.ReplaceAll("SELECT COALESCE(SUM(value = 1), 0), COUNT(*) FROM "+num+" WHERE idsite = 1 AND period = ? AND date1 = ? AND name = ?", "{p}", in.Prefix)
	if err := in.DB.QueryRow(q, period, date1.String(), "done"+hash).Scan(&ok, &all); err != nil && !strings.Contains(err.Error(), "doesn't exist") {
		t.Fatal(err)
	}
	return ok, all
}

// Issue 14 (segment periods) on the real Matomo 5.0.2: a stored segment
// archived by the real console has a done<hash> archive for each week and
// month that ended from its start on (Matomo builds the parents of the
// invalidated days, also a week that begins before the start), and no
// segment gap; with the segment's month archive deleted and one of its
// weeks invalidated through the console (and the queue row left to age),
// `gaps` reports exactly that month (missing) and week (invalidated) as
// segment gaps, no plain gap; `repair` rebuilds them with
// --periods=month|week --segment=<definition>; afterwards there is no gap
// and Matomo's API (VisitsSummary.get, period=month|week, segment=) shows
// the same visits as before the deletion.
func TestRealSegmentPeriodGapsAndRepair(t *testing.T) {
	t.Parallel()
	in := realmatomo.New(t)
	cfg := config(t, in, "")
	ctx := context.Background()
	m := in.Manifest
	const def = "visitCount>=1"
	today := matomo.DateOf(time.Now().UTC())
	if today.Time().Day() == 1 {
		t.Skip("the previous month ended yesterday: its repair waits for the scheduled run")
	}
	// Site 1 is UTC. The segment starts on the first day of the previous
	// month (lastN: N days before its creation, today).
	month, monthLast := gapdetect.PeriodOf(matomo.PeriodMonth, today.Month().AddDays(-1))
	start := month
	archiveStoredSegment(t, in, "matomod e2e periods", def, start)
	hash := matomo.SegmentHash(def)
	plain, seg := segmentGapsOf(t, cfg)
	if len(plain) != 0 || len(seg) != 0 {
		t.Fatalf("gaps after archiving the segment: plain %q, segment %q", plain, seg)
	}
	tracked := func(from, to matomo.Date) (n int) {
		for d := from; d <= to; d++ {
			n += m.Visits[fmt.Sprintf("1 %s", d)]
		}
		return n
	}
	// Matomo wrote the segment's weeks and month that ended and have
	// visits (none for a week without: as for days): also the week of the
	// start, which begins in the month before.
	if ok, _ := segmentPeriodRows(t, in, hash, matomo.PeriodMonth, month); ok == 0 {
		t.Errorf("no done%s archive of the month %s", hash, month)
	}
	first, _ := gapdetect.PeriodOf(matomo.PeriodWeek, start)
	for w := first; w.AddDays(6) < today; w = w.AddDays(7) {
		ok, _ := segmentPeriodRows(t, in, hash, matomo.PeriodWeek, w)
		t.Logf("week %s: %d tracked visits, %d done%s archives", w, tracked(w, w.AddDays(6)), ok, hash)
		if ok == 0 && tracked(max(w, start), w.AddDays(6)) > 0 {
			t.Errorf("no done%s archive of the week %s", hash, w)
		}
	}
	// Fact for the stale rule (logged, not relied on): the segment
	// month's nb_visits against the sum of its segment days'.
	num, blob := archiveTables(month.String())
	var monthNb, daySum int
	q := strings.ReplaceAll("SELECT COALESCE(MAX(CASE WHEN period = 3 THEN value END), -1), COALESCE(SUM(CASE WHEN period = 1 THEN value END), 0) FROM "+num+
		" WHERE idsite = 1 AND name = 'nb_visits' AND idarchive IN (SELECT idarchive FROM "+num+" WHERE idsite = 1 AND name = ? AND value = 1)", "{p}", in.Prefix)
	if err := in.DB.QueryRow(q, "done"+hash).Scan(&monthNb, &daySum); err != nil {
		t.Fatal(err)
	}
	t.Logf("segment %s, month %s: nb_visits %d, sum of its segment days' nb_visits %d", def, month, monthNb, daySum)

	// The week to break: ended before yesterday, with tracked visits.
	week, weekLast := gapdetect.PeriodOf(matomo.PeriodWeek, today.AddDays(-8))
	if tracked(week, weekLast) == 0 || tracked(month, monthLast) == 0 {
		t.Skipf("site 1 has no tracked visits in the week %s or the month %s", week, month)
	}
	monthBefore, err := in.DayVisits(ctx, 1, "month", month.String(), def)
	if err != nil {
		t.Fatal(err)
	}
	weekBefore, err := in.DayVisits(ctx, 1, "week", week.String(), def)
	if err != nil {
		t.Fatal(err)
	}
	if monthBefore != tracked(month, monthLast) || weekBefore != tracked(week, weekLast) {
		t.Fatalf("the segment %s (every visit) shows %d visits in %s and %d in the week %s, want all tracked: %d and %d",
			def, monthBefore, month, weekBefore, week, tracked(month, monthLast), tracked(week, weekLast))
	}

	// Break them: the month's segment archives deleted, the week
	// invalidated by Matomo's console, its queue row (and the parents')
	// older than the grace: a run that never came.
	var ids []int64
	rows, err := in.DB.Query(strings.ReplaceAll("SELECT idarchive FROM "+num+" WHERE idsite = 1 AND period = 3 AND date1 = ? AND name = ?", "{p}", in.Prefix), month.String(), "done"+hash)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var x int64
		rows.Scan(&x)
		ids = append(ids, x)
	}
	rows.Close()
	if len(ids) == 0 {
		t.Fatalf("no done%s month archive of site 1 for %s", hash, month)
	}
	for _, x := range ids {
		in.Exec("DELETE FROM "+num+" WHERE idarchive = ?", x)
		in.Exec("DELETE FROM "+blob+" WHERE idarchive = ?", x)
	}
	if out, err := in.Console(ctx, "core:invalidate-report-data", "--sites=1", "--dates="+week.String(), "--periods=week", "--segment="+def); err != nil {
		t.Fatal(err, out)
	}
	if ok, all := segmentPeriodRows(t, in, hash, matomo.PeriodWeek, week); ok != 0 || all == 0 {
		t.Fatalf("the week %s after the console's invalidation: %d OK of %d done%s archives, want all invalidated", week, ok, all, hash)
	}
	in.Exec("UPDATE {p}archive_invalidations SET ts_invalidated = ts_invalidated - INTERVAL 3 HOUR WHERE name = ?", "done"+hash)
	want := []string{
		fmt.Sprintf("1 month %s missing repairable segment %s raw=%d", month, def, tracked(month, monthLast)),
		fmt.Sprintf("1 week %s invalidated repairable segment %s raw=%d", week, def, tracked(week, weekLast)),
	}
	plain, seg = segmentGapsOf(t, cfg)
	if len(plain) != 0 || !slices.Equal(seg, want) {
		t.Fatalf("gaps after breaking the segment's month and week:\n plain %q\n segment %q\n want %q", plain, seg, want)
	}
	code, out, errOut := cli(t, cfg, "gaps")
	if code != 1 || !strings.Contains(out, "0 segment gap days and 2 segment gap weeks, months or years (2 repairable).") {
		t.Errorf("gaps table: exit %d\n%s\n%s", code, out, errOut)
	}

	code, out, errOut = cli(t, cfg, "repair")
	t.Logf("repair:\n%s", out)
	// The argv as printed is shell-quoted: '--segment=visitCount>=1'.
	if code != 0 || !strings.Contains(out, "--dates="+month.String()+" --periods=month '--segment="+def+"'") ||
		!strings.Contains(out, "--dates="+week.String()+" --periods=week '--segment="+def+"'") ||
		!strings.Contains(out, "repaired: 2 segment week(s), month(s) or year(s)") {
		t.Fatalf("repair: exit %d\n%s\n%s", code, out, errOut)
	}
	plain, seg = segmentGapsOf(t, cfg)
	if len(plain) != 0 || len(seg) != 0 {
		t.Errorf("gaps after the repair: plain %q, segment %q", plain, seg)
	}
	if n, err := in.DayVisits(ctx, 1, "month", month.String(), def); err != nil || n != monthBefore {
		t.Errorf("site 1 month %s segment %s after the repair: Matomo's API shows %d visits (%v), want %d", month, def, n, err, monthBefore)
	}
	if n, err := in.DayVisits(ctx, 1, "week", week.String(), def); err != nil || n != weekBefore {
		t.Errorf("site 1 week %s segment %s after the repair: Matomo's API shows %d visits (%v), want %d", week, def, n, err, weekBefore)
	}
}
