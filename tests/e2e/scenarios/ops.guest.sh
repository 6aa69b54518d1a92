# Guest half of scenario "ops": use the rng (so the instance has counters to show), say so, then
# stay up until dom0 has looked at the instance and destroys the guest.
n=$(timeout 20 dd if=/dev/hwrng bs=64 count=1 2>/dev/null | wc -c)
echo "E2E-GUEST-OPS bytes=$n rng_current=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)"
i=0
while [ $i -lt 120 ]; do sleep 1; i=$((i + 1)); done
