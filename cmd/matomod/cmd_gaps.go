package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/alecthomas/kingpin/v2"

	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
)

// gapFlags select what `gaps` and `repair` look at.
type gapFlags struct {
	sites, since, until string
	verifyDays          int
	format              string
}

func (f *gapFlags) register(c *kingpin.CmdClause) {
	c.Flag("sites", "Only these site ids (comma-separated), instead of sites.include/exclude.").PlaceHolder("1,3").StringVar(&f.sites)
	c.Flag("since", "First site-local day to scan (default: gaps.window_days before --until).").PlaceHolder("YYYY-MM-DD").StringVar(&f.since)
	c.Flag("until", "Last site-local day to scan (default: each site's yesterday).").PlaceHolder("YYYY-MM-DD").StringVar(&f.until)
	c.Flag("verify-days", "Recount raw visits of OK archives over the last N days of the window (stale check; default gaps.verify_days, 0: off).").Default("-1").IntVar(&f.verifyDays)
}

// detector builds a Detector for a one-shot command from the flags.
func (f *gapFlags) detector(s *setup, db *matomo.DB, log *slog.Logger) (*gapdetect.Detector, error) {
	o := s.detectorOptions()
	sites, err := parseSites(f.sites)
	if err != nil {
		return nil, err
	}
	if sites != nil {
		o.Include, o.Exclude = sites, nil
	}
	if o.Since, err = parseDateFlag("since", f.since); err != nil {
		return nil, err
	}
	if o.Until, err = parseDateFlag("until", f.until); err != nil {
		return nil, err
	}
	if o.Since != 0 && o.Until != 0 && o.Since > o.Until {
		return nil, fmt.Errorf("--since %s is after --until %s: swap them", o.Since, o.Until)
	}
	if o.Since != 0 && o.Until == 0 {
		o.WindowDays = 3660 // --since alone: from that day up to yesterday
	}
	if f.verifyDays >= 0 {
		o.VerifyDays = verifyDays(f.verifyDays)
	}
	return gapdetect.New(db, o), nil
}

// open loads the config and builds the database pool and the detector a
// one-shot command needs; the caller closes the pool.
func (f *gapFlags) open(g *globals, log *slog.Logger) (*setup, *matomo.DB, *gapdetect.Detector, error) {
	s, err := loadSetup(g)
	if err != nil {
		return nil, nil, nil, err
	}
	db, err := s.openDB()
	if err != nil {
		return nil, nil, nil, err
	}
	det, err := f.detector(s, db, log)
	if err != nil {
		db.Close()
		return nil, nil, nil, err
	}
	return s, db, det, nil
}

func cmdGaps(ctx context.Context, g *globals, f *gapFlags, stdout, stderr io.Writer, log *slog.Logger) int {
	_, db, det, err := f.open(g, log)
	if err != nil {
		return fail(stderr, err)
	}
	defer db.Close()
	res, err := det.Scan(ctx)
	if err != nil {
		return fail(stderr, err)
	}
	log.Debug("gap scan finished", "event", "gap_scan_finished", "duration", res.Stats.Duration, "round_trips", res.Stats.RoundTrips, "probes", res.Stats.Probes)
	if f.format == "json" {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		if err := enc.Encode(res); err != nil {
			return fail(stderr, err)
		}
	} else {
		printGapTable(stdout, res)
	}
	for _, e := range res.SiteErrors {
		fmt.Fprintf(stderr, "matomod: site %d not scanned: %s\n", e.IDSite, e.Error)
	}
	// An operator who named a site that could not be scanned gets no
	// answer for it: that is an error, not "no gaps".
	if f.sites != "" && len(res.SiteErrors) > 0 {
		return exitError
	}
	if len(res.Gaps) > 0 || len(res.SegmentGaps) > 0 {
		return exitFound
	}
	return exitOK
}

func fail(stderr io.Writer, err error) int {
	fmt.Fprintf(stderr, "matomod: %v\n", err)
	return exitError
}

// printGapTable groups consecutive days of one site, kind and verdict into
// ranges, the way an operator reads them.
func printGapTable(w io.Writer, r *gapdetect.Result) {
	fmt.Fprintf(w, "Scanned %d sites, %s to %s (site-local days), at %s.\n", r.SitesScanned, r.Window.Since, r.Window.Until, r.ScannedAt.Format(time.RFC3339))
	if n := len(r.SiteErrors); n > 0 {
		var ids []string
		for _, e := range r.SiteErrors {
			ids = append(ids, fmt.Sprint(e.IDSite))
		}
		fmt.Fprintf(w, "Skipped %d site(s) that could not be scanned: %s (reasons on stderr).\n", n, strings.Join(ids, ", "))
	}
	if len(r.Gaps) == 0 {
		fmt.Fprintln(w, "No gaps: every day with raw visits, and every week, month and year that ended, has a good archive.")
	} else {
		tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "SITE\tPERIOD\tDAYS\tN\tKIND\tRAW VISITS\tARCHIVED\tREPAIR")
		for _, rg := range groupGaps(r.Gaps) {
			days := rg.from.String()
			if rg.last != rg.from {
				days += ".." + rg.last.String()
			}
			n := rg.n
			archived := "-"
			if rg.hasArchived {
				archived = fmt.Sprint(rg.archived)
			}
			verdict := "yes"
			if !rg.repairable {
				verdict = "no: " + rg.reason
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%d\t%s\t%d\t%s\t%s\n", rg.idsite, rg.period, days, n, rg.kind, rg.raw, archived, verdict)
		}
		tw.Flush()
		rep, days, periods := 0, 0, 0
		for _, g := range r.Gaps {
			if g.Repairable {
				rep++
			}
			if g.IsDay() {
				days++
			} else {
				periods++
			}
		}
		if periods > 0 {
			fmt.Fprintf(w, "%d gap days and %d gap weeks, months or years (%d repairable).", days, periods, rep)
		} else {
			fmt.Fprintf(w, "%d gap days (%d repairable).", days, rep)
		}
		if rep > 0 {
			fmt.Fprint(w, " See what a repair would do: matomod repair --dry-run")
		}
		fmt.Fprintln(w)
	}
	printSegmentGaps(w, r.SegmentGaps)
	if len(r.CollectionGaps) > 0 {
		var parts []string
		for _, c := range r.CollectionGaps {
			parts = append(parts, fmt.Sprintf("site %d %s", c.IDSite, c.Date))
		}
		fmt.Fprintf(w, "Collection gaps (no raw visits on a site that has traffic every day; not repairable: check tracking or restored data): %s\n", strings.Join(parts, ", "))
	}
}

// gapRange is consecutive gap days of one site, kind and verdict, or one
// week, month or year (from..last; n counts the days or the period).
type gapRange struct {
	idsite      int
	period      string
	from, to    matomo.Date
	last        matomo.Date
	n           int
	kind        gapdetect.Kind
	raw         int64
	archived    int64
	hasArchived bool
	repairable  bool
	reason      string
}

func groupGaps(gaps []gapdetect.Gap) []gapRange {
	var out []gapRange
	for _, g := range gaps {
		if n := len(out); n > 0 {
			last := &out[n-1]
			if g.IsDay() && last.period == gapdetect.PeriodDay && last.idsite == g.IDSite && last.to.AddDays(1) == g.Date && last.kind == g.Kind &&
				last.repairable == g.Repairable && last.reason == g.Reason && last.hasArchived == (g.ArchivedVisits != nil) {
				last.to, last.last = g.Date, g.Date
				last.n++
				last.raw += g.RawVisits
				if g.ArchivedVisits != nil {
					last.archived += *g.ArchivedVisits
				}
				continue
			}
		}
		r := gapRange{idsite: g.IDSite, period: gapdetect.PeriodDay, from: g.Date, to: g.Date, last: g.Date, n: 1, kind: g.Kind, raw: g.RawVisits, repairable: g.Repairable, reason: g.Reason}
		if !g.IsDay() {
			r.period = g.Period
			if g.Date2 > g.Date {
				r.last = g.Date2
			}
		}
		if g.ArchivedVisits != nil {
			r.archived, r.hasArchived = *g.ArchivedVisits, true
		}
		out = append(out, r)
	}
	return out
}

// printSegmentGaps lists the stored segments' gap days, weeks, months and
// years (Result.SegmentGaps): consecutive days of one site, segment, kind
// and verdict grouped; each period on its own line.
func printSegmentGaps(w io.Writer, gaps []gapdetect.Gap) {
	if len(gaps) == 0 {
		return
	}
	fmt.Fprintln(w, "Segment gaps (days with raw visits, and weeks, months and years that ended, without a good archive of a stored auto-archived segment):")
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "SITE\tSEGMENT\tPERIOD\tDAYS\tN\tKIND\tRAW VISITS\tREPAIR")
	rep, periods := 0, 0
	isDay := func(g gapdetect.Gap) bool { return g.Period == "" || g.Period == gapdetect.PeriodDay }
	for i := 0; i < len(gaps); {
		g := gaps[i]
		j, raw := i+1, g.RawVisits
		for isDay(g) && j < len(gaps) && isDay(gaps[j]) && gaps[j].IDSite == g.IDSite && gaps[j].Segment == g.Segment && gaps[j].Date == gaps[j-1].Date.AddDays(1) &&
			gaps[j].Kind == g.Kind && gaps[j].Repairable == g.Repairable && gaps[j].Reason == g.Reason {
			raw += gaps[j].RawVisits
			j++
		}
		period, days := gapdetect.PeriodDay, g.Date.String()
		if j-i > 1 {
			days += ".." + gaps[j-1].Date.String()
		}
		if !isDay(g) {
			period = g.Period
			periods++
			if g.Date2 > g.Date {
				days += ".." + g.Date2.String()
			}
		}
		verdict := "yes"
		if !g.Repairable {
			verdict = "no: " + g.Reason
		} else {
			rep += j - i
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%d\t%s\t%d\t%s\n", g.IDSite, g.Segment, period, days, j-i, g.Kind, raw, verdict)
		i = j
	}
	tw.Flush()
	if periods > 0 {
		fmt.Fprintf(w, "%d segment gap days and %d segment gap weeks, months or years (%d repairable).\n", len(gaps)-periods, periods, rep)
		return
	}
	fmt.Fprintf(w, "%d segment gap days (%d repairable).\n", len(gaps), rep)
}
