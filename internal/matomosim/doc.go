// Command matomosim stands in for PHP running Matomo 5's console in tests and
// the demo: it does to Matomo's tables what `console core:archive` and
// `console core:invalidate-report-data` do, with the output, colours and exit
// codes captured from a real Matomo 5.0.2 (../shared/fixtures). It is test
// code and must never be imported by cmd/matomod.
//
// It is called exactly like PHP would be:
//
//	matomosim [php options, e.g. -d memory_limit=1G] <matomo>/console <command> [options]
//
// PHP's own options are skipped; the first other argument is the console
// path, whose directory is the Matomo root. The database comes from
// <matomo>/config/config.ini.php, as for Matomo.
//
// Commands: core:archive, core:invalidate-report-data, core:version,
// --version/-V, list (header only), help (option names only). Unambiguous
// abbreviations work (core:archiv); Symfony's errors for unknown commands,
// namespaces and options are reproduced.
//
// What core:archive simulates: the INIT/NOTES/START/SUMMARY/SCHEDULED TASKS
// blocks; the shared site queue (option SharedSiteIdsToArchive_AllWebsites)
// that lets a second run join the first; --concurrent-archivers, counted like
// Matomo counts `ps` but only among processes running this Matomo directory's
// console (so parallel tests do not see each other); per site, invalidating
// the tracker's remembered dates and today/yesterday when they had visits and
// no usable archive; then the archive_invalidations queue in Matomo's order
// (date1 descending, period ascending) in batches of three whose periods do
// not overlap. Each archived period gets the plain "done" archive and the two
// VisitFrequency segment archives; weeks, months and years are summed from
// their subperiods, missing ones built silently, done = 1 ones reused even
// when stale. Periods without raw visits, in the future or before the site's
// creation get no archive. Dates before yesterday that nobody queued are not
// archived: that gap is what matomod exists for.
//
// Not simulated: stored segments (a --segment invalidation is archived from
// all visits and logged with its hash, not its definition), range periods,
// --force-periods/--force-date-range filtering, scheduled tasks, the help
// texts, and a pending core:update.
//
// Environment knobs (also accepted as PHP ini options before the console
// path, `-d MATOMOSIM_HANG=30s`, which is how matomod's php_cli_options
// reach them through its minimal child environment):
//
//	MATOMOSIM_NOW=2026-11-27T12:09:33Z  the clock at start (it then runs on
//	                                    in real time); default: the real clock
//	MATOMOSIM_EXIT=N                    exit with N once done, whatever happened
//	MATOMOSIM_HANG=30s                  sleep before finishing (core:archive:
//	                                    before "Done archiving!", after all
//	                                    sites; also core:invalidate-report-data
//	                                    and the maintenance-mode exit); a
//	                                    climulti:request child sleeps this long
//	MATOMOSIM_IGNORE_TERM=1             ignore SIGTERM (children inherit it)
//	MATOMOSIM_SPAWN_CHILD=<pidfile>     core:archive starts a sleeping
//	                                    `climulti:request` child of itself in
//	                                    its process group, writes the child's
//	                                    pid to the file and prints one extra
//	                                    line saying so; a run that finishes
//	                                    normally kills the child
//	MATOMOSIM_GARBAGE=1                 core:archive prints invalid UTF-8 and
//	                                    binary lines (stdout and stderr)
//	MATOMOSIM_HUGE_LINE=<bytes>         core:archive prints one line of that
//	                                    many bytes ("xxx…")
//	MATOMOSIM_RUNLOG=1                  core:archive records host, pid, start
//	                                    and end in table matomosim_runs
//	                                    (created on demand, no prefix) for
//	                                    no-overlap tests; ended stays NULL
//	                                    when the run is killed
//	MATOMOSIM_SLEEP_PER_ARCHIVE=50ms    sleep after each archived period
//
// A bad knob value exits 2 with a message on stderr.
package main
