# Guest half of scenario "boot": one marker line with the guest's own evidence.
echo "E2E-GUEST-MARKER kernel=$(uname -r) cpus=$(grep -c ^processor /proc/cpuinfo) mem=$(awk '/MemTotal/ {print $2 $3}' /proc/meminfo) virtio=$(ls /sys/bus/virtio/devices 2>/dev/null | wc -l)"
