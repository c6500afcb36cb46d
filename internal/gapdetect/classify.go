package gapdetect

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/matomod/matomod/internal/matomo"
)

// DayFacts is everything the rules know of one site-day. Classify and
// Repairable are pure functions of it, so every rule is table-tested
// without a database and the scan, Assess and the tests share them.
type DayFacts struct {
	Date     matomo.Date
	Loc      *time.Location // the site's time zone
	Now      time.Time
	Grace    time.Duration   // how long Matomo may take to rebuild a day
	Newest   matomo.DoneFlag // newest plain day archive (IDArchive 0: none)
	NewestOK matomo.DoneFlag // newest with done = 1/3 (IDArchive 0: none)
	Queued   bool            // a day row in archive_invalidations
	QueuedAt time.Time       // its newest ts_invalidated
	Raw      int64           // raw visits in log_visit
	Archived *int64          // nb_visits of Newest; nil: no archive or unknown
	Stale    bool            // a verify check found raw > archived
}

// Safety is what the repair rules need beyond the day itself.
type Safety struct {
	DeleteLogs     bool // log deletion enabled (option rows override config.ini.php)
	DeleteLogsDays int  // delete_logs_older_than
	// FirstVisit is the site's earliest raw visit (zero: none known).
	FirstVisit time.Time
	// LastArchiveRun is the newest core:archive start known.
	LastArchiveRun time.Time
}

// Classify decides whether a site-day is a gap now, and of which kind; ok
// is false for days that are fine or not due yet.
func Classify(f DayFacts) (kind Kind, ok bool) {
	// A day Matomo queued recently is being rebuilt: not a gap yet.
	if f.Queued && f.Now.Sub(f.QueuedAt) < f.Grace {
		return "", false
	}
	if f.Stale {
		return Stale, true
	}
	n := f.Newest
	if n.IDArchive == 0 {
		return Missing, f.Raw > 0
	}
	okKind := func(g matomo.DoneFlag) (Kind, bool) {
		if g.Good(f.Loc) {
			return "", false
		}
		return Incomplete, true
	}
	switch n.Value {
	case matomo.DoneOK, matomo.DoneOKTemporary:
		if f.Queued && n.TSArchived.Before(f.QueuedAt) { // queued long ago, never rebuilt
			return Invalidated, true
		}
		return okKind(n)
	case matomo.DoneInvalidated, matomo.DoneErrorInvalidated:
		ref := n.TSArchived
		if f.Queued {
			ref = f.QueuedAt
		}
		if f.Now.Sub(ref) < f.Grace {
			return "", false
		}
		return Invalidated, true
	default: // 2 error / in progress, 5 partial, or a value we do not know
		if f.Now.Sub(n.TSArchived) < f.Grace {
			return "", false // a run is probably writing it right now
		}
		if f.NewestOK.IDArchive != 0 {
			return okKind(f.NewestOK)
		}
		return Failed, true
	}
}

// LogDeletionLimit is the oldest day Matomo still invalidates when log
// deletion keeps days days: today in UTC minus days, whatever the site's
// time zone (ArchiveInvalidator::findOlderDateWithLogs uses
// Date::factory('today')->subDay(N)). core:invalidate-report-data skips
// every earlier day and exits 0, so reporting one repairable would have
// the daemon re-invalidate it on every scan, in vain.
func LogDeletionLimit(now time.Time, days int) matomo.Date {
	return matomo.DateOf(now.UTC()).AddDays(-days)
}

// Repairable applies the never-destroy-data rules (README "Safety") to a
// day of the given kind ("" for a day that is not a gap, as Assess asks).
func Repairable(f DayFacts, kind Kind, s Safety) (bool, string) {
	today := matomo.Today(f.Loc, f.Now)
	d := f.Date
	switch {
	case f.Raw == 0:
		return false, "no raw visits in log_visit for this day: nothing to rebuild from"
	case s.DeleteLogs && d < LogDeletionLimit(f.Now, s.DeleteLogsDays):
		return false, fmt.Sprintf("older than the log-deletion limit (delete_logs_older_than = %d days): Matomo invalidates no day before %s",
			s.DeleteLogsDays, LogDeletionLimit(f.Now, s.DeleteLogsDays))
	case d >= today:
		return false, "today: the scheduled core:archive run archives it"
	}
	// A purge cuts the boundary day of a non-UTC site in two; the site's
	// first raw day is where that shows.
	if !s.FirstVisit.IsZero() && d <= matomo.DateOf(s.FirstVisit.In(f.Loc)) {
		return false, "first day of the site's raw data: it may be partly purged"
	}
	if d == today.AddDays(-1) {
		_, end := matomo.DayBounds(f.Loc, d)
		if s.LastArchiveRun.Before(end) {
			return false, "yesterday: waiting for the scheduled core:archive run"
		}
	}
	if f.Archived != nil && kind != Stale && f.Raw*2 < *f.Archived {
		return false, fmt.Sprintf("raw visits (%d) are less than half of the archived %d: raw data may be partly purged, rebuilding would lose reports", f.Raw, *f.Archived)
	}
	return true, ""
}

// purgeRisk says whether a day's raw data is known to be partly gone: past
// Matomo's log-deletion limit, the first raw day while log deletion runs
// (the purge cuts it), or far fewer raw visits than archived. The first
// day alone, with log deletion off, is only a hint and protects nothing.
func purgeRisk(f DayFacts, s Safety) bool {
	if s.DeleteLogs {
		if f.Date < LogDeletionLimit(f.Now, s.DeleteLogsDays) {
			return true
		}
		if !s.FirstVisit.IsZero() && f.Date <= matomo.DateOf(s.FirstVisit.In(f.Loc)) {
			return true
		}
	}
	return f.Archived != nil && f.Raw*2 < *f.Archived
}

// weekStart is the Monday of d's week: Matomo's weeks start on Monday.
func weekStart(d matomo.Date) matomo.Date {
	return d.AddDays(-((int(d.Time().Weekday()) + 6) % 7))
}

// ProtectPeriods makes unrepairable every repairable gap of a site that
// shares a week or a month with a gap day that has no usable archive and
// whose raw data may be purged (hazards). Matomo invalidates a day's week,
// month and year with it, and rebuilding a week or month rebuilds every day
// in it that lacks a usable archive from raw data (observed on 5.0.2: the
// day before the log-deletion limit came back when the boundary day's week
// was rebuilt), so repairing the neighbour would rebuild the hazard day
// from what the purge left, and its week and month with it. A stale hazard
// day keeps its usable archive, so it protects nothing. gaps are one site's,
// with hazard set for the days at risk.
func ProtectPeriods(gaps []Gap, hazard map[matomo.Date]bool) {
	if len(hazard) == 0 {
		return
	}
	// Name the earliest hazard of each week and month, whatever the order
	// of gaps.
	week, month := map[matomo.Date]matomo.Date{}, map[matomo.Date]matomo.Date{}
	keep := func(m map[matomo.Date]matomo.Date, k, d matomo.Date) {
		if old, ok := m[k]; !ok || d < old {
			m[k] = d
		}
	}
	for _, g := range gaps {
		if hazard[g.Date] && g.Kind != Stale {
			keep(week, weekStart(g.Date), g.Date)
			keep(month, g.Date.Month(), g.Date)
		}
	}
	for i := range gaps {
		g := &gaps[i]
		if !g.Repairable {
			continue
		}
		if h, ok := week[weekStart(g.Date)]; ok {
			g.Repairable, g.Reason = false, fmt.Sprintf("its week holds %s, which has no usable archive and whose raw data may be purged: Matomo would rebuild that day too when it rebuilds the week", h)
		} else if h, ok := month[g.Date.Month()]; ok {
			g.Repairable, g.Reason = false, fmt.Sprintf("its month holds %s, which has no usable archive and whose raw data may be purged: Matomo would rebuild that day too when it rebuilds the month", h)
		}
	}
}

// facts gathers what the scan knows of an open site-day.
func (sc *scanCtx) facts(ss *siteState, d matomo.Date, info *dayInfo) DayFacts {
	f := DayFacts{Date: d, Loc: ss.site.Loc, Now: sc.now, Grace: sc.d.opt.Grace}
	if info != nil {
		f.Newest, f.NewestOK, f.Raw, f.Stale = info.newest, info.newestOK, info.raw, info.stale
		if info.newest.IDArchive != 0 {
			f.Archived = info.archived
		}
	}
	if q, ok := sc.queued[matomo.SiteDate{IDSite: ss.site.ID, Date: d}]; ok {
		f.Queued, f.QueuedAt = true, q.TSInvalidated
	}
	return f
}

// safety gathers the site-wide facts the repair rules need.
func (sc *scanCtx) safety(id int) Safety {
	s := Safety{DeleteLogs: sc.deleteOn, DeleteLogsDays: sc.deleteDays, LastArchiveRun: sc.d.lastArchiveRun}
	if sc.opts.LastFullArchivingStart.After(s.LastArchiveRun) {
		s.LastArchiveRun = sc.opts.LastFullArchivingStart
	}
	if fv, ok := sc.firstVisit[id]; ok {
		s.FirstVisit = fv
	}
	return s
}

// readFirstVisits loads the earliest raw visit of every site with a gap,
// from the cache where it is known (see state.firstVisit).
func (sc *scanCtx) readFirstVisits(ctx context.Context) error {
	var ids []int
	for id, ss := range sc.st.sites {
		if sc.st.firstRead[id] {
			continue
		}
		for _, info := range ss.open {
			if info.raw > 0 {
				ids = append(ids, id)
				break
			}
		}
	}
	return sc.loadFirstVisits(ctx, ids)
}

// loadFirstVisits reads the earliest raw visit of the sites ids into the
// cache (see state.firstVisit), one query for all of them.
func (sc *scanCtx) loadFirstVisits(ctx context.Context, ids []int) error {
	if len(ids) > 0 {
		slices.Sort(ids)
		fv, err := sc.d.db.FirstVisits(ctx, ids)
		if err != nil {
			return err
		}
		for _, id := range ids {
			sc.st.firstRead[id] = true
			if t, ok := fv[id]; ok {
				sc.st.firstVisit[id] = t
			}
		}
	}
	sc.firstVisit = sc.st.firstVisit
	return nil
}

func (sc *scanCtx) result() *Result {
	r := &Result{ScannedAt: sc.now, Window: sc.window, SiteErrors: sc.siteErrors, Stats: sc.stats}
	r.SitesScanned = len(sc.st.sites)
	r.Gaps = []Gap{}
	r.CollectionGaps = []CollectionGap{}
	for _, ss := range sc.st.sites {
		var site []Gap
		var hazard map[matomo.Date]bool
		safety := sc.safety(ss.site.ID)
		for d, info := range ss.open {
			f := sc.facts(ss, d, info)
			kind, ok := Classify(f)
			if !ok {
				continue
			}
			g := Gap{IDSite: ss.site.ID, Period: PeriodDay, Date: d, Date2: d, Kind: kind, RawVisits: info.raw, ArchivedVisits: f.Archived}
			g.Repairable, g.Reason = Repairable(f, kind, safety)
			if !g.Repairable && purgeRisk(f, safety) {
				if hazard == nil {
					hazard = map[matomo.Date]bool{}
				}
				hazard[d] = true
			}
			site = append(site, g)
		}
		ProtectPeriods(site, hazard)
		r.Gaps = append(r.Gaps, site...)
		r.CollectionGaps = append(r.CollectionGaps, sc.collectionGaps(ss)...)
	}
	for _, g := range sc.periodGaps {
		if sc.st.sites[g.IDSite] != nil {
			r.Gaps = append(r.Gaps, g)
		}
	}
	SortGaps(r.Gaps)
	r.SegmentGaps = []Gap{}
	for _, g := range sc.segmentGaps {
		if sc.st.sites[g.IDSite] != nil {
			r.SegmentGaps = append(r.SegmentGaps, g)
		}
	}
	SortSegmentGaps(r.SegmentGaps)
	slices.SortFunc(r.CollectionGaps, func(a, b CollectionGap) int {
		if a.IDSite != b.IDSite {
			return a.IDSite - b.IDSite
		}
		return int(a.Date - b.Date)
	})
	return r
}

// collectionGaps: on a site with traffic on at least CollectionMinTraffic of
// the days between its first and last day with traffic in the window, each
// zero-visit day in between is a collection gap (tracking outage, or raw
// data lost in a restore). A heuristic: a seasonal site stays quiet.
func (sc *scanCtx) collectionGaps(ss *siteState) []CollectionGap {
	first, last := matomo.Date(-1), matomo.Date(-1)
	// One rule whatever the scan read before: a day has traffic when it
	// has raw visits or a day archive. (Counting only days marked empty
	// made queued zero-visit days, and days whose queue row went away
	// later, differ between incremental and full scans.)
	traffic := func(d matomo.Date) bool {
		switch ss.get(d) {
		case dsGood:
			return true
		case dsOpen:
			info := ss.open[d]
			return info != nil && (info.raw > 0 || info.newest.IDArchive != 0)
		}
		return false
	}
	n := 0
	for d := ss.since; d <= ss.until; d++ {
		if traffic(d) {
			if first < 0 {
				first = d
			}
			last = d
			n++
		}
	}
	if first < 0 || last-first < 2 {
		return nil
	}
	span := int(last-first) + 1
	if float64(n) < sc.d.opt.CollectionMinTraffic*float64(span) || n == span {
		return nil
	}
	var out []CollectionGap
	for d := first + 1; d < last; d++ {
		if !traffic(d) {
			out = append(out, CollectionGap{IDSite: ss.site.ID, Date: d})
		}
	}
	return out
}
