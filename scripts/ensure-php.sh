#!/usr/bin/env bash
# Makes sure PHP can run the real Matomo release for the end-to-end tests:
# installs php8.2-cli and the extensions Matomo needs (Debian packages) when
# any is missing. MATOMOD_PHP names another PHP binary and skips this.
set -euo pipefail
if [ -n "${MATOMOD_PHP:-}" ]; then
  echo "ensure-php: using MATOMOD_PHP=$MATOMOD_PHP"
  exit 0
fi
need=(pdo_mysql mbstring xml curl gd zip intl)
missing() {
  command -v php >/dev/null 2>&1 || return 0
  local mods
  mods=$(php -m 2>/dev/null | tr 'A-Z' 'a-z')
  for m in "${need[@]}"; do
    grep -qx "$m" <<<"$mods" || return 0
  done
  return 1
}
if ! missing; then
  echo "ensure-php: $(php -r 'echo PHP_VERSION;') with ${need[*]}"
  exit 0
fi
echo "ensure-php: installing PHP for the real-Matomo tests"
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  php8.2-cli php8.2-mysql php8.2-mbstring php8.2-xml php8.2-curl php8.2-gd php8.2-zip php8.2-intl >/dev/null
if missing; then
  echo "ensure-php: PHP still lacks one of: ${need[*]}" >&2
  exit 1
fi
echo "ensure-php: $(php -r 'echo PHP_VERSION;') ready"
