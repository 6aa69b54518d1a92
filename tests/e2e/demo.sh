#!/bin/bash
# make demo: real Xen 4.17 on emulated arm64 (the `make e2e` environment, same phase scripts and
# caches), booting ONE guest whose virtio disk, network, console, i2c, rng, gpio and vsock are all
# served by one xen-virtiod in dom0. The guest uses each device on the console, with the daemon's log
# beside it, and then the terminal is the guest's shell (via dom0's `xl console demo`):
#   Ctrl-] leaves the guest's console (to a dom0 shell), Ctrl-a x quits QEMU.
#
# Environment:
#   DEMO_BATCH=1    run the showcase without a terminal, print the summary, exit 0 only when every
#                   device showed its evidence (console in build/demo/console.log)
#   DEMO_TIMEOUT    hard limit on QEMU in batch mode, seconds (default 900)
#   E2E_CACHE, E2E_JOBS, ...: as for make e2e (tests/e2e/run.sh)
# Files: tests/e2e/demo/ (dom0's init, the guest's script, xl config, INI, device tree).
set -euo pipefail
export E2E_BUILD=${E2E_BUILD:-$(cd "$(dirname "$0")/../.." && pwd)/build/demo}
E2E_PHASE=demo
. "$(dirname "$0")/lib.sh"
cd "$REPO"
P=$E2E_DIR/phases
D=$E2E_DIR/demo
batch=${DEMO_BATCH:-0}

# The build phases share the cache (and build/e2e/arm64) with make e2e: one at a time. The lock
# is released before QEMU starts, so a demo left open does not hold up make e2e.
exec 9>"$E2E_CACHE/.lock"
if ! flock -n 9; then
	log "another e2e run or demo holds $E2E_CACHE/.lock; waiting"
	flock 9
fi
t_start=$(date +%s)
log "building or reusing the e2e environment (a cold run downloads and builds Xen and a kernel: 10 minutes or more)"
bash "$P/host.sh"
XEN=$(bash "$P/xen.sh")
export E2E_IMAGE; E2E_IMAGE=$(bash "$P/kernel.sh")
R0=$(bash "$P/rootfs.sh" dom0)
RG=$(bash "$P/rootfs.sh" guest)
DAEMON_DIR=$(bash "$P/daemon.sh")
[ -n "$DAEMON_DIR" ] || die "xen-virtiod does not cross-build for arm64 (see $E2E_BUILD/daemon-build.log)"
INITRD_E2E=$(bash "$P/initramfs.sh" "$E2E_IMAGE" "$R0" "$RG" "$DAEMON_DIR")

# socat, the client of the console and gpio sockets, is in the e2e dom0 rootfs.
# The demo's overlay on top of the e2e dom0 initramfs (cpio archives concatenate; later files
# win): /demo/init (dom0's init for the demo), the guest's overlay (demo.guest.sh as
# /e2e/demo.guest.sh, run by the guest's /init for e2e.run=demo), xl config, INI, device tree.
ov=$E2E_BUILD/overlay
rm -rf "$ov"; mkdir -p "$ov/demo" "$E2E_BUILD/guest-overlay/e2e"
install -m 0755 "$D/init" "$ov/demo/init"
install -m 0644 "$D/demo.cfg" "$D/demo.ini" "$ov/demo/"
dtc -q -I dts -O dtb -o "$ov/demo/demo.dtb" "$D/demo.dts" || die "dtc failed on $D/demo.dts"
install -m 0644 "$D/demo.guest.sh" "$E2E_BUILD/guest-overlay/e2e/demo.guest.sh"
pack() { (cd "$1" && find . -mindepth 1 | LC_ALL=C sort | cpio -o -H newc --owner=0:0 --quiet); }
pack "$E2E_BUILD/guest-overlay" | gzip -6 > "$ov/demo/guest-overlay.cpio.gz"
INITRD=$E2E_BUILD/dom0-initrd.cpio
{ cat "$INITRD_E2E"; pack "$ov" | gzip -6; } > "$INITRD"
rm -rf "$ov" "$E2E_BUILD/guest-overlay"

args="rdinit=/demo/init quiet"
[ "$batch" = 1 ] && args="$args demo.batch=1"
DTB=$E2E_BUILD/virt-xen.dtb
bash "$P/dtb.sh" "$INITRD" "$DTB" "$args"
exec 9>&-
log "environment ready in $(( $(date +%s) - t_start ))s"

if [ "$batch" != 1 ]; then
	log "booting Xen and dom0 (about a minute); then the showcase, then the guest's shell."
	log "Ctrl-] leaves the guest's console (to a dom0 shell); Ctrl-a x quits QEMU."
	E2E_INTERACTIVE=1 exec bash "$P/boot.sh" "$XEN" "$DTB" "$INITRD"
fi

# Batch: the console from dom0's first demo line on (Xen's and the kernels' boot messages are in
# build/demo/console.log), then the verdict from the DEMO-SUMMARY/DEMO-RESULT lines.
log "booting Xen and dom0 (about a minute), then the showcase; console: $E2E_BUILD/console.log"
t_boot=$(date +%s)
E2E_VERBOSE=1 E2E_TIMEOUT=${DEMO_TIMEOUT:-900} bash "$P/boot.sh" "$XEN" "$DTB" "$INITRD" |
	{ on=""; while IFS= read -r l; do
		case $l in "DEMO: dom0 up"*) on=1;; esac
		[ -n "$on" ] || continue
		[[ $l =~ ^\(XEN\)|^\[\ *[0-9]+\.[0-9]+\]\  ]] || printf '%s\n' "$l"
	done; }
console=$E2E_BUILD/console.log
echo
echo "times: build $(( t_boot - t_start ))s, boot and showcase $(( $(date +%s) - t_boot ))s, total $(( $(date +%s) - t_start ))s"
if grep -aq '^DEMO-RESULT PASS' "$console" && ! grep -aq '^DEMO-SUMMARY FAIL' "$console"; then
	echo "demo: every device showed its evidence"
	exit 0
fi
if ! grep -aq '^DEMO-DONE' "$console"; then
	echo "demo: dom0 did not finish; last console lines ($console):"
	tail -n 25 "$console" | sed 's/^/    /'
fi
echo "demo: FAILED: $(grep -a '^DEMO-RESULT' "$console" | tail -1)"
exit 1
