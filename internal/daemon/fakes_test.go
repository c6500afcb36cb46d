package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/matomod/matomod/internal/archiver"
	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/metrics"
	"github.com/matomod/matomod/internal/repair"
	"github.com/matomod/matomod/internal/scheduler"
)

// fakeDB is Matomo and the lock server: down fails every call at once,
// blackhole makes pings hang until their deadline.
type fakeDB struct {
	mu        sync.Mutex
	down      bool
	blackhole bool
	pause     string
	pauseErr  error
	queued    int
	leaderBy  string // another instance holds the leader lock
	archiveBy string // another matomod command holds the archive lock
	archiving int    // archive locks held by us
	leader    *fakeLock
}

func (f *fakeDB) set(fn func(*fakeDB)) {
	f.mu.Lock()
	defer f.mu.Unlock()
	fn(f)
}

func (f *fakeDB) leaderLock() *fakeLock {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.leader
}

func (f *fakeDB) Ping(ctx context.Context) error {
	f.mu.Lock()
	down, hole := f.down, f.blackhole
	f.mu.Unlock()
	if hole {
		<-ctx.Done()
		return fmt.Errorf("database m unreachable: %w", ctx.Err())
	}
	if down {
		return errors.New("database m unreachable: connection refused")
	}
	return nil
}

func (f *fakeDB) PauseReason(ctx context.Context) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pause, f.pauseErr
}

func (f *fakeDB) Queued(ctx context.Context) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.queued, nil
}

func (f *fakeDB) Snapshot(ctx context.Context) (metrics.MatomoSnapshot, error) {
	return metrics.MatomoSnapshot{Version: "5.0.0"}, nil
}

func (f *fakeDB) Leader(ctx context.Context) (Lock, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.down {
		return nil, errors.New("database m unreachable")
	}
	if f.leaderBy != "" || (f.leader != nil && !f.leader.lost.Load() && !f.leader.released.Load()) {
		return nil, fmt.Errorf("lock matomod:m:leader is %w: %s", matomo.ErrLockBusy, f.leaderBy)
	}
	f.leader = &fakeLock{}
	return f.leader, nil
}

func (f *fakeDB) Archive(ctx context.Context) (Lock, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.archiveBy != "" || f.archiving > 0 {
		return nil, fmt.Errorf("lock matomod:m:archive is %w: connection 7 (%s)", matomo.ErrLockBusy, f.archiveBy)
	}
	f.archiving++
	return &fakeLock{release: func() { f.set(func(f *fakeDB) { f.archiving-- }) }}, nil
}

type fakeLock struct {
	lost     atomic.Bool
	released atomic.Bool
	release  func()
}

func (l *fakeLock) Check(ctx context.Context) error {
	if l.lost.Load() {
		return matomo.ErrLockLost
	}
	return nil
}

func (l *fakeLock) Release() {
	if !l.released.Swap(true) && l.release != nil {
		l.release()
	}
}

// fakeConsole's runs take took, or end early when cancelled.
type fakeConsole struct {
	took      time.Duration
	broken    error
	started   atomic.Int32
	finished  atomic.Int32
	cancelled atomic.Int32
	running   atomic.Int32
}

func (c *fakeConsole) Check(context.Context) error { return c.broken }

func (c *fakeConsole) Archive(ctx context.Context, runID string) archiver.Result {
	c.started.Add(1)
	c.running.Add(1)
	defer c.running.Add(-1)
	start := time.Now()
	t := time.NewTimer(c.took)
	defer t.Stop()
	select {
	case <-t.C:
		c.finished.Add(1)
		return archiver.Result{RunID: runID, Start: start, Duration: c.took, Outcome: archiver.OutcomeSuccess}
	case <-ctx.Done():
		c.cancelled.Add(1)
		return archiver.Result{RunID: runID, Start: start, Duration: time.Since(start), ExitCode: -1, Outcome: archiver.OutcomeFailure, Err: ctx.Err()}
	}
}

type fakeDetector struct {
	mu      sync.Mutex
	gaps    []gapdetect.Gap
	segGaps []gapdetect.Gap // Result.SegmentGaps
	skipped []gapdetect.SiteError
	scans   atomic.Int32
}

func (d *fakeDetector) Scan(ctx context.Context) (*gapdetect.Result, error) {
	d.scans.Add(1)
	d.mu.Lock()
	defer d.mu.Unlock()
	return &gapdetect.Result{Gaps: append([]gapdetect.Gap(nil), d.gaps...), SegmentGaps: append([]gapdetect.Gap(nil), d.segGaps...),
		SiteErrors: append([]gapdetect.SiteError(nil), d.skipped...), SitesScanned: 1}, nil
}

func (d *fakeDetector) setSegGaps(g ...gapdetect.Gap) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.segGaps = g
}

func (d *fakeDetector) SetLastArchiveRun(time.Time) {}

// fakeRepairer fails every repairable day, as Matomo refusing it would;
// with fixSegments it repairs segment days instead, and their gaps leave
// det.
type fakeRepairer struct {
	mu          sync.Mutex
	took        time.Duration
	tried       map[matomo.SiteDate]int
	segTried    map[segDay]int
	segCalls    [][]gapdetect.Gap // what each RepairSegments was given
	fixSegments bool
	det         *fakeDetector
}

// segDay is one stored segment's site-day.
type segDay struct {
	IDSite  int
	Segment string
	Date    matomo.Date
}

func (r *fakeRepairer) Repair(ctx context.Context, gaps []gapdetect.Gap) (*repair.Report, error) {
	time.Sleep(r.took)
	r.mu.Lock()
	defer r.mu.Unlock()
	rep := &repair.Report{Counts: map[string]int{}}
	for _, g := range gaps {
		if g.IsSegment() {
			return nil, fmt.Errorf("Repair given the segment gap %+v", g)
		}
		out := repair.DayOutcome{IDSite: g.IDSite, Date: g.Date, Kind: string(g.Kind), Result: repair.SkippedUnsafe, Reason: g.Reason}
		if g.Repairable {
			r.tried[matomo.SiteDate{IDSite: g.IDSite, Date: g.Date}]++
			rep.Ranges = append(rep.Ranges, gapdetect.Range{IDSite: g.IDSite, From: g.Date, To: g.Date})
			out.Result, out.Reason = repair.FailedResult, "core:invalidate-report-data queued nothing for this day: Matomo refused it as older than its log-deletion limit"
		}
		rep.Days = append(rep.Days, out)
		rep.Counts[out.Result]++
	}
	return rep, nil
}

func (r *fakeRepairer) RepairSegments(ctx context.Context, gaps []gapdetect.Gap) (*repair.Report, error) {
	time.Sleep(r.took)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.segCalls = append(r.segCalls, slices.Clone(gaps))
	rep := &repair.Report{Counts: map[string]int{}}
	var fixed []segDay
	for _, g := range gaps {
		if !g.IsSegment() {
			return nil, fmt.Errorf("RepairSegments given the plain gap %+v", g)
		}
		out := repair.SegmentOutcome{Segment: g.Segment, DayOutcome: repair.DayOutcome{IDSite: g.IDSite, Period: g.Period, Date: g.Date, Date2: g.Date2,
			Kind: string(g.Kind), Result: repair.SkippedUnsafe, Reason: g.Reason}}
		if g.Repairable {
			k := segDay{g.IDSite, g.Segment, g.Date}
			r.segTried[k]++
			out.Result, out.Reason = repair.FailedResult, "core:invalidate-report-data queued nothing for this segment day: Matomo refused it as older than its log-deletion limit"
			if r.fixSegments {
				out.Result, out.Reason = repair.Repaired, ""
				rep.Invalidations++
				fixed = append(fixed, k)
			}
		}
		rep.Segments = append(rep.Segments, out)
		rep.Counts[out.Result]++
	}
	if len(fixed) > 0 {
		rep.Archive = &archiver.Result{Outcome: archiver.OutcomeSuccess}
		r.det.mu.Lock()
		r.det.segGaps = slices.DeleteFunc(r.det.segGaps, func(g gapdetect.Gap) bool {
			return slices.Contains(fixed, segDay{g.IDSite, g.Segment, g.Date})
		})
		r.det.mu.Unlock()
	}
	return rep, nil
}

// segTries is how often the segment's site-day was repaired.
func (r *fakeRepairer) segTries(idsite int, segment string, d matomo.Date) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.segTried[segDay{idsite, segment, d}]
}

// calls is what each RepairSegments was given.
func (r *fakeRepairer) calls() [][]gapdetect.Gap {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.segCalls)
}

// fakeNotifier records sd_notify messages with their (fake) time.
type fakeNotifier struct {
	mu   sync.Mutex
	msgs []note
}

type note struct {
	at  time.Time
	msg string
}

func (n *fakeNotifier) add(m string) {
	n.mu.Lock()
	n.msgs = append(n.msgs, note{time.Now(), m})
	n.mu.Unlock()
}
func (n *fakeNotifier) Ready()          { n.add("READY=1") }
func (n *fakeNotifier) Reloading()      { n.add("RELOADING=1") }
func (n *fakeNotifier) Stopping()       { n.add("STOPPING=1") }
func (n *fakeNotifier) Watchdog()       { n.add("WATCHDOG=1") }
func (n *fakeNotifier) Status(s string) { n.add("STATUS=" + s) }

// times lists when msg was sent.
func (n *fakeNotifier) times(msg string) []time.Time {
	n.mu.Lock()
	defer n.mu.Unlock()
	var out []time.Time
	for _, m := range n.msgs {
		if m.msg == msg {
			out = append(out, m.at)
		}
	}
	return out
}

func (n *fakeNotifier) has(prefix string) bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	for _, m := range n.msgs {
		if strings.HasPrefix(m.msg, prefix) {
			return true
		}
	}
	return false
}

type logBuf struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *logBuf) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *logBuf) events(ev string) []map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	var out []map[string]any
	for _, line := range strings.Split(l.b.String(), "\n") {
		var m map[string]any
		if json.Unmarshal([]byte(line), &m) == nil && m["event"] == ev {
			out = append(out, m)
		}
	}
	return out
}

func (l *logBuf) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// harness is a Daemon over fakes; run it inside synctest.Test.
type harness struct {
	t       *testing.T
	d       *Daemon
	db      *fakeDB
	con     *fakeConsole
	det     *fakeDetector
	rep     *fakeRepairer
	n       *fakeNotifier
	logs    *logBuf
	reg     *prometheus.Registry
	env     *Env
	reload  chan struct{}
	fatal   chan error
	cancel  context.CancelFunc
	done    chan error
	nextEnv func() (*Env, error) // what the next reload loads
}

func settings(t *testing.T) Settings {
	return Settings{
		Role:              RoleLeader,
		Schedule:          scheduler.Config{Schedule: "@every 1m", Retries: -1, StateFile: filepath.Join(t.TempDir(), "state.json")},
		StopTimeout:       5 * time.Minute,
		KillGrace:         time.Minute,
		ScanInterval:      time.Hour,
		AutoRepair:        true,
		MaxRepairDays:     60,
		WorkerConcurrency: 2,
		WorkerInterval:    time.Minute,
	}
}

func newHarness(t *testing.T, s Settings) *harness {
	det := &fakeDetector{}
	h := &harness{t: t, db: &fakeDB{}, con: &fakeConsole{took: time.Second}, det: det,
		rep: &fakeRepairer{tried: map[matomo.SiteDate]int{}, segTried: map[segDay]int{}, det: det}, n: &fakeNotifier{}, logs: &logBuf{},
		reg: prometheus.NewRegistry(), reload: make(chan struct{}), fatal: make(chan error, 1), done: make(chan error, 1)}
	h.env = h.newEnv(s)
	met, err := metrics.New(h.reg, metrics.BuildInfo{})
	if err != nil {
		t.Fatal(err)
	}
	h.d = &Daemon{Log: slog.New(slog.NewJSONHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Metrics: met, Notify: h.n, Watchdog: 10 * time.Second}
	h.d.Load = func(ctx context.Context, prev *Env) (*Env, error) {
		if h.nextEnv != nil {
			return h.nextEnv()
		}
		return h.newEnv(prev.Settings), nil
	}
	return h
}

func (h *harness) newEnv(s Settings) *Env {
	return &Env{Settings: s, DBKey: "db", Matomo: h.db, Locks: h.db, Console: h.con, Detector: h.det, Repairer: h.rep, Pool: h.db}
}

func (h *harness) start() {
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	go func() { h.done <- h.d.Run(ctx, h.env, h.reload, h.fatal) }()
}

// stop is SIGTERM: it returns Run's error and how long Run took to return.
func (h *harness) stop() (error, time.Duration) {
	start := time.Now()
	h.cancel()
	err := <-h.done
	return err, time.Since(start)
}

func (h *harness) metric(name string, labels ...string) float64 {
	mfs, err := h.reg.Gather()
	if err != nil {
		h.t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
	next:
		for _, m := range mf.GetMetric() {
			for i := 0; i+1 < len(labels); i += 2 {
				ok := false
				for _, l := range m.GetLabel() {
					if l.GetName() == labels[i] && l.GetValue() == labels[i+1] {
						ok = true
					}
				}
				if !ok {
					continue next
				}
			}
			if c := m.GetCounter(); c != nil {
				return c.GetValue()
			}
			return m.GetGauge().GetValue()
		}
	}
	h.t.Fatalf("no %s%v", name, labels)
	return 0
}
