# Scenario "rng": virtio-rng served by xen-virtiod in explicit mode (mmio 0x02000000, SPI 33; the
# guest learns of it from a partial device tree). The guest reads /dev/hwrng.
# The guest is created paused and unpaused only once the daemon serves (xen-virtiod-create).
. /e2e/lib.sh
name=e2e-rng
have_daemon || { result SKIP rng "xen-virtiod is not in this dom0 (not buildable yet)"; exit 0; }
mkdir -p /run/xen-virtiod /var/log/xen-virtiod
cat > /run/xen-virtiod/$name.ini <<EOI
[guest]
name = $name
discovery = explicit
log_level = debug

[rng]
mmio = 0x02000000
irq = 33
EOI
cfg=$(guest_cfg $name one-window.cfg 'extra = "console=hvc0 rdinit=/init e2e.run=rng"')
dlog=/var/log/xen-virtiod/$name.log
say "xen-virtiod-create $cfg"
if ! XEN_VIRTIOD_SYSTEMD=no XEN_VIRTIOD_CONFIG_DIR=/run/xen-virtiod XEN_VIRTIOD_LOG_DIR=/var/log/xen-virtiod \
	xen-virtiod-create "$cfg"; then
	tail -n 20 "$dlog" 2>/dev/null
	result FAIL rng "xen-virtiod-create failed"; exit 0
fi
if ! wait_guest_gone $name 120; then
	tail -n 20 "$(guest_log $name)"; tail -n 20 "$dlog"
	result FAIL rng "guest still running after 120 s"; exit 0
fi
line=$(grep -a 'E2E-GUEST-RNG' "$(guest_log $name)" | tr -d '\r' | tail -1)
# The daemon notices the guest's death and exits on its own.
i=0; while pidof xen-virtiod >/dev/null && [ $i -lt 20 ]; do sleep 0.5; i=$((i + 1)); done
pidof xen-virtiod >/dev/null && say "xen-virtiod still running 10 s after the guest died"
echo "--- daemon log (last lines):"; tail -n 15 "$dlog"
echo "--- guest console:"; tr -d '\r' < "$(guest_log $name)" | grep -v '^\[' | tail -n 10
case $line in
*"bytes=64 "*) result PASS rng "guest: $line" ;;
*) result FAIL rng "guest: ${line:-no E2E-GUEST-RNG line}" ;;
esac
for p in $(pidof xen-virtiod); do kill "$p"; done
