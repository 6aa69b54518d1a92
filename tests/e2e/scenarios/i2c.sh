# Scenario "i2c": virtio-i2c served by xen-virtiod in explicit mode with a simulated EEPROM (0x50)
# and LM75 (0x48). The guest's i2cdetect finds both; i2cset/i2cget round-trip a byte.
. /e2e/lib.sh
name=e2e-i2c
have_daemon || { result SKIP i2c "xen-virtiod is not in this dom0 (not buildable yet)"; exit 0; }
explicit_ini $name <<EOI
[i2c "bus0"]
mmio = 0x02000000
irq = 33
sim = eeprom@0x50
sim = lm75@0x48
EOI
cfg=$(guest_cfg $name one-window.cfg 'extra = "console=hvc0 rdinit=/init e2e.run=i2c"')
run_explicit i2c $name "$cfg" 120 || exit 0
echo "--- daemon log (last lines):"; tail -n 15 "$(daemon_log $name)"
echo "--- guest console:"; tr -d '\r' < "$(guest_log $name)" | grep -v '^\[' | tail -n 20
det=$(guest_lines $name E2E-GUEST-I2C-DETECT | tail -1)
rt=$(guest_lines $name E2E-GUEST-I2C-RT | tail -1)
case "$det|$rt" in
*48*50*"|"*"got=0xa5"*) result PASS i2c "guest: detected [$det], eeprom round trip: $rt" ;;
*) result FAIL i2c "guest: detected [${det:-nothing}], round trip: ${rt:-none}" ;;
esac
stop_daemons
