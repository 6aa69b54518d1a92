# Guest half of scenario "vsock": AF_VSOCK streams to dom0 through the virtio-vsock device, with
# Debian's socat. (a) This guest connects to host CID 2: port 5000 takes MB MiB of its data,
# port 5001 gives it MB MiB of dom0's. (b) It listens: port 6000 takes MB MiB from a dom0 program
# (CONNECT 6000), port 6001 gives one MB MiB, port 6002 echoes (dom0 times round trips on it
# while it streams 2 x MB MiB to port 6003, which this guest counts). The sha256 of everything sent and received as this guest sees it.
# socat moves 64 KiB per read/write (-b 65536): each write the guest sends is a packet and each
# packet a kick, an ioreq round trip under TCG; with socat's default 8 KiB, 16 MiB up took 82 s.
mb=$(sed -n 's/.*e2e\.vsock_mb=\([0-9]*\).*/\1/p' /proc/cmdline); mb=${mb:-16}
up() { cut -d' ' -f1 /proc/uptime; }
sha() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }
bytes() { wc -c < "$1" 2>/dev/null || echo 0; }
rate() { awk -v b="$1" -v a="$2" -v c="$3" 'BEGIN { s = c - a; if (s <= 0) s = 0.01; printf "%.2f", b / 1048576 / s }'; }
[ -e /dev/vsock ] || { echo "E2E-GUEST-VSOCK-ERROR no /dev/vsock (no virtio-vsock device?)"; exit 1; }
command -v socat >/dev/null || { echo "E2E-GUEST-VSOCK-ERROR no socat in the guest"; exit 1; }
dd if=/dev/urandom of=/tmp/g2h.bin bs=1M count="$mb" 2>/dev/null
g2h=$(sha /tmp/g2h.bin)
echo "E2E-GUEST-VSOCK data ${mb} MiB sha256 $g2h"

# (a) guest -> host connections. dom0's listeners exist before this guest boots; a refused
# connection (RST) is still retried, at most 10 times.
connect() {
	i=0
	while [ $i -lt 10 ]; do
		timeout 150 socat -b 65536 -u "$@" 2>/tmp/socat.err && return 0
		grep -q 'Connection refused\|Connection reset' /tmp/socat.err || break
		i=$((i + 1)); sleep 1
	done
	echo "E2E-GUEST-VSOCK-ERROR socat $*: $(tail -1 /tmp/socat.err)"
	return 1
}
t0=$(up); connect OPEN:/tmp/g2h.bin VSOCK-CONNECT:2:5000; t1=$(up)
echo "E2E-GUEST-VSOCK-A up $(bytes /tmp/g2h.bin) bytes in $(awk "BEGIN { print $t1 - $t0 }")s"
t2=$(up); connect VSOCK-CONNECT:2:5001 CREATE:/tmp/h2g-a.bin; t3=$(up)
echo "E2E-GUEST-VSOCK-A down $(bytes /tmp/h2g-a.bin) bytes in $(awk "BEGIN { print $t3 - $t2 }")s"
echo "E2E-GUEST-VSOCK-SUMS-A up=$g2h up_mibs=$(rate "$(bytes /tmp/g2h.bin)" "$t0" "$t1") down=$(sha /tmp/h2g-a.bin) down_bytes=$(bytes /tmp/h2g-a.bin) down_mibs=$(rate "$(bytes /tmp/h2g-a.bin)" "$t2" "$t3")"
rm -f /tmp/h2g-a.bin

# (b) host -> guest connections: one connection each on 6000 and 6001, an echo service on 6002.
timeout 200 socat -b 65536 -u VSOCK-LISTEN:6000 CREATE:/tmp/h2g-b.bin 2>/tmp/socat-6000.err & p0=$!
timeout 200 socat -b 65536 -u OPEN:/tmp/g2h.bin VSOCK-LISTEN:6001 2>/tmp/socat-6001.err & p1=$!
socat VSOCK-LISTEN:6002,fork,reuseaddr EXEC:cat 2>/tmp/socat-6002.err & p2=$!
timeout 200 socat -b 65536 -u VSOCK-LISTEN:6003 - 2>/tmp/socat-6003.err | wc -c > /tmp/c.count & p3=$!
echo "E2E-GUEST-VSOCK-LISTENING 6000 6001 6002 6003"
wait $p0; r0=$?
echo "E2E-GUEST-VSOCK-B 6000 done rc=$r0 $(bytes /tmp/h2g-b.bin) bytes at $(up)s"
wait $p1; r1=$?
echo "E2E-GUEST-VSOCK-B 6001 done rc=$r1 at $(up)s"
wait $p3
echo "E2E-GUEST-VSOCK-SUMS-C bytes=$(cat /tmp/c.count)"
kill $p2 2>/dev/null
[ $r0 = 0 ] || echo "E2E-GUEST-VSOCK-ERROR 6000 rc=$r0: $(tail -1 /tmp/socat-6000.err)"
[ $r1 = 0 ] || echo "E2E-GUEST-VSOCK-ERROR 6001 rc=$r1: $(tail -1 /tmp/socat-6001.err)"
echo "E2E-GUEST-VSOCK-SUMS-B down=$(sha /tmp/h2g-b.bin) down_bytes=$(bytes /tmp/h2g-b.bin)"
