#!/bin/bash
# CI's package check (.ci/run): build the Debian package (scripts/build-deb.sh), lint it, install
# it on this machine, check what it installed and that it started and enabled nothing, purge it,
# and check that nothing of it is left. Needs root. About a minute.
set -eu
cd "$(dirname "$0")/.."
say() { echo "package-check: $*"; }
fail() { echo "package-check: FAIL: $*" >&2; exit 1; }

# Every path of ours outside the checkout: what the package, its maintainer scripts, systemd
# (enablement links, run-time directories) and man-db could leave behind.
traces() {
	find /etc /lib/systemd /usr/sbin /usr/share/doc /usr/share/man /var/lib /var/log /var/cache/man \
	     /run -xdev \( -name '*xen-virtiod*' -o -name 'xen-virtiodctl*' \) \
	     ! -path '/etc/apt/*xen-virtiod-e2e*' 2>/dev/null | sort
}

[ "$(id -u)" -eq 0 ] || fail "needs root (it installs and purges the package)"
if dpkg-query -W -f='${Status}' xen-virtiod 2>/dev/null | grep -q installed; then
	fail "xen-virtiod is installed already; purge it first"
fi
before=$(traces)

version=$(dpkg-parsechangelog -SVersion)
deb=$(scripts/build-deb.sh)
say "built $deb"
say "lintian (errors and warnings fail; overrides listed):"
lintian --fail-on error,warning --pedantic -I --show-overrides "${deb%.deb}.changes" 2>&1 |
	grep -v '^running with root privileges' | sed 's/^/    /' || true
lintian --fail-on error,warning "${deb%.deb}.changes" >/dev/null 2>&1 || fail "lintian"

apt-get install -y -qq --no-install-recommends "$deb" >/dev/null 2>&1 || dpkg -i "$deb" >/dev/null ||
	fail "installing $deb"
trap 'dpkg --purge xen-virtiod >/dev/null 2>&1 || true' EXIT
[ "$(xen-virtiod --version)" = "xen-virtiod $version" ] || fail "xen-virtiod --version: $(xen-virtiod --version)"
[ "$(xen-virtiodctl --version)" = "xen-virtiodctl $version" ] || fail "xen-virtiodctl --version"
say "$(xen-virtiod --version) and $(xen-virtiodctl --version) run from /usr/sbin"
for f in /usr/sbin/xen-virtiod-create /lib/systemd/system/xen-virtiod.service \
	 /lib/systemd/system/xen-virtiod@.service /usr/share/doc/xen-virtiod/examples/example.ini; do
	[ -e "$f" ] || fail "$f is missing"
done
[ -d /etc/xen-virtiod ] || fail "/etc/xen-virtiod is missing"
grep -q '^ExecStart=/usr/sbin/xen-virtiod ' /lib/systemd/system/xen-virtiod@.service ||
	fail "the units do not name /usr/sbin/xen-virtiod"
# --man=no: systemd-analyze would run man(1), which leaves cat pages behind; checked here instead.
systemd-analyze verify --man=no /lib/systemd/system/xen-virtiod.service xen-virtiod@ci-check.service ||
	fail "systemd-analyze verify"
for m in xen-virtiod.8 xen-virtiod.ini.5 xen-virtiodctl.8 xen-virtiod-create.8; do
	man -w "${m%.*}" >/dev/null 2>&1 || fail "man page $m is not installed"
done
say "systemd-analyze verify: both units OK; man pages present"
links=$(find /etc/systemd -name '*xen-virtiod*' 2>/dev/null)
[ -z "$links" ] || fail "units enabled on installation: $links"
if pgrep -f '^/usr/sbin/xen-virtiod( |$)' >/dev/null 2>&1; then
	fail "a daemon was started on installation"
fi
say "nothing enabled or started"

dpkg --purge xen-virtiod >/dev/null || fail "dpkg --purge"
trap - EXIT
after=$(traces)
# What is there now and was not before (a path that was there before and is gone now, such as
# an empty /run/xen-virtiod that the postrm removed, is not a trace).
left=$(comm -13 <(printf '%s\n' "$before") <(printf '%s\n' "$after") | sed '/^$/d')
if [ -n "$left" ]; then
	echo "left behind after purge:" >&2
	printf '%s\n' "$left" | sed 's/^/    /' >&2
	fail "purge left files"
fi
say "purged; nothing left behind"
say "OK"
