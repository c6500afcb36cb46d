package gapdetect

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/matomod/matomod/internal/matomo"
)

// Period names, as in Gap.Period and the CLI's --periods of Matomo.
const (
	PeriodDay   = "day"
	PeriodWeek  = "week"
	PeriodMonth = "month"
	PeriodYear  = "year"
)

// Periods lists the period names checked, for metrics that must show each.
var Periods = []string{PeriodDay, PeriodWeek, PeriodMonth, PeriodYear}

// PeriodName is the name of Matomo's period number (1 day … 4 year).
func PeriodName(p int) string {
	switch p {
	case matomo.PeriodWeek:
		return PeriodWeek
	case matomo.PeriodMonth:
		return PeriodMonth
	case matomo.PeriodYear:
		return PeriodYear
	}
	return PeriodDay
}

// PeriodNumber is the inverse of PeriodName ("" is a day).
func PeriodNumber(name string) int {
	switch name {
	case PeriodWeek:
		return matomo.PeriodWeek
	case PeriodMonth:
		return matomo.PeriodMonth
	case PeriodYear:
		return matomo.PeriodYear
	}
	return matomo.PeriodDay
}

// PeriodOf is the first and last day of the week (Monday to Sunday, as
// Matomo's weeks), month or year p that holds d; a day for PeriodDay.
func PeriodOf(p int, d matomo.Date) (first, last matomo.Date) {
	switch p {
	case matomo.PeriodWeek:
		first = weekStart(d)
		return first, first.AddDays(6)
	case matomo.PeriodMonth:
		first = d.Month()
		return first, first.AddDays(31).Month().AddDays(-1)
	case matomo.PeriodYear:
		y := d.Time().Year()
		return matomo.NewDate(y, 1, 1), matomo.NewDate(y, 12, 31)
	}
	return d, d
}

// periodsFrom is the earliest date1 of a week, month or year that overlaps
// a window starting at since: the year's January 1st, or the Monday of
// since's week when that lies in the previous year.
func periodsFrom(since matomo.Date) matomo.Date {
	y, _ := PeriodOf(matomo.PeriodYear, since)
	return min(y, weekStart(since))
}

// setPeriodFlags replaces the period flags of one table with what a read
// of it found (nil: the table is gone).
func (sc *scanCtx) setPeriodFlags(table string, flags []matomo.DoneFlag) {
	month, ok := tableMonth(table)
	for _, ss := range sc.st.sites {
		if ok && len(ss.periods) > 0 {
			ss.periods = slices.DeleteFunc(ss.periods, func(e periodEntry) bool { return e.date.Month() == month })
		}
	}
	for _, f := range flags {
		ss := sc.st.sites[f.IDSite]
		if ss == nil || f.Period < matomo.PeriodWeek || f.Period > matomo.PeriodYear {
			continue
		}
		ss.mergePeriod(f)
	}
}

// PeriodFacts is what the rules know of one week, month or year: DayFacts
// of its own archive (Date is its first day, Raw the raw visits of all its
// days, Archived its nb_visits, Stale below the sum of its good days).
type PeriodFacts struct {
	DayFacts
	Period int
	Last   matomo.Date
	// AtRisk is the earliest day Matomo would rebuild from raw data with
	// this period (its own days and its months' days that lack a usable
	// archive, and those of the months of its year that have none) whose
	// raw data may be purged; 0: none.
	AtRisk matomo.Date
}

// PeriodRepairable applies the never-destroy-data rules to a period gap.
// Invalidating a week also invalidates its months and year, and Matomo
// rebuilds every day of a rebuilt week or month that lacks a usable
// archive, and every month of a rebuilt year that lacks one, from raw
// data: a day whose raw data may be purged among them would come back
// partial, and the month and year with it.
func PeriodRepairable(f PeriodFacts, kind Kind, s Safety) (bool, string) {
	name := PeriodName(f.Period)
	today := matomo.Today(f.Loc, f.Now)
	switch {
	case f.Raw == 0:
		return false, "no raw visits in log_visit for this " + name + ": nothing to rebuild from"
	case f.Last >= today:
		return false, "the current " + name + ": the scheduled core:archive run archives it"
	case f.AtRisk != 0:
		return false, fmt.Sprintf("Matomo would rebuild %s with this %s (it has no usable archive) and its raw data may be purged: rebuilding would lose reports", f.AtRisk, name)
	}
	if f.Last == today.AddDays(-1) {
		_, end := matomo.DayBounds(f.Loc, f.Last)
		if s.LastArchiveRun.Before(end) {
			return false, "ended yesterday: waiting for the scheduled core:archive run"
		}
	}
	if f.Archived != nil && kind != Stale && f.Raw*2 < *f.Archived {
		return false, fmt.Sprintf("raw visits (%d) are less than half of the archived %d: raw data may be partly purged, rebuilding would lose reports", f.Raw, *f.Archived)
	}
	return true, ""
}

// periodCand is a week, month or year being judged in one scan.
type periodCand struct {
	ss      *siteState
	key     matomo.PeriodKey // IDSite set
	last    matomo.Date
	f       DayFacts
	kind    Kind
	gap     bool
	suspect bool   // good, but a day was archived after it: sum check
	fp      uint64 // the facts its sum check depends on
	memo    *periodMemo
}

// periodMemo is what a scan read for one period, kept for the next.
type periodMemo struct {
	raw      int64 // raw visits of the whole period
	rawKnown bool  // cleared by new visits in it, and by purges
	// nb_visits of the archive archID (archKnown: read; none is nil).
	archID    int64
	archKnown bool
	archived  *int64
	// The sum check's verdict under the fingerprint sumFP (0: none).
	sumFP    uint64
	sumStale bool
}

// fingerprint hashes what a period's sum check depends on: its archive
// and each day's newest archive time and state. A day re-archived, deleted
// or invalidated in place changes it.
func (ss *siteState) fingerprint(first, last matomo.Date, f matomo.DoneFlag) uint64 {
	h := uint64(14695981039346656037)
	mix := func(v uint64) {
		h ^= v
		h *= 1099511628211
	}
	mix(uint64(f.IDArchive))
	mix(uint64(f.Value))
	mix(uint64(f.TSArchived.Unix()))
	for d := first; d <= last; d++ {
		ts := uint32(0)
		if i := int(d - ss.since); i >= 0 && i < len(ss.dayTS) {
			ts = ss.dayTS[i]
		}
		mix(uint64(ts)<<8 | uint64(ss.get(d)))
	}
	return h | 1 // never 0, which means "not checked"
}

// checkPeriods judges every week, month and year that overlaps a site's
// window, has ended in the site's time zone, and has a day with traffic
// (raw visits or a day archive, the rule of collectionGaps): its newest
// plain archive must exist, be OK, be written after its last local day
// ended (Classify, as for days) and not be stale against its days.
//
// Stale: in Matomo 5 a period's nb_visits is the sum of its days'
// nb_visits. Observed on the real 5.0.2 install (realmatomo, 5 sites in
// UTC, New York, Kolkata, UTC+5.5 and Berlin, DST weeks included): all 50
// week, month and year archives had nb_visits equal to the sum of their
// day archives; and a month rebuilt after 2 visits were added to a day
// went from 99 to 101 (MATOMO.md, "Second look"). A period below the sum
// of its good days' nb_visits was built before a day was re-archived with
// more visits. Only a period archived before one of its days can be, so
// only those periods (fully inside the window, where each day's newest
// ts_archived is known) have their sums read: the check costs nothing
// when no day was re-archived after its periods.
func (sc *scanCtx) checkPeriods(ctx context.Context) error {
	sc.periodGaps = nil
	memos := sc.st.periodMemo
	sc.st.periodMemo = map[matomo.PeriodKey]*periodMemo{}
	// New visits in a period make its raw count stale.
	touched := map[int][]matomo.Date{}
	for k := range sc.touched {
		touched[k.IDSite] = append(touched[k.IDSite], k.Date)
	}
	queuedSites := map[int]bool{}
	for k := range sc.pqueued {
		queuedSites[k.IDSite] = true
	}
	// judge classifies one period: nil, or a gap or a sum-check suspect.
	judge := func(ss *siteState, p int, first, last matomo.Date) *periodCand {
		k := matomo.PeriodKey{IDSite: ss.site.ID, Period: p, Date: first}
		pv, has := ss.periodPair(p, first)
		pr := &pv
		if !has {
			pr = nil
		}
		var q matomo.PeriodInvalidation
		queued := false
		if queuedSites[k.IDSite] {
			q, queued = sc.pqueued[k]
		}
		// Most periods are settled: the newest archive is complete and
		// OK, nothing queued it, no day in it was archived after it. That
		// is what Classify and the suspect rule below conclude, found
		// without building the facts (a steady rescan judges every
		// period of every site: 66,000 at 1,000 sites).
		within := first >= ss.since && last <= ss.until
		if pr != nil && !queued && pr.newest.Good(ss.site.Loc) {
			if !within || !ss.dayArchivedAfter(first, last, pr.newest.TSArchived) {
				return nil
			}
		}
		c := &periodCand{ss: ss, key: k, last: last}
		c.f = DayFacts{Date: first, Loc: ss.site.Loc, Now: sc.now, Grace: sc.d.opt.Grace, Raw: 1}
		if pr != nil {
			c.f.Newest, c.f.NewestOK = pr.newest, pr.ok
		}
		if queued {
			c.f.Queued, c.f.QueuedAt = true, q.TSInvalidated
		}
		c.kind, c.gap = Classify(c.f)
		if !c.gap && !c.f.Queued && c.f.Newest.Good(ss.site.Loc) && within &&
			ss.dayArchivedAfter(first, last, c.f.Newest.TSArchived) {
			c.suspect = true
		}
		if !c.gap && !c.suspect {
			return nil
		}
		return c
	}
	// each calls fn for every period of ss that ended and has traffic.
	each := func(ss *siteState, fn func(p int, first, last matomo.Date) bool) {
		if ss.site.Loc == nil || ss.until < ss.since {
			return
		}
		today := matomo.Today(ss.site.Loc, sc.now)
		for _, p := range []int{matomo.PeriodWeek, matomo.PeriodMonth, matomo.PeriodYear} {
			for first, last := PeriodOf(p, ss.since); first <= ss.until; first, last = PeriodOf(p, last.AddDays(1)) {
				if last < today && sc.periodTraffic(ss, max(first, ss.since), min(last, ss.until)) && !fn(p, first, last) {
					return
				}
			}
		}
	}
	// A period that ended before the site's first raw visit has none: no
	// count needed, and a missing one is no gap. The first visits of the
	// sites with candidates are read first (an install whose raw data is
	// purged, or that never had periods archived, would otherwise count
	// every period).
	var need []int
	for id, ss := range sc.st.sites {
		if sc.st.firstRead[id] {
			continue
		}
		each(ss, func(p int, first, last matomo.Date) bool {
			if judge(ss, p, first, last) != nil {
				need = append(need, id)
				return false
			}
			return true
		})
	}
	if len(need) > 0 {
		if err := sc.loadFirstVisits(ctx, need); err != nil {
			return err
		}
	}
	var cands []*periodCand
	for id, ss := range sc.st.sites {
		fv, hasFV := sc.st.firstVisit[id]
		if !hasFV && sc.st.firstRead[id] {
			fv = time.Date(9999, 1, 1, 0, 0, 0, 0, time.UTC) // no raw visit at all
		}
		each(ss, func(p int, first, last matomo.Date) bool {
			c := judge(ss, p, first, last)
			if c == nil {
				return true
			}
			_, end := matomo.DayBounds(ss.site.Loc, last)
			noRaw := !fv.IsZero() && !end.After(fv)
			if noRaw && c.kind == Missing && !c.suspect {
				return true // nothing to build from, and nothing built: not a gap
			}
			c.memo = memos[c.key]
			if c.memo == nil {
				c.memo = &periodMemo{}
			}
			sc.st.periodMemo[c.key] = c.memo
			// A visit that goes on past midnight moves to the next day
			// without a new idvisit: recent periods are always counted
			// again (as probe does for days).
			if last >= matomo.Today(ss.site.Loc, sc.now).AddDays(-2) {
				c.memo.rawKnown = false
			}
			for _, d := range touched[ss.site.ID] {
				if d >= first && d <= last {
					c.memo.rawKnown = false
					break
				}
			}
			if noRaw {
				c.memo.raw, c.memo.rawKnown = 0, true
			}
			if c.suspect {
				c.fp = ss.fingerprint(first, last, c.f.Newest)
			}
			cands = append(cands, c)
			return true
		})
	}
	if len(cands) == 0 {
		return nil
	}
	if err := sc.periodSums(ctx, cands); err != nil {
		return err
	}
	var judged []*periodCand
	for _, c := range cands {
		if c.gap {
			judged = append(judged, c)
		}
	}
	if len(judged) == 0 {
		return nil
	}
	// Raw visits of the whole period: one index range per gap (gaps are
	// few; the good periods are never counted), kept until visits in it
	// change.
	var probes []matomo.Probe
	var counted []*periodCand
	for _, c := range judged {
		if c.memo.rawKnown {
			continue
		}
		s, _ := matomo.DayBounds(c.ss.site.Loc, c.key.Date)
		_, e := matomo.DayBounds(c.ss.site.Loc, c.last)
		probes = append(probes, matomo.Probe{IDSite: c.key.IDSite, From: s, To: e})
		counted = append(counted, c)
	}
	counts, err := sc.d.db.CountVisits(ctx, probes)
	if err != nil {
		return err
	}
	for i, c := range counted {
		c.memo.raw, c.memo.rawKnown = counts[i], true
	}
	sc.stats.Probes += len(probes)
	for _, c := range judged {
		c.f.Raw = c.memo.raw
		if c.kind == Missing && c.f.Raw == 0 {
			continue // only archived days, no raw visit: nothing to build
		}
		safety := sc.safety(c.key.IDSite)
		pf := PeriodFacts{DayFacts: c.f, Period: c.key.Period, Last: c.last, AtRisk: sc.atRisk(c.ss, c.key.Period, c.key.Date, c.last, safety)}
		g := Gap{IDSite: c.key.IDSite, Period: PeriodName(c.key.Period), Date: c.key.Date, Date2: c.last, Kind: c.kind,
			RawVisits: c.f.Raw, ArchivedVisits: c.f.Archived}
		g.Repairable, g.Reason = PeriodRepairable(pf, c.kind, safety)
		sc.periodGaps = append(sc.periodGaps, g)
	}
	return nil
}

// periodTraffic: a day of [from, to] has raw visits or a day archive.
func (sc *scanCtx) periodTraffic(ss *siteState, from, to matomo.Date) bool {
	for d := from; d <= to; d++ {
		switch ss.get(d) {
		case dsGood:
			return true
		case dsOpen:
			if info := ss.open[d]; info != nil && (info.raw > 0 || info.newest.IDArchive != 0) {
				return true
			}
		}
	}
	return false
}

// dayArchivedAfter: a day of [from, to] has an archive newer than t.
func (s *siteState) dayArchivedAfter(from, to matomo.Date, t time.Time) bool {
	ref := uint32(max(0, t.Unix()))
	for d := from; d <= to; d++ {
		if i := int(d - s.since); i >= 0 && i < len(s.dayTS) && s.dayTS[i] > ref {
			return true
		}
	}
	return false
}

// periodSums reads nb_visits of the candidates' archives and, for the
// suspects, of their good days, and marks the stale ones as gaps.
func (sc *scanCtx) periodSums(ctx context.Context, cands []*periodCand) error {
	// nb_visits of every candidate's own newest archive.
	byTable := map[string][]int64{}
	for _, c := range cands {
		if id := c.f.Newest.IDArchive; id != 0 && (!c.memo.archKnown || c.memo.archID != id) {
			byTable[matomo.TableFor(c.key.Date)] = append(byTable[matomo.TableFor(c.key.Date)], id)
		}
	}
	nb := map[string]map[int64]int64{}
	for t, ids := range byTable {
		m, err := sc.d.db.NbVisits(ctx, t, ids)
		if err != nil {
			return err
		}
		nb[t] = m
	}
	for _, c := range cands {
		if c.f.Newest.IDArchive == 0 {
			continue
		}
		if c.memo.archKnown && c.memo.archID == c.f.Newest.IDArchive {
			c.f.Archived = c.memo.archived
			continue
		}
		v, ok := nb[matomo.TableFor(c.key.Date)][c.f.Newest.IDArchive]
		if !ok && c.f.Newest.Value != matomo.DoneError && c.f.Newest.Value != matomo.DonePartial {
			ok = true // a finished archive without nb_visits found no visit
		}
		if ok {
			c.f.Archived = &v
		}
		c.memo.archID, c.memo.archKnown, c.memo.archived = c.f.Newest.IDArchive, true, c.f.Archived
	}
	for _, c := range cands {
		if c.suspect && c.memo.sumFP == c.fp {
			c.suspect = false // checked under the same facts: same verdict
			if c.memo.sumStale {
				c.f.Stale = true
				c.kind, c.gap = Stale, true
			}
		}
	}
	// The suspects' days: newest archive of each, nb_visits of the good.
	days := map[string][]matomo.SiteDate{}
	for _, c := range cands {
		if !c.suspect {
			continue
		}
		for d := c.key.Date; d <= c.last; d++ {
			days[matomo.TableFor(d)] = append(days[matomo.TableFor(d)], matomo.SiteDate{IDSite: c.key.IDSite, Date: d})
		}
	}
	if len(days) == 0 {
		return nil
	}
	// Two tables at once, as a full scan reads them: when most periods
	// are suspects (days re-archived after their periods everywhere) this
	// is a second pass over the tables.
	dayNb := map[matomo.SiteDate]int64{}
	var (
		mu    sync.Mutex
		wg    sync.WaitGroup
		first error
	)
	read := func(ctx context.Context, t string, keys []matomo.SiteDate) error {
		want := make(map[matomo.SiteDate]bool, len(keys))
		for _, k := range keys {
			want[k] = true
		}
		// Runs of days by index ranges, or the whole table in one
		// scan when they would cover a quarter of it (a month of 400
		// of 1,000 sites by ranges measured slower than the table's
		// scan).
		spans := matomo.Spans(keys)
		if len(want) > len(sc.st.sites)*31/4 {
			spans = nil
		}
		m := map[matomo.SiteDate]*newestPair{}
		nb := map[int64]int64{}
		err := sc.d.db.DayVisits(ctx, t, spans, func(f matomo.DoneFlag, v int64, ok bool) {
			k := matomo.SiteDate{IDSite: f.IDSite, Date: f.Date}
			if !want[k] {
				return
			}
			merge(m, f)
			if ok {
				nb[f.IDArchive] = v
			}
		})
		if err != nil {
			return err
		}
		mu.Lock()
		defer mu.Unlock()
		for k, p := range m {
			if ss := sc.st.sites[k.IDSite]; ss != nil && p.newest.Good(ss.site.Loc) {
				dayNb[k] = nb[p.newest.IDArchive]
			}
		}
		return nil
	}
	gctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sem := make(chan struct{}, 2)
	for t, keys := range days {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			if err := read(gctx, t, keys); err != nil {
				mu.Lock()
				if first == nil {
					first = err
					cancel()
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if first != nil {
		return first
	}
	for _, c := range cands {
		if !c.suspect || c.f.Archived == nil {
			continue
		}
		var sum int64
		for d := c.key.Date; d <= c.last; d++ {
			sum += dayNb[matomo.SiteDate{IDSite: c.key.IDSite, Date: d}]
		}
		c.memo.sumFP, c.memo.sumStale = c.fp, *c.f.Archived < sum
		if c.memo.sumStale {
			c.f.Stale = true
			c.kind, c.gap = Stale, true
		}
	}
	return nil
}

// usableDay: Matomo would keep the day's archive when it rebuilds a
// period holding it (it only builds the days that lack one).
func (ss *siteState) usableDay(d matomo.Date) bool {
	switch ss.get(d) {
	case dsGood:
		return true
	case dsOpen:
		info := ss.open[d]
		return info != nil && info.newest.IsOK()
	}
	return false
}

// atRisk is the earliest day (0: none) that Matomo would rebuild from raw
// data when it rebuilds period p [first, last], its months and years
// (invalidation cascades to them), and whose raw data may be purged
// (purgeRisk: past the log-deletion limit, or the first raw day while log
// deletion runs). A day outside the scanned window has no known archive:
// only the limit speaks for it.
func (sc *scanCtx) atRisk(ss *siteState, p int, first, last matomo.Date, s Safety) matomo.Date {
	month := func(m matomo.Date) bool {
		pr, ok := ss.periodPair(matomo.PeriodMonth, m)
		return ok && pr.newest.IsOK()
	}
	return sc.atRiskWith(ss, p, first, last, s, ss.usableDay, month)
}

// atRiskWith is atRisk for archives whose usable days and months are
// given: the plain ones, or a stored segment's (whose week, month and year
// Matomo rebuilds from the segment's own day and month archives).
func (sc *scanCtx) atRiskWith(ss *siteState, p int, first, last matomo.Date, s Safety, usableDay, usableMonth func(matomo.Date) bool) matomo.Date {
	today := matomo.Today(ss.site.Loc, sc.now)
	risky := func(from, to matomo.Date) matomo.Date {
		for d := from; d <= to && d < today; d++ {
			if ss.site.HasCrDat && d < ss.site.Created {
				continue // Matomo archives nothing before the site existed
			}
			if usableDay(d) {
				continue
			}
			f := DayFacts{Date: d, Loc: ss.site.Loc, Now: sc.now}
			if info := ss.open[d]; info != nil {
				f.Raw, f.Archived = info.raw, info.archived
			}
			if purgeRisk(f, s) {
				return d
			}
		}
		return 0
	}
	earliest := matomo.Date(0)
	keep := func(d matomo.Date) {
		if d != 0 && (earliest == 0 || d < earliest) {
			earliest = d
		}
	}
	// The period's own months (a week may span two) are rebuilt in full.
	checked := map[matomo.Date]bool{}
	if p != matomo.PeriodYear {
		for _, d := range []matomo.Date{first, last} {
			m, mLast := PeriodOf(matomo.PeriodMonth, d)
			if !checked[m] {
				checked[m] = true
				keep(risky(m, mLast))
			}
		}
	}
	// Every year touched is rebuilt from its months: a month without a
	// usable archive is rebuilt from its days.
	for _, d := range []matomo.Date{first, last} {
		y, yLast := PeriodOf(matomo.PeriodYear, d)
		for m := y; m <= yLast; m = m.AddDays(31).Month() {
			if checked[m] {
				continue
			}
			checked[m] = true
			if usableMonth(m) {
				continue
			}
			_, mLast := PeriodOf(matomo.PeriodMonth, m)
			keep(risky(m, mLast))
		}
	}
	return earliest
}

// periodEntry is the newest and newest OK done flag of one of a site's
// weeks, months or years, packed as the day slots are: a site holds
// about 70 of them, and 10,000 sites held them in maps of pointers to
// full flags at 130 MiB.
type periodEntry struct {
	date, date2 matomo.Date
	period      uint8
	s           slot
}

func periodLess(p int, d matomo.Date, e periodEntry) int {
	if p != int(e.period) {
		return p - int(e.period)
	}
	return int(d - e.date)
}

// periodPair returns the newest and newest OK flags of the site's period
// (p, first); ok is false when it has no archive.
func (s *siteState) periodPair(p int, first matomo.Date) (newestPair, bool) {
	i, found := slices.BinarySearchFunc(s.periods, 0, func(e periodEntry, _ int) int { return -periodLess(p, first, e) })
	if !found {
		return newestPair{}, false
	}
	e := s.periods[i]
	flag := func(id, ts uint32, val uint8) matomo.DoneFlag {
		f := flagOf(matomo.SiteDate{IDSite: s.site.ID, Date: e.date}, id, ts, val)
		f.Period, f.Date2 = int(e.period), e.date2
		if id == 0 {
			return matomo.DoneFlag{}
		}
		return f
	}
	return newestPair{newest: flag(e.s.newestID, e.s.newestTS, e.s.newestVal), ok: flag(e.s.okID, e.s.okTS, e.s.okVal)}, true
}

// mergePeriod merges one period done row into the site's entries.
func (s *siteState) mergePeriod(f matomo.DoneFlag) {
	i, found := slices.BinarySearchFunc(s.periods, 0, func(e periodEntry, _ int) int { return -periodLess(f.Period, f.Date, e) })
	if !found {
		if s.periods == nil {
			// About the window's weeks, months and years (and those
			// reaching into it), so that the slice is allocated once.
			s.periods = make([]periodEntry, 0, int(s.until-s.since)/7+int(s.until-s.since)/28+8)
		}
		s.periods = slices.Insert(s.periods, i, periodEntry{date: f.Date, period: uint8(f.Period)})
	}
	e := &s.periods[i]
	e.s.merge(f)
	if e.date2 == 0 {
		e.date2 = f.Date2 // the same for every archive of the period
	}
}
