# Scenario "grant": the blk checks (ext4, three files, the same sha256 in a second boot and in
# dom0) with a guest whose virtio buffers are all grant references. The guest boots the kernel
# built with CONFIG_XEN_VIRTIO_FORCE_GRANT=y (/e2e/Image-grant); its virtio-blk window's device
# tree node names a xen,grant-dma node with dom0 as backend (dts/grant-window.dts: what makes
# Linux use grants for a device with a device tree node). xen-virtiod serves it in explicit mode
# with [guest] grant_usage = yes, and only then offers VIRTIO_F_ACCESS_PLATFORM, which the guest
# requires. Xen 4.17's xenstore disk cannot carry this: libxl 4.17 adds the grant node only for a
# backend that is not dom0, and its disk has no grant_usage key.
# Evidence: the guest negotiated ACCESS_PLATFORM; the daemon's counters (SIGUSR1) show grant maps
# and no foreign mapping of guest RAM (bucket_maps, temp_maps, cache_hits all 0).
# e2e-timeout: 420
. /e2e/lib.sh
name=e2e-grant
have_daemon || { result SKIP grant "xen-virtiod is not in this dom0 (not buildable yet)"; exit 0; }
[ -f /e2e/Image-grant ] || { result FAIL grant "no /e2e/Image-grant in dom0"; exit 0; }
img=/run/$name.img
explicit_disk $name 'grant_usage = yes'
dlog=$(daemon_log $name)
glog=$(guest_log $name)
boot_cfg() { guest_cfg $name one-window.cfg 'kernel = "/e2e/Image-grant"' \
	'device_tree = "/e2e/dts/grant-window.dtb"' "extra = \"console=hvc0 rdinit=/init e2e.run=$1\""; }
start_explicit grant $name "$(boot_cfg grant)" || exit 0
if wait_log $name '^E2E-GUEST-GRANT ' 240; then
	say "asking the daemon for its counters (SIGUSR1)"
	kill -USR1 $(pidof xen-virtiod); sleep 2
fi
wait_gone_or_fail grant $name 60 || exit 0
wait_daemons_exit 10 || say "xen-virtiod still running 10 s after the guest died"
tr -d '\r' < "$glog" | grep -a '^E2E-GUEST' | tail -n 8
sums=$(guest_lines $name E2E-GUEST-BLK-SUM)
gline=$(guest_lines $name E2E-GUEST-GRANT | tail -1)
stats=$(grep -a 'stats vcpus=' "$dlog" | tail -1)
feat=$(grep -a 'block vda: mmio .* features' "$dlog" | tail -1)
echo "--- daemon's counters: $stats"; echo "--- $feat"
stat_of() { echo "$stats" | sed -n "s/.* $1=\([0-9]*\).*/\1/p"; }
maps=$(stat_of maps) gmaps=$(stat_of grant_maps) bmaps=$(stat_of bucket_maps)
tmaps=$(stat_of temp_maps) hits=$(stat_of cache_hits)
# Second boot (new domain, new daemon instance): read the files back.
mv "$glog" "$glog.1"
reread=""
if start_explicit grant $name "$(boot_cfg blkread)" && wait_gone_or_fail grant $name 240; then
	tr -d '\r' < "$glog" | grep -a '^E2E-GUEST' | tail -n 6
	reread=$(guest_lines $name E2E-GUEST-BLK-SUM)
else
	exit 0
fi
wait_daemons_exit 10
stop_daemons
counters="daemon: maps=${maps:-?} grant_maps=${gmaps:-?} foreign bucket_maps=${bmaps:-?} temp_maps=${tmaps:-?} cache_hits=${hits:-?}"
if ! blk_check $img "$reread"; then
	result FAIL grant "$why; $counters"
elif ! echo "$gline" | grep -q 'access_platform=1'; then
	result FAIL grant "guest did not negotiate ACCESS_PLATFORM: ${gline:-no E2E-GUEST-GRANT line}; $counters"
elif [ "${gmaps:-0}" -gt 0 ] && [ "$gmaps" = "$maps" ] && [ "$bmaps" = 0 ] && [ "$tmaps" = 0 ] && [ "$hits" = 0 ]; then
	result PASS grant "Image-grant guest: $ok files on ext4, same sha256 in a second boot and in dom0; guest negotiated ACCESS_PLATFORM; $counters"
else
	result FAIL grant "buffers not all grant-mapped: $counters"
fi
