# Scenario "vsock": virtio-vsock served by xen-virtiod in explicit mode (mmio 0x02000000, SPI 33,
# guest_cid 3), its host side the unix socket $XVD_RUN/e2e-vsock.sock; socat at both ends.
# (a) guest -> host: the guest connects to CID 2 ports 5000 and 5001, dom0's socat listens on
#     SOCK_5000 (takes MB MiB from the guest) and SOCK_5001 (gives the guest MB MiB).
# (b) host -> guest: dom0 connects to SOCK, writes "CONNECT 6000" and reads "OK <port>", then
#     sends MB MiB to the guest's socat; then the same on 6001 to take MB MiB from the guest.
# (c) while dom0 streams 2 x MB MiB to the guest (CONNECT 6003, the guest counts them), five echo
#     round trips on another connection (CONNECT 6002); the stream must outlast them.
# sha256 on both ends of every transfer; MB is 16 (e2e.vsock_mb=N in E2E_ARGS to change it).
# e2e-timeout: 900
. /e2e/lib.sh
name=e2e-vsock
have_daemon || { result SKIP vsock "xen-virtiod is not in this dom0 (not buildable yet)"; exit 0; }
command -v socat >/dev/null || { result FAIL vsock "no socat in dom0"; exit 0; }
mb=$(sed -n 's/.*e2e\.vsock_mb=\([0-9]*\).*/\1/p' /proc/cmdline); mb=${mb:-16}
sock=$XVD_RUN/$name.sock
d=/run/$name
rm -rf $d; mkdir -p $d $XVD_RUN
dd if=/dev/urandom of=$d/h2g.bin bs=1M count=$mb 2>/dev/null
h2g=$(sha256sum $d/h2g.bin | cut -d' ' -f1)
sha() { sha256sum "$1" 2>/dev/null | cut -d' ' -f1; }
bytes() { wc -c < "$1" 2>/dev/null || echo 0; }
# Milliseconds, as finely as this dom0's date allows (/proc/uptime's 10 ms otherwise).
ms() { t=$(date +%s%N 2>/dev/null); case $t in *N*|"") awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime;; *) echo $((t / 1000000));; esac; }

# A host program's end of a host -> guest connection, run by socat on the connected socket
# (stdin and stdout): vs-client PORT send FILE | zero COUNT (64 KiB blocks) | recv FILE | echo COUNT OUT.
cat > $d/client.sh <<'EOS'
#!/bin/sh
ms() { t=$(date +%s%N 2>/dev/null); case $t in *N*|"") awk '{ printf "%d\n", $1 * 1000 }' /proc/uptime;; *) echo $((t / 1000000));; esac; }
port=$1 mode=$2 arg=$3 out=$4
echo "CONNECT $port"
read -r ok
echo "$ok" > /run/e2e-vsock/ok-$port
case $ok in OK\ *) ;; *) exit 1;; esac
ms > /run/e2e-vsock/start-$port
case $mode in
send) cat "$arg" ;;
zero) dd if=/dev/zero bs=65536 count="$arg" 2>/dev/null ;;
recv) cat > "$arg" ;;
echo)
	i=1
	while [ $i -le "$arg" ]; do
		t0=$(ms); echo "ping-$i"; read -r r; t1=$(ms)
		echo "$i $r $((t1 - t0))" >> "$out"
		i=$((i + 1))
	done ;;
esac
EOS
chmod +x $d/client.sh
# host_connect PORT MODE ARG [OUT]: a host -> guest connection, retried (at most 30 times, 1 s
# apart) while the guest refuses it (its listener not up yet: the socket is closed before OK).
host_connect() {
	i=0
	while [ $i -lt 30 ]; do
		rm -f $d/ok-$1
		timeout 150 socat -b 65536 UNIX-CONNECT:$sock EXEC:"$d/client.sh $1 $2 $3 ${4:-}" 2>$d/socat-$1.err
		case $(cat $d/ok-$1 2>/dev/null) in OK\ *) return 0;; esac
		i=$((i + 1)); sleep 1
	done
	echo "dom0: CONNECT $1 never answered OK: $(tail -1 $d/socat-$1.err)"
	return 1
}

explicit_ini $name <<EOI
[vsock "v0"]
mmio = 0x02000000
irq = 33
guest_cid = 3
socket = $sock
EOI
# (a)'s listeners, one connection each, up before the guest exists.
socat -b 65536 -u UNIX-LISTEN:${sock}_5000 CREATE:$d/g2h-a.bin 2>$d/socat-5000.err & l0=$!
socat -b 65536 -u OPEN:$d/h2g.bin UNIX-LISTEN:${sock}_5001 2>$d/socat-5001.err & l1=$!
cfg=$(guest_cfg $name one-window.cfg "extra = \"console=hvc0 rdinit=/init e2e.run=vsock e2e.vsock_mb=$mb\"")
dlog=$(daemon_log $name)
start_explicit vsock $name "$cfg" || { kill $l0 $l1 2>/dev/null; exit 0; }
# (a): the guest's two connections; they end when the guest says its sums.
wait_log $name 'E2E-GUEST-VSOCK-SUMS-A|E2E-GUEST-VSOCK-ERROR|E2E-GUEST-EXIT' 200 || say "no (a) result from the guest in 200 s"
say "(a) dom0 has $(bytes $d/g2h-a.bin) bytes from the guest; guest: $(guest_lines $name E2E-GUEST-VSOCK-A | tr '\n' ';')"
kill $l0 $l1 2>/dev/null
# (b) and (c), once the guest listens.
echo_ok=0 during=0 rtts="" t0=0 t1=0 t2=0 t3=0 t4=0 t5=0
cmib=$((mb * 2))
rate_ms() { awk -v b="$1" -v a="${2:-0}" -v c="${3:-0}" 'BEGIN { s = (c - a) / 1000; if (s <= 0) s = 0.001; printf "%.2f", b / 1048576 / s }'; }
if wait_log $name 'E2E-GUEST-VSOCK-LISTENING|E2E-GUEST-EXIT' 60 && guest_lines $name E2E-GUEST-VSOCK-LISTENING | grep -q .; then
	host_connect 6000 send $d/h2g.bin; ms > $d/end-6000
	say "(b) 6000 done: $(cat $d/ok-6000 2>/dev/null)"
	# (c): once 6003's OK is in, five round trips on 6002, then whether 6003 still streamed.
	(host_connect 6003 zero $((cmib * 16)); ms > $d/end-6003) & s3=$!
	i=0; until grep -q '^OK ' $d/ok-6003 2>/dev/null || [ $i -gt 600 ]; do sleep 0.1; i=$((i + 1)); done
	host_connect 6002 echo 5 $d/echo.txt && echo_ok=1
	kill -0 $s3 2>/dev/null && during=1
	say "(c) echo done ($(wc -l < $d/echo.txt 2>/dev/null) lines), 6003 still streaming: $during"
	wait $s3
	say "(c) 6003 done"
	t4=$(cat $d/start-6003 2>/dev/null) t5=$(cat $d/end-6003 2>/dev/null)
	host_connect 6001 recv $d/g2h-b.bin; ms > $d/end-6001
	say "(b) 6001 done: $(bytes $d/g2h-b.bin) bytes"
	t0=$(cat $d/start-6000 2>/dev/null) t1=$(cat $d/end-6000 2>/dev/null)
	t2=$(cat $d/start-6001 2>/dev/null) t3=$(cat $d/end-6001 2>/dev/null)
	rtts=$(awk '{ printf "%s%s", (NR > 1 ? "," : ""), $3 }' $d/echo.txt 2>/dev/null)
	echo "dom0: echo replies: $(awk '{ printf "%s ", $2 }' $d/echo.txt 2>/dev/null)"
fi
ok=1; wait_guest_gone $name 90 || ok=0
echo "--- daemon log (last lines):"; tail -n 40 "$dlog"
echo "--- guest console:"; tr -d '\r' < "$(guest_log $name)" | grep -a '^E2E' | tail -n 12
for p in 5000 5001 6000 6001 6002 6003; do [ -s $d/socat-$p.err ] && echo "dom0 socat $p: $(tail -2 $d/socat-$p.err)"; done
if [ $ok = 0 ]; then
	tr -d '\r' < "$(guest_log $name)" | tail -n 30
	xl destroy $name 2>/dev/null; stop_daemons
	result FAIL vsock "guest still running 90 s after the transfers"; exit 0
fi
stop_daemons
a=$(guest_lines $name E2E-GUEST-VSOCK-SUMS-A | tail -1)
b=$(guest_lines $name E2E-GUEST-VSOCK-SUMS-B | tail -1)
field() { echo "$1" | sed -n "s/.*$2=\([^ ]*\).*/\1/p"; }
g2h=$(guest_lines $name E2E-GUEST-VSOCK | sed -n 's/^data .* sha256 \([0-9a-f]*\)$/\1/p' | tail -1)
want=$((mb * 1048576))
a_up=$(sha $d/g2h-a.bin) b_up=$(sha $d/g2h-b.bin)
echo "data: dom0 $h2g guest ${g2h:-none}"
echo "(a) up: dom0 got ${a_up:-none} ($(bytes $d/g2h-a.bin) bytes); down: guest got $(field "$a" down) ($(field "$a" down_bytes) bytes)"
echo "(b) down: guest got $(field "$b" down) ($(field "$b" down_bytes) bytes); up: dom0 got ${b_up:-none} ($(bytes $d/g2h-b.bin) bytes)"
c=$(guest_lines $name E2E-GUEST-VSOCK-SUMS-C | tail -1)
echo "(c) echo round trips (ms): ${rtts:-none}; 6003 stream still running after them: $during; the guest counted $(field "$c" bytes) bytes of it"
max_rtt=$(echo "$rtts" | tr ',' '\n' | sort -n | tail -1)
bad=""
[ -n "$g2h" ] || bad="$bad no guest data sum;"
[ "$a_up" = "$g2h" ] && [ "$(bytes $d/g2h-a.bin)" = $want ] || bad="$bad (a) guest->host differs;"
[ "$(field "$a" down)" = "$h2g" ] && [ "$(field "$a" down_bytes)" = $want ] || bad="$bad (a) host->guest differs;"
[ "$(field "$b" down)" = "$h2g" ] && [ "$(field "$b" down_bytes)" = $want ] || bad="$bad (b) host->guest differs;"
[ "$b_up" = "$g2h" ] && [ "$(bytes $d/g2h-b.bin)" = $want ] || bad="$bad (b) guest->host differs;"
[ $echo_ok = 1 ] && [ "$(wc -l < $d/echo.txt 2>/dev/null)" = 5 ] || bad="$bad (c) echo incomplete;"
[ $during = 1 ] || bad="$bad (c) the 6003 stream had ended before the echoes;"
[ "$(field "$c" bytes)" = $((cmib * 1048576)) ] || bad="$bad (c) the guest counted $(field "$c" bytes) bytes of the stream;"
[ -z "$max_rtt" ] || [ "$max_rtt" -le 2000 ] || bad="$bad (c) echo round trip $max_rtt ms > 2000;"
if [ -z "$bad" ]; then
	result PASS vsock "$mb MiB each way on each kind of connection, sha256 match (guest data $(echo $g2h | cut -c1-12)..., dom0 data $(echo $h2g | cut -c1-12)...):" \
		"guest->CID2:5000 up $(field "$a" up_mibs) MiB/s, CID2:5001 down $(field "$a" down_mibs) MiB/s;" \
		"host CONNECT 6000 down $(rate_ms $want $t0 $t1) MiB/s, CONNECT 6001 up $(rate_ms $want $t2 $t3) MiB/s;" \
		"echo on CONNECT 6002 while $cmib MiB streamed on CONNECT 6003 ($(rate_ms $((cmib * 1048576)) $t4 $t5) MiB/s): 5/5, round trips ${rtts} ms (max $max_rtt)"
else
	result FAIL vsock "$bad a=[$a] b=[$b]"
fi
