#!/bin/bash
# make e2e: real Xen 4.17 (IOREQ_SERVER) on emulated arm64, a Linux dom0 running the scenarios
# under tests/e2e/scenarios/, each reported PASS/FAIL/SKIP; the last line is "N passed, N failed".
#
# Environment:
#   E2E_CACHE       downloads and builds (default ${XDG_CACHE_HOME:-$HOME/.cache}/xen-virtiod-e2e)
#   E2E_SCENARIOS   comma-separated scenarios to run (default: all but those marked
#                   "# e2e-default: no"; a scenario's "# e2e-xen-args:" words go on Xen's
#                   command line when it runs)
#   E2E_TIMEOUT     hard limit on QEMU in seconds (default 1800)
#   E2E_VERBOSE=1   show the whole console (always in build/e2e/console.log)
#   E2E_SHELL=1     leave a dom0 shell on the console after the scenarios (interactive)
#   E2E_NO_DAEMON=1 do not cross-build the daemon
#   E2E_ARGS        more words for dom0's command line, read by scenarios (e2e.fpr_runs=30)
set -euo pipefail
E2E_PHASE=run
. "$(dirname "$0")/lib.sh"
cd "$REPO"
P=$E2E_DIR/phases
# One run at a time per cache (the cache is shared by every checkout of the same user).
exec 9>"$E2E_CACHE/.lock"
if ! flock -n 9; then
	log "another e2e run holds $E2E_CACHE/.lock; waiting"
	flock 9
fi
t_start=$(date +%s)
timings=()
# step NAME CMD...: run a phase, record its time; its stdout (a path) is captured in $R.
step() {
	local name=$1 t; shift; t=$(date +%s)
	if ! R=$("$@"); then
		echo "phase $name FAILED after $(( $(date +%s) - t ))s (times so far: ${timings[*]:-none})"
		echo "0 passed, 1 failed"
		exit 1
	fi
	timings+=("$name $(( $(date +%s) - t ))s")
}

step host    bash "$P/host.sh"
step xen     bash "$P/xen.sh";    XEN=$R
step kernel  bash "$P/kernel.sh"; export E2E_IMAGE=$R
step rootfs-dom0  bash "$P/rootfs.sh" dom0;  R0=$R
step rootfs-guest bash "$P/rootfs.sh" guest; RG=$R
DAEMON_DIR=""
if [ "${E2E_NO_DAEMON:-0}" != 1 ]; then
	step daemon bash "$P/daemon.sh"; DAEMON_DIR=$R
fi
step initramfs bash "$P/initramfs.sh" "$E2E_IMAGE" "$R0" "$RG" "$DAEMON_DIR"; INITRD=$R

# The default list: every scenario but those with a "# e2e-default: no" line (run by name only).
all=$(cd "$E2E_DIR/scenarios" && for f in *.sh; do
	case $f in *.guest.sh) continue;; esac
	grep -q '^# e2e-default: no' "$f" || echo "${f%.sh}"
done | tr '\n' ' ')
want=${E2E_SCENARIOS:-}
want=$(echo "${want:-$all}" | tr ',' ' ')
# Words for Xen's command line that a wanted scenario asks for ("# e2e-xen-args: WORDS").
for s in $want; do
	x=$(sed -n 's/^# e2e-xen-args: *//p' "$E2E_DIR/scenarios/$s.sh" 2>/dev/null || true)
	[ -z "$x" ] || E2E_XEN_EXTRA="$E2E_XEN_EXTRA $x"
done
export E2E_XEN_EXTRA
args="e2e.scenarios=$(echo $want | tr ' ' ',')"
[ "${E2E_SHELL:-0}" = 1 ] && args="$args e2e.shell=1"
[ -n "${E2E_ARGS:-}" ] && args="$args $E2E_ARGS"
DTB=$E2E_BUILD/virt-xen.dtb
step dtb bash "$P/dtb.sh" "$INITRD" "$DTB" "$args"
if [ "${E2E_SHELL:-0}" = 1 ]; then
	# The terminal is the console: scenarios run, then a dom0 shell; no result parsing.
	E2E_INTERACTIVE=1 exec bash "$P/boot.sh" "$XEN" "$DTB" "$INITRD"
fi
step boot bash "$P/boot.sh" "$XEN" "$DTB" "$INITRD"

# Results: the last E2E-RESULT line of each wanted scenario.
console=$E2E_BUILD/console.log
passed=0 failed=0 skipped=0
echo
for s in $want; do
	line=$(grep -a "^E2E-RESULT [A-Z]* $s\( \|$\)" "$console" | tail -1 || true)
	st=$(awk '{print $2}' <<<"$line"); ev=$(cut -d' ' -f4- <<<"$line")
	case $st in
	PASS) passed=$((passed + 1)); echo "PASS $s: $ev";;
	SKIP) skipped=$((skipped + 1)); echo "SKIP $s: $ev";;
	FAIL) failed=$((failed + 1)); echo "FAIL $s: $ev";;
	*)    failed=$((failed + 1)); echo "FAIL $s: no result (see $console)";;
	esac
done
if [ "$failed" -gt 0 ]; then
	echo "--- last console lines ($console):"; tail -n 25 "$console" | sed 's/^/    /'
fi
echo "times: ${timings[*]}, total $(( $(date +%s) - t_start ))s"
if [ "$skipped" -gt 0 ]; then
	echo "$passed passed, $failed failed, $skipped skipped"
else
	echo "$passed passed, $failed failed"
fi
[ "$failed" -eq 0 ]
