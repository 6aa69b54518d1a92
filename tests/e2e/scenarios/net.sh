# Scenario "net": virtio-net served by xen-virtiod in explicit mode (mmio 0x02000000, SPI 33,
# partial device tree), backed by a tap the daemon adds to dom0's bridge xenbr0 (10.0.0.1/24, as
# in make demo). The guest (10.0.0.2) pings dom0 and downloads 4 MiB from dom0's httpd; dom0
# downloads 4 MiB from the guest's httpd (both TCP); both ends checksum both files, dom0 compares.
# e2e-timeout: 400
. /e2e/lib.sh
name=e2e-net
have_daemon || { result SKIP net "xen-virtiod is not in this dom0 (not buildable yet)"; exit 0; }
bridge_up || { result FAIL net "cannot set up bridge xenbr0"; exit 0; }
www=/run/$name-www up=/run/$name.up
mkdir -p $www; rm -f $up $www/fetched
dd if=/dev/urandom of=$www/down.bin bs=64k count=64 2>/dev/null
down_dom0=$(sha256sum $www/down.bin | cut -d' ' -f1)
httpd -f -p 10.0.0.1:80 -h $www & httpd_pid=$!
# The upload: once the guest says its httpd serves, fetch from it, then tell the guest.
(
	i=0; until guest_lines $name E2E-GUEST-NET-UPREADY 2>/dev/null | grep -q . || [ $i -gt 600 ]; do sleep 0.5; i=$((i + 1)); done
	t0=$(now); wget -q -O $up http://10.0.0.2:8080/up.bin
	echo "dom0: fetched the guest's file ($(wc -c < $up) bytes) in $(awk "BEGIN { print $(now) - $t0 }") s"
	touch $www/fetched
) & nc_pid=$!
explicit_ini $name <<EOI
[net "eth0"]
mmio = 0x02000000
irq = 33
bridge = xenbr0
mac = 00:16:3e:e2:e0:01
EOI
cfg=$(guest_cfg $name one-window.cfg 'extra = "console=hvc0 rdinit=/init e2e.run=net"')
run_explicit net $name "$cfg" 270 || { kill $httpd_pid $nc_pid 2>/dev/null; exit 0; }
kill $httpd_pid $nc_pid 2>/dev/null
echo "--- daemon log (last lines):"; tail -n 12 "$(daemon_log $name)"
echo "--- guest console:"
tr -d '\r' < "$(guest_log $name)" | grep -a '^E2E-GUEST' | tail -n 8
ping=$(guest_lines $name E2E-GUEST-NET-PING | tail -1)
sums=$(guest_lines $name E2E-GUEST-NET-SUMS | tail -1)
down_guest=$(echo "$sums" | sed -n 's/.*down=\([0-9a-f]*\).*/\1/p')
up_guest=$(echo "$sums" | sed -n 's/.*up=\([0-9a-f]*\).*/\1/p')
up_dom0=$(sha256sum $up 2>/dev/null | cut -d' ' -f1)
up_bytes=$(wc -c < $up 2>/dev/null)
echo "down: dom0 $down_dom0 guest ${down_guest:-none}"
echo "up:   guest ${up_guest:-none} dom0 ${up_dom0:-none} ($up_bytes bytes)"
stop_daemons
if [ "$ping" != 3/3 ]; then
	result FAIL net "ping ${ping:-none}"
elif [ -n "$down_guest" ] && [ "$down_guest" = "$down_dom0" ] && [ -n "$up_guest" ] &&
	[ "$up_guest" = "$up_dom0" ] && [ "$up_bytes" = 4194304 ]; then
	result PASS net "ping 3/3, 4 MiB each way over TCP, sha256 match (down $(echo $down_dom0 | cut -c1-16)..., up $(echo $up_dom0 | cut -c1-16)...)"
else
	result FAIL net "ping $ping; down dom0=${down_dom0} guest=${down_guest:-none}; up guest=${up_guest:-none} dom0=${up_dom0:-none} ($up_bytes bytes)"
fi
