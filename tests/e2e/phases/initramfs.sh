#!/bin/bash
# Phase "initramfs": the guest's and dom0's initramfs, each a concatenation of cpio archives
# (the kernel unpacks them in order, later files win):
#   guest.cpio.gz     = rootfs-guest + overlay (guest/init, scenarios/*.guest.sh)
#   dom0-initrd.cpio  = payload (uncompressed: /e2e/Image, /e2e/Image-grant when the kernel phase
#                       built it beside Image, /e2e/guest.cpio.gz, already compact)
#                     + rootfs-dom0 + overlay (dom0/init, dom0/*.sh, scenarios, guests/*.cfg,
#                       dts/*.dtb compiled here, the daemon if phase daemon built it)
#   backend.cpio.gz   = rootfs-dom0 + the daemon + overlay (backend/init, backend/*.sh, dom0's
#                       lib.sh): the back-end (driver) domain of scenario "driverdomain", a domU
#                       with dom0's userland; in dom0's payload as /e2e/backend.cpio.gz (only when
#                       phase daemon built the package)
# Usage: initramfs.sh IMAGE ROOTFS_DOM0 ROOTFS_GUEST [DAEMON_DIR]
# Key: sha256 of all of these. Output: $E2E_CACHE/initramfs/<key>/dom0-initrd.cpio (path on stdout).
set -euo pipefail
shopt -s nullglob
E2E_PHASE=initramfs
. "$(dirname "$0")/../lib.sh"
image=$1 rootfs_dom0=$2 rootfs_guest=$3 daemon_dir=${4:-}

image_grant=$(dirname "$image")/Image-grant
[ -f "$image_grant" ] || image_grant=""
inputs=("$image" ${image_grant:+"$image_grant"} "$rootfs_dom0" "$rootfs_guest" "$0" "$E2E_DIR/guest/init" "$E2E_DIR"/dom0/*
	"$E2E_DIR"/scenarios/* "$E2E_DIR"/guests/* "$E2E_DIR"/dts/* "$E2E_DIR"/backend/*)
daemon_files=()
if [ -n "$daemon_dir" ] && [ -d "$daemon_dir" ]; then
	mapfile -t daemon_files < <(find "$daemon_dir" -type f | sort)
fi
key=$(hash_files "${inputs[@]}" ${daemon_files[@]+"${daemon_files[@]}"})
out=$(cache_dir initramfs "$key")
if is_done "$out"; then log "cached: $out/dom0-initrd.cpio"; echo "$out/dom0-initrd.cpio"; exit 0; fi
rm -rf "$out"; mkdir -p "$out"

pack() { (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet); }

# Guest overlay.
g=$out/guest-overlay; mkdir -p "$g/e2e"
install -m 0755 "$E2E_DIR/guest/init" "$g/init"
for f in "$E2E_DIR"/scenarios/*.guest.sh; do install -m 0644 "$f" "$g/e2e/"; done
{ cat "$rootfs_guest"; pack "$g" | gzip -6; } > "$out/guest.cpio.gz"

# dom0 payload: big, already compact files, not compressed again.
p=$out/payload; mkdir -p "$p/e2e"
cp "$image" "$p/e2e/Image"
[ -z "$image_grant" ] || cp "$image_grant" "$p/e2e/Image-grant"
mv "$out/guest.cpio.gz" "$p/e2e/guest.cpio.gz"
if [ ${#daemon_files[@]} -gt 0 ]; then
	b=$out/backend-overlay; mkdir -p "$b/e2e/backend"
	cp -a "$daemon_dir/." "$b/"
	install -m 0755 "$E2E_DIR/backend/init" "$b/init"
	install -m 0644 "$E2E_DIR/dom0/lib.sh" "$b/e2e/lib.sh"
	for f in "$E2E_DIR"/backend/*.sh; do install -m 0644 "$f" "$b/e2e/backend/"; done
	{ cat "$rootfs_dom0"; pack "$b" | gzip -6; } > "$p/e2e/backend.cpio.gz"
	rm -rf "$b"
fi
# dom0 overlay.
o=$out/dom0-overlay; mkdir -p "$o/e2e/scenarios" "$o/e2e/guests" "$o/e2e/dts"
install -m 0755 "$E2E_DIR/dom0/init" "$o/init"
install -m 0755 "$E2E_DIR/dom0/run-scenarios.sh" "$o/e2e/run-scenarios.sh"
install -m 0644 "$E2E_DIR/dom0/lib.sh" "$o/e2e/lib.sh"
for f in "$E2E_DIR"/scenarios/*.sh; do
	case $f in *.guest.sh) ;; *) install -m 0644 "$f" "$o/e2e/scenarios/";; esac
done
cp "$E2E_DIR"/guests/*.cfg "$o/e2e/guests/"
for f in "$E2E_DIR"/dts/*.dts; do
	[ -e "$f" ] || continue
	dtc -q -I dts -O dtb -o "$o/e2e/dts/$(basename "$f" .dts).dtb" "$f" || die "dtc failed on $f"
	# A placeholder cell 0xdd0bdd0b (dts/driverdomain-net.dts): its byte offset, for the scenario
	# that writes the real value (a domid known only in dom0) over it.
	off=$(LC_ALL=C grep -obUaP '\xdd\x0b\xdd\x0b' "$o/e2e/dts/$(basename "$f" .dts).dtb" | cut -d: -f1 | head -1 || true)
	[ -z "$off" ] || echo "$off" > "$o/e2e/dts/$(basename "$f" .dts).offset"
done
if [ ${#daemon_files[@]} -gt 0 ]; then
	cp -a "$daemon_dir/." "$o/"
	log "daemon included: $(cd "$daemon_dir" && find . -type f | sed 's|^\./|/|' | tr '\n' ' ')"
fi
{ pack "$p"; cat "$rootfs_dom0"; pack "$o" | gzip -6; } > "$out/dom0-initrd.cpio"
rm -rf "$g" "$p" "$o"
mark_done "$out"
prune_cache initramfs 3
log "dom0 initramfs $out/dom0-initrd.cpio ($(du -h "$out/dom0-initrd.cpio" | cut -f1))"
echo "$out/dom0-initrd.cpio"
