package matomo

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
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

// LeaderLockName is the lock matomod instances of one Matomo DB compete for.
func (d *DB) LeaderLockName() string { return "matomod:" + d.dbName + ":leader" }

// TryLock takes the named lock without waiting. ok is false when another
// connection holds it.
func (d *DB) TryLock(ctx context.Context, name string) (l *Lock, ok bool, err error) {
	ctx, cancel := d.ctx(ctx)
	defer cancel()
	conn, err := d.db.Conn(ctx)
	if err != nil {
		return nil, false, fmt.Errorf("database %s unreachable: %w", d.dbName, err)
	}
	d.count()
	var got sql.NullInt64
	if err := conn.QueryRowContext(ctx, "SELECT GET_LOCK(?, 0)", name).Scan(&got); err != nil {
		conn.Close()
		return nil, false, fmt.Errorf("GET_LOCK(%q): %w", name, err)
	}
	if !got.Valid || got.Int64 != 1 {
		conn.Close()
		return nil, false, nil
	}
	return &Lock{name: name, conn: conn}, true, nil
}

// ErrLockLost means the lock's connection is gone or the lock is not ours.
var ErrLockLost = errors.New("leader lock lost")

// Check confirms the lock is still held by this connection.
func (l *Lock) Check(ctx context.Context, timeout time.Duration) error {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	var mine sql.NullInt64
	err := l.conn.QueryRowContext(ctx, "SELECT IS_USED_LOCK(?) = CONNECTION_ID()", l.name).Scan(&mine)
	if err != nil {
		return fmt.Errorf("%w: %v", ErrLockLost, err)
	}
	if !mine.Valid || mine.Int64 != 1 {
		return ErrLockLost
	}
	return nil
}

// Release gives the lock up and closes its connection.
func (l *Lock) Release() {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	l.conn.ExecContext(ctx, "DO RELEASE_LOCK(?)", l.name)
	l.conn.Close()
}
