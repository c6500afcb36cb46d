package main

import (
	"bytes"
	"context"
	"database/sql"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// knobs are the MATOMOSIM_* environment variables (see doc.go).
type knobs struct {
	now             time.Time
	exit            int // -1: not set
	hang            time.Duration
	spawnChild      string
	garbage         bool
	hugeLine        int
	runlog          bool
	sleepPerArchive time.Duration
}

func readKnobs() (knobs, error) {
	k := knobs{exit: -1}
	env := func(n string) string { return strings.TrimSpace(os.Getenv(n)) }
	var err error
	if v := env("MATOMOSIM_NOW"); v != "" {
		if k.now, err = time.Parse(time.RFC3339, v); err != nil {
			return k, fmt.Errorf("MATOMOSIM_NOW=%q: want an RFC 3339 time such as 2026-11-27T12:09:33Z", v)
		}
	}
	if v := env("MATOMOSIM_EXIT"); v != "" {
		if k.exit, err = strconv.Atoi(v); err != nil || k.exit < 0 || k.exit > 255 {
			return k, fmt.Errorf("MATOMOSIM_EXIT=%q: want an exit code 0..255", v)
		}
	}
	durations := []struct {
		name string
		dst  *time.Duration
	}{{"MATOMOSIM_HANG", &k.hang}, {"MATOMOSIM_SLEEP_PER_ARCHIVE", &k.sleepPerArchive}}
	for _, d := range durations {
		if v := env(d.name); v != "" {
			if *d.dst, err = time.ParseDuration(v); err != nil || *d.dst < 0 {
				return k, fmt.Errorf("%s=%q: want a Go duration such as 30s or 50ms", d.name, v)
			}
		}
	}
	if v := env("MATOMOSIM_HUGE_LINE"); v != "" {
		if k.hugeLine, err = strconv.Atoi(v); err != nil || k.hugeLine < 0 {
			return k, fmt.Errorf("MATOMOSIM_HUGE_LINE=%q: want a byte count", v)
		}
	}
	k.spawnChild = env("MATOMOSIM_SPAWN_CHILD")
	k.garbage = env("MATOMOSIM_GARBAGE") == "1"
	k.runlog = env("MATOMOSIM_RUNLOG") == "1"
	return k, nil
}

// spawnChild starts a sleeping "climulti:request" child of this binary in our
// process group, as core:archive's CliMulti does, and records its pid.
func (a *app) spawnChild() (*exec.Cmd, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	c := exec.Command(exe, a.console, "climulti:request", "--superuser", "module=API&method=CoreAdminHome.archiveReports")
	c.Dir = a.dir
	if err := c.Start(); err != nil {
		return nil, err
	}
	if err := os.WriteFile(a.knobs.spawnChild, []byte(strconv.Itoa(c.Process.Pid)+"\n"), 0o644); err != nil {
		c.Process.Kill()
		c.Wait()
		return nil, err
	}
	return c, nil
}

// runClimulti is the child: it only sleeps (MATOMOSIM_HANG, or 2 minutes)
// until its parent finishes it or a group signal ends it.
func runClimulti(a *app, _ *input) int {
	d := 2 * time.Minute
	if a.knobs.hang > 0 {
		d = a.knobs.hang
	}
	time.Sleep(d)
	return 0
}

// noise prints the output-robustness knobs' lines.
func (a *app) noise() {
	if a.knobs.garbage {
		a.out.Write([]byte("INFO      \xff\xfe\xfd not utf-8 \xc3\x28 \x00\x01\x02\x1b[31m\n"))
		a.out.Write([]byte{0x89, 'P', 'N', 'G', 0x0d, 0x0a, 0x1a, 0x0a, 0x00, 0x00, 0xff, '\n'})
		a.errw.Write([]byte("\xfe\xff binary on stderr \x80\x81\n"))
	}
	if a.knobs.hugeLine > 0 {
		a.out.Write(append(bytes.Repeat([]byte("x"), a.knobs.hugeLine), '\n'))
	}
}

// runlogStart records this core:archive run in matomosim_runs (created on
// demand) so a test can check that runs of several daemons never overlap.
func runlogStart(ctx context.Context, db *sql.DB, pid int) (int64, error) {
	if _, err := db.ExecContext(ctx, "CREATE TABLE IF NOT EXISTS `matomosim_runs` ("+
		"id BIGINT UNSIGNED NOT NULL AUTO_INCREMENT PRIMARY KEY, host VARCHAR(255) NOT NULL, pid INT NOT NULL, "+
		"started DATETIME(6) NOT NULL, ended DATETIME(6) NULL) ENGINE=InnoDB"); err != nil {
		return 0, fmt.Errorf("creating matomosim_runs: %w", err)
	}
	host, _ := os.Hostname()
	res, err := db.ExecContext(ctx, "INSERT INTO `matomosim_runs` (host, pid, started) VALUES (?, ?, ?)", host, pid, time.Now().UTC())
	if err != nil {
		return 0, fmt.Errorf("recording the run in matomosim_runs: %w", err)
	}
	return res.LastInsertId()
}

func runlogEnd(ctx context.Context, db *sql.DB, id int64) {
	db.ExecContext(ctx, "UPDATE `matomosim_runs` SET ended = ? WHERE id = ?", time.Now().UTC(), id)
}
