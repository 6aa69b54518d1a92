#!/bin/bash
# Phase "boot": Xen + dom0 under qemu-system-aarch64 (TCG) with a hard timeout; the console goes to
# $E2E_BUILD/console.log (and to the terminal with E2E_VERBOSE=1). Usage: boot.sh XEN DTB INITRD
# Interactive (E2E_INTERACTIVE=1): the console is the terminal (Ctrl-a x quits QEMU).
set -euo pipefail
E2E_PHASE=boot
. "$(dirname "$0")/../lib.sh"
xen=$1 dtb=$2 initrd=$3
log_file=$E2E_BUILD/console.log
timeout_s=${E2E_TIMEOUT:-1800}

qemu=(qemu-system-aarch64 -machine "$E2E_MACHINE" -cpu "$E2E_CPU" -smp "$E2E_SMP" -m "$E2E_MEM"
	-nic none -nographic -no-reboot -kernel "$xen" -dtb "$dtb"
	-device "loader,file=$E2E_IMAGE,addr=0x60000000,force-raw=on"
	-device "loader,file=$initrd,addr=0x64000000,force-raw=on")
if [ "${E2E_INTERACTIVE:-0}" = 1 ]; then
	log "interactive: Ctrl-a x quits QEMU"
	exec "${qemu[@]}"
fi
log "qemu-system-aarch64 (timeout ${timeout_s}s), console: $log_file"
rcf=$E2E_BUILD/qemu.rc; rm -f "$rcf"
run_qemu() { timeout -k 10 "$timeout_s" "${qemu[@]}" </dev/null 2>&1; echo $? > "$rcf"; }
if [ "${E2E_VERBOSE:-0}" = 1 ]; then
	run_qemu | sed -u 's/\r$//' | tee "$log_file"
else
	# Progress: the harness's own lines as they come.
	run_qemu | sed -u 's/\r$//' | tee "$log_file" |
		grep --line-buffered -E '^(E2E-|\(XEN\) Xen version|\(XEN\) \*\*\*|Kernel panic)' |
		while IFS= read -r l; do log "$l"; done || true
fi
rc=$(cat "$rcf" 2>/dev/null || echo 1)
if grep -q '^E2E-DONE' "$log_file"; then
	log "dom0 finished"
elif [ "$rc" = 124 ]; then
	log "TIMEOUT after ${timeout_s}s"
else
	log "QEMU exited before dom0 finished"
fi
exit 0
