# Guest half of scenario "driverdomain": the blk check (ext4, three files) and the net check
# (scenario "net"'s guest half: 10.0.0.1 is the back-end domain's bridge), then which virtio
# devices negotiated VIRTIO_F_ACCESS_PLATFORM (bit 33: their buffers are grants for the
# back-end); then it waits for dom0 to destroy it.
sh /e2e/blk.guest.sh
sh /e2e/net.guest.sh
for d in /sys/bus/virtio/devices/virtio*; do
	echo "E2E-GUEST-DD device=$(cat $d/device) access_platform=$(cut -c34 $d/features)"
done
echo "E2E-GUEST-DD-DONE"
sleep 100000
