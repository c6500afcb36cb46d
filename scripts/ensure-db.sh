#!/usr/bin/env bash
# Makes sure a MariaDB/MySQL answers for the tests and the demo:
# MATOMOD_TEST_DSN if set, else the local server at 127.0.0.1:3306; when
# none answers, installs mariadb-server (apt-get) if missing and starts a
# private mariadbd on a temporary datadir, socket and port 3306.
set -euo pipefail
PORT=${MATOMOD_DB_PORT:-3306}

probe() {
  if command -v mariadb >/dev/null 2>&1; then
    mariadb -h 127.0.0.1 -P "${1:-3306}" -u root --connect-timeout=2 -e 'SELECT 1' >/dev/null 2>&1
  else
    (exec 3<>/dev/tcp/127.0.0.1/"${1:-3306}") 2>/dev/null
  fi
}

if [ -n "${MATOMOD_TEST_DSN:-}" ]; then
  echo "ensure-db: using MATOMOD_TEST_DSN"
  exit 0
fi
if probe "$PORT"; then
  echo "ensure-db: MariaDB answers at 127.0.0.1:$PORT"
  exit 0
fi
if ! command -v mariadbd >/dev/null 2>&1 && [ ! -x /usr/sbin/mariadbd ]; then
  echo "ensure-db: installing mariadb-server"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq mariadb-server mariadb-client >/dev/null
  # The package may have started its own server.
  if probe "$PORT"; then
    echo "ensure-db: MariaDB answers at 127.0.0.1:$PORT"
    exit 0
  fi
fi
MARIADBD=$(command -v mariadbd || echo /usr/sbin/mariadbd)
dir=${MATOMOD_DB_DIR:-/tmp/matomod-mariadb}
mkdir -p "$dir"
if [ ! -d "$dir/data/mysql" ]; then
  echo "ensure-db: initialising a private datadir in $dir"
  mariadb-install-db --no-defaults --user=root --datadir="$dir/data" --auth-root-authentication-method=normal >/dev/null
fi
echo "ensure-db: starting a private mariadbd on 127.0.0.1:$PORT (datadir $dir/data)"
"$MARIADBD" --no-defaults --user=root --datadir="$dir/data" --socket="$dir/mysqld.sock" --port="$PORT" \
  --bind-address=127.0.0.1 --pid-file="$dir/mysqld.pid" \
  --innodb-buffer-pool-size=256M --log-error="$dir/error.log" >/dev/null 2>&1 &
for _ in $(seq 1 60); do
  if mariadb -S "$dir/mysqld.sock" -u root -e 'SELECT 1' >/dev/null 2>&1; then
    # Make sure root may log in over TCP with an empty password, as the
    # tests' default DSN does.
    mariadb -S "$dir/mysqld.sock" -u root -e "CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY ''; GRANT ALL ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION; FLUSH PRIVILEGES;" || true
    if probe "$PORT"; then
      echo "ensure-db: ready"
      exit 0
    fi
  fi
  sleep 1
done
echo "ensure-db: mariadbd did not start; see $dir/error.log" >&2
tail -20 "$dir/error.log" >&2 || true
exit 1
