package gapdetect

import (
	"context"
	"fmt"
	"slices"

	"github.com/matomod/matomod/internal/matomo"
)

// classify decides whether an open site-day is a gap now, and of which
// kind; ok is false for days that are fine or not due yet.
func (sc *scanCtx) classify(ss *siteState, d matomo.Date, info *dayInfo) (Kind, bool) {
	grace := sc.d.opt.Grace
	q, queued := sc.queued[matomo.SiteDate{IDSite: ss.site.ID, Date: d}]
	// A day Matomo queued recently is being rebuilt: not a gap yet.
	if queued && sc.now.Sub(q.TSInvalidated) < grace {
		return "", false
	}
	if info.stale {
		return Stale, true
	}
	n := info.newest
	if n.IDArchive == 0 {
		return Missing, info.raw > 0
	}
	_, end := matomo.DayBounds(ss.site.Loc, d)
	okKind := func(f matomo.DoneFlag) (Kind, bool) {
		if f.TSArchived.Before(end) {
			return Incomplete, true
		}
		return "", false
	}
	switch n.Value {
	case matomo.DoneOK, matomo.DoneOKTemporary:
		if queued && n.TSArchived.Before(q.TSInvalidated) { // queued long ago, never rebuilt
			return Invalidated, true
		}
		return okKind(n)
	case matomo.DoneInvalidated, matomo.DoneErrorInvalidated:
		ref := n.TSArchived
		if queued {
			ref = q.TSInvalidated
		}
		if sc.now.Sub(ref) < grace {
			return "", false
		}
		return Invalidated, true
	default: // 2 error / in progress, 5 partial, or a value we do not know
		if sc.now.Sub(n.TSArchived) < grace {
			return "", false // a run is probably writing it right now
		}
		if info.newestOK.IDArchive != 0 {
			return okKind(info.newestOK)
		}
		return Failed, true
	}
}

// repairable applies the never-destroy-data rules (README "Safety").
func (sc *scanCtx) repairable(ss *siteState, d matomo.Date, kind Kind, raw int64, archived *int64) (bool, string) {
	today := matomo.Today(ss.site.Loc, sc.now)
	switch {
	case raw == 0:
		return false, "no raw visits in log_visit for this day: nothing to rebuild from"
	case sc.deleteOn && d < today.AddDays(-sc.deleteDays-2):
		return false, fmt.Sprintf("older than the log-deletion limit (delete_logs_older_than = %d days): raw data may be purged", sc.deleteDays)
	case d >= today:
		return false, "today: the scheduled core:archive run archives it"
	}
	if fv, ok := sc.firstVisit[ss.site.ID]; ok && d <= matomo.DateOf(fv.In(ss.site.Loc)) {
		return false, "first day of the site's raw data: it may be partly purged"
	}
	if d == today.AddDays(-1) {
		_, end := matomo.DayBounds(ss.site.Loc, d)
		last := sc.d.lastArchiveRun
		if sc.opts.LastFullArchivingStart.After(last) {
			last = sc.opts.LastFullArchivingStart
		}
		if last.Before(end) {
			return false, "yesterday: waiting for the scheduled core:archive run"
		}
	}
	if archived != nil && kind != Stale && raw*2 < *archived {
		return false, fmt.Sprintf("raw visits (%d) are less than half of the archived %d: raw data may be partly purged, rebuilding would lose reports", raw, *archived)
	}
	return true, ""
}

// readFirstVisits loads the earliest raw visit of every site with a gap.
func (sc *scanCtx) readFirstVisits(ctx context.Context) error {
	var ids []int
	for id, ss := range sc.st.sites {
		for _, info := range ss.open {
			if info.raw > 0 {
				ids = append(ids, id)
				break
			}
		}
	}
	slices.Sort(ids)
	fv, err := sc.d.db.FirstVisits(ctx, ids)
	sc.firstVisit = fv
	return err
}

func (sc *scanCtx) result() *Result {
	r := &Result{ScannedAt: sc.now, Window: sc.window, SiteErrors: sc.siteErrors, Stats: sc.stats}
	r.SitesScanned = len(sc.st.sites)
	r.Gaps = []Gap{}
	r.CollectionGaps = []CollectionGap{}
	for _, ss := range sc.st.sites {
		for d, info := range ss.open {
			kind, ok := sc.classify(ss, d, info)
			if !ok {
				continue
			}
			g := Gap{IDSite: ss.site.ID, Date: d, Kind: kind, RawVisits: info.raw}
			if info.newest.IDArchive != 0 {
				g.ArchivedVisits = info.archived
			}
			g.Repairable, g.Reason = sc.repairable(ss, d, kind, info.raw, g.ArchivedVisits)
			r.Gaps = append(r.Gaps, g)
		}
		r.CollectionGaps = append(r.CollectionGaps, sc.collectionGaps(ss)...)
	}
	SortGaps(r.Gaps)
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
		if ss.get(d) == dsEmpty {
			out = append(out, CollectionGap{IDSite: ss.site.ID, Date: d})
		}
	}
	return out
}
