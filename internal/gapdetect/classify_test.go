package gapdetect

import (
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomo"
)

func day(s string) matomo.Date {
	d, err := matomo.ParseDate(s)
	if err != nil {
		panic(err)
	}
	return d
}

func flag(d string, value int, archived string) matomo.DoneFlag {
	return matomo.DoneFlag{IDSite: 1, Date: day(d), IDArchive: 7, Value: value, TSArchived: ts(archived)}
}

func i64(n int64) *int64 { return &n }

func TestClassifyTable(t *testing.T) {
	now := ts("2026-11-27 12:00:00")
	ny, _ := time.LoadLocation("America/New_York")
	base := func(f DayFacts) DayFacts {
		f.Now, f.Grace = now, 2*time.Hour
		if f.Loc == nil {
			f.Loc = time.UTC
		}
		if f.Date == 0 {
			f.Date = day("2026-11-20")
		}
		return f
	}
	cases := []struct {
		name string
		f    DayFacts
		want Kind // "" = not a gap
	}{
		{"no archive, visits", DayFacts{Raw: 3}, Missing},
		{"no archive, no visits", DayFacts{}, ""},
		{"good", DayFacts{Raw: 3, Newest: flag("2026-11-20", 1, "2026-11-21 00:00:00")}, ""},
		{"archived during the day", DayFacts{Raw: 3, Newest: flag("2026-11-20", 1, "2026-11-20 23:59:59")}, Incomplete},
		// New York's 11-20 ends at 05:00 UTC on 11-21.
		{"NY archived before its local end", DayFacts{Loc: ny, Raw: 3, Newest: flag("2026-11-20", 1, "2026-11-21 04:59:59")}, Incomplete},
		{"NY archived after its local end", DayFacts{Loc: ny, Raw: 3, Newest: flag("2026-11-20", 1, "2026-11-21 05:00:00")}, ""},
		{"invalidated long ago", DayFacts{Raw: 3, Newest: flag("2026-11-20", 4, "2026-11-21 01:00:00")}, Invalidated},
		{"invalidated, queued recently", DayFacts{Raw: 3, Newest: flag("2026-11-20", 4, "2026-11-21 01:00:00"), Queued: true, QueuedAt: now.Add(-time.Hour)}, ""},
		{"invalidated, queued long ago", DayFacts{Raw: 3, Newest: flag("2026-11-20", 4, "2026-11-21 01:00:00"), Queued: true, QueuedAt: now.Add(-3 * time.Hour)}, Invalidated},
		{"OK but queued after it, never rebuilt", DayFacts{Raw: 3, Newest: flag("2026-11-20", 1, "2026-11-21 01:00:00"), Queued: true, QueuedAt: now.Add(-3 * time.Hour)}, Invalidated},
		{"error invalidated (6)", DayFacts{Raw: 3, Newest: flag("2026-11-20", 6, "2026-11-21 01:00:00")}, Invalidated},
		{"failed, old", DayFacts{Raw: 3, Newest: flag("2026-11-20", 2, "2026-11-21 01:00:00")}, Failed},
		{"failed, within grace", DayFacts{Raw: 3, Newest: flag("2026-11-20", 2, "2026-11-27 11:00:00")}, ""},
		{"failed over an older good one", DayFacts{Raw: 3, Newest: flag("2026-11-20", 2, "2026-11-22 01:00:00"), NewestOK: flag("2026-11-20", 1, "2026-11-21 01:00:00")}, ""},
		{"unknown done value", DayFacts{Raw: 3, Newest: flag("2026-11-20", 99, "2026-11-21 01:00:00")}, Failed},
		{"stale", DayFacts{Raw: 6, Archived: i64(4), Stale: true, Newest: flag("2026-11-20", 1, "2026-11-21 01:00:00")}, Stale},
	}
	for _, c := range cases {
		got, ok := Classify(base(c.f))
		if !ok {
			got = ""
		}
		if got != c.want {
			t.Errorf("%s: got %q, want %q", c.name, got, c.want)
		}
	}
}

// Matomo refuses to invalidate any day before today(UTC) - N: the day
// at the limit is repairable, the one before is not, whatever the site's
// time zone says today is.
func TestRepairableLogDeletionBoundary(t *testing.T) {
	now := ts("2026-12-03 12:00:00") // the observed case: N = 36
	s := Safety{DeleteLogs: true, DeleteLogsDays: 36, LastArchiveRun: now}
	kolkata, _ := time.LoadLocation("Asia/Kolkata")
	samoa, _ := time.LoadLocation("Pacific/Pago_Pago") // UTC-11
	late := ts("2026-12-03 20:00:00")                  // already 12-04 in Kolkata
	cases := []struct {
		loc  *time.Location
		now  time.Time
		date string
		want bool
	}{
		{time.UTC, now, "2026-10-28", true},
		{time.UTC, now, "2026-10-27", false},
		{time.UTC, now, "2026-10-26", false},
		{kolkata, late, "2026-10-28", true},
		{kolkata, late, "2026-10-27", false},
		{samoa, now, "2026-10-28", true},
		{samoa, now, "2026-10-27", false},
	}
	for _, c := range cases {
		f := DayFacts{Date: day(c.date), Loc: c.loc, Now: c.now, Raw: 5}
		ok, why := Repairable(f, Missing, s)
		if ok != c.want {
			t.Errorf("%s in %s: repairable %v (%s), want %v", c.date, c.loc, ok, why, c.want)
		}
		if !ok && !strings.Contains(why, "Matomo invalidates no day before 2026-10-28") {
			t.Errorf("%s: reason %q does not name the limit", c.date, why)
		}
	}
	if ok, _ := Repairable(DayFacts{Date: day("2026-10-01"), Loc: time.UTC, Now: now, Raw: 5}, Missing, Safety{DeleteLogsDays: 36, LastArchiveRun: now}); !ok {
		t.Error("log deletion off: old day not repairable")
	}
}

func TestRepairableTable(t *testing.T) {
	now := ts("2026-11-27 12:00:00")
	run := ts("2026-11-27 00:05:00")
	cases := []struct {
		name, date string
		kind       Kind
		raw        int64
		archived   *int64
		s          Safety
		want       string // "" = repairable, else a reason prefix
	}{
		{"plain", "2026-11-20", Missing, 3, nil, Safety{LastArchiveRun: run}, ""},
		{"no raw", "2026-11-20", Missing, 0, nil, Safety{LastArchiveRun: run}, "no raw visits"},
		{"today", "2026-11-27", Missing, 3, nil, Safety{LastArchiveRun: run}, "today"},
		{"yesterday before a run", "2026-11-26", Missing, 3, nil, Safety{LastArchiveRun: ts("2026-11-26 23:00:00")}, "yesterday"},
		{"yesterday after a run", "2026-11-26", Missing, 3, nil, Safety{LastArchiveRun: run}, ""},
		{"first raw day", "2026-11-20", Missing, 3, nil, Safety{LastArchiveRun: run, FirstVisit: ts("2026-11-20 08:00:00")}, "first day"},
		{"after first raw day", "2026-11-21", Missing, 3, nil, Safety{LastArchiveRun: run, FirstVisit: ts("2026-11-20 08:00:00")}, ""},
		{"raw under half", "2026-11-20", Invalidated, 1, i64(40), Safety{LastArchiveRun: run}, "raw visits (1) are less than half"},
		{"stale ignores the half rule", "2026-11-20", Stale, 1, i64(40), Safety{LastArchiveRun: run}, ""},
	}
	for _, c := range cases {
		f := DayFacts{Date: day(c.date), Loc: time.UTC, Now: now, Raw: c.raw, Archived: c.archived}
		ok, why := Repairable(f, c.kind, c.s)
		if (c.want == "") != ok || !strings.HasPrefix(why, c.want) {
			t.Errorf("%s: got %v %q, want %q", c.name, ok, why, c.want)
		}
	}
}

func TestTableChanged(t *testing.T) {
	at := ts("2026-12-03 10:00:00")
	base := matomo.TableSig{Created: at, Updated: at.Add(time.Hour), Seq: 100}
	cases := []struct {
		name string
		now  func(s matomo.TableSig) matomo.TableSig
		want bool
	}{
		{"unchanged", func(s matomo.TableSig) matomo.TableSig { return s }, false},
		{"updated", func(s matomo.TableSig) matomo.TableSig { s.Updated = s.Updated.Add(time.Second); return s }, true},
		{"created again", func(s matomo.TableSig) matomo.TableSig { s.Created = s.Created.Add(time.Minute); return s }, true},
		{"UPDATE_TIME lost (restart, eviction)", func(s matomo.TableSig) matomo.TableSig { s.Updated = time.Time{}; return s }, true},
		// Evicted before and after a change: UPDATE_TIME reads NULL both
		// times, the sequence row still moved.
		{"new archive in an evicted table", func(s matomo.TableSig) matomo.TableSig { s.Updated = time.Time{}; s.Seq++; return s }, true},
	}
	for _, c := range cases {
		prev := base
		if c.name == "new archive in an evicted table" {
			prev.Updated = time.Time{}
		}
		if got := tableChanged(prev, c.now(base)); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
	recent := base
	recent.Recent = true
	if !tableChanged(recent, base) {
		t.Error("a table read within a second of its last change is read again")
	}
}

// A gap day whose raw data may be purged and that has no usable archive
// protects every other gap of its week and month: repairing them would make
// Matomo rebuild it from what the purge left.
func TestProtectPeriods(t *testing.T) {
	d := func(s string) matomo.Date { x, _ := matomo.ParseDate(s); return x }
	mk := func(date string, kind Kind, rep bool) Gap {
		return Gap{IDSite: 1, Date: d(date), Kind: kind, Repairable: rep}
	}
	cases := []struct {
		name   string
		hazard string
		kind   Kind
		gaps   []Gap
		want   []bool
	}{
		// 2026-11-25 is a Wednesday; its week is 11-23..11-29.
		{"same week", "2026-11-24", Missing, []Gap{mk("2026-11-24", Missing, false), mk("2026-11-25", Missing, true), mk("2026-11-29", Invalidated, true)}, []bool{false, false, false}},
		{"week across months", "2026-10-31", Failed, []Gap{mk("2026-10-31", Failed, false), mk("2026-11-01", Missing, true), mk("2026-11-02", Missing, true)}, []bool{false, false, true}},
		{"same month, other week", "2026-11-03", Missing, []Gap{mk("2026-11-03", Missing, false), mk("2026-11-20", Missing, true)}, []bool{false, false}},
		{"other month", "2026-10-20", Missing, []Gap{mk("2026-10-20", Missing, false), mk("2026-11-20", Missing, true)}, []bool{false, true}},
		{"stale hazard keeps its archive", "2026-11-24", Stale, []Gap{mk("2026-11-24", Stale, false), mk("2026-11-25", Missing, true)}, []bool{false, true}},
	}
	for _, c := range cases {
		c.gaps[0].Kind = c.kind
		ProtectPeriods(c.gaps, map[matomo.Date]bool{d(c.hazard): true})
		for i, g := range c.gaps {
			if g.Repairable != c.want[i] {
				t.Errorf("%s: %s repairable %v, want %v (%s)", c.name, g.Date, g.Repairable, c.want[i], g.Reason)
			}
			if i > 0 && !g.Repairable && !strings.Contains(g.Reason, c.hazard) {
				t.Errorf("%s: %s reason does not name %s: %q", c.name, g.Date, c.hazard, g.Reason)
			}
		}
	}
	// No hazard: nothing changes.
	g := []Gap{mk("2026-11-25", Missing, true)}
	ProtectPeriods(g, nil)
	if !g[0].Repairable {
		t.Error("protected without a hazard")
	}
}
