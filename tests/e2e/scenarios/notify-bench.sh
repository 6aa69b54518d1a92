# Scenario "notify-bench": a measurement of the two notify paths on real Xen (issue 17 item 2), not
# a target. ROUNDS rounds (3; e2e.nb_rounds=N on dom0's command line, E2E_ARGS="e2e.nb_rounds=5"
# for make e2e), each with one guest boot per path, the order alternating (on/off, off/on, ...):
# a new domain and a new instance serving the same 64 MiB image (dom0's tmpfs, filled once) in
# explicit mode with notify_fastpath = on (kicks completed in dom0's kernel through the privcmd
# ioeventfd, interrupts through an irqfd) or off (every kick an ioreq round trip through the
# daemon, every interrupt a set_irq_level DM op). The guest (notify-bench.guest.sh) runs fio for
# SECS seconds per case (10; e2e.nb_secs=N): 4 KiB random read and random write at QD1 and QD32,
# libaio, direct=1. Printed: every run's IOPS, then per case the median IOPS of each path with
# its range, the ratio of the medians (fast / ioreq) and the range of the per-round ratios, and
# each path's daemon totals (SIGUSR1 counters while the guest still runs, and the fast path's
# "stopping" totals), which show which path ran.
# PASS once every run measured; FAIL only when something is broken: a guest that does not finish,
# a fio error or a missing case, a panic or Oops in the guest, "bad IO state" in xl dmesg, or an
# instance on the other path than asked (on: no "privcmd ioeventfd+irqfd" line or no kick through
# the eventfd; off: a fast-path line or a kick through an eventfd).
# Not in the default list: it takes minutes and measures rather than checks. Run it by name:
# E2E_SCENARIOS=notify-bench make e2e.
# e2e-default: no
# e2e-timeout: 1700
. /e2e/lib.sh
name=e2e-nb
ROUNDS=$(sed -n 's/.*e2e\.nb_rounds=\([0-9]*\).*/\1/p' /proc/cmdline)
ROUNDS=${ROUNDS:-3}
SECS=$(sed -n 's/.*e2e\.nb_secs=\([0-9]*\).*/\1/p' /proc/cmdline)
SECS=${SECS:-10}
have_daemon || { result SKIP notify-bench "xen-virtiod is not in this dom0"; exit 0; }
img=/run/$name.img
dlog=$(daemon_log $name)
glog=$(guest_log $name)
res=/run/$name.res
: > "$res"
# The whole image written once, so that reads find data in every round, not holes.
dd if=/dev/zero of="$img" bs=1M count=64 2>/dev/null
fail() {
	echo "--- guest:"; tail -n 15 "$glog" 2>/dev/null
	echo "--- daemon:"; tail -n 15 "$dlog" 2>/dev/null
	echo "--- xl dmesg:"; xl dmesg | tail -n 10
	xl destroy $name 2>/dev/null
	result FAIL notify-bench "$1"
	exit 0
}
xl dmesg -c >/dev/null
say "notify-bench: $ROUNDS rounds, $SECS s per case, load $(cut -d' ' -f1-3 /proc/loadavg)"
r=1
while [ $r -le "$ROUNDS" ]; do
	if [ $((r % 2)) = 1 ]; then order="on off"; else order="off on"; fi
	for p in $order; do
		explicit_disk $name "notify_fastpath = $p"
		cfg=$(guest_cfg $name one-window.cfg "extra = \"console=hvc0 rdinit=/init e2e.run=notify-bench e2e.nb_secs=$SECS\"")
		[ -f "$glog" ] && mv "$glog" "$glog.old"
		mkdir -p "$XVD_LOG"; touch "$dlog"
		n0=$(wc -l < "$dlog")
		t0=$(now)
		start_explicit notify-bench $name "$cfg" || exit 0
		wait_log $name '^E2E-GUEST-NB(-ERROR| done)' $((SECS * 8 + 240)) ||
			fail "round $r, path $p: the guest did not finish its fio cases"
		kill -USR1 $(pidof xen-virtiod) 2>/dev/null; sleep 1
		wait_gone_or_fail notify-bench $name 60 || exit 0
		wait_daemons_exit 15 || fail "round $r, path $p: the instance outlived its guest by 15 s"
		new=$(tail -n +$((n0 + 1)) "$dlog")
		stats=$(echo "$new" | grep -a 'stats vcpus=' | tail -1)
		stat_of() { echo "$stats" | sed -n "s/.* $1=\([0-9]*\).*/\1/p"; }
		ioreqs=$(stat_of ioreqs) irqs=$(stat_of irqs) evn=$(stat_of eventfd_notifies) irqfd=$(stat_of irqfd_irqs)
		stop=$(echo "$new" | grep -a 'stopping;' | tail -1 | sed 's/.*devices; //')
		fastline=$(echo "$new" | grep -a 'notify path: privcmd ioeventfd+irqfd' | tail -1)
		slowline=$(echo "$new" | grep -a 'notify path: ioreq' | tail -1)
		panic=$(grep -aE 'Kernel panic|Unable to handle|Internal error|Oops|rcu.*stall' "$glog" | head -2)
		bad=$(xl dmesg | grep -E 'bad IO state|Weird HVM ioreq' | head -2)
		[ -z "$panic" ] || fail "round $r, path $p: guest: $panic"
		[ -z "$bad" ] || fail "round $r, path $p: Xen: $bad"
		gerr=$(guest_lines $name E2E-GUEST-NB-ERROR | head -1)
		[ -z "$gerr" ] || fail "round $r, path $p: guest: $gerr"
		[ -n "$stats" ] || fail "round $r, path $p: no counters from the instance (SIGUSR1)"
		if [ $p = on ]; then
			[ -n "$fastline" ] || fail "round $r, path on: the instance is not on the fast path: [${slowline:-no notify path line}]"
			[ "${evn:-0}" -gt 0 ] || fail "round $r, path on: no kick through the eventfd ($stats)"
		else
			[ -n "$slowline" ] || fail "round $r, path off: the instance is not on the ioreq path: [${fastline:-no notify path line}]"
			[ "${evn:-0}" = 0 ] && [ "${irqfd:-0}" = 0 ] || fail "round $r, path off: eventfd kicks or irqfd interrupts counted ($stats)"
		fi
		for c in randread_qd1 randread_qd32 randwrite_qd1 randwrite_qd32; do
			l=$(guest_lines $name E2E-GUEST-NB | grep "^case=$c " | tail -1)
			case $l in
			*" fio_rc=0 err=0") ;;
			*) fail "round $r, path $p, $c: [${l:-no result line}]" ;;
			esac
			iops=$(echo "$l" | sed -n 's/.* iops=\([0-9]*\) .*/\1/p')
			[ -n "$iops" ] && [ "$iops" -gt 0 ] || fail "round $r, path $p, $c: no IOPS [$l]"
			echo "$p $c $r $iops" >> "$res"
		done
		echo "$p tot ${ioreqs:-0} ${irqs:-0} ${evn:-0} ${irqfd:-0}" >> "$res"
		say "round $r path $p ($(awk "BEGIN { printf \"%.0f\", $(now) - $t0 }") s): $(grep "^$p [a-z_0-9]* $r " "$res" | awk '{ printf "%s=%s ", $2, $4 }')| counters ioreqs=$ioreqs irqs=$irqs eventfd_notifies=$evn irqfd_irqs=$irqfd | ${stop:-no stopping line}"
	done
	r=$((r + 1))
done
stop_daemons
# Per case: median and range of each path, ratio of the medians, range of the per-round ratios.
# median FILE-OF-NUMBERS: the middle value (mean of the two middle ones for an even count).
med() { sort -n | awk '{ v[NR] = $1 } END { if (NR % 2) print v[(NR + 1) / 2]; else printf "%.2f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2 }'; }
summary=""
for c in randread_qd1 randread_qd32 randwrite_qd1 randwrite_qd32; do
	f=$(awk -v c=$c '$1 == "on" && $2 == c { print $4 }' "$res")
	o=$(awk -v c=$c '$1 == "off" && $2 == c { print $4 }' "$res")
	fm=$(echo "$f" | med) om=$(echo "$o" | med)
	fr=$(echo "$f" | sort -n | sed -n '1p;$p' | tr '\n' '-' | sed 's/-$//')
	or=$(echo "$o" | sort -n | sed -n '1p;$p' | tr '\n' '-' | sed 's/-$//')
	pr=$(awk -v c=$c -v n="$ROUNDS" '$2 == c { v[$1 ":" $3] = $4 } END { for (i = 1; i <= n; i++) if (v["off:" i] > 0) printf "%.2f\n", v["on:" i] / v["off:" i] }' "$res" | sort -n)
	prr=$(echo "$pr" | sed -n '1p;$p' | tr '\n' '-' | sed 's/-$//')
	prm=$(echo "$pr" | med)
	ratio=$(awk "BEGIN { printf \"%.2f\", $fm / $om }")
	echo "NOTIFY-BENCH $c fast=$fm [$fr] ioreq=$om [$or] ratio=$ratio per-round ratio median $prm [$prr]"
	summary="$summary $c $ratio;"
done
tot() { awk -v p=$1 '$1 == p && $2 == "tot" { a += $3; b += $4; c += $5; d += $6 } END { printf "ioreqs=%d irqs=%d eventfd_notifies=%d irqfd_irqs=%d", a, b, c, d }' "$res"; }
echo "NOTIFY-BENCH totals fast path: $(tot on)"
echo "NOTIFY-BENCH totals ioreq path: $(tot off)"
result PASS notify-bench "$ROUNDS rounds x $SECS s per case, fast/ioreq IOPS (median):$summary fast path $(tot on); ioreq path $(tot off)"
