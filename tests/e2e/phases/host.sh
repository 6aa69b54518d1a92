#!/bin/bash
# Phase "host": host packages, and apt set up to fetch what the e2e build needs:
#   - the arm64 architecture (dpkg --add-architecture arm64) for `apt-get download` of arm64 .debs;
#   - deb-src for bookworm (Xen's source package);
#   - bookworm-backports, pinned low, for linux-source-6.12 only.
# All in files of our own under /etc/apt (xen-virtiod-e2e.*); apt-get update runs only when they
# change. Checks afterwards that the host's apt still resolves its own packages.
set -euo pipefail
E2E_PHASE=host
. "$(dirname "$0")/../lib.sh"

PKGS="qemu-system-arm gcc-aarch64-linux-gnu binutils-aarch64-linux-gnu device-tree-compiler cpio \
flex bison bc libssl-dev make gcc libc6-dev python3 xz-utils dpkg-dev psmisc pkg-config \
gzip coreutils libc6-dev-arm64-cross linux-libc-dev-arm64-cross file debhelper"

missing=""
for p in $PKGS; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "ok installed" || missing="$missing $p"
done

SRC=/etc/apt/sources.list.d/xen-virtiod-e2e.sources
PIN=/etc/apt/preferences.d/xen-virtiod-e2e
want_src='# xen-virtiod e2e (tests/e2e/phases/host.sh): Xen source and linux-source-6.12.
Types: deb-src
URIs: http://deb.debian.org/debian
Suites: bookworm
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: http://deb.debian.org/debian
Suites: bookworm-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg'
want_pin='# xen-virtiod e2e: nothing comes from bookworm-backports unless asked for by name.
Package: *
Pin: release n=bookworm-backports
Pin-Priority: 1'

changed=0
if ! dpkg --print-foreign-architectures | grep -qx arm64; then
	log "adding the arm64 architecture (for apt-get download of arm64 packages)"
	$SUDO dpkg --add-architecture arm64; changed=1
fi
if [ "$(cat "$SRC" 2>/dev/null)" != "$want_src" ]; then
	log "writing $SRC"; printf '%s\n' "$want_src" | $SUDO tee "$SRC" >/dev/null; changed=1
fi
if [ "$(cat "$PIN" 2>/dev/null)" != "$want_pin" ]; then
	log "writing $PIN"; printf '%s\n' "$want_pin" | $SUDO tee "$PIN" >/dev/null; changed=1
fi
# Lists missing (e.g. a fresh machine where someone else's update ran before our files existed)?
ls /var/lib/apt/lists/*bookworm-backports*binary-arm64_Packages* >/dev/null 2>&1 || changed=1
ls /var/lib/apt/lists/*_debian_dists_bookworm_main_binary-arm64_Packages* >/dev/null 2>&1 || changed=1
ls /var/lib/apt/lists/*_debian_dists_bookworm_main_source_Sources* >/dev/null 2>&1 || changed=1

if [ "$changed" = 1 ] || [ -n "$missing" ]; then
	log "apt-get update"
	apt_get update -qq >/dev/null
fi
if [ -n "$missing" ]; then
	log "installing:$missing"
	# shellcheck disable=SC2086
	apt_get install -y -qq --no-install-recommends $missing >/dev/null
fi
if [ "$changed" = 1 ]; then
	# The host's own apt must still work: no broken dependencies, nothing pulled from backports.
	$SUDO apt-get check -qq >/dev/null || die "apt-get check fails after the e2e apt setup"
	if apt-get -s -qq upgrade 2>/dev/null | grep -q bookworm-backports; then
		die "bookworm-backports would upgrade host packages: check $PIN"
	fi
	log "host apt checked: arm64 enabled, deb-src and backports added, nothing upgrades from backports"
fi
log "host ready"
