#!/bin/bash
# Phase "daemon": cross-build xen-virtiod for arm64 with the project Makefile against a sysroot of
# Debian arm64 -dev packages (dpkg -x), and stage it with the runtime libraries it needs for the
# dom0 initramfs. Prints the staging directory, or nothing (and exits 0) when the daemon cannot be
# built yet: the scenarios that need it then report SKIP.
#   make CC=aarch64-linux-gnu-gcc BUILD=build/e2e/arm64 build/e2e/arm64/xen-virtiod
# with PKG_CONFIG_LIBDIR/PKG_CONFIG_SYSROOT_DIR pointing pkg-config into the sysroot, and
# CPPFLAGS/LDFLAGS (from the environment, so the Makefile's own += still apply) adding the
# sysroot's headers (after the toolchain's) and libraries (-L, -Wl,-rpath-link).
# The sysroot is cached by the resolved package versions.
set -euo pipefail
E2E_PHASE=daemon
. "$(dirname "$0")/../lib.sh"

DEV="libxen-dev libev-dev libinih-dev libinireader0 liburing-dev libsystemd-dev libseccomp-dev libseccomp2
     libxenmisc4.17 libxencall1 libxendevicemodel1 libxenevtchn1 libxenforeignmemory1 libxengnttab1
     libxenstore4 libxentoolcore1 libxentoollog1 libxenhypfs1 libev4 libinih1 liburing2 libsystemd0"
# shellcheck disable=SC2086
pkgs=$(resolve_arm64 $DEV)
key=$(key_of "$pkgs" "$(hash_files "$0")")
sysroot=$(cache_dir sysroot-arm64 "$key")
if ! is_done "$sysroot"; then
	# shellcheck disable=SC2086
	mapfile -t debs < <(fetch_arm64 $pkgs)
	rm -rf "$sysroot"; mkdir -p "$sysroot"
	log "extracting ${#debs[@]} packages into the sysroot"
	for d in "${debs[@]}"; do dpkg-deb -x "$d" "$sysroot"; done
	# Absolute symlinks (libfoo.so -> /lib/...) must point inside the sysroot.
	find "$sysroot" -type l -lname '/*' | while read -r l; do
		ln -sfn "$sysroot$(readlink "$l")" "$l"
	done
	mark_done "$sysroot"
	prune_cache sysroot-arm64 2
else
	log "sysroot cached: $sysroot"
fi

if [ ! -f "$REPO/daemon/main.c" ]; then
	log "SKIP: daemon/main.c does not exist yet; scenarios needing the daemon will be skipped"
	exit 0
fi
B=$E2E_BUILD/arm64   # build/e2e/arm64 by default
L="$sysroot/usr/lib/aarch64-linux-gnu"
log "cross-building $B/xen-virtiod"
if ! (cd "$REPO" &&
	PKG_CONFIG_LIBDIR="$L/pkgconfig:$sysroot/usr/share/pkgconfig" PKG_CONFIG_SYSROOT_DIR="$sysroot" \
	PKG_CONFIG_PATH="" \
	CPPFLAGS="-idirafter $sysroot/usr/include" \
	LDFLAGS="-L$L -L$sysroot/lib/aarch64-linux-gnu -Wl,-rpath-link=$L -Wl,-rpath-link=$sysroot/lib/aarch64-linux-gnu" \
	make --no-print-directory -j"$E2E_JOBS" CC=${CROSS}gcc BUILD=$B "$B/xen-virtiod") > "$E2E_BUILD/daemon-build.log" 2>&1
then
	tail -n 15 "$E2E_BUILD/daemon-build.log" | sed 's/^/    /' >&2
	log "SKIP: $B/xen-virtiod cannot be built yet (log: $E2E_BUILD/daemon-build.log); scenarios needing the daemon will be skipped"
	exit 0
fi
file -b "$B/xen-virtiod" | grep -q aarch64 || die "$B/xen-virtiod is not an arm64 binary"

stage=$E2E_BUILD/daemon-stage
rm -rf "$stage"; mkdir -p "$stage/usr/sbin"
install -m 0755 "$B/xen-virtiod" "$stage/usr/sbin/xen-virtiod"
[ -f "$REPO/scripts/xen-virtiod-create" ] && install -m 0755 "$REPO/scripts/xen-virtiod-create" "$stage/usr/sbin/"
# Runtime libraries: whatever the binary needs (most are in the dom0 rootfs already; duplicates
# are the same files).
copy_elf_deps "$stage" "$sysroot"
log "staged: $(cd "$stage" && find . -type f | sed 's|^\./|/|' | tr '\n' ' ')"
echo "$stage"
