#!/bin/sh
# Build the matomod .deb with nfpm.
#
#   packaging/deb/build.sh <binary> <version> <outdir>
#
# writes <outdir>/matomod_<version>_amd64.deb. <version> is used verbatim as
# the Debian version (it must start with a digit: pass 1.2.0, not v1.2.0) and
# should be the same string the binary was built with
# (-X github.com/prometheus/common/version.Version=...), which
# packaging/test/deb-test.sh checks.
#
# nfpm is run with `go run` at a pinned version, so it stays out of go.mod;
# set NFPM to another command (e.g. an installed nfpm) to override.
# SOURCE_DATE_EPOCH, when set, fixes the file times inside the package; it
# defaults to the time of the last git commit.
set -eu

NFPM_VERSION=v2.45.2

die() {
	echo "build.sh: $*" >&2
	exit 1
}

[ $# -eq 3 ] || die "usage: build.sh <binary> <version> <outdir>"
binary=$1
version=$2
outdir=$3

{ [ -f "$binary" ] && [ -x "$binary" ]; } || die "binary $binary is not an executable file; build it first (make build)"
case $version in
[0-9]*) ;;
*) die "version \"$version\" must start with a digit (Debian versions do); drop a leading v" ;;
esac
case $version in
*[!0-9A-Za-z.+~-]*) die "version \"$version\" has characters a Debian version cannot hold; use only 0-9 A-Z a-z . + ~ -" ;;
esac

# The repository root is two levels above this script.
root=$(cd "$(dirname "$0")/../.." && pwd)
for f in packaging/nfpm.yaml packaging/matomod.yml packaging/systemd/matomod.service \
	packaging/prometheus/matomod-rules.yml packaging/grafana/matomod-dashboard.json \
	packaging/deb/README.Debian packaging/deb/postinst packaging/deb/prerm packaging/deb/postrm; do
	[ -f "$root/$f" ] || die "$root/$f is missing; the package cannot be built without it"
done

mkdir -p "$outdir" || die "cannot create output directory $outdir"
# Absolute paths: nfpm runs from the repository root.
binary_abs=$(cd "$(dirname "$binary")" && pwd)/$(basename "$binary")
outdir_abs=$(cd "$outdir" && pwd)
target=$outdir_abs/matomod_${version}_amd64.deb

if [ -z "${SOURCE_DATE_EPOCH:-}" ]; then
	SOURCE_DATE_EPOCH=$(git -C "$root" log -1 --format=%ct 2>/dev/null || true)
	[ -n "$SOURCE_DATE_EPOCH" ] || unset SOURCE_DATE_EPOCH
fi
[ -z "${SOURCE_DATE_EPOCH:-}" ] || export SOURCE_DATE_EPOCH

rm -f "$target"
cd "$root"
MATOMOD_BINARY=$binary_abs MATOMOD_VERSION=$version \
	${NFPM:-go run github.com/goreleaser/nfpm/v2/cmd/nfpm@$NFPM_VERSION} \
	package --config packaging/nfpm.yaml --packager deb --target "$target" ||
	die "nfpm failed to build $target"
[ -f "$target" ] || die "nfpm did not write $target"
echo "$target"
