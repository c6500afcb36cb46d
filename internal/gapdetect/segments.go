package gapdetect

import (
	"context"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/matomod/matomod/internal/matomo"
)

// process_new_segments_from values (Matomo 5.0.2,
// core/CronArchive/SegmentArchiving.php; global.ini.php ships
// "beginning_of_time").
const (
	SegmentsFromBeginningOfTime = "beginning_of_time"
	SegmentsFromCreationTime    = "segment_creation_time"
	SegmentsFromLastEditTime    = "segment_last_edit_time"
)

// beginningOfTimeYears is SegmentArchiving::DEFAULT_BEGINNING_OF_TIME_LAST_N_YEARS.
const beginningOfTimeYears = 7

var (
	lastNRE     = regexp.MustCompile(`^last([0-9]+)$`)
	editLastNRE = regexp.MustCompile(`^editLast([0-9]+)$`)
)

// SegmentStart is the first day Matomo archives a stored segment for a
// site, the way SegmentArchiving::getReArchiveSegmentStartDate and
// CronArchive (which skips a period when that start "isLater" than the
// period's end of day) compute it: a day D is archived when the start's
// UTC date is not after D.
//   - segment_creation_time: ts_created; segment_last_edit_time:
//     ts_last_edit (ts_created when none);
//   - lastN / editLastN: N days before ts_created / ts_last_edit
//     (Range::getDateXPeriodsAgo: 365 days become 366 in a leap year);
//   - beginning_of_time, or a value Matomo does not recognise: today (UTC)
//     minus 7 years, for a site-specific segment not before the site's
//     creation.
//
// ok is false when Matomo has no start (a missing timestamp: it then
// restricts nothing); the window and the site's creation still bound it.
func SegmentStart(s matomo.StoredSegment, setting string, now time.Time, site matomo.Site) (start matomo.Date, ok bool) {
	created, edit := s.Created, s.LastEdit
	if edit.IsZero() {
		edit = created
	}
	day := func(t time.Time) matomo.Date { return matomo.DateOf(t.UTC()) }
	lastN := func(m []string, t time.Time) (matomo.Date, bool) {
		if t.IsZero() {
			return 0, false
		}
		n, err := strconv.Atoi(m[1])
		if err != nil {
			return 0, false
		}
		if n == 365 && isLeap(t.UTC().Year()) {
			n = 366
		}
		return day(t).AddDays(-n), true
	}
	switch {
	case setting == SegmentsFromCreationTime:
		return day(created), !created.IsZero()
	case setting == SegmentsFromLastEditTime:
		return day(edit), !edit.IsZero()
	}
	if m := editLastNRE.FindStringSubmatch(setting); m != nil {
		return lastN(m, edit)
	}
	if m := lastNRE.FindStringSubmatch(setting); m != nil {
		return lastN(m, created)
	}
	u := now.UTC()
	start = matomo.DateOf(time.Date(u.Year()-beginningOfTimeYears, u.Month(), u.Day(), 0, 0, 0, 0, time.UTC))
	if s.IDSite != 0 && site.HasCrDat && start < site.Created {
		start = site.Created
	}
	return start, true
}

func isLeap(y int) bool { return y%4 == 0 && (y%100 != 0 || y%400 == 0) }

type segKey struct {
	hash string
	sd   matomo.SiteDate
}

// segFlag is one stored segment's day done row as read from a table.
type segFlag struct {
	hash string
	f    matomo.DoneFlag
}

// checkSegments finds the segment gaps (README "Gap kinds"): for every
// stored auto-archived segment and every site it is archived for, each
// day in [segment start, window end] with raw visits whose newest
// done<hash> day archive is missing, failed or invalidated (the day rules
// of Classify). It reads the segment table, then each monthly table of the
// window for the hashes in use only (period = 1 on index_period_archived);
// it keeps those rows per table between scans (state.segFlags).
func (sc *scanCtx) checkSegments(ctx context.Context) error {
	segs, err := sc.d.db.StoredSegments(ctx)
	if err != nil || len(segs) == 0 {
		return err
	}
	var hashes []string
	for _, s := range segs {
		if !slices.Contains(hashes, s.Hash) {
			hashes = append(hashes, s.Hash)
		}
	}
	newest := map[segKey]*newestPair{}
	add := func(h string, f matomo.DoneFlag) {
		ss := sc.st.sites[f.IDSite]
		if ss == nil || f.Date < ss.since || f.Date > ss.until {
			return
		}
		mergeInto(newest, segKey{h, matomo.SiteDate{IDSite: f.IDSite, Date: f.Date}}, f)
	}
	// A table is read again only when its signature moved this scan (the
	// same signal as for days), the segments changed, or it was never
	// read: a steady rescan reads no segment rows.
	slices.Sort(hashes)
	key := strings.Join(hashes, ",")
	if key != sc.st.segHashes || sc.full || sc.st.segFlags == nil {
		sc.st.segFlags = map[string][]segFlag{}
		sc.st.segHashes = key
	}
	for m := sc.window.Since.Month(); m <= sc.window.Until; m = nextMonth(m) {
		t := matomo.TableFor(m)
		if _, exists := sc.st.tables[t]; !exists {
			delete(sc.st.segFlags, t)
			continue
		}
		cached, ok := sc.st.segFlags[t]
		if !ok || sc.moved[t] {
			cached = nil
			err := sc.d.db.SegmentDoneFlags(ctx, t, hashes, func(h string, f matomo.DoneFlag) {
				cached = append(cached, segFlag{h, f})
			})
			if err != nil {
				return err
			}
			sc.st.segFlags[t] = cached
			sc.stats.SegmentRows += len(cached)
		}
		for _, sf := range cached {
			add(sf.hash, sf.f)
		}
	}
	inv, err := sc.d.db.SegmentDayInvalidations(ctx, sc.window.Since, sc.window.Until, hashes)
	if err != nil {
		return err
	}
	queued := make(map[segKey]time.Time, len(inv))
	for _, v := range inv {
		queued[segKey{v.Hash, matomo.SiteDate{IDSite: v.IDSite, Date: v.Date}}] = v.TSInvalidated
	}

	type cand struct {
		seg matomo.StoredSegment
		f   DayFacts
		ss  *siteState
	}
	var cands []cand
	var probes []matomo.Probe
	ids := make([]int, 0, len(sc.st.sites))
	for id := range sc.st.sites {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	for _, id := range ids {
		ss := sc.st.sites[id]
		for _, s := range segs {
			if !s.ForSite(id) {
				continue
			}
			from := ss.since
			if start, ok := SegmentStart(s, sc.d.opt.ProcessNewSegmentsFrom, sc.now, ss.site); ok && start > from {
				from = start
			}
			for d := from; d <= ss.until; d++ {
				if !sc.siteDayHasVisits(ss, d) {
					continue
				}
				k := segKey{s.Hash, matomo.SiteDate{IDSite: id, Date: d}}
				f := DayFacts{Date: d, Loc: ss.site.Loc, Now: sc.now, Grace: sc.d.opt.Grace, Raw: 1}
				if p := newest[k]; p != nil {
					f.Newest, f.NewestOK = p.newest, p.ok
				}
				if t, ok := queued[k]; ok {
					f.Queued, f.QueuedAt = true, t
				}
				if _, ok := Classify(f); !ok {
					continue
				}
				start, end := matomo.DayBounds(ss.site.Loc, d)
				cands = append(cands, cand{seg: s, f: f, ss: ss})
				probes = append(probes, matomo.Probe{IDSite: id, From: start, To: end})
			}
		}
	}
	if len(cands) == 0 {
		return nil
	}
	// The raw visits of the candidate days (the site's, not the
	// segment's: Matomo archives the segment on every day with visits).
	raw, err := sc.d.db.CountVisits(ctx, probes)
	if err != nil {
		return err
	}
	sc.stats.Probes += len(probes)
	var need []int
	for i, c := range cands {
		if raw[i] > 0 && !sc.st.firstRead[c.ss.site.ID] && !slices.Contains(need, c.ss.site.ID) {
			need = append(need, c.ss.site.ID)
		}
	}
	if len(need) > 0 {
		if err := sc.loadFirstVisits(ctx, need); err != nil {
			return err
		}
	}
	for i, c := range cands {
		f := c.f
		f.Raw = raw[i]
		kind, ok := Classify(f)
		if !ok {
			continue
		}
		if f.Newest.IDArchive != 0 {
			// nb_visits of a segment archive counts matching visits
			// only: no raw-versus-archived comparison is meaningful.
			f.Archived = nil
		}
		g := Gap{IDSite: c.ss.site.ID, Period: PeriodDay, Date: f.Date, Date2: f.Date, Kind: kind,
			RawVisits: f.Raw, Segment: c.seg.Definition}
		g.Repairable, g.Reason = Repairable(f, kind, sc.safety(c.ss.site.ID))
		sc.segmentGaps = append(sc.segmentGaps, g)
	}
	return nil
}

// siteDayHasVisits: the day may have raw visits (a plain day archive, or
// raw visits seen or not yet counted); CountVisits settles the candidates.
func (sc *scanCtx) siteDayHasVisits(ss *siteState, d matomo.Date) bool {
	switch ss.get(d) {
	case dsGood:
		return true
	case dsOpen:
		info := ss.open[d]
		return info == nil || !info.rawKnown || info.raw > 0 || info.newest.IDArchive != 0
	case dsEmpty:
		return false
	}
	return true
}

func nextMonth(m matomo.Date) matomo.Date {
	t := m.Time()
	return matomo.DateOf(time.Date(t.Year(), t.Month()+1, 1, 0, 0, 0, 0, time.UTC))
}
