package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"slices"
	"strings"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/repair"
)

type repairFlags struct {
	gapFlags
	dates    string
	dryRun   bool
	force    bool
	lockWait time.Duration
}

func (f *repairFlags) register(c *kingpin.CmdClause) {
	f.gapFlags.register(c)
	c.Flag("dates", "Repair this range of one site (--sites N) even where the days look fine: FROM,TO or one day.").PlaceHolder("FROM,TO").StringVar(&f.dates)
	c.Flag("dry-run", "Print the exact console commands and change nothing.").BoolVar(&f.dryRun)
	c.Flag("force", "With --dates: also invalidate days the safety rules refuse (never days without raw visits).").BoolVar(&f.force)
	c.Flag("format", "Output format: table or json.").Default("table").EnumVar(&f.format, "table", "json")
	c.Flag("lock.wait", "How long to wait for a core:archive that matomod started (here or on another host) to end before giving up.").Default("0s").DurationVar(&f.lockWait)
}

func cmdRepair(ctx context.Context, g *globals, f *repairFlags, stdout, stderr io.Writer, log *slog.Logger) int {
	if f.force && f.dates == "" {
		return fail(stderr, fmt.Errorf("--force only goes with --dates: it overrides the safety rules for days you name"))
	}
	s, db, det, err := f.open(g, log)
	if err != nil {
		return fail(stderr, err)
	}
	defer db.Close()
	if !f.dryRun {
		if reason, _, _ := pauseReason(ctx, s, db); reason != "" {
			return fail(stderr, fmt.Errorf("archiving is paused (%s): a repair now would invalidate days that nothing rebuilds; retry when it clears, or use --dry-run", reason))
		}
		// Two repairs at once would each see the other's days as failed.
		lock, err := archiveLock(ctx, db, f.lockWait)
		if err != nil {
			fmt.Fprintf(stderr, "matomod: repair not started: %v\n", err)
			if errors.Is(err, matomo.ErrLockBusy) {
				return exitSkipped
			}
			return exitError
		}
		defer lock.Release()
	}
	opt := s.repairOptions(log, f.dryRun)
	opt.Force = f.force
	r := &repair.Repairer{DB: db, Console: s.console(log), Scanner: det, Opt: opt}
	var rep *repair.Report
	if f.dates != "" {
		sites, err := parseSites(f.sites)
		if err != nil {
			return fail(stderr, err)
		}
		if len(sites) != 1 {
			return fail(stderr, fmt.Errorf("--dates needs exactly one site: add --sites N"))
		}
		if f.since != "" || f.until != "" {
			return fail(stderr, fmt.Errorf("--dates replaces --since/--until: use one or the other"))
		}
		a, b, _ := strings.Cut(f.dates, ",")
		if b == "" {
			b = a
		}
		from, err := parseDateFlag("dates", a)
		if err != nil {
			return fail(stderr, err)
		}
		to, err := parseDateFlag("dates", b)
		if err != nil {
			return fail(stderr, err)
		}
		if from == 0 || to == 0 {
			return fail(stderr, fmt.Errorf("--dates %q: use FROM,TO or one day (YYYY-MM-DD)", f.dates))
		}
		rep, err = r.RepairDays(ctx, det, sites[0], from, to)
		if err != nil {
			return fail(stderr, err)
		}
	} else {
		res, err := det.Scan(ctx)
		if err != nil {
			return fail(stderr, err)
		}
		rep, err = r.Repair(ctx, res.Gaps)
		if err != nil {
			return fail(stderr, err)
		}
		if err := repairSegments(ctx, r, det, rep, res.SegmentGaps); err != nil {
			return fail(stderr, err)
		}
	}
	if f.format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		enc.Encode(rep)
	} else {
		printRepair(stdout, rep)
	}
	if rep.Open() && !f.dryRun {
		return exitFound
	}
	return exitOK
}

// repairSegments repairs the scan's segment gaps after the plain ones
// (their own max_repair_days budget) and merges the outcome into rep;
// after a real repair, a rescan's open gaps, plain and segment, are
// rep.Remaining.
func repairSegments(ctx context.Context, r *repair.Repairer, det *gapdetect.Detector, rep *repair.Report, gaps []gapdetect.Gap) error {
	if len(gaps) == 0 {
		return nil
	}
	srep, err := r.RepairSegments(ctx, gaps)
	if err != nil {
		return err
	}
	rep.Segments = srep.Segments
	rep.Commands = append(rep.Commands, srep.Commands...)
	rep.Deferred += srep.Deferred
	rep.Invalidations += srep.Invalidations
	for k, n := range srep.Counts {
		rep.Counts[k] += n
	}
	if rep.DryRun || len(srep.Commands) == 0 {
		if rep.After != nil {
			rep.Remaining = append(rep.Remaining, rep.After.SegmentGaps...)
		}
		return nil
	}
	after, err := det.Scan(ctx)
	if err != nil {
		return fmt.Errorf("rescanning after the segment repair: %w", err)
	}
	rep.After = after
	rep.Remaining = append(append([]gapdetect.Gap(nil), after.Gaps...), after.SegmentGaps...)
	return nil
}

func printRepair(w io.Writer, rep *repair.Report) {
	if len(rep.Commands) == 0 {
		fmt.Fprintln(w, "Nothing to repair.")
	} else if rep.DryRun {
		fmt.Fprintln(w, "Dry run: these commands would run, in this order (nothing was changed):")
	} else {
		fmt.Fprintln(w, "Ran:")
	}
	for _, c := range rep.Commands {
		fmt.Fprintln(w, "  "+repair.ShellQuote(c))
	}
	for _, res := range []string{"planned", repair.Repaired, repair.FailedResult, repair.SkippedUnsafe} {
		var lines, plines []string
		for _, d := range append(slices.Clone(rep.Days), rep.Periods...) {
			if d.Result != res {
				continue
			}
			if d.Period != "" && d.Period != gapdetect.PeriodDay {
				l := fmt.Sprintf("  site %d %s %s..%s", d.IDSite, d.Period, d.Date, d.Date2)
				if d.Kind != "" {
					l += " (" + d.Kind + ")"
				}
				if d.Reason != "" {
					l += ": " + d.Reason
				}
				plines = append(plines, l)
				continue
			}
			l := fmt.Sprintf("  site %d %s", d.IDSite, d.Date)
			if d.Kind != "" {
				l += " (" + d.Kind + ")"
			}
			if d.Reason != "" {
				l += ": " + d.Reason
			}
			lines = append(lines, l)
		}
		if len(lines) > 0 {
			fmt.Fprintf(w, "%s: %d day(s)\n%s\n", res, len(lines), strings.Join(lines, "\n"))
		}
		if len(plines) > 0 {
			fmt.Fprintf(w, "%s: %d week(s), month(s) or year(s)\n%s\n", res, len(plines), strings.Join(plines, "\n"))
		}
	}
	for _, res := range []string{"planned", repair.Repaired, repair.FailedResult, repair.SkippedUnsafe} {
		var lines, plines []string
		for _, d := range rep.Segments {
			if d.Result != res {
				continue
			}
			l := fmt.Sprintf("  site %d %s segment %s", d.IDSite, d.Date, d.Segment)
			isPeriod := d.Period != "" && d.Period != gapdetect.PeriodDay
			if isPeriod {
				l = fmt.Sprintf("  site %d %s %s..%s segment %s", d.IDSite, d.Period, d.Date, d.Date2, d.Segment)
			}
			if d.Kind != "" {
				l += " (" + d.Kind + ")"
			}
			if d.Reason != "" {
				l += ": " + d.Reason
			}
			if isPeriod {
				plines = append(plines, l)
			} else {
				lines = append(lines, l)
			}
		}
		if len(lines) > 0 {
			fmt.Fprintf(w, "%s: %d segment day(s)\n%s\n", res, len(lines), strings.Join(lines, "\n"))
		}
		if len(plines) > 0 {
			fmt.Fprintf(w, "%s: %d segment week(s), month(s) or year(s)\n%s\n", res, len(plines), strings.Join(plines, "\n"))
		}
	}
	if rep.Deferred > 0 {
		fmt.Fprintf(w, "deferred: %d older repairable day(s) left for a later run (gaps.max_repair_days)\n", rep.Deferred)
	}
	if !rep.DryRun && len(rep.Commands) > 0 {
		fmt.Fprintf(w, "still open after the repair: %d gap(s)\n", len(rep.Remaining))
		var plain []gapdetect.Gap
		for _, g := range rep.Remaining {
			if g.IsSegment() && g.Period != "" && g.Period != gapdetect.PeriodDay {
				fmt.Fprintf(w, "  site %d segment %s %s %s..%s %s\n", g.IDSite, g.Segment, g.Period, g.Date, g.Date2, g.Kind)
			} else if g.IsSegment() {
				fmt.Fprintf(w, "  site %d segment %s %s %s\n", g.IDSite, g.Segment, g.Date, g.Kind)
			} else {
				plain = append(plain, g)
			}
		}
		for _, rg := range groupGaps(plain) {
			fmt.Fprintf(w, "  site %d %s %s..%s %s\n", rg.idsite, rg.period, rg.from, rg.last, rg.kind)
		}
	}
}
