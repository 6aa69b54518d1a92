# Guest half of scenario "rng": which hwrng the kernel chose, and 64 bytes read from /dev/hwrng.
cur=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)
n=$(timeout 20 dd if=/dev/hwrng bs=64 count=1 2>/dev/null | wc -c)
sample=$(timeout 20 dd if=/dev/hwrng bs=16 count=1 2>/dev/null | od -An -tx1 | tr -d ' \n')
echo "E2E-GUEST-RNG rng_current=${cur:-none} bytes=$n sample=$sample virtio=$(ls /sys/bus/virtio/devices | tr '\n' ',')"
