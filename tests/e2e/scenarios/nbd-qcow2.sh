# Scenario "nbd-qcow2": a guest disk that is a qcow2 image, served through NBD from dom0. dom0's
# qemu-nbd (Debian's qemu-utils) serves /run/NAME.qcow2 on a unix socket; xen-virtiod's [block]
# names it with `nbd = nbd+unix:///?socket=...` (libnbd, from the daemon's loop). The guest runs
# the blk checks (ext4, three files and their sha256); a second boot (new domain, new daemon
# instance, same qemu-nbd) reads them back; then qemu-nbd stops, `qemu-img check` must find the
# image clean, and dom0 mounts its raw conversion and compares the sha256 too.
# e2e-timeout: 480
. /e2e/lib.sh
name=e2e-nbd-qcow2
have_daemon || { result SKIP nbd-qcow2 "xen-virtiod is not in this dom0 (not buildable yet)"; exit 0; }
command -v qemu-nbd >/dev/null && command -v qemu-img >/dev/null ||
	{ result FAIL nbd-qcow2 "no qemu-nbd or qemu-img in dom0"; exit 0; }
q=/run/$name.qcow2 raw=/run/$name.raw sock=/run/$name.nbd pidf=/run/$name.qemu-nbd.pid
qemu-img create -q -f qcow2 $q 64M || { result FAIL nbd-qcow2 "qemu-img create failed"; exit 0; }
# --fork: qemu-nbd returns once it listens. --persistent: it stays for the next connection (the
# daemon reconnects after a restart; the second boot's instance connects anew).
say "qemu-nbd --format=qcow2 --socket=$sock $q"
if ! qemu-nbd --fork --persistent --shared=4 --discard=unmap --cache=writeback --format=qcow2 \
	--socket=$sock --pid-file=$pidf $q; then
	result FAIL nbd-qcow2 "qemu-nbd did not start"; exit 0
fi
printf '[block "vda"]\nmmio = 0x02000000\nirq = 33\nnbd = nbd+unix:///?socket=%s\n' "$sock" |
	explicit_ini $name
dlog=$(daemon_log $name)
glog=$(guest_log $name)
boot_cfg() { guest_cfg $name one-window.cfg "extra = \"console=hvc0 rdinit=/init e2e.run=$1\""; }
stop_qemu_nbd() {
	p=$(cat $pidf 2>/dev/null) || return 0
	kill "$p" 2>/dev/null
	i=0; while kill -0 "$p" 2>/dev/null && [ $i -lt 100 ]; do sleep 0.1; i=$((i + 1)); done
	! kill -0 "$p" 2>/dev/null
}
start_explicit nbd-qcow2 $name "$(boot_cfg blk)" || { stop_qemu_nbd; exit 0; }
wait_gone_or_fail nbd-qcow2 $name 240 || { stop_qemu_nbd; exit 0; }
wait_daemons_exit 10 || say "xen-virtiod still running 10 s after the guest died"
tr -d '\r' < "$glog" | grep -a '^E2E-GUEST' | tail -n 8
sums=$(guest_lines $name E2E-GUEST-BLK-SUM)
conn=$(grep -a -m1 'nbd' "$dlog")
echo "--- daemon: $conn"
mv "$glog" "$glog.1"
reread=""
if start_explicit nbd-qcow2 $name "$(boot_cfg blkread)" && wait_gone_or_fail nbd-qcow2 $name 240; then
	tr -d '\r' < "$glog" | grep -a '^E2E-GUEST' | tail -n 6
	reread=$(guest_lines $name E2E-GUEST-BLK-SUM)
else
	stop_qemu_nbd; exit 0
fi
wait_daemons_exit 10
stop_daemons
stop_qemu_nbd || { result FAIL nbd-qcow2 "qemu-nbd did not stop on SIGTERM"; exit 0; }
check=$(qemu-img check -f qcow2 $q 2>&1); crc=$?
echo "--- qemu-img check: $check"
alloc=$(du -k $q | cut -f1)
if [ $crc -ne 0 ]; then
	result FAIL nbd-qcow2 "qemu-img check: $(echo $check | head -c 300)"
elif ! qemu-img convert -f qcow2 -O raw $q $raw; then
	result FAIL nbd-qcow2 "qemu-img convert failed"
elif ! blk_check $raw "$reread"; then
	result FAIL nbd-qcow2 "$why"
else
	result PASS nbd-qcow2 "qcow2 image served by qemu-nbd in dom0 over NBD: the guest wrote $ok files on ext4, the same sha256 in a second boot and in dom0 (raw conversion); qemu-img check clean; ${alloc} KiB of qcow2 for a 64 MiB disk"
fi
rm -f $raw
