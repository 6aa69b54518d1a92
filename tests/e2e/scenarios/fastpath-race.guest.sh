# Guest half of scenario "fastpath-race": two fio jobs (one per vCPU, each on its own 4 MiB of
# the raw virtio disk) writing 4 KiB blocks at random and verifying every one (crc32c); the
# kicks go to dom0's kernel through the privcmd ioeventfd. The "end" line carries fio's
# status and its error counts; the other guest is destroyed while this runs.
[ -b /dev/vda ] || { echo "E2E-GUEST-FPR-ERROR no /dev/vda"; exit 1; }
echo "E2E-GUEST-FPR begin cpus=$(grep -c ^processor /proc/cpuinfo)"
fio --name=fpr --filename=/dev/vda --rw=randwrite --bs=4k --size=4M --offset_increment=24M \
	--numjobs=2 --direct=1 --ioengine=psync --verify=crc32c --verify_fatal=1 --do_verify=1 \
	--output=/tmp/fio.out >/dev/null 2>&1
rc=$?
errs=$(sed -n 's/.*err= *\([0-9]*\).*/\1/p' /tmp/fio.out | sort -u | tr '\n' ',')
echo "E2E-GUEST-FPR end fio_rc=$rc errs=${errs:-none} $(grep -E '^ *(READ|WRITE):' /tmp/fio.out | sed 's/,.*//' | tr -s ' ' | tr '\n' ' ')"
