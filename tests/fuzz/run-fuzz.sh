#!/bin/sh
# Run libFuzzer targets for a while each; exit 1 when any of them finds a crash.
# Usage: run-fuzz.sh FUZZ_DIR SECONDS TARGET...
# Each target starts from tests/fuzz/corpus/<target>/ and writes what it learns to
# FUZZ_DIR/work/<target>/ (kept between runs); crashes land in FUZZ_DIR/artifacts/.
set -u
dir=$1; secs=$2; shift 2
rc=0
mkdir -p "$dir/artifacts"
for name in "$@"; do
	work="$dir/work/$name"
	seeds="tests/fuzz/corpus/$name"
	log="$dir/$name-${secs}s.log"   # the quick pass and a long run may overlap
	mkdir -p "$work"
	[ -d "$seeds" ] || seeds=""
	# shellcheck disable=SC2086
	if "$dir/$name" -max_total_time="$secs" -timeout=10 -rss_limit_mb=2048 \
		-print_final_stats=1 -artifact_prefix="$dir/artifacts/$name-" \
		"$work" $seeds > "$log" 2>&1; then
		execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -n 1)
		echo "fuzz $name: ok, ${execs:-?} executions in ${secs}s"
	else
		echo "fuzz $name: FAILED (log: $log)"
		tail -n 40 "$log"
		rc=1
	fi
done
exit $rc
