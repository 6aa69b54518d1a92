#!/bin/bash
# Phase "xen": the arm64 Xen hypervisor with CONFIG_IOREQ_SERVER=y, from the installable package
# scripts/build-xen-ioreq.sh makes out of Debian's xen source ($XEN_SRC_VERSION; Debian's own
# hypervisor lacks IOREQ_SERVER). The e2e boots the hypervisor binary that package installs
# (/boot/xen-4.17-arm64).
# Key: source version + this script + build-xen-ioreq.sh. Output: $E2E_CACHE/xen/<key>/xen (path
# on stdout), beside the package itself.
set -euo pipefail
E2E_PHASE=xen
. "$(dirname "$0")/../lib.sh"

script=$REPO/scripts/build-xen-ioreq.sh
key=$(key_of "xen=$XEN_SRC_VERSION" "$(hash_files "$0" "$script")")
out=$(cache_dir xen "$key")
if is_done "$out"; then log "cached: $out/xen (xen $XEN_SRC_VERSION, from $(basename "$out"/*.deb))"; echo "$out/xen"; exit 0; fi

rm -rf "$out"; mkdir -p "$out"
log "scripts/build-xen-ioreq.sh (Debian's source and package, CONFIG_EXPERT=y CONFIG_IOREQ_SERVER=y)"
deb=$(XEN_DL_DIR=$E2E_CACHE/downloads/xen-src-$XEN_SRC_VERSION JOBS=$E2E_JOBS bash "$script" "$out") ||
	die "scripts/build-xen-ioreq.sh failed"
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./boot/xen-4.17-arm64 > "$out/xen"
dpkg-deb --fsys-tarfile "$deb" | tar -xO ./boot/xen-4.17-arm64.config > "$out/config"
grep -qx 'CONFIG_IOREQ_SERVER=y' "$out/config" || die "the package's hypervisor lacks CONFIG_IOREQ_SERVER"
mark_done "$out"
prune_cache xen 2
log "$(basename "$deb"): /boot/xen-4.17-arm64 ($(du -h "$out/xen" | cut -f1))"
echo "$out/xen"
