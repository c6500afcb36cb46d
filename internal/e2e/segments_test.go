package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/realmatomo"
)

// segmentGapsOf runs `gaps --format json` and returns its plain and
// segment gaps as strings; the exit code is 1 when either is non-empty.
func segmentGapsOf(t *testing.T, cfg string) (plain, segment []string) {
	t.Helper()
	code, out, errOut := cli(t, cfg, "gaps", "--format=json")
	var res struct {
		Gaps        []gap `json:"gaps"`
		SegmentGaps []struct {
			gap
			Segment string `json:"segment"`
		} `json:"segment_gaps"`
	}
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("gaps: exit %d: %v\n%s\n%s", code, err, out, errOut)
	}
	if want := map[bool]int{true: 1, false: 0}[len(res.Gaps)+len(res.SegmentGaps) > 0]; code != want {
		t.Errorf("gaps exit %d, want %d\n%s", code, want, errOut)
	}
	plain = gapStrings(res.Gaps)
	for _, g := range res.SegmentGaps {
		segment = append(segment, fmt.Sprintf("%s segment %s raw=%d", g.gap, g.Segment, g.RawVisits))
	}
	slices.Sort(segment)
	return plain, segment
}

// Issue 14 (segments) on the real Matomo 5.0.2: a stored segment added
// through SegmentEditor.add with auto-archiving, archived by the real
// console (invalidate with --segment, core:archive), has no gaps; with one
// of its day archives deleted, `gaps` reports exactly that site-day as a
// segment gap (no plain gap); `repair` rebuilds it with --segment and
// Matomo's API shows the segment's visits of that day again.
//
// Facts checked here: segment.hash = md5(urldecode(definition)), the
// done<hash> rows exist for each archived day (and for none before the
// segment's start, process_new_segments_from = last10 here).
func TestRealSegmentGapsAndRepair(t *testing.T) {
	t.Parallel()
	in := realmatomo.New(t)
	cfg := config(t, in, "")
	ctx := context.Background()
	m := in.Manifest
	const def = "actions>=1"
	// Site 1 is UTC: local days are UTC days. The segment starts 10 days
	// before its creation (today).
	today := matomo.DateOf(time.Now().UTC())
	start, yesterday := today.AddDays(-10), today.AddDays(-1)
	archiveStoredSegment(t, in, "matomod e2e", def, start)
	var hash string
	var only int
	if err := in.DB.QueryRow("SELECT hash, enable_only_idsite FROM "+in.Prefix+"segment WHERE definition = ? AND deleted = 0 AND auto_archive = 1", def).Scan(&hash, &only); err != nil {
		t.Fatal(err)
	}
	if hash != matomo.SegmentHash(def) || only != 1 {
		t.Fatalf("segment row: hash %s (md5(urldecode) %s), enable_only_idsite %d", hash, matomo.SegmentHash(def), only)
	}
	plain, seg := segmentGapsOf(t, cfg)
	if len(plain) != 0 || len(seg) != 0 {
		t.Fatalf("gaps after archiving the segment: plain %q, segment %q", plain, seg)
	}
	// Which rows exist: a done<hash> day archive for every day of
	// [start, yesterday] with tracked visits, none before start.
	for x := start.AddDays(-5); x <= yesterday; x++ {
		num, _ := archiveTables(x.String())
		var n int
		q := strings.ReplaceAll("SELECT COUNT(*) FROM "+num+" WHERE idsite = 1 AND period = 1 AND date1 = ? AND name = ? AND value = 1", "{p}", in.Prefix)
		if err := in.DB.QueryRow(q, x.String(), "done"+hash).Scan(&n); err != nil && !strings.Contains(err.Error(), "doesn't exist") {
			t.Fatal(err)
		}
		switch tracked := m.Visits[fmt.Sprintf("1 %s", x)]; {
		case x < start && n != 0:
			t.Errorf("site 1 %s, before the segment's start %s: %d done%s rows", x, start, n, hash)
		case x >= start && tracked > 0 && n == 0:
			t.Errorf("site 1 %s: %d tracked visits, no done%s row", x, tracked, hash)
		}
	}
	// The day to break: tracked visits, not yesterday (waits for the
	// scheduled run) and not the site's first raw day.
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
	before, err := in.DayVisits(ctx, 1, "day", d.String(), def)
	if err != nil {
		t.Fatal(err)
	}
	if before != m.Visits[fmt.Sprintf("1 %s", d)] {
		t.Fatalf("site 1 %s: the segment %s shows %d visits, want all %d tracked (every planted visit has an action)", d, def, before, m.Visits[fmt.Sprintf("1 %s", d)])
	}
	num, blob := archiveTables(d.String())
	var ids []int64
	rows, err := in.DB.Query(strings.ReplaceAll("SELECT idarchive FROM "+num+" WHERE idsite = 1 AND period = 1 AND date1 = ? AND name = ?", "{p}", in.Prefix), d.String(), "done"+hash)
	if err != nil {
		t.Fatal(err)
	}
	for rows.Next() {
		var x int64
		rows.Scan(&x)
		ids = append(ids, x)
	}
	rows.Close()
	if len(ids) == 0 {
		t.Fatalf("no done%s day archive of site 1 on %s", hash, d)
	}
	for _, x := range ids {
		in.Exec("DELETE FROM "+num+" WHERE idarchive = ?", x)
		in.Exec("DELETE FROM "+blob+" WHERE idarchive = ?", x)
	}
	want := []string{fmt.Sprintf("1 %s missing repairable segment %s raw=%d", d, def, m.Visits[fmt.Sprintf("1 %s", d)])}
	plain, seg = segmentGapsOf(t, cfg)
	if len(plain) != 0 || !slices.Equal(seg, want) {
		t.Fatalf("gaps after deleting the segment's day archive:\n plain %q\n segment %q\n want %q", plain, seg, want)
	}
	if n, _ := in.DayVisits(ctx, 1, "day", d.String(), def); n != 0 {
		t.Logf("site 1 %s: Matomo still shows %d segment visits without the archive", d, n)
	}
	code, out, errOut := cli(t, cfg, "repair")
	t.Logf("repair:\n%s", out)
	if code != 0 || !strings.Contains(out, "--segment="+def) || !strings.Contains(out, "repaired: 1 segment day(s)") {
		t.Fatalf("repair: exit %d\n%s\n%s", code, out, errOut)
	}
	plain, seg = segmentGapsOf(t, cfg)
	if len(plain) != 0 || len(seg) != 0 {
		t.Errorf("gaps after the repair: plain %q, segment %q", plain, seg)
	}
	if n, err := in.DayVisits(ctx, 1, "day", d.String(), def); err != nil || n != before {
		t.Errorf("site 1 %s segment %s after the repair: Matomo's API shows %d visits (%v), want %d", d, def, n, err, before)
	}
}

// archiveStoredSegment sets process_new_segments_from = lastN (N days
// before today, so the segment starts on start), adds the stored segment
// def for site 1 through SegmentEditor.add with auto-archiving, and has
// the real console archive it from start to yesterday (invalidate with
// --segment, then core:archive), as Matomo's own "re-archive" does.
func archiveStoredSegment(t *testing.T, in *realmatomo.Instance, name, def string, start matomo.Date) {
	t.Helper()
	ctx := context.Background()
	today := matomo.DateOf(time.Now().UTC())
	if out, err := in.Console(ctx, "config:set", "--section=General", "--key=process_new_segments_from", fmt.Sprintf("--value=last%d", int(today-start))); err != nil {
		t.Fatal(err, out)
	}
	var id any
	if err := in.Server().API(ctx, in.Manifest.Token, "SegmentEditor.add", url.Values{"name": {name}, "definition": {def},
		"idSite": {"1"}, "autoArchive": {"1"}, "enabledAllUsers": {"0"}}, &id); err != nil {
		t.Fatal(err)
	}
	if out, err := in.Console(ctx, "core:invalidate-report-data", "--sites=1", "--dates="+start.String()+","+today.AddDays(-1).String(),
		"--periods=day", "--segment="+def); err != nil {
		t.Fatal(err, out)
	}
	t0 := time.Now()
	if out, err := in.Console(ctx, "core:archive", "--force-idsites=1", "--no-ansi"); err != nil {
		t.Fatal(err, out)
	}
	t.Logf("archived the segment %s from %s in %s", def, start, time.Since(t0).Round(time.Millisecond))
}
