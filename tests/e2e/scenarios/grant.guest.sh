# Guest half of scenario "grant" (kernel Image-grant, the window's device tree node pointing at a
# xen,grant-dma node): the blk check, then whether VIRTIO_F_ACCESS_PLATFORM (bit 33) was
# negotiated, which this kernel requires of a device whose buffers it grants; then a few seconds
# alive so that dom0 can ask the daemon for its counters.
sh /e2e/blk.guest.sh
d=$(ls -d /sys/bus/virtio/devices/virtio* 2>/dev/null | head -1)
feat=$(cat "$d/features" 2>/dev/null)
echo "E2E-GUEST-GRANT access_platform=$(echo "$feat" | cut -c34) device=$(cat "$d/device" 2>/dev/null) probe: $(dmesg | grep -m1 'virtio_blk.*\[vda\]' | sed 's/^\[[^]]*\] //')"
sleep 6
