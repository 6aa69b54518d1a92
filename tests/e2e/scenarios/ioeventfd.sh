# Scenario "ioeventfd": a short blk check (ext4, three files, the same sha256 in dom0; one boot)
# with a disk in explicit mode, and the notification path the daemon chose. dom0's kernel has
# CONFIG_XEN_PRIVCMD_EVENTFD=y, so a daemon with the privcmd fast path (queue notifications as an
# ioeventfd, interrupts through an irqfd) must log "notify path: privcmd ioeventfd+irqfd": PASS.
# A "notify path: ioreq" line means the daemon fell back to the ioreq path here: FAIL with that
# line. Neither line: the daemon has no fast path yet: SKIP (the blk check must still pass).
. /e2e/lib.sh
name=e2e-ioev
have_daemon || { result SKIP ioeventfd "xen-virtiod is not in this dom0 (not buildable yet)"; exit 0; }
img=/run/$name.img
# This dom0 has no service manager: auto would keep the kicks on the ioreq server (restarts).
explicit_disk $name 'notify_fastpath = on'
cfg=$(guest_cfg $name one-window.cfg 'extra = "console=hvc0 rdinit=/init e2e.run=blk"')
run_explicit ioeventfd $name "$cfg" 240 || exit 0
wait_daemons_exit 10 || say "xen-virtiod still running 10 s after the guest died"
dlog=$(daemon_log $name)
tr -d '\r' < "$(guest_log $name)" | grep -a '^E2E-GUEST' | tail -n 6
grep -a 'notify path' "$dlog"
fast=$(grep -a 'notify path: privcmd ioeventfd+irqfd' "$dlog" | tail -1)
slow=$(grep -a 'notify path: ioreq' "$dlog" | tail -1)
# The totals the instance logs when it stops: the guest's kicks came through the ioeventfd.
used=$(sed -n 's/.*stopping;.*: \([0-9]*\) notifies via eventfd, \([0-9]*\) irqs via irqfd.*/\1 \2/p' "$dlog" | tail -1)
sums=$(guest_lines $name E2E-GUEST-BLK-SUM)
stop_daemons
if ! blk_check $img; then
	result FAIL ioeventfd "$why; ${fast:-${slow:-no notify path line}}"
elif [ -n "$slow" ]; then
	result FAIL ioeventfd "daemon: $slow"
elif [ -n "$fast" ] && { set -- $used; [ "${1:-0}" -gt 0 ] && [ "${2:-0}" -gt 0 ]; }; then
	result PASS ioeventfd "$ok files on ext4, same sha256 in dom0; daemon: $fast; at exit $1 notifies via eventfd, $2 irqs via irqfd"
elif [ -n "$fast" ]; then
	result FAIL ioeventfd "daemon: $fast, but its totals at exit say [${used:-none}] notifies/irqs through the eventfds"
else
	result SKIP ioeventfd "daemon has no fast path (no \"notify path:\" line in its log; the blk check passed: $ok files, same sha256 in dom0)"
fi
