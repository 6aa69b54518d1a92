# Scenario "fastpath-race": the race of issue 23 on real Xen. Two guests of two vCPUs each, each
# with a virtio-blk disk in explicit mode served by its own xen-virtiod through the privcmd
# ioeventfd fast path (dom0's kernel completes the kicks; the daemon and the kernel share the
# kick register's ioreq slots). Both run fio with verification; guest B is destroyed in the
# middle of its run, at a different moment each time; guest A finishes and powers off. Repeated
# RUNS times (10; e2e.fpr_runs=N on dom0's command line, E2E_ARGS="e2e.fpr_runs=30" for
# make e2e, sets another count). Each run fails on: "bad IO state" or "Weird HVM ioreq state" in xl dmesg (a slot
# answered twice or out of turn), any panic or Oops in either guest, fio in A not ending with
# status 0, any warning or error in either daemon's log, either daemon off the fast path.
# e2e-timeout: 3600
. /e2e/lib.sh
RUNS=$(sed -n 's/.*e2e\.fpr_runs=\([0-9]*\).*/\1/p' /proc/cmdline)
RUNS=${RUNS:-10}
have_daemon || { result SKIP fastpath-race "xen-virtiod is not in this dom0"; exit 0; }
# This dom0 has no service manager: auto would keep the kicks on the ioreq server (restarts).
for g in a b; do explicit_disk e2e-fpr-$g 'notify_fastpath = on'; done
cfg() { guest_cfg e2e-fpr-$1 one-window.cfg 'vcpus = 2' 'extra = "console=hvc0 rdinit=/init e2e.run=fastpath-race"'; }
# fail RUN WHAT: the evidence, then a FAIL result.
fail() {
	for g in a b; do echo "--- guest $g:"; tail -n 15 "$(guest_log e2e-fpr-$g)"; done
	for g in a b; do echo "--- daemon $g:"; tail -n 15 "$(daemon_log e2e-fpr-$g)"; done
	echo "--- xl dmesg:"; xl dmesg | tail -n 15
	result FAIL fastpath-race "run $1 of $RUNS: $2"
	exit 0
}
notifies=0 destroyed_at=""
xl dmesg -c >/dev/null
run=1
while [ $run -le $RUNS ]; do
	for g in a b; do
		: > "$(guest_log e2e-fpr-$g)" 2>/dev/null
		: > "$(daemon_log e2e-fpr-$g)" 2>/dev/null
		start_explicit fastpath-race e2e-fpr-$g "$(cfg $g)" || exit 0
	done
	wait_log e2e-fpr-b 'E2E-GUEST-FPR begin' 120 || fail $run "guest B never started fio"
	# 0.5 .. 4 s into B's fio, a different moment each run.
	d=$(awk "BEGIN { srand($run * 7919 + $(date +%s)); printf \"%.1f\", 0.5 + rand() * 3.5 }")
	sleep "$d"
	destroyed_at="$destroyed_at ${d}s"
	say "run $run: xl destroy e2e-fpr-b ${d} s into its fio"
	xl destroy e2e-fpr-b || fail $run "xl destroy failed"
	wait_gone_or_fail fastpath-race e2e-fpr-a 400 || exit 0
	wait_daemons_exit 15 || fail $run "an instance outlived its guest by 15 s"
	end=$(guest_lines e2e-fpr-a E2E-GUEST-FPR | grep '^end' | tail -1)
	bad=$(xl dmesg | grep -E 'bad IO state|Weird HVM ioreq' | head -3)
	panic=$(grep -aE 'Kernel panic|Unable to handle|Internal error|Oops' "$(guest_log e2e-fpr-a)" "$(guest_log e2e-fpr-b)" | head -3)
	warn=$(grep -aE ': (warning|error): ' "$(daemon_log e2e-fpr-a)" "$(daemon_log e2e-fpr-b)" | head -3)
	slow=$(grep -aL 'notify path: privcmd ioeventfd+irqfd' "$(daemon_log e2e-fpr-a)" "$(daemon_log e2e-fpr-b)")
	n=$(sed -n 's/.*stopping;.*: \([0-9]*\) notifies via eventfd.*/\1/p' "$(daemon_log e2e-fpr-a)" | tail -1)
	[ -z "$bad" ] || fail $run "Xen: $bad"
	[ -z "$panic" ] || fail $run "guest: $panic"
	case $end in *"fio_rc=0 errs=0,"*) ;; *) fail $run "guest A's fio: [${end:-no end line}]" ;; esac
	[ -z "$warn" ] || fail $run "daemon: $warn"
	[ -z "$slow" ] || fail $run "not on the fast path: $slow"
	say "run $run: A's fio [$end], A's instance: ${n:-?} notifies via eventfd"
	notifies=$((notifies + ${n:-0}))
	xl dmesg -c >/dev/null
	run=$((run + 1))
done
result PASS fastpath-race "$RUNS runs, guest B destroyed at$destroyed_at into its fio: no bad IO state in xl dmesg, no guest panic, guest A's fio verified with 0 errors each time, no daemon warning; $notifies kicks through the ioeventfd in guest A"
