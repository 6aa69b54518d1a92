# Guest half of scenario "lifecycle", destroyed mid-I/O: write the virtio disk in a loop (1 MiB
# per round, flushed) until dom0 runs xl destroy.
[ -b /dev/vda ] || { echo "E2E-GUEST-LC-ERROR no /dev/vda"; exit 1; }
n=0
while :; do
	dd if=/dev/zero of=/dev/vda bs=64k count=16 seek=$((n % 512 * 16)) conv=fsync 2>/dev/null ||
		echo "E2E-GUEST-LC-LOOP dd failed"
	n=$((n + 1))
	echo "E2E-GUEST-LC-LOOP $n"
done
