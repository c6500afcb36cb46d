// Command matomod schedules Matomo's core:archive, finds days whose visits
// were never archived, repairs them through Matomo's console, and exports
// Prometheus metrics; it runs as a systemd Type=notify service.
package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/alecthomas/kingpin/v2"
	"github.com/go-sql-driver/mysql"
	"github.com/prometheus/common/version"
	"github.com/prometheus/exporter-toolkit/web"
	"github.com/prometheus/exporter-toolkit/web/kingpinflag"

	"github.com/matomod/matomod/internal/config"
)

func main() { os.Exit(run(os.Args[1:], os.Stdout, os.Stderr)) }

// globals are the flags every command shares.
type globals struct {
	configFile  string
	matomoDir   string
	logLevel    string
	logFormat   string
	configCheck bool
	web         *web.FlagConfig
}

// Exit statuses (documented in README "Exit status").
const (
	exitOK      = 0
	exitFound   = 1 // gaps found / days left open / run failed
	exitError   = 2 // bad input, config or DB error
	exitSkipped = 75
)

func newApp(g *globals) (*kingpin.Application, map[string]func(ctx context.Context, stdout, stderr io.Writer, log *slog.Logger) int) {
	app := kingpin.New("matomod", "Schedules Matomo's core:archive, finds and repairs days whose visits were never archived, and exports Prometheus metrics.")
	app.Version(version.Print("matomod"))
	app.HelpFlag.Short('h')
	app.Flag("config.file", "matomod's own settings (YAML). Optional at the default path.").Default(config.DefaultPath).StringVar(&g.configFile)
	app.Flag("matomo.dir", "Matomo installation directory (reads config/config.ini.php). Overrides matomo_dir.").PlaceHolder("DIR").StringVar(&g.matomoDir)
	app.Flag("log.level", "Only log messages with the given severity or above: debug, info, warn, error.").Default("info").StringVar(&g.logLevel)
	app.Flag("log.format", "Log format: logfmt, json or journal (native journald fields; chosen automatically under systemd).").Default("auto").StringVar(&g.logFormat)
	app.Flag("config.check", "Check the configuration, the database and the console (as `matomod check`) and exit.").BoolVar(&g.configCheck)
	g.web = kingpinflag.AddFlags(app, "127.0.0.1:9809")

	cmds := map[string]func(context.Context, io.Writer, io.Writer, *slog.Logger) int{}
	runCmd := app.Command("run", "Run the daemon: schedule core:archive, scan for gaps, repair them, serve /metrics.").Default()
	cmds[runCmd.FullCommand()] = func(ctx context.Context, o, e io.Writer, l *slog.Logger) int { return runDaemon(ctx, g, l) }

	gf := &gapFlags{}
	gapsCmd := app.Command("gaps", "List site-days with raw visits but no good archive. Exit 0: none, 1: gaps found, 2: error.")
	gf.register(gapsCmd)
	gapsCmd.Flag("format", "Output format: table or json.").Default("table").EnumVar(&gf.format, "table", "json")
	cmds[gapsCmd.FullCommand()] = func(ctx context.Context, o, e io.Writer, l *slog.Logger) int { return cmdGaps(ctx, g, gf, o, e, l) }

	rf := &repairFlags{}
	repairCmd := app.Command("repair", "Invalidate and re-archive gap days through Matomo's console, then check them. Exit 0 when nothing is left open.")
	rf.register(repairCmd)
	cmds[repairCmd.FullCommand()] = func(ctx context.Context, o, e io.Writer, l *slog.Logger) int { return cmdRepair(ctx, g, rf, o, e, l) }

	archiveCmd := app.Command("archive", "Run core:archive once in the foreground and exit with its result (0 ok, 1 failed, 75 skipped or another matomod run holds the archive lock).")
	var lockWait time.Duration
	archiveCmd.Flag("lock.wait", "How long to wait for a core:archive that matomod started (here or on another host) to end before giving up.").Default("0s").DurationVar(&lockWait)
	cmds[archiveCmd.FullCommand()] = func(ctx context.Context, o, e io.Writer, l *slog.Logger) int {
		return cmdArchive(ctx, g, lockWait, o, l)
	}

	checkCmd := app.Command("check", "Check config files, database, Matomo tables and version, console and PHP, tmp/ and maintenance mode.")
	cmds[checkCmd.FullCommand()] = func(ctx context.Context, o, e io.Writer, l *slog.Logger) int { return cmdCheck(ctx, g, o) }
	return app, cmds
}

func run(args []string, stdout, stderr io.Writer) int {
	g := &globals{}
	app, cmds := newApp(g)
	app.UsageWriter(stdout)
	app.ErrorWriter(stderr)
	app.Terminate(func(code int) { panic(exitCode(code)) })
	var cmd string
	var err error
	code := func() (code int) {
		defer func() {
			if r := recover(); r != nil {
				c, ok := r.(exitCode)
				if !ok {
					panic(r)
				}
				code = int(c)
			}
		}()
		cmd, err = app.Parse(args)
		return -1
	}()
	if code >= 0 { // --help or --version
		return code
	}
	if err != nil {
		fmt.Fprintf(stderr, "matomod: %v (see matomod --help)\n", err)
		return exitError
	}
	logger, err := newLogger(g.logLevel, g.logFormat, stderr)
	if err != nil {
		fmt.Fprintf(stderr, "matomod: %v\n", err)
		return exitError
	}
	// The driver's logger is process-wide; this is the one place it is set.
	mysql.SetLogger(mysqlLogger{logger})
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, os.Interrupt)
	defer stop()
	if g.configCheck {
		return cmdCheck(ctx, g, stdout)
	}
	return cmds[cmd](ctx, stdout, stderr, logger)
}

type exitCode int
