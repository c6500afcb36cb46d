package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/matomod/matomod/internal/archiver"
	"github.com/matomod/matomod/internal/config"
	"github.com/matomod/matomod/internal/matomo"
)

// checklist prints one line per check and remembers failures.
type checklist struct {
	w      io.Writer
	failed int
}

func (c *checklist) ok(format string, a ...any)   { fmt.Fprintf(c.w, "[ok]   "+format+"\n", a...) }
func (c *checklist) warn(format string, a ...any) { fmt.Fprintf(c.w, "[warn] "+format+"\n", a...) }
func (c *checklist) fail(format string, a ...any) {
	c.failed++
	fmt.Fprintf(c.w, "[FAIL] "+format+"\n", a...)
}

func cmdCheck(ctx context.Context, g *globals, w io.Writer) int {
	c := &checklist{w: w}
	cfg, err := config.Load(g.configFile, g.configFile == config.DefaultPath)
	switch {
	case err != nil:
		c.fail("%v", err)
		return exitError
	case fileExists(g.configFile):
		c.ok("config file %s read", g.configFile)
	default:
		c.ok("config file %s not present: using defaults", g.configFile)
	}
	if g.matomoDir != "" {
		cfg.MatomoDir = g.matomoDir
	}
	mat, err := cfg.LoadMatomo()
	if err != nil {
		c.fail("%v", err)
		return exitError
	}
	c.ok("Matomo config %s read (database %s, prefix %q, user %s)", mat.INI.Path, mat.DB.DBName, mat.DB.TablesPrefix, mat.DB.User)
	s := &setup{cfg: cfg, mat: mat}
	if err := s.validate(); err != nil { // what run and a reload refuse
		c.fail("%v", err)
		return exitError
	}
	c.ok("archive.schedule %q and archive.timezone %q understood", cfg.Archive.Schedule, cfg.Archive.Timezone)
	checkConsole(ctx, c, s)
	checkTmp(c, cfg.MatomoDir)
	if mat.INI.MaintenanceMode {
		c.warn("maintenance mode is on ([General] maintenance_mode = 1): archiving is paused until it is off")
	} else {
		c.ok("maintenance mode is off")
	}
	if !mat.INI.RecordStatistics {
		c.warn("tracking is off ([Tracker] record_statistics = 0): archiving is paused until it is on")
	}
	db, err := s.openDB()
	if err != nil {
		c.fail("%v", err)
		return exitError
	}
	defer db.Close()
	checkDB(ctx, c, db, cfg.MatomoDir)
	if c.failed > 0 {
		fmt.Fprintf(w, "%d check(s) failed.\n", c.failed)
		return exitFound
	}
	fmt.Fprintln(w, "All checks passed.")
	return exitOK
}

func fileExists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

// checkTmp: core:archive writes caches and locks under <matomo>/tmp as the
// user matomod runs it as.
func checkTmp(c *checklist, dir string) {
	tmp := filepath.Join(dir, "tmp")
	f, err := os.CreateTemp(tmp, ".matomod-check-*")
	if err != nil {
		c.fail("Matomo tmp/ %s is not writable by this user (uid %d): run matomod as the PHP user (www-data) or fix the permissions: %v", tmp, os.Getuid(), err)
		return
	}
	f.Close()
	os.Remove(f.Name())
	c.ok("Matomo tmp/ %s is writable", tmp)
}

func checkDB(ctx context.Context, c *checklist, db *matomo.DB, dir string) {
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	if err := db.Ping(ctx); err != nil {
		c.fail("%v: check [database] in config.ini.php or database: in matomod.yml", err)
		return
	}
	c.ok("database %s reachable", db.Name())
	present, err := db.TablesPresent(ctx)
	if err != nil {
		c.fail("listing tables: %v", err)
		return
	}
	var missing []string
	for _, t := range []string{"site", "log_visit", "option"} {
		if !present[t] {
			missing = append(missing, db.Prefix()+t)
		}
	}
	if len(missing) > 0 {
		c.fail("Matomo tables missing: %s: check tables_prefix (now %q) and dbname", strings.Join(missing, ", "), db.Prefix())
		return
	}
	if present["archive_invalidations"] {
		c.ok("Matomo tables found with prefix %q", db.Prefix())
	} else {
		c.warn("Matomo tables found with prefix %q, but no %sarchive_invalidations (Matomo < 4): queue checks are off", db.Prefix(), db.Prefix())
	}
	opts, err := db.ReadOptions(ctx)
	if err != nil {
		c.fail("%v", err)
		return
	}
	code, cerr := matomo.CodeVersion(dir)
	switch {
	case opts.VersionCore == "":
		c.fail("option version_core is empty: is this a Matomo database?")
	case cerr != nil:
		c.warn("Matomo %s (database); code version unknown: %v", opts.VersionCore, cerr)
	case matomo.VersionLess(opts.VersionCore, code):
		c.warn("Matomo %s in the database but %s in the code: core:update is pending, archiving is paused until it has run", opts.VersionCore, code)
	default:
		c.ok("Matomo version %s", opts.VersionCore)
	}
	sites, err := db.Sites(ctx)
	if err != nil {
		c.fail("%v", err)
		return
	}
	bad := 0
	for _, s := range sites {
		if s.TZErr != nil {
			bad++
			c.fail("%v", s.TZErr)
		}
	}
	if bad == 0 {
		c.ok("%d sites, every time zone understood", len(sites))
	}
	if opts.DeleteLogsEnable != nil && *opts.DeleteLogsEnable && opts.DeleteLogsOlderThan != nil {
		c.ok("log deletion is on (older than %d days): days before that are never repaired", *opts.DeleteLogsOlderThan)
	}
}

// checkConsole runs the console for real (core:version): a php_binary that
// exists but is not PHP (/bin/false) must fail here, not at the first run.
func checkConsole(ctx context.Context, c *checklist, s *setup) {
	con := s.console(nil)
	if err := con.Check(); err != nil {
		for _, line := range strings.Split(err.Error(), "\n") {
			c.fail("%s", line)
		}
		return
	}
	res := con.Run(ctx, archiver.RunOptions{Timeout: time.Minute, KillGrace: 5 * time.Second}, "core:version")
	if res.Outcome != archiver.OutcomeSuccess {
		detail := res.FirstError
		if detail == "" && res.Err != nil {
			detail = res.Err.Error()
		}
		c.fail("console %s with %s: core:version exited %d (%s): set php_binary to the PHP CLI and console_path to Matomo's console", s.cfg.ConsolePathOrDefault(), s.cfg.PHPBinary, res.ExitCode, detail)
		return
	}
	c.ok("console %s runs with %s", s.cfg.ConsolePathOrDefault(), s.cfg.PHPBinary)
}
