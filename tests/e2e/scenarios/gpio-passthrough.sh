# Scenario "gpio-passthrough": dom0 makes a simulated gpiochip (gpio-sim through configfs, 4
# lines) and xen-virtiod passes two of its lines to the guest (pass = 3=led, pass = 1=button:
# the guest's lines 0 and 1). The guest drives led high (dom0 reads sim_gpio3/value), reads
# button after dom0 pulls it up (sim_gpio1/pull), and gpiomon sees the rising edge when dom0
# pulls it down and up again.
. /e2e/lib.sh
name=e2e-gpiopt
s=gpio-passthrough
have_daemon || { result SKIP $s "xen-virtiod is not in this dom0 (not buildable yet)"; exit 0; }
cfs=/sys/kernel/config
[ -d "$cfs/gpio-sim" ] || mount -t configfs none "$cfs" 2>/dev/null
[ -d "$cfs/gpio-sim" ] || { result SKIP $s "no gpio-sim in this kernel (CONFIG_GPIO_SIM)"; exit 0; }
sim=$cfs/gpio-sim/e2e
[ -d "$sim" ] || {
	mkdir "$sim" "$sim/bank0"
	echo 4 > "$sim/bank0/num_lines"
	mkdir "$sim/bank0/line1" "$sim/bank0/line3"
	echo sim-button > "$sim/bank0/line1/name"
	echo sim-led > "$sim/bank0/line3/name"
	echo 1 > "$sim/live"
}
chip=$(cat "$sim/bank0/chip_name")
sysd=/sys/devices/platform/$(cat "$sim/dev_name")/$chip
say "gpio-sim: $chip at $sysd ($(ls -d "$sysd"/sim_gpio* | wc -l) lines), /dev/$chip: $(ls -l "/dev/$chip" 2>&1)"
echo pull-down > "$sysd/sim_gpio1/pull"
explicit_ini $name <<EOI
[gpio "host"]
mmio = 0x02000000
irq = 33
chip = $chip
pass = 3=led
pass = 1=button
EOI
cfg=$(guest_cfg $name one-window.cfg 'extra = "console=hvc0 rdinit=/init e2e.run=gpio-passthrough"')
start_explicit $s $name "$cfg" || exit 0
led=none btn_pulled=no flips=no
if wait_log $name 'E2E-GUEST-GPIO-OUT' 90; then
	led=$(cat "$sysd/sim_gpio3/value")
	echo pull-up > "$sysd/sim_gpio1/pull"; btn_pulled=yes
fi
led_freed=none
if wait_log $name 'E2E-GUEST-GPIO-MON armed' 60; then
	# gpioset has exited: the guest set direction none, the daemon released offset 3, and
	# gpio-sim reads its pull (down: 0) again.
	led_freed=$(cat "$sysd/sim_gpio3/value")
	sleep 1
	echo pull-down > "$sysd/sim_gpio1/pull"; sleep 0.5
	echo pull-up > "$sysd/sim_gpio1/pull"; flips=yes
fi
wait_gone_or_fail $s $name 90 || { stop_daemons; exit 0; }
echo "--- daemon log (last lines):"; tail -n 20 "$(daemon_log $name)"
echo "--- guest console:"; tr -d '\r' < "$(guest_log $name)" | grep -v '^\[' | tail -n 25
names=$(guest_lines $name E2E-GUEST-GPIO-NAMES | tail -1)
in=$(guest_lines $name E2E-GUEST-GPIO-IN | tail -1)
edge=$(guest_lines $name E2E-GUEST-GPIO-EDGE | tail -1)
ev="dom0 read led (host offset 3)=$led, $led_freed once released; guest: lines [$names], input [$in] after pull-up=$btn_pulled, edge [$edge] after flips=$flips"
case "$led|$names|$in|$edge" in
"1|"*led*button*"|button=1 "*"|"*RISING*) result PASS $s "$ev" ;;
*) result FAIL $s "$ev" ;;
esac
stop_daemons
