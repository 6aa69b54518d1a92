#!/bin/sh
# Run test executables, count results, write "<passed> <failed>" to BUILD/test-summary.
# cmocka binaries are counted per test case from their "[  PASSED  ]"/"[  FAILED  ]" lines;
# any other executable counts as one test that passes when it exits 0.
# Usage: run-tests.sh BUILD TEST...
set -u
build=$1; shift
passed=0; failed=0; failures=""
log="$build/test-log"
: > "$log"
TEST_TIMEOUT=${TEST_TIMEOUT:-600}
# Tests keep their files in directories of their own: one that leaves the daemon's system
# directory behind (a daemon started without --state-dir or $RUNTIME_DIRECTORY) fails.
sysrun=/run/xen-virtiod
# Each test runs under timeout(1), which makes a process group of its own; its output goes to a
# file, so that a process the test left behind (a forked helper of a test that failed) can hold
# neither the output open nor the run up: whatever is left in the group when the test is done
# is killed.
tmp="$build/test-out.$$"
tpid=""
trap '[ -n "$tpid" ] && kill -15 "-$tpid" 2>/dev/null; rm -f "$tmp"; exit 130' INT TERM
for t in "$@"; do
	had_sysrun=false; [ -e "$sysrun" ] && had_sysrun=true
	timeout -k 10 "$TEST_TIMEOUT" "$t" > "$tmp" 2>&1 < /dev/null &
	tpid=$!
	wait "$tpid"; rc=$?
	kill -9 "-$tpid" 2>/dev/null && echo "=== $t: processes it left behind were killed" >> "$log"
	tpid=""
	out=$(cat "$tmp")
	if ! $had_sysrun && [ -e "$sysrun" ]; then
		out="$out
$t left $sysrun behind: tests must not touch the host's run-time directory"
		rmdir "$sysrun" 2>/dev/null
		[ "$rc" -ne 0 ] || rc=1
	fi
	printf '%s\n' "=== $t (exit $rc)" "$out" >> "$log"
	if printf '%s\n' "$out" | grep -q '^\[==========\] .* test(s) run\.'; then
		p=$(printf '%s\n' "$out" | sed -n 's/^\[  PASSED  \] \([0-9]*\) test(s)\..*/\1/p' | awk '{s+=$1} END {print s+0}')
		f=$(printf '%s\n' "$out" | sed -n 's/^\[  FAILED  \] \([0-9]*\) test(s), listed below:.*/\1/p' | awk '{s+=$1} END {print s+0}')
		# A crash or timeout after the summary still fails the binary.
		if [ "$rc" -ne 0 ] && [ "$f" -eq 0 ]; then f=1; fi
	else
		if [ "$rc" -eq 0 ]; then p=1; f=0; else p=0; f=1; fi
	fi
	passed=$((passed + p)); failed=$((failed + f))
	if [ "$f" -ne 0 ]; then
		failures="$failures $t"
		echo "FAIL $t (exit $rc):"
		printf '%s\n' "$out" | tail -n 40 | sed 's/^/    /'
	else
		echo "ok   $t ($p)"
	fi
done
rm -f "$tmp"
echo "$passed $failed" > "$build/test-summary"
echo "$build: $passed passed, $failed failed${failures:+ (failing:$failures)}"
[ "$failed" -eq 0 ]
