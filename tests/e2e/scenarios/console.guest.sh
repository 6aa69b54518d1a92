# Guest half of scenario "console": find the virtio console (not hvc0, Xen's PV console), say
# hello, read one line, answer it; list the named ports.
echo "E2E-GUEST-CON-PORTS $(cat /sys/class/virtio-ports/*/name 2>/dev/null | tr '\n' ' ')"
# hvc0 is Xen's console; the virtio console is the next hvc that opens (hvc1 normally).
tty=""
for n in 1 2 3 4 5 6 7; do
	if [ -e /dev/hvc$n ] && (: < /dev/hvc$n) 2>/dev/null; then tty=/dev/hvc$n; break; fi
done
[ -n "$tty" ] || { echo "E2E-GUEST-CON-ERROR no virtio console tty ($(ls /sys/class/tty | grep hvc | tr '\n' ' '))"; exit 1; }
stty -F "$tty" raw -echo 2>/dev/null
echo "E2E-GUEST-CON tty=$tty"
echo "E2E-HELLO from $(uname -n) on $tty" > "$tty"
if read -t 60 -r line < "$tty"; then
	line=$(echo "$line" | tr -d '\r')
	echo "E2E-PONG $line" > "$tty"
	echo "E2E-GUEST-CON got=$line"
else
	echo "E2E-GUEST-CON-ERROR nothing read from $tty"
fi
sleep 1
