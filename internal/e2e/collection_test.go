package e2e

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/realmatomo"
)

// collectionBySite reads matomo_collection_gaps per site from /metrics.
func collectionBySite(text string) map[int]int {
	out := map[int]int{}
	re := regexp.MustCompile(`^matomo_collection_gaps\{idsite="(\d+)"\} (\S+)$`)
	for _, l := range strings.Split(text, "\n") {
		if m := re.FindStringSubmatch(l); m != nil {
			id, _ := strconv.Atoi(m[1])
			v, _ := strconv.ParseFloat(m[2], 64)
			if v > 0 {
				out[id] = int(v)
			}
		}
	}
	return out
}

// Regression (issue 15): collection gaps disagreed between the leader's
// full scan, its incremental scans and a one-off `matomod gaps` on the same
// database. On the real Matomo: one answer, whichever scan computes it.
func TestRealCollectionGapsAgreeAcrossScans(t *testing.T) {
	t.Parallel()
	in := realmatomo.New(t)
	// A tracking outage on a recent day of site 1: no raw visits, no
	// archive.
	from, to := day(5)+" 00:00:00", day(5)+" 23:59:59"
	in.Exec("DELETE FROM {p}log_visit WHERE idsite = 1 AND visit_last_action_time BETWEEN ? AND ?", from, to)
	deleteArchives(t, in, 1, day(5), day(5), 1)
	// Sites here have traffic on well under 90 % of their days (visits
	// were planted around DST days and on the last 12 days): a lower bar
	// makes every quiet day in between a collection gap, so the three
	// scans have plenty to agree on.
	cfg := config(t, in, "archive:\n  schedule: \"0 0 1 1 *\"\ngaps:\n  scan_interval: 2s\n  auto_repair: false\n  collection_gap_min_traffic_days: 0.3\n")
	d := startDaemon(t, cfg)
	waitFor(t, "the first (full) scan", time.Minute, func() bool { return len(d.lines("event=gap_scan_finished")) > 0 })
	if first := d.lines("event=gap_scan_finished")[0]; !strings.Contains(first, "full=true") {
		t.Fatalf("first scan not full: %s", first)
	}
	full := collectionBySite(d.metrics())
	if full[1] == 0 {
		t.Fatalf("the full scan found no collection gap on site 1: %v", full)
	}

	// Changes an incremental scan has to take in: a late visit on site 2,
	// a deleted day archive on site 3.
	if err := in.Server().Track(t.Context(), in.Manifest.Token, []realmatomo.Visit{{IDSite: 2, At: time.Now().Add(-48 * time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	deleteArchives(t, in, 3, day(7), day(7), 1)
	n := len(d.lines("event=gap_scan_finished"))
	waitFor(t, "incremental scans after the changes", time.Minute, func() bool {
		l := d.lines("event=gap_scan_finished")
		return len(l) >= n+2 && strings.Contains(l[len(l)-1], "full=false") && !strings.Contains(l[len(l)-1], " gaps=0 ")
	})
	incr := collectionBySite(d.metrics())

	res := gaps(t, cfg)
	cli := map[int]int{}
	found := false
	for _, c := range res.Collection {
		cli[c.IDSite]++
		if c.IDSite == 1 && c.Date == day(5) {
			found = true
		}
	}
	if !found {
		t.Errorf("gaps does not list site 1 %s as a collection gap: %v", day(5), res.Collection)
	}
	if fmt.Sprint(full) != fmt.Sprint(incr) || fmt.Sprint(full) != fmt.Sprint(cli) {
		t.Errorf("collection gaps per site differ:\nfull scan         %v\nincremental scan  %v\nmatomod gaps      %v", full, incr, cli)
	}
}
