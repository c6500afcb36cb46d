package gapdetect

import (
	"maps"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomotest"
)

// A restarted detector loads the saved state: its first scan is
// incremental, costs what a steady rescan costs, and still sees what
// changed while it was down.
func TestStateSurvivesRestart(t *testing.T) {
	e := matomotest.New(t)
	archivedSite(e, 3)
	e.AddVisits(1, ts("2026-11-12 10:00:00"), 1)
	e.Exec("DELETE FROM {p}archive_numeric_2026_11 WHERE idsite = 1 AND date1 = '2026-11-12' AND period = 1")
	now := testNow
	o := Options{Now: func() time.Time { return now }}
	db := openDB(t, e)
	d := New(db, o)
	d.SetLastArchiveRun(ts("2026-11-27 00:05:00"))
	first := scan(t, d)
	now = now.Add(time.Minute)
	steady := scan(t, d)
	path := filepath.Join(t.TempDir(), "gapscan.json")
	if err := d.SaveState(path); err != nil {
		t.Fatal(err)
	}
	if m, _ := filepath.Glob(path + ".tmp*"); len(m) != 0 {
		t.Errorf("temporary files left: %v", m)
	}

	d2 := New(db, o)
	d2.SetLastArchiveRun(ts("2026-11-27 00:05:00"))
	if err := d2.LoadState(path); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	r := scan(t, d2)
	if r.Stats.Full {
		t.Fatal("first scan after a restart was full")
	}
	if !maps.Equal(allGapMap(r), allGapMap(first)) {
		t.Errorf("after restart %v, before %v", allGapMap(r), allGapMap(first))
	}
	// One query more than a steady rescan: the identity check.
	if r.Stats.RoundTrips > steady.Stats.RoundTrips+1 || r.Stats.Probes > steady.Stats.Probes || r.Stats.TablesRead > steady.Stats.TablesRead {
		t.Errorf("restart scan: %d round trips, %d probes, %d tables; steady rescan: %d, %d, %d",
			r.Stats.RoundTrips, r.Stats.Probes, r.Stats.TablesRead, steady.Stats.RoundTrips, steady.Stats.Probes, steady.Stats.TablesRead)
	}
	// A change made while matomod was down is seen.
	d2.SaveState(path)
	e.Exec("DELETE FROM {p}archive_numeric_2026_11 WHERE idsite = 1 AND date1 = '2026-11-13' AND period = 1")
	d3 := New(db, o)
	d3.SetLastArchiveRun(ts("2026-11-27 00:05:00"))
	if err := d3.LoadState(path); err != nil {
		t.Fatal(err)
	}
	now = now.Add(time.Minute)
	if r := scan(t, d3); r.Stats.Full || gapMap(r)["1 2026-11-13"] != "missing 3/null repairable" {
		t.Errorf("change while down: full=%v %v", r.Stats.Full, gapMap(r))
	}
}

// A state saved for another database (or before a restore) is noticed:
// the scan is full and right.
func TestStateOfAnotherDatabase(t *testing.T) {
	e1 := matomotest.New(t)
	archivedSite(e1, 3)
	e2 := matomotest.New(t)
	archivedSite(e2, 3)
	e2.Exec("DELETE FROM {p}archive_numeric_2026_11 WHERE idsite = 1 AND date1 = '2026-11-13' AND period = 1")
	o := Options{Now: func() time.Time { return testNow }}
	d1 := New(openDB(t, e1), o)
	scan(t, d1)
	path := filepath.Join(t.TempDir(), "gapscan.json")
	if err := d1.SaveState(path); err != nil {
		t.Fatal(err)
	}
	d2 := New(openDB(t, e2), o)
	d2.SetLastArchiveRun(ts("2026-11-27 00:05:00"))
	if err := d2.LoadState(path); err != nil {
		t.Fatal(err)
	}
	r := scan(t, d2)
	if !r.Stats.Full || gapMap(r)["1 2026-11-13"] != "missing 3/null repairable" {
		t.Errorf("other database: full=%v %v", r.Stats.Full, gapMap(r))
	}
}

func TestLoadStateErrors(t *testing.T) {
	dir := t.TempDir()
	d := New(nil, Options{})
	if err := d.LoadState(filepath.Join(dir, "absent.json")); err != nil {
		t.Errorf("missing file: %v", err)
	}
	for name, body := range map[string]string{
		"garbage.json": "{not json",
		"old.json":     `{"version": 0}`,
		"bad.json":     `{"version": 1, "identity": "x", "sites": [{"id": 1, "since": "2026-11-01", "until": "2026-11-03", "days": "AQE="}]}`,
	} {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o600)
		err := d.LoadState(p)
		if err == nil || !strings.Contains(err.Error(), p) || !strings.Contains(err.Error(), "the next scan is a full one") {
			t.Errorf("%s: %v", name, err)
		}
	}
	if d.state != nil {
		t.Error("a bad file left a state")
	}
}

// SaveState encodes its snapshot after releasing the lock, while the next
// scan may change day states in place: the snapshot must not alias them.
func TestSavedStateDoesNotAliasLiveState(t *testing.T) {
	e := matomotest.New(t)
	archivedSite(e, 1)
	d := New(openDB(t, e), Options{Now: func() time.Time { return testNow }})
	scan(t, d)
	saved := d.state.saved()
	before := saved.Sites[0].Days[0]
	d.state.sites[saved.Sites[0].ID].days[0] = before + 1
	if saved.Sites[0].Days[0] != before {
		t.Error("the saved snapshot shares its day states with the live state")
	}
}
