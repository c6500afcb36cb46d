package daemon

import (
	"context"
	"time"

	"github.com/matomod/matomod/internal/archiver"
	"github.com/matomod/matomod/internal/gapdetect"
	"github.com/matomod/matomod/internal/metrics"
	"github.com/matomod/matomod/internal/repair"
	"github.com/matomod/matomod/internal/scheduler"
)

// Roles.
const (
	RoleLeader = "leader"
	RoleWorker = "worker"
)

// Settings are the parts of the configuration the daemon acts on.
type Settings struct {
	Role              string
	Schedule          scheduler.Config
	StopTimeout       time.Duration
	KillGrace         time.Duration
	ScanInterval      time.Duration
	AutoRepair        bool
	MaxRepairDays     int
	WorkerConcurrency int
	WorkerInterval    time.Duration
}

// Env is one loaded configuration and what was built from it. A reload
// builds a new Env; the Loader may hand the previous one's database handle
// and detector over when their settings did not change.
type Env struct {
	Settings Settings
	// DBKey names the database server and schema: leadership outlives a
	// reload only when it is unchanged.
	DBKey string
	// DetectKey is the Loader's: it keeps the detector when unchanged.
	DetectKey string
	Matomo    Matomo
	Locks     Locker
	Console   Console
	Detector  Detector
	Repairer  Repairer
	// Pool identifies the database handle that Close releases; two Envs
	// with the same Pool share it, and it is closed once.
	Pool  any
	Close func()
}

// Loader reads the configuration afresh; prev is the Env in force (nil at
// start). It validates everything but the database answering, which the
// daemon checks itself.
type Loader func(ctx context.Context, prev *Env) (*Env, error)

// Matomo is the daemon's view of Matomo's database and config files.
type Matomo interface {
	Ping(ctx context.Context) error
	// PauseReason is a metrics.Paused* value, or "" when archiving may run.
	PauseReason(ctx context.Context) (string, error)
	Queued(ctx context.Context) (int, error)
	Snapshot(ctx context.Context) (metrics.MatomoSnapshot, error)
}

// Locker takes the named locks. Both return an error wrapping
// matomo.ErrLockBusy, and naming the holder, when another connection holds
// the lock.
type Locker interface {
	Leader(ctx context.Context) (Lock, error)
	Archive(ctx context.Context) (Lock, error)
}

// Lock is a held named lock. Check errs only when the lock is gone.
type Lock interface {
	Check(ctx context.Context) error
	Release()
}

// Console runs Matomo's console.
type Console interface {
	Check(ctx context.Context) error
	Archive(ctx context.Context, runID string) archiver.Result
}

// Detector finds gaps (a gapdetect.Detector).
type Detector interface {
	Scan(ctx context.Context) (*gapdetect.Result, error)
	SetLastArchiveRun(t time.Time)
}

// Repairer repairs gaps (a repair.Repairer): Repair the plain day and
// period gaps (Result.Gaps), RepairSegments the stored segments' gaps
// (Result.SegmentGaps).
type Repairer interface {
	Repair(ctx context.Context, gaps []gapdetect.Gap) (*repair.Report, error)
	RepairSegments(ctx context.Context, gaps []gapdetect.Gap) (*repair.Report, error)
}

// Metrics is what the daemon reports (a *metrics.Metrics).
type Metrics interface {
	RunStarted(at time.Time)
	RunFinished(result string, start time.Time, d time.Duration, exitCode int)
	WorkerRunFinished(result string, d time.Duration)
	SetNextRun(t time.Time)
	SetPaused(reasons ...string)
	SetDBUp(up bool)
	SetLeader(leader bool)
	ConfigReloaded(ok bool, at time.Time)
	Repairs(result string, n int)
	Invalidations(n int)
	GapScanFinished(at time.Time, d time.Duration, sites int)
	GapScanFailed(at time.Time)
	SetGaps(s metrics.GapSnapshot)
	SetMatomo(s metrics.MatomoSnapshot)
}

// Notifier speaks to systemd.
type Notifier interface {
	Ready()
	Reloading()
	Stopping()
	Watchdog()
	Status(s string)
}

// Clock is the wall clock; timers come from package time so tests run under
// testing/synctest.
type Clock interface{ Now() time.Time }

type realClock struct{}

func (realClock) Now() time.Time { return time.Now() }
