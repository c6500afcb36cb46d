package repair

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/matomod/matomod/internal/archiver"
	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
)

// SegmentOutcome is what happened to one stored segment's site-day.
type SegmentOutcome struct {
	DayOutcome
	Segment string `json:"segment"`
}

// SegmentInvalidateArgs invalidates the day archives of one stored
// segment for days from..to of one site: the day invalidation of
// archiver.InvalidateArgs plus --segment=<definition> (Matomo then queues
// rows named done<hash>, and their parent periods). Never
// --ignore-log-deletion-limit.
func SegmentInvalidateArgs(idsite int, from, to matomo.Date, definition string) ([]string, error) {
	if definition == "" {
		return nil, fmt.Errorf("core:invalidate-report-data: empty segment definition for site %d: a segment repair names its segment", idsite)
	}
	args, err := archiver.InvalidateArgs(idsite, from.String(), to.String())
	if err != nil {
		return nil, err
	}
	return append(args, "--segment="+definition), nil
}

// SegmentPeriodInvalidateArgs invalidates the given weeks, months or
// years (each named by its first day) of one stored segment of one site:
// PeriodInvalidateArgs plus --segment=<definition>. Never
// --ignore-log-deletion-limit.
func SegmentPeriodInvalidateArgs(idsite int, period string, dates []matomo.Date, definition string) ([]string, error) {
	if definition == "" {
		return nil, fmt.Errorf("core:invalidate-report-data: empty segment definition for site %d: a segment repair names its segment", idsite)
	}
	args, err := PeriodInvalidateArgs(idsite, period, dates)
	if err != nil {
		return nil, err
	}
	return append(args, "--segment="+definition), nil
}

// segPeriodJob is one invalidation command: one site's weeks, months or
// years of one segment.
type segPeriodJob struct {
	periodJob
	seg matomo.StoredSegment
}

func (j segPeriodJob) args() ([]string, error) {
	var dates []matomo.Date
	for _, g := range j.gaps {
		dates = append(dates, g.Date)
	}
	return SegmentPeriodInvalidateArgs(j.idsite, j.period, dates, j.seg.Definition)
}

// segRange is consecutive repairable days of one site and segment.
type segRange struct {
	gapdetect.Range
	seg matomo.StoredSegment
}

// RepairSegments repairs the repairable segment gaps (Result.SegmentGaps):
// for each site and segment, the consecutive days are invalidated with
// --periods=day --segment=<definition>, and the weeks, months and years
// with --periods=week|month|year (one --dates per period, exactly those)
// --segment=<definition>; one core:archive of those sites rebuilds them;
// then the done<hash> rows say which were fixed (the newest of the day or
// period is Good and written by this repair). The safety rules are the
// scan's (the gap's Repairable); at most MaxDays segment site-days and
// periods (each counts one), newest first; a segment that is no longer
// stored, auto-archived and for that site is not touched.
func (r *Repairer) RepairSegments(ctx context.Context, gaps []gapdetect.Gap) (*Report, error) {
	rep := &Report{DryRun: r.Opt.DryRun, Counts: map[string]int{}}
	var todo []gapdetect.Gap
	for _, g := range gaps {
		if !g.IsSegment() {
			continue
		}
		if !g.Repairable {
			rep.addSegment(g, SkippedUnsafe, g.Reason)
			continue
		}
		todo = append(todo, g)
	}
	if len(todo) == 0 {
		sortSegments(rep.Segments)
		return rep, nil
	}
	segs, err := r.DB.StoredSegments(ctx)
	if err != nil {
		return nil, err
	}
	byDef := map[string]matomo.StoredSegment{}
	for _, s := range segs {
		if _, dup := byDef[s.Definition]; !dup {
			byDef[s.Definition] = s
		}
	}
	// Newest first within the budget, as for days (a period by its last
	// day).
	slices.SortStableFunc(todo, func(a, b gapdetect.Gap) int {
		if a.Date2 != b.Date2 {
			return int(b.Date2 - a.Date2)
		}
		if a.Date != b.Date {
			return int(b.Date - a.Date)
		}
		return a.IDSite - b.IDSite
	})
	if r.Opt.MaxDays >= 0 && len(todo) > r.Opt.MaxDays {
		rep.Deferred = len(todo) - r.Opt.MaxDays
		todo = todo[:r.Opt.MaxDays]
	}
	gapdetect.SortSegmentGaps(todo)
	var ranges []segRange
	var jobs []segPeriodJob
	kind := map[string]string{}
	for _, g := range todo {
		s, ok := byDef[g.Segment]
		if !ok || !s.ForSite(g.IDSite) {
			rep.addSegment(g, SkippedUnsafe, "the segment is no longer a stored auto-archived segment of this site: Matomo would not archive it")
			continue
		}
		if g.Period != "" && g.Period != gapdetect.PeriodDay {
			if n := len(jobs); n > 0 && jobs[n-1].idsite == g.IDSite && jobs[n-1].seg.Hash == s.Hash && jobs[n-1].period == g.Period {
				jobs[n-1].gaps = append(jobs[n-1].gaps, g)
				continue
			}
			jobs = append(jobs, segPeriodJob{periodJob: periodJob{idsite: g.IDSite, period: g.Period, gaps: []gapdetect.Gap{g}}, seg: s})
			continue
		}
		kind[segKey(g.IDSite, s.Hash, g.Date)] = string(g.Kind)
		if n := len(ranges); n > 0 && ranges[n-1].IDSite == g.IDSite && ranges[n-1].seg.Hash == s.Hash && ranges[n-1].To.AddDays(1) == g.Date {
			ranges[n-1].To = g.Date
			continue
		}
		ranges = append(ranges, segRange{Range: gapdetect.Range{IDSite: g.IDSite, From: g.Date, To: g.Date}, seg: s})
	}
	if len(ranges) == 0 && len(jobs) == 0 {
		sortSegments(rep.Segments)
		return rep, nil
	}
	var sites []int
	for _, rg := range ranges {
		args, err := SegmentInvalidateArgs(rg.IDSite, rg.From, rg.To, rg.seg.Definition)
		if err != nil {
			return nil, err
		}
		rep.Commands = append(rep.Commands, r.Console.Argv(args...))
		if !slices.Contains(sites, rg.IDSite) {
			sites = append(sites, rg.IDSite)
		}
	}
	for _, j := range jobs {
		args, err := j.args()
		if err != nil {
			return nil, err
		}
		rep.Commands = append(rep.Commands, r.Console.Argv(args...))
		if !slices.Contains(sites, j.idsite) {
			sites = append(sites, j.idsite)
		}
	}
	args, err := archiver.ArchiveArgs(r.Opt.URL, sites, r.Opt.ExtraArgs)
	if err != nil {
		return nil, err
	}
	rep.Commands = append(rep.Commands, r.Console.Argv(args...))
	outcome := func(rg segRange, d matomo.Date, result, reason string) {
		g := gapdetect.Gap{IDSite: rg.IDSite, Period: gapdetect.PeriodDay, Date: d, Date2: d,
			Kind: gapdetect.Kind(kind[segKey(rg.IDSite, rg.seg.Hash, d)]), Segment: rg.seg.Definition}
		rep.addSegment(g, result, reason)
	}
	if r.Opt.DryRun {
		for _, rg := range ranges {
			for d := rg.From; d <= rg.To; d++ {
				outcome(rg, d, "planned", "")
			}
		}
		for _, j := range jobs {
			for _, g := range j.gaps {
				rep.addSegment(g, "planned", "")
			}
		}
		sortSegments(rep.Segments)
		return rep, nil
	}

	log := r.log()
	runID := archiver.NewRunID()
	started, err := r.DB.Now(ctx)
	if err != nil {
		return nil, err
	}
	failed := map[string]string{}
	var archiveSites []int
	for _, rg := range ranges {
		args, _ := SegmentInvalidateArgs(rg.IDSite, rg.From, rg.To, rg.seg.Definition)
		log.Info("invalidating segment gap days", "event", "repair_started", "run_id", runID, "idsite", rg.IDSite,
			"segment", rg.seg.Definition, "from", rg.From.String(), "to", rg.To.String(), "days", rg.Days())
		res := r.Console.Run(ctx, r.runOpts(runID), args...)
		if res.Outcome == archiver.OutcomeSkipped || ctx.Err() != nil {
			return nil, fmt.Errorf("core:invalidate-report-data did not run (%s): nothing was changed for the remaining segment days; retry when Matomo is out of maintenance mode", firstNonEmpty(res.SkipReason, errString(ctx.Err())))
		}
		// The exit code does not say what happened: look for the queue rows.
		queued, err := r.DB.SegmentDayInvalidations(ctx, rg.From, rg.To, []string{rg.seg.Hash})
		if err != nil {
			return nil, fmt.Errorf("checking the segment invalidations of site %d: %w", rg.IDSite, err)
		}
		have := map[matomo.Date]bool{}
		for _, q := range queued {
			if q.IDSite == rg.IDSite {
				have[q.Date] = true
			}
		}
		for d := rg.From; d <= rg.To; d++ {
			if have[d] {
				rep.Invalidations++
				continue
			}
			failed[segKey(rg.IDSite, rg.seg.Hash, d)] = notQueued("segment day", d, res)
		}
		if len(have) > 0 && !slices.Contains(archiveSites, rg.IDSite) {
			archiveSites = append(archiveSites, rg.IDSite)
		}
	}
	pfailed := map[string]string{}
	for _, j := range jobs {
		args, _ := j.args()
		first, last := j.gaps[0].Date, j.gaps[0].Date
		for _, g := range j.gaps {
			first, last = min(first, g.Date), max(last, g.Date)
		}
		log.Info("invalidating segment gap periods", "event", "repair_started", "run_id", runID, "idsite", j.idsite,
			"segment", j.seg.Definition, "period", j.period, "from", first.String(), "to", last.String(), "periods", len(j.gaps))
		res := r.Console.Run(ctx, r.runOpts(runID), args...)
		if res.Outcome == archiver.OutcomeSkipped || ctx.Err() != nil {
			return nil, fmt.Errorf("core:invalidate-report-data did not run (%s): nothing was changed for the remaining segment periods; retry when Matomo is out of maintenance mode", firstNonEmpty(res.SkipReason, errString(ctx.Err())))
		}
		// The exit code does not say what happened: look for the queue rows.
		queued, err := r.DB.SegmentPeriodInvalidations(ctx, first, last, []string{j.seg.Hash})
		if err != nil {
			return nil, fmt.Errorf("checking the segment invalidations of site %d: %w", j.idsite, err)
		}
		have := map[string]bool{}
		for _, q := range queued {
			if q.IDSite == j.idsite && gapdetect.PeriodName(q.Period) == j.period {
				have[segKey(j.idsite, j.seg.Hash, q.Date)] = true
			}
		}
		any := false
		for _, g := range j.gaps {
			if have[segKey(j.idsite, j.seg.Hash, g.Date)] {
				rep.Invalidations++
				any = true
				continue
			}
			pfailed[segPeriodKey(j.idsite, j.seg.Hash, j.period, g.Date)] = notQueued("segment "+j.period, g.Date, res)
		}
		if any && !slices.Contains(archiveSites, j.idsite) {
			archiveSites = append(archiveSites, j.idsite)
		}
	}
	if len(archiveSites) > 0 {
		log.Info("archiving invalidated segment days", "event", "repair_archiving", "run_id", runID, "sites", fmt.Sprint(archiveSites))
		res := r.Console.ArchiveSites(ctx, r.runOpts(runID), r.Opt.URL, archiveSites, r.Opt.ExtraArgs)
		rep.Archive = &res
	}
	good, err := r.segmentsRebuilt(ctx, ranges, started)
	if err != nil {
		return nil, fmt.Errorf("checking the rebuilt segment archives: %w", err)
	}
	pgood, err := r.segmentPeriodsRebuilt(ctx, jobs, started)
	if err != nil {
		return nil, fmt.Errorf("checking the rebuilt segment archives: %w", err)
	}
	for _, j := range jobs {
		for _, g := range j.gaps {
			k := segPeriodKey(j.idsite, j.seg.Hash, j.period, g.Date)
			result, reason := Repaired, ""
			if why, bad := pfailed[k]; bad {
				result, reason = FailedResult, why
			} else if !pgood[k] {
				result, reason = FailedResult, "no complete done"+j.seg.Hash+" archive was written for this "+j.period
				if a := rep.Archive; a != nil && a.Outcome != archiver.OutcomeSuccess {
					reason += fmt.Sprintf(" (core:archive %s, exit code %d: %s)", a.Outcome, a.ExitCode, firstNonEmpty(a.SkipReason, a.FirstError, errString(a.Err)))
				}
			}
			rep.addSegment(g, result, reason)
			plog := log.With("run_id", runID, "idsite", j.idsite, "period", j.period, "date", g.Date.String(), "segment", j.seg.Definition)
			if result == Repaired {
				plog.Info("segment gap repaired", "event", "repair_finished", "kind", string(g.Kind))
			} else {
				plog.Error("segment gap not repaired", "event", "repair_failed", "kind", string(g.Kind), "reason", reason)
			}
		}
	}
	for _, rg := range ranges {
		for d := rg.From; d <= rg.To; d++ {
			k := segKey(rg.IDSite, rg.seg.Hash, d)
			result, reason := Repaired, ""
			if why, bad := failed[k]; bad {
				result, reason = FailedResult, why
			} else if !good[k] {
				result, reason = FailedResult, "no complete done"+rg.seg.Hash+" archive was written for this day"
				if a := rep.Archive; a != nil && a.Outcome != archiver.OutcomeSuccess {
					reason += fmt.Sprintf(" (core:archive %s, exit code %d: %s)", a.Outcome, a.ExitCode, firstNonEmpty(a.SkipReason, a.FirstError, errString(a.Err)))
				}
			}
			outcome(rg, d, result, reason)
			dlog := log.With("run_id", runID, "idsite", rg.IDSite, "date", d.String(), "segment", rg.seg.Definition)
			if result == Repaired {
				dlog.Info("segment gap repaired", "event", "repair_finished", "kind", kind[k])
			} else {
				dlog.Error("segment gap not repaired", "event", "repair_failed", "kind", kind[k], "reason", reason)
			}
		}
	}
	sortSegments(rep.Segments)
	return rep, nil
}

// segmentsRebuilt returns the site-days (segKey) whose newest done<hash>
// day archive is Good and written at or after since (DB clock).
func (r *Repairer) segmentsRebuilt(ctx context.Context, ranges []segRange, since time.Time) (map[string]bool, error) {
	want := map[string]bool{}
	tables := map[string][]string{} // table → hashes
	for _, rg := range ranges {
		for d := rg.From; d <= rg.To; d++ {
			want[segKey(rg.IDSite, rg.seg.Hash, d)] = true
			addHash(tables, matomo.TableFor(d), rg.seg.Hash)
		}
	}
	return r.segmentRebuilt(ctx, tables, want, r.DB.SegmentDoneFlags,
		func(h string, f matomo.DoneFlag) string { return segKey(f.IDSite, h, f.Date) }, since)
}

// segmentPeriodsRebuilt returns the periods (segPeriodKey) of jobs whose
// newest done<hash> archive of that period is Good (complete: written
// after the period's last local day) and written at or after since (DB
// clock). A period's rows live in the table of its first day.
func (r *Repairer) segmentPeriodsRebuilt(ctx context.Context, jobs []segPeriodJob, since time.Time) (map[string]bool, error) {
	if len(jobs) == 0 {
		return map[string]bool{}, nil
	}
	want := map[string]bool{}
	tables := map[string][]string{} // table → hashes
	for _, j := range jobs {
		for _, g := range j.gaps {
			want[segPeriodKey(j.idsite, j.seg.Hash, j.period, g.Date)] = true
			addHash(tables, matomo.TableFor(g.Date), j.seg.Hash)
		}
	}
	return r.segmentRebuilt(ctx, tables, want, r.DB.SegmentPeriodFlags,
		func(h string, f matomo.DoneFlag) string {
			return segPeriodKey(f.IDSite, h, gapdetect.PeriodName(f.Period), f.Date)
		}, since)
}

func addHash(tables map[string][]string, t, hash string) {
	if !slices.Contains(tables[t], hash) {
		tables[t] = append(tables[t], hash)
	}
}

// segmentRebuilt reads the segment done rows of tables (table → hashes)
// with read, keeps the newest of each wanted key, and returns the keys
// whose newest archive is Good and written at or after since.
func (r *Repairer) segmentRebuilt(ctx context.Context, tables map[string][]string, want map[string]bool,
	read func(context.Context, string, []string, func(string, matomo.DoneFlag)) error,
	key func(string, matomo.DoneFlag) string, since time.Time) (map[string]bool, error) {
	sites, err := r.DB.Sites(ctx)
	if err != nil {
		return nil, err
	}
	loc := map[int]*time.Location{}
	for _, s := range sites {
		loc[s.ID] = s.Loc
	}
	newest := map[string]matomo.DoneFlag{}
	names := make([]string, 0, len(tables))
	for t := range tables {
		names = append(names, t)
	}
	slices.Sort(names)
	for _, t := range names {
		err := read(ctx, t, tables[t], func(h string, f matomo.DoneFlag) {
			k := key(h, f)
			if !want[k] {
				return
			}
			if n, ok := newest[k]; !ok || f.Newer(n) {
				newest[k] = f
			}
		})
		if err != nil {
			return nil, err
		}
	}
	out := map[string]bool{}
	for k, f := range newest {
		if f.Good(loc[f.IDSite]) && !f.TSArchived.Before(since.Add(-time.Second)) {
			out[k] = true
		}
	}
	return out, nil
}

func segKey(idsite int, hash string, d matomo.Date) string {
	return fmt.Sprintf("%d/%s/%s", idsite, hash, d)
}

func segPeriodKey(idsite int, hash, period string, d matomo.Date) string {
	return fmt.Sprintf("%d/%s/%s/%s", idsite, hash, period, d)
}

func (rep *Report) addSegment(g gapdetect.Gap, result, reason string) {
	rep.Segments = append(rep.Segments, SegmentOutcome{DayOutcome: outcomeOf(g, result, reason), Segment: g.Segment})
	rep.Counts[result]++
}

func sortSegments(s []SegmentOutcome) {
	slices.SortStableFunc(s, func(a, b SegmentOutcome) int {
		if a.IDSite != b.IDSite {
			return a.IDSite - b.IDSite
		}
		if a.Segment != b.Segment {
			if a.Segment < b.Segment {
				return -1
			}
			return 1
		}
		if pa, pb := gapdetect.PeriodNumber(a.Period), gapdetect.PeriodNumber(b.Period); pa != pb {
			return pa - pb
		}
		return int(a.Date - b.Date)
	})
}
