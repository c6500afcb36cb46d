package matomo_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/matomod/matomod/internal/matomo"
	"github.com/matomod/matomod/internal/matomotest"
)

// A long database name would make matomod:<dbname>:leader pass MySQL's
// 64-character limit (an error on MySQL, truncation on MariaDB).
func TestLockNamesFitMySQLLimit(t *testing.T) {
	s := matomotest.New(t).Settings
	s.DBName = strings.Repeat("m", 64)
	db, err := matomo.Open(s, matomo.DBOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	for _, n := range []string{db.LeaderLockName(), db.ArchiveLockName()} {
		if len(n) > 64 || !strings.HasPrefix(n, "matomod:") {
			t.Errorf("lock name %q (%d chars)", n, len(n))
		}
	}
	if db.LeaderLockName() == db.ArchiveLockName() {
		t.Error("leader and archive locks share a name")
	}
}

// The second taker is told who holds the lock, waits when asked to, and
// gets it once the holder lets go.
func TestWaitLockSaysWhoHoldsIt(t *testing.T) {
	e := matomotest.New(t)
	a, b := open(t, e), open(t, e)
	ctx := context.Background()
	l, err := a.WaitLock(ctx, a.ArchiveLockName(), 0)
	if err != nil {
		t.Fatal(err)
	}
	_, err = b.WaitLock(ctx, b.ArchiveLockName(), 0)
	if !errors.Is(err, matomo.ErrLockBusy) || !strings.Contains(err.Error(), "held by another connection: connection") {
		t.Fatalf("second taker: %v", err)
	}
	go func() {
		time.Sleep(300 * time.Millisecond)
		l.Release()
	}()
	l2, err := b.WaitLock(ctx, b.ArchiveLockName(), 5*time.Second)
	if err != nil {
		t.Fatalf("waiting taker: %v", err)
	}
	if err := l2.Check(ctx); err != nil {
		t.Fatalf("held lock fails its check: %v", err)
	}
	l2.Release()
	if err := l2.Check(ctx); !errors.Is(err, matomo.ErrLockLost) {
		t.Fatalf("released lock passes its check: %v", err)
	}
}
