package main

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/matomod/matomod/internal/matomo"
)

const sharedQueueOption = "SharedSiteIdsToArchive_AllWebsites"

// archiveRun is one core:archive.
type archiveRun struct {
	a           *app
	st          *store
	cfg         *matomo.INIConfig
	in          *input
	ttl         time.Duration
	counts      map[period]map[int]visitCounts
	archs       map[archKey]map[string]archive // newest archive per done name, per batch
	batchSize   int
	maxArchives int
	archives    int
	requests    int
}

func runArchive(a *app, in *input) int {
	ctx := context.Background()
	cfg, err := matomo.ReadConfigINI(a.dir)
	if err != nil {
		fmt.Fprintln(a.errw, "matomosim:", err)
		return 1
	}
	if cfg.MaintenanceMode {
		a.info("Archiving won't run because maintenance mode is enabled")
		a.hang()
		return 0
	}
	st, err := a.openStore(ctx, cfg)
	if err != nil {
		// PHP dies while bootstrapping, outside Symfony: exit 255.
		const pdo = "libs/Zend/Db/Adapter/Pdo/Abstract.php"
		return a.fail(&consoleErr{file: pdo, line: 119, msg: pdoMessage(err), exit: 255,
			prev: &consoleErr{file: pdo, line: 108, msg: pdoMessage(err)}})
	}
	defer st.db.Close()
	if a.knobs.runlog {
		id, err := runlogStart(ctx, st.db, a.pid)
		if err != nil {
			return a.dbFail(err)
		}
		defer runlogEnd(context.Background(), st.db, id)
	}
	if a.knobs.spawnChild != "" {
		child, err := a.spawnChild()
		if err != nil {
			fmt.Fprintln(a.errw, "matomosim: MATOMOSIM_SPAWN_CHILD:", err)
			return 2
		}
		defer func() {
			child.Process.Kill()
			child.Wait()
		}()
	}
	r := &archiveRun{a: a, st: st, cfg: cfg, in: in, counts: map[period]map[int]visitCounts{}, batchSize: 3}
	if err := r.main(ctx); err != nil {
		return a.dbFail(err)
	}
	return 0
}

func (r *archiveRun) intOpt(name string, def int) int {
	if v := strings.TrimSpace(r.in.str(name, "")); v != "" {
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}

func (r *archiveRun) main(ctx context.Context) error {
	a, st := r.a, r.st
	r.ttl = st.todayTTL(ctx, a.dir)
	r.batchSize = max(1, r.intOpt("concurrent-requests-per-website", 3))
	r.maxArchives = r.intOpt("max-archives-to-process", 0)
	maxSites := r.intOpt("max-websites-to-process", 0)
	last, hasLast, err := st.option(ctx, "LastCompletedFullArchiving")
	if err != nil {
		return err
	}
	a.section("INIT")
	a.info("Running Matomo %s as Super User", a.version)
	a.section("NOTES")
	a.info("- Async process archiving supported, using CliMulti.")
	a.info("- Reports for today will be processed at most every %d seconds. You can change this value in Matomo UI > Settings > General Settings.", int(r.ttl.Seconds()))
	if maxSites > 0 {
		a.info("- Maximum %d websites will be processed.", maxSites)
	}
	if r.maxArchives > 0 {
		a.info("- Maximum %d archives will be processed (soft limit).", r.maxArchives)
	}
	if ts, err := strconv.ParseInt(strings.TrimSpace(last), 10, 64); hasLast && err == nil {
		a.info("- Archiving was last executed without error %s ago.", prettySeconds(max(0, a.now().Unix()-ts)))
	}
	a.noise()
	if err := st.setOption(ctx, "LastFullArchivingStartTime", strconv.FormatInt(a.now().Unix(), 10)); err != nil {
		return err
	}
	sites, err := st.sites(ctx)
	if err != nil {
		return err
	}
	byID := map[int]site{}
	var all []int
	skip := map[int]bool{}
	for _, id := range idList(r.in.str("skip-idsites", "")) {
		skip[id] = true
	}
	for _, s := range sites {
		byID[s.id] = s
		if !skip[s.id] {
			all = append(all, s.id)
		}
	}
	var q siteQueue
	if force := idList(r.in.str("force-idsites", "")); len(force) > 0 {
		// Matomo counts the ids given, then keeps those that exist.
		a.info("- Will process %d websites (--force-idsites)", len(force))
		var list []int
		for _, id := range force {
			if _, ok := byID[id]; ok && !skip[id] {
				list = append(list, id)
			}
		}
		a.info("- Will process specified sites: %s", joinIDs(list))
		q = &fixedQueue{ids: list, n: len(list)}
	} else if r.in.has("force-all-websites") {
		a.info("- Will process all %d websites", len(all))
		q = &fixedQueue{ids: all, n: len(all)}
	} else {
		h := md5.Sum([]byte(r.cfg.DB.DBName + "\x00" + st.prefix)) // lock names are server-wide, max 64 chars
		sq := &sharedQueue{st: st, lock: "matomosim:SharedSiteIds:" + hex.EncodeToString(h[:8])}
		continuing, err := sq.init(ctx, all, a.now())
		if err != nil {
			return err
		}
		if continuing {
			a.info("- Continuing ongoing archiving run by pulling from shared idSite queue.")
		}
		q = sq
	}
	a.section("START")
	a.info("Starting Matomo reports archiving...")
	timer := time.Now()
	if r.concurrencyOK() {
		if n, err := st.resetFailed(ctx, a.now()); err != nil {
			return err
		} else if n > 0 {
			a.info("Found %d failed jobs (ts_invalidated older than 1 day), resetting status to try them again.", n)
		}
		if a.knobs.spawnChild != "" {
			a.info("Spawned a climulti:request child (MATOMOSIM_SPAWN_CHILD).")
		}
		done := 0
		for {
			if maxSites > 0 && done >= maxSites {
				a.info("Maximum number of websites to process per execution has been reached. Stopping.")
				break
			}
			id, ok, err := q.next(ctx)
			if err != nil {
				return err
			}
			if !ok {
				break
			}
			s, exists := byID[id]
			if !exists {
				continue
			}
			done++
			stop, err := r.site(ctx, s, done, q.total())
			if err != nil {
				return err
			}
			if stop {
				a.info("Maximum number of archives to process per execution has been reached.")
				break
			}
		}
		a.hang()
		a.info("Done archiving!")
		a.section("SUMMARY")
		a.info("Processed %d archives.", r.archives)
		a.info("Total API requests: %d", r.requests)
		el := time.Since(timer)
		a.info("done: %d req, %d ms, no error", r.requests, el.Milliseconds())
		a.info("Time elapsed: %.3fs", el.Seconds())
	}
	a.section("SCHEDULED TASKS")
	if r.in.has("disable-scheduled-tasks") {
		a.info("Scheduled tasks are disabled with --disable-scheduled-tasks")
	} else {
		a.info("Starting Scheduled tasks... ")
		a.info("done")
		a.section("")
	}
	return st.setOption(ctx, "LastCompletedFullArchiving", strconv.FormatInt(a.now().Unix(), 10))
}

// concurrencyOK applies --concurrent-archivers (default 3) the way Matomo
// does: count running "console … core:archive" processes, itself included.
func (r *archiveRun) concurrencyOK() bool {
	limit := r.intOpt("concurrent-archivers", 3)
	if limit <= 0 {
		return true
	}
	n := countArchivers(filepath.Join(r.a.dir, "console"))
	if n > limit {
		r.a.info("Archiving will stop now because %d archivers are already running and max %d are supposed to run at once.", n, limit)
		r.a.info("Reached maximum concurrent archivers allowed (%d), aborting run.", limit)
		return false
	}
	r.a.info("%d out of %d archivers running currently", n, limit)
	return true
}

// countArchivers scans /proc like Matomo scans `ps`: a process counts when
// its command line holds "console " and " core:archive". Unlike Matomo (which
// counts host-wide), only processes running this Matomo's console count, so
// parallel tests with separate Matomo directories do not see each other.
func countArchivers(console string) int {
	ents, _ := os.ReadDir("/proc")
	n := 0
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		raw, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || len(raw) == 0 {
			continue
		}
		args := strings.Split(strings.TrimRight(string(raw), "\x00"), "\x00")
		joined := strings.Join(args, " ")
		if !strings.Contains(joined, " core:archive") || !strings.Contains(joined, "console ") {
			continue
		}
		cwd, _ := os.Readlink("/proc/" + e.Name() + "/cwd")
		same := false
		for _, arg := range args {
			for _, f := range strings.Fields(arg) { // also `sh -c "php console core:archive"`
				if !filepath.IsAbs(f) {
					f = filepath.Join(cwd, f)
				}
				same = same || filepath.Clean(f) == console
			}
		}
		if same {
			n++
		}
	}
	return n
}

func prettySeconds(s int64) string {
	switch {
	case s >= 86400:
		return fmt.Sprintf("%d days %d hours", s/86400, s%86400/3600)
	case s >= 3600:
		return fmt.Sprintf("%d hours %d min", s/3600, s%3600/60)
	case s >= 60:
		return fmt.Sprintf("%d min %ds", s/60, s%60)
	}
	return fmt.Sprintf("%ds", s)
}

// idList parses "1,3,abc": non-numbers are dropped, as Matomo does.
func idList(v string) []int {
	var out []int
	seen := map[int]bool{}
	for _, p := range strings.Split(v, ",") {
		if n, err := strconv.Atoi(strings.TrimSpace(p)); err == nil && n > 0 && !seen[n] {
			seen[n] = true
			out = append(out, n)
		}
	}
	return out
}

func joinIDs(ids []int) string {
	s := make([]string, len(ids))
	for i, id := range ids {
		s[i] = strconv.Itoa(id)
	}
	return strings.Join(s, ", ")
}

type siteQueue interface {
	next(ctx context.Context) (int, bool, error)
	total() int
}

type fixedQueue struct {
	ids []int
	n   int
}

func (q *fixedQueue) next(context.Context) (int, bool, error) {
	if len(q.ids) == 0 {
		return 0, false, nil
	}
	id := q.ids[0]
	q.ids = q.ids[1:]
	return id, true, nil
}

func (q *fixedQueue) total() int { return q.n }

// sharedQueue is Matomo's SharedSiteIds: the sites still to do live in an
// option row, so a second core:archive joins the run by popping from it.
type sharedQueue struct {
	st   *store
	lock string
	n    int
}

func (q *sharedQueue) init(ctx context.Context, ids []int, now time.Time) (continuing bool, err error) {
	err = q.st.withNamedLock(ctx, q.lock, func() error {
		v, _, err := q.st.option(ctx, sharedQueueOption)
		if err != nil {
			return err
		}
		if cur := idList(v); len(cur) > 0 {
			continuing, q.n = true, len(cur)
			return nil
		}
		q.n = len(ids)
		if len(ids) == 0 {
			return nil
		}
		if err := q.st.setOption(ctx, sharedQueueOption+"_ResetQueueTime", strconv.FormatInt(now.UnixMilli(), 10)); err != nil {
			return err
		}
		return q.st.setOption(ctx, sharedQueueOption, strings.ReplaceAll(joinIDs(ids), " ", ""))
	})
	return continuing, err
}

func (q *sharedQueue) next(ctx context.Context) (id int, ok bool, err error) {
	err = q.st.withNamedLock(ctx, q.lock, func() error {
		v, _, err := q.st.option(ctx, sharedQueueOption)
		if err != nil {
			return err
		}
		cur := idList(v)
		if len(cur) == 0 {
			return nil
		}
		id, ok = cur[0], true
		if len(cur) == 1 {
			return q.st.deleteOption(ctx, sharedQueueOption)
		}
		return q.st.setOption(ctx, sharedQueueOption, strings.ReplaceAll(joinIDs(cur[1:]), " ", ""))
	})
	return id, ok, err
}

func (q *sharedQueue) total() int { return q.n }

// site archives one site: queue today/yesterday/remembered dates, then work
// the site's archive_invalidations rows in batches. stop reports that
// --max-archives-to-process was reached.
func (r *archiveRun) site(ctx context.Context, s site, k, n int) (stop bool, err error) {
	a, st := r.a, r.st
	a.info("Start processing archives for site %d.", s.id)
	t0 := time.Now()
	if err := r.invalidateRecent(ctx, s); err != nil {
		return false, err
	}
	requests := 0
	excluded := map[int64]bool{}
	for {
		batch, err := r.nextBatch(ctx, s, excluded)
		if err != nil {
			return false, err
		}
		if len(batch) == 0 {
			break
		}
		r.archs = map[archKey]map[string]archive{}
		started := a.now()
		if err := st.startInvalidations(ctx, batch, started); err != nil {
			return false, err
		}
		bt := time.Now()
		visits := make([]int64, len(batch))
		for i, row := range batch {
			if visits[i], err = r.ensure(ctx, s, row.key.p, row.key.name); err != nil {
				return false, err
			}
			time.Sleep(a.knobs.sleepPerArchive)
		}
		// The batch ran "in parallel": its lines come together and share one
		// elapsed time, as with CliMulti.
		el := time.Since(bt).Seconds()
		for i, row := range batch {
			seg, plugin := describe(row.key.name)
			a.info("Archived website id %d, period = %s, date = %s, segment = '%s', %s%d visits found. Time elapsed: %.3fs",
				s.id, row.key.p.label(), row.key.p.start, seg, plugin, visits[i], el)
			if err := st.finishInvalidation(ctx, row, started); err != nil {
				return false, err
			}
		}
		requests += len(batch)
		r.archives += len(batch)
		r.requests += len(batch)
		if r.maxArchives > 0 && r.archives >= r.maxArchives {
			return true, nil
		}
	}
	a.info("Finished archiving for site %d, %d API requests, Time elapsed: %.3fs [%d / %d done]", s.id, requests, time.Since(t0).Seconds(), k, n)
	return false, nil
}

// nextBatch picks up to batchSize queued rows in Matomo's order (date1 desc,
// period asc), skipping rows whose period overlaps one already in the batch.
// Rows for future periods, periods before the site existed or periods
// without raw visits are deleted without output and take no slot.
func (r *archiveRun) nextBatch(ctx context.Context, s site, excluded map[int64]bool) ([]queueRow, error) {
	st := r.st
	rows, err := st.queued(ctx, s.id, 0)
	if err != nil {
		return nil, err
	}
	running, err := st.queued(ctx, s.id, 1) // other archivers' (or crashed runs') rows
	if err != nil {
		return nil, err
	}
	inProgress := map[queueKey]int64{}
	for _, x := range running {
		inProgress[x.key] = x.id
	}
	today := matomo.Today(s.loc, r.a.now())
	var batch []queueRow
	for _, row := range rows {
		if excluded[row.id] {
			continue
		}
		p := row.key.p
		skip := p.typ < matomo.PeriodDay || p.typ > matomo.PeriodYear || p.start > today || p.end < s.created
		if !skip {
			c, err := r.count(ctx, s, p)
			if err != nil {
				return nil, err
			}
			skip = c.all == 0
		}
		if skip {
			if err := st.deleteInvalidation(ctx, row.id); err != nil {
				return nil, err
			}
			continue
		}
		if other, ok := inProgress[row.key]; ok {
			// Same archive in progress elsewhere: a newer running row makes
			// this one redundant; an older one only postpones it.
			excluded[row.id] = true
			if other > row.id {
				if err := st.deleteInvalidation(ctx, row.id); err != nil {
					return nil, err
				}
			}
			continue
		}
		clash := false
		for _, b := range batch {
			clash = clash || b.key.p.intersects(p)
		}
		if clash {
			continue
		}
		batch = append(batch, row)
		if len(batch) >= r.batchSize {
			break
		}
	}
	return batch, nil
}

// describe renders a done flag name's segment and plugin for the log line.
func describe(name string) (segment, plugin string) {
	rest := strings.TrimPrefix(name, "done")
	hash, plug, _ := strings.Cut(rest, ".")
	if hash != "" {
		segment = hash
		if def, ok := segmentDefs[hash]; ok {
			segment = def
		}
	}
	if plug != "" {
		plugin = "plugin = " + plug + ", "
	}
	return segment, plugin
}

// invalidateRecent is Matomo's per-site step before working the queue:
// dates the tracker remembered, then today and yesterday when they had
// visits and their archive is not usable.
func (r *archiveRun) invalidateRecent(ctx context.Context, s site) error {
	a, st := r.a, r.st
	now := a.now()
	today := matomo.Today(s.loc, now)
	rem, err := st.remembered(ctx, s.id)
	if err != nil {
		return err
	}
	var dates []matomo.Date
	seen := map[matomo.Date]bool{}
	for _, d := range rem {
		if !seen[d] {
			seen[d] = true
			dates = append(dates, d)
		}
	}
	sort.Slice(dates, func(i, j int) bool { return dates[i] > dates[j] })
	for _, d := range dates {
		queued, err := r.invalidateDay(ctx, s, d, false)
		if err != nil {
			return err
		}
		seen[d] = queued
	}
	for name, d := range rem { // a date skipped for a fresh archive stays remembered
		if seen[d] {
			if err := st.deleteOption(ctx, name); err != nil {
				return err
			}
		}
	}
	for _, rd := range []struct {
		label string
		d     matomo.Date
	}{{"today", today}, {"yesterday", today.AddDays(-1)}} {
		c, err := r.count(ctx, s, periodOf(matomo.PeriodDay, rd.d))
		if err != nil {
			return err
		}
		if c.all == 0 {
			continue
		}
		a.info("  Will invalidate archived reports for %s in site ID = %d's timezone (%s 00:00:00).", rd.label, s.id, rd.d)
		if _, err := r.invalidateDay(ctx, s, rd.d, rd.label == "yesterday"); err != nil {
			return err
		}
	}
	return st.setOption(ctx, "CronArchive.lastInvalidationTime", strconv.FormatInt(now.Unix(), 10))
}

// invalidateDay queues day d unless a usable archive exists: done 1 (or 4
// for today) archived within the TTL (no TTL for yesterday), and, for the
// UTC yesterday, archived on the site's current day.
func (r *archiveRun) invalidateDay(ctx context.Context, s site, d matomo.Date, noTTL bool) (bool, error) {
	now := r.a.now()
	today := matomo.Today(s.loc, now)
	archs, err := r.st.newestAll(ctx, s.id, periodOf(matomo.PeriodDay, d))
	if err != nil {
		return false, err
	}
	arch, ok := archs["done"]
	usable := ok && (arch.value == matomo.DoneOK || arch.value == matomo.DoneOKTemporary ||
		(d == today && arch.value == matomo.DoneInvalidated))
	if usable && !noTTL && arch.ts.Before(now.Add(-r.ttl)) {
		usable = false
	}
	if usable && d == matomo.DateOf(now).AddDays(-1) && matomo.DateOf(arch.ts.UTC()) != today {
		usable = false // the day changed since it was archived
	}
	if usable {
		return false, nil
	}
	_, err = r.a.invalidate(ctx, r.st, r.cfg, []site{s}, matomo.PeriodDay, []matomo.Date{d}, false, "done", false)
	return err == nil, err
}

type archKey struct {
	idsite int
	p      period
}

func (r *archiveRun) count(ctx context.Context, s site, p period) (visitCounts, error) {
	if c, ok := r.counts[p][s.id]; ok {
		return c, nil
	}
	from, to := p.bounds(s.loc)
	c, err := r.st.visits(ctx, s.id, from, to)
	if err != nil {
		return c, err
	}
	if r.counts[p] == nil {
		r.counts[p] = map[int]visitCounts{}
	}
	r.counts[p][s.id] = c
	return c, nil
}

// ensure returns nb_visits of a period's archive named name, reusing a usable
// archive or building one (from raw visits for a day, from its subperiods
// otherwise, building missing subperiods silently). Periods without raw
// visits, in the future or before the site existed get no archive.
func (r *archiveRun) ensure(ctx context.Context, s site, p period, name string) (int64, error) {
	now := r.a.now()
	today := matomo.Today(s.loc, now)
	if p.start > today || p.end < s.created {
		return 0, nil
	}
	c, err := r.count(ctx, s, p)
	if err != nil || c.all == 0 {
		return 0, err
	}
	k := archKey{s.id, p}
	if r.archs[k] == nil {
		m, err := r.st.newestAll(ctx, s.id, p)
		if err != nil {
			return 0, err
		}
		r.archs[k] = m
	}
	arch, ok := r.archs[k][name]
	// Done 1 is reused even when stale; done 4 is not. A period holding
	// today must also be younger than the today TTL.
	if ok && (arch.value == matomo.DoneOK || arch.value == matomo.DoneOKTemporary) &&
		(!p.contains(today) || !arch.ts.Before(now.Add(-r.ttl))) {
		return arch.nb, nil
	}
	var nb int64
	if p.typ == matomo.PeriodDay {
		switch {
		case strings.HasPrefix(name, "done90a5a511e1974bca37613b6daec137ba"):
			nb = c.fresh
		case strings.HasPrefix(name, "donefea44bece172bc9696ae57c26888bf8a"):
			nb = c.returning
		default:
			nb = c.all
		}
	} else {
		for _, sub := range p.subperiods() {
			v, err := r.ensure(ctx, s, sub, name)
			if err != nil {
				return 0, err
			}
			nb += v
		}
	}
	at := r.a.now()
	id, err := r.st.write(ctx, s.id, p, name, nb, at, ok)
	if err != nil {
		return 0, err
	}
	r.archs[k][name] = archive{id: id, value: matomo.DoneOK, ts: at.Truncate(time.Second), nb: nb}
	if name == "done" { // VisitFrequency asks for its two segment archives
		for _, seg := range []string{segNew, segReturning} {
			if _, err := r.ensure(ctx, s, p, seg); err != nil {
				return 0, err
			}
		}
	}
	return nb, nil
}
