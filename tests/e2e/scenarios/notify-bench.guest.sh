# Guest half of scenario "notify-bench": two virtio disks, one per window (0x02000000 and
# 0x02000200), each served by its own xen-virtiod instance, one on the fast notify path and one on
# the ioreq path; e2e.nb_fast=<base> on the command line names the fast one's window. For each of
# ROUNDS rounds (e2e.nb_rounds, default 3) and each case (4 KiB random read and random write at
# QD1 and QD32, libaio, O_DIRECT on the raw disk: every I/O a request on the ring), fio runs for
# SECS seconds (e2e.nb_secs, default 5, after 1 s of ramp) on one disk and then on the other, the
# order alternating, so both paths see the same moment's load. One line per run with fio's IOPS
# and error; then "done" and a few seconds alive so that dom0 can ask both instances for their
# counters (SIGUSR1).
arg() { sed -n "s/.*e2e\\.$1=\\([0-9a-fx]*\\).*/\\1/p" /proc/cmdline; }
secs=$(arg nb_secs); secs=${secs:-5}
rounds=$(arg nb_rounds); rounds=${rounds:-3}
fastwin=$(arg nb_fast)
fast="" slow=""
for b in /sys/block/vd*; do
	[ -e "$b" ] || continue
	win=$(basename "$(readlink -f "$b/device/..")")   # e.g. 2000000.virtio
	case $win in
	"$fastwin".*) fast=${b##*/} ;;
	*) slow=${b##*/} ;;
	esac
done
[ -n "$fast" ] && [ -n "$slow" ] || { echo "E2E-GUEST-NB-ERROR disks: fast=[$fast] ioreq=[$slow] (fast window $fastwin; $(ls /sys/block | tr '\n' ' '))"; exit 1; }
echo "E2E-GUEST-NB begin fast=$fast ioreq=$slow secs=$secs rounds=$rounds cpus=$(grep -c ^processor /proc/cpuinfo) $(fio --version)"
r=1 k=0
while [ $r -le "$rounds" ]; do
	for c in randread:1 randread:32 randwrite:1 randwrite:32; do
		rw=${c%:*} qd=${c#*:}
		k=$((k + 1))
		if [ $((k % 2)) = 1 ]; then order="on off"; else order="off on"; fi
		for p in $order; do
			if [ $p = on ]; then dev=$fast; else dev=$slow; fi
			fio --name=nb --filename=/dev/$dev --rw="$rw" --bs=4k --iodepth="$qd" --ioengine=libaio \
				--direct=1 --time_based --runtime="$secs" --ramp_time=1 --randrepeat=0 --norandommap \
				--output-format=terse --terse-version=3 --output=/tmp/nb.out >/dev/null 2>&1
			rc=$?
			# terse v3: field 5 error, 8 read IOPS, 49 write IOPS.
			t=$(grep -m1 '^3;' /tmp/nb.out)
			if [ "$rw" = randread ]; then f=8; else f=49; fi
			iops=$(echo "$t" | cut -d';' -f$f)
			err=$(echo "$t" | cut -d';' -f5)
			echo "E2E-GUEST-NB round=$r case=${rw}_qd$qd path=$p dev=$dev iops=${iops:-none} fio_rc=$rc err=${err:-none}"
		done
	done
	r=$((r + 1))
done
echo "E2E-GUEST-NB done"
sleep 5
