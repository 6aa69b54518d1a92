#!/bin/sh
# Run e2e scenarios inside dom0: run-scenarios.sh [a,b,...] (default: every /e2e/scenarios/*.sh).
# Each scenario prints its own "E2E-RESULT PASS|FAIL|SKIP <name> <evidence>" line; a scenario that
# prints none, or outlives its time limit inside dom0 (a "# e2e-timeout: SECONDS" line in the
# scenario, else E2E_SCENARIO_TIMEOUT, default 300), is reported FAIL here. So is a PASS while a
# daemon logged a warning or an error during the scenario: the guests are honest Linux drivers,
# and an honest driver must leave a clean log. A scenario that expects such lines names them in
# "# e2e-log-allow: EXTENDED-REGEX" lines.
. /e2e/lib.sh

# Lines of the daemon logs so far, "FILE COUNT" per log.
log_marks() { for f in "$XVD_LOG"/*.log; do [ -f "$f" ] && echo "$f $(wc -l < "$f")"; done; }

# The warning and error lines the daemons logged since the marks in $1, minus those scenario $2
# allows.
new_warnings() {
	allow=$(sed -n 's/^# e2e-log-allow: *//p' "/e2e/scenarios/$2.sh" | tr '\n' '|' | sed 's/|$//')
	for f in "$XVD_LOG"/*.log; do
		[ -f "$f" ] || continue
		n=$(awk -v f="$f" '$1 == f { print $2 }' "$1")
		tail -n +$((${n:-0} + 1)) "$f"
	done | grep -E ': (warning|error|crit|alert|emerg): ' |
		if [ -n "$allow" ]; then grep -vE "$allow"; else cat; fi
}
list=$(echo "${1:-}" | tr ',' ' ')
[ -n "$list" ] || list=$(cd /e2e/scenarios && ls *.sh | sed 's/\.sh$//')
for s in $list; do
	if [ ! -f "/e2e/scenarios/$s.sh" ]; then
		result FAIL "$s" "no such scenario"; continue
	fi
	echo "E2E-BEGIN $s ($(cut -d' ' -f1 /proc/uptime)s)"
	mkdir -p "$XVD_LOG"
	log_marks > "/run/e2e-$s.marks"
	out=/run/e2e-$s.out
	limit=$(sed -n 's/^# e2e-timeout: *\([0-9]*\).*/\1/p' "/e2e/scenarios/$s.sh" | head -1)
	timeout "${limit:-${E2E_SCENARIO_TIMEOUT:-300}}" sh "/e2e/scenarios/$s.sh" >"$out" 2>&1
	rc=$?
	# Scenario output goes to the console prefixed, result lines as they are.
	sed -e '/^E2E-RESULT /!s/^/  | /' "$out"
	if ! grep -q "^E2E-RESULT [A-Z]* $s " "$out"; then
		result FAIL "$s" "scenario exited $rc without a result"
	elif grep "^E2E-RESULT [A-Z]* $s " "$out" | tail -1 | grep -q "^E2E-RESULT PASS "; then
		new_warnings "/run/e2e-$s.marks" "$s" > "/run/e2e-$s.warnings"
		if [ -s "/run/e2e-$s.warnings" ]; then
			sed 's/^/  | daemon: /' "/run/e2e-$s.warnings"
			result FAIL "$s" "passed, but the daemon logged $(wc -l < "/run/e2e-$s.warnings")" \
				"warning/error lines: $(head -1 "/run/e2e-$s.warnings")"
		fi
	fi
	cleanup_guests
done
