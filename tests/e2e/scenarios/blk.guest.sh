# Guest half of scenario "blk": ext4 on the virtio disk, three files, their sha256.
ls /sys/bus/virtio/devices/ >/dev/null 2>&1
[ -b /dev/vda ] || { echo "E2E-GUEST-BLK-ERROR no /dev/vda (virtio devices: $(ls /sys/bus/virtio/devices))"; exit 1; }
echo "E2E-GUEST-BLK vda $(cat /sys/block/vda/size) sectors"
mkfs.ext4 -q -F /dev/vda || { echo "E2E-GUEST-BLK-ERROR mkfs.ext4 failed"; exit 1; }
mkdir -p /mnt && mount -t ext4 /dev/vda /mnt || { echo "E2E-GUEST-BLK-ERROR mount failed"; exit 1; }
for i in 1 2 3; do
	dd if=/dev/urandom of=/mnt/file$i bs=64k count=$((i * 8)) 2>/dev/null
done
sync
(cd /mnt && sha256sum file1 file2 file3) | while read -r s f; do echo "E2E-GUEST-BLK-SUM $s $f"; done
umount /mnt && echo "E2E-GUEST-BLK unmounted"
