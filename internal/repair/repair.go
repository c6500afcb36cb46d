// Package repair rebuilds gap days through Matomo's own console
// (invalidate, then archive) and checks in the database which days were
// really fixed, since the console's exit codes do not say.
package repair

import (
	"context"
	"fmt"
	"log/slog"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/matomod/matomod/internal/archiver"
	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
)

// Console is the part of archiver.Console that repair uses.
type Console interface {
	Argv(args ...string) []string
	Invalidate(ctx context.Context, o archiver.RunOptions, idsite int, from, to string) archiver.Result
	ArchiveSites(ctx context.Context, o archiver.RunOptions, url string, sites []int, extra []string) archiver.Result
	// Run runs any console command: the week, month and year
	// invalidations (PeriodInvalidateArgs).
	Run(ctx context.Context, o archiver.RunOptions, args ...string) archiver.Result
}

// Scanner rescans after archiving (a gapdetect.Detector).
type Scanner interface {
	Scan(ctx context.Context) (*gapdetect.Result, error)
}

// Options bound and describe one repair.
type Options struct {
	URL       string   // archive.url, passed to core:archive
	ExtraArgs []string // archive.extra_args
	MaxDays   int      // site-days per repair (gaps.max_repair_days)
	DryRun    bool
	Force     bool // operator's --force: ignore safety rules except "no raw visits"
	Timeout   time.Duration
	KillGrace time.Duration
	Logger    *slog.Logger
}

// Day results, also the values of matomod_repairs_total{result}.
const (
	Repaired      = "repaired"
	FailedResult  = "failed"
	SkippedUnsafe = "skipped_unsafe"
)

// DayOutcome is what happened to one site-day, or one week, month or year.
type DayOutcome struct {
	IDSite int    `json:"idsite"`
	Period string `json:"period"` // "day", "week", "month" or "year"
	// Date is the day or the period's first day, Date2 its last.
	Date   matomo.Date `json:"date"`
	Date2  matomo.Date `json:"date2"`
	Kind   string      `json:"kind,omitempty"`
	Result string      `json:"result"` // repaired | failed | skipped_unsafe | planned (dry run)
	Reason string      `json:"reason,omitempty"`
}

// Report is one repair's outcome.
type Report struct {
	DryRun     bool              `json:"dry_run"`
	Ranges     []gapdetect.Range `json:"-"`
	PeriodPlan []gapdetect.Gap   `json:"-"` // the weeks, months and years repaired
	Commands   [][]string        `json:"commands"`
	Days       []DayOutcome      `json:"days"`
	// Periods are the weeks', months' and years' outcomes (Days holds
	// only days, as before periods were repaired).
	Periods []DayOutcome `json:"periods"`
	// Segments are the stored segments' day outcomes (RepairSegments),
	// each with its definition; Days and Periods never hold them.
	Segments      []SegmentOutcome  `json:"segments,omitempty"`
	Deferred      int               `json:"deferred"` // repairable days (and periods) left for a later cycle (max_repair_days)
	Invalidations int               `json:"invalidations"`
	Archive       *archiver.Result  `json:"-"`
	Remaining     []gapdetect.Gap   `json:"remaining"` // gaps still open after the rescan
	After         *gapdetect.Result `json:"-"`         // that rescan
	Counts        map[string]int    `json:"counts"`
}

// Open reports whether anything is left open (exit status of `repair`).
func (r *Report) Open() bool {
	return r.Counts[FailedResult] > 0 || r.Counts[SkippedUnsafe] > 0 || r.Deferred > 0 || len(r.Remaining) > 0
}

// Repairer runs repairs. One at a time: the caller serialises it with
// archive runs.
type Repairer struct {
	DB      *matomo.DB
	Console Console
	Scanner Scanner
	Opt     Options
}

func (r *Repairer) log() *slog.Logger {
	if r.Opt.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return r.Opt.Logger
}

// Repair repairs the repairable gaps (at most MaxDays site-days, newest
// first) and reports every gap's outcome. Non-repairable gaps are reported
// as skipped_unsafe and never touched.
func (r *Repairer) Repair(ctx context.Context, gaps []gapdetect.Gap) (*Report, error) {
	rep := &Report{DryRun: r.Opt.DryRun, Counts: map[string]int{}}
	kind := map[matomo.SiteDate]string{}
	// Segment gaps have their own repair (RepairSegments): never plan
	// them as plain days or periods.
	gaps = slices.DeleteFunc(slices.Clone(gaps), gapdetect.Gap.IsSegment)
	for _, g := range gaps {
		if g.IsDay() {
			kind[matomo.SiteDate{IDSite: g.IDSite, Date: g.Date}] = string(g.Kind)
		}
		if !g.Repairable {
			rep.add(outcomeOf(g, SkippedUnsafe, g.Reason))
		}
	}
	rep.Ranges, rep.Deferred = gapdetect.PlanRepairs(gaps, r.Opt.MaxDays)
	budget := -1
	if r.Opt.MaxDays >= 0 {
		budget = r.Opt.MaxDays
		for _, rg := range rep.Ranges {
			budget -= rg.Days()
		}
	}
	var deferred int
	rep.PeriodPlan, deferred = planPeriods(gaps, budget)
	rep.Deferred += deferred
	return rep, r.run(ctx, rep, kind)
}

// planPeriods picks the repairable weeks, months and years, each counting
// as one site-day against budget (what is left of max_repair_days after
// the days; negative: no limit), the most recent first.
func planPeriods(gaps []gapdetect.Gap, budget int) (plan []gapdetect.Gap, deferred int) {
	for _, g := range gaps {
		if g.Repairable && !g.IsDay() {
			plan = append(plan, g)
		}
	}
	slices.SortStableFunc(plan, func(a, b gapdetect.Gap) int { return int(b.Date2 - a.Date2) })
	if budget >= 0 && len(plan) > budget {
		deferred = len(plan) - budget
		plan = plan[:budget]
	}
	gapdetect.SortGaps(plan)
	return plan, deferred
}

// outcomeOf is a gap's outcome line.
func outcomeOf(g gapdetect.Gap, result, reason string) DayOutcome {
	p, d2 := g.Period, g.Date2
	if p == "" {
		p = gapdetect.PeriodDay
	}
	if d2 == 0 {
		d2 = g.Date
	}
	return DayOutcome{IDSite: g.IDSite, Period: p, Date: g.Date, Date2: d2, Kind: string(g.Kind), Result: result, Reason: reason}
}

// PeriodInvalidateArgs invalidates the given weeks, months or years (each
// named by its first day; Matomo invalidates the period holding each
// --dates) of one site: exactly those periods, and, as Matomo always
// does, their parent periods. -v: see archiver.InvalidateArgs. Never
// --ignore-log-deletion-limit.
func PeriodInvalidateArgs(idsite int, period string, dates []matomo.Date) ([]string, error) {
	if idsite <= 0 {
		return nil, fmt.Errorf("core:invalidate-report-data: site id %d is not valid: site ids are positive", idsite)
	}
	switch period {
	case gapdetect.PeriodWeek, gapdetect.PeriodMonth, gapdetect.PeriodYear:
	default:
		return nil, fmt.Errorf("core:invalidate-report-data: period %q is not week, month or year", period)
	}
	if len(dates) == 0 {
		return nil, fmt.Errorf("core:invalidate-report-data: no %s of site %d to invalidate: pass at least one", period, idsite)
	}
	args := []string{archiver.CmdInvalidate, "--no-ansi", "-v", "--sites=" + strconv.Itoa(idsite)}
	for _, d := range dates {
		// --dates may be repeated (an array option in Matomo 5).
		args = append(args, "--dates="+d.String())
	}
	return append(args, "--periods="+period), nil
}

// periodJob is one invalidation command: one site's periods of one kind.
type periodJob struct {
	idsite int
	period string
	gaps   []gapdetect.Gap
}

func periodJobs(gaps []gapdetect.Gap) []periodJob {
	var out []periodJob
	for _, g := range gaps {
		if n := len(out); n > 0 && out[n-1].idsite == g.IDSite && out[n-1].period == g.Period {
			out[n-1].gaps = append(out[n-1].gaps, g)
			continue
		}
		out = append(out, periodJob{idsite: g.IDSite, period: g.Period, gaps: []gapdetect.Gap{g}})
	}
	return out
}

func (j periodJob) args() ([]string, error) {
	var dates []matomo.Date
	for _, g := range j.gaps {
		dates = append(dates, g.Date)
	}
	return PeriodInvalidateArgs(j.idsite, j.period, dates)
}

// RepairDays invalidates and re-archives an operator-named range of one
// site. Days the safety rules refuse are skipped unless Force, which still
// refuses days with no raw visits.
func (r *Repairer) RepairDays(ctx context.Context, det *gapdetect.Detector, idsite int, from, to matomo.Date) (*Report, error) {
	days, err := det.Assess(ctx, idsite, from, to)
	if err != nil {
		return nil, err
	}
	var ok []gapdetect.Gap
	rep := &Report{DryRun: r.Opt.DryRun, Counts: map[string]int{}}
	kind := map[matomo.SiteDate]string{}
	for _, g := range days {
		kind[matomo.SiteDate{IDSite: g.IDSite, Date: g.Date}] = string(g.Kind)
		switch {
		case g.Repairable, r.Opt.Force && g.RawVisits > 0:
			g.Repairable = true
			ok = append(ok, g)
		default:
			reason := g.Reason
			if !r.Opt.Force && g.RawVisits > 0 {
				reason += " (--force overrides)"
			}
			rep.add(outcomeOf(g, SkippedUnsafe, reason))
		}
	}
	if r.Opt.MaxDays >= 0 && len(ok) > r.Opt.MaxDays {
		return nil, fmt.Errorf("--dates names %d repairable days, more than gaps.max_repair_days (%d): name a shorter range or raise the limit", len(ok), r.Opt.MaxDays)
	}
	rep.Ranges, _ = gapdetect.PlanRepairs(ok, -1)
	return rep, r.run(ctx, rep, kind)
}

func (rep *Report) add(d DayOutcome) {
	if d.Period != "" && d.Period != gapdetect.PeriodDay {
		rep.Periods = append(rep.Periods, d)
	} else {
		rep.Days = append(rep.Days, d)
	}
	rep.Counts[d.Result]++
}

func (r *Repairer) runOpts(id string) archiver.RunOptions {
	return archiver.RunOptions{RunID: id, Timeout: r.Opt.Timeout, KillGrace: r.Opt.KillGrace}
}

func (r *Repairer) run(ctx context.Context, rep *Report, kind map[matomo.SiteDate]string) error {
	if len(rep.Ranges) == 0 && len(rep.PeriodPlan) == 0 {
		sortDays(rep.Days)
		sortDays(rep.Periods)
		return nil
	}
	var sites []int
	for _, rg := range rep.Ranges {
		args, err := archiver.InvalidateArgs(rg.IDSite, rg.From.String(), rg.To.String())
		if err != nil {
			return err
		}
		rep.Commands = append(rep.Commands, r.Console.Argv(args...))
		if !slices.Contains(sites, rg.IDSite) {
			sites = append(sites, rg.IDSite)
		}
	}
	jobs := periodJobs(rep.PeriodPlan)
	for _, j := range jobs {
		args, err := j.args()
		if err != nil {
			return err
		}
		rep.Commands = append(rep.Commands, r.Console.Argv(args...))
		if !slices.Contains(sites, j.idsite) {
			sites = append(sites, j.idsite)
		}
	}
	args, err := archiver.ArchiveArgs(r.Opt.URL, sites, r.Opt.ExtraArgs)
	if err != nil {
		return err
	}
	rep.Commands = append(rep.Commands, r.Console.Argv(args...))
	if r.Opt.DryRun {
		for _, rg := range rep.Ranges {
			for d := rg.From; d <= rg.To; d++ {
				rep.add(DayOutcome{IDSite: rg.IDSite, Period: gapdetect.PeriodDay, Date: d, Date2: d, Kind: kind[matomo.SiteDate{IDSite: rg.IDSite, Date: d}], Result: "planned"})
			}
		}
		for _, g := range rep.PeriodPlan {
			rep.add(outcomeOf(g, "planned", ""))
		}
		sortDays(rep.Days)
		sortDays(rep.Periods)
		return nil
	}

	log := r.log()
	runID := archiver.NewRunID()
	started, err := r.DB.Now(ctx)
	if err != nil {
		return err
	}
	failed := map[matomo.SiteDate]string{}
	var archiveSites []int
	for _, rg := range rep.Ranges {
		rlog := log.With("run_id", runID, "idsite", rg.IDSite, "date", rg.From.String())
		rlog.Info("invalidating gap days", "event", "repair_started", "from", rg.From.String(), "to", rg.To.String(), "days", rg.Days())
		res := r.Console.Invalidate(ctx, r.runOpts(runID), rg.IDSite, rg.From.String(), rg.To.String())
		if res.Outcome == archiver.OutcomeSkipped || ctx.Err() != nil {
			return fmt.Errorf("core:invalidate-report-data did not run (%s): nothing was changed for the remaining days; retry when Matomo is out of maintenance mode", firstNonEmpty(res.SkipReason, errString(ctx.Err())))
		}
		// The exit code does not say what happened: look for the queue rows.
		queued, _, err := r.DB.DayInvalidations(ctx, rg.From, rg.To, []int{rg.IDSite})
		if err != nil {
			return fmt.Errorf("checking the invalidations of site %d: %w", rg.IDSite, err)
		}
		have := map[matomo.Date]bool{}
		for _, q := range queued {
			have[q.Date] = true
		}
		for d := rg.From; d <= rg.To; d++ {
			if have[d] {
				rep.Invalidations++
				continue
			}
			failed[matomo.SiteDate{IDSite: rg.IDSite, Date: d}] = notQueued("day", d, res)
		}
		if len(have) > 0 && !slices.Contains(archiveSites, rg.IDSite) {
			archiveSites = append(archiveSites, rg.IDSite)
		}
	}
	pfailed := map[matomo.PeriodKey]string{}
	for _, j := range jobs {
		args, _ := j.args()
		first, last := j.gaps[0].Date, j.gaps[0].Date
		for _, g := range j.gaps {
			first, last = min(first, g.Date), max(last, g.Date)
		}
		log.Info("invalidating gap periods", "event", "repair_started", "run_id", runID, "idsite", j.idsite, "period", j.period,
			"from", first.String(), "to", last.String(), "periods", len(j.gaps))
		res := r.Console.Run(ctx, r.runOpts(runID), args...)
		if res.Outcome == archiver.OutcomeSkipped || ctx.Err() != nil {
			return fmt.Errorf("core:invalidate-report-data did not run (%s): nothing was changed for the remaining periods; retry when Matomo is out of maintenance mode", firstNonEmpty(res.SkipReason, errString(ctx.Err())))
		}
		queued, err := r.DB.PeriodInvalidations(ctx, first, last, []int{j.idsite})
		if err != nil {
			return fmt.Errorf("checking the invalidations of site %d: %w", j.idsite, err)
		}
		have := map[matomo.PeriodKey]bool{}
		for _, q := range queued {
			have[matomo.PeriodKey{IDSite: q.IDSite, Period: q.Period, Date: q.Date}] = true
		}
		any := false
		for _, g := range j.gaps {
			k := matomo.PeriodKey{IDSite: g.IDSite, Period: gapdetect.PeriodNumber(g.Period), Date: g.Date}
			if have[k] {
				rep.Invalidations++
				any = true
				continue
			}
			why := "core:invalidate-report-data queued nothing for this " + g.Period
			if len(res.LogDeletionSkipped) > 0 {
				why += ": Matomo refused dates older than its log-deletion limit"
				if m := lastLogDayRE.FindStringSubmatch(res.LogDeletionWarning); m != nil {
					why += " (Matomo: the last day with logs is " + m[1] + ")"
				}
			} else if res.Outcome != archiver.OutcomeSuccess {
				why += fmt.Sprintf(" (exit code %d: %s)", res.ExitCode, firstNonEmpty(res.FirstError, errString(res.Err)))
			}
			pfailed[k] = why
		}
		if any && !slices.Contains(archiveSites, j.idsite) {
			archiveSites = append(archiveSites, j.idsite)
		}
	}
	if len(archiveSites) > 0 {
		log.Info("archiving invalidated days", "event", "repair_archiving", "run_id", runID, "sites", fmt.Sprint(archiveSites))
		res := r.Console.ArchiveSites(ctx, r.runOpts(runID), r.Opt.URL, archiveSites, r.Opt.ExtraArgs)
		rep.Archive = &res
	}
	// Only the database says whether the days are fixed: each must now
	// have a complete OK archive written after the repair began.
	good, err := r.rebuilt(ctx, rep.Ranges, started)
	if err != nil {
		return fmt.Errorf("checking the rebuilt archives: %w", err)
	}
	pgood, err := r.periodsRebuilt(ctx, rep.PeriodPlan, started)
	if err != nil {
		return fmt.Errorf("checking the rebuilt archives: %w", err)
	}
	after, err := r.Scanner.Scan(ctx)
	if err != nil {
		return fmt.Errorf("rescanning after the repair: %w", err)
	}
	// A rebuilt period still stale (or otherwise open) is not repaired.
	stillOpen := map[matomo.PeriodKey]gapdetect.Kind{}
	for _, g := range after.Gaps {
		if !g.IsDay() {
			stillOpen[matomo.PeriodKey{IDSite: g.IDSite, Period: gapdetect.PeriodNumber(g.Period), Date: g.Date}] = g.Kind
		}
	}
	for _, g := range rep.PeriodPlan {
		k := matomo.PeriodKey{IDSite: g.IDSite, Period: gapdetect.PeriodNumber(g.Period), Date: g.Date}
		out := outcomeOf(g, Repaired, "")
		switch why, bad := pfailed[k]; {
		case bad:
			out.Result, out.Reason = FailedResult, why
		case !pgood[k]:
			out.Result, out.Reason = FailedResult, "no complete archive was written for this "+g.Period
			if a := rep.Archive; a != nil && a.Outcome != archiver.OutcomeSuccess {
				out.Reason += fmt.Sprintf(" (core:archive %s, exit code %d: %s)", a.Outcome, a.ExitCode, firstNonEmpty(a.SkipReason, a.FirstError, errString(a.Err)))
			}
		case stillOpen[k] != "":
			out.Result, out.Reason = FailedResult, fmt.Sprintf("rebuilt, but still %s", stillOpen[k])
		}
		rep.add(out)
		plog := log.With("run_id", runID, "idsite", g.IDSite, "period", g.Period, "date", g.Date.String())
		if out.Result == Repaired {
			plog.Info("gap repaired", "event", "repair_finished", "kind", out.Kind)
		} else {
			plog.Error("gap not repaired", "event", "repair_failed", "kind", out.Kind, "reason", out.Reason)
		}
	}
	for _, rg := range rep.Ranges {
		for d := rg.From; d <= rg.To; d++ {
			k := matomo.SiteDate{IDSite: rg.IDSite, Date: d}
			out := DayOutcome{IDSite: rg.IDSite, Period: gapdetect.PeriodDay, Date: d, Date2: d, Kind: kind[k], Result: Repaired}
			if why, bad := failed[k]; bad {
				out.Result, out.Reason = FailedResult, why
			} else if !good[k] {
				out.Result, out.Reason = FailedResult, "no complete archive was written for this day"
				if a := rep.Archive; a != nil && a.Outcome != archiver.OutcomeSuccess {
					out.Reason += fmt.Sprintf(" (core:archive %s, exit code %d: %s)", a.Outcome, a.ExitCode, firstNonEmpty(a.SkipReason, a.FirstError, errString(a.Err)))
				}
			}
			rep.add(out)
			dlog := log.With("run_id", runID, "idsite", rg.IDSite, "date", d.String())
			if out.Result == Repaired {
				dlog.Info("gap repaired", "event", "repair_finished", "kind", out.Kind)
			} else {
				dlog.Error("gap not repaired", "event", "repair_failed", "kind", out.Kind, "reason", out.Reason)
			}
		}
	}
	rep.Remaining = append(rep.Remaining, after.Gaps...)
	rep.After = after
	sortDays(rep.Days)
	sortDays(rep.Periods)
	return nil
}

// lastLogDayRE finds the day Matomo names in its log-deletion warning
// ("The last day with logs is 2026-08-01."), which says how far to raise
// the limit.
var lastLogDayRE = regexp.MustCompile(`last day with logs is ([0-9]{4}-[0-9]{2}-[0-9]{2})`)

func sortDays(d []DayOutcome) {
	slices.SortStableFunc(d, func(a, b DayOutcome) int {
		if a.IDSite != b.IDSite {
			return a.IDSite - b.IDSite
		}
		if pa, pb := gapdetect.PeriodNumber(a.Period), gapdetect.PeriodNumber(b.Period); pa != pb {
			return pa - pb
		}
		return int(a.Date - b.Date)
	})
}

// periodsRebuilt returns the periods whose newest plain archive is good
// (complete, written after the period's last local day) and written at
// or after since (DB clock).
func (r *Repairer) periodsRebuilt(ctx context.Context, gaps []gapdetect.Gap, since time.Time) (map[matomo.PeriodKey]bool, error) {
	out := map[matomo.PeriodKey]bool{}
	if len(gaps) == 0 {
		return out, nil
	}
	sites, err := r.DB.Sites(ctx)
	if err != nil {
		return nil, err
	}
	loc := map[int]*time.Location{}
	for _, s := range sites {
		loc[s.ID] = s.Loc
	}
	keys := make([]matomo.PeriodKey, len(gaps))
	for i, g := range gaps {
		keys[i] = matomo.PeriodKey{IDSite: g.IDSite, Period: gapdetect.PeriodNumber(g.Period), Date: g.Date}
	}
	newest, err := r.DB.NewestPeriodDone(ctx, keys)
	if err != nil {
		return nil, err
	}
	for k, f := range newest {
		if f.Good(loc[k.IDSite]) && !f.TSArchived.Before(since.Add(-time.Second)) {
			out[k] = true
		}
	}
	return out, nil
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return "no detail"
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// ShellQuote renders argv for humans (dry-run output), quoting as sh would.
func ShellQuote(argv []string) string {
	out := make([]string, len(argv))
	for i, a := range argv {
		if a != "" && !strings.ContainsAny(a, " \t\n'\"\\$`!*?[]{}()<>|&;#~") {
			out[i] = a
			continue
		}
		out[i] = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
	}
	return strings.Join(out, " ")
}

// notQueued says why core:invalidate-report-data queued nothing for day d
// (what: "day", "segment day"), in Matomo's words where it gave any.
func notQueued(what string, d matomo.Date, res archiver.Result) string {
	why := "core:invalidate-report-data queued nothing for this " + what
	switch {
	case slices.Contains(res.LogDeletionSkipped, d.String()):
		why += ": Matomo refused it as older than its log-deletion limit"
		if m := lastLogDayRE.FindStringSubmatch(res.LogDeletionWarning); m != nil {
			why += " (Matomo: the last day with logs is " + m[1] + ")"
		}
	case res.Outcome != archiver.OutcomeSuccess:
		why += fmt.Sprintf(" (exit code %d: %s)", res.ExitCode, firstNonEmpty(res.FirstError, errString(res.Err)))
	}
	return why
}

// rebuilt returns the days of ranges whose newest plain day archive is OK,
// complete and written at or after since (DB clock).
func (r *Repairer) rebuilt(ctx context.Context, ranges []gapdetect.Range, since time.Time) (map[matomo.SiteDate]bool, error) {
	sites, err := r.DB.Sites(ctx)
	if err != nil {
		return nil, err
	}
	loc := map[int]*time.Location{}
	for _, s := range sites {
		loc[s.ID] = s.Loc
	}
	var keys []matomo.SiteDate
	for _, rg := range ranges {
		for d := rg.From; d <= rg.To; d++ {
			keys = append(keys, matomo.SiteDate{IDSite: rg.IDSite, Date: d})
		}
	}
	// The scan's own predicate (DoneFlag.Good), plus: written by this
	// repair, not before it.
	newest, err := r.DB.NewestDone(ctx, keys)
	if err != nil {
		return nil, err
	}
	out := map[matomo.SiteDate]bool{}
	for k, f := range newest {
		if f.Good(loc[k.IDSite]) && !f.TSArchived.Before(since.Add(-time.Second)) {
			out[k] = true
		}
	}
	return out, nil
}
