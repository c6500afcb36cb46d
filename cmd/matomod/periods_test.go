package main

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

// archivePeriods writes, as Matomo would have, a good week, month and
// year archive (nb_visits the sum of the given days) for every period
// holding one of visits' days that ended before today (UTC), so a fixture
// about day gaps has no period gaps.
func archivePeriods(e *matomotest.Env, idsite int, visits map[time.Time]int64) {
	today := matomo.DateOf(time.Now().UTC())
	sums := map[matomo.PeriodKey]int64{}
	lasts := map[matomo.PeriodKey]matomo.Date{}
	for t, n := range visits {
		for _, p := range []int{matomo.PeriodWeek, matomo.PeriodMonth, matomo.PeriodYear} {
			first, last := gapdetect.PeriodOf(p, matomo.DateOf(t))
			k := matomo.PeriodKey{IDSite: idsite, Period: p, Date: first}
			sums[k] += n
			lasts[k] = last
		}
	}
	for k, n := range sums {
		if lasts[k] < today {
			e.AddArchive(matomotest.ArchiveRow{IDSite: idsite, Period: k.Period, Date1: k.Date.String(), Date2: lasts[k].String(),
				TSArchived: time.Now().UTC(), NbVisits: n})
		}
	}
}

// Issue 14: a week without archive shows in `gaps` as its own row (table)
// and with period and date2 (JSON), after the day gaps of its site.
func TestGapsCommandPeriods(t *testing.T) {
	e, cfg := gapEnv(t)
	w, wLast := gapdetect.PeriodOf(matomo.PeriodWeek, matomo.DateOf(day(20)))
	e.Exec("DELETE FROM {p}"+matomo.TableFor(w)+" WHERE idsite = 3 AND period = 2 AND date1 = ?", w.String())
	code, out, errOut := cli(t, "--config.file="+cfg, "gaps", "--format=json")
	if code != exitFound {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	var res struct {
		Gaps []map[string]any `json:"gaps"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	if len(res.Gaps) != 2 || res.Gaps[0]["period"] != "day" || res.Gaps[0]["date2"] != res.Gaps[0]["date"] {
		t.Fatalf("gaps: %v", res.Gaps)
	}
	g := res.Gaps[1]
	if g["period"] != "week" || g["date"] != w.String() || g["date2"] != wLast.String() || g["kind"] != "missing" ||
		g["raw_visits"] != float64(1) || g["repairable"] != true {
		t.Errorf("week gap: %v", g)
	}
	code, out, _ = cli(t, "--config.file="+cfg, "gaps")
	if code != exitFound || !regexp.MustCompile(`3\s+week\s+`+w.String()+`\.\.`+wLast.String()+`\s+1\s+missing\s+1\s+-\s+yes`).MatchString(out) ||
		!strings.Contains(out, "1 gap days and 1 gap weeks, months or years (2 repairable).") {
		t.Errorf("table (%d):\n%s", code, out)
	}
	code, out, _ = cli(t, "--config.file="+cfg, "repair", "--dry-run")
	if code != exitOK || !strings.Contains(out, "--sites=3 --dates="+w.String()+" --periods=week") ||
		!strings.Contains(out, "planned: 1 week(s), month(s) or year(s)\n  site 3 week "+w.String()+".."+wLast.String()+" (missing)") {
		t.Errorf("repair --dry-run (%d):\n%s", code, out)
	}
}
