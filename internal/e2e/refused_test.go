package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/realmatomo"
)

// Regression (issue 11): a repair Matomo refuses was tried again on every
// scan (12 futile repair_failed in 40 s) and counted each time. Here
// Matomo fails for a reason matomod cannot see beforehand: the database
// rejects its invalidation rows for site 2 (a trigger stands in for a
// read-only replica, a full disk, a broken grant). The daemon tries once,
// records Matomo's own words, and leaves the day alone while nothing about
// it changes. (Matomo's words here are "MySQL server has gone away": its
// retry after the trigger's error hides the first message.)
func TestRealRefusedRepairTriedOnce(t *testing.T) {
	t.Parallel()
	in := realmatomo.New(t)
	target := day(6)
	deleteArchives(t, in, 2, target, target, 1)
	in.Exec("CREATE TRIGGER matomod_refuse BEFORE INSERT ON {p}archive_invalidations FOR EACH ROW " +
		"BEGIN IF NEW.idsite = 2 THEN SIGNAL SQLSTATE '45000' SET MESSAGE_TEXT = 'site 2 is read-only here'; END IF; END")
	cfg := config(t, in, "archive:\n  schedule: \"0 0 1 1 *\"\ngaps:\n  scan_interval: 2s\n")
	d := startDaemon(t, cfg)
	waitFor(t, "the repair to fail", 2*time.Minute, func() bool { return len(d.lines("event=repair_held_back")) > 0 })
	held := d.lines("event=repair_held_back")[0]
	if !strings.Contains(held, "idsite=2") || !strings.Contains(held, "date="+target) || !strings.Contains(held, "exit code 1: Uncaught exception") {
		t.Errorf("repair_held_back: %s", held)
	}
	// Ten more scans: no second attempt, counted once.
	n := len(d.lines("event=gap_scan_finished"))
	waitFor(t, "ten more scans", time.Minute, func() bool { return len(d.lines("event=gap_scan_finished")) >= n+10 })
	var tries int
	for _, l := range d.lines("event=console_started") {
		if strings.Contains(l, "core:invalidate-report-data") && strings.Contains(l, "--sites=2") {
			tries++
		}
	}
	if tries != 1 {
		t.Errorf("the refused day was handed to the console %d times, want once", tries)
	}
	if v := metric(d.metrics(), "matomod_repairs_total", `result="failed"`); v != 1 {
		t.Errorf(`matomod_repairs_total{result="failed"} = %v, want 1`, v)
	}
}
