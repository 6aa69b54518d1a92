# Scenario "restart" (issue 22): crash recovery and upgrade on real Xen. One guest with a virtio
# disk (0x02000000, SPI 33) and a virtio-net device on dom0's bridge (0x02000200, SPI 34), both
# served by one xen-virtiod in explicit mode (a busybox dom0: no systemd, no fd store). The guest
# runs fio passes with --verify, a QD1 reader logging every read's latency and a ping of dom0
# (restart.guest.sh). Meanwhile dom0 kills the instance 11 times at random moments, 0.3 to 2 s
# apart: SIGKILL ten times and SIGTERM once (the upgrade path, round UPGRADE_ROUND), each time
# starting it again as a supervisor would (the same command line, the same state directory) and
# waiting until it serves. Fails on: a fio error or verify failure; a restart after which the
# disk completes nothing for 60 s; more pings lost while the restarts go on than restarts, or
# no ping answered at the end; an Oops, panic or RCU stall in the guest; "bad IO state"
# in xl dmesg; after `xl destroy`, an instance left running, a state file left, or a domain left
# (pages still mapped keep a domain dying). Prints the pause each restart cost the guest (the
# reader's largest latencies, one per restart) and the time from each kill to serving again.
# e2e-timeout: 900
set -u
. /e2e/lib.sh
name=e2e-rst
ROUNDS=11 UPGRADE_ROUND=6
# ping every 0.5 s: frames in flight at a kill are dropped (docs/operations.md), and while no
# instance runs the tap is gone (made again, with the same address, by the next instance). At
# most one ping per restart may be lost, and the last ping (3 of 3) after the restarts must pass.
have_daemon || { result SKIP restart "xen-virtiod is not in this dom0"; exit 0; }
# Progress also on dom0's console: this scenario's output is shown only once it ends.
note() { say "$@"; say "restart: $*" >/dev/console 2>/dev/null; }
bridge_up || { result FAIL restart "cannot set up bridge xenbr0"; exit 0; }
www=/run/$name-www
mkdir -p $www; rm -f $www/done
httpd -f -p 10.0.0.1:80 -h $www & httpd_pid=$!
truncate -s 64M /run/$name.img
# Without an fd store (this dom0 has no systemd) the notify fast path does not survive a crash:
# the dead instance's ioeventfds stay assigned in dom0's kernel and a kick that reached them
# while no instance ran is never answered (docs/operations.md, "Restarts and upgrades"). The
# default (notify_fastpath = auto) therefore keeps the kicks on the ioreq server here: the
# scenario runs what an administrator without systemd gets.
explicit_ini $name <<EOI
[block "vda"]
mmio = 0x02000000
irq = 33
path = /run/$name.img

[net "eth0"]
mmio = 0x02000200
irq = 34
bridge = xenbr0
mac = 00:16:3e:e2:e0:05
EOI
dlog=$(daemon_log $name) glog=$(guest_log $name) state=$XVD_RUN/$name.state
: > "$dlog"; : > "$glog" 2>/dev/null
fail() {
	echo "--- guest console:"; tr -d '\r' < "$glog" | tail -n 25
	echo "--- daemon log:"; tail -n 25 "$dlog"
	echo "--- xl dmesg:"; xl dmesg | tail -n 10
	kill $httpd_pid 2>/dev/null
	xl destroy $name 2>/dev/null
	result FAIL restart "$*"
	exit 0
}
xl dmesg -c >/dev/null
cfg=$(guest_cfg $name one-window.cfg 'device_tree = "/e2e/dts/two-window.dtb"' \
	'extra = "console=hvc0 rdinit=/init e2e.run=restart"')
start_explicit restart $name "$cfg" || { kill $httpd_pid; exit 0; }
domid=$(xl domid $name)
# instance_pid: the running instance for this guest (its command line names the guest's file).
instance_pid() {
	for p in $(pidof xen-virtiod); do
		tr '\0' ' ' < /proc/$p/cmdline 2>/dev/null | grep -q -- "--config $XVD_RUN/$name.ini " &&
			{ echo $p; return 0; }
	done
	return 1
}
# gone PID SECONDS: the process has exited (a zombie counts: its files, the state file's lock
# among them, are closed).
gone() {
	i=0
	while [ -d /proc/$1 ] && ! grep -q '^State:.*Z' /proc/$1/status 2>/dev/null; do
		i=$((i + 1)); [ $i -gt $(($2 * 10)) ] && return 1
		sleep 0.1
	done
	return 0
}
# blk_used: the used index of the disk's queue, from the running instance (empty: none answers).
blk_used() {
	timeout 10 xen-virtiodctl status $name 2>/dev/null | awk '/^device / { b = ($2 == "block") }
		b && /queue 0:/ { for (i = 1; i <= NF; i++) if ($i ~ /^used_idx=/) { sub(/^used_idx=/, "", $i); print $i; exit } }'
}
# moved_since USED SECONDS: wait until the disk's used index differs from USED (the guest's I/O
# completes again); 1 when it does not within SECONDS.
moved_since() {
	i=0
	while u=$(blk_used) && { [ -z "$u" ] || [ "$u" = "$1" ]; }; do
		i=$((i + 1)); [ $i -gt $(($2 * 10)) ] && return 1
		sleep 0.1
	done
	return 0
}
wait_log $name 'E2E-GUEST-RST (begin|-ERROR)' 240 || fail "the guest's I/O never began"
# The guest's clock against ours (within the 0.5 s of wait_log's polling).
t_begin=$(now)
grep -aq 'E2E-GUEST-RST-ERROR' "$glog" && fail "guest: $(guest_lines $name E2E-GUEST-RST-ERROR)"
serve_ms="" resume_ms="" kinds="" kill_at=""
round=1
while [ $round -le $ROUNDS ]; do
	d=$(awk "BEGIN { srand($round * 7919 + $(date +%s)); printf \"%.2f\", 0.3 + rand() * 1.7 }")
	sleep "$d"
	sig=KILL; [ $round = $UPGRADE_ROUND ] && sig=TERM
	pid=$(instance_pid) || fail "round $round: no instance running for $name"
	u0=$(blk_used)
	t0=$(now)
	note "round $round: SIG$sig to pid $pid"
	kill -$sig "$pid"
	gone "$pid" 20 || fail "round $round: instance $pid still runs 20 s after SIG$sig"
	# What a supervisor does: the same command line again; it returns once it serves.
	timeout 60 xen-virtiod --config "$XVD_RUN/$name.ini" --domain "$domid" >>"$dlog" 2>&1 ||
		fail "round $round: the restarted instance failed or did not serve within 60 s (exit $?)"
	ms=$(awk "BEGIN { printf \"%d\", ($(now) - $t0) * 1000 }")
	# The guest's disk completes requests again (its QD1 reader never stops reading).
	if ! moved_since "$u0" 60; then
		kill -USR1 "$(instance_pid)" 2>/dev/null; sleep 1
		fail "round $round (SIG$sig): the guest's disk did not complete a request within 60 s of the restart (used index ${u0:-?} before, $(blk_used) now)"
	fi
	rs=$(awk "BEGIN { printf \"%d\", ($(now) - $t0) * 1000 }")
	note "round $round: SIG$sig to pid $pid ${d} s after the last, serving again after $ms ms, the disk's used index moving again after $rs ms"
	serve_ms="$serve_ms $ms" resume_ms="$resume_ms $rs" kinds="$kinds $sig" kill_at="$kill_at $t0"
	round=$((round + 1))
done
took=$(grep -c 'took over ioreq server' "$dlog")
note "restarts done; waiting for the guest's last fio pass"
touch $www/done
wait_log $name 'E2E-GUEST-RST end' 300 || fail "the guest did not finish its I/O within 300 s of the last restart"
kill $httpd_pid 2>/dev/null
tr -d '\r' < "$glog" | grep -a '^E2E-GUEST' | tail -n 8
# The checks on the guest and Xen, before the guest goes.
end=$(guest_lines $name E2E-GUEST-RST | grep '^end' | tail -1)
passes=$(echo "$end" | sed -n 's/.*passes=\([0-9]*\).*/\1/p')
ping=$(guest_lines $name E2E-GUEST-RST-PING | tail -1)
net=$(guest_lines $name E2E-GUEST-RST-NET | tail -1)
lat=$(guest_lines $name E2E-GUEST-RST-LAT | tail -1)
panic=$(tr -d '\r' < "$glog" | grep -aE 'Kernel panic|Unable to handle|Internal error|Oops|rcu.*stall|BUG:|WARNING:' | head -3)
bad=$(xl dmesg | grep -E 'bad IO state|Weird HVM ioreq' | head -3)
# Teardown: xl destroy; the instance notices, removes its devices and its state file and exits.
pid=$(instance_pid)
t0=$(now)
note "the guest finished; xl destroy"
xl destroy $name || fail "xl destroy failed"
t_destroy=$(awk "BEGIN { print $(now) - $t0 }")
alive=""; [ -n "$pid" ] && ! gone "$pid" 15 && alive="pid $pid"
i=0
while [ $i -lt 20 ] && [ "$(xl list | awk 'NR > 1' | grep -vc '^Domain-0 ')" != 0 ]; do sleep 0.5; i=$((i + 1)); done
left=$(xl list | awk 'NR > 1' | grep -v '^Domain-0 ' | awk '{ print $1 "(" $2 ")" }' | tr '\n' ' ')
others=$(instance_pid)
stale=""; [ -e "$state" ] && stale=$state
echo "--- daemon log (last lines):"; tail -n 8 "$dlog"
[ -z "$bad" ] || fail "Xen: $bad"
[ -z "$panic" ] || fail "guest: $panic"
case $end in *"failed=none"*) ;; *) fail "fio: [${end:-no end line}] $(guest_lines $name E2E-GUEST-RST | grep -v 'errs=0, ' | head -3)" ;; esac
[ "${passes:-0}" -ge 1 ] || fail "no fio pass ended"
[ "$took" -ge $ROUNDS ] || fail "$took of $ROUNDS restarts took the ioreq server over"
[ -n "$ping" ] || fail "no ping statistics from the guest"
# Each restart may drop the frame in flight at that moment (docs/operations.md), no more: the
# pings wait in the guest's rings while no instance runs, and the tap made again keeps its
# address (before it did not, the bridge's moved, and the guest lost every ping sent while the
# restarts followed each other).
rx=${ping%/*} tx=${ping#*/}
[ $((tx - rx)) -le $ROUNDS ] || fail "ping: only $ping answered during the restarts (at most $ROUNDS may be lost)"
[ "$net" = 3/3 ] || fail "net after the restarts: ping ${net:-none}"
[ -z "$alive" ] && [ -z "$others" ] || fail "after xl destroy an instance still runs: ${alive:-} ${others:-}"
[ -z "$stale" ] || fail "after xl destroy the state file $stale is left"
[ -z "$left" ] || fail "after xl destroy domains are left: $left"
# The pause: the reader's ROUNDS largest latencies, one per restart (each restart holds up the
# read in flight or the next one); the next largest shows that the rest stayed below them.
top=$(echo "$lat" | sed -n 's/.*top_ms=//p')
med=$(echo "$lat" | sed -n 's/.*median_ms=\([^ ]*\).*/\1/p')
reads=$(echo "$lat" | sed -n 's/.*reads=\([0-9]*\).*/\1/p')
pauses=$(echo $top | tr ' ' '\n' | head -$ROUNDS | sort -n | tr '\n' ' ')
next=$(echo $top | cut -d' ' -f$((ROUNDS + 1)))
# med_max VALUES: "MEDIAN MAX" of a list of numbers; stats VALUES: the same in words, and the min.
med_max() { echo $1 | tr ' ' '\n' | sort -n | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)], v[NR] }'; }
stats() { set -- $(med_max "$1") $(echo $1 | tr ' ' '\n' | sort -n | head -1); echo "median $1 ms, min $3 ms, max $2 ms"; }
set -- $(med_max "$pauses")
pmed=$1 pmax=$2
echo "restart: pause per restart median $pmed ms, max $pmax ms ($((ROUNDS - 1)) kills, 1 term; the guest's QD1 reads: $reads, median $med ms, next largest $next ms)"
echo "restart: signal to serving again: $(stats "$serve_ms") (per round:$serve_ms ms; signals:$kinds)"
echo "restart: signal to the disk completing again (dom0 polling the used index): $(stats "$resume_ms") (per round:$resume_ms ms)"
result PASS restart "$ROUNDS restarts ($((ROUNDS - 1)) SIGKILL, 1 SIGTERM) during fio --verify: $passes passes, 0 errors; ping $ping answered during the restarts (answered: $(guest_lines $name E2E-GUEST-RST-PINGSEQ | tail -1)), net $net after; no Oops/stall, no bad IO state; guest-visible pause median $pmed ms, max $pmax ms (reads median $med ms); signal to serving $(stats "$serve_ms"); xl destroy (${t_destroy} s) left no instance, no state file, no domain"
