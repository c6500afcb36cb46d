package metrics

import (
	"slices"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Gap kinds (label kind), as gapdetect classifies site-days.
const (
	KindMissing     = "missing"
	KindInvalidated = "invalidated"
	KindFailed      = "failed"
	KindIncomplete  = "incomplete"
	KindStale       = "stale"
)

var gapKinds = []string{KindMissing, KindInvalidated, KindFailed, KindIncomplete, KindStale}

// Periods other than the day (label period), as gapdetect names them.
const (
	PeriodWeek  = "week"
	PeriodMonth = "month"
	PeriodYear  = "year"
)

var gapPeriods = []string{PeriodWeek, PeriodMonth, PeriodYear}

// Invalidation queue states (label status).
const (
	StatusQueued     = "queued"
	StatusInProgress = "in_progress"
)

// GapSnapshot is the result of a gap scan. Only sites with gaps need to be
// listed; entries for the same site are added together.
type GapSnapshot struct {
	Sites []SiteGaps
	// SitesSkipped counts sites the scan could not check (an unreadable
	// time zone): their gaps are unknown, which must not read as none.
	SitesSkipped int
}

// SiteGaps counts one site's gap site-days.
type SiteGaps struct {
	IDSite int
	// Site-days by kind (KindMissing, …), split by whether matomod may
	// repair them. Unknown kinds and counts below 1 are ignored.
	Repairable, NotRepairable map[string]int
	// Oldest is the start of the site's oldest gap day (zero: not known).
	Oldest time.Time
	// CollectionGaps counts days without raw visits where the site normally
	// has traffic (reported, never repaired).
	CollectionGaps int
	// PeriodGaps counts the site's weeks, months and years without a good
	// archive by period, kind and verdict (Repairable, NotRepairable,
	// Oldest and the day families count days only). Unknown periods or
	// kinds and counts below 1 are ignored.
	PeriodGaps map[PeriodGap]int
	// SegmentGaps counts the site-days, weeks, months and years whose stored segment archive
	// (done<hash>) is missing or bad, by kind and verdict, over all the
	// site's segments: no segment label (a site may have any number of
	// stored segments; 10,000 sites × segments is not a bounded series
	// count). Unknown kinds and counts below 1 are ignored.
	SegmentGaps map[SegmentGap]int
}

// SegmentGap is one label set of the segment gap families.
type SegmentGap struct {
	Kind       string
	Repairable bool
}

// PeriodGap is one label set of the period gap families.
type PeriodGap struct {
	Period, Kind string
	Repairable   bool
}

// MatomoSnapshot is what the daemon last read from Matomo's database.
type MatomoSnapshot struct {
	Version                        string // version_core; empty leaves matomo_info out
	MaintenanceMode, UpdatePending bool
	Queued, InProgress             int       // archive_invalidations rows by status
	OldestQueued, OldestInProgress time.Time // zero when there is none
	// LastCompletedArchiving is the LastCompletedFullArchiving option; zero
	// leaves its series out.
	LastCompletedArchiving time.Time
}

var (
	gapsDesc = prometheus.NewDesc("matomo_archive_gaps",
		"Site-days with raw visits but no good day archive, by site and kind (only sites with gaps).",
		[]string{"idsite", "kind"}, nil)
	gapsAllDesc = prometheus.NewDesc("matomo_archive_gaps_all_sites",
		"Site-days with raw visits but no good day archive over all sites, by kind and whether matomod may repair them.",
		[]string{"kind", "repairable"}, nil)
	gapOldestDesc = prometheus.NewDesc("matomo_archive_gap_oldest_timestamp_seconds",
		"Start of the oldest gap day of each site that has gaps.",
		[]string{"idsite"}, nil)
	sitesSkippedDesc = prometheus.NewDesc("matomod_gap_scan_sites_skipped",
		"Sites the latest gap scan could not check (e.g. a time zone matomod cannot read): their gaps are unknown; `matomod gaps` names them.",
		nil, nil)
	periodGapsDesc = prometheus.NewDesc("matomo_archive_period_gaps",
		"Weeks, months and years (that ended and have visits) without a good archive, by site and period (only sites with such gaps).",
		[]string{"idsite", "period"}, nil)
	periodGapsAllDesc = prometheus.NewDesc("matomo_archive_period_gaps_all_sites",
		"Weeks, months and years (that ended and have visits) without a good archive over all sites, by period, kind and whether matomod may repair them.",
		[]string{"period", "kind", "repairable"}, nil)
	segmentGapsDesc = prometheus.NewDesc("matomo_archive_segment_gaps",
		"Site-days, weeks, months and years with raw visits but no good archive of a stored auto-archived segment (done<hash>), summed over the site's segments, by site (only sites with such gaps; no segment label: `matomod gaps` names the segments).",
		[]string{"idsite"}, nil)
	segmentGapsAllDesc = prometheus.NewDesc("matomo_archive_segment_gaps_all_sites",
		"Stored segments' site-days, weeks, months and years with raw visits but no good segment archive over all sites and segments, by kind and whether matomod may repair them.",
		[]string{"kind", "repairable"}, nil)
	collectionGapsDesc = prometheus.NewDesc("matomo_collection_gaps",
		"Days without raw visits where the site normally has traffic (tracking outage or lost raw data), per site that has them.",
		[]string{"idsite"}, nil)

	invalidationsDesc = prometheus.NewDesc("matomo_archive_invalidations",
		"Rows in Matomo's archive_invalidations queue by status.",
		[]string{"status"}, nil)
	invalidationOldestDesc = prometheus.NewDesc("matomo_archive_invalidation_oldest_timestamp_seconds",
		"Oldest invalidation by status: ts_invalidated when queued, ts_started when in progress (0: none).",
		[]string{"status"}, nil)
	lastCompletedDesc = prometheus.NewDesc("matomo_last_completed_archiving_timestamp_seconds",
		"Matomo's LastCompletedFullArchiving option (also set by runs that stopped early).",
		nil, nil)
	maintenanceDesc = prometheus.NewDesc("matomo_maintenance_mode",
		"1 when config.ini.php sets [General] maintenance_mode = 1.",
		nil, nil)
	updatePendingDesc = prometheus.NewDesc("matomo_update_pending",
		"1 when Matomo's database version is older than its code (core:update pending).",
		nil, nil)
	infoDesc = prometheus.NewDesc("matomo_info",
		"Always 1; label version is Matomo's version_core.",
		[]string{"version"}, nil)
)

// snapshotCollector serves the cached scan and Matomo state. Both are turned
// into immutable const metrics when set, so a scrape only sends prepared
// values: its cost does not depend on how much work building them took.
type snapshotCollector struct {
	gaps   atomic.Pointer[[]prometheus.Metric]
	matomo atomic.Pointer[[]prometheus.Metric]
}

func newSnapshotCollector() *snapshotCollector {
	c := &snapshotCollector{}
	c.setGaps(GapSnapshot{})
	c.matomo.Store(ptr(matomoMetrics(MatomoSnapshot{}, false)))
	return c
}

func ptr[T any](v T) *T { return &v }

func (c *snapshotCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{gapsDesc, gapsAllDesc, gapOldestDesc, collectionGapsDesc, sitesSkippedDesc, periodGapsDesc, periodGapsAllDesc, segmentGapsDesc, segmentGapsAllDesc,
		invalidationsDesc, invalidationOldestDesc, lastCompletedDesc, maintenanceDesc, updatePendingDesc, infoDesc} {
		ch <- d
	}
}

func (c *snapshotCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range *c.gaps.Load() {
		ch <- m
	}
	for _, m := range *c.matomo.Load() {
		ch <- m
	}
}

func (c *snapshotCollector) setGaps(s GapSnapshot) { c.gaps.Store(ptr(gapMetrics(s))) }

func (c *snapshotCollector) setMatomo(s MatomoSnapshot) {
	c.matomo.Store(ptr(matomoMetrics(s, true)))
}

// siteTotals is one site's counts after merging duplicate entries.
type siteTotals struct {
	idsite     int
	days       [2][]int // [repairable: 0 false, 1 true][kind index]
	oldest     time.Time
	collection int
	periods    []int // by gapPeriods index
	segments   int
}

// periodIndex and kindIndex place a label value; -1: unknown.
func periodIndex(p string) int {
	for i, v := range gapPeriods {
		if v == p {
			return i
		}
	}
	return -1
}

func kindIndex(k string) int {
	for i, v := range gapKinds {
		if v == k {
			return i
		}
	}
	return -1
}

func gapMetrics(s GapSnapshot) []prometheus.Metric {
	sites := make([]SiteGaps, len(s.Sites))
	copy(sites, s.Sites) // never reorder the caller's slice
	slices.SortFunc(sites, func(a, b SiteGaps) int { return a.IDSite - b.IDSite })

	var all [2][]int
	all[0], all[1] = make([]int, len(gapKinds)), make([]int, len(gapKinds))
	// allPeriods[repairable][period][kind]
	var allPeriods [2][][]int
	for r := range allPeriods {
		allPeriods[r] = make([][]int, len(gapPeriods))
		for p := range gapPeriods {
			allPeriods[r][p] = make([]int, len(gapKinds))
		}
	}
	var allSegments [2][]int
	allSegments[0], allSegments[1] = make([]int, len(gapKinds)), make([]int, len(gapKinds))
	var out []prometheus.Metric
	var cur *siteTotals
	flush := func() {
		if cur != nil {
			out = appendSite(out, cur)
		}
	}
	for _, sg := range sites {
		if cur == nil || cur.idsite != sg.IDSite {
			flush()
			cur = &siteTotals{idsite: sg.IDSite, days: [2][]int{make([]int, len(gapKinds)), make([]int, len(gapKinds))},
				periods: make([]int, len(gapPeriods))}
		}
		for k, n := range sg.PeriodGaps {
			p, ki := periodIndex(k.Period), kindIndex(k.Kind)
			if p < 0 || ki < 0 || n < 1 {
				continue
			}
			r := 0
			if k.Repairable {
				r = 1
			}
			cur.periods[p] += n
			allPeriods[r][p][ki] += n
		}
		for k, n := range sg.SegmentGaps {
			ki := kindIndex(k.Kind)
			if ki < 0 || n < 1 {
				continue
			}
			r := 0
			if k.Repairable {
				r = 1
			}
			cur.segments += n
			allSegments[r][ki] += n
		}
		for r, counts := range []map[string]int{sg.NotRepairable, sg.Repairable} {
			for i, k := range gapKinds {
				if n := counts[k]; n > 0 {
					cur.days[r][i] += n
					all[r][i] += n
				}
			}
		}
		if !sg.Oldest.IsZero() && (cur.oldest.IsZero() || sg.Oldest.Before(cur.oldest)) {
			cur.oldest = sg.Oldest
		}
		if sg.CollectionGaps > 0 {
			cur.collection += sg.CollectionGaps
		}
	}
	flush()
	out = append(out, prometheus.MustNewConstMetric(sitesSkippedDesc, prometheus.GaugeValue, float64(max(s.SitesSkipped, 0))))
	for r, repairable := range []string{"false", "true"} {
		for i, k := range gapKinds {
			out = append(out, prometheus.MustNewConstMetric(gapsAllDesc, prometheus.GaugeValue, float64(all[r][i]), k, repairable))
		}
	}
	for r, repairable := range []string{"false", "true"} {
		for p, period := range gapPeriods {
			for i, k := range gapKinds {
				out = append(out, prometheus.MustNewConstMetric(periodGapsAllDesc, prometheus.GaugeValue, float64(allPeriods[r][p][i]), period, k, repairable))
			}
		}
	}
	for r, repairable := range []string{"false", "true"} {
		for i, k := range gapKinds {
			out = append(out, prometheus.MustNewConstMetric(segmentGapsAllDesc, prometheus.GaugeValue, float64(allSegments[r][i]), k, repairable))
		}
	}
	return out
}

func appendSite(out []prometheus.Metric, s *siteTotals) []prometheus.Metric {
	id := strconv.Itoa(s.idsite)
	has := false
	for i, k := range gapKinds {
		if n := s.days[0][i] + s.days[1][i]; n > 0 {
			has = true
			out = append(out, prometheus.MustNewConstMetric(gapsDesc, prometheus.GaugeValue, float64(n), id, k))
		}
	}
	if has && !s.oldest.IsZero() {
		out = append(out, prometheus.MustNewConstMetric(gapOldestDesc, prometheus.GaugeValue, seconds(s.oldest), id))
	}
	if s.collection > 0 {
		out = append(out, prometheus.MustNewConstMetric(collectionGapsDesc, prometheus.GaugeValue, float64(s.collection), id))
	}
	for p, period := range gapPeriods {
		if n := s.periods[p]; n > 0 {
			out = append(out, prometheus.MustNewConstMetric(periodGapsDesc, prometheus.GaugeValue, float64(n), id, period))
		}
	}
	if s.segments > 0 {
		out = append(out, prometheus.MustNewConstMetric(segmentGapsDesc, prometheus.GaugeValue, float64(s.segments), id))
	}
	return out
}

// matomoMetrics builds the Matomo series; before the first read (known is
// false) only the fixed-label queue families are present, at 0.
func matomoMetrics(s MatomoSnapshot, known bool) []prometheus.Metric {
	out := []prometheus.Metric{
		prometheus.MustNewConstMetric(invalidationsDesc, prometheus.GaugeValue, float64(max(s.Queued, 0)), StatusQueued),
		prometheus.MustNewConstMetric(invalidationsDesc, prometheus.GaugeValue, float64(max(s.InProgress, 0)), StatusInProgress),
		prometheus.MustNewConstMetric(invalidationOldestDesc, prometheus.GaugeValue, seconds(s.OldestQueued), StatusQueued),
		prometheus.MustNewConstMetric(invalidationOldestDesc, prometheus.GaugeValue, seconds(s.OldestInProgress), StatusInProgress),
	}
	if !known {
		return out
	}
	out = append(out,
		prometheus.MustNewConstMetric(maintenanceDesc, prometheus.GaugeValue, boolValue(s.MaintenanceMode)),
		prometheus.MustNewConstMetric(updatePendingDesc, prometheus.GaugeValue, boolValue(s.UpdatePending)),
	)
	if !s.LastCompletedArchiving.IsZero() {
		out = append(out, prometheus.MustNewConstMetric(lastCompletedDesc, prometheus.GaugeValue, seconds(s.LastCompletedArchiving)))
	}
	if v := labelValue(s.Version); v != "" {
		out = append(out, prometheus.MustNewConstMetric(infoDesc, prometheus.GaugeValue, 1, v))
	}
	return out
}

// labelValue makes text read from the database safe as a label value: valid
// UTF-8 (or the metric would fail the whole scrape) and bounded in length.
func labelValue(s string) string {
	s = strings.ToValidUTF8(strings.TrimSpace(s), "\uFFFD")
	if len(s) > 64 {
		s = strings.ToValidUTF8(s[:64], "")
	}
	return s
}
