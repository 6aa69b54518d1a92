# Scenario "rng": virtio-rng served by xen-virtiod in explicit mode (mmio 0x02000000, SPI 33; the
# guest learns of it from a partial device tree). The guest reads /dev/hwrng.
# The guest is created paused and unpaused only once the daemon serves (xen-virtiod-create).
. /e2e/lib.sh
name=e2e-rng
have_daemon || { result SKIP rng "xen-virtiod is not in this dom0 (not buildable yet)"; exit 0; }
explicit_ini $name <<EOI
[rng]
mmio = 0x02000000
irq = 33
EOI
cfg=$(guest_cfg $name one-window.cfg 'extra = "console=hvc0 rdinit=/init e2e.run=rng"')
run_explicit rng $name "$cfg" 120 || exit 0
line=$(guest_lines $name E2E-GUEST-RNG | tail -1)
# The daemon notices the guest's death and exits on its own.
wait_daemons_exit 10 || say "xen-virtiod still running 10 s after the guest died"
echo "--- daemon log (last lines):"; tail -n 15 "$(daemon_log $name)"
echo "--- guest console:"; tr -d '\r' < "$(guest_log $name)" | grep -v '^\[' | tail -n 10
case $line in
*"bytes=64 "*) result PASS rng "guest: E2E-GUEST-RNG $line" ;;
*) result FAIL rng "guest: ${line:-no E2E-GUEST-RNG line}" ;;
esac
stop_daemons
