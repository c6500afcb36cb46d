#!/usr/bin/env bash
# make demo: a throw-away Matomo-shaped database with every kind of gap,
# then matomod against it: check, gaps, repair --dry-run, the daemon for a
# minute (it archives, finds and repairs the gaps), gaps again.
set -euo pipefail
cd "$(dirname "$0")/.."
DEMO=${DEMO_DIR:-/tmp/matomod-demo}
PORT=${DEMO_PORT:-9819}
go build -o bin/matomo-console-sim ./internal/matomosim
go run ./internal/demoseed --dir "$DEMO" --sim "$PWD/bin/matomo-console-sim"
M="bin/matomod --config.file=$DEMO/matomod.yml"
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; }

step matomod check;                 $M check
step matomod gaps;                  $M gaps || true
step matomod repair --dry-run;      $M repair --dry-run || true
step "matomod run  (60 s; logs below, /metrics on 127.0.0.1:$PORT)"
$M run --web.listen-address=127.0.0.1:$PORT --log.format=logfmt 2>"$DEMO/daemon.log" &
pid=$!
trap 'kill $pid 2>/dev/null || true' EXIT
sleep "${DEMO_SECONDS:-60}"
step "curl -s 127.0.0.1:$PORT/metrics | grep -E '^matomo(d)?_(archive_runs_total|archive_gaps_all_sites|repairs_total|leader|db_up)'"
curl -s "127.0.0.1:$PORT/metrics" | grep -E '^matomo(d)?_(archive_runs_total|archive_gaps_all_sites|repairs_total|leader|db_up)' || true
kill -TERM $pid; wait $pid || true
trap - EXIT
grep -E 'event=(ready|leader_acquired|run_started|run_finished|gap_found|gap_scan_finished|repair_started|repair_finished|repair_failed|stopped)' "$DEMO/daemon.log" | cut -c1-220 | head -40
step matomod gaps;                  $M gaps || true
echo
echo "Demo database: matomod_demo (drop it with: mariadb -h127.0.0.1 -uroot -e 'DROP DATABASE matomod_demo'). Full daemon log: $DEMO/daemon.log"
