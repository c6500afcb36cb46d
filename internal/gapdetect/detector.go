package gapdetect

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"time"
	"unsafe"

	"github.com/matomod/matomod/internal/matomo"
)

// Options configure a Detector. Zero values take the documented defaults.
type Options struct {
	WindowDays int           // default 365
	VerifyDays int           // stale check over the last N window days; default 7 (negative: off)
	Grace      time.Duration // default 2h
	// Since/Until fix the window (site-local dates) for every site; zero
	// means until = the site's yesterday, since = until - WindowDays + 1.
	Since, Until matomo.Date
	// Include/Exclude select sites (empty Include = all).
	Include, Exclude []int
	// CollectionMinTraffic: a site with traffic on at least this fraction
	// of its window days "normally has traffic every day"; default 0.9.
	CollectionMinTraffic float64
	// Log deletion from config.ini.php; option rows in the DB override it.
	DeleteLogsEnable    bool
	DeleteLogsOlderThan int
	// FullRescanInterval: incremental scans in between; default 24h.
	FullRescanInterval time.Duration
	// ProcessNewSegmentsFrom is Matomo's [General]
	// process_new_segments_from (see SegmentStart); "" is Matomo's
	// default, beginning_of_time.
	ProcessNewSegmentsFrom string
	Now                    func() time.Time
}

func (o *Options) defaults() {
	if o.WindowDays <= 0 {
		o.WindowDays = 365
	}
	if o.VerifyDays == 0 {
		o.VerifyDays = 7
	}
	if o.Grace <= 0 {
		o.Grace = 2 * time.Hour
	}
	if o.CollectionMinTraffic <= 0 {
		o.CollectionMinTraffic = 0.9
	}
	if o.DeleteLogsOlderThan <= 0 {
		o.DeleteLogsOlderThan = 180
	}
	if o.FullRescanInterval <= 0 {
		o.FullRescanInterval = 24 * time.Hour
	}
	if o.Now == nil {
		o.Now = time.Now
	}
}

// Detector scans Matomo's DB for gaps. It keeps the confirmed state of each
// site-day between scans so that a rescan reads only what changed. Scans
// are serialised; a Detector is safe for concurrent use.
type Detector struct {
	db  *matomo.DB
	opt Options

	mu    sync.Mutex
	state *state
	// lastArchiveRun is the newest core:archive start the caller knows of.
	lastArchiveRun time.Time
}

// New returns a Detector reading through db.
func New(db *matomo.DB, o Options) *Detector {
	o.defaults()
	return &Detector{db: db, opt: o}
}

// SetLastArchiveRun tells the detector when core:archive last started, so
// yesterday becomes repairable only after a run had its chance.
func (d *Detector) SetLastArchiveRun(t time.Time) {
	d.mu.Lock()
	if t.After(d.lastArchiveRun) {
		d.lastArchiveRun = t
	}
	d.mu.Unlock()
}

// Invalidate drops the cached state so the next scan is a full one.
func (d *Detector) Invalidate() {
	d.mu.Lock()
	d.state = nil
	d.mu.Unlock()
}

// day states kept for every site-day of a window.
const (
	dsUnknown uint8 = iota // not read yet
	dsGood                 // newest archive OK and complete
	dsEmpty                // no archive and no raw visits
	dsOpen                 // anything else: kept in siteState.open
)

type state struct {
	queued map[matomo.SiteDate]time.Time // queue rows of the last scan
	fullAt time.Time                     // local clock of the last full read
	sites  map[int]*siteState
	// The change signals as of the last scan (see freshness in README):
	// a monthly table whose signature moved is read again in full.
	tables  map[string]matomo.TableSig
	visits  matomo.VisitBounds
	reports map[string]bool // report_to_invalidate option names
	// firstVisit caches each site's earliest raw visit; it only moves
	// when a purge moves log_visit's MIN(idvisit), which clears it.
	firstVisit map[int]time.Time
	firstRead  map[int]bool
	// periodMemo keeps, per week, month and year, what the last scan
	// read for it (its raw visits, its sum check) with the facts it was
	// read under: a rescan reads again only when those moved.
	periodMemo map[matomo.PeriodKey]*periodMemo
	// segFlags keeps, per monthly table, the stored segments' day done
	// rows last read from it, for segHashes: a rescan reads a table again
	// only when its signature moved or the segments changed.
	segFlags  map[string][]segFlag
	segHashes string
	// segRaw keeps the raw visits of the segment gap candidates (runs of
	// days) of the last scan; see segmentRaw.
	segRaw map[matomo.DateSpan]int64
	// segMonths keeps the stored segments' day rows of each window
	// table, merged (segFlags keeps their week, month and year rows).
	segMonths map[string]*segMonth
	// segPeriods keeps segFlags' week, month and year rows merged.
	segPeriods map[string]map[segPeriodKey]*newestPair
	// identity is matomo.DB.Identity at the last full scan; a state
	// loaded from a file is checked against it before its first use.
	identity      string
	checkIdentity bool
}

func newState(now time.Time) *state {
	return &state{sites: map[int]*siteState{}, fullAt: now, tables: map[string]matomo.TableSig{},
		reports: map[string]bool{}, firstVisit: map[int]time.Time{}, firstRead: map[int]bool{},
		periodMemo: map[matomo.PeriodKey]*periodMemo{}, segFlags: map[string][]segFlag{}}
}

type siteState struct {
	site         matomo.Site
	since, until matomo.Date
	days         []uint8 // index: date - since
	open         map[matomo.Date]*dayInfo
	// dayTS is ts_archived (Unix seconds, 0: none) of each day's newest
	// archive: a week, month or year archived before one of its days
	// may be stale against it (see checkPeriods). Index: date - since.
	dayTS []uint32
	// periods holds the newest week, month and year done flags of the
	// tables read (IDSite is 0 in the keys).
	periods []periodEntry // sorted by period, then first day
}

// dayInfo is what we know of a site-day that is not settled.
type dayInfo struct {
	newest, newestOK matomo.DoneFlag // IDArchive 0: none
	raw              int64
	rawKnown         bool
	archived         *int64
	stale            bool
}

func (s *siteState) get(d matomo.Date) uint8 {
	if d < s.since || d > s.until {
		return dsUnknown
	}
	return s.days[d-s.since]
}

func (s *siteState) set(d matomo.Date, v uint8) {
	if d < s.since || d > s.until {
		return
	}
	s.days[d-s.since] = v
	if v != dsOpen {
		delete(s.open, d)
	}
}

// resize moves the window, keeping what is known of days still inside.
func (s *siteState) resize(since, until matomo.Date) {
	if since == s.since && until == s.until && s.days != nil {
		return
	}
	days := make([]uint8, max(0, int(until-since)+1))
	ts := make([]uint32, len(days))
	for d := max(since, s.since); d <= min(until, s.until) && s.days != nil; d++ {
		days[d-since] = s.days[d-s.since]
		if int(d-s.since) < len(s.dayTS) {
			ts[d-since] = s.dayTS[d-s.since]
		}
	}
	for d := range s.open {
		if d < since || d > until {
			delete(s.open, d)
		}
	}
	s.since, s.until, s.days, s.dayTS = since, until, days, ts
}

// setTS records the ts_archived of a day's newest archive (zero: none).
func (s *siteState) setTS(d matomo.Date, t time.Time) {
	if d < s.since || d > s.until || len(s.dayTS) != len(s.days) {
		return
	}
	v := uint32(0)
	if !t.IsZero() {
		v = uint32(max(0, t.Unix()))
	}
	s.dayTS[d-s.since] = v
}

// Scan reads the DB and returns the current gaps. The first scan, and one
// every FullRescanInterval (a safety net), re-reads every day done flag of
// the window. The others read what the change signals point at: monthly
// tables whose information_schema signature moved, the invalidation
// queue, the site-days of visits added since the last scan, new
// report_to_invalidate options, and the days still unknown.
func (d *Detector) Scan(ctx context.Context) (*Result, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	start := time.Now()
	trips0 := d.db.RoundTrips()
	now := d.opt.Now().UTC()
	vb, err := d.db.ReadVisitBounds(ctx)
	if err != nil {
		return nil, err
	}
	if d.state != nil && d.state.checkIdentity {
		ok, err := d.loadedStateValid(ctx)
		if err != nil {
			return nil, err
		}
		if !ok {
			d.state = nil // saved for another database, or before a restore
		} else {
			d.state.checkIdentity = false
		}
	}
	full := d.state == nil || now.Sub(d.state.fullAt) >= d.opt.FullRescanInterval ||
		// log_visit rolled back or created again: a restore.
		vb.Max < d.state.visits.Max || !vb.Created.Equal(d.state.visits.Created)
	st := d.state
	if full {
		st = newState(now)
		if st.identity, err = d.db.Identity(ctx); err != nil {
			return nil, err
		}
	}
	sc := scanCtx{d: d, st: st, now: now, full: full, vb: vb, haveVB: true, moved: map[string]bool{}}
	if err := sc.run(ctx); err != nil {
		// A half-applied incremental read is not a state to build on.
		d.state = nil
		return nil, err
	}
	st.queued = make(map[matomo.SiteDate]time.Time, len(sc.queued))
	for k, q := range sc.queued {
		st.queued[k] = q.TSInvalidated
	}
	d.state = st
	res := sc.result()
	res.Stats.Full = full
	res.Stats.Duration = time.Since(start)
	res.Stats.RoundTrips = d.db.RoundTrips() - trips0
	return res, nil
}

// scanCtx holds one scan's working data.
type scanCtx struct {
	d    *Detector
	st   *state
	now  time.Time
	full bool

	opts        matomo.Options
	queued      map[matomo.SiteDate]matomo.DayInvalidation
	pqueued     map[matomo.PeriodKey]matomo.PeriodInvalidation // IDSite set
	periodGaps  []Gap
	segmentGaps []Gap
	moved       map[string]bool // monthly tables whose signature moved this scan
	siteErrors  []SiteError
	stats       Stats
	window      Window
	firstVisit  map[int]time.Time
	deleteOn    bool
	deleteDays  int
	vb          matomo.VisitBounds
	haveVB      bool
	segs        []matomo.StoredSegment
	hashes      []string                 // their distinct hashes, sorted
	segRead     map[string]bool          // segFlags keys the table reads filled this scan
	reports     map[matomo.SiteDate]bool // days named by report_to_invalidate options
	touched     map[matomo.SiteDate]bool // days whose raw visits may have changed
}

func (sc *scanCtx) run(ctx context.Context) error {
	d := sc.d
	sites, err := d.db.Sites(ctx)
	if err != nil {
		return err
	}
	if sc.opts, err = d.db.ReadOptions(ctx); err != nil {
		return err
	}
	sc.deleteOn, sc.deleteDays = d.opt.DeleteLogsEnable, d.opt.DeleteLogsOlderThan
	if sc.opts.DeleteLogsEnable != nil {
		sc.deleteOn = *sc.opts.DeleteLogsEnable
	}
	if sc.opts.DeleteLogsOlderThan != nil {
		sc.deleteDays = *sc.opts.DeleteLogsOlderThan
	}
	if err := sc.windows(sites); err != nil {
		return err
	}
	if len(sc.st.sites) == 0 {
		return nil
	}
	if !sc.haveVB {
		if sc.vb, err = d.db.ReadVisitBounds(ctx); err != nil {
			return err
		}
	}
	ids := sc.siteIDs()
	sc.touched = map[matomo.SiteDate]bool{}
	// Days never seen (new in the window, or in tables that do not exist)
	// are read individually (targeted).
	stages := []struct {
		name string
		f    func(context.Context) error
	}{
		{"queue", func(ctx context.Context) error {
			if err := sc.readSegments(ctx); err != nil {
				return err
			}
			return sc.readQueue(ctx, ids)
		}},
		{"archives", func(ctx context.Context) error { return sc.readArchives(ctx, ids) }},
		{"touched", sc.readTouched},
		{"targeted", sc.readTargeted},
		{"probe", sc.probe},
		{"verify", func(ctx context.Context) error {
			sc.settleOpen()
			if err := sc.verify(ctx); err != nil {
				return err
			}
			sc.unverifiable()
			return sc.archivedVisits(ctx)
		}},
		{"first_visits", sc.readFirstVisits},
		{"periods", sc.checkPeriods},
		{"segments", sc.checkSegments},
	}
	for _, s := range stages {
		t := time.Now()
		if err := s.f(ctx); err != nil {
			return err
		}
		sc.stats.Stages = append(sc.stats.Stages, Stage{Name: s.name, Duration: time.Since(t)})
	}
	sc.st.visits = sc.vb
	return nil
}

// windows computes each selected site's window and drops sites that are
// gone or deselected.
func (sc *scanCtx) windows(sites []matomo.Site) error {
	o := sc.d.opt
	if o.Since != 0 && o.Until != 0 && o.Since > o.Until {
		return fmt.Errorf("--since %s is after --until %s: swap them", o.Since, o.Until)
	}
	seen := map[int]bool{}
	for _, s := range sites {
		if !selected(s.ID, o.Include, o.Exclude) {
			continue
		}
		if s.TZErr != nil {
			sc.siteErrors = append(sc.siteErrors, SiteError{IDSite: s.ID, Error: s.TZErr.Error()})
			continue
		}
		until := o.Until
		if until == 0 {
			until = matomo.Today(s.Loc, sc.now).AddDays(-1)
		}
		since := o.Since
		if since == 0 {
			since = until.AddDays(1 - o.WindowDays)
		}
		if s.HasCrDat && since < s.Created {
			since = s.Created // days before the site existed are never scanned
		}
		if sc.window.Since == 0 || since < sc.window.Since {
			sc.window.Since = since
		}
		if until > sc.window.Until {
			sc.window.Until = until
		}
		seen[s.ID] = true
		ss := sc.st.sites[s.ID]
		if ss == nil {
			ss = &siteState{open: map[matomo.Date]*dayInfo{}}
			sc.st.sites[s.ID] = ss
		}
		ss.site = s
		ss.resize(since, until)
	}
	exists := make(map[int]bool, len(sites))
	for _, s := range sites {
		exists[s.ID] = true
	}
	for _, id := range o.Include {
		// A site that is both included and excluded exists; only an id
		// Matomo does not know is the operator's mistake.
		if !exists[id] {
			return fmt.Errorf("site %d does not exist in Matomo: check --sites / sites.include", id)
		}
	}
	for id := range sc.st.sites {
		if !seen[id] {
			delete(sc.st.sites, id)
		}
	}
	return nil
}

func selected(id int, include, exclude []int) bool {
	if slices.Contains(exclude, id) {
		return false
	}
	return len(include) == 0 || slices.Contains(include, id)
}

// siteIDs is the idsite filter sent with the window-wide reads: none.
// sites.include/exclude are applied in Go (rows of other sites are
// skipped), so the server's plan for these reads is the one measured and
// EXPLAIN-tested, whatever the lists hold; an IN list would let the
// optimizer pick another plan for each list.
func (sc *scanCtx) siteIDs() []int { return nil }

func (sc *scanCtx) readQueue(ctx context.Context, ids []int) error {
	inv, _, err := sc.d.db.DayInvalidations(ctx, sc.window.Since, sc.window.Until, ids)
	if err != nil {
		return err
	}
	sc.queued = make(map[matomo.SiteDate]matomo.DayInvalidation, len(inv))
	for _, v := range inv {
		ss := sc.st.sites[v.IDSite]
		if ss == nil || v.Date < ss.since || v.Date > ss.until {
			continue
		}
		sc.queued[matomo.SiteDate{IDSite: v.IDSite, Date: v.Date}] = v
		// Matomo sets done = 4 in place without touching ts_archived:
		// a queued day must be re-read even if it was settled.
		if !sc.full && ss.get(v.Date) == dsGood && sc.newlyQueued(v) {
			ss.set(v.Date, dsUnknown)
		}
	}
	pinv, err := sc.d.db.PeriodInvalidations(ctx, periodsFrom(sc.window.Since), sc.window.Until, ids)
	if err != nil {
		return err
	}
	sc.pqueued = make(map[matomo.PeriodKey]matomo.PeriodInvalidation, len(pinv))
	for _, v := range pinv {
		sc.pqueued[matomo.PeriodKey{IDSite: v.IDSite, Period: v.Period, Date: v.Date}] = v
	}
	return nil
}

func (sc *scanCtx) inWindow(t matomo.ArchiveTable) bool {
	return t.Month >= sc.window.Since.Month() && t.Month <= sc.window.Until
}

// periodsOnly: a table before the window that holds a week or year
// reaching into it (the window's first Monday's month, its year's
// January). Only its period rows are read.
func (sc *scanCtx) periodsOnly(t matomo.ArchiveTable) bool {
	return !sc.inWindow(t) && t.Month >= periodsFrom(sc.window.Since).Month() && t.Month <= sc.window.Until
}

// readArchives reads the monthly tables of the window: all of them in a
// full scan; in an incremental one those whose signature moved (new,
// deleted or changed rows, or a table created again) or was too recent
// to trust. The days of a table that disappeared are read again one by
// one (they have no archive any more).
func (sc *scanCtx) readArchives(ctx context.Context, ids []int) error {
	sigs, err := sc.d.db.ArchiveTableSigs(ctx)
	if err != nil {
		return err
	}
	prev := sc.st.tables
	var read, periodsRead []matomo.ArchiveTable
	now := make(map[string]matomo.TableSig, len(sigs))
	for _, t := range sigs {
		now[t.Name] = t
		in, po := sc.inWindow(t.ArchiveTable), sc.periodsOnly(t.ArchiveTable)
		if !in && !po {
			continue
		}
		p, ok := prev[t.Name]
		if sc.full || !ok || tableChanged(p, t) {
			sc.moved[t.Name] = true
			if in {
				read = append(read, t.ArchiveTable)
			} else {
				periodsRead = append(periodsRead, t.ArchiveTable)
			}
		}
	}
	for _, t := range periodsRead {
		var flags []matomo.DoneFlag
		var segFlags []segFlag
		err := sc.d.db.TableFlags(ctx, t.Name, nil, sc.hashes, true, func(seg int, f matomo.DoneFlag) {
			if seg >= 0 && seg < len(sc.hashes) {
				segFlags = append(segFlags, segFlag{sc.hashes[seg], f})
			} else if seg < 0 {
				flags = append(flags, f)
			}
		})
		if err != nil {
			return err
		}
		sc.setPeriodFlags(t.Name, flags)
		sc.keepSegmentFlags(t.Name, true, segFlags)
		sc.stats.DoneRows += len(flags)
	}
	if !sc.full {
		for name, p := range prev {
			if _, ok := now[name]; ok || (!sc.inWindow(p.ArchiveTable) && !sc.periodsOnly(p.ArchiveTable)) {
				continue
			}
			sc.setPeriodFlags(name, nil) // dropped: its periods have no archive
			if !sc.inWindow(p.ArchiveTable) {
				continue
			}
			next := p.Month.AddDays(31).Month()
			for _, ss := range sc.st.sites {
				for d := max(p.Month, ss.since); d < next && d <= ss.until; d++ {
					ss.set(d, dsUnknown)
				}
			}
		}
	}
	sc.st.tables = now
	sc.stats.TablesRead = len(read)
	return sc.readTables(ctx, ids, read)
}

// tableChanged: whether a monthly table may hold changes since prev was
// read. UPDATE_TIME moves with every committed change but reads NULL after
// a server restart or an eviction from the dictionary cache (a table
// evicted again after a change would look unchanged): the sequence row
// still shows new archives, queue rows show invalidations, and only a
// deletion in such a table waits for the full rescan.
func tableChanged(prev, now matomo.TableSig) bool {
	return prev.Recent || !prev.Created.Equal(now.Created) || !prev.Updated.Equal(now.Updated) || prev.Seq != now.Seq
}

type newestPair struct{ newest, ok matomo.DoneFlag }

func merge(m map[matomo.SiteDate]*newestPair, f matomo.DoneFlag) {
	mergeInto(m, matomo.SiteDate{IDSite: f.IDSite, Date: f.Date}, f)
}

// mergeInto keeps, under key k, the newest and the newest OK of the flags
// it is given (for plain days by site-day, for segments by hash too).
func mergeInto[K comparable](m map[K]*newestPair, k K, f matomo.DoneFlag) {
	p := m[k]
	if p == nil {
		p = &newestPair{}
		m[k] = p
	}
	if p.newest.IDArchive == 0 || f.Newer(p.newest) {
		p.newest = f
	}
	if f.IsOK() && (p.ok.IDArchive == 0 || f.Newer(p.ok)) {
		p.ok = f
	}
}

// slot is the newest and the newest OK done flag of one site-day, packed:
// a full scan holds one month of them for every site at once (10,000 sites
// × 31 days in 7 MiB).
type slot struct {
	newestID, okID   uint32 // idarchive is int(10) unsigned
	newestTS, okTS   uint32 // Unix seconds; 0 for NULL
	newestVal, okVal uint8
}

func newerThan(id, ts uint32, f matomo.DoneFlag) bool {
	fts := uint32(max(0, f.TSArchived.Unix()))
	if f.TSArchived.IsZero() {
		fts = 0
	}
	if fts != ts {
		return fts > ts
	}
	return uint32(f.IDArchive) > id
}

func (s *slot) merge(f matomo.DoneFlag) {
	ts := uint32(0)
	if !f.TSArchived.IsZero() {
		ts = uint32(max(0, f.TSArchived.Unix()))
	}
	if s.newestID == 0 || newerThan(s.newestID, s.newestTS, f) {
		s.newestID, s.newestTS, s.newestVal = uint32(f.IDArchive), ts, uint8(f.Value)
	}
	if f.IsOK() && (s.okID == 0 || newerThan(s.okID, s.okTS, f)) {
		s.okID, s.okTS, s.okVal = uint32(f.IDArchive), ts, uint8(f.Value)
	}
}

func flagOf(k matomo.SiteDate, id, ts uint32, val uint8) matomo.DoneFlag {
	f := matomo.DoneFlag{IDSite: k.IDSite, Date: k.Date, IDArchive: int64(id), Value: int(val)}
	if id != 0 && ts != 0 {
		f.TSArchived = time.Unix(int64(ts), 0).UTC()
	}
	return f
}

// slotBudget bounds the memory of the per-month buffers of a full scan;
// within it two tables are read at once (the server's table scans are
// what a full scan waits for).
const slotBudget = 8 << 20

// readTables reads every day done flag of the given monthly tables, one
// table per query into a dense site × day-of-month buffer, then settles
// each day.
func (sc *scanCtx) readTables(ctx context.Context, ids []int, tables []matomo.ArchiveTable) error {
	if len(tables) == 0 {
		return nil
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel() // an error stops the reads still going
	order := make([]*siteState, 0, len(sc.st.sites))
	row := make(map[int]int, len(sc.st.sites))
	for id, ss := range sc.st.sites {
		row[id] = len(order)
		order = append(order, ss)
	}
	size := len(order) * 31
	workers := max(1, min(2, slotBudget/max(1, size*int(unsafe.Sizeof(slot{})))))
	type filled struct {
		t       matomo.ArchiveTable
		buf     []slot
		rows    int
		periods []matomo.DoneFlag // week, month and year rows
		segs    []segFlag         // the stored segments' rows
		err     error
	}
	free := make(chan []slot, workers)
	for range workers {
		free <- make([]slot, size)
	}
	out := make([]chan filled, len(tables))
	for i := range out {
		out[i] = make(chan filled, 1)
	}
	go func() {
		sem := make(chan struct{}, workers)
		for i, t := range tables {
			sem <- struct{}{}
			buf := <-free
			go func() {
				defer func() { <-sem }()
				clear(buf)
				// About six week, month and year rows per site and table.
				f := filled{t: t, buf: buf, periods: make([]matomo.DoneFlag, 0, 8*len(order))}
				f.err = sc.d.db.TableFlags(ctx, t.Name, ids, sc.hashes, false, func(seg int, fl matomo.DoneFlag) {
					if seg >= 0 {
						if seg < len(sc.hashes) {
							f.segs = append(f.segs, segFlag{sc.hashes[seg], fl})
						}
						return
					}
					f.rows++
					if fl.Period != matomo.PeriodDay {
						f.periods = append(f.periods, fl)
						return
					}
					i, ok := row[fl.IDSite]
					dom := int(fl.Date - t.Month)
					if !ok || dom < 0 || dom >= 31 || fl.Date < order[i].since || fl.Date > order[i].until {
						return
					}
					buf[i*31+dom].merge(fl)
				})
				out[i] <- f
			}()
		}
	}()
	var firstErr error
	for i := range tables {
		f := <-out[i]
		if f.err != nil && firstErr == nil {
			firstErr = f.err
			cancel()
		}
		if firstErr == nil {
			sc.setPeriodFlags(f.t.Name, f.periods)
			sc.keepSegmentFlags(f.t.Name, false, f.segs)
			sc.settleMonth(f.t.Month, f.buf, order)
			sc.stats.DoneRows += f.rows
		}
		free <- f.buf
	}
	return firstErr
}

// settleMonth records what one month's buffer says about each site-day.
func (sc *scanCtx) settleMonth(month matomo.Date, buf []slot, order []*siteState) {
	next := month.AddDays(31).Month()
	for i, ss := range order {
		for d := max(month, ss.since); d < next && d <= ss.until; d++ {
			k := matomo.SiteDate{IDSite: ss.site.ID, Date: d}
			sl := &buf[i*31+int(d-month)]
			if sl.newestID == 0 { // no done row at all: no archive
				// Still none: what is known of its raw visits holds (new
				// visits reach it through readTouched).
				if v := ss.get(d); v == dsEmpty || (v == dsOpen && ss.open[d] != nil && ss.open[d].newest.IDArchive == 0) {
					continue
				}
				sc.setNoArchive(ss, d)
				continue
			}
			sc.apply(k, &newestPair{newest: flagOf(k, sl.newestID, sl.newestTS, sl.newestVal),
				ok: flagOf(k, sl.okID, sl.okTS, sl.okVal)})
		}
	}
}

// setGood settles a day as good. In an incremental scan a day that just
// became good is checked for staleness like a full scan checks every good
// day (when it is verifiable).
func (sc *scanCtx) setGood(ss *siteState, d matomo.Date) {
	if !sc.full && ss.get(d) != dsGood {
		sc.touched[matomo.SiteDate{IDSite: ss.site.ID, Date: d}] = true
	}
	ss.set(d, dsGood)
}

// settleOpen settles the open days whose reason to stay open went away
// (their queue row was worked off without a new archive).
func (sc *scanCtx) settleOpen() {
	for _, ss := range sc.st.sites {
		for d, info := range ss.open {
			if !info.stale && info.newest.Good(ss.site.Loc) && !sc.queuedDay(ss.site.ID, d) {
				sc.setGood(ss, d)
			}
		}
	}
}

func (sc *scanCtx) setNoArchive(ss *siteState, d matomo.Date) {
	ss.setTS(d, time.Time{})
	ss.set(d, dsOpen)
	ss.open[d] = &dayInfo{}
}

// apply records the newest flags of a site-day; p holds every done row of
// the day (a table read or a targeted read).
func (sc *scanCtx) apply(k matomo.SiteDate, p *newestPair) {
	ss := sc.st.sites[k.IDSite]
	if ss == nil || k.Date < ss.since || k.Date > ss.until {
		return
	}
	ss.setTS(k.Date, p.newest.TSArchived)
	info := ss.open[k.Date]
	if info != nil && info.newest == p.newest {
		info.newestOK = p.ok // unchanged archive: keep the known raw count
		return
	}
	if p.newest.Good(ss.site.Loc) {
		if _, q := sc.queued[k]; !q {
			sc.setGood(ss, k.Date)
			return
		}
	}
	ss.set(k.Date, dsOpen)
	ss.open[k.Date] = &dayInfo{newest: p.newest, newestOK: p.ok}
}

// readTargeted reads every flag of the unknown days.
func (sc *scanCtx) readTargeted(ctx context.Context) error {
	byTable := map[string][]matomo.SiteDate{}
	for id, ss := range sc.st.sites {
		for i, v := range ss.days {
			d := ss.since.AddDays(i)
			// Changes to known days (new rows, deletions, done values
			// changed in place) show in their table's signature.
			if v == dsUnknown {
				byTable[matomo.TableFor(d)] = append(byTable[matomo.TableFor(d)], matomo.SiteDate{IDSite: id, Date: d})
			}
		}
	}
	for t, keys := range byTable {
		m := map[matomo.SiteDate]*newestPair{}
		err := sc.d.db.DoneFlagsFor(ctx, t, keys, func(f matomo.DoneFlag) {
			sc.stats.DoneRows++
			merge(m, f)
		})
		if err != nil {
			return err
		}
		for _, k := range keys {
			if p := m[k]; p != nil {
				sc.apply(k, p)
			} else {
				ss := sc.st.sites[k.IDSite]
				// Keep a known raw count of an empty day; anything else
				// without a row is "no archive".
				if info := ss.open[k.Date]; info == nil || info.newest.IDArchive != 0 || ss.get(k.Date) == dsUnknown {
					sc.setNoArchive(ss, k.Date)
				}
			}
		}
	}
	return nil
}

// newlyQueued: a queue row the previous scan did not see (compared by
// content, not by clock: ts_invalidated is written with Matomo's clock).
func (sc *scanCtx) newlyQueued(q matomo.DayInvalidation) bool {
	prev, ok := sc.st.queued[matomo.SiteDate{IDSite: q.IDSite, Date: q.Date}]
	return !ok || !prev.Equal(q.TSInvalidated)
}

func (sc *scanCtx) queuedDay(id int, d matomo.Date) bool {
	_, ok := sc.queued[matomo.SiteDate{IDSite: id, Date: d}]
	return ok
}

// probe counts raw visits of every open day whose count is not known.
// Consecutive candidate days of a site form one span, and all spans of a
// site are one multi-range index scan that returns the visits' times; they
// are counted per site-local day here. Candidates are days without a good
// archive, so they hold few visits.
func (sc *scanCtx) probe(ctx context.Context) error {
	var req []matomo.SiteSpans
	probed := 0
	for id, ss := range sc.st.sites {
		var days []matomo.Date
		// A visit that goes on past midnight moves to the next day without
		// a new idvisit: the last two days' counts are always refreshed.
		recent := matomo.Today(ss.site.Loc, sc.now).AddDays(-2)
		for d, info := range ss.open {
			if !info.rawKnown || sc.full || d >= recent {
				days = append(days, d)
			}
		}
		if len(days) == 0 {
			continue
		}
		slices.Sort(days)
		probed += len(days)
		r := matomo.SiteSpans{IDSite: id}
		for i := 0; i < len(days); {
			j := i
			for j+1 < len(days) && days[j+1] == days[j]+1 {
				j++
			}
			from, _ := matomo.DayBounds(ss.site.Loc, days[i])
			_, to := matomo.DayBounds(ss.site.Loc, days[j])
			r.Spans = append(r.Spans, matomo.Span{From: from, To: to})
			i = j + 1
		}
		for _, d := range days {
			ss.open[d].raw, ss.open[d].rawKnown = 0, true
		}
		req = append(req, r)
	}
	if len(req) == 0 {
		return nil
	}
	slices.SortFunc(req, func(a, b matomo.SiteSpans) int { return a.IDSite - b.IDSite })
	err := sc.d.db.VisitTimes(ctx, req, func(id int, t time.Time) {
		ss := sc.st.sites[id]
		if info := ss.open[matomo.DateOf(t.In(ss.site.Loc))]; info != nil {
			info.raw++
		}
	})
	if err != nil {
		return err
	}
	sc.stats.Probes += probed
	for _, r := range req {
		ss := sc.st.sites[r.IDSite]
		for d, info := range ss.open {
			switch {
			case info.raw == 0 && info.newest.IDArchive == 0 && !sc.queuedDay(r.IDSite, d):
				ss.set(d, dsEmpty)
			case info.stale && info.archived != nil && info.raw <= *info.archived:
				// Visits went (a purge): no longer more raw than archived.
				info.stale = false
			}
		}
	}
	return nil
}

// readTouched finds the site-days whose raw visits may have changed since
// the last scan: the days of visits added to log_visit (idvisit above the
// last MAX; read as 15-minute slots per site) and the days of new
// report_to_invalidate options. An empty day is probed again, an open
// day's count is refreshed, a good day is checked for staleness (verify).
// A purge (MIN(idvisit) moved) refreshes every open day's count.
func (sc *scanCtx) readTouched(ctx context.Context) error {
	reps, err := sc.d.db.ReportsToInvalidate(ctx)
	if err != nil {
		return err
	}
	sc.reports = make(map[matomo.SiteDate]bool, len(reps))
	names := make(map[string]bool, len(reps))
	for _, r := range reps {
		names[r.Name] = true
		sc.reports[r.SiteDate] = true
		if !sc.full && !sc.st.reports[r.Name] {
			sc.touched[r.SiteDate] = true
		}
	}
	sc.st.reports = names
	if sc.full {
		return nil
	}
	prev := sc.st.visits
	if sc.vb.Min != prev.Min {
		// Raw data was purged: counts of open days and first visits moved.
		for _, ss := range sc.st.sites {
			for _, info := range ss.open {
				info.rawKnown = false
			}
		}
		for _, m := range sc.st.periodMemo {
			m.rawKnown = false
		}
		clear(sc.st.firstVisit)
		clear(sc.st.firstRead)
		clear(sc.st.segRaw)
	}
	if sc.vb.Max > prev.Max {
		// Visits are inserted with ids from AUTO_INCREMENT; one committed
		// after a higher one was read would be missed until the next full
		// scan (Matomo's tracker commits each visit on its own).
		slots, err := sc.d.db.NewVisitSlots(ctx, prev.Max, sc.vb.Max)
		if err != nil {
			return err
		}
		for _, sl := range slots {
			ss := sc.st.sites[sl.IDSite]
			if ss == nil {
				continue
			}
			from := time.Unix(sl.Slot*matomo.SlotSeconds, 0).In(ss.site.Loc)
			to := from.Add(matomo.SlotSeconds*time.Second - time.Second)
			// A visit tracked late, before the site's first one, moves
			// the first raw day back (the rule compares days, and a slot
			// lies inside one day).
			if fv, ok := sc.st.firstVisit[sl.IDSite]; sc.st.firstRead[sl.IDSite] && (!ok || from.Before(fv)) {
				sc.st.firstVisit[sl.IDSite] = from.UTC()
			}
			for _, d := range []matomo.Date{matomo.DateOf(from), matomo.DateOf(to)} {
				if d >= ss.since && d <= ss.until {
					sc.touched[matomo.SiteDate{IDSite: sl.IDSite, Date: d}] = true
				}
			}
		}
	}
	for k := range sc.touched {
		ss := sc.st.sites[k.IDSite]
		if ss == nil {
			continue
		}
		switch ss.get(k.Date) {
		case dsEmpty:
			sc.setNoArchive(ss, k.Date)
		case dsOpen:
			if info := ss.open[k.Date]; info != nil {
				info.rawKnown = false
			}
		}
	}
	return nil
}

// verifiable: the days checked for raw > archived (stale). One rule for
// every scan: the last VerifyDays of the window and the days the tracker
// remembered (report_to_invalidate). A full scan checks all of them; an
// incremental one those whose raw visits may have changed since.
func (sc *scanCtx) verifiable(ss *siteState, d matomo.Date) bool {
	return sc.inVerifyRange(ss, d) || sc.reports[matomo.SiteDate{IDSite: ss.site.ID, Date: d}]
}

// verify compares raw visits with nb_visits of the good archives of the
// verifiable days (see verifiable): the one check whose cost grows with
// traffic.
func (sc *scanCtx) verify(ctx context.Context) error {
	type cand struct {
		k  matomo.SiteDate
		id int64
	}
	byTable := map[string][]matomo.SiteDate{}
	add := func(ss *siteState, d matomo.Date) {
		if ss.get(d) == dsGood && sc.verifiable(ss, d) {
			byTable[matomo.TableFor(d)] = append(byTable[matomo.TableFor(d)], matomo.SiteDate{IDSite: ss.site.ID, Date: d})
		}
	}
	if sc.full {
		for _, ss := range sc.st.sites {
			if vd := sc.d.opt.VerifyDays; vd > 0 {
				for d := max(ss.since, ss.until.AddDays(1-vd)); d <= ss.until; d++ {
					add(ss, d)
				}
			}
		}
		for k := range sc.reports {
			if ss := sc.st.sites[k.IDSite]; ss != nil && !sc.inVerifyRange(ss, k.Date) {
				add(ss, k.Date)
			}
		}
	} else {
		for k := range sc.touched {
			if ss := sc.st.sites[k.IDSite]; ss != nil {
				add(ss, k.Date)
			}
		}
	}
	for t, keys := range byTable {
		m := map[matomo.SiteDate]*newestPair{}
		if err := sc.d.db.DoneFlagsFor(ctx, t, keys, func(f matomo.DoneFlag) { merge(m, f) }); err != nil {
			return err
		}
		var cands []cand
		ids := make([]int64, 0, len(keys))
		for _, k := range keys {
			if p := m[k]; p != nil {
				ids = append(ids, p.newest.IDArchive)
				cands = append(cands, cand{k, p.newest.IDArchive})
			}
		}
		nb, err := sc.d.db.NbVisits(ctx, t, ids)
		if err != nil {
			return err
		}
		probes := make([]matomo.Probe, len(cands))
		for i, c := range cands {
			ss := sc.st.sites[c.k.IDSite]
			s, e := matomo.DayBounds(ss.site.Loc, c.k.Date)
			probes[i] = matomo.Probe{IDSite: c.k.IDSite, From: s, To: e}
		}
		counts, err := sc.d.db.CountVisits(ctx, probes)
		if err != nil {
			return err
		}
		sc.stats.Probes += len(probes)
		for i, c := range cands {
			a := nb[c.id]
			if counts[i] > a {
				ss := sc.st.sites[c.k.IDSite]
				p := m[c.k]
				ss.set(c.k.Date, dsOpen)
				ss.open[c.k.Date] = &dayInfo{newest: p.newest, newestOK: p.ok, raw: counts[i], rawKnown: true, archived: &a, stale: true}
			}
		}
	}
	return nil
}

// unverifiable forgets staleness found on days that left the verifiable
// set (the window moved, the tracker's option went) or were queued since:
// a full scan would not check them, and one rule must give one answer.
func (sc *scanCtx) unverifiable() {
	for _, ss := range sc.st.sites {
		for d, info := range ss.open {
			// A queued day is not good, so a full scan would not check it
			// either: Matomo is rebuilding it anyway.
			if !info.stale || (sc.verifiable(ss, d) && !sc.queuedDay(ss.site.ID, d)) {
				continue
			}
			info.stale = false
			if info.newest.Good(ss.site.Loc) && !sc.queuedDay(ss.site.ID, d) {
				ss.set(d, dsGood)
			}
		}
	}
}

func (sc *scanCtx) inVerifyRange(ss *siteState, d matomo.Date) bool {
	vd := sc.d.opt.VerifyDays
	return vd > 0 && d > ss.until.AddDays(-vd)
}

// archivedVisits fills nb_visits of open days that have an archive.
func (sc *scanCtx) archivedVisits(ctx context.Context) error {
	byTable := map[string][]int64{}
	for _, ss := range sc.st.sites {
		for d, info := range ss.open {
			if a := info.newest; a.IDArchive != 0 && info.archived == nil {
				byTable[matomo.TableFor(d)] = append(byTable[matomo.TableFor(d)], a.IDArchive)
			}
		}
	}
	for t, ids := range byTable {
		nb, err := sc.d.db.NbVisits(ctx, t, ids)
		if err != nil {
			return err
		}
		for _, ss := range sc.st.sites {
			for d, info := range ss.open {
				if matomo.TableFor(d) != t || info.newest.IDArchive == 0 || info.archived != nil {
					continue
				}
				if v, ok := nb[info.newest.IDArchive]; ok {
					info.archived = &v
				} else if info.newest.Value != matomo.DoneError && info.newest.Value != matomo.DonePartial {
					// A finished archive without nb_visits found no visit;
					// a crashed or partial one simply has no count.
					zero := int64(0)
					info.archived = &zero
				}
			}
		}
	}
	return nil
}
