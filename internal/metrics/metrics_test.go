package metrics

import (
	"bytes"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"github.com/prometheus/client_golang/prometheus/testutil"
)

var build = BuildInfo{Version: "1.2.3", Revision: "abc123", GoVersion: "go1.26.0"}

func newTest(t testing.TB) (*Metrics, *prometheus.Registry) {
	t.Helper()
	reg := prometheus.NewRegistry()
	m, err := New(reg, build)
	if err != nil {
		t.Fatal(err)
	}
	return m, reg
}

func compare(t *testing.T, reg *prometheus.Registry, want string, names ...string) {
	t.Helper()
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), names...); err != nil {
		t.Error(err)
	}
}

// scrape returns what the daemon's /metrics handler serves.
func scrape(t testing.TB, reg *prometheus.Registry) []byte {
	t.Helper()
	rec := httptest.NewRecorder()
	promhttp.HandlerFor(reg, promhttp.HandlerOpts{}).ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("scrape: status %d: %s", rec.Code, rec.Body)
	}
	return rec.Body.Bytes()
}

// promtool finds promtool, skipping the test without it, except in CI.
func promtool(t *testing.T) string {
	t.Helper()
	p, err := exec.LookPath("promtool")
	if err != nil {
		if os.Getenv("CI") == "true" {
			t.Fatal("promtool is not on PATH; CI must install it (Debian package prometheus)")
		}
		t.Skip("promtool is not on PATH; install the Debian package prometheus to run this test")
	}
	return p
}

func TestFixedLabelFamiliesStartAtZero(t *testing.T) {
	_, reg := newTest(t)
	compare(t, reg, `
# HELP matomod_archive_runs_total Archive runs by result (success, failure, timeout, skipped_overlap, skipped_paused) and role (leader: scheduled runs; worker: a worker's queue runs).
# TYPE matomod_archive_runs_total counter
matomod_archive_runs_total{result="failure",role="leader"} 0
matomod_archive_runs_total{result="failure",role="worker"} 0
matomod_archive_runs_total{result="skipped_overlap",role="leader"} 0
matomod_archive_runs_total{result="skipped_overlap",role="worker"} 0
matomod_archive_runs_total{result="skipped_paused",role="leader"} 0
matomod_archive_runs_total{result="skipped_paused",role="worker"} 0
matomod_archive_runs_total{result="success",role="leader"} 0
matomod_archive_runs_total{result="success",role="worker"} 0
matomod_archive_runs_total{result="timeout",role="leader"} 0
matomod_archive_runs_total{result="timeout",role="worker"} 0
# HELP matomod_repairs_total Gaps matomod handled (site-days, the weeks, months and years repaired with them, and stored segments' gaps), by result (repaired, failed, skipped_unsafe).
# TYPE matomod_repairs_total counter
matomod_repairs_total{result="failed"} 0
matomod_repairs_total{result="repaired"} 0
matomod_repairs_total{result="skipped_unsafe"} 0
# HELP matomod_paused 1 while archiving is paused for this reason (maintenance_mode, tracking_disabled, update_pending).
# TYPE matomod_paused gauge
matomod_paused{reason="maintenance_mode"} 0
matomod_paused{reason="tracking_disabled"} 0
matomod_paused{reason="update_pending"} 0
# HELP matomo_archive_invalidations Rows in Matomo's archive_invalidations queue by status.
# TYPE matomo_archive_invalidations gauge
matomo_archive_invalidations{status="in_progress"} 0
matomo_archive_invalidations{status="queued"} 0
# HELP matomo_archive_invalidation_oldest_timestamp_seconds Oldest invalidation by status: ts_invalidated when queued, ts_started when in progress (0: none).
# TYPE matomo_archive_invalidation_oldest_timestamp_seconds gauge
matomo_archive_invalidation_oldest_timestamp_seconds{status="in_progress"} 0
matomo_archive_invalidation_oldest_timestamp_seconds{status="queued"} 0
# HELP matomo_archive_gaps_all_sites Site-days with raw visits but no good day archive over all sites, by kind and whether matomod may repair them.
# TYPE matomo_archive_gaps_all_sites gauge
matomo_archive_gaps_all_sites{kind="failed",repairable="false"} 0
matomo_archive_gaps_all_sites{kind="failed",repairable="true"} 0
matomo_archive_gaps_all_sites{kind="incomplete",repairable="false"} 0
matomo_archive_gaps_all_sites{kind="incomplete",repairable="true"} 0
matomo_archive_gaps_all_sites{kind="invalidated",repairable="false"} 0
matomo_archive_gaps_all_sites{kind="invalidated",repairable="true"} 0
matomo_archive_gaps_all_sites{kind="missing",repairable="false"} 0
matomo_archive_gaps_all_sites{kind="missing",repairable="true"} 0
matomo_archive_gaps_all_sites{kind="stale",repairable="false"} 0
matomo_archive_gaps_all_sites{kind="stale",repairable="true"} 0
# HELP matomod_build_info Always 1; labels say which matomod build is running.
# TYPE matomod_build_info gauge
matomod_build_info{goversion="go1.26.0",revision="abc123",version="1.2.3"} 1
# HELP matomod_archive_last_success_timestamp_seconds End time of the latest successful archive run (0: none since matomod started).
# TYPE matomod_archive_last_success_timestamp_seconds gauge
matomod_archive_last_success_timestamp_seconds 0
`, "matomod_archive_runs_total", "matomod_repairs_total", "matomod_paused", "matomo_archive_invalidations",
		"matomo_archive_invalidation_oldest_timestamp_seconds", "matomo_archive_gaps_all_sites", "matomod_build_info",
		"matomod_archive_last_success_timestamp_seconds")

	// Facts not read yet and per-site series are absent, not 0.
	for _, name := range []string{"matomo_archive_gaps", "matomo_archive_gap_oldest_timestamp_seconds", "matomo_collection_gaps",
		"matomo_info", "matomo_maintenance_mode", "matomo_update_pending", "matomo_last_completed_archiving_timestamp_seconds"} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 0 {
			t.Errorf("%s: %d series before any snapshot (err %v), want none", name, n, err)
		}
	}
	// The Go and process collectors are registered.
	for _, name := range []string{"go_goroutines", "process_start_time_seconds"} {
		if n, err := testutil.GatherAndCount(reg, name); err != nil || n != 1 {
			t.Errorf("%s: %d series (err %v), want 1", name, n, err)
		}
	}
}

func TestArchiveRuns(t *testing.T) {
	m, reg := newTest(t)
	start := time.Unix(1_800_000_000, 0)
	m.RunStarted(start)
	m.RunFinished(RunSkippedOverlap, start.Add(time.Hour), 0, 0) // next tick while still running
	compare(t, reg, `
# HELP matomod_archive_running 1 while a core:archive run started by matomod is in progress.
# TYPE matomod_archive_running gauge
matomod_archive_running 1
# HELP matomod_archive_last_run_timestamp_seconds Start time of the latest archive run that started (0: none yet).
# TYPE matomod_archive_last_run_timestamp_seconds gauge
matomod_archive_last_run_timestamp_seconds 1.8e+09
`, "matomod_archive_running", "matomod_archive_last_run_timestamp_seconds")

	m.RunFinished(RunSuccess, start, 90*time.Minute, 0)
	m.RunStarted(start.Add(2 * time.Hour))
	m.RunFinished(RunFailure, start.Add(2*time.Hour), 25*time.Second, 1)
	m.RunFinished(RunSkippedPaused, start.Add(3*time.Hour), 0, 0)
	m.RunFinished("bogus", start, time.Second, 0) // ignored
	m.SetNextRun(start.Add(4 * time.Hour))
	compare(t, reg, `
# HELP matomod_archive_runs_total Archive runs by result (success, failure, timeout, skipped_overlap, skipped_paused) and role (leader: scheduled runs; worker: a worker's queue runs).
# TYPE matomod_archive_runs_total counter
matomod_archive_runs_total{result="failure",role="leader"} 1
matomod_archive_runs_total{result="failure",role="worker"} 0
matomod_archive_runs_total{result="skipped_overlap",role="leader"} 1
matomod_archive_runs_total{result="skipped_overlap",role="worker"} 0
matomod_archive_runs_total{result="skipped_paused",role="leader"} 1
matomod_archive_runs_total{result="skipped_paused",role="worker"} 0
matomod_archive_runs_total{result="success",role="leader"} 1
matomod_archive_runs_total{result="success",role="worker"} 0
matomod_archive_runs_total{result="timeout",role="leader"} 0
matomod_archive_runs_total{result="timeout",role="worker"} 0
# HELP matomod_archive_running 1 while a core:archive run started by matomod is in progress.
# TYPE matomod_archive_running gauge
matomod_archive_running 0
# HELP matomod_archive_last_run_timestamp_seconds Start time of the latest archive run that started (0: none yet).
# TYPE matomod_archive_last_run_timestamp_seconds gauge
matomod_archive_last_run_timestamp_seconds 1.8000072e+09
# HELP matomod_archive_last_success_timestamp_seconds End time of the latest successful archive run (0: none since matomod started).
# TYPE matomod_archive_last_success_timestamp_seconds gauge
matomod_archive_last_success_timestamp_seconds 1.8000054e+09
# HELP matomod_archive_last_exit_code Exit code of the latest finished core:archive run (-1: killed or not started).
# TYPE matomod_archive_last_exit_code gauge
matomod_archive_last_exit_code 1
# HELP matomod_archive_next_run_timestamp_seconds Time of the next scheduled archive run (0: none scheduled).
# TYPE matomod_archive_next_run_timestamp_seconds gauge
matomod_archive_next_run_timestamp_seconds 1.8000144e+09
# HELP matomod_archive_run_duration_seconds Duration of archive runs that started (skipped runs are not observed).
# TYPE matomod_archive_run_duration_seconds histogram
matomod_archive_run_duration_seconds_bucket{le="10"} 0
matomod_archive_run_duration_seconds_bucket{le="30"} 1
matomod_archive_run_duration_seconds_bucket{le="60"} 1
matomod_archive_run_duration_seconds_bucket{le="120"} 1
matomod_archive_run_duration_seconds_bucket{le="300"} 1
matomod_archive_run_duration_seconds_bucket{le="600"} 1
matomod_archive_run_duration_seconds_bucket{le="1200"} 1
matomod_archive_run_duration_seconds_bucket{le="1800"} 1
matomod_archive_run_duration_seconds_bucket{le="3600"} 1
matomod_archive_run_duration_seconds_bucket{le="7200"} 2
matomod_archive_run_duration_seconds_bucket{le="10800"} 2
matomod_archive_run_duration_seconds_bucket{le="14400"} 2
matomod_archive_run_duration_seconds_bucket{le="21600"} 2
matomod_archive_run_duration_seconds_bucket{le="+Inf"} 2
matomod_archive_run_duration_seconds_sum 5425
matomod_archive_run_duration_seconds_count 2
`, "matomod_archive_runs_total", "matomod_archive_running", "matomod_archive_last_run_timestamp_seconds",
		"matomod_archive_last_success_timestamp_seconds", "matomod_archive_last_exit_code",
		"matomod_archive_next_run_timestamp_seconds", "matomod_archive_run_duration_seconds")

	m.SetNextRun(time.Time{})
	if v := testutil.ToFloat64(m.nextRun); v != 0 {
		t.Errorf("next run after SetNextRun(zero) = %v, want 0", v)
	}
}

func TestGapSnapshot(t *testing.T) {
	m, reg := newTest(t)
	oldest := time.Date(2026, 2, 20, 0, 0, 0, 0, time.UTC)
	sites := []SiteGaps{
		{IDSite: 12, Repairable: map[string]int{KindMissing: 2, KindStale: 1}, NotRepairable: map[string]int{KindMissing: 3},
			Oldest: oldest.AddDate(0, 0, 3)},
		{IDSite: 3, Repairable: map[string]int{KindInvalidated: 1, "unknown": 7, KindFailed: -2}, CollectionGaps: 4},
		{IDSite: 12, NotRepairable: map[string]int{KindIncomplete: 1}, Oldest: oldest}, // same site again: added
		{IDSite: 5}, // no gaps: no series
	}
	m.SetGaps(GapSnapshot{Sites: sites})
	if sites[0].IDSite != 12 || sites[1].IDSite != 3 {
		t.Error("SetGaps reordered the caller's slice")
	}
	m.GapScanFinished(time.Unix(1_800_000_000, 0), 1500*time.Millisecond, 10000)
	compare(t, reg, `
# HELP matomo_archive_gaps Site-days with raw visits but no good day archive, by site and kind (only sites with gaps).
# TYPE matomo_archive_gaps gauge
matomo_archive_gaps{idsite="12",kind="incomplete"} 1
matomo_archive_gaps{idsite="12",kind="missing"} 5
matomo_archive_gaps{idsite="12",kind="stale"} 1
matomo_archive_gaps{idsite="3",kind="invalidated"} 1
# HELP matomo_archive_gaps_all_sites Site-days with raw visits but no good day archive over all sites, by kind and whether matomod may repair them.
# TYPE matomo_archive_gaps_all_sites gauge
matomo_archive_gaps_all_sites{kind="failed",repairable="false"} 0
matomo_archive_gaps_all_sites{kind="failed",repairable="true"} 0
matomo_archive_gaps_all_sites{kind="incomplete",repairable="false"} 1
matomo_archive_gaps_all_sites{kind="incomplete",repairable="true"} 0
matomo_archive_gaps_all_sites{kind="invalidated",repairable="false"} 0
matomo_archive_gaps_all_sites{kind="invalidated",repairable="true"} 1
matomo_archive_gaps_all_sites{kind="missing",repairable="false"} 3
matomo_archive_gaps_all_sites{kind="missing",repairable="true"} 2
matomo_archive_gaps_all_sites{kind="stale",repairable="false"} 0
matomo_archive_gaps_all_sites{kind="stale",repairable="true"} 1
# HELP matomo_archive_gap_oldest_timestamp_seconds Start of the oldest gap day of each site that has gaps.
# TYPE matomo_archive_gap_oldest_timestamp_seconds gauge
matomo_archive_gap_oldest_timestamp_seconds{idsite="12"} 1.7715456e+09
# HELP matomo_collection_gaps Days without raw visits where the site normally has traffic (tracking outage or lost raw data), per site that has them.
# TYPE matomo_collection_gaps gauge
matomo_collection_gaps{idsite="3"} 4
# HELP matomod_gap_scan_duration_seconds Duration of the latest successful gap scan.
# TYPE matomod_gap_scan_duration_seconds gauge
matomod_gap_scan_duration_seconds 1.5
# HELP matomod_gap_scan_last_success_timestamp_seconds End time of the latest successful gap scan (0: none yet).
# TYPE matomod_gap_scan_last_success_timestamp_seconds gauge
matomod_gap_scan_last_success_timestamp_seconds 1.8e+09
# HELP matomod_gap_scan_sites Sites checked by the latest successful gap scan.
# TYPE matomod_gap_scan_sites gauge
matomod_gap_scan_sites 10000
`, "matomo_archive_gaps", "matomo_archive_gaps_all_sites", "matomo_archive_gap_oldest_timestamp_seconds",
		"matomo_collection_gaps", "matomod_gap_scan_duration_seconds", "matomod_gap_scan_last_success_timestamp_seconds",
		"matomod_gap_scan_sites")

	// A failed scan keeps the findings; an empty snapshot removes the per-site series.
	m.GapScanFailed(time.Unix(1_800_000_600, 0))
	if n, _ := testutil.GatherAndCount(reg, "matomo_archive_gaps"); n != 4 {
		t.Errorf("after a failed scan: %d gap series, want the previous 4", n)
	}
	m.SetGaps(GapSnapshot{})
	for name, want := range map[string]int{"matomo_archive_gaps": 0, "matomo_collection_gaps": 0,
		"matomo_archive_gap_oldest_timestamp_seconds": 0, "matomo_archive_gaps_all_sites": 10} {
		if n, _ := testutil.GatherAndCount(reg, name); n != want {
			t.Errorf("after an empty snapshot: %d %s series, want %d", n, name, want)
		}
	}
	compare(t, reg, `
# HELP matomod_gap_scan_last_failure_timestamp_seconds End time of the latest failed gap scan (0: none yet).
# TYPE matomod_gap_scan_last_failure_timestamp_seconds gauge
matomod_gap_scan_last_failure_timestamp_seconds 1.8000006e+09
`, "matomod_gap_scan_last_failure_timestamp_seconds")
}

func TestMatomoSnapshot(t *testing.T) {
	m, reg := newTest(t)
	m.SetMatomo(MatomoSnapshot{
		Version:                "5.0.2",
		MaintenanceMode:        true,
		Queued:                 12,
		InProgress:             2,
		OldestQueued:           time.Unix(1_700_000_000, 0),
		OldestInProgress:       time.Unix(1_700_000_100, 0),
		LastCompletedArchiving: time.Unix(1_700_000_200, 0),
	})
	compare(t, reg, `
# HELP matomo_archive_invalidations Rows in Matomo's archive_invalidations queue by status.
# TYPE matomo_archive_invalidations gauge
matomo_archive_invalidations{status="in_progress"} 2
matomo_archive_invalidations{status="queued"} 12
# HELP matomo_archive_invalidation_oldest_timestamp_seconds Oldest invalidation by status: ts_invalidated when queued, ts_started when in progress (0: none).
# TYPE matomo_archive_invalidation_oldest_timestamp_seconds gauge
matomo_archive_invalidation_oldest_timestamp_seconds{status="in_progress"} 1.7000001e+09
matomo_archive_invalidation_oldest_timestamp_seconds{status="queued"} 1.7e+09
# HELP matomo_last_completed_archiving_timestamp_seconds Matomo's LastCompletedFullArchiving option (also set by runs that stopped early).
# TYPE matomo_last_completed_archiving_timestamp_seconds gauge
matomo_last_completed_archiving_timestamp_seconds 1.7000002e+09
# HELP matomo_maintenance_mode 1 when config.ini.php sets [General] maintenance_mode = 1.
# TYPE matomo_maintenance_mode gauge
matomo_maintenance_mode 1
# HELP matomo_update_pending 1 when Matomo's database version is older than its code (core:update pending).
# TYPE matomo_update_pending gauge
matomo_update_pending 0
# HELP matomo_info Always 1; label version is Matomo's version_core.
# TYPE matomo_info gauge
matomo_info{version="5.0.2"} 1
`, "matomo_archive_invalidations", "matomo_archive_invalidation_oldest_timestamp_seconds",
		"matomo_last_completed_archiving_timestamp_seconds", "matomo_maintenance_mode", "matomo_update_pending", "matomo_info")

	// Text from the database never breaks a scrape, and unknown times are left out.
	m.SetMatomo(MatomoSnapshot{Version: "5.\xff" + strings.Repeat("9", 100)})
	if _, err := reg.Gather(); err != nil {
		t.Fatalf("gather with a bad version string: %v", err)
	}
	if n, _ := testutil.GatherAndCount(reg, "matomo_last_completed_archiving_timestamp_seconds"); n != 0 {
		t.Error("matomo_last_completed_archiving_timestamp_seconds present for an unknown time")
	}
	if v := labelValue("5.\xff" + strings.Repeat("9", 100)); len(v) > 64 || !strings.HasPrefix(v, "5.\uFFFD9") {
		t.Errorf("labelValue = %q, want valid UTF-8 of at most 64 bytes", v)
	}
}

func TestDaemonState(t *testing.T) {
	m, reg := newTest(t)
	m.SetPaused(PausedMaintenanceMode, PausedUpdatePending, "bogus")
	m.SetDBUp(true)
	m.SetLeader(true)
	m.ConfigReloaded(true, time.Unix(1_800_000_000, 0))
	m.ConfigReloaded(false, time.Unix(1_800_000_100, 0)) // keeps the last success time
	m.Repairs(RepairRepaired, 3)
	m.Repairs(RepairSkippedUnsafe, 2)
	m.Repairs("bogus", 5)
	m.Repairs(RepairFailed, -1)
	m.Invalidations(4)
	m.Invalidations(0)
	compare(t, reg, `
# HELP matomod_paused 1 while archiving is paused for this reason (maintenance_mode, tracking_disabled, update_pending).
# TYPE matomod_paused gauge
matomod_paused{reason="maintenance_mode"} 1
matomod_paused{reason="tracking_disabled"} 0
matomod_paused{reason="update_pending"} 1
# HELP matomod_db_up 1 when the latest query to Matomo's database succeeded.
# TYPE matomod_db_up gauge
matomod_db_up 1
# HELP matomod_leader 1 when this instance holds the leader lock and schedules runs, scans and repairs.
# TYPE matomod_leader gauge
matomod_leader 1
# HELP matomod_config_last_reload_successful 1 when the latest configuration load succeeded.
# TYPE matomod_config_last_reload_successful gauge
matomod_config_last_reload_successful 0
# HELP matomod_config_last_reload_success_timestamp_seconds Time of the latest successful configuration load (0: none yet).
# TYPE matomod_config_last_reload_success_timestamp_seconds gauge
matomod_config_last_reload_success_timestamp_seconds 1.8e+09
# HELP matomod_repairs_total Gaps matomod handled (site-days, the weeks, months and years repaired with them, and stored segments' gaps), by result (repaired, failed, skipped_unsafe).
# TYPE matomod_repairs_total counter
matomod_repairs_total{result="failed"} 0
matomod_repairs_total{result="repaired"} 3
matomod_repairs_total{result="skipped_unsafe"} 2
# HELP matomod_invalidations_total Site-days matomod asked Matomo to invalidate (core:invalidate-report-data).
# TYPE matomod_invalidations_total counter
matomod_invalidations_total 4
`, "matomod_paused", "matomod_db_up", "matomod_leader", "matomod_config_last_reload_successful",
		"matomod_config_last_reload_success_timestamp_seconds", "matomod_repairs_total", "matomod_invalidations_total")

	m.SetPaused()
	if n, _ := testutil.GatherAndCount(reg, "matomod_paused"); n != 3 {
		t.Errorf("matomod_paused: %d series, want 3", n)
	}
	for _, r := range pauseReasons {
		if v := testutil.ToFloat64(m.paused.WithLabelValues(r)); v != 0 {
			t.Errorf("matomod_paused{reason=%q} = %v after SetPaused(), want 0", r, v)
		}
	}
}

func TestNewRefusesARegistryInUse(t *testing.T) {
	reg := prometheus.NewRegistry()
	if _, err := New(reg, build); err != nil {
		t.Fatal(err)
	}
	if _, err := New(reg, build); err == nil || !strings.Contains(err.Error(), "registering metrics") {
		t.Errorf("second New on one registry: err = %v, want a registration error", err)
	}
}

// TestLabelsAreBounded guards the rule that labels hold only fixed values,
// site ids and versions: never a DSN, password, path or command line.
func TestLabelsAreBounded(t *testing.T) {
	_, reg := feed(t)
	allowed := map[string]bool{"result": true, "role": true, "reason": true, "status": true, "kind": true, "repairable": true,
		"idsite": true, "version": true, "revision": true, "goversion": true, "period": true}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		name := mf.GetName()
		if !strings.HasPrefix(name, "matomo_") && !strings.HasPrefix(name, "matomod_") {
			continue
		}
		for _, mt := range mf.GetMetric() {
			for _, l := range mt.GetLabel() {
				if !allowed[l.GetName()] {
					t.Errorf("%s has label %q; labels must come from a fixed, bounded set", name, l.GetName())
				}
			}
		}
	}
}

// TestScrapeWhileUpdating lets the race detector check that scrapes and
// updates share nothing unsafely.
func TestScrapeWhileUpdating(t *testing.T) {
	m, reg := newTest(t)
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Go(func() {
			for i := range 50 {
				m.SetGaps(GapSnapshot{Sites: []SiteGaps{{IDSite: g*100 + i, Repairable: map[string]int{KindMissing: i + 1}}}})
				m.SetMatomo(MatomoSnapshot{Version: "5.0.2", Queued: i})
				m.RunStarted(time.Unix(int64(i), 0))
				m.RunFinished(RunSuccess, time.Unix(int64(i), 0), time.Second, 0)
			}
		})
	}
	for range 20 {
		if _, err := reg.Gather(); err != nil {
			t.Fatal(err)
		}
	}
	wg.Wait()
}

// feed returns metrics that went through every setter, so every family
// matomod can export is present.
func feed(t testing.TB) (*Metrics, *prometheus.Registry) {
	m, reg := newTest(t)
	now := time.Unix(1_800_000_000, 0)
	m.RunStarted(now)
	m.RunFinished(RunSuccess, now, time.Minute, 0)
	m.SetNextRun(now.Add(time.Hour))
	m.SetPaused(PausedMaintenanceMode)
	m.SetDBUp(true)
	m.SetLeader(true)
	m.ConfigReloaded(true, now)
	m.Repairs(RepairRepaired, 1)
	m.Invalidations(1)
	m.SetGaps(GapSnapshot{Sites: []SiteGaps{{IDSite: 3, Repairable: map[string]int{KindMissing: 1},
		Oldest: now.Add(-48 * time.Hour), CollectionGaps: 1, PeriodGaps: map[PeriodGap]int{{Period: PeriodMonth, Kind: KindStale, Repairable: true}: 1},
		SegmentGaps: map[SegmentGap]int{{Kind: KindMissing, Repairable: true}: 1}}}})
	m.GapScanFinished(now, time.Second, 1)
	m.GapScanFailed(now.Add(-time.Hour))
	m.SetMatomo(MatomoSnapshot{Version: "5.0.2", Queued: 1, InProgress: 1, OldestQueued: now, OldestInProgress: now,
		LastCompletedArchiving: now})
	return m, reg
}

// TestPromtoolCheckMetrics lints the real /metrics output.
func TestPromtoolCheckMetrics(t *testing.T) {
	tool := promtool(t)
	_, reg := feed(t)
	cmd := exec.Command(tool, "check", "metrics")
	cmd.Stdin = bytes.NewReader(scrape(t, reg))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s", err, out)
	}
}

// The daemon serves /metrics through Handler: the gap families come from
// the copy encoded at SetGaps, once, and the rest from the registry.
func TestHandlerServesEncodedGaps(t *testing.T) {
	reg := prometheus.NewRegistry()
	m, err := New(reg, BuildInfo{Version: "v", Revision: "r", GoVersion: "go"})
	if err != nil {
		t.Fatal(err)
	}
	h := m.Handler(reg)
	m.SetGaps(GapSnapshot{Sites: []SiteGaps{{IDSite: 7, Repairable: map[string]int{KindMissing: 2}}}})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{`matomo_archive_gaps{idsite="7",kind="missing"} 2`, "matomod_build_info{", "matomod_leader "} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	if n := strings.Count(body, "# TYPE matomo_archive_gaps gauge"); n != 1 {
		t.Errorf("matomo_archive_gaps declared %d times", n)
	}
	// The registry itself no longer carries per-site gap series.
	mfs, _ := reg.Gather()
	for _, mf := range mfs {
		if mf.GetName() == "matomo_archive_gaps" && len(mf.GetMetric()) > 0 {
			t.Errorf("the registry still gathers %d gap series on every scrape", len(mf.GetMetric()))
		}
	}
}
