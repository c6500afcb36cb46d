package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/realmatomo"
)

// periodGap is one row of `matomod gaps --format json` with the period
// fields of issue 14.
type periodGap struct {
	IDSite     int    `json:"idsite"`
	Period     string `json:"period"`
	Date       string `json:"date"`
	Date2      string `json:"date2"`
	Kind       string `json:"kind"`
	RawVisits  int64  `json:"raw_visits"`
	Archived   *int64 `json:"archived_visits"`
	Repairable bool   `json:"repairable"`
	Reason     string `json:"reason"`
}

func periodGaps(t *testing.T, cfg string) []string {
	t.Helper()
	code, out, errOut := cli(t, cfg, "gaps", "--format=json")
	var res struct {
		Gaps []periodGap `json:"gaps"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("gaps: exit %d: %v\n%s\n%s", code, err, out, errOut)
	}
	var s []string
	for _, g := range res.Gaps {
		r := "repairable"
		if !g.Repairable {
			r = "unrepairable: " + g.Reason
		}
		s = append(s, fmt.Sprintf("%d %s %s %s %s", g.IDSite, g.Period, g.Date, g.Kind, r))
	}
	slices.Sort(s)
	return s
}

// Issue 14 on the real Matomo 5.0.2: a deleted month archive, a week
// invalidated by Matomo's own console (its month follows), and a month
// (and week) left below the sum of their days by a day re-archived with
// two more visits are exactly what `gaps` reports; `repair` rebuilds them
// through the real console with --periods=week|month, and Matomo's API
// then shows, for each, the sum of its days' tracked visits.
func TestRealPeriodGapsAndRepair(t *testing.T) {
	t.Parallel()
	in := realmatomo.New(t)
	cfg := config(t, in, "")
	ctx := context.Background()
	m := in.Manifest
	if g := periodGaps(t, cfg); len(g) != 0 {
		t.Fatalf("the real archive has gaps before anything was planted: %q", g)
	}
	today := func(id int) matomo.Date {
		return matomo.DateOf(time.Now().In(realmatomo.Location(m.Sites[id-1].Timezone)))
	}
	ended := func(id, p int, d matomo.Date) bool { _, last := gapdetect.PeriodOf(p, d); return last < today(id) }
	tracked := func(id, p int, d matomo.Date) int {
		first, last := gapdetect.PeriodOf(p, d)
		n := 0
		for x := first; x <= last; x++ {
			n += m.Visits[fmt.Sprintf("%d %s", id, x)]
		}
		return n
	}
	// A day of each site with tracked visits whose week has ended.
	pick := func(id int) matomo.Date {
		for n := 6; n < 13; n++ {
			d := today(id).AddDays(-n)
			if m.Visits[fmt.Sprintf("%d %s", id, d)] > 0 && ended(id, matomo.PeriodWeek, d) {
				return d
			}
		}
		t.Fatalf("site %d: no tracked day in an ended week", id)
		return 0
	}
	var want []string
	expect := func(id, p int, d matomo.Date, kind string) {
		if ended(id, p, d) {
			first, _ := gapdetect.PeriodOf(p, d)
			want = append(want, fmt.Sprintf("%d %s %s %s repairable", id, gapdetect.PeriodName(p), first, kind))
		}
	}

	// 1. Site 1 (UTC): its month archive deleted (all segments).
	d1 := pick(1)
	m1, _ := gapdetect.PeriodOf(matomo.PeriodMonth, d1)
	if !ended(1, matomo.PeriodMonth, d1) {
		t.Skipf("the month of %s has not ended: the planted days are all in the current month", d1)
	}
	deleteArchives(t, in, 1, m1.String(), m1.String(), matomo.PeriodMonth)
	expect(1, matomo.PeriodMonth, d1, "missing")

	// 2. Site 2 (New York): Matomo invalidates a week (and, as always, its
	// month and year), hours ago; nothing rebuilt it.
	d2 := pick(2)
	w2, w2last := gapdetect.PeriodOf(matomo.PeriodWeek, d2)
	if out, err := in.Console(ctx, "core:invalidate-report-data", "--sites=2", "--dates="+w2.String(), "--periods=week"); err != nil {
		t.Fatal(err, out)
	}
	in.Exec("UPDATE {p}archive_invalidations SET ts_invalidated = ? WHERE idsite = 2", time.Now().Add(-3*time.Hour).UTC().Format(time.DateTime))
	expect(2, matomo.PeriodWeek, d2, "invalidated")
	expect(2, matomo.PeriodMonth, w2, "invalidated")
	if w2last.Month() != w2.Month() {
		expect(2, matomo.PeriodMonth, w2last, "invalidated")
	}

	// 3. Site 3 (Kolkata): two visits arrive late into an archived day
	// (inserted like an import: no tracker option), the day alone is
	// rebuilt by the real console (its week, month and year invalidations
	// are undone first): the week and month now hold fewer visits than
	// their days.
	d3 := pick(3)
	s3, _ := matomo.DayBounds(realmatomo.Location("Asia/Kolkata"), d3)
	for i := range 2 {
		at := s3.Add(time.Duration(11+i) * time.Hour).UTC().Format(time.DateTime)
		in.Exec(`INSERT INTO {p}log_visit (idsite, idvisitor, visit_last_action_time, config_id, location_ip,
			visit_first_action_time, visitor_returning, visitor_count_visits, visit_total_actions, visit_total_time)
			VALUES (3, UNHEX('0102030405060708'), ?, UNHEX('0807060504030201'), UNHEX('7f000001'), ?, 0, 1, 2, 60)`, at, at)
	}
	if out, err := in.Console(ctx, "core:invalidate-report-data", "--sites=3", "--dates="+d3.String(), "--periods=day"); err != nil {
		t.Fatal(err, out)
	}
	for _, p := range []int{matomo.PeriodWeek, matomo.PeriodMonth, matomo.PeriodYear} {
		first, last := gapdetect.PeriodOf(p, d3)
		for _, tb := range []string{matomo.TableFor(first), matomo.TableFor(last.Month())} {
			in.Exec("UPDATE {p}" + tb + " SET value = 1 WHERE idsite = 3 AND period > 1 AND name LIKE 'done%' AND value = 4")
		}
	}
	in.Exec("DELETE FROM {p}archive_invalidations WHERE idsite = 3 AND period > 1")
	if out, err := in.Console(ctx, "core:archive", "--force-idsites=3", "--no-ansi"); err != nil {
		t.Fatal(err, out)
	}
	if n := visitsOf(t, in, 3, "day", d3.String()); n != m.Visits[fmt.Sprintf("3 %s", d3)]+2 {
		t.Fatalf("site 3 %s: Matomo shows %d visits after re-archiving the day, want %d", d3, n, m.Visits[fmt.Sprintf("3 %s", d3)]+2)
	}
	expect(3, matomo.PeriodWeek, d3, "stale")
	expect(3, matomo.PeriodMonth, d3, "stale")

	slices.Sort(want)
	if got := periodGaps(t, cfg); !slices.Equal(got, want) {
		t.Fatalf("gaps after planting:\n got %q\nwant %q", got, want)
	}

	t.Logf("planted period gaps: %q", want)
	// What readers see before the repair: the stale month misses the two visits.
	m3, _ := gapdetect.PeriodOf(matomo.PeriodMonth, d3)
	if got, days := visitsOf(t, in, 3, "month", m3.String()), tracked(3, matomo.PeriodMonth, d3)+2; ended(3, matomo.PeriodMonth, d3) && got >= days {
		t.Errorf("site 3 month before the repair: API %d visits, want fewer than its days' %d (stale)", got, days)
	}
	code, out, errOut := cli(t, cfg, "repair")
	t.Logf("repair:\n%s", out)
	if code != 0 || !strings.Contains(out, "--periods=month") || !strings.Contains(out, "--periods=week") {
		t.Fatalf("repair: exit %d\n%s\n%s", code, out, errOut)
	}
	if got := periodGaps(t, cfg); len(got) != 0 {
		t.Errorf("gaps after the repair: %q", got)
	}
	// Matomo's own API: each period is the sum of its days' visits.
	for _, c := range []struct {
		id, p int
		d     matomo.Date
		extra int
	}{
		{1, matomo.PeriodMonth, d1, 0},
		{2, matomo.PeriodWeek, d2, 0},
		{2, matomo.PeriodMonth, w2, 0},
		{3, matomo.PeriodWeek, d3, 2},
		{3, matomo.PeriodMonth, d3, 2},
	} {
		if !ended(c.id, c.p, c.d) {
			continue
		}
		first, _ := gapdetect.PeriodOf(c.p, c.d)
		want := tracked(c.id, c.p, c.d) + c.extra
		got := visitsOf(t, in, c.id, gapdetect.PeriodName(c.p), first.String())
		t.Logf("site %d %s %s: API %d visits, days sum %d", c.id, gapdetect.PeriodName(c.p), first, got, want)
		if got != want {
			t.Errorf("site %d %s %s: Matomo's API shows %d visits, want %d", c.id, gapdetect.PeriodName(c.p), first, got, want)
		}
	}
}
