# Guest half of the second boot in scenario "blk": mount the ext4 made by the first boot and print
# the checksums read back.
[ -b /dev/vda ] || { echo "E2E-GUEST-BLK-ERROR no /dev/vda"; exit 1; }
mkdir -p /mnt && mount -t ext4 /dev/vda /mnt || { echo "E2E-GUEST-BLK-ERROR mount failed"; exit 1; }
(cd /mnt && sha256sum file1 file2 file3) | while read -r s f; do echo "E2E-GUEST-BLK-SUM $s $f"; done
umount /mnt && echo "E2E-GUEST-BLK unmounted"
