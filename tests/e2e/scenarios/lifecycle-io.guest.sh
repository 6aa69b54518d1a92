# Guest half of scenario "lifecycle", two guests at once: 20 s of fio random read/write on the raw
# virtio disk (both guests' I/O overlaps; dom0 checks the begin/end lines), then the blk check
# (ext4, three files, their sha256; dom0 compares them in the image).
[ -b /dev/vda ] || { echo "E2E-GUEST-LC-ERROR no /dev/vda"; exit 1; }
echo "E2E-GUEST-LC-IO begin"
fio --name=lc --filename=/dev/vda --rw=randrw --bs=4k --size=32M --direct=1 --ioengine=psync \
	--time_based --runtime=20 --output=/tmp/fio.out >/dev/null 2>&1
rc=$?
echo "E2E-GUEST-LC-IO end fio_rc=$rc $(grep -E '^ *(READ|WRITE):' /tmp/fio.out | sed 's/,.*//' | tr -s ' ' | tr '\n' ' ')"
sh /e2e/blk.guest.sh
