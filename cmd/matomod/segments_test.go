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

// Issue 14 (segments): `gaps` lists a stored segment's gap days, weeks,
// months and years apart (JSON segment_gaps with the definition and the
// period; a "Segment gaps" table with a PERIOD column) and exits 1;
// `repair --dry-run` plans them with --segment=<definition> (a week with
// --periods=week) and names the period.
func TestGapsCommandSegments(t *testing.T) {
	e, cfg := gapEnv(t)
	e.Exec(`CREATE TABLE {p}segment (idsegment int(11) NOT NULL AUTO_INCREMENT, name varchar(255) NOT NULL, definition text NOT NULL,
		hash char(32) DEFAULT NULL, login varchar(100) NOT NULL, enable_all_users tinyint(4) NOT NULL DEFAULT 0, enable_only_idsite int(11) DEFAULT NULL,
		auto_archive tinyint(4) NOT NULL DEFAULT 0, ts_created timestamp NULL DEFAULT NULL, ts_last_edit timestamp NULL DEFAULT NULL,
		deleted tinyint(4) NOT NULL DEFAULT 0, PRIMARY KEY (idsegment))`)
	def := "pageUrl=@%2Fshop"
	e.Exec("INSERT INTO {p}segment (name, definition, hash, login, enable_only_idsite, auto_archive, ts_created) VALUES ('s', ?, ?, 'u', 3, 1, ?)",
		def, matomo.SegmentHash(def), day(29).UTC())
	e.AddArchive(matomotest.ArchiveRow{IDSite: 3, Period: matomo.PeriodDay, Date1: day(9).Format("2006-01-02"), Name: "done" + matomo.SegmentHash(def), TSArchived: day(7), NbVisits: 0})
	// The segment's weeks, months and years that ended are archived, but
	// for the week of day -20.
	loc := time.FixedZone("UTC+5.5", 330*60)
	today := matomo.Today(loc, time.Now())
	w, _ := gapdetect.PeriodOf(matomo.PeriodWeek, matomo.DateOf(day(20)))
	done := map[matomo.PeriodKey]bool{}
	for _, d := range []int{20, 10, 9} {
		for _, p := range []int{matomo.PeriodWeek, matomo.PeriodMonth, matomo.PeriodYear} {
			first, last := gapdetect.PeriodOf(p, matomo.DateOf(day(d)))
			k := matomo.PeriodKey{Period: p, Date: first}
			if last >= today || done[k] || (p == matomo.PeriodWeek && first == w) {
				continue
			}
			done[k] = true
			e.AddArchive(matomotest.ArchiveRow{IDSite: 3, Period: p, Date1: first.String(), Date2: last.String(), Name: "done" + matomo.SegmentHash(def),
				TSArchived: time.Now().UTC(), NbVisits: 0})
		}
	}

	code, out, errOut := cli(t, "--config.file="+cfg, "gaps", "--format=json")
	if code != exitFound {
		t.Fatalf("exit %d, stderr %s", code, errOut)
	}
	var res struct {
		Gaps        []map[string]any `json:"gaps"`
		SegmentGaps []map[string]any `json:"segment_gaps"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("json: %v\n%s", err, out)
	}
	// Day -10 (also a plain gap) and day -20 (the first raw day: not
	// repairable); day -9 has its segment archive; then the week of day
	// -20, after the days.
	if len(res.Gaps) != 1 || len(res.SegmentGaps) != 3 {
		t.Fatalf("gaps %v\nsegment gaps %v", res.Gaps, res.SegmentGaps)
	}
	if g := res.SegmentGaps[2]; g["segment"] != def || g["period"] != "week" || g["date"] != w.String() || g["date2"] != w.AddDays(6).String() ||
		g["kind"] != "missing" || g["repairable"] != true || g["raw_visits"] != float64(1) {
		t.Errorf("segment week gap: %v", g)
	}
	for i, want := range []struct {
		date string
		rep  bool
	}{{day(20).Format("2006-01-02"), false}, {day(10).Format("2006-01-02"), true}} {
		g := res.SegmentGaps[i]
		if g["segment"] != def || g["date"] != want.date || g["repairable"] != want.rep || g["kind"] != "missing" || g["period"] != "day" {
			t.Errorf("segment gap %d: %v, want %s repairable %v", i, g, want.date, want.rep)
		}
	}
	if _, ok := res.Gaps[0]["segment"]; ok {
		t.Errorf("a plain gap carries a segment field: %v", res.Gaps[0])
	}
	_, out, _ = cli(t, "--config.file="+cfg, "gaps")
	if !strings.Contains(out, "Segment gaps") || !strings.Contains(out, def) || !strings.Contains(out, "2 segment gap days and 1 segment gap weeks, months or years (2 repairable).") ||
		!regexp.MustCompile(`3 +`+regexp.QuoteMeta(def)+` +week +`+w.String()+`\.\.`+w.AddDays(6).String()+` +1 +missing +1 +yes`).MatchString(out) {
		t.Errorf("table:\n%s", out)
	}
	code, out, errOut = cli(t, "--config.file="+cfg, "repair", "--dry-run")
	if code != exitOK || !strings.Contains(out, "--segment="+def) || !strings.Contains(out, "planned: 1 segment day(s)") ||
		!strings.Contains(out, "skipped_unsafe: 1 segment day(s)") || !strings.Contains(out, "--dates="+w.String()+" --periods=week --segment="+def) ||
		!strings.Contains(out, "planned: 1 segment week(s), month(s) or year(s)\n  site 3 week "+w.String()+".."+w.AddDays(6).String()+" segment "+def+" (missing)") {
		t.Errorf("repair --dry-run: exit %d\n%s\n%s", code, out, errOut)
	}
}
