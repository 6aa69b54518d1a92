#!/bin/bash
# Phase "daemon": build the arm64 Debian package of xen-virtiod (scripts/build-deb.sh arm64, that
# is dpkg-buildpackage -aarm64 with the aarch64 cross compiler) against a sysroot of Debian arm64
# packages, and stage for the dom0 initramfs the package itself (/e2e/pkg/*.deb, installed by
# dom0's /init with dpkg) and the runtime libraries its programs need. Prints the staging
# directory, or nothing (and exits 0) when the package cannot be built yet: the scenarios that
# need the daemon then report SKIP.
# The sysroot: the arm64 -dev packages and their libraries unpacked (dpkg-deb -x), with every
# package's shlibs and symbols files gathered in its DEBIAN/ for dpkg-shlibdeps (libxen-dev
# cannot be installed for arm64 beside the native one: it is not Multi-Arch: same). Cached by
# the resolved package versions.
set -euo pipefail
E2E_PHASE=daemon
. "$(dirname "$0")/../lib.sh"

DEV="libxen-dev libev-dev libinih-dev libinireader0 liburing-dev libsystemd-dev libseccomp-dev libseccomp2 libgpiod-dev libgpiod2
     libnbd-dev libnbd0
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
	mkdir -p "$sysroot/DEBIAN"
	ctl=$(mktemp -d)
	for d in "${debs[@]}"; do
		dpkg-deb -x "$d" "$sysroot"
		rm -rf "$ctl"/*; dpkg-deb -e "$d" "$ctl"
		for f in shlibs symbols; do [ ! -f "$ctl/$f" ] || cat "$ctl/$f" >> "$sysroot/DEBIAN/$f"; done
	done
	rm -rf "$ctl"
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
log "building the arm64 package (scripts/build-deb.sh arm64)"
if ! deb=$(cd "$REPO" && E2E_JOBS=$E2E_JOBS DEB_BUILD_OPTIONS="parallel=$E2E_JOBS" \
	sh scripts/build-deb.sh arm64 "$sysroot" 2> "$E2E_BUILD/daemon-build.log"); then
	tail -n 15 "$E2E_BUILD/daemon-build.log" | sed 's/^/    /' >&2
	# CI (.ci/run) sets E2E_REQUIRE_DAEMON=1: a package that stopped building is a failure
	# there, not a run of skipped scenarios.
	[ "${E2E_REQUIRE_DAEMON:-0}" = 1 ] && die "the arm64 package does not build (log: $E2E_BUILD/daemon-build.log, $REPO/build/deb/arm64/build.log)"
	log "SKIP: the arm64 package cannot be built yet (log: $E2E_BUILD/daemon-build.log, $REPO/build/deb/arm64/build.log); scenarios needing the daemon will be skipped"
	exit 0
fi
[ "$(dpkg-deb -f "$deb" Architecture)" = arm64 ] || die "$deb is not an arm64 package"
scratch=$E2E_BUILD/daemon-pkg
rm -rf "$scratch"; mkdir -p "$scratch"
dpkg-deb -x "$deb" "$scratch"
file -b "$scratch/usr/sbin/xen-virtiod" | grep -q aarch64 || die "the package's xen-virtiod is not an arm64 binary"

stage=$E2E_BUILD/daemon-stage
rm -rf "$stage"; mkdir -p "$stage/e2e/pkg"
cp "$deb" "$stage/e2e/pkg/"
# Runtime libraries: whatever the package's programs need (most are in the dom0 rootfs already;
# duplicates are the same files). Only the libraries are staged: the package installs the rest.
copy_elf_deps "$scratch" "$sysroot"
for d in lib/aarch64-linux-gnu usr/lib/aarch64-linux-gnu; do
	[ ! -d "$scratch/$d" ] || { mkdir -p "$stage/$d"; cp -a "$scratch/$d/." "$stage/$d/"; }
done
log "staged: /e2e/pkg/$(basename "$deb") ($(dpkg-deb -f "$deb" Depends | tr -d '\n' | cut -c1-120)...) and $(find "$stage" -name '*.so*' | wc -l) libraries"
echo "$stage"
