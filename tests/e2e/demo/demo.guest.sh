# Guest half of `make demo` (run by the guest's /init for e2e.run=demo, on hvc0 = Xen's PV
# console, which dom0 shows with `xl console demo`). Uses each virtio device xen-virtiod serves,
# printing the commands, their output, and one evidence line per device:
#   DEMO-OK <device> <evidence>   or   DEMO-FAIL <device> <why>
# then (interactive) leaves a shell, or (demo.batch=1 on the command line) returns: /init powers
# the guest off.
batch=$(grep -q 'demo\.batch=1' /proc/cmdline && echo 1)

step() { echo; echo "=== $*"; }
# run 'COMMAND LINE': show it as typed at the guest's prompt, then run it.
run() { echo "guest# $1"; sh -c "$1"; }
ok() { d=$1; shift; echo "DEMO-OK $d $*"; }
fail() { d=$1; shift; echo "DEMO-FAIL $d $*"; }

step "the guest's virtio devices (partial device tree; all served by one xen-virtiod in dom0)"
for d in /sys/bus/virtio/devices/*; do
	[ -e "$d" ] || continue
	drv=$(basename "$(readlink "$d/driver" 2>/dev/null)" 2>/dev/null)
	echo "  $(basename "$d"): device id $(cat "$d/device") driver ${drv:-none}"
done

# ---- virtio-blk ----------------------------------------------------------------------------
step "virtio-blk: ext4 on /dev/vda (a 64 MiB image file in dom0)"
if [ -b /dev/vda ]; then
	run "cat /sys/block/vda/size; echo serial \$(cat /sys/block/vda/serial)"
	run "mkfs.ext4 -q -F -L demo /dev/vda" &&
	run "mkdir -p /mnt && mount /dev/vda /mnt" &&
	run "echo 'hello from the guest' > /mnt/hello.txt && dd if=/dev/urandom of=/mnt/random.bin bs=64k count=16 2>/dev/null" &&
	w=$(sha256sum /mnt/random.bin | cut -c1-16) &&
	run "sync && umount /mnt && echo 3 > /proc/sys/vm/drop_caches" &&
	run "mount /dev/vda /mnt && cat /mnt/hello.txt && sha256sum /mnt/random.bin && df -k /mnt | tail -1"
	r=$(sha256sum /mnt/random.bin 2>/dev/null | cut -c1-16)
	hello=$(cat /mnt/hello.txt 2>/dev/null)
	if [ -n "$w" ] && [ "$w" = "$r" ] && [ "$hello" = "hello from the guest" ]; then
		ok blk "ext4 made, 1 MiB written, unmounted, remounted and read back (sha256 $r...)"
	else
		fail blk "read back sha256 ${r:-none} != written ${w:-none} (hello.txt: ${hello:-missing})"
	fi
else
	fail blk "no /dev/vda"
fi

# ---- virtio-net ----------------------------------------------------------------------------
step "virtio-net: eth0 <-> a tap in dom0 on bridge xenbr0 (dom0 is 10.0.0.1)"
if [ -e /sys/class/net/eth0 ]; then
	run "ip link set lo up; ip link set eth0 up && ip addr add 10.0.0.2/24 dev eth0"
	run "cat /sys/class/net/eth0/address"
	i=0; while [ "$(cat /sys/class/net/eth0/carrier 2>/dev/null)" != 1 ] && [ $i -lt 20 ]; do sleep 0.5; i=$((i + 1)); done
	out=$(ping -c 3 -w 20 10.0.0.1 2>&1); echo "guest# ping -c 3 10.0.0.1"; echo "$out"
	if echo "$out" | grep -q ' 0% packet loss\| [1-3] packets received'; then
		got=$(echo "$out" | grep 'packets received')
		# TCP: 1 MiB from busybox httpd in dom0, checksummed against dom0's own sha256.
		run "timeout 60 wget -q -O /tmp/blob http://10.0.0.1/blob && timeout 30 wget -q -O /tmp/blob.sha256 http://10.0.0.1/blob.sha256"
		a=$(sha256sum /tmp/blob 2>/dev/null | cut -d' ' -f1)
		b=$(cut -d' ' -f1 /tmp/blob.sha256 2>/dev/null)
		echo "  sha256 here: $a"; echo "  dom0's:      $b"
		if [ -n "$a" ] && [ "$a" = "$b" ]; then
			ok net "ping 10.0.0.1: $got; 1 MiB over TCP (http from dom0), sha256 matches"
		else
			fail net "ping ok ($got) but the 1 MiB TCP download failed or differs"
		fi
	else
		fail net "ping 10.0.0.1 failed: $(echo "$out" | tail -1)"
	fi
else
	fail net "no eth0"
fi

# ---- virtio-console ------------------------------------------------------------------------
step "virtio-console: /dev/hvc1 <-> the daemon's socket and log in dom0"
cons=/dev/hvc1
if [ -c $cons ]; then
	exec 3<>$cons
	stty raw -echo <&3 2>/dev/null
	run "echo 'hello dom0, this is the guest on virtio-console' > $cons"
	echo "(waiting for dom0's answer through the daemon's console socket)"
	reply=""
	read -t 60 reply <&3
	reply=$(echo "$reply" | tr -d '\r')
	exec 3<&-
	echo "guest read from $cons: ${reply:-nothing}"
	case $reply in
	*"hello guest"*) ok console "wrote a line to $cons (dom0 reads it on the socket); read dom0's reply: '$reply'" ;;
	*) fail console "no reply from dom0 on $cons within 60 s" ;;
	esac
	sleep 4	# dom0's client detaches (a line in the daemon's log)
else
	fail console "no $cons (ttys: $(ls /sys/class/tty | grep hvc | tr '\n' ' '))"
fi

# ---- virtio-i2c ----------------------------------------------------------------------------
step "virtio-i2c: simulated 24C02 EEPROM @0x50 and LM75 @0x48"
bus=$(ls /sys/class/i2c-dev 2>/dev/null | head -1 | sed 's/i2c-//')
if [ -n "$bus" ]; then
	# -r: read-byte probes (virtio-i2c in Linux has no SMBus quick command)
	run "i2cdetect -y -r $bus"
	found=$(i2cdetect -y -r "$bus" | awk 'NR > 1 { for (i = 2; i <= NF; i++) if ($i ~ /^[0-9a-f][0-9a-f]$/) printf "%s ", $i }')
	run "i2cset -y $bus 0x50 0x10 0x41"
	got=$(i2cget -y "$bus" 0x50 0x10); echo "guest# i2cget -y $bus 0x50 0x10"; echo "$got"
	temp=$(i2cget -y "$bus" 0x48 0x00 w); echo "guest# i2cget -y $bus 0x48 0x00 w"; echo "$temp"
	# SMBus word order: the low byte is the LM75's MSB (whole degrees), bit 7 of the high byte .5
	deg=$(( temp & 0xff )).$(( (temp >> 15 & 1) * 5 ))
	echo "  LM75: $deg degrees C"
	case "$found|$got" in
	*48*50*"|0x41") ok i2c "i2cdetect found [${found% }], EEPROM 0x10 wrote 0x41 read $got, LM75 $deg C" ;;
	*) fail i2c "found [${found% }], EEPROM read ${got:-nothing} (wanted 0x41), LM75 ${temp:-nothing}" ;;
	esac
else
	fail i2c "no /dev/i2c-* (virtio: $(ls /sys/bus/virtio/devices | tr '\n' ' '))"
fi

# ---- virtio-rng ----------------------------------------------------------------------------
step "virtio-rng: /dev/hwrng"
run "cat /sys/class/misc/hw_random/rng_current"
run "timeout 20 head -c 32 /dev/hwrng | od -An -tx1"
n=$(timeout 20 head -c 32 /dev/hwrng 2>/dev/null | wc -c)
cur=$(cat /sys/class/misc/hw_random/rng_current 2>/dev/null)
case "$n|$cur" in
32"|"*virtio*) ok rng "read 32 bytes from /dev/hwrng (rng_current=$cur)" ;;
*) fail rng "read $n bytes from /dev/hwrng (rng_current=${cur:-none})" ;;
esac

# ---- virtio-gpio ---------------------------------------------------------------------------
step "virtio-gpio: simulated lines (button, LED, loopback out0 -> in0) and dom0's control socket"
chip=$(gpiodetect 2>/dev/null | awk '{ print $1; exit }')
if [ -n "$chip" ]; then
	run "gpiodetect"
	run "gpioinfo $chip"
	names=$(gpioinfo "$chip" | sed -n 's/^[[:space:]]*line *[0-9]*: *"\([^"]*\)".*/\1/p' | tr '\n' ' ')
	off() { gpiofind "$1" | awk '{ print $2 }'; }
	btn=$(off button) led=$(off led) out=$(off out0) in=$(off in0)
	# held OFFSET: wait (at most 20 s) until gpioset holds the line (its value is then driven).
	held() {
		i=0
		while ! gpioinfo "$chip" | grep -q "line *$1:.*\"gpioset\""; do
			i=$((i + 1)); [ $i -gt 100 ] && return 1
			sleep 0.2
		done
	}
	loop=""
	for v in 1 0; do
		echo "guest# gpioset --mode=signal $chip $out=$v &     # out0 (line $out) driven while gpioset runs"
		gpioset --mode=signal "$chip" "$out=$v" &
		sp=$!
		held "$out"
		r=$(gpioget "$chip" "$in"); echo "guest# gpioget $chip $in     # in0"; echo "$r"
		loop="$loop out0=$v->in0=$r"
		kill $sp; wait $sp
	done
	echo "guest# gpioset --mode=signal $chip $led=1 &     # the LED on; dom0 reads it"
	gpioset --mode=signal "$chip" "$led=1" &
	lp=$!
	held "$led"
	echo "guest# timeout 60 gpiomon --num-events=1 --falling-edge $chip $btn     # dom0 presses the button"
	echo "DEMO-GPIO-WAIT (dom0: get led, then set button 0)"
	ev=$(timeout 60 gpiomon --num-events=1 --falling-edge "$chip" "$btn" 2>&1)
	echo "$ev"
	kill $lp; wait $lp
	ev=$(echo "$ev" | sed -n 's/.*\(event: *FALLING EDGE offset: *[0-9]*\).*/\1/p')
	case "$names|$loop|$ev" in
	"button led out0 in0 | out0=1->in0=1 out0=0->in0=0|event"*)
		ok gpio "gpioinfo names [${names% }], loopback$loop, button pressed by dom0: gpiomon '$ev'" ;;
	*) fail gpio "names [${names% }], loopback [$loop], button event [${ev:-none}]" ;;
	esac
else
	fail gpio "no gpiochip (virtio: $(ls /sys/bus/virtio/devices | tr '\n' ' '))"
fi

# ---- virtio-vsock --------------------------------------------------------------------------
step "virtio-vsock: AF_VSOCK streams to dom0 (CID 2), whose side is unix sockets"
if [ -e /dev/vsock ] && command -v socat >/dev/null; then
	# guest -> dom0: CID 2 port 5000 is dom0's unix socket demo-vsock.sock_5000 (a socat there)
	echo "guest# echo 'hello dom0 over vsock' | socat -t 10 - VSOCK-CONNECT:2:5000"
	reply=$(echo 'hello dom0 over vsock' | timeout 20 socat -t 10 - VSOCK-CONNECT:2:5000 2>&1)
	echo "$reply"
	# dom0 -> guest: listen on port 1234; dom0 connects to demo-vsock.sock with "CONNECT 1234"
	echo "guest# socat -u VSOCK-LISTEN:1234 -      (dom0 connects: CONNECT 1234)"
	timeout 60 socat -u VSOCK-LISTEN:1234 - > /tmp/vsock-in.txt 2>&1 &
	lpid=$!
	echo "DEMO-VSOCK-LISTENING 1234"
	wait $lpid
	got=$(cat /tmp/vsock-in.txt)
	echo "$got"
	case "$reply|$got" in
	*"dom0 read 'hello dom0 over vsock'"*"|"*"hello guest over vsock"*)
		ok vsock "to CID 2 port 5000: dom0 answered '$reply'; from dom0 on port 1234: '$got'" ;;
	*) fail vsock "to CID 2 port 5000: '${reply:-nothing}'; on port 1234: '${got:-nothing}'" ;;
	esac
else
	fail vsock "no /dev/vsock or no socat (virtio: $(ls /sys/bus/virtio/devices | tr '\n' ' '))"
fi

echo
echo "DEMO-GUEST-DONE"
sleep 3	# dom0 asks the daemon for its view of the devices (SIGUSR1), shown here
if [ -z "$batch" ]; then
	cat <<EOT

=== You are at the guest's shell (hvc0, through dom0's 'xl console demo').
  The disk is mounted at /mnt; eth0 is 10.0.0.2 (dom0: 10.0.0.1); i2c bus $bus; /dev/hwrng;
  /dev/hvc1 is the virtio console; $chip the virtio GPIO chip (button, led, out0, in0).
  Try: ping 10.0.0.1, i2cdump -y $bus 0x50, od -x /dev/hwrng | head, gpioinfo $chip,
  gpiomon $chip 0 (then in dom0: echo 'set button 0' | socat - UNIX-CONNECT:/run/xen-virtiod/demo-gpio.sock)
  vsock: echo hi | socat -t 5 - VSOCK-CONNECT:2:5000
  Ctrl-] leaves the console (to a dom0 shell); Ctrl-a x quits QEMU; 'poweroff -f' stops the guest.
EOT
	PS1='guest:\w# ' setsid cttyhack sh
fi
