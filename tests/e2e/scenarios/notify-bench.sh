# Scenario "notify-bench": a measurement of the two notify paths on real Xen (issue 17 item 2), not
# a target. One guest with two virtio disks in explicit mode (dts/two-window.dts: 0x02000000 SPI
# 33, 0x02000200 SPI 34), each a 64 MiB image in dom0's tmpfs (written once) served by its own
# xen-virtiod instance (state file and control socket in directories of its own): one with
# notify_fastpath = on (kicks completed in dom0's kernel through the privcmd ioeventfd,
# interrupts through an irqfd), the other with off (every kick an ioreq
# round trip through the daemon, every interrupt a set_irq_level DM op). The guest
# (notify-bench.guest.sh) runs fio on one disk and then the other, order alternating, for SECS
# seconds per run (5; e2e.nb_secs=N on dom0's command line, e.g. E2E_ARGS="e2e.nb_secs=8"): 4 KiB
# random read and random write at QD1 and QD32, libaio, direct=1, ROUNDS rounds (3;
# e2e.nb_rounds=N). BOOTS guest boots (2; e2e.nb_boots=N), the fast path's window swapped each
# boot, so neither window nor SPI favours a path. Both paths run minutes apart at most and side
# by side in time, so the host's load (2 shared cores under TCG) hits both alike.
# Printed: every run's IOPS, then per case the median IOPS of each path with its range, the ratio
# of the medians (fast / ioreq) and the median and range of the paired ratios (the two runs of
# one case back to back), and each path's daemon counters (SIGUSR1 while the guest still runs),
# which show which path ran.
# PASS once every run measured; FAIL only when something is broken: a guest that does not finish,
# a fio error or a missing run, a panic or Oops in the guest, "bad IO state" in xl dmesg, or an
# instance on the other path than asked (on: no "privcmd ioeventfd+irqfd" line or no kick through
# the eventfd; off: a fast-path line, an eventfd kick or an irqfd interrupt).
# Not in the default list: it takes minutes and measures rather than checks. Run it by name:
# E2E_SCENARIOS=notify-bench make e2e.
# e2e-default: no
# e2e-timeout: 1700
. /e2e/lib.sh
name=e2e-nb
arg() { sed -n "s/.*e2e\\.$1=\\([0-9]*\\).*/\\1/p" /proc/cmdline; }
ROUNDS=$(arg nb_rounds); ROUNDS=${ROUNDS:-3}
SECS=$(arg nb_secs); SECS=${SECS:-5}
BOOTS=$(arg nb_boots); BOOTS=${BOOTS:-2}
have_daemon || { result SKIP notify-bench "xen-virtiod is not in this dom0"; exit 0; }
glog=$(guest_log $name)
res=/run/$name.res
: > "$res"
mkdir -p "$XVD_RUN" "$XVD_LOG"
# ini W BASE IRQ PATH: instance W's configuration, /run/xen-virtiod/e2e-nb-W.ini.
ini() {
	printf '[guest]\nname = %s\ndiscovery = explicit\nlog_level = debug\nnotify_fastpath = %s\n\n[block "vd%s"]\nmmio = %s\nirq = %s\npath = /run/%s-%s.img\n' \
		$name "$4" "$1" "$2" "$3" $name "$1" > "$XVD_RUN/$name-$1.ini"
}
# The whole images written once, so that reads find data, not holes.
for w in a b; do dd if=/dev/zero of=/run/$name-$w.img bs=1M count=64 2>/dev/null; done
fail() {
	echo "--- guest:"; tail -n 15 "$glog" 2>/dev/null
	for w in a b; do echo "--- daemon $w:"; tail -n 15 "$(daemon_log $name-$w)" 2>/dev/null; done
	echo "--- xl dmesg:"; xl dmesg | tail -n 10
	xl destroy $name 2>/dev/null
	stop_daemons
	progress "FAIL: $1"
	result FAIL notify-bench "$1"
	exit 0
}
# The scenario's output reaches the console only when it ends; its progress and the guest's
# results also go to dom0's kernel log (on the console at once), so a run that never ends still
# leaves its numbers in build/e2e/console.log.
progress() { say "$@"; echo "notify-bench: $*" > /dev/kmsg 2>/dev/null; }
# wait_runs SECONDS: wait for the guest's "done" (or an error), relaying its result lines to the
# kernel log as they come; 1 when SECONDS pass first.
wait_runs() {
	i=0 sent=0
	while :; do
		lines=$(guest_lines $name E2E-GUEST-NB)
		n=$(echo "$lines" | grep -c .)
		[ "$n" -gt "$sent" ] && echo "$lines" | tail -n $((n - sent)) | while read -r l; do progress "guest: $l"; done
		sent=$n
		echo "$lines" | grep -q '^done' && return 0
		grep -aq 'E2E-GUEST-NB-ERROR' "$glog" 2>/dev/null && return 0
		i=$((i + 1)); [ "$i" -gt $(($1 / 2)) ] && return 1
		sleep 2
	done
}
xl dmesg -c >/dev/null
say "notify-bench: $BOOTS boots x $ROUNDS rounds, $SECS s per run"
b=1
while [ $b -le "$BOOTS" ]; do
	# Window a (0x02000000, SPI 33) and b (0x02000200, SPI 34); the fast one alternates per boot.
	if [ $((b % 2)) = 1 ]; then pa=on pb=off fastwin=2000000; else pa=off pb=on fastwin=2000200; fi
	ini a 0x02000000 33 $pa
	ini b 0x02000200 34 $pb
	cfg=$(guest_cfg $name one-window.cfg 'device_tree = "/e2e/dts/two-window.dtb"' \
		"extra = \"console=hvc0 rdinit=/init e2e.run=notify-bench e2e.nb_fast=$fastwin e2e.nb_secs=$SECS e2e.nb_rounds=$ROUNDS\"")
	[ -f "$glog" ] && mv "$glog" "$glog.old"
	for w in a b; do touch "$(daemon_log $name-$w)"; eval "n0_$w=\$(wc -l < \"\$(daemon_log $name-$w)\")"; done
	t0=$(now)
	progress "boot $b: xl create -p; window a (0x02000000) notify_fastpath = $pa, b (0x02000200) = $pb"
	xl create -p "$cfg" || fail "boot $b: xl create -p failed"
	domid=$(xl domid $name) || fail "boot $b: no domid"
	for w in a b; do
		timeout 60 xen-virtiod --config "$XVD_RUN/$name-$w.ini" --domain "$domid" \
			--state-dir "/run/$name-state-$w" --control-dir "/run/$name-ctl-$w" >>"$(daemon_log $name-$w)" 2>&1 ||
			fail "boot $b: instance $w failed or did not serve within 60 s (exit $?)"
	done
	xl unpause $name || fail "boot $b: xl unpause failed"
	wait_runs $((ROUNDS * 8 * (SECS + 6) + 240)) || fail "boot $b: the guest did not finish its fio runs"
	for p in $(pidof xen-virtiod); do kill -USR1 "$p"; done; sleep 1
	wait_gone_or_fail notify-bench $name 60 || { stop_daemons; exit 0; }
	wait_daemons_exit 15 || fail "boot $b: an instance outlived its guest by 15 s"
	panic=$(grep -aE 'Kernel panic|Unable to handle|Internal error|Oops|rcu.*stall' "$glog" | head -2)
	bad=$(xl dmesg | grep -E 'bad IO state|Weird HVM ioreq' | head -2)
	[ -z "$panic" ] || fail "boot $b: guest: $panic"
	[ -z "$bad" ] || fail "boot $b: Xen: $bad"
	gerr=$(guest_lines $name E2E-GUEST-NB-ERROR | head -1)
	[ -z "$gerr" ] || fail "boot $b: guest: $gerr"
	guest_lines $name E2E-GUEST-NB | grep '^begin'
	for w in a b; do
		eval "p=\$p$w n0=\$n0_$w"
		new=$(tail -n +$((n0 + 1)) "$(daemon_log $name-$w)")
		stats=$(echo "$new" | grep -a 'stats vcpus=' | tail -1)
		[ -n "$stats" ] || fail "boot $b: no counters from instance $w (SIGUSR1)"
		stat_of() { echo "$stats" | sed -n "s/.* $1=\([0-9]*\).*/\1/p"; }
		ioreqs=$(stat_of ioreqs) irqs=$(stat_of irqs) evn=$(stat_of eventfd_notifies) irqfd=$(stat_of irqfd_irqs)
		fastline=$(echo "$new" | grep -a 'notify path: privcmd ioeventfd+irqfd' | tail -1)
		slowline=$(echo "$new" | grep -a 'notify path: ioreq' | tail -1)
		stop=$(echo "$new" | grep -a 'stopping;' | tail -1 | sed 's/.*devices; //')
		if [ "$p" = on ]; then
			[ -n "$fastline" ] || fail "boot $b, instance $w (on): not on the fast path: [${slowline:-no notify path line}]"
			[ "${evn:-0}" -gt 0 ] || fail "boot $b, instance $w (on): no kick through the eventfd ($stats)"
		else
			[ -n "$slowline" ] || fail "boot $b, instance $w (off): not on the ioreq path: [${fastline:-no notify path line}]"
			if [ "${evn:-0}" != 0 ] || [ "${irqfd:-0}" != 0 ]; then
				fail "boot $b, instance $w (off): eventfd kicks or irqfd interrupts counted ($stats)"
			fi
		fi
		progress "boot $b instance $w ($p): ioreqs=$ioreqs irqs=$irqs eventfd_notifies=$evn irqfd_irqs=$irqfd | ${stop:-no stopping line}"
		echo "$p tot $b ${ioreqs:-0} ${irqs:-0} ${evn:-0} ${irqfd:-0}" >> "$res"
	done
	r=1
	while [ $r -le "$ROUNDS" ]; do
		for c in randread_qd1 randread_qd32 randwrite_qd1 randwrite_qd32; do
			for p in on off; do
				l=$(guest_lines $name E2E-GUEST-NB | grep "^round=$r case=$c path=$p " | tail -1)
				case $l in
				*" fio_rc=0 err=0") ;;
				*) fail "boot $b, round $r, $c, path $p: [${l:-no result line}]" ;;
				esac
				iops=$(echo "$l" | sed -n 's/.* iops=\([0-9]*\) .*/\1/p')
				[ -n "$iops" ] && [ "$iops" -gt 0 ] || fail "boot $b, round $r, $c, path $p: no IOPS [$l]"
				echo "$p $c $b.$r $iops" >> "$res"
			done
		done
		progress "boot $b round $r: $(awk -v k=$b.$r '$3 == k && $2 != "tot" { printf "%s/%s=%s ", $2, $1, $4 }' "$res")"
		r=$((r + 1))
	done
	progress "boot $b done in $(awk "BEGIN { printf \"%.0f\", $(now) - $t0 }") s"
	b=$((b + 1))
done
# Per case: median and range of each path, ratio of the medians, median and range of the paired
# ratios. med: the middle value of stdin's numbers (mean of the two middle ones for an even count).
med() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
range() { sort -n | sed -n '1p;$p' | tr '\n' '-' | sed 's/-$//'; }
nb() { echo "NOTIFY-BENCH $*"; echo "notify-bench: NOTIFY-BENCH $*" > /dev/kmsg 2>/dev/null; }
summary=""
for c in randread_qd1 randread_qd32 randwrite_qd1 randwrite_qd32; do
	f=$(awk -v c=$c '$1 == "on" && $2 == c { print $4 }' "$res")
	o=$(awk -v c=$c '$1 == "off" && $2 == c { print $4 }' "$res")
	fm=$(echo "$f" | med) om=$(echo "$o" | med)
	pr=$(awk -v c=$c '$2 == c { v[$1 ":" $3] = $4; k[$3] = 1 } END { for (i in k) if (v["off:" i] > 0) printf "%.2f\n", v["on:" i] / v["off:" i] }' "$res")
	ratio=$(awk "BEGIN { printf \"%.2f\", $fm / $om }")
	nb "$c fast=$fm [$(echo "$f" | range)] ioreq=$om [$(echo "$o" | range)] ratio=$ratio paired ratios median $(echo "$pr" | med) [$(echo "$pr" | range)] n=$(echo "$pr" | wc -l)"
	summary="$summary $c $ratio;"
done
tot() { awk -v p="$1" '$1 == p && $2 == "tot" { a += $4; b += $5; c += $6; d += $7 } END { printf "ioreqs=%d irqs=%d eventfd_notifies=%d irqfd_irqs=%d", a, b, c, d }' "$res"; }
nb "totals fast path: $(tot on)"
nb "totals ioreq path: $(tot off)"
result PASS notify-bench "$BOOTS boots x $ROUNDS rounds x $SECS s per run, fast/ioreq IOPS (ratio of medians):$summary fast path instances $(tot on); ioreq path instances $(tot off)"
