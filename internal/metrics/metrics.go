// Package metrics exports matomod's state as Prometheus metrics from values
// the daemon hands it; it never queries Matomo's database, so a scrape only
// reads what the last scan cached.
//
// Names: matomod_* describe the daemon itself, matomo_* describe facts read
// from Matomo's database. Every family with a fixed label set (result,
// reason, status, kind) is present at 0 for every value from the start, so
// alert rules and the dashboard never need absent().
//
// Unknown timestamps: daemon timestamps (matomod_*_timestamp_seconds) are 0
// until the event first happens, as Prometheus's own reload gauges do; the
// alert rules treat 0 as "not yet". Facts read from Matomo are absent until
// the daemon first read them (SetMatomo), except the invalidation queue
// families, which have a fixed status label and are 0 when the queue is empty.
// Per-site series exist only for sites that have gaps.
package metrics

import (
	"fmt"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
)

// Archive run results (label result of matomod_archive_runs_total).
const (
	RunSuccess        = "success"
	RunFailure        = "failure"
	RunTimeout        = "timeout"
	RunSkippedOverlap = "skipped_overlap"
	RunSkippedPaused  = "skipped_paused"
)

// Repair results (label result of matomod_repairs_total), counted per gap:
// a site-day, a week, month or year, or a stored segment's gap.
const (
	RepairRepaired      = "repaired"
	RepairFailed        = "failed"
	RepairSkippedUnsafe = "skipped_unsafe"
)

// Reasons archiving is paused (label reason of matomod_paused).
const (
	PausedMaintenanceMode  = "maintenance_mode"
	PausedTrackingDisabled = "tracking_disabled" // [Tracker] record_statistics = 0
	PausedUpdatePending    = "update_pending"
)

// Roles (label role of matomod_archive_runs_total).
const (
	RoleLeader = "leader"
	RoleWorker = "worker"
)

var (
	roles         = []string{RoleLeader, RoleWorker}
	runResults    = []string{RunSuccess, RunFailure, RunTimeout, RunSkippedOverlap, RunSkippedPaused}
	repairResults = []string{RepairRepaired, RepairFailed, RepairSkippedUnsafe}
	pauseReasons  = []string{PausedMaintenanceMode, PausedTrackingDisabled, PausedUpdatePending}
)

// runDurationBuckets spans a quick run on a small install (10 s) to the
// longest run worth distinguishing (6 h).
var runDurationBuckets = []float64{10, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200, 10800, 14400, 21600}

// BuildInfo labels matomod_build_info.
type BuildInfo struct{ Version, Revision, GoVersion string }

// Metrics holds every metric matomod exports. Its methods are safe for
// concurrent use; values outside the documented label sets are ignored so a
// caller bug can never create unbounded series.
type Metrics struct {
	runs        *prometheus.CounterVec
	runDuration prometheus.Histogram
	running     prometheus.Gauge
	lastRun     prometheus.Gauge
	lastSuccess prometheus.Gauge
	lastExit    prometheus.Gauge
	nextRun     prometheus.Gauge

	scanDuration    prometheus.Gauge
	scanLastSuccess prometheus.Gauge
	scanLastFailure prometheus.Gauge
	scanSites       prometheus.Gauge
	repairs         *prometheus.CounterVec
	invalidations   prometheus.Counter

	dbUp         prometheus.Gauge
	paused       *prometheus.GaugeVec
	leader       prometheus.Gauge
	reloadOK     prometheus.Gauge
	reloadOKTime prometheus.Gauge
	snapshots    *snapshotCollector
	// enc holds the gap families encoded, once Handler is in use.
	enc         *EncodedGaps
	encodedGaps atomic.Bool
}

// New creates matomod's metrics and registers them, with the Go and process
// collectors, on reg. Pass a fresh registry: the global one is never used.
func New(reg prometheus.Registerer, b BuildInfo) (*Metrics, error) {
	gauge := func(name, help string) prometheus.Gauge {
		return prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: help})
	}
	m := &Metrics{
		runs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "matomod_archive_runs_total",
			Help: "Archive runs by result (success, failure, timeout, skipped_overlap, skipped_paused) and role (leader: scheduled runs; worker: a worker's queue runs).",
		}, []string{"result", "role"}),
		runDuration: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "matomod_archive_run_duration_seconds",
			Help:    "Duration of archive runs that started (skipped runs are not observed).",
			Buckets: runDurationBuckets,
		}),
		running:     gauge("matomod_archive_running", "1 while a core:archive run started by matomod is in progress."),
		lastRun:     gauge("matomod_archive_last_run_timestamp_seconds", "Start time of the latest archive run that started (0: none yet)."),
		lastSuccess: gauge("matomod_archive_last_success_timestamp_seconds", "End time of the latest successful archive run (0: none since matomod started)."),
		lastExit:    gauge("matomod_archive_last_exit_code", "Exit code of the latest finished core:archive run (-1: killed or not started)."),
		nextRun:     gauge("matomod_archive_next_run_timestamp_seconds", "Time of the next scheduled archive run (0: none scheduled)."),

		scanDuration:    gauge("matomod_gap_scan_duration_seconds", "Duration of the latest successful gap scan."),
		scanLastSuccess: gauge("matomod_gap_scan_last_success_timestamp_seconds", "End time of the latest successful gap scan (0: none yet)."),
		scanLastFailure: gauge("matomod_gap_scan_last_failure_timestamp_seconds", "End time of the latest failed gap scan (0: none yet)."),
		scanSites:       gauge("matomod_gap_scan_sites", "Sites checked by the latest successful gap scan."),
		repairs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "matomod_repairs_total",
			Help: "Gaps matomod handled (site-days, the weeks, months and years repaired with them, and stored segments' gaps), by result (repaired, failed, skipped_unsafe).",
		}, []string{"result"}),
		invalidations: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "matomod_invalidations_total",
			Help: "Site-days matomod asked Matomo to invalidate (core:invalidate-report-data).",
		}),

		dbUp: gauge("matomod_db_up", "1 when the latest query to Matomo's database succeeded."),
		paused: prometheus.NewGaugeVec(prometheus.GaugeOpts{
			Name: "matomod_paused",
			Help: "1 while archiving is paused for this reason (maintenance_mode, tracking_disabled, update_pending).",
		}, []string{"reason"}),
		leader:       gauge("matomod_leader", "1 when this instance holds the leader lock and schedules runs, scans and repairs."),
		reloadOK:     gauge("matomod_config_last_reload_successful", "1 when the latest configuration load succeeded."),
		reloadOKTime: gauge("matomod_config_last_reload_success_timestamp_seconds", "Time of the latest successful configuration load (0: none yet)."),
		snapshots:    newSnapshotCollector(),
		enc:          NewEncodedGaps(),
	}
	for _, r := range runResults {
		for _, role := range roles {
			m.runs.WithLabelValues(r, role)
		}
	}
	for _, r := range repairResults {
		m.repairs.WithLabelValues(r)
	}
	for _, r := range pauseReasons {
		m.paused.WithLabelValues(r)
	}
	build := prometheus.NewGauge(prometheus.GaugeOpts{
		Name:        "matomod_build_info",
		Help:        "Always 1; labels say which matomod build is running.",
		ConstLabels: prometheus.Labels{"version": b.Version, "revision": b.Revision, "goversion": b.GoVersion},
	})
	build.Set(1)

	for _, c := range []prometheus.Collector{
		m.runs, m.runDuration, m.running, m.lastRun, m.lastSuccess, m.lastExit, m.nextRun,
		m.scanDuration, m.scanLastSuccess, m.scanLastFailure, m.scanSites, m.repairs, m.invalidations,
		m.dbUp, m.paused, m.leader, m.reloadOK, m.reloadOKTime, build, m.snapshots,
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("registering metrics: %w (pass a registry that holds no matomod, Go or process collectors)", err)
		}
	}
	return m, nil
}

// seconds converts t to Unix seconds; the zero time (unknown) becomes 0.
func seconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

func boolValue(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

func known(set []string, v string) bool {
	for _, s := range set {
		if s == v {
			return true
		}
	}
	return false
}

// RunStarted records that a core:archive run started at at.
func (m *Metrics) RunStarted(at time.Time) {
	m.running.Set(1)
	m.lastRun.Set(seconds(at))
}

// RunFinished records the outcome of a scheduled run. For runs that started
// (success, failure, timeout) it observes the duration, clears
// matomod_archive_running and records exitCode (pass -1 when the process was
// killed or never started); a success also sets the last success time to
// start+d. Skipped runs only count: another run may still be in progress.
func (m *Metrics) RunFinished(result string, start time.Time, d time.Duration, exitCode int) {
	if !known(runResults, result) {
		return
	}
	m.runs.WithLabelValues(result, RoleLeader).Inc()
	if result == RunSkippedOverlap || result == RunSkippedPaused {
		return
	}
	m.running.Set(0)
	m.lastRun.Set(seconds(start))
	m.runDuration.Observe(d.Seconds())
	m.lastExit.Set(float64(exitCode))
	if result == RunSuccess {
		m.lastSuccess.Set(seconds(start.Add(d)))
	}
}

// WorkerRunFinished counts a run a worker started; the run gauges stay the
// leader's, whose schedule they describe.
func (m *Metrics) WorkerRunFinished(result string, d time.Duration) {
	if !known(runResults, result) {
		return
	}
	m.runs.WithLabelValues(result, RoleWorker).Inc()
}

// SetNextRun records when the next run is scheduled (zero time: none).
func (m *Metrics) SetNextRun(t time.Time) { m.nextRun.Set(seconds(t)) }

// SetPaused sets matomod_paused to 1 for each given reason and to 0 for the
// others; no arguments means not paused. Unknown reasons are ignored.
func (m *Metrics) SetPaused(reasons ...string) {
	for _, r := range pauseReasons {
		m.paused.WithLabelValues(r).Set(boolValue(known(reasons, r)))
	}
}

// SetDBUp records whether the latest query to Matomo's database succeeded.
func (m *Metrics) SetDBUp(up bool) { m.dbUp.Set(boolValue(up)) }

// SetLeader records whether this instance is the leader. An instance that
// runs without leader election is always the leader.
func (m *Metrics) SetLeader(leader bool) { m.leader.Set(boolValue(leader)) }

// ConfigReloaded records the outcome of a configuration (re)load at at,
// including the first load at start.
func (m *Metrics) ConfigReloaded(ok bool, at time.Time) {
	m.reloadOK.Set(boolValue(ok))
	if ok {
		m.reloadOKTime.Set(seconds(at))
	}
}

// Repairs counts n gap site-days with the given result.
func (m *Metrics) Repairs(result string, n int) {
	if n <= 0 || !known(repairResults, result) {
		return
	}
	m.repairs.WithLabelValues(result).Add(float64(n))
}

// Invalidations counts n site-days matomod asked Matomo to invalidate.
func (m *Metrics) Invalidations(n int) {
	if n > 0 {
		m.invalidations.Add(float64(n))
	}
}

// GapScanFinished records a successful gap scan that ended at at, took d and
// checked sites sites. Pair it with SetGaps for the scan's findings.
func (m *Metrics) GapScanFinished(at time.Time, d time.Duration, sites int) {
	m.scanDuration.Set(d.Seconds())
	m.scanLastSuccess.Set(seconds(at))
	m.scanSites.Set(float64(sites))
}

// GapScanFailed records a gap scan that failed at at. The gap series keep
// the last successful scan's findings.
func (m *Metrics) GapScanFailed(at time.Time) { m.scanLastFailure.Set(seconds(at)) }

// Handler serves reg's metrics for /metrics with the gap families (one
// series per site and kind: ~31 k with 10,000 sites with gaps) encoded once
// per SetGaps instead of gathered and encoded on every scrape. From the
// first call on, SetGaps feeds the encoded copy only.
func (m *Metrics) Handler(reg prometheus.Gatherer) http.Handler {
	m.encodedGaps.Store(true)
	return m.enc.Handler(reg)
}

// SetGaps replaces the gap findings served to scrapes.
func (m *Metrics) SetGaps(s GapSnapshot) {
	if m.encodedGaps.Load() && m.enc.Set(s) == nil {
		return
	}
	m.snapshots.setGaps(s)
}

// SetMatomo replaces the facts about Matomo served to scrapes.
func (m *Metrics) SetMatomo(s MatomoSnapshot) { m.snapshots.setMatomo(s) }
