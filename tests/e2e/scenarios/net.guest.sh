# Guest half of scenario "net": eth0 10.0.0.2 on dom0's bridge (10.0.0.1); ping dom0, then 4 MiB
# over TCP each way: down with wget from dom0's httpd, up from this guest's httpd to dom0's wget; the sha256
# of both as this guest sees them.
ip link set lo up
ip link set eth0 up && ip addr add 10.0.0.2/24 dev eth0 ||
	{ echo "E2E-GUEST-NET-ERROR no eth0 (net: $(ls /sys/class/net | tr '\n' ' '))"; exit 1; }
i=0; while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ] && [ $i -lt 20 ]; do sleep 0.5; i=$((i + 1)); done
echo "E2E-GUEST-NET eth0 $(cat /sys/class/net/eth0/address) carrier $(cat /sys/class/net/eth0/carrier)"
out=$(ping -c 3 -w 30 10.0.0.1 2>&1)
echo "$out" | tail -n 2
rx=$(echo "$out" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')
echo "E2E-GUEST-NET-PING ${rx:-0}/3"
t0=$(cut -d' ' -f1 /proc/uptime)
timeout 150 wget -q -O /tmp/down.bin http://10.0.0.1/down.bin; rc=$?
t1=$(cut -d' ' -f1 /proc/uptime)
down=$(sha256sum /tmp/down.bin 2>/dev/null | cut -d' ' -f1)
echo "E2E-GUEST-NET down rc=$rc bytes=$(wc -c < /tmp/down.bin) in $(awk "BEGIN { print $t1 - $t0 }")s"
# Up: this guest serves 4 MiB from its own httpd and dom0 fetches it (busybox nc writes 1 KiB at a
# time, which paces a TCG guest to a frame per round trip; httpd sends in large writes, as wget's
# download does the other way). dom0 creates "fetched" in its web root when it has the file.
mkdir -p /tmp/www
dd if=/dev/urandom of=/tmp/www/up.bin bs=64k count=64 2>/dev/null
up=$(sha256sum /tmp/www/up.bin | cut -d' ' -f1)
httpd -p 10.0.0.2:8080 -h /tmp/www
echo "E2E-GUEST-NET-UPREADY 10.0.0.2:8080"
t0=$(cut -d' ' -f1 /proc/uptime)
i=0; while ! wget -q -O /dev/null http://10.0.0.1/fetched 2>/dev/null && [ $i -lt 150 ]; do sleep 1; i=$((i + 1)); done
t1=$(cut -d' ' -f1 /proc/uptime)
echo "E2E-GUEST-NET up served, dom0 done after $(awk "BEGIN { print $t1 - $t0 }")s"
echo "E2E-GUEST-NET tcp $(awk '/^Tcp:/ { if (!h) { split($0, k); h = 1 } else { for (i = 2; i <= NF; i++) if (k[i] ~ /OutSegs|RetransSegs|InSegs/) printf "%s=%s ", k[i], $i } }' /proc/net/snmp)eth0 tx_packets=$(cat /sys/class/net/eth0/statistics/tx_packets) tx_bytes=$(cat /sys/class/net/eth0/statistics/tx_bytes)"
echo "E2E-GUEST-NET-SUMS down=$down up=$up"
