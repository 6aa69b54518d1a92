#!/bin/bash
# Phase "xen": the arm64 Xen hypervisor with CONFIG_IOREQ_SERVER=y, built from Debian's xen source
# package ($XEN_SRC_VERSION; Debian's binary hypervisor lacks IOREQ_SERVER).
# Key: source version + this script. Output: $E2E_CACHE/xen/<key>/xen (path printed on stdout).
set -euo pipefail
E2E_PHASE=xen
. "$(dirname "$0")/../lib.sh"

key=$(key_of "xen=$XEN_SRC_VERSION" "$(hash_files "$0")")
out=$(cache_dir xen "$key")
if is_done "$out"; then log "cached: $out/xen (xen $XEN_SRC_VERSION)"; echo "$out/xen"; exit 0; fi

dl=$E2E_CACHE/downloads/xen-src-$XEN_SRC_VERSION
if ! is_done "$dl"; then
	log "downloading Debian source xen=$XEN_SRC_VERSION"
	rm -rf "$dl"; mkdir -p "$dl"
	(cd "$dl" && apt_get -o APT::Sandbox::User=root source --download-only -qq "xen=$XEN_SRC_VERSION" >/dev/null) ||
		die "apt-get source xen=$XEN_SRC_VERSION failed (is deb-src set up? set XEN_SRC_VERSION to one 'apt-cache showsrc xen' lists)"
	mark_done "$dl"
fi

rm -rf "$out"; mkdir -p "$out"
log "unpacking"
dpkg-source --no-check -x "$dl"/xen_*.dsc "$out/src" >/dev/null
M="make -s -C $out/src/xen XEN_TARGET_ARCH=arm64 CROSS_COMPILE=$CROSS"
log "configuring: defconfig + CONFIG_EXPERT=y CONFIG_IOREQ_SERVER=y"
$M defconfig >/dev/null
printf 'CONFIG_EXPERT=y\nCONFIG_IOREQ_SERVER=y\n' >> "$out/src/xen/.config"
$M olddefconfig >/dev/null
grep -qx 'CONFIG_IOREQ_SERVER=y' "$out/src/xen/.config" || die "CONFIG_IOREQ_SERVER did not stick"
log "building with $E2E_JOBS jobs"
$M -j"$E2E_JOBS" > "$out/build.log" 2>&1 || { tail -30 "$out/build.log" >&2; die "xen build failed (log: $out/build.log)"; }
cp "$out/src/xen/xen" "$out/xen"
cp "$out/src/xen/.config" "$out/config"
rm -rf "$out/src"
mark_done "$out"
prune_cache xen 2
log "built $out/xen ($(du -h "$out/xen" | cut -f1))"
echo "$out/xen"
