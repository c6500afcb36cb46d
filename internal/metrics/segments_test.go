package metrics

import (
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
)

// Issue 14 (segments): segment gaps are counted per site (no segment
// label) and over all sites by kind and verdict; the day and period
// families do not see them.
func TestSegmentGapMetrics(t *testing.T) {
	m, reg := newTest(t)
	d := matomo.NewDate(2026, 11, 9)
	r := &gapdetect.Result{
		Gaps: []gapdetect.Gap{{IDSite: 4, Period: gapdetect.PeriodDay, Date: d, Date2: d, Kind: gapdetect.Missing, Repairable: true}},
		SegmentGaps: []gapdetect.Gap{
			{IDSite: 4, Period: gapdetect.PeriodDay, Date: d, Date2: d, Kind: gapdetect.Missing, Repairable: true, Segment: "pageTitle==a"},
			{IDSite: 4, Period: gapdetect.PeriodDay, Date: d, Date2: d, Kind: gapdetect.Invalidated, Repairable: true, Segment: "pageTitle==b"},
			{IDSite: 9, Period: gapdetect.PeriodDay, Date: d + 1, Date2: d + 1, Kind: gapdetect.Missing, Segment: "pageTitle==a"},
		}}
	m.SetGaps(GapSnapshotOf(r))
	compare(t, reg, `
# HELP matomo_archive_gaps Site-days with raw visits but no good day archive, by site and kind (only sites with gaps).
# TYPE matomo_archive_gaps gauge
matomo_archive_gaps{idsite="4",kind="missing"} 1
# HELP matomo_archive_segment_gaps Site-days, weeks, months and years with raw visits but no good archive of a stored auto-archived segment (done<hash>), summed over the site's segments, by site (only sites with such gaps; no segment label: `+"`matomod gaps`"+` names the segments).
# TYPE matomo_archive_segment_gaps gauge
matomo_archive_segment_gaps{idsite="4"} 2
matomo_archive_segment_gaps{idsite="9"} 1
`, "matomo_archive_gaps", "matomo_archive_segment_gaps")
	if n, _ := testutil.GatherAndCount(reg, "matomo_archive_segment_gaps_all_sites"); n != 10 {
		t.Errorf("%d all-sites segment series, want 5 kinds × 2 verdicts", n)
	}
	if n, _ := testutil.GatherAndCount(reg, "matomo_archive_period_gaps"); n != 0 {
		t.Errorf("segment gaps reached the period family: %d series", n)
	}
	snap := GapSnapshotOf(r)
	for _, sg := range snap.Sites {
		if sg.IDSite == 9 && (len(sg.Repairable)+len(sg.NotRepairable) != 0 || !sg.Oldest.IsZero()) {
			t.Errorf("segment gaps counted as days: %+v", sg)
		}
	}
}
