package main

import (
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/matomod/matomod/internal/matomo"
)

const invalidatePHP = "plugins/CoreAdminHome/Commands/InvalidateReportData.php"

// The two VisitFrequency segments every plain archive brings along, by the
// md5 of their definition (as in the done flag names).
var (
	segNew       = "done90a5a511e1974bca37613b6daec137ba.VisitsSummary"
	segReturning = "donefea44bece172bc9696ae57c26888bf8a.VisitsSummary"
	segmentDefs  = map[string]string{
		"90a5a511e1974bca37613b6daec137ba": "visitorType==new",
		"fea44bece172bc9696ae57c26888bf8a": "visitorType==returning,visitorType==returningCustomer",
	}
)

// doneName is the done flag an invalidation targets: done[<md5 segment>][.Plugin].
func doneName(segment, plugin string) string {
	n := "done"
	if segment != "" {
		h := md5.Sum([]byte(segment))
		n += hex.EncodeToString(h[:])
	}
	if plugin != "" {
		n += "." + plugin
	}
	return n
}

func runInvalidate(a *app, in *input) int {
	ctx := context.Background()
	cfg, err := matomo.ReadConfigINI(a.dir)
	if err != nil {
		fmt.Fprintln(a.errw, "matomosim:", err)
		return 1
	}
	// Matomo swallows a DB failure while listing sites and then reports the
	// site as unknown (d2_invalidate_db_stopped): do the same.
	var sites []site
	st, dbErr := a.openStore(ctx, cfg)
	if dbErr == nil {
		defer st.db.Close()
		sites, _ = st.sites(ctx)
	}
	sitesArg := in.str("sites", "all")
	var chosen []site
	byID := map[int]site{}
	for _, s := range sites {
		byID[s.id] = s
	}
	ids := idList(sitesArg)
	if strings.TrimSpace(sitesArg) == "all" {
		for _, s := range sites {
			ids = append(ids, s.id)
		}
	}
	if len(ids) == 0 {
		return a.fail(&consoleErr{file: invalidatePHP, line: 118, msg: fmt.Sprintf("Invalid --sites value: '%s'.", sitesArg)})
	}
	for _, id := range ids {
		s, ok := byID[id]
		if !ok {
			return a.fail(&consoleErr{file: invalidatePHP, line: 123, msg: fmt.Sprintf("Invalid --sites value: '%s', there are no sites with IDs = %d", sitesArg, id)})
		}
		chosen = append(chosen, s)
	}
	periodsArg := strings.TrimSpace(in.str("periods", "all"))
	if periodsArg == "" {
		return a.fail(&consoleErr{file: invalidatePHP, line: 137, msg: "The --periods argument is required."})
	}
	types := []string{"day", "week", "month", "year", "range"}
	if periodsArg != "all" {
		types = nil
		for _, p := range strings.Split(periodsArg, ",") {
			p = strings.TrimSpace(p)
			if periodType(p) == 0 {
				return a.fail(&consoleErr{file: invalidatePHP, line: 142, msg: fmt.Sprintf("Invalid period type '%s' supplied in --periods.", p)})
			}
			types = append(types, p)
		}
	}
	dateRanges := in.all("dates")
	if len(dateRanges) == 0 {
		return a.fail(&consoleErr{file: invalidatePHP, line: 154, msg: "The --dates option is required."})
	}
	segments := []string{""}
	if segs := in.all("segment"); len(segs) > 0 {
		segments = nil
		for _, s := range segs {
			if s = strings.TrimSpace(s); s != "" {
				a.log("WARNING", "'%s' did not match any stored segment, but invalidating it anyway.", s)
				segments = append(segments, s)
			}
		}
	}
	plugin := in.str("plugin", "")
	cascade := in.has("cascade")
	cascadeFlag := 0
	if cascade {
		cascadeFlag = 1
	}
	siteList := make([]string, len(chosen))
	for i, s := range chosen {
		siteList[i] = strconv.Itoa(s.id)
	}
	for _, typName := range types {
		if typName == "range" {
			continue
		}
		typ := periodType(typName)
		for _, dr := range dateRanges {
			for _, seg := range segments {
				a.info("Invalidating %s periods in %s [segment = %s]...", typName, dr, seg)
				starts, ok := periodDates(typ, dr, a.now())
				if !ok {
					return a.fail(&consoleErr{file: invalidatePHP, line: 166, msg: fmt.Sprintf("Invalid date or date range specifier '%s'", dr),
						prev: &consoleErr{file: "core/Date.php", line: 1027, msg: "Date format must be: YYYY-MM-DD, or 'today' or 'yesterday' or any keyword supported by the strtotime function (see http://php.net/strtotime for more information): false"}})
				}
				if in.has("dry-run") {
					ds := make([]string, len(starts))
					for i, d := range starts {
						ds[i] = d.String()
					}
					msg := fmt.Sprintf("[Dry-run] invalidating archives for site = [ %s ], dates = [ %s ], period = [ %s ], segment = [ %s ], cascade = [ %d ]",
						strings.Join(siteList, ", "), strings.Join(ds, ", "), typName, seg, cascadeFlag)
					if plugin != "" {
						msg += fmt.Sprintf(", plugin = [ %s ]", plugin)
					}
					a.info("%s", msg)
					continue
				}
				if dbErr != nil {
					return a.fail(&consoleErr{file: "libs/Zend/Db/Adapter/Pdo/Abstract.php", line: 119, msg: pdoMessage(dbErr)})
				}
				res, err := a.invalidate(ctx, st, cfg, chosen, typ, starts, cascade, doneName(seg, plugin), in.has("ignore-log-deletion-limit"))
				if err != nil {
					return a.dbFail(err)
				}
				if a.verbose > 0 {
					res.log(a)
				}
			}
		}
	}
	if in.has("dry-run") && (periodsArg == "all" || slices.Contains(types, "range")) {
		var multi []string
		for _, dr := range dateRanges {
			if periodsArg != "all" || strings.Contains(dr, ",") {
				multi = append(multi, dr)
			}
		}
		if len(multi) > 0 {
			for _, seg := range segments {
				a.info("Invalidating range periods overlapping %s [segment = %s]...", strings.Join(multi, ";"), seg)
			}
		}
	}
	a.hang()
	if a.warned && !in.has("ignore-warn") {
		return 1
	}
	return 0
}

func periodType(label string) int {
	for t, l := range periodLabels {
		if l == label {
			return t
		}
	}
	return 0
}

// periodDates expands a --dates value into the start dates of the periods
// of type typ it covers. A reversed range covers only its end (i8).
func periodDates(typ int, spec string, now time.Time) ([]matomo.Date, bool) {
	parse := func(s string) (matomo.Date, bool) {
		today := matomo.DateOf(now.UTC())
		switch strings.TrimSpace(s) {
		case "today", "now":
			return today, true
		case "yesterday":
			return today.AddDays(-1), true
		}
		d, err := matomo.ParseDate(strings.TrimSpace(s))
		return d, err == nil
	}
	from, to, isRange := strings.Cut(spec, ",")
	f, ok := parse(from)
	if !ok {
		return nil, false
	}
	if !isRange {
		return []matomo.Date{periodOf(typ, f).start}, true
	}
	t, ok := parse(to)
	if !ok {
		return nil, false
	}
	if f > t {
		return []matomo.Date{periodOf(typ, t).start}, true
	}
	var out []matomo.Date
	for p := periodOf(typ, f); p.start <= t; p = periodOf(typ, p.end+1) {
		out = append(out, p.start)
	}
	return out, true
}

// invResult is what Matomo's InvalidationResult reports with -v.
type invResult struct {
	processed, skipped []matomo.Date
	oldest             matomo.Date
}

func (r invResult) log(a *app) {
	join := func(ds []matomo.Date) string {
		s := make([]string, len(ds))
		for i, d := range ds {
			s[i] = d.String()
		}
		return strings.Join(s, ", ")
	}
	if len(r.skipped) > 0 {
		a.info("Warning: the following Dates have not been invalidated, because they are earlier than your Log Deletion limit: %s\n The last day with logs is %s. \n Please disable 'Delete old Logs' or set it to a higher deletion threshold (eg. 180 days or 365 years).'.",
			join(r.skipped), r.oldest)
	}
	a.info("Success. The following dates were invalidated successfully: %s", join(r.processed))
}

// invalidate is Matomo's markArchivesAsInvalidated, shared by both commands:
// dates older than the log-deletion limit are dropped, the rest queued.
func (a *app) invalidate(ctx context.Context, st *store, cfg *matomo.INIConfig, sites []site, typ int, starts []matomo.Date, cascade bool, name string, ignoreLimit bool) (invResult, error) {
	var r invResult
	enabled, days := st.logDeletion(ctx, cfg)
	limit := enabled && !ignoreLimit
	r.oldest = matomo.DateOf(a.now()).AddDays(-days)
	for _, d := range starts {
		if limit && d < r.oldest {
			r.skipped = append(r.skipped, d)
		} else {
			r.processed = append(r.processed, d)
		}
	}
	for _, s := range sites {
		if err := st.invalidatePeriods(ctx, s, typ, r.processed, cascade, name, a.now()); err != nil {
			return r, err
		}
	}
	return r, nil
}

// invalidatePeriods queues each period with its parents (and, with cascade,
// its children) and sets the done flags of their archives to 4. Periods that
// end before the site's creation day are left out (i5); rows already queued
// are not duplicated (j3).
func (s *store) invalidatePeriods(ctx context.Context, st site, typ int, starts []matomo.Date, cascade bool, name string, now time.Time) error {
	if len(starts) == 0 {
		return nil
	}
	var list []period
	seen := map[period]bool{}
	add := func(p period) {
		if p.end >= st.created && !seen[p] {
			seen[p] = true
			list = append(list, p)
		}
	}
	for _, d := range starts {
		p := periodOf(typ, d)
		add(p)
		for _, q := range p.parents() {
			add(q)
		}
		if cascade {
			for _, q := range p.cascade() {
				add(q)
			}
		}
	}
	queued, err := s.queued(ctx, st.id, 0)
	if err != nil {
		return err
	}
	have := map[queueKey]bool{}
	for _, q := range queued {
		have[q.key] = true
	}
	var keys []queueKey
	var ids []int64
	for _, p := range list {
		id, err := s.markInvalidated(ctx, st.id, p, name)
		if err != nil {
			return err
		}
		k := queueKey{st.id, p, name}
		if !have[k] {
			keys = append(keys, k)
			ids = append(ids, id)
		}
	}
	return s.insertInvalidations(ctx, keys, ids, now)
}
