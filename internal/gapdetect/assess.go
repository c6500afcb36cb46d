package gapdetect

import (
	"context"
	"fmt"
	"time"

	"github.com/matomod/matomod/internal/matomo"
)

// Assess judges every day of an operator-named range of one site, gap or
// not, for `matomod repair --dates`: each day comes back with its raw visit
// count, its gap kind ("" when its archive is good) and whether the safety
// rules allow invalidating it. It reads the DB afresh and keeps no state.
func (d *Detector) Assess(ctx context.Context, idsite int, from, to matomo.Date) ([]Gap, error) {
	if from > to {
		return nil, fmt.Errorf("--dates %s,%s: the first date is after the second: swap them", from, to)
	}
	if n := int(to-from) + 1; n > 3660 {
		return nil, fmt.Errorf("--dates spans %d days: name at most 3660", n)
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	o := d.opt
	o.Since, o.Until, o.Include, o.Exclude, o.VerifyDays = from, to, []int{idsite}, nil, int(to-from)+1
	sub := &Detector{db: d.db, opt: o, lastArchiveRun: d.lastArchiveRun}
	sc := scanCtx{d: sub, st: newState(o.Now().UTC()), now: o.Now().UTC(), full: true, moved: map[string]bool{}}
	if err := sc.run(ctx); err != nil {
		return nil, err
	}
	ss := sc.st.sites[idsite]
	if ss == nil {
		for _, e := range sc.siteErrors {
			if e.IDSite == idsite {
				return nil, fmt.Errorf("%s", e.Error)
			}
		}
		return nil, fmt.Errorf("site %d does not exist in Matomo: check --sites", idsite)
	}
	res := sc.result()
	gaps := map[matomo.Date]Gap{}
	for _, g := range res.Gaps {
		if g.IsDay() { // weeks, months and years are not named by --dates
			gaps[g.Date] = g
		}
	}
	// Good days still need their raw count for the safety rules.
	var probes []matomo.Probe
	var days []matomo.Date
	for day := from; day <= to; day++ {
		if _, ok := gaps[day]; ok || day < ss.since {
			continue
		}
		s, e := matomo.DayBounds(ss.site.Loc, day)
		probes = append(probes, matomo.Probe{IDSite: idsite, From: s, To: e})
		days = append(days, day)
	}
	counts, err := d.db.CountVisits(ctx, probes)
	if err != nil {
		return nil, err
	}
	if !sc.st.firstRead[idsite] {
		if sc.firstVisit, err = d.db.FirstVisits(ctx, []int{idsite}); err != nil {
			return nil, err
		}
	}
	archived, err := d.archivedOf(ctx, idsite, days)
	if err != nil {
		return nil, err
	}
	for i, day := range days {
		g := Gap{IDSite: idsite, Period: PeriodDay, Date: day, Date2: day, RawVisits: counts[i]}
		if a, ok := archived[day]; ok {
			g.ArchivedVisits = &a
		}
		// A good archive rebuilt from fewer raw visits loses reports: the
		// same half-of-archived bound as for gaps applies.
		f := DayFacts{Date: day, Loc: ss.site.Loc, Now: sc.now, Raw: counts[i], Archived: g.ArchivedVisits}
		g.Repairable, g.Reason = Repairable(f, "", sc.safety(idsite))
		gaps[day] = g
	}
	var out []Gap
	for day := from; day <= to; day++ {
		if g, ok := gaps[day]; ok {
			out = append(out, g)
		} else {
			out = append(out, Gap{IDSite: idsite, Period: PeriodDay, Date: day, Date2: day, Reason: "before the site was created"})
		}
	}
	return out, nil
}

// LastArchiveRun is the newest core:archive start known (for logs).
func (d *Detector) LastArchiveRun() time.Time {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.lastArchiveRun
}

// archivedOf reads nb_visits of the newest plain day archive of each day.
func (d *Detector) archivedOf(ctx context.Context, idsite int, days []matomo.Date) (map[matomo.Date]int64, error) {
	byTable := map[string][]matomo.SiteDate{}
	for _, day := range days {
		t := matomo.TableFor(day)
		byTable[t] = append(byTable[t], matomo.SiteDate{IDSite: idsite, Date: day})
	}
	out := map[matomo.Date]int64{}
	for t, keys := range byTable {
		m := map[matomo.SiteDate]*newestPair{}
		if err := d.db.DoneFlagsFor(ctx, t, keys, func(f matomo.DoneFlag) { merge(m, f) }); err != nil {
			return nil, err
		}
		var ids []int64
		for _, p := range m {
			ids = append(ids, p.newest.IDArchive)
		}
		nb, err := d.db.NbVisits(ctx, t, ids)
		if err != nil {
			return nil, err
		}
		for k, p := range m {
			out[k.Date] = nb[p.newest.IDArchive]
		}
	}
	return out, nil
}
