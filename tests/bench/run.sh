#!/bin/sh
# Run the benchmarks named on the command line, or else in $BENCH_RUN (bench.mk sets it to
# every $(BUILD)/tests/bench/*_bench), one after the other, streaming their output and keeping
# it in $BENCH_OUT/bench.log; then write $BENCH_OUT/report.md and the plots
# (tests/bench/report.sh). Exits 1 when a benchmark failed.
#
# BENCH_QUICK=1: the ~60-second subset. Benchmarks with their own quick mode read BENCH_QUICK;
# the block benchmark gets 1-second runs, one repeat and a 64 MiB image unless those are set.
set -u
# shellcheck disable=SC2086
[ $# -eq 0 ] && set -- ${BENCH_RUN:-}

OUT=${BENCH_OUT:-build/bench}
# Each benchmark's log says what guest RAM xensim gave it (pinnable or not, tests/xensim/README.md).
export XSIM_SAY_RAM=1
export BENCH_OUT="$OUT"
mkdir -p "$OUT"
if [ "${BENCH_QUICK:-0}" != 0 ]; then
	export BENCH_SECONDS="${BENCH_SECONDS:-1}" BENCH_REPEAT="${BENCH_REPEAT:-1}"
	export BENCH_IMG_MIB="${BENCH_IMG_MIB:-64}"
fi

log="$OUT/bench.log"
: >"$log"
rc=0
t0=$(date +%s)
for b in "$@"; do
	name=$(basename "$b")
	s=$(date +%s)
	echo "# $name" | tee -a "$log"
	{ "$b" 2>&1; echo $? >"$OUT/$name.rc"; } | tee -a "$log"
	st=$(cat "$OUT/$name.rc" 2>/dev/null || echo 1)
	echo "# $name: exit $st, $(($(date +%s) - s)) s" | tee -a "$log"
	[ "$st" = 0 ] || rc=1
done
echo "# all benchmarks: $(($(date +%s) - t0)) s" | tee -a "$log"
sh "$(dirname "$0")/report.sh" "$log" "$OUT" || rc=1
exit $rc
