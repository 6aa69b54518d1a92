# Scenario "boot": the environment itself, no daemon. A PVH guest without virtio devices is created
# paused, unpaused, writes a marker line on its console and powers off; dom0 finds the marker in
# xenconsoled's log of the guest's console.
. /e2e/lib.sh
name=e2e-boot
cfg=$(guest_cfg $name plain.cfg 'extra = "console=hvc0 rdinit=/init e2e.run=boot"')
say "xl create -p $cfg"
xl create -p "$cfg" || { result FAIL boot "xl create -p failed"; exit 0; }
say "created paused: domid $(xl domid $name)"
xl unpause $name || { result FAIL boot "xl unpause failed"; exit 0; }
if ! wait_guest_gone $name 120; then
	tail -5 "$(guest_log $name)"
	result FAIL boot "guest still running after 120 s"; exit 0
fi
log=$(guest_log $name)
line=$(grep -a 'E2E-GUEST-MARKER' "$log" | tr -d '\r' | tail -1)
if [ -n "$line" ]; then
	result PASS boot "guest console: $line"
else
	tail -20 "$log"
	result FAIL boot "no marker in $log"
fi
