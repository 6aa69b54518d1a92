# Scenario "lifecycle": guests coming and going under one watch-mode xen-virtiod.
#  (b) two guests at once, each with a 4.17 virtio disk (/dev/loop0, /dev/loop1): the watcher
#      starts one instance per guest (distinct pids); both guests run fio at the same time, then
#      write ext4 files whose sha256 dom0 finds in each image; each instance exits 0 when its
#      guest powers off (the watcher logs each child's exit status).
#  (a) xl destroy of a guest in the middle of a disk write loop: its instance exits with status 0
#      (the watcher's log of the child), the domain disappears from xl list (no dying domain:
#      what mappings left behind would cause) and no xen-virtiod process for it remains.
# Memory: dom0 has 1024 MiB of QEMU's 2048; two 256 MiB guests fit in what Xen has left.
# e2e-timeout: 600
. /e2e/lib.sh
have_daemon || { result SKIP lifecycle "xen-virtiod is not in this dom0 (not buildable yet)"; exit 0; }
cdir=/run/lc-virtiod wlog=/var/log/xen-virtiod/lifecycle-watch.log
mkdir -p $cdir /var/log/xen-virtiod
disk() { echo "disk = [ \"vdev=xvda,format=raw,backendtype=standalone,specification=virtio,target=$1\" ]"; }
for g in 1 2; do
	truncate -s 64M /run/e2e-lc$g.img
	losetup /dev/loop$((g - 1)) /run/e2e-lc$g.img || { result FAIL lifecycle "losetup /dev/loop$((g - 1)) failed"; exit 0; }
	printf '[guest]\nname = e2e-lc%s\ndiscovery = xenstore\n\n[block "root"]\nvdev = xvda\n' $g > $cdir/e2e-lc$g.ini
done
cp $cdir/e2e-lc1.ini $cdir/e2e-lc3.ini; sed -i 's/e2e-lc1/e2e-lc3/' $cdir/e2e-lc3.ini
say "free memory before: $(xl info | sed -n 's/^free_memory *: //p') MiB"
xen-virtiod --watch --config-dir $cdir --log-level info >>$wlog 2>&1 ||
	{ tail -n 20 $wlog; result FAIL lifecycle "xen-virtiod --watch failed"; exit 0; }
watcher=$(pidof xen-virtiod)
# used_now: both instances' used index of their disk's queue (a SIGUSR1 dump each).
used_now() {
	for g in 1 2; do
		p=$(sed -n "s/^.*e2e-lc$g (domid [0-9]*): started instance pid \([0-9]*\).*/\1/p" $wlog | tail -1)
		kill -USR1 "$p" 2>/dev/null
	done
	sleep 1
	for g in 1 2; do
		grep -a "xen-virtiod\[e2e-lc$g\]: notice: block root: queue 0:" $wlog | tail -1 |
			sed -n 's/.* used \([0-9]*\).*/\1/p'
	done | tr '\n' ' '
}

# ---- (b) two guests at once
# One xl create after the other (each returns once its guest's instance wrote state=2, seconds);
# the guests then run side by side. (Two xl create in parallel once froze dom0 under TCG.)
for g in 1 2; do
	cfg=$(guest_cfg e2e-lc$g blk.cfg 'extra = "console=hvc0 rdinit=/init e2e.run=lifecycle-io"' "$(disk /dev/loop$((g - 1)))")
	say "xl create $cfg"
	xl create "$cfg" || { tail -n 20 $wlog; result FAIL lifecycle "xl create e2e-lc$g failed"; exit 0; }
done
xl list
overlap=""
i=0
while [ $i -lt 480 ]; do
	b1=$(guest_lines e2e-lc1 E2E-GUEST-LC-IO | grep -c begin) b2=$(guest_lines e2e-lc2 E2E-GUEST-LC-IO | grep -c begin)
	e1=$(guest_lines e2e-lc1 E2E-GUEST-LC-IO | grep -c end) e2=$(guest_lines e2e-lc2 E2E-GUEST-LC-IO | grep -c end)
	if [ "$b1$b2$e1$e2" = 1100 ] && [ -z "$overlap" ]; then
		# Both guests between "begin" and "end" of their 20 s fio run: two snapshots of both
		# instances' used rings 5 s apart; both moved = I/O served for both at the same time.
		say "both guests are in their fio run"
		sleep 4; u1=$(used_now)
		sleep 4; u2=$(used_now)
		say "used rings (lc1 lc2): $u1 -> $u2"
		overlap=no
		set -- $u1 $u2
		[ $# = 4 ] && [ "$1" != "$3" ] && [ "$2" != "$4" ] && overlap="lc1 used $1->$3, lc2 used $2->$4 about 5 s apart"
	fi
	xl domid e2e-lc1 >/dev/null 2>&1 || xl domid e2e-lc2 >/dev/null 2>&1 || break
	sleep 0.5; i=$((i + 1))
done
wait_guest_gone e2e-lc1 10 && wait_guest_gone e2e-lc2 10 ||
	{ tail -n 20 $wlog; result FAIL lifecycle "two guests: still running after 240 s"; xl list; exit 0; }
pids=$(sed -n 's/^.*e2e-lc[12] (domid [0-9]*): started instance pid \([0-9]*\).*/\1/p' $wlog | sort -u | tr '\n' ' ')
npids=$(echo $pids | wc -w)
# Each instance exits once it sees its domain gone (the watcher logs "exited" for status 0 only).
i=0
while :; do
	exits=$(grep -c 'instance for e2e-lc[12] (domid [0-9]*, pid [0-9]*) exited' $wlog || true)
	{ [ "$exits" -ge 2 ] || [ $i -ge 40 ]; } && break
	sleep 0.5; i=$((i + 1))
done
pair_ok=1 pair=""
for g in 1 2; do
	tr -d '\r' < "$(guest_log e2e-lc$g)" | grep -a '^E2E-GUEST' | tail -n 6
	sums=$(guest_lines e2e-lc$g E2E-GUEST-BLK-SUM)
	fio=$(guest_lines e2e-lc$g E2E-GUEST-LC-IO | grep end | tail -1)
	losetup -d /dev/loop$((g - 1))
	if blk_check /run/e2e-lc$g.img && echo "$fio" | grep -q 'fio_rc=0'; then
		pair="$pair lc$g: fio ok, $ok files match in dom0;"
	else
		pair_ok=0; pair="$pair lc$g: ${why:-} fio [$fio];"
	fi
done
echo "--- watch log (two guests):"; cat $wlog | tail -n 30

# ---- (a) xl destroy in the middle of a write loop
losetup /dev/loop0 /run/e2e-lc1.img
cfg=$(guest_cfg e2e-lc3 blk.cfg 'extra = "console=hvc0 rdinit=/init e2e.run=lifecycle-loop"' "$(disk /dev/loop0)")
say "xl create $cfg"
xl create "$cfg" || { tail -n 20 $wlog; result FAIL lifecycle "xl create e2e-lc3 failed"; exit 0; }
domid=$(xl domid e2e-lc3)
wait_log e2e-lc3 'E2E-GUEST-LC-LOOP 3' 180 || { tail -n 20 "$(guest_log e2e-lc3)"; result FAIL lifecycle "e2e-lc3: no write loop"; exit 0; }
pid3=$(sed -n "s/^.*e2e-lc3 (domid $domid): started instance pid \([0-9]*\).*/\1/p" $wlog | tail -1)
kill -USR1 "$pid3" 2>/dev/null; sleep 1
t0=$(now)
say "xl destroy e2e-lc3 (domid $domid, instance pid $pid3) after $(guest_lines e2e-lc3 E2E-GUEST-LC-LOOP | tail -1) writes"
xl destroy e2e-lc3 > /run/e2e-lc3.destroy 2>&1; rc=$?
cat /run/e2e-lc3.destroy
# libxl 4.17 removes the disk first (state=5) and waits up to 10 s for the backend's state=6
# (Closed); the instance answers at once, so libxl must not time out.
timedout=""; grep -q 'unable to remove device' /run/e2e-lc3.destroy && timedout=yes
t_destroy=$(awk "BEGIN { print $(now) - $t0 }")
say "xl destroy returned $rc in ${t_destroy} s"
exit3=""; i=0
while [ $i -lt 40 ]; do
	exit3=$(grep "instance for e2e-lc3 (domid $domid, pid $pid3)" $wlog | tail -1)
	[ -n "$exit3" ] && break
	sleep 0.5; i=$((i + 1))
done
# A domain whose pages are still mapped somewhere stays "dying" (xl list shows it, often as
# "(null)"): wait a little, then nothing but Domain-0 may be listed.
i=0
while [ $i -lt 20 ] && [ "$(xl list | awk 'NR > 1' | grep -vc '^Domain-0 ')" != 0 ]; do sleep 0.5; i=$((i + 1)); done
xl list
left=$(xl list | awk 'NR > 1' | grep -v '^Domain-0 ' | awk '{ print $1 "(" $2 "," $5 ")" }' | tr '\n' ' ')
alive=""; kill -0 "$pid3" 2>/dev/null && alive=yes
others=$(pidof xen-virtiod | tr ' ' '\n' | grep -vx "$watcher" | tr '\n' ' ')
echo "--- watch log (destroy):"; tail -n 15 $wlog
kill "$watcher" 2>/dev/null
losetup -d /dev/loop0 2>/dev/null
destroy_ok=0
case $exit3 in *") exited"*) [ -z "$left" ] && [ -z "$alive" ] && [ -z "$others" ] && [ -z "$timedout" ] && destroy_ok=1 ;; esac
case $overlap in lc1*) ;; *) pair_ok=0 ;; esac
if [ "$npids" != 2 ] || [ "$exits" != 2 ] || [ $pair_ok != 1 ]; then
	result FAIL lifecycle "two guests: instance pids [$pids], $exits exited 0, fio overlap ${overlap:-no};$pair"
elif [ $destroy_ok != 1 ]; then
	result FAIL lifecycle "destroy mid-I/O: watcher says [${exit3:-nothing}], domains left [$left], instance alive ${alive:-no}, other instances [$others], libxl timed out on the disk's state=6: ${timedout:-no}"
else
	result PASS lifecycle "two guests at once: instances pid $(echo $pids | tr ' ' '+'), concurrent fio ($overlap),$pair both exited 0; xl destroy mid-write (${t_destroy} s, the disk's Closing answered): instance pid $pid3 exited 0, no domain left but Domain-0, no instance left"
fi
