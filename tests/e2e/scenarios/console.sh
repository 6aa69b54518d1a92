# Scenario "console": virtio-console served by xen-virtiod in explicit mode on a pty in dom0, with
# one named port. The guest says hello on its virtio console, dom0 types a line into the pty, the
# guest's reply comes back; the guest lists its named ports (/sys/class/virtio-ports/*/name: the
# names udev would link as /dev/virtio-ports/<name>).
. /e2e/lib.sh
name=e2e-con
have_daemon || { result SKIP console "xen-virtiod is not in this dom0 (not buildable yet)"; exit 0; }
pty=$XVD_RUN/$name.pty
explicit_ini $name <<EOI
[console "con0"]
mmio = 0x02000000
irq = 33
pty = yes
pty_link = $pty
log = $XVD_LOG/$name-console.log
port = org.e2e.agent:socket:$XVD_RUN/$name-agent.sock
EOI
cfg=$(guest_cfg $name one-window.cfg 'extra = "console=hvc0 rdinit=/init e2e.run=console"')
dlog=$(daemon_log $name)
start_explicit console $name "$cfg" || exit 0
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
ports=$(guest_lines $name E2E-GUEST-CON-PORTS | tail -1)
echo "--- daemon log (last lines):"; tail -n 10 "$dlog"
echo "--- guest console:"; tr -d '\r' < "$(guest_log $name)" | grep -a '^E2E' | tail -n 10
stop_daemons
case "$hello|$pong|$ports" in
*E2E-HELLO*"|E2E-PONG ping-from-dom0-$$|"*org.e2e.agent*)
	result PASS console "pty got '$hello', guest answered '$pong', named ports: $ports" ;;
*)	result FAIL console "hello='${hello}' pong='${pong}' ports='${ports}'" ;;
esac
