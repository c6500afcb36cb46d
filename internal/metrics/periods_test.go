package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
)

// Issue 14: week, month and year gaps are their own families (per site by
// period; over all sites by period, kind and verdict) and leave the day
// families as they were.
func TestPeriodGapMetrics(t *testing.T) {
	m, reg := newTest(t)
	d := matomo.NewDate(2026, 11, 9)
	r := &gapdetect.Result{Gaps: []gapdetect.Gap{
		{IDSite: 4, Period: gapdetect.PeriodDay, Date: d, Date2: d, Kind: gapdetect.Missing, Repairable: true},
		{IDSite: 4, Period: gapdetect.PeriodWeek, Date: d, Date2: d + 6, Kind: gapdetect.Missing, Repairable: true},
		{IDSite: 4, Period: gapdetect.PeriodWeek, Date: d + 7, Date2: d + 13, Kind: gapdetect.Stale, Repairable: true},
		{IDSite: 7, Period: gapdetect.PeriodMonth, Date: d, Date2: d + 29, Kind: gapdetect.Invalidated},
		{IDSite: 7, Period: gapdetect.PeriodYear, Date: d, Date2: d + 364, Kind: gapdetect.Incomplete},
	}}
	m.SetGaps(GapSnapshotOf(r))
	compare(t, reg, `
# HELP matomo_archive_gaps Site-days with raw visits but no good day archive, by site and kind (only sites with gaps).
# TYPE matomo_archive_gaps gauge
matomo_archive_gaps{idsite="4",kind="missing"} 1
# HELP matomo_archive_period_gaps Weeks, months and years (that ended and have visits) without a good archive, by site and period (only sites with such gaps).
# TYPE matomo_archive_period_gaps gauge
matomo_archive_period_gaps{idsite="4",period="week"} 2
matomo_archive_period_gaps{idsite="7",period="month"} 1
matomo_archive_period_gaps{idsite="7",period="year"} 1
`, "matomo_archive_gaps", "matomo_archive_period_gaps")
	if n, _ := testutil.GatherAndCount(reg, "matomo_archive_period_gaps_all_sites"); n != 30 {
		t.Errorf("%d all-sites period series, want 3 periods × 5 kinds × 2 verdicts", n)
	}
	for _, c := range []struct {
		labels []string
		want   float64
	}{
		{[]string{"week", "missing", "true"}, 1},
		{[]string{"week", "stale", "true"}, 1},
		{[]string{"month", "invalidated", "false"}, 1},
		{[]string{"year", "incomplete", "false"}, 1},
		{[]string{"year", "incomplete", "true"}, 0},
	} {
		got := -1.0
		for _, mt := range gapMetrics(GapSnapshotOf(r)) {
			if mt.Desc() != periodGapsAllDesc {
				continue
			}
			var pm = metricLabels(t, mt)
			if pm["period"] == c.labels[0] && pm["kind"] == c.labels[1] && pm["repairable"] == c.labels[2] {
				got = metricValue(t, mt)
			}
		}
		if got != c.want {
			t.Errorf("all sites %v = %v, want %v", c.labels, got, c.want)
		}
	}
	// The encoded scrape serves the period families too, once.
	e := NewEncodedGaps()
	if err := e.Set(GapSnapshotOf(r)); err != nil {
		t.Fatal(err)
	}
	if !gapFamilies["matomo_archive_period_gaps"] || !gapFamilies["matomo_archive_period_gaps_all_sites"] {
		t.Error("the period families are not among the encoded gap families: they would be served twice")
	}
}

func metricLabels(t *testing.T, m prometheus.Metric) map[string]string {
	t.Helper()
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, l := range pb.GetLabel() {
		out[l.GetName()] = l.GetValue()
	}
	return out
}

func metricValue(t *testing.T, m prometheus.Metric) float64 {
	t.Helper()
	var pb dto.Metric
	if err := m.Write(&pb); err != nil {
		t.Fatal(err)
	}
	return pb.GetGauge().GetValue()
}
