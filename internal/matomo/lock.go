package matomo

import (
	"context"
	"crypto/sha256"
	"database/sql"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"
)

// Lock is a MariaDB/MySQL named lock held on a dedicated connection: it dies
// with that connection, so a crashed or partitioned holder loses it without
// anyone's help. Named locks are per server: on Galera or Group Replication
// every instance must use the same primary.
type Lock struct {
	name string
	conn *sql.Conn
}

// maxLockName is MySQL's and MariaDB's limit on GET_LOCK names; a longer
// name is an error on MySQL 5.7+ and silently truncated elsewhere.
const maxLockName = 64

// lockName is matomod:<dbname>:<what>, with the database name hashed when
// the whole would pass maxLockName.
func (d *DB) lockName(what string) string {
	n := "matomod:" + d.dbName + ":" + what
	if len(n) <= maxLockName {
		return n
	}
	h := sha256.Sum256([]byte(d.dbName))
	return "matomod:" + hex.EncodeToString(h[:12]) + ":" + what
}

// LeaderLockName is the lock matomod instances of one Matomo DB compete for.
func (d *DB) LeaderLockName() string { return d.lockName("leader") }

// ArchiveLockName is held by whoever runs a core:archive that matomod
// started (scheduled run, repair, `matomod archive`, `matomod repair`), on
// any host, so two never overlap. Workers do not take it.
func (d *DB) ArchiveLockName() string { return d.lockName("archive") }

// ErrLockBusy means another connection holds the lock.
var ErrLockBusy = errors.New("held by another connection")

// TryLock takes the named lock without waiting. ok is false when another
// connection holds it.
func (d *DB) TryLock(ctx context.Context, name string) (l *Lock, ok bool, err error) {
	l, err = d.WaitLock(ctx, name, 0)
	if errors.Is(err, ErrLockBusy) {
		return nil, false, nil
	}
	return l, err == nil, err
}

// WaitLock takes the named lock, waiting up to wait for its holder to
// release it. When it cannot, the error wraps ErrLockBusy and says who holds
// the lock.
func (d *DB) WaitLock(ctx context.Context, name string, wait time.Duration) (*Lock, error) {
	cctx, cancel := context.WithTimeout(ctx, d.timeout+wait)
	defer cancel()
	conn, err := d.db.Conn(cctx)
	if err != nil {
		return nil, fmt.Errorf("database %s unreachable: %w", d.dbName, err)
	}
	d.count("lock")
	secs := math.Ceil(wait.Seconds())
	var got sql.NullInt64
	if err := conn.QueryRowContext(cctx, "SELECT GET_LOCK(?, ?)", name, secs).Scan(&got); err != nil {
		conn.Close()
		return nil, fmt.Errorf("GET_LOCK(%q): %w", name, err)
	}
	if !got.Valid || got.Int64 != 1 {
		conn.Close()
		return nil, fmt.Errorf("lock %s is %w: %s", name, ErrLockBusy, d.LockHolder(ctx, name))
	}
	return &Lock{name: name, conn: conn}, nil
}

// LockHolder describes who holds name, as far as this user may see:
// "connection 42 (matomo@10.0.0.5:51234)".
func (d *DB) LockHolder(ctx context.Context, name string) string {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	d.count("lock")
	var id sql.NullInt64
	if err := d.db.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?)", name).Scan(&id); err != nil || !id.Valid {
		return "released a moment ago"
	}
	var user, host sql.NullString
	d.count("lock")
	err := d.db.QueryRowContext(ctx, "SELECT USER, HOST FROM information_schema.PROCESSLIST WHERE ID = ?", id.Int64).Scan(&user, &host)
	if err != nil {
		return fmt.Sprintf("connection %d", id.Int64)
	}
	return fmt.Sprintf("connection %d (%s@%s)", id.Int64, user.String, host.String)
}

// ErrLockLost means the lock's connection is gone or the lock is not ours.
var ErrLockLost = errors.New("lock lost")

// Check confirms the lock is still held by this connection. Any error means
// the lock is gone: the driver closes a connection whose query failed or
// timed out, and the server then releases its locks. So give ctx a generous
// deadline: a short one turns a slow answer into a lost lock.
func (l *Lock) Check(ctx context.Context) error {
	var mine sql.NullInt64
	err := l.conn.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?) = CONNECTION_ID()", l.name).Scan(&mine)
	if err != nil {
		return fmt.Errorf("%w: %s: its connection failed: %v", ErrLockLost, l.name, err)
	}
	if !mine.Valid || mine.Int64 != 1 {
		return fmt.Errorf("%w: %s is no longer held by this connection", ErrLockLost, l.name)
	}
	return nil
}

// Name is the lock's name.
func (l *Lock) Name() string { return l.name }

// Release gives the lock up and closes its connection.
func (l *Lock) Release() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l.conn.ExecContext(ctx, "DO RELEASE_LOCK(?)", l.name)
	l.conn.Close()
}
