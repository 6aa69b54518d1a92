# Scenario "blk": the administrator's flow with a virtio disk. xen-virtiod runs in watch mode; a
# plain `xl create` (no -p) of a guest whose xl config declares a 4.17 virtio disk makes the watcher
# start the guest's instance, which answers libxl's state=2 handshake. The guest makes an ext4
# filesystem, writes files and prints their checksums; a second boot of the guest (new domain, new
# daemon instance) reads them back; dom0 then mounts the image and compares too.
. /e2e/lib.sh
name=e2e-blk
have_daemon || { result SKIP blk "xen-virtiod is not in this dom0 (not buildable yet)"; exit 0; }
img=/run/$name.img
truncate -s 64M $img
losetup /dev/loop0 $img || { result FAIL blk "losetup /dev/loop0 failed"; exit 0; }
mkdir -p /etc/xen-virtiod /var/log/xen-virtiod
cat > /etc/xen-virtiod/$name.ini <<EOI
[guest]
name = $name
discovery = xenstore
log_level = debug

[block "root"]
vdev = xvda
EOI
wlog=/var/log/xen-virtiod/watch.log
say "xen-virtiod --watch"
xen-virtiod --watch --config-dir /etc/xen-virtiod >>$wlog 2>&1 || { tail -n 20 $wlog; result FAIL blk "xen-virtiod --watch failed"; exit 0; }
cfg=$(guest_cfg $name blk.cfg)
t0=$(now)
say "xl create $cfg (no -p)"
if ! xl create "$cfg"; then
	tail -n 30 $wlog; result FAIL blk "xl create failed (backend handshake?)"; exit 0
fi
say "created in $(awk "BEGIN { print $(now) - $t0 }") s"
if ! wait_guest_gone $name 240; then
	tail -n 20 "$(guest_log $name)"; tail -n 20 $wlog
	result FAIL blk "guest still running after 240 s"; exit 0
fi
glog=$(guest_log $name)
tr -d '\r' < "$glog" | grep -a '^E2E-GUEST' | tail -n 10
sums=$(guest_lines $name E2E-GUEST-BLK-SUM)
echo "--- watch/daemon log (last lines):"; tail -n 15 $wlog
# Second boot of the guest (a new domain: the watcher starts a new daemon instance, the guest a
# new driver instance): it mounts the filesystem and prints the checksums it reads back.
mv "$glog" "$glog.1"
cfg2=$(guest_cfg $name blk.cfg 'extra = "console=hvc0 rdinit=/init e2e.run=blkread"')
say "second boot: xl create $cfg2"
reread=""
if xl create "$cfg2" && wait_guest_gone $name 240; then
	tr -d '\r' < "$glog" | grep -a '^E2E-GUEST' | tail -n 6
	reread=$(guest_lines $name E2E-GUEST-BLK-SUM)
else
	tail -n 20 "$glog"; xl destroy $name 2>/dev/null
fi
sleep 1
losetup -d /dev/loop0 2>/dev/null
stop_daemons
if blk_check $img "$reread"; then
	result PASS blk "guest wrote $ok files on ext4 over virtio-blk; the guest's second boot (new daemon instance) and dom0 read the same sha256"
else
	result FAIL blk "$why"
fi
