package daemon

import (
	"fmt"
	"strings"
	"testing"
	"testing/synctest"
	"time"

	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/metrics"
)

const seg = "pageTitle==p3"

// segScan is a harness that scans every minute and runs core:archive
// only daily, so each minute is one scan-and-repair cycle.
func segScan(t *testing.T, edit func(*Settings)) *harness {
	s := settings(t)
	s.ScanInterval = time.Minute
	s.Schedule.Schedule = "@daily"
	if edit != nil {
		edit(&s)
	}
	return newHarness(t, s)
}

// Issue 14: the daemon repaired only plain gaps; a stored segment's gap
// waited for a manual `matomod repair`. Now the cycle repairs it, counts
// it, and the gap metrics show it closed.
func TestDaemonRepairsSegmentGap(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := segScan(t, nil)
		h.rep.fixSegments = true
		day := matomo.Date(20400)
		gap := gapdetect.Gap{IDSite: 1, Period: gapdetect.PeriodDay, Date: day, Date2: day, Kind: gapdetect.Missing, RawVisits: 4, Repairable: true, Segment: seg}
		h.det.setSegGaps(gap)
		h.start()
		time.Sleep(3 * time.Minute)
		calls := h.rep.calls()
		if len(calls) != 1 || len(calls[0]) != 1 || calls[0][0] != gap {
			t.Errorf("RepairSegments calls %+v, want one with the segment gap", calls)
		}
		if n := h.rep.segTries(1, seg, day); n != 1 {
			t.Errorf("segment day repaired %d times, want once", n)
		}
		if len(h.rep.tried) != 0 {
			t.Errorf("the plain repair was given days: %v", h.rep.tried)
		}
		if v := h.metric("matomod_repairs_total", "result", metrics.RepairRepaired); v != 1 {
			t.Errorf("repaired counted %v, want 1", v)
		}
		if v := h.metric("matomod_invalidations_total"); v != 1 {
			t.Errorf("invalidations counted %v, want 1", v)
		}
		if v := h.metric("matomo_archive_segment_gaps_all_sites", "kind", "missing", "repairable", "true"); v != 0 {
			t.Errorf("matomo_archive_segment_gaps_all_sites %v after the repair, want 0", v)
		}
		if ev := h.logs.events("gap_scan_finished"); len(ev) == 0 || ev[0]["segment_gaps"] != 1.0 {
			t.Errorf("gap_scan_finished: %v, want segment_gaps=1 first", ev)
		}
		ev := h.logs.events("gap_found")
		if len(ev) != 1 || ev[0]["segment"] != seg || ev[0]["period"] != "day" {
			t.Errorf("gap_found: %v, want the segment gap once, with its segment", ev)
		}
		h.stop()
	})
}

// A segment's gap on the same site-day as a plain gap is a second gap:
// logged, tried, held back and counted apart from the plain day.
func TestSegmentGapAndPlainDayAreTwoGaps(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := segScan(t, nil)
		day := matomo.Date(20400)
		h.det.gaps = []gapdetect.Gap{
			{IDSite: 1, Period: gapdetect.PeriodDay, Date: day, Date2: day, Kind: gapdetect.Missing, RawVisits: 3, Reason: "unsafe"},
			{IDSite: 2, Period: gapdetect.PeriodDay, Date: day, Date2: day, Kind: gapdetect.Missing, RawVisits: 5, Repairable: true},
		}
		h.det.setSegGaps(
			gapdetect.Gap{IDSite: 1, Period: gapdetect.PeriodDay, Date: day, Date2: day, Kind: gapdetect.Missing, RawVisits: 3, Reason: "unsafe", Segment: seg},
			gapdetect.Gap{IDSite: 2, Period: gapdetect.PeriodDay, Date: day, Date2: day, Kind: gapdetect.Missing, RawVisits: 5, Repairable: true, Segment: seg},
		)
		h.start()
		time.Sleep(4 * time.Minute)
		if n := h.det.scans.Load(); n < 3 {
			t.Errorf("%d scans", n)
		}
		found := h.logs.events("gap_found")
		var segs int
		for _, ev := range found {
			if ev["segment"] == seg {
				segs++
			}
		}
		if len(found) != 4 || segs != 2 {
			t.Errorf("gap_found logged %d times (%d with the segment), want 4 (2)\n%v", len(found), segs, found)
		}
		if v := h.metric("matomod_repairs_total", "result", "skipped_unsafe"); v != 2 {
			t.Errorf("skipped_unsafe counted %v, want 2 (the day and its segment)", v)
		}
		if v := h.metric("matomod_repairs_total", "result", "failed"); v != 2 {
			t.Errorf("failed counted %v, want 2 (the day and its segment)", v)
		}
		h.rep.mu.Lock()
		plain := h.rep.tried[matomo.SiteDate{IDSite: 2, Date: day}]
		h.rep.mu.Unlock()
		if n := h.rep.segTries(2, seg, day); plain != 1 || n != 1 {
			t.Errorf("refused day tried %d times, its segment %d times; want once each", plain, n)
		}
		held := h.logs.events("repair_held_back")
		if len(held) != 2 || (held[0]["segment"] == nil) == (held[1]["segment"] == nil) {
			t.Errorf("repair_held_back: %v, want the day and its segment", held)
		}
		h.stop()
	})
}

// Issue 11's rule for segments: a refused segment repair is tried once
// within the backoff and counted once, then again when its facts change
// or the backoff has passed.
func TestRefusedSegmentRepairTriedOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := segScan(t, nil)
		h.d.RepairBackoff = time.Hour
		day := matomo.Date(20400)
		gap := gapdetect.Gap{IDSite: 2, Period: gapdetect.PeriodDay, Date: day, Date2: day, Kind: gapdetect.Invalidated, RawVisits: 5, Repairable: true, Segment: seg}
		h.det.setSegGaps(gap)
		h.start()
		time.Sleep(5 * time.Minute)
		if n := h.rep.segTries(2, seg, day); n != 1 {
			t.Errorf("refused segment day tried %d times in 5 scans, want once", n)
		}
		if v := h.metric("matomod_repairs_total", "result", "failed"); v != 1 {
			t.Errorf("failed counted %v, want 1", v)
		}
		ev := h.logs.events("repair_held_back")
		if len(ev) != 1 || ev[0]["segment"] != seg || !strings.Contains(fmt.Sprint(ev[0]["reason"]), "refused") {
			t.Errorf("repair_held_back: %v", ev)
		}
		gap.RawVisits = 9 // new facts: tried again
		h.det.setSegGaps(gap)
		time.Sleep(2 * time.Minute)
		if n := h.rep.segTries(2, seg, day); n != 2 {
			t.Errorf("refused segment day tried %d times after its facts changed, want 2", n)
		}
		time.Sleep(time.Hour + time.Minute) // the backoff passed: once more, not counted again
		if n := h.rep.segTries(2, seg, day); n != 3 {
			t.Errorf("refused segment day tried %d times in the hour after the backoff, want 3", n)
		}
		if v := h.metric("matomod_repairs_total", "result", "failed"); v != 2 {
			t.Errorf("failed counted %v, want 2 (once per facts)", v)
		}
		h.stop()
	})
}

// No segment repair while archiving is paused or auto_repair is off; it
// follows once the pause ends or a reload turns auto_repair on.
func TestNoSegmentRepairWhilePausedOrAutoRepairOff(t *testing.T) {
	day := matomo.Date(20400)
	gap := gapdetect.Gap{IDSite: 1, Period: gapdetect.PeriodDay, Date: day, Date2: day, Kind: gapdetect.Missing, RawVisits: 4, Repairable: true, Segment: seg}
	t.Run("paused", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := segScan(t, nil)
			h.det.setSegGaps(gap)
			h.db.set(func(f *fakeDB) { f.pause = metrics.PausedMaintenanceMode })
			h.start()
			time.Sleep(5 * time.Minute)
			if h.det.scans.Load() < 3 || len(h.logs.events("gap_found")) != 1 {
				t.Errorf("scans %d, gap_found %v: scans go on while paused", h.det.scans.Load(), h.logs.events("gap_found"))
			}
			if c := h.rep.calls(); len(c) != 0 {
				t.Errorf("segment repair while paused: %v", c)
			}
			h.db.set(func(f *fakeDB) { f.pause = "" })
			time.Sleep(3 * time.Minute)
			if n := h.rep.segTries(1, seg, day); n != 1 {
				t.Errorf("segment day tried %d times after the pause, want once", n)
			}
			h.stop()
		})
	})
	t.Run("auto_repair off", func(t *testing.T) {
		synctest.Test(t, func(t *testing.T) {
			h := segScan(t, func(s *Settings) { s.AutoRepair = false })
			h.det.setSegGaps(gap)
			h.start()
			time.Sleep(5 * time.Minute)
			if c := h.rep.calls(); len(c) != 0 {
				t.Errorf("segment repair with auto_repair off: %v", c)
			}
			h.nextEnv = func() (*Env, error) {
				s := h.env.Settings
				s.AutoRepair = true
				return h.newEnv(s), nil
			}
			h.reload <- struct{}{}
			h.waitEvent("config_reloaded", 5*time.Second)
			time.Sleep(3 * time.Minute)
			if n := h.rep.segTries(1, seg, day); n != 1 {
				t.Errorf("segment day tried %d times once auto_repair is on, want once", n)
			}
			h.stop()
		})
	})
}

// Plain gaps and segment gaps share gaps.max_repair_days: the plain days
// go first, the segments get what is left, the most recent first.
func TestSegmentRepairsGetWhatPlainGapsLeave(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		h := segScan(t, func(s *Settings) { s.MaxRepairDays = 3 })
		day := matomo.Date(20400)
		h.det.gaps = []gapdetect.Gap{
			{IDSite: 1, Period: gapdetect.PeriodDay, Date: day, Date2: day, Kind: gapdetect.Missing, RawVisits: 3, Repairable: true},
			{IDSite: 1, Period: gapdetect.PeriodDay, Date: day + 1, Date2: day + 1, Kind: gapdetect.Missing, RawVisits: 3, Repairable: true},
		}
		var segs []gapdetect.Gap
		for i := range 3 {
			d := day + matomo.Date(i)
			segs = append(segs, gapdetect.Gap{IDSite: 1, Period: gapdetect.PeriodDay, Date: d, Date2: d, Kind: gapdetect.Missing, RawVisits: 3, Repairable: true, Segment: seg})
		}
		unsafe := gapdetect.Gap{IDSite: 3, Period: gapdetect.PeriodDay, Date: day, Date2: day, Kind: gapdetect.Missing, RawVisits: 3, Reason: "unsafe", Segment: seg}
		h.det.setSegGaps(append(segs, unsafe)...)
		h.start()
		time.Sleep(30 * time.Second)
		calls := h.rep.calls()
		if len(calls) != 1 {
			t.Errorf("RepairSegments calls %+v, want 1", calls)
			h.stop()
			return
		}
		var repairable []matomo.Date
		skipped := 0
		for _, g := range calls[0] {
			if g.Repairable {
				repairable = append(repairable, g.Date)
			} else {
				skipped++
			}
		}
		if len(repairable) != 1 || repairable[0] != day+2 || skipped != 1 {
			t.Errorf("RepairSegments given repairable days %v and %d unsafe ones; want only the newest (%v) within the budget left, and the unsafe one", repairable, skipped, day+2)
		}
		if len(h.logs.events("repair_deferred")) != 1 {
			t.Errorf("repair_deferred: %v, want one for the 2 segment days left out", h.logs.events("repair_deferred"))
		}
		h.stop()
	})
}
