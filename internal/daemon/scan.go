package daemon

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/metrics"
	"github.com/matomod/matomod/internal/repair"
)

// attempt is what became of a day matomod could not repair, and the facts
// it had then: the day is retried only when they change or after
// RepairBackoff, and counted in matomod_repairs_total once.
type attempt struct {
	result string
	facts  string
	at     time.Time
}

// gapKey names one site-day or one site-period, plain or of one stored
// segment: a week's key never collides with the gap of its Monday, nor a
// segment's day with the plain day.
type gapKey struct {
	IDSite int
	Period string
	Date   matomo.Date
	// Segment is the stored segment's definition; "" for a plain gap.
	Segment string
}

func keyOf(idsite int, period string, date matomo.Date, segment string) gapKey {
	if period == "" {
		period = gapdetect.PeriodDay
	}
	return gapKey{IDSite: idsite, Period: period, Date: date, Segment: segment}
}

func gapKeyOf(g gapdetect.Gap) gapKey { return keyOf(g.IDSite, g.Period, g.Date, g.Segment) }

func (k gapKey) String() string {
	if k.Segment != "" {
		return fmt.Sprintf("site %d segment %q %s %s", k.IDSite, k.Segment, k.Period, k.Date)
	}
	return fmt.Sprintf("site %d %s %s", k.IDSite, k.Period, k.Date)
}

func facts(g gapdetect.Gap) string {
	av := "none"
	if g.ArchivedVisits != nil {
		av = fmt.Sprint(*g.ArchivedVisits)
	}
	return fmt.Sprintf("%s/%d/%s/%t/%s", g.Kind, g.RawVisits, av, g.Repairable, g.Reason)
}

// scanLoop scans every gaps.scan_interval and after each archive run, and
// repairs between runs when auto_repair is on.
func (d *Daemon) scanLoop(t *term) {
	for {
		d.scanAndRepair(t)
		timer := time.NewTimer(d.env.Load().Settings.ScanInterval)
		select {
		case <-t.stop.Done():
			timer.Stop()
			return
		case <-timer.C:
		case <-t.scanReq:
			timer.Stop()
		}
	}
}

func (d *Daemon) scanAndRepair(t *term) {
	env := d.env.Load()
	ctx := t.kill // a scan in progress is cheap to finish; a repair gets stop_timeout
	if t.stop.Err() != nil {
		return
	}
	d.refreshMatomo(ctx, env)
	res, err := env.Detector.Scan(ctx)
	if err != nil {
		if ctx.Err() == nil {
			d.Metrics.GapScanFailed(time.Now())
			d.Log.Error("gap scan failed", "event", "gap_scan_failed", "err", err)
		}
		return
	}
	d.lastScan.Store(res)
	d.Metrics.GapScanFinished(time.Now(), res.Stats.Duration, res.SitesScanned)
	d.Metrics.SetGaps(metrics.GapSnapshotOf(res))
	d.logNewGaps(res)
	d.logSkippedSites(res)
	d.Log.Info("gap scan finished", "event", "gap_scan_finished", "gaps", len(res.Gaps), "repairable", len(res.Repairable()),
		"collection_gaps", len(res.CollectionGaps), "segment_gaps", len(res.SegmentGaps), "sites", res.SitesScanned, "full", res.Stats.Full,
		"duration", res.Stats.Duration.Round(time.Millisecond), "round_trips", res.Stats.RoundTrips)
	s := env.Settings
	if !s.AutoRepair || s.MaxRepairDays == 0 || *d.paused.Load() != "" || t.stop.Err() != nil {
		return
	}
	// Plain and segment gaps share the tried bookkeeping (their keys never
	// collide), so one pass holds back both and forgets the closed ones.
	all := append(slices.Clone(res.Gaps), res.SegmentGaps...)
	plain, segs := splitSegments(d.repairable(all))
	if !hasRepairable(plain) && !hasRepairable(segs) {
		d.countUnrepaired(all)
		return
	}
	select {
	case d.busy <- struct{}{}:
		defer func() { <-d.busy }()
	default: // an archive run is going on: repair after it
		return
	}
	lctx, cancel := context.WithTimeout(ctx, d.PingTimeout)
	lock, err := env.Locks.Archive(lctx)
	cancel()
	if err != nil {
		if !errors.Is(err, matomo.ErrLockBusy) {
			d.Log.Warn("repair postponed: cannot take the archive lock", "event", "repair_postponed", "err", err)
		} else {
			d.Log.Debug("repair postponed: a core:archive is running", "event", "repair_postponed", "err", err)
		}
		return
	}
	defer lock.Release()
	left := s.MaxRepairDays
	if hasRepairable(plain) {
		rep, err := env.Repairer.Repair(ctx, plain)
		if err != nil {
			// The segments wait too: what stopped this repair (the console,
			// the database, a stop) would stop theirs.
			d.Log.Error("repair failed", "event", "repair_failed", "err", err)
			return
		}
		d.Metrics.Invalidations(rep.Invalidations)
		d.count(all, plainOutcomes(append(slices.Clone(rep.Days), rep.Periods...)))
		if rep.Deferred > 0 {
			d.Log.Warn("more repairable gap days than gaps.max_repair_days: the oldest wait for the next cycle", "event", "repair_deferred", "deferred", rep.Deferred)
		}
		d.storeAfter(rep.After)
		left = max(0, left-planned(rep))
	} else {
		d.countUnrepaired(plain)
	}
	if !hasRepairable(segs) {
		d.countUnrepaired(segs)
		return
	}
	// The plain repair may have lasted long: pause and stop are checked
	// again before the segments start.
	if *d.paused.Load() != "" || t.stop.Err() != nil {
		return
	}
	d.repairSegments(ctx, env, all, segs, left)
}

// repairSegments repairs the stored segments' gaps with what is left of
// gaps.max_repair_days after the plain gaps. Plain gaps go first: their
// reports are what most readers see, and a segment is rebuilt from the
// same raw visits, so it gains nothing from going first; with the budget
// shared, one cycle never invalidates more than max_repair_days in all.
func (d *Daemon) repairSegments(ctx context.Context, env *Env, all, segs []gapdetect.Gap, left int) {
	segs, deferred := budgetSegments(segs, left)
	if !hasRepairable(segs) {
		d.countUnrepaired(segs)
	} else {
		rep, err := env.Repairer.RepairSegments(ctx, segs)
		if err != nil {
			d.Log.Error("segment repair failed", "event", "repair_failed", "err", err)
			return
		}
		d.Metrics.Invalidations(rep.Invalidations)
		d.count(all, rep.Segments)
		deferred += rep.Deferred
		after := rep.After
		if after == nil && (rep.Invalidations > 0 || rep.Archive != nil) {
			// RepairSegments does not rescan: without this, the gap metrics
			// would show the repaired days until the next scan.
			if after, err = env.Detector.Scan(ctx); err != nil {
				d.Log.Warn("rescan after the segment repair failed: the gap metrics wait for the next scan", "event", "gap_scan_failed", "err", err)
			}
		}
		d.storeAfter(after)
	}
	if deferred > 0 {
		d.Log.Warn("more repairable segment gap days than gaps.max_repair_days leaves after the plain gaps: the oldest wait for the next cycle",
			"event", "repair_deferred", "deferred", deferred)
	}
}

// budgetSegments keeps at most left repairable segment gaps, the most
// recent first as RepairSegments picks them, and every unrepairable one
// (reported as skipped_unsafe); it returns how many it left out.
func budgetSegments(segs []gapdetect.Gap, left int) ([]gapdetect.Gap, int) {
	var ok, out []gapdetect.Gap
	for _, g := range segs {
		if g.Repairable {
			ok = append(ok, g)
		} else {
			out = append(out, g)
		}
	}
	if len(ok) <= left {
		return segs, 0
	}
	end := func(g gapdetect.Gap) matomo.Date { return max(g.Date, g.Date2) }
	slices.SortStableFunc(ok, func(a, b gapdetect.Gap) int {
		if end(a) != end(b) {
			return int(end(b) - end(a))
		}
		return a.IDSite - b.IDSite
	})
	return append(out, ok[:left]...), len(ok) - left
}

// planned is how much of max_repair_days a repair used: its days, and one
// for each week, month or year.
func planned(rep *repair.Report) int {
	n := len(rep.PeriodPlan)
	for _, rg := range rep.Ranges {
		n += rg.Days()
	}
	return n
}

func (d *Daemon) storeAfter(after *gapdetect.Result) {
	if after != nil {
		d.lastScan.Store(after)
		d.Metrics.SetGaps(metrics.GapSnapshotOf(after))
	}
}

func splitSegments(gaps []gapdetect.Gap) (plain, segs []gapdetect.Gap) {
	for _, g := range gaps {
		if g.IsSegment() {
			segs = append(segs, g)
		} else {
			plain = append(plain, g)
		}
	}
	return plain, segs
}

func hasRepairable(gaps []gapdetect.Gap) bool {
	for _, g := range gaps {
		if g.Repairable {
			return true
		}
	}
	return false
}

// repairable drops the gaps whose repair failed recently with the same
// facts, and forgets the gaps that are no longer open.
func (d *Daemon) repairable(gaps []gapdetect.Gap) []gapdetect.Gap {
	now := d.now()
	seen := map[gapKey]bool{}
	var out []gapdetect.Gap
	for _, g := range gaps {
		k := gapKeyOf(g)
		seen[k] = true
		a, ok := d.tried[k]
		if g.Repairable && ok && a.result == repair.FailedResult && a.facts == facts(g) && now.Sub(a.at) < d.RepairBackoff {
			continue
		}
		out = append(out, g)
	}
	for k := range d.tried {
		if !seen[k] {
			delete(d.tried, k)
		}
	}
	return out
}

// plainOutcomes are day and period outcomes, without a segment.
func plainOutcomes(days []repair.DayOutcome) []repair.SegmentOutcome {
	out := make([]repair.SegmentOutcome, len(days))
	for i, o := range days {
		out[i] = repair.SegmentOutcome{DayOutcome: o}
	}
	return out
}

// countUnrepaired counts the gaps no repair was tried for (unsafe ones)
// once, as a repair would have.
func (d *Daemon) countUnrepaired(gaps []gapdetect.Gap) {
	var outs []repair.SegmentOutcome
	for _, g := range gaps {
		if !g.Repairable {
			outs = append(outs, repair.SegmentOutcome{Segment: g.Segment, DayOutcome: repair.DayOutcome{IDSite: g.IDSite, Period: g.Period,
				Date: g.Date, Date2: g.Date2, Kind: string(g.Kind), Result: repair.SkippedUnsafe, Reason: g.Reason}})
		}
	}
	d.count(gaps, outs)
}

// count adds each gap's result to matomod_repairs_total, but a failed or
// unsafe gap only when its result or facts changed since it was counted.
// A plain outcome has Segment "".
func (d *Daemon) count(gaps []gapdetect.Gap, outs []repair.SegmentOutcome) {
	byKey := map[gapKey]string{}
	for _, g := range gaps {
		byKey[gapKeyOf(g)] = facts(g)
	}
	n := map[string]int{}
	now := d.now()
	for _, o := range outs {
		k := keyOf(o.IDSite, o.Period, o.Date, o.Segment)
		if o.Result == repair.Repaired {
			delete(d.tried, k)
			n[o.Result]++
			continue
		}
		a, ok := d.tried[k]
		f := byKey[k]
		if ok && a.result == o.Result && a.facts == f {
			if o.Result == repair.FailedResult {
				// Retried after the backoff and failed the same way: not
				// counted again, but held back for another backoff (or it
				// would be retried every scan from now on).
				d.tried[k] = attempt{result: o.Result, facts: f, at: now}
			}
			continue
		}
		d.tried[k] = attempt{result: o.Result, facts: f, at: now}
		n[o.Result]++
		if o.Result == repair.FailedResult {
			args := []any{"event", "repair_held_back", "idsite", o.IDSite, "period", k.Period, "date", o.Date.String()}
			if o.Segment != "" {
				args = append(args, "segment", o.Segment)
			}
			d.Log.Warn("repair of this day failed: retried when its facts change or after the backoff",
				append(args, "reason", o.Reason, "retry_after", d.RepairBackoff)...)
		}
	}
	for _, r := range []string{metrics.RepairRepaired, metrics.RepairFailed, metrics.RepairSkippedUnsafe} {
		d.Metrics.Repairs(r, n[r])
	}
}

// logNewGaps logs each gap, plain or of a stored segment, once, when
// first seen.
func (d *Daemon) logNewGaps(res *gapdetect.Result) {
	seen := make(map[gapKey]gapdetect.Kind, len(res.Gaps)+len(res.SegmentGaps))
	for _, g := range append(slices.Clone(res.Gaps), res.SegmentGaps...) {
		k := gapKeyOf(g)
		seen[k] = g.Kind
		if d.reported[k] == g.Kind {
			continue
		}
		args := []any{"event", "gap_found", "idsite", g.IDSite, "period", k.Period, "date", g.Date.String()}
		if g.Segment != "" {
			args = append(args, "segment", g.Segment)
		}
		d.Log.Warn("gap found", append(args, "kind", string(g.Kind), "raw_visits", g.RawVisits, "repairable", g.Repairable, "reason", g.Reason)...)
	}
	d.reported = seen
}

// logSkippedSites warns once about each site a scan could not read (an
// unknown time zone, say), and again when its reason changes.
func (d *Daemon) logSkippedSites(res *gapdetect.Result) {
	seen := make(map[int]string, len(res.SiteErrors))
	for _, e := range res.SiteErrors {
		seen[e.IDSite] = e.Error
		if d.skipped[e.IDSite] != e.Error {
			d.Log.Warn("site not scanned for gaps", "event", "site_skipped", "idsite", e.IDSite, "reason", e.Error)
		}
	}
	d.skipped = seen
}

// refreshMatomo caches Matomo's own state for /metrics.
func (d *Daemon) refreshMatomo(ctx context.Context, env *Env) {
	snap, err := env.Matomo.Snapshot(ctx)
	if err != nil {
		return
	}
	// The control loop reads the pause state every tick.
	reason := *d.paused.Load()
	snap.MaintenanceMode = reason == metrics.PausedMaintenanceMode
	snap.UpdatePending = reason == metrics.PausedUpdatePending
	d.Metrics.SetMatomo(snap)
}
