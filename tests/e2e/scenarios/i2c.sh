# Scenario "i2c": virtio-i2c served by xen-virtiod in explicit mode with a simulated EEPROM (0x50)
# and LM75 (0x48). The guest's i2cdetect finds both; i2cset/i2cget round-trip a byte.
. /e2e/lib.sh
name=e2e-i2c
have_daemon || { result SKIP i2c "xen-virtiod is not in this dom0 (not buildable yet)"; exit 0; }
mkdir -p /run/xen-virtiod /var/log/xen-virtiod
cat > /run/xen-virtiod/$name.ini <<EOI
[guest]
name = $name
discovery = explicit
log_level = debug

[i2c "bus0"]
mmio = 0x02000000
irq = 33
sim = eeprom@0x50
sim = lm75@0x48
EOI
cfg=$(guest_cfg $name one-window.cfg 'extra = "console=hvc0 rdinit=/init e2e.run=i2c"')
dlog=/var/log/xen-virtiod/$name.log
say "xen-virtiod-create $cfg"
if ! XEN_VIRTIOD_SYSTEMD=no XEN_VIRTIOD_CONFIG_DIR=/run/xen-virtiod XEN_VIRTIOD_LOG_DIR=/var/log/xen-virtiod \
	xen-virtiod-create "$cfg"; then
	tail -n 20 "$dlog" 2>/dev/null
	result FAIL i2c "xen-virtiod-create failed"; exit 0
fi
if ! wait_guest_gone $name 120; then
	tail -n 20 "$(guest_log $name)"; tail -n 20 "$dlog"
	result FAIL i2c "guest still running after 120 s"; exit 0
fi
glog=$(guest_log $name)
echo "--- daemon log (last lines):"; tail -n 15 "$dlog"
echo "--- guest console:"; tr -d '\r' < "$glog" | grep -v '^\[' | tail -n 20
det=$(tr -d '\r' < "$glog" | sed -n 's/^E2E-GUEST-I2C-DETECT //p' | tail -1)
rt=$(tr -d '\r' < "$glog" | sed -n 's/^E2E-GUEST-I2C-RT //p' | tail -1)
case "$det|$rt" in
*48*50*"|"*"got=0xa5"*) result PASS i2c "guest: detected [$det], eeprom round trip: $rt" ;;
*) result FAIL i2c "guest: detected [${det:-nothing}], round trip: ${rt:-none}" ;;
esac
for p in $(pidof xen-virtiod); do kill "$p"; done
