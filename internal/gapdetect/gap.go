// Package gapdetect decides which site-days lack a good day archive in
// Matomo's database, and whether matomod may safely repair them.
package gapdetect

import (
	"slices"
	"sort"
	"time"

	"github.com/matomod/matomod/internal/matomo"
)

// Kind says why a site-day lacks a good archive.
type Kind string

// Gap kinds; see README "Gap kinds".
const (
	Missing     Kind = "missing"     // raw visits, no day archive at all
	Invalidated Kind = "invalidated" // newest archive done = 4/6, not rebuilt within the grace
	Failed      Kind = "failed"      // only done = 2/5 archives, older than the grace
	Incomplete  Kind = "incomplete"  // newest OK archive written before the local day ended
	Stale       Kind = "stale"       // OK archive, but raw visits > its nb_visits (verify days)
)

// Kinds lists every kind, for metrics that must show each at 0.
var Kinds = []Kind{Missing, Invalidated, Failed, Incomplete, Stale}

// Gap is one site-day, or one site's week, month or year, without a good
// archive. The JSON shape is a public contract (`matomod gaps --format
// json`): fields are only ever added.
type Gap struct {
	IDSite int `json:"idsite"`
	// Period is "day" (the default), "week", "month" or "year".
	Period string `json:"period"`
	// Date is the day, or the period's first day (date1); Date2 its last.
	Date           matomo.Date `json:"date"`
	Date2          matomo.Date `json:"date2"`
	Kind           Kind        `json:"kind"`
	RawVisits      int64       `json:"raw_visits"`
	ArchivedVisits *int64      `json:"archived_visits"`
	Repairable     bool        `json:"repairable"`
	Reason         string      `json:"reason"`
	// Segment is the definition of the stored segment whose done<hash>
	// archive is missing or bad (a segment gap, in Result.SegmentGaps);
	// empty for a plain (no-segment) gap.
	Segment string `json:"segment,omitempty"`
}

// CollectionGap is a zero-visit day between days with traffic on a site
// that normally has traffic every day: tracking outage or lost raw data.
type CollectionGap struct {
	IDSite int         `json:"idsite"`
	Date   matomo.Date `json:"date"`
}

// SiteError is a site that could not be scanned (e.g. unknown time zone).
type SiteError struct {
	IDSite int    `json:"idsite"`
	Error  string `json:"error"`
}

// Window is an inclusive range of dates.
type Window struct {
	Since matomo.Date `json:"since"`
	Until matomo.Date `json:"until"`
}

// Result is one scan's outcome.
type Result struct {
	ScannedAt      time.Time       `json:"scanned_at"`
	Window         Window          `json:"window"`
	SitesScanned   int             `json:"sites_scanned"`
	Gaps           []Gap           `json:"gaps"`
	CollectionGaps []CollectionGap `json:"collection_gaps"`
	// SegmentGaps are the site-days whose stored segment archive
	// (done<hash>) is missing or bad: kept apart from Gaps so that the
	// plain day and period gaps, their metrics and their repair stay
	// as they were.
	SegmentGaps []Gap       `json:"segment_gaps"`
	SiteErrors  []SiteError `json:"site_errors,omitempty"`
	Stats       Stats       `json:"-"`
}

// Stats describe the cost of a scan (for logs and the benchmark).
type Stats struct {
	Full       bool          // a full re-read, not an incremental one
	Duration   time.Duration // wall time
	RoundTrips int64         // DB queries sent
	Probes     int           // site-days counted in log_visit
	DoneRows   int           // done rows read
	// SegmentRows is the stored segments' done rows read (0 in a steady
	// rescan: they are kept per table between scans).
	SegmentRows int
	TablesRead  int // monthly archive tables read in full
	// Stages is the wall time of each step of the scan, in order (the
	// benchmark prints them).
	Stages []Stage
}

// Stage is one step of a scan and its wall time.
type Stage struct {
	Name     string
	Duration time.Duration
}

// SortGaps orders gaps by idsite, then days before weeks, months and
// years, then date (the CLI contract: a site's day gaps come first, as
// before periods were checked).
func SortGaps(g []Gap) {
	slices.SortStableFunc(g, func(a, b Gap) int {
		if a.IDSite != b.IDSite {
			return a.IDSite - b.IDSite
		}
		if pa, pb := PeriodNumber(a.Period), PeriodNumber(b.Period); pa != pb {
			return pa - pb
		}
		return int(a.Date - b.Date)
	})
}

// SortSegmentGaps orders segment gaps by idsite, segment, then days
// before weeks, months and years, then date.
func SortSegmentGaps(g []Gap) {
	sort.SliceStable(g, func(i, j int) bool {
		if g[i].IDSite != g[j].IDSite {
			return g[i].IDSite < g[j].IDSite
		}
		if g[i].Segment != g[j].Segment {
			return g[i].Segment < g[j].Segment
		}
		if pi, pj := PeriodNumber(g[i].Period), PeriodNumber(g[j].Period); pi != pj {
			return pi < pj
		}
		return g[i].Date < g[j].Date
	})
}

// IsSegment: the gap is a stored segment's archive, not the plain one.
func (g Gap) IsSegment() bool { return g.Segment != "" }

// IsDay: the gap is a site-day (not a week, month or year).
func (g Gap) IsDay() bool { return g.Segment == "" && (g.Period == "" || g.Period == PeriodDay) }

// Repairable returns the gaps matomod may repair.
func (r *Result) Repairable() []Gap {
	var out []Gap
	for _, g := range r.Gaps {
		if g.Repairable {
			out = append(out, g)
		}
	}
	return out
}

// Range is consecutive repairable gap days of one site.
type Range struct {
	IDSite   int
	From, To matomo.Date
}

// Days is the number of days in the range.
func (r Range) Days() int { return int(r.To-r.From) + 1 }

// PlanRepairs groups repairable day gaps into per-site ranges of consecutive
// days (a range never spans a day that is not itself a repairable gap) and
// keeps at most maxDays site-days, newest first: the oldest wait for a
// later cycle ("oldest-last"), since recent days matter most to readers
// and are furthest from the log-deletion limit. deferred counts the rest.
func PlanRepairs(gaps []Gap, maxDays int) (plan []Range, deferred int) {
	var rep []Gap
	for _, g := range gaps {
		if g.Repairable && g.IsDay() {
			rep = append(rep, g)
		}
	}
	sort.Slice(rep, func(i, j int) bool {
		if rep[i].Date != rep[j].Date {
			return rep[i].Date > rep[j].Date
		}
		return rep[i].IDSite < rep[j].IDSite
	})
	if maxDays >= 0 && len(rep) > maxDays {
		deferred = len(rep) - maxDays
		rep = rep[:maxDays]
	}
	SortGaps(rep)
	for _, g := range rep {
		if n := len(plan); n > 0 && plan[n-1].IDSite == g.IDSite && plan[n-1].To.AddDays(1) == g.Date {
			plan[n-1].To = g.Date
			continue
		}
		plan = append(plan, Range{IDSite: g.IDSite, From: g.Date, To: g.Date})
	}
	return plan, deferred
}
