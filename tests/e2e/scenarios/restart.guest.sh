# Guest half of scenario "restart": while dom0 kills and restarts this guest's xen-virtiod, three
# things run at once: fio passes writing 4 KiB blocks at random over 4 MiB of the raw virtio disk
# and verifying every one (crc32c), again and again until dom0 serves /done over the network; a
# QD1 fio reader of another 4 MiB whose every read's latency is logged (the pause a restart costs
# is the latency of the read it holds up); and a ping of dom0 every 0.5 s over virtio-net. Then a
# last ping, the reader's latencies (median and the largest), and the guest stays up: dom0
# destroys it.
set -u
ip link set lo up
ip link set eth0 up && ip addr add 10.0.0.2/24 dev eth0 ||
	{ echo "E2E-GUEST-RST-ERROR no eth0 (net: $(ls /sys/class/net | tr '\n' ' '))"; exit 1; }
[ -b /dev/vda ] || { echo "E2E-GUEST-RST-ERROR no /dev/vda"; exit 1; }
i=0; while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ] && [ $i -lt 40 ]; do sleep 0.5; i=$((i + 1)); done
ping -c 1 -w 30 10.0.0.1 >/dev/null 2>&1 || { echo "E2E-GUEST-RST-ERROR dom0 does not answer ping"; exit 1; }
fio --name=qd1 --filename=/dev/vda --rw=randread --bs=4k --offset=32M --size=4M --direct=1 \
	--ioengine=psync --time_based --runtime=1200 --write_lat_log=/tmp/qd1 --log_avg_msec=0 \
	--output=/tmp/qd1.out >/dev/null 2>&1 &
rd=$!
ping -i 0.5 10.0.0.1 >/tmp/ping.out 2>&1 &
pg=$!
echo "E2E-GUEST-RST begin uptime $(cut -d' ' -f1 /proc/uptime)"
passes=0 failed=""
while :; do
	fio --name=vw --filename=/dev/vda --rw=randwrite --bs=4k --size=4M --direct=1 \
		--ioengine=psync --verify=crc32c --verify_fatal=1 --do_verify=1 \
		--output=/tmp/fio.out >/dev/null 2>&1
	rc=$?
	passes=$((passes + 1))
	errs=$(sed -n 's/.*err= *\([0-9]*\).*/\1/p' /tmp/fio.out | sort -u | tr '\n' ',')
	echo "E2E-GUEST-RST pass $passes fio_rc=$rc errs=${errs:-none} $(grep -iE 'verify|bad|crc' /tmp/fio.out | head -2 | tr '\n' ' ')"
	[ "$rc" = 0 ] && [ "$errs" = "0," ] || failed="$failed pass$passes:rc=$rc,errs=${errs:-none}"
	timeout 20 wget -q -O /dev/null http://10.0.0.1/done 2>/dev/null && break
	[ $passes -lt 200 ] || break
done
kill -INT $pg; wait $pg
kill -INT $rd; wait $rd
tx=$(sed -n 's/^\([0-9]*\) packets transmitted.*/\1/p' /tmp/ping.out)
rx=$(sed -n 's/.* \([0-9]*\) packets received.*/\1/p' /tmp/ping.out)
echo "E2E-GUEST-RST-PING ${rx:-0}/${tx:-0}"
# Which requests were answered (0.5 s apart from "begin"): where the losses are.
echo "E2E-GUEST-RST-PINGSEQ $(sed -n 's/.*seq=\([0-9]*\).*/\1/p' /tmp/ping.out | sort -n | uniq | awk 'NR == 1 { a = b = $1; next } $1 == b + 1 { b = $1; next } { printf "%s ", a == b ? a : a "-" b; a = b = $1 } END { if (NR) printf "%s", a == b ? a : a "-" b }')"
out=$(ping -c 3 -w 20 10.0.0.1 2>&1)
echo "E2E-GUEST-RST-NET $(echo "$out" | sed -n 's/.* \([0-9]*\) packets received.*/\1/p')/3"
# fio's latency log: "msec, latency in ns, direction, bs, offset" per read.
lat=$(ls /tmp/qd1_lat*.log 2>/dev/null | head -1)
n=$(wc -l < "$lat" 2>/dev/null)
med=$(cut -d, -f2 "$lat" 2>/dev/null | sort -n | awk -v n="${n:-0}" 'NR == int(n / 2) + 1 { printf "%.2f", $1 / 1e6 }')
top=$(cut -d, -f2 "$lat" 2>/dev/null | sort -rn | head -16 | awk '{ printf "%.1f ", $1 / 1e6 }')
echo "E2E-GUEST-RST-LAT reads=${n:-0} median_ms=${med:-none} top_ms=$top"
echo "E2E-GUEST-RST end passes=$passes failed=${failed:-none}"
# dom0 destroys this guest (what it checks is the teardown after the restarts).
while :; do sleep 60; done
