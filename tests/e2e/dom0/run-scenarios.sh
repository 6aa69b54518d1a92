#!/bin/sh
# Run e2e scenarios inside dom0: run-scenarios.sh [a,b,...] (default: every /e2e/scenarios/*.sh).
# Each scenario prints its own "E2E-RESULT PASS|FAIL|SKIP <name> <evidence>" line; a scenario that
# prints none, or outlives its time limit inside dom0 (a "# e2e-timeout: SECONDS" line in the
# scenario, else E2E_SCENARIO_TIMEOUT, default 300), is reported FAIL here.
. /e2e/lib.sh
list=$(echo "${1:-}" | tr ',' ' ')
[ -n "$list" ] || list=$(cd /e2e/scenarios && ls *.sh | sed 's/\.sh$//')
for s in $list; do
	if [ ! -f "/e2e/scenarios/$s.sh" ]; then
		result FAIL "$s" "no such scenario"; continue
	fi
	echo "E2E-BEGIN $s ($(cut -d' ' -f1 /proc/uptime)s)"
	out=/run/e2e-$s.out
	limit=$(sed -n 's/^# e2e-timeout: *\([0-9]*\).*/\1/p' "/e2e/scenarios/$s.sh" | head -1)
	timeout "${limit:-${E2E_SCENARIO_TIMEOUT:-300}}" sh "/e2e/scenarios/$s.sh" >"$out" 2>&1
	rc=$?
	# Scenario output goes to the console prefixed, result lines as they are.
	sed -e '/^E2E-RESULT /!s/^/  | /' "$out"
	if ! grep -q "^E2E-RESULT [A-Z]* $s " "$out"; then
		result FAIL "$s" "scenario exited $rc without a result"
	fi
	cleanup_guests
done
