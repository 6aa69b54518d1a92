# Scenario "console": virtio-console served by xen-virtiod in explicit mode on a pty in dom0, with
# one named port. The guest says hello on its virtio console, dom0 types a line into the pty, the
# guest's reply comes back; the guest lists its named ports (/sys/class/virtio-ports/*/name: the
# names udev would link as /dev/virtio-ports/<name>).
. /e2e/lib.sh
name=e2e-con
have_daemon || { result SKIP console "xen-virtiod is not in this dom0 (not buildable yet)"; exit 0; }
mkdir -p /run/xen-virtiod /var/log/xen-virtiod
pty=/run/xen-virtiod/$name.pty
cat > /run/xen-virtiod/$name.ini <<EOI
[guest]
name = $name
discovery = explicit
log_level = debug

[console "con0"]
mmio = 0x02000000
irq = 33
pty = yes
pty_link = $pty
log = /var/log/xen-virtiod/$name-console.log
port = org.e2e.agent:socket:/run/xen-virtiod/$name-agent.sock
EOI
cfg=$(guest_cfg $name one-window.cfg 'extra = "console=hvc0 rdinit=/init e2e.run=console"')
dlog=/var/log/xen-virtiod/$name.log
say "xen-virtiod-create $cfg"
if ! XEN_VIRTIOD_SYSTEMD=no XEN_VIRTIOD_CONFIG_DIR=/run/xen-virtiod XEN_VIRTIOD_LOG_DIR=/var/log/xen-virtiod \
	xen-virtiod-create "$cfg"; then
	tail -n 20 "$dlog" 2>/dev/null
	result FAIL console "xen-virtiod-create failed"; exit 0
fi
[ -e "$pty" ] || { tail -n 20 "$dlog"; result FAIL console "no pty link $pty"; exit 0; }
stty -F "$pty" raw -echo 2>/dev/null
out=/run/$name.out
cat "$pty" > $out 2>/dev/null &
catpid=$!
i=0; while ! grep -q 'E2E-HELLO' $out && [ $i -lt 120 ]; do sleep 0.5; i=$((i + 1)); done
say "guest said: $(tr -d '\r' < $out | grep -a E2E-HELLO | head -1)"
echo "ping-from-dom0-$$" > "$pty"
i=0; while ! grep -q 'E2E-PONG' $out && [ $i -lt 60 ]; do sleep 0.5; i=$((i + 1)); done
kill $catpid 2>/dev/null
wait_guest_gone $name 60 || { xl destroy $name; say "guest destroyed"; }
hello=$(tr -d '\r' < $out | grep -a E2E-HELLO | head -1)
pong=$(tr -d '\r' < $out | grep -a E2E-PONG | head -1)
ports=$(tr -d '\r' < "$(guest_log $name)" | sed -n 's/^E2E-GUEST-CON-PORTS //p' | tail -1)
echo "--- daemon log (last lines):"; tail -n 10 "$dlog"
echo "--- guest console:"; tr -d '\r' < "$(guest_log $name)" | grep -a '^E2E' | tail -n 10
for p in $(pidof xen-virtiod); do kill "$p"; done
case "$hello|$pong|$ports" in
*E2E-HELLO*"|E2E-PONG ping-from-dom0-$$|"*org.e2e.agent*)
	result PASS console "pty got '$hello', guest answered '$pong', named ports: $ports" ;;
*)	result FAIL console "hello='${hello}' pong='${pong}' ports='${ports}'" ;;
esac
