# Back-end half of scenario "driverdomain", run by the back-end domain's /init (a domU: no
# toolstack, no foreign mapping; /dev/xen/privcmd, evtchn, gntdev and xenbus only). It serves the
# guest named by e2e.guest= : its virtio disk (libxl 4.17's, backend=<this domain>) through
# xen-virtiod in watch mode, its virtio-net window (partial device tree) through an explicit-mode
# instance on bridge br0 (10.0.0.1/24). Then it plays dom0's part of scenario "net" and, once
# the guest is gone, reads the guest's files from the image. Lines "E2E-BE-..." for dom0.
guest=$(sed -n 's/.*e2e\.guest=\([^ ]*\).*/\1/p' /proc/cmdline)
self=$(xenstore-read domid)
logd=/var/log/xen-virtiod wlog=/var/log/xen-virtiod/watch.log nlog=/var/log/xen-virtiod/net.log
mkdir -p $logd /etc/xen-virtiod /run/xvd-net
echo "E2E-BE domid=$self guest=$guest xenstore: $(xenstore-read name 2>&1)"
ip link set lo up
if ! { ip link add br0 type bridge && ip addr add 10.0.0.1/24 dev br0 && ip link set br0 up; }; then
	echo "E2E-BE-ERROR cannot set up bridge br0"; exit 1
fi
truncate -s 64M /run/dd.img
# ini_guest DISCOVERY: the [guest] section of both instances' INI files (the buffers are grants
# for this domain: the guest's device tree names it).
ini_guest() {
	printf '[guest]\nname = %s\ndiscovery = %s\nbackend_domid = %s\ngrant_usage = yes\nlog_level = debug\n\n' \
		"$guest" "$1" "$self"
}
{ ini_guest xenstore; printf '[block "root"]\nvdev = xvda\n'; } > /etc/xen-virtiod/$guest.ini
if ! xen-virtiod --watch --config-dir /etc/xen-virtiod --backend-domid "$self" >>$wlog 2>&1; then
	echo "E2E-BE-ERROR xen-virtiod --watch failed"; tail -n 20 $wlog; exit 1
fi
echo "E2E-BE-READY domid=$self: xen-virtiod --watch --backend-domid $self"

# The guest: its disk's backend directory appears (xl create -p), then its name becomes readable
# once dom0's helper made us its target (xenstored's SET_TARGET).
i=0 gid=""
while [ -z "$gid" ] && [ $i -lt 900 ]; do
	gid=$(xenstore-list /local/domain/$self/backend/virtio_disk 2>/dev/null | head -1)
	[ -n "$gid" ] || sleep 0.2; i=$((i + 1))
done
[ -n "$gid" ] || { echo "E2E-BE-ERROR no guest appeared under backend/virtio_disk"; tail -n 20 $wlog; exit 1; }
i=0
while ! xenstore-read /local/domain/$gid/name >/dev/null 2>&1 && [ $i -lt 300 ]; do sleep 0.2; i=$((i + 1)); done
echo "E2E-BE guest domid $gid, name $(xenstore-read /local/domain/$gid/name 2>&1)"
echo "E2E-BE perms of /local/domain/$gid: $(xenstore-ls -p /local/domain/$gid 2>&1 | grep -m2 -e '^name' -e '^vm' | tr '\n' ' ')"
{ ini_guest explicit
  printf '[net "eth0"]\nmmio = 0x02000200\nirq = 34\nbridge = br0\nmac = 00:16:3e:e2:e0:0d\n'; } > /run/xvd-net/$guest.ini
if ! xen-virtiod --config /run/xvd-net/$guest.ini --domain "$gid" --control-dir /run/xvd-net \
	--state-dir none >>$nlog 2>&1; then
	echo "E2E-BE-ERROR the net instance failed"; tail -n 20 $nlog
	echo "--- watch log:"; tail -n 25 $wlog; exit 1
fi
echo "E2E-BE-NET-READY guest=$gid"

# dom0's part of scenario "net": 4 MiB down from our httpd, 4 MiB up from the guest's.
www=/run/www
mkdir -p $www
dd if=/dev/urandom of=$www/down.bin bs=64k count=64 2>/dev/null
echo "E2E-BE-NET-DOWN sha256=$(sha256sum $www/down.bin | cut -d' ' -f1)"
httpd -p 10.0.0.1:80 -h $www
i=0
until wget -q -O /run/up.bin http://10.0.0.2:8080/up.bin 2>/dev/null || [ $i -gt 400 ]; do
	sleep 1; i=$((i + 1))
done
echo "E2E-BE-NET-UP bytes=$(wc -c < /run/up.bin 2>/dev/null) sha256=$(sha256sum /run/up.bin 2>/dev/null | cut -d' ' -f1)"
touch $www/fetched
sleep 4
# The instances' counters (SIGUSR1), as in scenario "grant".
for p in $(pidof xen-virtiod); do kill -USR1 "$p"; done
sleep 3
echo "E2E-BE-STATS-BLK $(grep -a 'stats vcpus=' $wlog | tail -1 | sed 's/.*stats //')"
echo "E2E-BE-STATS-NET $(grep -a 'stats vcpus=' $nlog | tail -1 | sed 's/.*stats //')"
echo "E2E-BE-SERVED"
# From here on, the daemons' new log lines on the console as they come (the teardown).
for f in $wlog $nlog; do
	tail -n 0 -f $f | while IFS= read -r l; do echo "E2E-BE-LOG $l"; done &
done

# dom0 destroys the guest: both instances must notice and exit 0.
i=0
while pidof xen-virtiod >/dev/null && [ "$(pidof xen-virtiod | wc -w)" -gt 1 ] && [ $i -lt 600 ]; do
	sleep 0.2; i=$((i + 1))
done
sleep 1
echo "E2E-BE-INSTANCE $(grep -a "instance for $guest " $wlog | tail -1 | sed 's/.*: //')"
echo "E2E-BE-NET-INSTANCE $(grep -a 'the domain is gone' $nlog | tail -1 | sed 's/.*: //') running=$(pgrep -f 'xvd-net' | wc -l)"
echo "E2E-BE-WARNINGS $(cat $wlog $nlog | grep -cE ': (warning|error|crit|alert|emerg): ')"
cat $wlog $nlog | grep -E ': (warning|error|crit|alert|emerg): ' | head -n 10 | sed 's/^/E2E-BE-WARN /'
# The guest's files, read from the image in this domain.
mkdir -p /mnt/img
if mount -o ro -t ext4 /run/dd.img /mnt/img 2>/dev/null || { losetup /dev/loop0 /run/dd.img && mount -o ro -t ext4 /dev/loop0 /mnt/img; }; then
	(cd /mnt/img && sha256sum file1 file2 file3) | while read -r s f; do echo "E2E-BE-BLK-SUM $s $f"; done
	umount /mnt/img
else
	echo "E2E-BE-ERROR cannot mount the guest's ext4 image"
fi
echo "--- watch log (last lines):"; tail -n 12 $wlog
echo "--- net log (last lines):"; tail -n 6 $nlog
echo "E2E-BE-DONE"
# dom0 looks at the guest's grant table, then destroys this domain.
sleep 100000
