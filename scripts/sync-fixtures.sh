#!/usr/bin/env bash
# Copies the fixtures captured from a real Matomo (../shared/fixtures, the
# source) into testdata/fixtures, which the tests read, so a plain clone
# tests the same as CI. TestFixturesMatchShared says when they differ.
set -euo pipefail
cd "$(dirname "$0")/.."
src=${1:-../shared/fixtures}
rm -rf testdata/fixtures
cp -r "$src" testdata/fixtures
chmod -R u+w testdata/fixtures
rm -f testdata/fixtures/.keep
echo "testdata/fixtures: copied from $src"
