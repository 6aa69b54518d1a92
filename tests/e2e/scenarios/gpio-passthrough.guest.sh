# Guest half of scenario "gpio-passthrough": the virtio gpiochip shows the two passed lines (led,
# button); drive led high until dom0 has read it, wait for button to read 1 (dom0 pulls it up),
# then wait for one rising edge on button (dom0 pulls it down and up).
command -v gpioset >/dev/null || { echo "E2E-GUEST-GPIO-NAMES no gpioset in this guest"; exit 1; }
chip=$(gpiofind led | cut -d' ' -f1)
[ -n "$chip" ] || { echo "E2E-GUEST-GPIO-NAMES none ($(gpiodetect 2>&1); virtio: $(ls /sys/bus/virtio/devices))"; exit 1; }
gpioinfo "$chip"
echo "E2E-GUEST-GPIO-NAMES $chip $(gpioinfo "$chip" | sed -n 's/.*line *[0-9]*: *"\([^"]*\)".*/\1/p' | tr '\n' ' ')"
gpioset --mode=signal "$chip" 0=1 &
setpid=$!
sleep 1
echo "E2E-GUEST-GPIO-OUT led=1 (gpioset pid $setpid)"
v=x i=0
while [ $i -lt 60 ]; do
	v=$(gpioget "$chip" 1)
	[ "$v" = 1 ] && break
	sleep 0.5; i=$((i + 1))
done
echo "E2E-GUEST-GPIO-IN button=$v after $i polls"
kill "$setpid"; wait "$setpid" 2>/dev/null
timeout 40 gpiomon --num-events=1 --rising-edge "$chip" 1 > /tmp/mon 2>&1 &
monpid=$!
sleep 1
echo "E2E-GUEST-GPIO-MON armed"
wait "$monpid"
echo "E2E-GUEST-GPIO-EDGE rc=$? $(tr '\n' ' ' < /tmp/mon)"
