package metrics

import "github.com/matomod/matomod/internal/gapdetect"

// GapSnapshotOf groups a gap scan's result per site, as SetGaps takes it.
// The daemon and the benchmark both use it, so the scrape measured is the
// scrape served.
func GapSnapshotOf(r *gapdetect.Result) GapSnapshot {
	by := map[int]*SiteGaps{}
	get := func(id int) *SiteGaps {
		if by[id] == nil {
			by[id] = &SiteGaps{IDSite: id, Repairable: map[string]int{}, NotRepairable: map[string]int{}}
		}
		return by[id]
	}
	for _, g := range r.Gaps {
		sg := get(g.IDSite)
		if !g.IsDay() {
			if sg.PeriodGaps == nil {
				sg.PeriodGaps = map[PeriodGap]int{}
			}
			sg.PeriodGaps[PeriodGap{Period: g.Period, Kind: string(g.Kind), Repairable: g.Repairable}]++
			continue
		}
		if g.Repairable {
			sg.Repairable[string(g.Kind)]++
		} else {
			sg.NotRepairable[string(g.Kind)]++
		}
		if t := g.Date.Time(); sg.Oldest.IsZero() || t.Before(sg.Oldest) {
			sg.Oldest = t
		}
	}
	// Segment gaps (Result.SegmentGaps) never reach the day or period
	// families: they have their own.
	for _, g := range r.SegmentGaps {
		sg := get(g.IDSite)
		if sg.SegmentGaps == nil {
			sg.SegmentGaps = map[SegmentGap]int{}
		}
		sg.SegmentGaps[SegmentGap{Kind: string(g.Kind), Repairable: g.Repairable}]++
	}
	for _, c := range r.CollectionGaps {
		get(c.IDSite).CollectionGaps++
	}
	snap := GapSnapshot{SitesSkipped: len(r.SiteErrors)}
	for _, sg := range by {
		snap.Sites = append(snap.Sites, *sg)
	}
	return snap
}
