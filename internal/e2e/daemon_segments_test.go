package e2e

import (
	"context"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/realmatomo"
)

// deleteDayArchivesNamed removes, in one statement per table, every row of
// the day archives of a site-day that carry one of the given done flags
// ("done", "done<hash>"): a scan sees all of them gone at once.
func deleteDayArchivesNamed(t *testing.T, in *realmatomo.Instance, idsite int, date string, names ...string) {
	t.Helper()
	num, blob := archiveTables(date)
	q := "SELECT idarchive, name FROM " + num + " WHERE idsite = ? AND period = 1 AND date1 = ? AND name IN (?" + strings.Repeat(", ?", len(names)-1) + ")"
	args := []any{idsite, date}
	for _, n := range names {
		args = append(args, n)
	}
	rows, err := in.DB.Query(strings.ReplaceAll(q, "{p}", in.Prefix), args...)
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	found := map[string]bool{}
	for rows.Next() {
		var id int64
		var name string
		if err := rows.Scan(&id, &name); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, fmt.Sprint(id))
		found[name] = true
	}
	rows.Close()
	for _, n := range names {
		if !found[n] {
			t.Fatalf("site %d %s: no %s day archive to delete", idsite, date, n)
		}
	}
	list := strings.Join(ids, ",")
	in.Exec(fmt.Sprintf("DELETE FROM %s WHERE idarchive IN (%s)", num, list))
	in.Exec(fmt.Sprintf("DELETE FROM %s WHERE idarchive IN (%s)", blob, list))
}

// scanCounts parses gap_scan_finished's plain and segment gap counts.
var scanCounts = regexp.MustCompile(` gaps=(\d+) .* segment_gaps=(\d+) `)

func gapCounts(line string) (plain, segment int, ok bool) {
	m := scanCounts.FindStringSubmatch(line + " ")
	if m == nil {
		return 0, 0, false
	}
	plain, _ = strconv.Atoi(m[1])
	segment, _ = strconv.Atoi(m[2])
	return plain, segment, true
}

// `matomod run` with auto_repair on the real Matomo 5.0.2: a stored
// auto-archived segment (SegmentEditor.add, archived by the real console as
// in TestRealSegmentGapsAndRepair) and the plain archives have no gaps;
// one day's plain archive and the same day's segment archive, deleted
// together while the daemon runs, are each logged as gap_found (the
// segment's with its segment field) by one scan and both repaired before
// the next: repair_finished for each, matomod_repairs_total{result=
// "repaired"} up by 2, the plain and segment gap gauges back to 0, and
// Matomo's API shows the day's visits, plain and segmented, as before.
func TestRealDaemonRepairsSegmentAndPlainGaps(t *testing.T) {
	t.Parallel()
	in := realmatomo.New(t)
	ctx := context.Background()
	m := in.Manifest
	const def = "actions>=1"
	today := matomo.DateOf(time.Now().UTC())
	archiveStoredSegment(t, in, "matomod e2e daemon", def, today.AddDays(-10))
	hash := matomo.SegmentHash(def)
	// The day to break, as in TestRealSegmentGapsAndRepair: tracked
	// visits, not yesterday, not the site's first raw day.
	var d matomo.Date
	for n := 2; n <= 8; n++ {
		if x := today.AddDays(-n); m.Visits[fmt.Sprintf("1 %s", x)] > 0 && x.String() > m.FirstDay {
			d = x
			break
		}
	}
	if d == 0 {
		t.Skip("site 1 has no tracked day 2..8 days ago")
	}
	date := d.String()
	plainBefore := visitsOf(t, in, 1, "day", date)
	segBefore, err := in.DayVisits(ctx, 1, "day", date, def)
	if err != nil {
		t.Fatal(err)
	}
	if tracked := m.Visits["1 "+date]; plainBefore != tracked || segBefore != tracked {
		t.Fatalf("site 1 %s before: VisitsSummary %d plain, %d in segment %s; want the %d tracked", date, plainBefore, segBefore, def, tracked)
	}

	cfg := config(t, in, `archive:
  schedule: "0 0 1 1 *"
  run_timeout: 5m
  kill_grace: 5s
gaps:
  scan_interval: 2s
  auto_repair: true
stop_timeout: 2m
`)
	dm := startDaemon(t, cfg)
	// A clean first scan: nothing to find before the deletion.
	waitFor(t, "the first gap scan", 2*time.Minute, func() bool { return len(dm.lines("event=gap_scan_finished")) > 0 })
	if p, s, ok := gapCounts(dm.lines("event=gap_scan_finished")[0]); !ok || p != 0 || s != 0 {
		t.Fatalf("gaps before the deletion: %s", dm.lines("event=gap_scan_finished")[0])
	}
	var repairedBefore float64
	waitFor(t, "/metrics", 30*time.Second, func() bool {
		text := dm.metrics()
		repairedBefore = metric(text, "matomod_repairs_total", `result="repaired"`)
		return strings.Contains(text, "matomod_repairs_total")
	})
	scansBefore := len(dm.lines("event=gap_scan_finished"))

	deleteDayArchivesNamed(t, in, 1, date, "done", "done"+hash)
	planted := time.Now()
	found := func() (plain, seg []string) {
		for _, l := range dm.lines("event=gap_found") {
			if !strings.Contains(l, " idsite=1 ") || !strings.Contains(l, " date="+date+" ") {
				continue
			}
			if strings.Contains(l, " segment=") {
				seg = append(seg, l)
			} else {
				plain = append(plain, l)
			}
		}
		return plain, seg
	}
	waitFor(t, "both gaps to be found", 2*time.Minute, func() bool {
		p, s := found()
		return len(p) > 0 && len(s) > 0
	})
	seen := time.Now()
	// The gauges are set before the repair starts (a PHP console run):
	// both gaps show until it ends.
	text := dm.metrics()
	if p, s := metric(text, "matomo_archive_gaps_all_sites"), metric(text, "matomo_archive_segment_gaps_all_sites"); p != 1 || s != 1 {
		t.Errorf("gap gauges once both gaps were found: plain %v, segment %v; want 1 and 1", p, s)
	}
	plainFound, segFound := found()
	if len(plainFound) != 1 || len(segFound) != 1 || !strings.Contains(segFound[0], def) || !strings.Contains(segFound[0], "repairable=true") ||
		!strings.Contains(plainFound[0], "repairable=true") {
		t.Errorf("gap_found lines:\n plain %q\n segment %q", plainFound, segFound)
	}
	if all := dm.lines("event=gap_found"); len(all) != 2 {
		t.Errorf("gap_found for other gaps too: %q", all)
	}

	waitFor(t, "both gaps to be repaired", 3*time.Minute, func() bool {
		text := dm.metrics()
		return metric(text, "matomod_repairs_total", `result="repaired"`) >= repairedBefore+2 &&
			metric(text, "matomo_archive_gaps_all_sites") == 0 && metric(text, "matomo_archive_segment_gaps_all_sites") == 0
	})
	t.Logf("deleted day seen after %s, both repaired %s later", seen.Sub(planted).Round(time.Millisecond), time.Since(seen).Round(time.Millisecond))
	text = dm.metrics()
	if got := metric(text, "matomod_repairs_total", `result="repaired"`) - repairedBefore; got != 2 {
		t.Errorf("matomod_repairs_total{result=\"repaired\"} rose by %v, want 2", got)
	}
	for _, r := range []string{"failed", "skipped_unsafe"} {
		if n := metric(text, "matomod_repairs_total", `result="`+r+`"`); n != 0 {
			t.Errorf("matomod_repairs_total{result=%q} = %v", r, n)
		}
	}
	if n := metric(text, "matomo_archive_period_gaps_all_sites"); n != 0 {
		t.Errorf("period gaps after the repair: %v", n)
	}
	if fails := dm.lines("event=repair_failed"); len(fails) > 0 {
		t.Errorf("repair_failed: %q", fails)
	}

	// One cycle: the first scan after the deletion that found anything
	// found both, and both were repaired before the next scan, which found
	// nothing.
	waitFor(t, "the scan after the repairs", time.Minute, func() bool {
		var n int
		for _, l := range dm.lines("event=gap_scan_finished")[scansBefore:] {
			if p, s, _ := gapCounts(l); p+s > 0 || n > 0 {
				n++
			}
		}
		return n >= 2
	})
	var cycle []string
	var scans int
	for _, l := range dm.lines("") {
		switch p, s, ok := gapCounts(l); {
		case !strings.Contains(l, "event=gap_scan_finished") || !ok:
		case scans == 0 && p+s == 0:
			continue
		case scans == 0:
			if p != 1 || s != 1 {
				t.Errorf("the scan that found the deleted archives: %s; want gaps=1 segment_gaps=1", l)
			}
			scans++
			continue
		default:
			if p != 0 || s != 0 {
				t.Errorf("the scan after the repair cycle: %s; want no gaps", l)
			}
			scans++
		}
		if scans == 1 && strings.Contains(l, "event=repair_finished") {
			cycle = append(cycle, l)
		}
		if scans == 2 {
			break
		}
	}
	var plainRep, segRep int
	for _, l := range cycle {
		if !strings.Contains(l, " idsite=1 ") || !strings.Contains(l, " date="+date+" ") {
			t.Errorf("repair_finished for another day: %s", l)
		} else if strings.Contains(l, " segment=") && strings.Contains(l, def) {
			segRep++
		} else {
			plainRep++
		}
	}
	t.Logf("the cycle:\n%s\n%s\n%s", plainFound[0], segFound[0], strings.Join(cycle, "\n"))
	if plainRep != 1 || segRep != 1 {
		t.Errorf("repair_finished in the cycle: %d plain, %d segment; want 1 and 1:\n%s", plainRep, segRep, strings.Join(cycle, "\n"))
	}

	// Matomo shows the day as before, plain and segmented.
	if got := visitsOf(t, in, 1, "day", date); got != plainBefore {
		t.Errorf("site 1 %s after the repair: VisitsSummary %d, want %d", date, got, plainBefore)
	}
	if got, err := in.DayVisits(ctx, 1, "day", date, def); err != nil || got != segBefore {
		t.Errorf("site 1 %s segment %s after the repair: VisitsSummary %d (%v), want %d", date, def, got, err, segBefore)
	}

	dm.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-dm.done:
	case <-time.After(2 * time.Minute):
		t.Fatal("matomod did not stop within 2 minutes of SIGTERM")
	}
	if code := dm.cmd.ProcessState.ExitCode(); code != 0 {
		t.Errorf("exit code %d after SIGTERM", code)
	}
}
