#!/bin/sh
# Check a built matomod .deb:
#
#   packaging/test/deb-test.sh <deb>
#
# 1. metadata and control files (dpkg-deb -f / -e): name,
#    architecture, version (= the one in the file name), conffiles, and
#    maintainer scripts that reload systemd but never enable or start the unit;
# 2. the exact list of files, their modes and owners (dpkg-deb -c);
# 3. installs it into a throw-away root (dpkg --root) and runs the installed
#    /usr/bin/matomod --version, which must print the package version;
# 4. systemd-analyze verify on the installed unit, with --root pointing at a
#    copy of that root (see below);
# 5. systemd-analyze security --offline=true --threshold=20 (exposure <= 2.0);
# 6. upgrades it in place and purges it, which must leave nothing behind.
#
# Needs dpkg, systemd (systemd-analyze and its unit files), procps (/bin/kill,
# the unit's ExecReload), and coreutils, grep, sed, awk, diff. Does not need
# root and does not touch the running system. Exits non-zero with a message on the first
# failure.
set -eu

fail() {
	echo "deb-test: FAIL: $*" >&2
	exit 1
}
ok() {
	echo "deb-test: ok: $*"
}

[ $# -eq 1 ] || fail "usage: deb-test.sh <deb>"
deb=$1
[ -f "$deb" ] || fail "$deb does not exist; build it with make deb"
for tool in dpkg dpkg-deb systemd-analyze; do
	command -v "$tool" >/dev/null 2>&1 || fail "$tool not found; install the Debian package providing it (dpkg, systemd)"
done
[ -x /bin/kill ] || fail "/bin/kill not found (the unit's ExecReload uses it); install procps"

tmp=$(mktemp -d "${TMPDIR:-/tmp}/matomod-deb-test.XXXXXX")
trap 'rm -rf "$tmp"' EXIT INT TERM

# --- 1. metadata ------------------------------------------------------------
field() {
	dpkg-deb -f "$deb" "$1" || fail "dpkg-deb cannot read the control fields of $deb"
}
[ "$(field Package)" = matomod ] || fail "Package is \"$(field Package)\", want matomod"
[ "$(field Architecture)" = amd64 ] || fail "Architecture is \"$(field Architecture)\", want amd64"
version=$(field Version)
[ -n "$version" ] || fail "Version field is empty"
case $(basename "$deb") in
matomod_*_amd64.deb)
	want=$(basename "$deb" _amd64.deb)
	want=${want#matomod_}
	[ "$version" = "$want" ] || fail "Version is \"$version\" but the file name says \"$want\""
	;;
*) fail "file name $(basename "$deb") is not matomod_<version>_amd64.deb" ;;
esac
for f in Maintainer Description Section Priority Homepage; do
	[ -n "$(field "$f")" ] || fail "control field $f is empty"
done
[ -z "$(field Depends)" ] || fail "Depends is \"$(field Depends)\"; the binary is static and needs none"
ok "metadata: matomod $version amd64"

mkdir "$tmp/control"
dpkg-deb -e "$deb" "$tmp/control" || fail "dpkg-deb cannot extract the control area of $deb"
[ "$(cat "$tmp/control/conffiles")" = /etc/matomod/matomod.yml ] ||
	fail "conffiles is \"$(cat "$tmp/control/conffiles")\", want exactly /etc/matomod/matomod.yml"
for s in postinst prerm postrm; do
	[ -x "$tmp/control/$s" ] || fail "maintainer script $s is missing or not executable"
	sh -n "$tmp/control/$s" || fail "maintainer script $s has a shell syntax error"
	if grep -Eq '(systemctl|deb-systemd-helper|deb-systemd-invoke)[^#]*[[:space:]](enable|start|unmask)([[:space:]]|$)' "$tmp/control/$s"; then
		fail "maintainer script $s enables or starts the unit; it must not"
	fi
done
for s in postinst postrm; do
	grep -q 'systemctl --system daemon-reload' "$tmp/control/$s" || fail "maintainer script $s does not run systemctl daemon-reload"
done
# Run postinst with a systemctl stand-in that records its arguments. It only
# calls systemctl when /run/systemd/system exists, so what is expected depends
# on the machine the test runs on.
mkdir "$tmp/fakebin"
cat >"$tmp/fakebin/systemctl" <<EOF
#!/bin/sh
echo "\$*" >>"$tmp/systemctl.log"
EOF
chmod 0755 "$tmp/fakebin/systemctl"
: >"$tmp/systemctl.log"
PATH="$tmp/fakebin:$PATH" "$tmp/control/postinst" configure || fail "postinst configure (first install) exited non-zero"
PATH="$tmp/fakebin:$PATH" "$tmp/control/postinst" configure 0.0.1 || fail "postinst configure (upgrade) exited non-zero"
if [ -d /run/systemd/system ]; then
	expect='--system daemon-reload
--system daemon-reload
try-restart matomod.service'
else
	expect=''
fi
[ "$(cat "$tmp/systemctl.log")" = "$expect" ] ||
	fail "postinst ran systemctl with: $(tr '\n' ';' <"$tmp/systemctl.log"), want: $(echo "$expect" | tr '\n' ';')"
ok "control: conffiles, maintainer scripts reload systemd and never enable or start"

# --- 2. contents -------------------------------------------------------------
# "mode owner path" of every file and directory, sorted.
dpkg-deb -c "$deb" >"$tmp/contents" || fail "dpkg-deb cannot list $deb"
awk '{ p = $6; sub(/^\.\//, "/", p); sub(/\/$/, "", p); if (p != "/") print $1, $2, p }' "$tmp/contents" | sort -k3 >"$tmp/got"
sort -k3 >"$tmp/want" <<'EOF'
drwxr-xr-x root/root /etc
drwxr-xr-x root/root /etc/matomod
-rw-r--r-- root/root /etc/matomod/matomod.yml
drwxr-xr-x root/root /usr
drwxr-xr-x root/root /usr/bin
-rwxr-xr-x root/root /usr/bin/matomod
drwxr-xr-x root/root /usr/lib
drwxr-xr-x root/root /usr/lib/systemd
drwxr-xr-x root/root /usr/lib/systemd/system
-rw-r--r-- root/root /usr/lib/systemd/system/matomod.service
drwxr-xr-x root/root /usr/share
drwxr-xr-x root/root /usr/share/doc
drwxr-xr-x root/root /usr/share/doc/matomod
-rw-r--r-- root/root /usr/share/doc/matomod/README.Debian
drwxr-xr-x root/root /usr/share/matomod
-rw-r--r-- root/root /usr/share/matomod/matomod-dashboard.json
-rw-r--r-- root/root /usr/share/matomod/matomod-rules.yml
EOF
if ! diff -u "$tmp/want" "$tmp/got" >"$tmp/contents.diff"; then
	cat "$tmp/contents.diff" >&2
	fail "package contents differ from the expected list (- expected, + found)"
fi
ok "contents: $(grep -c '^-' "$tmp/got") files with the expected modes and owners"

# --- 3. install into a throw-away root and run -------------------------------
# dpkg --root with --force-script-chrootless runs the maintainer scripts with
# DPKG_ROOT set to the throw-away root, which they prefix to every path, so
# the machine running the test is not touched (its systemd included).
# --force-not-root lets this work without root.
root=$tmp/root
mkdir -p "$root/var/lib/dpkg/info" "$root/var/lib/dpkg/updates"
: >"$root/var/lib/dpkg/status"
dpkg_root() {
	# dpkg insists on finding ldconfig and start-stop-daemon on PATH.
	PATH="$PATH:/usr/sbin:/sbin" dpkg --root="$root" --force-script-chrootless --force-not-root \
		--log=/dev/null "$@" >"$tmp/dpkg.out" 2>&1 || {
		cat "$tmp/dpkg.out" >&2
		fail "dpkg $* into $root failed"
	}
}
dpkg_root --install "$deb"
[ "$(dpkg --root="$root" -s matomod 2>/dev/null | sed -n 's/^Status: //p')" = "install ok installed" ] ||
	fail "after dpkg --install the package is not in state \"install ok installed\""
dpkg --root="$root" -s matomod | grep -q '^ /etc/matomod/matomod.yml [0-9a-f]\{32\}$' ||
	fail "dpkg did not register /etc/matomod/matomod.yml as a conffile"
out=$("$root/usr/bin/matomod" --version 2>&1) || fail "$root/usr/bin/matomod --version exited non-zero: $out"
first=$(echo "$out" | head -n 1)
case $first in
"matomod, version $version "* | "matomod, version $version") ;;
*) fail "matomod --version printed \"$first\", want \"matomod, version $version ...\" (build the binary and the package with the same VERSION)" ;;
esac
# The package declares no Depends, which is only right for a static binary.
if grep -q 'ld-linux' "$root/usr/bin/matomod"; then
	fail "/usr/bin/matomod is dynamically linked; build it with CGO_ENABLED=0 (the package declares no Depends)"
fi
for f in etc/matomod/matomod.yml usr/share/matomod/matomod-rules.yml usr/share/matomod/matomod-dashboard.json; do
	[ -s "$root/$f" ] || fail "/$f is empty"
done
ok "installed with dpkg --root; $first"

# --- 4. systemd-analyze verify -------------------------------------------------
# verify checks that ExecStart=/ExecReload= binaries exist and resolves every
# unit the service refers to (sysinit.target, network-online.target, ...).
# Instead of installing the package on the test machine, it runs with
# --root=<copy of the throw-away root> into which the test copies the
# machine's own unit files and /bin/kill: the unit is then checked exactly
# as shipped, against the package's own /usr/bin/matomod. verify reports
# problems (unknown keys, bad values) as warnings with exit status 0, so any
# output counts as a failure.
vroot=$tmp/vroot
mkdir -p "$vroot/usr/lib/systemd/system" "$vroot/bin"
for d in /lib/systemd/system /usr/lib/systemd/system; do
	[ -d "$d" ] && cp -a "$d/." "$vroot/usr/lib/systemd/system/"
done
[ -f "$vroot/usr/lib/systemd/system/sysinit.target" ] || fail "no systemd unit files found in /lib/systemd/system or /usr/lib/systemd/system; install systemd"
cp -a "$root/." "$vroot/"
cp /bin/kill "$vroot/bin/kill"
if ! verify=$(systemd-analyze verify --root="$vroot" matomod.service 2>&1) || [ -n "$verify" ]; then
	echo "$verify" >&2
	fail "systemd-analyze verify rejected matomod.service"
fi
ok "systemd-analyze verify: no findings"

# --- 5. systemd-analyze security ------------------------------------------------
unit=$root/usr/lib/systemd/system/matomod.service
if ! sec=$(systemd-analyze security --offline=true --threshold=20 "$unit" 2>&1); then
	echo "$sec" >&2
	fail "systemd-analyze security: exposure of matomod.service is above 2.0 (lines marked ✗ above)"
fi
ok "systemd-analyze security: $(echo "$sec" | grep -i 'overall exposure level' | sed 's/.*: //')"
! grep -q '^MemoryDenyWriteExecute=' "$unit" || fail "matomod.service sets MemoryDenyWriteExecute=, which breaks PHP's PCRE JIT"

# --- 6. upgrade and purge ------------------------------------------------------
# Reinstalling runs the upgrade path of the scripts; purge must leave nothing
# behind but dpkg's own database (state in /var/lib/matomod included).
mkdir -p "$root/var/lib/matomod"
: >"$root/var/lib/matomod/state.json"
dpkg_root --install "$deb"
dpkg_root --purge matomod
left=$(cd "$root" && find . -mindepth 1 ! -path './var' ! -path './var/lib' ! -path './var/lib/dpkg' ! -path './var/lib/dpkg/*')
[ -z "$left" ] || fail "files left after dpkg --purge: $(echo "$left" | tr '\n' ' ')"
ok "upgrade and purge: nothing left behind"

echo "deb-test: PASS: $deb"
