# Scenario "ops": the operator's tools on real Xen, from the installed arm64 package.
#   1. the package is installed (dpkg -l: ii) and xen-virtiod --version matches it;
#   2. xen-virtiod --check-host: every item OK (IOREQ-enabled hypervisor from the package
#      scripts/build-xen-ioreq.sh makes, privcmd eventfds, xenstored, seccomp, tap, bridge);
#   3. a guest using virtio-rng (explicit mode, xen-virtiod-create), then xen-virtiodctl list,
#      status, status --json and metrics against its instance: the device is DRIVER_OK and its
#      queue enabled, the metrics count the guest's register accesses.
. /e2e/lib.sh
name=e2e-ops
have_daemon || { result SKIP ops "xen-virtiod is not in this dom0 (not buildable yet)"; exit 0; }
pkg=$(dpkg -l xen-virtiod 2>/dev/null | awk '$2 == "xen-virtiod" { print $1 " " $3 }')
ver=$(xen-virtiod --version)
say "package: $pkg; $ver; $(command -v xen-virtiod) $(command -v xen-virtiodctl)"
case "$pkg" in
"ii "*) [ "xen-virtiod ${pkg#ii }" = "$ver" ] || { result FAIL ops "package $pkg but $ver"; exit 0; } ;;
*) result FAIL ops "xen-virtiod is not installed from its package (dpkg -l: '${pkg:-nothing}')"; exit 0 ;;
esac

say "xen-virtiod --check-host"
xen-virtiod --check-host > /run/check-host.out 2>&1
crc=$?
sed 's/^/    /' /run/check-host.out
nok=$(grep -c '^OK ' /run/check-host.out)
nall=$(grep -c . /run/check-host.out)
if [ "$crc" -ne 0 ] || [ "$nok" -ne "$nall" ]; then
	result FAIL ops "check-host exit $crc, $nok of $nall items OK: $(grep -v '^OK ' /run/check-host.out | head -3 | tr '\n' ';')"
	exit 0
fi

explicit_ini $name <<EOI
[rng]
mmio = 0x02000000
irq = 33
EOI
cfg=$(guest_cfg $name one-window.cfg 'extra = "console=hvc0 rdinit=/init e2e.run=ops"')
start_explicit ops $name "$cfg" || exit 0
if ! wait_log $name 'E2E-GUEST-OPS bytes=' 120; then
	tail -n 20 "$(guest_log $name)"; xl destroy $name
	result FAIL ops "the guest did not read its rng"; exit 0
fi
fail=""
xen-virtiodctl list > /run/ops.list 2>&1 || fail="$fail list-exit"
xen-virtiodctl status $name > /run/ops.status 2>&1 || fail="$fail status-exit"
xen-virtiodctl status $name --json > /run/ops.json 2>&1 || fail="$fail json-exit"
xen-virtiodctl metrics > /run/ops.metrics 2>&1 || fail="$fail metrics-exit"
xl destroy $name
echo "--- xen-virtiodctl list:"; cat /run/ops.list
echo "--- xen-virtiodctl status $name:"; cat /run/ops.status
echo "--- xen-virtiodctl status $name --json (first 400 bytes):"; head -c 400 /run/ops.json; echo
echo "--- xen-virtiodctl metrics (instance, Xen and rng lines):"
grep -E '^xen_virtiod_(instance_info|xen_ioreqs_total|xen_irqs_total|xen_fastpath|device_status|queue_enabled)\{' /run/ops.metrics
grep -q "^$name " /run/ops.list || fail="$fail list"
grep -q "^device rng: .* status=0x0f" /run/ops.status || fail="$fail status-driver-ok"
grep -q "queue 0: enabled=1 " /run/ops.status || fail="$fail status-queue"
grep -q "\"guest\":\"$name\"" /run/ops.json && grep -q '"devices":\[{"type":"rng"' /run/ops.json ||
	fail="$fail json"
ioreqs=$(sed -n "s/^xen_virtiod_xen_ioreqs_total{guest=\"$name\"} //p" /run/ops.metrics)
[ "${ioreqs:-0}" -gt 0 ] || fail="$fail metrics-ioreqs"
[ "$(grep -c '^# TYPE xen_virtiod_xen_ioreqs_total ' /run/ops.metrics)" = 1 ] || fail="$fail metrics-format"
wait_daemons_exit 10 || say "xen-virtiod still running 10 s after the guest died"
if [ -z "$fail" ]; then
	result PASS ops "$pkg installed; check-host $nok/$nall OK ($(grep -E '^OK   (dm-op|xen-version):' /run/check-host.out | sed 's/^OK   //' | tr '\n' ';')); xen-virtiodctl: status rng DRIVER_OK, metrics ioreqs=$ioreqs"
else
	result FAIL ops "xen-virtiodctl checks failed:$fail"
fi
stop_daemons
