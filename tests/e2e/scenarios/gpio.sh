# Scenario "gpio": virtio-gpio served by xen-virtiod in explicit mode with four simulated lines,
# a button (pull-up), an LED and a loopback pair out0 -> in0, and the host's control socket.
# The guest's gpioinfo shows the names; gpioset on out0 is read back on in0 with gpioget; dom0
# reads the LED the guest lights (socat on the control socket), presses the button while the
# guest's gpiomon waits for a falling edge, reads the LED put out, and releases the button for
# a rising edge. Every step waits for a condition (a guest line, the line armed), bounded.
# e2e-timeout: 360
. /e2e/lib.sh
name=e2e-gpio
have_daemon || { result SKIP gpio "xen-virtiod is not in this dom0 (not buildable yet)"; exit 0; }
command -v socat >/dev/null || { result FAIL gpio "no socat in dom0 (rootfs phase)"; exit 0; }
sock=$XVD_RUN/$name-gpio.sock
explicit_ini $name <<EOI
[gpio "gpio0"]
mmio = 0x02000000
irq = 33
line = button pull-up
line = led
line = out0
line = in0
loopback = out0:in0
control = $sock
EOI
cfg=$(guest_cfg $name one-window.cfg 'extra = "console=hvc0 rdinit=/init e2e.run=gpio"')
dlog=$(daemon_log $name)

# ctl COMMAND: one command on the control socket; prints the answer (its last line ok/err).
ctl() { echo "$1" | socat -t 5 - "UNIX-CONNECT:$sock" 2>&1; }
# ctl_until SECONDS COMMAND REGEX: repeat COMMAND until its answer matches; prints the last one.
ctl_until() {
	i=0
	while :; do
		a=$(ctl "$2")
		echo "$a" | grep -Eq "$3" && break
		i=$((i + 1)); [ $i -gt $(($1 * 4)) ] && break
		sleep 0.25
	done
	echo "$a"
}
# give_up WHY: the logs, the guest destroyed, a FAIL result.
give_up() {
	echo "--- daemon log:"; tail -n 20 "$dlog"
	echo "--- guest console:"; tr -d '\r' < "$(guest_log $name)" | grep -v '^\[' | tail -n 30
	echo "--- control socket list:"; ctl list
	xl destroy $name 2>/dev/null
	stop_daemons
	result FAIL gpio "$1"
	exit 0
}

start_explicit gpio $name "$cfg" || exit 0
[ -S "$sock" ] || give_up "no control socket $sock"
say "control socket before the guest's driver: $(ctl list | tr '\n' ';')"

wait_log $name 'E2E-GUEST-GPIO-WAIT-PRESS|E2E-GUEST-EXIT' 120 || give_up "the guest never waited for the button"
grep -q 'E2E-GUEST-GPIO-WAIT-PRESS' "$(guest_log $name)" || give_up "the guest stopped before the button"
led_on=$(ctl_until 20 'get led' '^ok 1$' | tail -1)
armed=$(ctl_until 30 list 'button .*irq=edge-falling armed')
echo "$armed" | grep -q 'button .*irq=edge-falling armed' || give_up "the button's falling edge was never armed (LED: $led_on)"
say "list: $(echo "$armed" | tr '\n' ';')"
press=$(ctl 'set button 0' | tail -1)
say "set button 0: $press"

wait_log $name 'E2E-GUEST-GPIO-WAIT-RELEASE|E2E-GUEST-EXIT' 60 || give_up "no falling edge seen by the guest"
led_off=$(ctl_until 20 'get led' '^ok 0$' | tail -1)
armed=$(ctl_until 30 list 'button .*irq=edge-rising armed')
echo "$armed" | grep -q 'button .*irq=edge-rising armed' || give_up "the button's rising edge was never armed"
release=$(ctl 'set button 1' | tail -1)
say "set button 1: $release"

wait_gone_or_fail gpio $name 60 || { stop_daemons; exit 0; }
echo "--- daemon log (last lines):"; tail -n 15 "$dlog"
echo "--- guest console:"; tr -d '\r' < "$(guest_log $name)" | grep -v '^\[' | tail -n 30
stop_daemons
names=$(guest_lines $name E2E-GUEST-GPIO-NAMES | tail -1)
loop=$(guest_lines $name E2E-GUEST-GPIO-LOOP | tail -1)
fall=$(guest_lines $name E2E-GUEST-GPIO-FALL | tail -1)
rise=$(guest_lines $name E2E-GUEST-GPIO-RISE | tail -1)
errs=$(guest_lines $name E2E-GUEST-GPIO-ERROR | head -1)
fall_ev=$(echo "$fall" | sed -n 's/.*\(event: *FALLING EDGE offset: *[0-9]*\).*/\1/p')
rise_ev=$(echo "$rise" | sed -n 's/.*\(event: *RISING EDGE offset: *[0-9]*\).*/\1/p')
ok=1
case $names in *0=button*1=led*2=out0*3=in0*) ;; *) ok="";; esac
[ "$loop" = "in0 idle=0 out0=1:in0=1 out0=0:in0=0" ] || ok=""
[ "$led_on|$press|$led_off|$release" = "ok 1|ok|ok 0|ok" ] || ok=""
[ -n "$fall_ev" ] && [ -n "$rise_ev" ] && [ -z "$errs" ] || ok=""
if [ -n "$ok" ]; then
	result PASS gpio "guest gpioinfo: [${names% }]; loopback $loop; dom0 read the LED '$led_on'" \
		"while lit, '$led_off' after; dom0 pressed and released the button, the guest's gpiomon" \
		"saw '$fall_ev', '$rise_ev'"
else
	result FAIL gpio "names [$names] loop [$loop] led on [$led_on] off [$led_off] press [$press]" \
		"release [$release] fall [$fall] rise [$rise] ${errs:+error [$errs]}"
fi
