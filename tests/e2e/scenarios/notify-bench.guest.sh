# Guest half of scenario "notify-bench": four fio cases on the raw virtio disk, each for a fixed
# time (e2e.nb_secs=N on the guest's command line, default 10, after 1 s of ramp): 4 KiB random
# read and random write at queue depth 1 and 32, libaio, O_DIRECT (the page cache out of the way:
# every I/O is a request on the ring). One line per case with fio's IOPS and error; then "done"
# and a few seconds alive so that dom0 can ask the daemon for its counters (SIGUSR1).
[ -b /dev/vda ] || { echo "E2E-GUEST-NB-ERROR no /dev/vda"; exit 1; }
secs=$(sed -n 's/.*e2e\.nb_secs=\([0-9]*\).*/\1/p' /proc/cmdline)
secs=${secs:-10}
echo "E2E-GUEST-NB begin secs=$secs cpus=$(grep -c ^processor /proc/cpuinfo) fio=$(fio --version)"
for c in randread:1 randread:32 randwrite:1 randwrite:32; do
	rw=${c%:*} qd=${c#*:}
	fio --name=nb --filename=/dev/vda --rw="$rw" --bs=4k --iodepth="$qd" --ioengine=libaio \
		--direct=1 --time_based --runtime="$secs" --ramp_time=1 --randrepeat=0 --norandommap \
		--output-format=terse --terse-version=3 --output=/tmp/nb.out >/dev/null 2>&1
	rc=$?
	# terse v3: field 5 error, 8 read IOPS, 49 write IOPS.
	t=$(grep -m1 '^3;' /tmp/nb.out)
	if [ "$rw" = randread ]; then f=8; else f=49; fi
	iops=$(echo "$t" | cut -d';' -f$f)
	err=$(echo "$t" | cut -d';' -f5)
	echo "E2E-GUEST-NB case=${rw}_qd$qd iops=${iops:-none} fio_rc=$rc err=${err:-none}"
done
echo "E2E-GUEST-NB done"
sleep 5
