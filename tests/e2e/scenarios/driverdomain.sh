# Scenario "driverdomain": xen-virtiod in a back-end (driver) domain, serving another guest with
# grant mappings only. dom0 starts the back-end domain e2e-ddbe (a domU: the e2e kernel, dom0's
# userland and the package, tests/e2e/backend/init), which runs xen-virtiod --watch
# --backend-domid <its domid>. Then the guest e2e-dd, paused (xl create -p): its virtio disk is
# libxl 4.17's with backend=e2e-ddbe (libxl gives the guest's device tree a xen,grant-dma node
# naming the back-end), its virtio-net window comes from a partial device tree whose iommus names
# that node and the back-end's domid. While xl create waits for the disk's handshake,
# xen-virtiod-settarget makes the back-end the guest's device model (Xen and xenstored
# set_target, @releaseDomain permission); the back-end starts an explicit-mode instance for the
# net window; dom0 unpauses the guest. The guest writes files on ext4 and moves 4 MiB each way
# over TCP with the back-end (sha256 at both ends); dom0 destroys it; both instances exit 0; the
# guest's grant table has no entry left mapped by the back-end; the back-end reads the files
# back from the image; dom0 destroys the back-end and no domain is left.
# Xen boots with xsm=dummy for it: a hypervisor built with XSM (Debian's source and defconfig on
# Arm: CONFIG_XSM_SILO_DEFAULT=y) is in SILO mode otherwise, which refuses event channels and
# grant mappings between two domUs (xen/xsm/silo.c). Not in the default list: two runs of several
# scenarios with it and xsm=dummy (7 December 2026) hit the emulated machine's unexplained stop
# (docs/testing.md) as a new domU booted, once in this scenario, once in "net"; a third run of
# the same four passed (domids 6 and 7), and alone it passed four runs of four. Until that stop is
# understood it runs by name: E2E_SCENARIOS=driverdomain make e2e (CI does, in its own boot).
# e2e-timeout: 900
# e2e-default: no
# e2e-xen-args: xsm=dummy
. /e2e/lib.sh
be=e2e-ddbe name=e2e-dd
have_daemon || { result SKIP driverdomain "xen-virtiod is not in this dom0 (not buildable yet)"; exit 0; }
command -v xen-virtiod-settarget >/dev/null || { result FAIL driverdomain "no xen-virtiod-settarget in dom0"; exit 0; }
[ -f /e2e/backend.cpio.gz ] || { result FAIL driverdomain "no /e2e/backend.cpio.gz in dom0"; exit 0; }
blog=$(guest_log $be) glog=$(guest_log $name)
fail() {
	echo "--- back-end console (last lines):"; tr -d '\r' < "$blog" 2>/dev/null | tail -n 40
	echo "--- xl create -p of the guest:"; cat /run/dd-xl-create.log 2>/dev/null | tail -n 15
	echo "--- guest console (last lines):"; tr -d '\r' < "$glog" 2>/dev/null | tail -n 25
	xl list
	xl destroy $name 2>/dev/null; xl destroy $be 2>/dev/null
	result FAIL driverdomain "$*"
	exit 0
}
be_lines() { guest_lines $be "$1"; }

# grant_active GUEST BACKEND: entries of GUEST's grant table that BACKEND maps now (debug key g).
grant_active() {
	xl dmesg -c >/dev/null
	xl debug-keys g
	sleep 1
	xl dmesg | tr -d '\r' | awk -v g="d$1" -v b="$2" '
		/grant-table for remote / { cur = ($NF == "(v1)" || $NF == "(v2)") ? $(NF - 1) : $NF }
		cur == g && /\[0x[0-9a-f]+\]/ { for (i = 1; i <= NF; i++) if ($i ~ /^\[0x/) { if ($(i + 1) == b) n++; break } }
		END { print n + 0 }'
}

becfg=$(guest_cfg $be plain.cfg 'ramdisk = "/e2e/backend.cpio.gz"' 'memory = 384' \
	"extra = \"console=hvc0 rdinit=/init xen_privcmd.unrestricted=1 e2e.run=driverdomain e2e.guest=$name\"")
say "xl create $becfg (the back-end domain)"
xl create "$becfg" || fail "xl create of the back-end domain failed"
wait_log $be '^E2E-BE-READY' 240 || fail "the back-end domain's xen-virtiod --watch is not up after 240 s"
bedomid=$(xl domid $be)
tr -d '\r' < "$blog" | grep -a '^E2E-BE' | head -n 6

# The net window's iommus cell: the back-end's domid (big-endian) over the placeholder.
cp /e2e/dts/driverdomain-net.dtb /run/dd-net.dtb
off=$(cat /e2e/dts/driverdomain-net.offset)
printf "\\000\\000\\$(printf %03o $((bedomid >> 8 & 255)))\\$(printf %03o $((bedomid & 255)))" |
	dd of=/run/dd-net.dtb bs=1 seek="$off" conv=notrunc 2>/dev/null
gcfg=$(guest_cfg $name plain.cfg \
	"disk = [ \"backend=$be,vdev=xvda,format=raw,backendtype=standalone,specification=virtio,target=/run/dd.img\" ]" \
	'device_tree = "/run/dd-net.dtb"' "extra = \"console=hvc0 rdinit=/init e2e.run=driverdomain\"")
say "xl create -p $gcfg (disk backend=$be, domid $bedomid), and xen-virtiod-settarget beside it"
t0=$(now)
xl create -p "$gcfg" > /run/dd-xl-create.log 2>&1 & xlpid=$!
xen-virtiod-settarget --wait 60 $name $be > /run/dd-settarget.log 2>&1; strc=$?
wait $xlpid; xlrc=$?
sed 's/^/settarget: /' /run/dd-settarget.log
say "xl create -p returned $xlrc after $(awk "BEGIN { print $(now) - $t0 }") s"
[ "$strc" = 0 ] || fail "xen-virtiod-settarget failed ($strc): $(tr '\n' ' ' < /run/dd-settarget.log)"
[ "$xlrc" = 0 ] || fail "xl create -p failed (the back-end's handshake?): $(tail -n 3 /run/dd-xl-create.log | tr '\n' ' ')"
gdomid=$(xl domid $name)
wait_log $be '^E2E-BE-NET-READY' 60 || fail "the back-end's net instance is not serving"
xl unpause $name
say "guest $name (domid $gdomid) unpaused"
wait_log $name '^E2E-GUEST-DD-DONE' 480 || fail "the guest did not finish its checks in 480 s"
wait_log $be '^E2E-BE-SERVED' 60 || fail "the back-end did not finish its part"
during=$(grant_active "$gdomid" "$bedomid")
say "the guest's grant entries mapped by the back-end while it serves: $during"
t1=$(now)
xl destroy $name > /run/dd-xl-destroy.log 2>&1 || { cat /run/dd-xl-destroy.log; fail "xl destroy $name failed"; }
dtime=$(awk "BEGIN { print $(now) - $t1 }")
cat /run/dd-xl-destroy.log
say "xl destroy $name took $dtime s"
# libxl waits for the driver domain to answer Closed and then to remove the disk's directory.
destroy_err=$(grep -m1 'libxl: error' /run/dd-xl-destroy.log)
wait_log $be '^E2E-BE-DONE' 120 || fail "the back-end's instances did not exit after the guest's destruction"
after=$(grant_active "$gdomid" "$bedomid")
say "the guest's grant entries mapped by the back-end after its instances exited: $after"
echo "--- xl list with the back-end still running:"; xl list
tr -d '\r' < "$glog" | grep -a '^E2E-GUEST' | tail -n 14
tr -d '\r' < "$blog" | grep -a -e '^E2E-BE' -e '^---' -e 'xen-virtiod' | tail -n 40
xl destroy $be
i=0
while [ "$(xl list | awk 'NR > 2' | wc -l)" -gt 0 ] && [ $i -lt 60 ]; do sleep 0.5; i=$((i + 1)); done
left=$(xl list | awk 'NR > 2 { print $1 "(" $2 ")" }' | tr '\n' ' ')
echo "--- xl list after destroying the back-end:"; xl list

# The verdict.
sums=$(guest_lines $name E2E-GUEST-BLK-SUM)
besums=$(be_lines E2E-BE-BLK-SUM)
nsums=$(echo "$sums" | grep -c .)
ping=$(guest_lines $name E2E-GUEST-NET-PING | tail -1)
gsums=$(guest_lines $name E2E-GUEST-NET-SUMS | tail -1)
down_g=$(echo "$gsums" | sed -n 's/.*down=\([0-9a-f]*\).*/\1/p'); up_g=$(echo "$gsums" | sed -n 's/.*up=\([0-9a-f]*\).*/\1/p')
down_b=$(be_lines E2E-BE-NET-DOWN | sed -n 's/.*sha256=\([0-9a-f]*\).*/\1/p')
up_b=$(be_lines E2E-BE-NET-UP | sed -n 's/.*sha256=\([0-9a-f]*\).*/\1/p'); up_n=$(be_lines E2E-BE-NET-UP | sed -n 's/.*bytes=\([0-9]*\).*/\1/p')
ap=$(guest_lines $name E2E-GUEST-DD | grep -c 'access_platform=1')
sblk=$(be_lines E2E-BE-STATS-BLK | tail -1); snet=$(be_lines E2E-BE-STATS-NET | tail -1)
stat_of() { echo "$1" | sed -n "s/.* $2=\([0-9]*\).*/\1/p"; }
grants_only() { [ "${2:-0}" -gt 0 ] && [ "$(stat_of "$1" maps)" = "$2" ] && [ "$(stat_of "$1" bucket_maps)" = 0 ] &&
	[ "$(stat_of "$1" temp_maps)" = 0 ] && [ "$(stat_of "$1" cache_hits)" = 0 ]; }
gb=$(stat_of "$sblk" grant_maps) gn=$(stat_of "$snet" grant_maps)
inst=$(be_lines E2E-BE-INSTANCE | tail -1); ninst=$(be_lines E2E-BE-NET-INSTANCE | tail -1)
warns=$(be_lines E2E-BE-WARNINGS | tail -1)
counters="blk grant_maps=${gb:-?} net grant_maps=${gn:-?}, foreign maps 0 (bucket_maps, temp_maps, cache_hits)"
if [ "$nsums" -lt 3 ] || [ "$sums" != "$besums" ]; then
	fail_why="files: guest wrote [$(echo $sums | head -c 200)], back-end read [$(echo $besums | head -c 200)]"
elif [ "$ping" != 3/3 ] || [ -z "$down_g" ] || [ "$down_g" != "$down_b" ] || [ -z "$up_g" ] ||
	[ "$up_g" != "$up_b" ] || [ "$up_n" != 4194304 ]; then
	fail_why="net: ping ${ping:-none}; down be=${down_b:-none} guest=${down_g:-none}; up guest=${up_g:-none} be=${up_b:-none} (${up_n:-0} bytes)"
elif [ "$ap" -lt 2 ]; then
	fail_why="only $ap virtio devices negotiated ACCESS_PLATFORM (want 2: disk and net)"
elif ! grants_only "$sblk" "$gb" || ! grants_only "$snet" "$gn"; then
	fail_why="buffers not all grant-mapped: blk [$sblk] net [$snet]"
elif ! echo "$inst" | grep -q ' exited$' || ! echo "$ninst" | grep -q 'running=0'; then
	fail_why="instances: watch-mode [$inst], net [$ninst]"
elif [ "${during:-0}" -eq 0 ] || [ "${after:-1}" -ne 0 ]; then
	fail_why="grant entries mapped by the back-end: $during while serving, $after after its instances exited"
elif [ -n "$left" ]; then
	fail_why="domains left after destroying the back-end: $left"
elif [ -n "$destroy_err" ]; then
	fail_why="xl destroy of the guest: $destroy_err"
elif [ "${warns:-1}" != 0 ]; then
	fail_why="the back-end's daemons logged $warns warning/error lines: $(be_lines E2E-BE-WARN | head -1)"
fi
if [ -n "${fail_why:-}" ]; then
	result FAIL driverdomain "$fail_why; $counters"
else
	result PASS driverdomain "back-end domain d$bedomid (xen-virtiod --watch, grants only) served guest d$gdomid: $nsums files on ext4, same sha256 in the guest and in the back-end; ping 3/3, 4 MiB each way over TCP, sha256 match; disk and net negotiated ACCESS_PLATFORM; $counters; grant entries mapped $during while serving, $after after both instances exited 0; xl destroy ${dtime} s without a libxl error; no domain left"
fi
