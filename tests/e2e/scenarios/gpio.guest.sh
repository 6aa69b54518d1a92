# Guest half of scenario "gpio": libgpiod's v1.6 tools on the virtio-gpio chip. Lists the line
# names; drives the loopback output out0 and reads in0; lights the LED and waits for dom0 to
# press the button (a falling edge), puts the LED out and waits for the release (a rising edge).
# dom0 acts on the E2E-GUEST-GPIO-WAIT-* lines; every wait here is bounded.
chip=$(gpiodetect 2>/dev/null | awk '{ print $1; exit }')
[ -n "$chip" ] || { echo "E2E-GUEST-GPIO-ERROR no gpiochip (virtio: $(ls /sys/bus/virtio/devices | tr '\n' ' '))"; exit 1; }
gpiodetect
gpioinfo "$chip"
echo "E2E-GUEST-GPIO-NAMES $(gpioinfo "$chip" | sed -n 's/^[[:space:]]*line *\([0-9]*\): *"\([^"]*\)".*/\1=\2/p' | tr '\n' ' ')"
# gpiofind NAME prints "gpiochip0 OFFSET".
off() { gpiofind "$1" | awk '{ print $2 }'; }
btn=$(off button) led=$(off led) out=$(off out0) in=$(off in0)
echo "E2E-GUEST-GPIO-OFFSETS button=$btn led=$led out0=$out in0=$in"
[ -n "$btn" ] && [ -n "$led" ] && [ -n "$out" ] && [ -n "$in" ] || exit 1

# held OFFSET PROGRAM: wait (at most 20 s) until gpioinfo shows the line requested by PROGRAM
# (gpioset has then driven its value: the request sets it).
held() {
	i=0
	while ! gpioinfo "$chip" | grep -q "line *$1:.*\"$2\""; do
		i=$((i + 1)); [ $i -gt 100 ] && return 1
		sleep 0.2
	done
}

# Loopback: in0 reads what the guest drives on out0 while out0 is an output.
idle=$(gpioget "$chip" "$in")
loop=""
for v in 1 0; do
	gpioset --mode=signal "$chip" "$out=$v" &
	sp=$!
	held "$out" gpioset || echo "E2E-GUEST-GPIO-ERROR out0 not requested by gpioset"
	loop="$loop out0=$v:in0=$(gpioget "$chip" "$in")"
	kill $sp; wait $sp
done
echo "E2E-GUEST-GPIO-LOOP in0 idle=$idle$loop"

# The LED on (held by gpioset), gpiomon on the button; dom0 reads the LED, then presses.
gpioset --mode=signal "$chip" "$led=1" &
lp=$!
held "$led" gpioset || echo "E2E-GUEST-GPIO-ERROR led not requested by gpioset"
timeout 120 gpiomon --num-events=1 --falling-edge "$chip" "$btn" > /tmp/fall 2>&1 &
mp=$!
echo "E2E-GUEST-GPIO-WAIT-PRESS led=1 (gpioset pid $lp), gpiomon --falling-edge on line $btn"
wait $mp
echo "E2E-GUEST-GPIO-FALL rc=$? $(cat /tmp/fall)"
kill $lp; wait $lp

# The LED out; dom0 reads it, then releases the button.
timeout 120 gpiomon --num-events=1 --rising-edge "$chip" "$btn" > /tmp/rise 2>&1 &
mp=$!
echo "E2E-GUEST-GPIO-WAIT-RELEASE led released, gpiomon --rising-edge on line $btn"
wait $mp
echo "E2E-GUEST-GPIO-RISE rc=$? $(cat /tmp/rise)"
gpioinfo "$chip"
