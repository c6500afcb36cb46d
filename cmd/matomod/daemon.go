package main

import (
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"

	"github.com/matomod/matomod/internal/archiver"
	"github.com/matomod/matomod/internal/daemon"
	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/metrics"
	"github.com/matomod/matomod/internal/repair"
)

// tick is how often the control loop checks the DB, the leader lock and
// the pause state; followers retry the lock at this pace.
var tick = daemon.DefaultTick

// runDaemon is `matomod run`: wiring only; internal/daemon is the daemon.
func runDaemon(ctx context.Context, g *globals, log *slog.Logger) int {
	d := &daemon.Daemon{Log: log, Notify: &notifier{log: log}, Tick: tick}
	d.Load = func(ctx context.Context, prev *daemon.Env) (*daemon.Env, error) {
		env, _, err := loadEnv(g, log, prev)
		return env, err
	}
	env, s, err := loadEnv(g, log, nil)
	if err != nil {
		log.Error("cannot start: bad configuration", "event", "config_invalid", "err", err)
		return exitError
	}
	reg := prometheus.NewRegistry()
	met, err := metrics.New(reg, metrics.BuildInfo{Version: version.Version, Revision: version.GetRevision(), GoVersion: runtime.Version()})
	if err != nil {
		env.Close()
		log.Error("cannot register metrics", "err", err)
		return exitError
	}
	d.Metrics = met
	d.Watchdog = watchdogInterval()

	srv, fatal := serveHTTP(g, log, met.Handler(reg), d)
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	reload, done := make(chan struct{}), make(chan struct{})
	defer close(done)
	go func() { // signal.Stop never closes hup: end on done
		for {
			select {
			case <-hup:
			case <-done:
				return
			}
			select {
			case reload <- struct{}{}:
			case <-done:
				return
			}
		}
	}()
	log.Info("matomod starting", "event", "starting", "version", version.Version, "matomo_dir", s.cfg.MatomoDir,
		"database", s.mat.DB.DBName, "role", s.cfg.Role, "schedule", s.cfg.Archive.Schedule)
	runErr := d.Run(ctx, env, reload, fatal)
	sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	srv.Shutdown(sctx)
	if runErr != nil {
		log.Error("matomod failed", "event", "failed", "err", runErr)
		return exitError
	}
	return exitOK
}

// loadEnv reads and validates both config files and builds what the
// daemon works with. The database handle and the gap detector (whose state
// spares the next scan a full re-read) are carried over from prev when
// their settings did not change.
func loadEnv(g *globals, log *slog.Logger, prev *daemon.Env) (*daemon.Env, *setup, error) {
	s, err := loadSetup(g)
	if err != nil {
		return nil, nil, err
	}
	// Only compared, never shown: it holds the password.
	dbKey := fmt.Sprintf("%x", sha256.Sum256([]byte(fmt.Sprintf("%#v", s.mat.DB))))
	detectKey := fmt.Sprintf("%#v", s.detectorOptions())
	var db *matomo.DB
	var det *persisted
	statePath := filepath.Join(filepath.Dir(s.cfg.StateFile), "gapscan.json")
	if prev != nil && prev.DBKey == dbKey {
		db = prev.Pool.(*matomo.DB)
		if p := prev.Detector.(*persisted); prev.DetectKey == detectKey && p.path == statePath {
			det = p
		}
	} else if db, err = s.openDB(); err != nil {
		return nil, nil, err
	}
	if det == nil {
		det = &persisted{Detector: gapdetect.New(db, s.detectorOptions()), path: statePath, log: log}
		// A state the scan cannot trust (another database, a restore) is
		// detected by the scan itself, which then reads everything.
		if err := det.LoadState(statePath); err != nil {
			log.Warn("gap scan state not loaded: the first scan reads everything", "event", "scan_state_ignored", "path", statePath, "err", err)
		}
	}
	con := s.console(log)
	return &daemon.Env{
		Settings:  s.settings(),
		DBKey:     dbKey,
		DetectKey: detectKey,
		Matomo:    &matomoState{s: s, db: db},
		Locks:     dbLocks{db},
		Console:   &runner{s: s, con: con},
		Detector:  det,
		Repairer:  &repair.Repairer{DB: db, Console: con, Scanner: det.Detector, Opt: s.repairOptions(log, false)},
		Pool:      db,
		Close:     func() { db.Close() },
	}, s, nil
}

// persisted is the gap detector whose state outlives a restart: loaded once
// when built, written after every scan (gapscan.json beside the state
// file), so a restarted daemon's first scan costs what a steady one does.
type persisted struct {
	*gapdetect.Detector
	path string
	log  *slog.Logger
}

func (p *persisted) Scan(ctx context.Context) (*gapdetect.Result, error) {
	res, err := p.Detector.Scan(ctx)
	if err == nil {
		if serr := p.SaveState(p.path); serr != nil {
			p.log.Warn("gap scan state not saved: a restart will scan everything", "event", "scan_state_unsaved", "path", p.path, "err", serr)
		}
	}
	return res, err
}

// matomoState is daemon.Matomo over the database and config.ini.php.
type matomoState struct {
	s  *setup
	db *matomo.DB
}

func (m *matomoState) Ping(ctx context.Context) error { return m.db.Ping(ctx) }

func (m *matomoState) PauseReason(ctx context.Context) (string, error) {
	reason, _, err := pauseReason(ctx, m.s, m.db)
	return reason, err
}

func (m *matomoState) Queued(ctx context.Context) (int, error) {
	b, err := m.db.InvalidationBacklog(ctx)
	return b.Queued, err
}

func (m *matomoState) Snapshot(ctx context.Context) (metrics.MatomoSnapshot, error) {
	opts, err := m.db.ReadOptions(ctx)
	if err != nil {
		return metrics.MatomoSnapshot{}, err
	}
	b, err := m.db.InvalidationBacklog(ctx)
	if err != nil {
		return metrics.MatomoSnapshot{}, err
	}
	return metrics.MatomoSnapshot{Version: opts.VersionCore, LastCompletedArchiving: opts.LastCompletedFullArchiving,
		Queued: b.Queued, InProgress: b.InProgress, OldestQueued: b.OldestQueued, OldestInProgress: b.OldestInProgress}, nil
}

// dbLocks is daemon.Locker over MySQL named locks.
type dbLocks struct{ db *matomo.DB }

func (l dbLocks) Leader(ctx context.Context) (daemon.Lock, error) {
	return l.take(ctx, l.db.LeaderLockName())
}

func (l dbLocks) Archive(ctx context.Context) (daemon.Lock, error) {
	return l.take(ctx, l.db.ArchiveLockName())
}

func (l dbLocks) take(ctx context.Context, name string) (daemon.Lock, error) {
	lk, err := l.db.WaitLock(ctx, name, 0)
	if err != nil {
		return nil, err
	}
	return lk, nil
}

// runner is daemon.Console with the archive.* settings bound.
type runner struct {
	s   *setup
	con *archiver.Console
}

func (r *runner) Check(context.Context) error { return r.con.Check() }

func (r *runner) Archive(ctx context.Context, runID string) archiver.Result {
	a := r.s.cfg.Archive
	return r.con.Archive(ctx, archiver.RunOptions{RunID: runID, Timeout: a.RunTimeout.D(), KillGrace: a.KillGrace.D()}, a.URL, a.ExtraArgs)
}

// serveHTTP starts /metrics, /healthz and /readyz (exporter-toolkit: TLS
// and basic auth from --web.config.file). No pprof here. A listener that
// fails (address in use, bad web config) is fatal: `run` exits non-zero so
// Restart=on-failure applies.
func serveHTTP(g *globals, log *slog.Logger, metricsHandler http.Handler, d *daemon.Daemon) (*http.Server, <-chan error) {
	mux := http.NewServeMux()
	mux.Handle("/metrics", metricsHandler)
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		if !d.Alive() {
			http.Error(w, "control or scheduler loop is not alive", http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ok")
	})
	mux.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if reason := d.NotReady(); reason != "" {
			http.Error(w, reason, http.StatusServiceUnavailable)
			return
		}
		fmt.Fprintln(w, "ready")
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/" {
			http.NotFound(w, r)
			return
		}
		fmt.Fprintln(w, "matomod: /metrics /healthz /readyz")
	})
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() {
		if err := web.ListenAndServe(srv, g.web, log); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Error("HTTP server failed: check --web.listen-address and --web.config.file", "event", "http_failed", "err", err)
			errc <- fmt.Errorf("serving HTTP: %w: check --web.listen-address and --web.config.file", err)
		}
	}()
	return srv, errc
}
