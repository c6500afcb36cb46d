package daemon

import (
	"context"
	"errors"
	"fmt"
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

// gapKey names one site-day or one site-period: a week's key never
// collides with the gap of its Monday.
type gapKey struct {
	IDSite int
	Period string
	Date   matomo.Date
}

func keyOf(idsite int, period string, date matomo.Date) gapKey {
	if period == "" {
		period = gapdetect.PeriodDay
	}
	return gapKey{IDSite: idsite, Period: period, Date: date}
}

func (k gapKey) String() string { return fmt.Sprintf("site %d %s %s", k.IDSite, k.Period, k.Date) }

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
		"collection_gaps", len(res.CollectionGaps), "sites", res.SitesScanned, "full", res.Stats.Full,
		"duration", res.Stats.Duration.Round(time.Millisecond), "round_trips", res.Stats.RoundTrips)
	s := env.Settings
	if !s.AutoRepair || s.MaxRepairDays == 0 || *d.paused.Load() != "" || t.stop.Err() != nil {
		return
	}
	gaps := d.repairable(res.Gaps)
	if !hasRepairable(gaps) {
		d.countUnrepaired(res.Gaps)
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
	rep, err := env.Repairer.Repair(ctx, gaps)
	if err != nil {
		d.Log.Error("repair failed", "event", "repair_failed", "err", err)
		return
	}
	d.Metrics.Invalidations(rep.Invalidations)
	d.count(res.Gaps, append(append([]repair.DayOutcome(nil), rep.Days...), rep.Periods...))
	if rep.Deferred > 0 {
		d.Log.Warn("more repairable gap days than gaps.max_repair_days: the oldest wait for the next cycle", "event", "repair_deferred", "deferred", rep.Deferred)
	}
	if rep.After != nil {
		d.lastScan.Store(rep.After)
		d.Metrics.SetGaps(metrics.GapSnapshotOf(rep.After))
	}
}

func hasRepairable(gaps []gapdetect.Gap) bool {
	for _, g := range gaps {
		if g.Repairable {
			return true
		}
	}
	return false
}

// repairable drops the days whose repair failed recently with the same
// facts, and forgets the days that are no longer gaps.
func (d *Daemon) repairable(gaps []gapdetect.Gap) []gapdetect.Gap {
	now := d.now()
	seen := map[gapKey]bool{}
	var out []gapdetect.Gap
	for _, g := range gaps {
		k := keyOf(g.IDSite, g.Period, g.Date)
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

// countUnrepaired counts the days no repair was tried for (unsafe ones)
// once, as a repair would have.
func (d *Daemon) countUnrepaired(gaps []gapdetect.Gap) {
	var days []repair.DayOutcome
	for _, g := range gaps {
		if !g.Repairable {
			days = append(days, repair.DayOutcome{IDSite: g.IDSite, Period: g.Period, Date: g.Date, Date2: g.Date2, Kind: string(g.Kind), Result: repair.SkippedUnsafe, Reason: g.Reason})
		}
	}
	d.count(gaps, days)
}

// count adds each day's result to matomod_repairs_total, but a failed or
// unsafe day only when its result or facts changed since it was counted.
func (d *Daemon) count(gaps []gapdetect.Gap, days []repair.DayOutcome) {
	byDay := map[gapKey]string{}
	for _, g := range gaps {
		byDay[keyOf(g.IDSite, g.Period, g.Date)] = facts(g)
	}
	n := map[string]int{}
	now := d.now()
	for _, o := range days {
		k := keyOf(o.IDSite, o.Period, o.Date)
		if o.Result == repair.Repaired {
			delete(d.tried, k)
			n[o.Result]++
			continue
		}
		a, ok := d.tried[k]
		f := byDay[k]
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
			d.Log.Warn("repair of this day failed: retried when its facts change or after the backoff", "event", "repair_held_back",
				"idsite", o.IDSite, "period", k.Period, "date", o.Date.String(), "reason", o.Reason, "retry_after", d.RepairBackoff)
		}
	}
	for _, r := range []string{metrics.RepairRepaired, metrics.RepairFailed, metrics.RepairSkippedUnsafe} {
		d.Metrics.Repairs(r, n[r])
	}
}

// logNewGaps logs each gap once, when first seen.
func (d *Daemon) logNewGaps(res *gapdetect.Result) {
	seen := make(map[gapKey]gapdetect.Kind, len(res.Gaps))
	for _, g := range res.Gaps {
		k := keyOf(g.IDSite, g.Period, g.Date)
		seen[k] = g.Kind
		if d.reported[k] == g.Kind {
			continue
		}
		d.Log.Warn("gap found", "event", "gap_found", "idsite", g.IDSite, "period", k.Period, "date", g.Date.String(), "kind", string(g.Kind),
			"raw_visits", g.RawVisits, "repairable", g.Repairable, "reason", g.Reason)
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
