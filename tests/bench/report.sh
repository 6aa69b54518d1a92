#!/bin/sh
# report.sh LOG OUTDIR: the BENCH lines of LOG as OUTDIR/report.md (one table row per line, with
# the issue's target and PASS / MISS, "info" where there is no target, SKIP for skipped cases),
# and gnuplot plots in OUTDIR: ratios.png (every case against its baseline), blk_qd.png (block
# random-read IOPS and mean latency against queue depth, ours and fio), scale_ready.png (the 50
# guests' start-to-READY times). Exits 0 even when targets are missed: the table says so.
set -u

LOG=$1
OUT=$2
MD="$OUT/report.md"
mkdir -p "$OUT"

quick="full run"
[ "${BENCH_QUICK:-0}" != 0 ] && quick="BENCH_QUICK=1 subset"

{
	echo "# xen-virtiod benchmarks"
	echo
	echo "$(date -u '+%Y-%m-%d %H:%M UTC'), $quick, $(nproc) CPUs, $(uname -sr)," \
	     "load average $(cut -d' ' -f1-3 /proc/loadavg) at the end."
	echo "Cases and limits: docs/PERFORMANCE.md. ratio >= 1 is at or beyond the baseline" \
	     "(for latencies and costs ratio = baseline / value)."
	echo
	echo "| case | value | unit | baseline | ratio | target | result |"
	echo "|---|---:|---|---:|---:|---|---|"
} >"$MD"

# One row per BENCH line, in the order they were printed.
grep '^BENCH ' "$LOG" | sed 's/ #.*//' | awk '
function val(s) { sub(/^[a-z]+=/, "", s); return s }
function target(n) {
	if (n == "blk_randread_4k_qd32") return "r>=0.9|ratio >= 0.9 (of fio)"
	if (n == "blk_randread_4k_qd1") return "r>=0.7|ratio >= 0.7 (latency, fio)"
	if (n ~ /^net_/) return "r>=0.8|ratio >= 0.8 (of raw tap)"
	if (n == "mmio_roundtrip") return "r>=0.667|within 1.5x (ratio >= 0.67)"
	if (n == "rss_four_devices") return "v<=8|<= 8 MiB"
	if (n ~ /^scale_50_ready_all$/) return "v<5|< 5 s"
	if (n == "gmem_cache_hit_rate") return "v>=99|>= 99 % (near 100)"
	if (n == "fair_rng_rtt_max") return "v<100|< 100 ms (bounded loop turns)"
	if (n ~ /^syscalls_per_request_blk_.*_qd32_/) return "v<=0.5|<= 0.5 per request"
	if (n ~ /^(hw)?instr_per_request_blk_.*_qd32_/) return "v<=2400|<= 2,400 per request"
	if (n ~ /^(hw)?instr_per_request_blk_.*_qd1_/) return "v<=3000|<= 3,000 per request"
	return "|-"
}
{
	name = $2; v = val($3); u = val($4); b = val($5); r = val($6)
	split(target(name), t, "|")
	res = "info"
	if (u == "skipped") res = "SKIP"
	else if (t[1] == "r>=0.9") res = (r + 0 >= 0.9) ? "PASS" : "MISS"
	else if (t[1] == "r>=0.7") res = (r + 0 >= 0.7) ? "PASS" : "MISS"
	else if (t[1] == "r>=0.8") res = (r + 0 >= 0.8) ? "PASS" : "MISS"
	else if (t[1] == "r>=0.667") res = (r + 0 >= 0.667) ? "PASS" : "MISS"
	else if (t[1] == "v<=8") res = (v + 0 <= 8) ? "PASS" : "MISS"
	else if (t[1] == "v<5") res = (v + 0 < 5) ? "PASS" : "MISS"
	else if (t[1] == "v>=99") res = (v + 0 >= 99) ? "PASS" : "MISS"
	else if (t[1] == "v<100") res = (v + 0 < 100) ? "PASS" : "MISS"
	else if (t[1] == "v<=0.5") res = (v + 0 <= 0.5) ? "PASS" : "MISS"
	else if (t[1] == "v<=2400") res = (v + 0 <= 2400) ? "PASS" : "MISS"
	else if (t[1] == "v<=3000") res = (v + 0 <= 3000) ? "PASS" : "MISS"
	printf "| %s | %s | %s | %s | %s | %s | %s |\n", name, v, u, b, r, t[2], res
}' >>"$MD"

pass=$(grep -c '| PASS |$' "$MD")
miss=$(grep -c '| MISS |$' "$MD")
skip=$(grep -c '| SKIP |$' "$MD")
{
	echo
	echo "Targets: $pass PASS, $miss MISS, $skip SKIP."
	echo
	echo "Plots: ratios.png, blk_qd.png, scale_ready.png (next to this file)."
	echo
	echo "Raw BENCH lines:"
	echo
	echo '```'
	grep '^BENCH ' "$LOG"
	echo '```'
} >>"$MD"
echo "# report: $MD ($pass PASS, $miss MISS, $skip SKIP)"

command -v gnuplot >/dev/null 2>&1 || { echo "# report: gnuplot missing, no plots"; exit 0; }

# Every case with a ratio, as bars; 1 is the baseline.
grep '^BENCH ' "$LOG" | sed 's/ #.*//' | awk '{
	r = $6; sub(/^ratio=/, "", r); if (r + 0 > 0) printf "%d %s %s\n", n++, $2, r }' \
	>"$OUT/ratios.dat"
if [ -s "$OUT/ratios.dat" ]; then
	gnuplot <<EOF
set terminal png size 1100,600 noenhanced
set output "$OUT/ratios.png"
set title "xen-virtiod against each case's baseline (ratio >= 1: at or beyond it)"
set style fill solid 0.6
set boxwidth 0.7
set logscale y 2
set ylabel "ratio (log scale)"
set bmargin 10
set xtics rotate by -60 font ",8" nomirror
set grid ytics
set key off
plot "$OUT/ratios.dat" using 1:3:xtic(2) with boxes lc rgb "#4477aa", 1 with lines lc rgb "red" dt 2
EOF
fi

# Block random reads at each queue depth: IOPS, and mean latency = depth / IOPS (Little).
grep '^BENCH blk_randread_4k_qd' "$LOG" | sed 's/ #.*//' | awk '{
	q = $2; sub(/.*_qd/, "", q); v = $3; sub(/^value=/, "", v); b = $5; sub(/^baseline=/, "", b)
	if (v + 0 > 0 && b + 0 > 0) printf "%s %s %s %.1f %.1f\n", q, v, b, q * 1e6 / v, q * 1e6 / b
}' | sort -n >"$OUT/blk_qd.dat"
if [ -s "$OUT/blk_qd.dat" ]; then
	gnuplot <<EOF
set terminal png size 1000,450 noenhanced
set output "$OUT/blk_qd.png"
set multiplot layout 1,2 title \
    "virtio-blk 4 KiB random read: xen-virtiod on xensim vs fio (io_uring), same file"
set logscale x 2
set xlabel "queue depth"
set grid
set key top left
set ylabel "IOPS"
plot "$OUT/blk_qd.dat" using 1:2 with linespoints title "xen-virtiod", \
     "" using 1:3 with linespoints title "fio"
set ylabel "mean latency (us)"
plot "$OUT/blk_qd.dat" using 1:4 with linespoints title "xen-virtiod", \
     "" using 1:5 with linespoints title "fio"
unset multiplot
EOF
fi

if [ -s "$OUT/scale_ready.dat" ]; then
	gnuplot <<EOF
set terminal png size 900,450 noenhanced
set output "$OUT/scale_ready.png"
set title "50 sim daemons on one xensim hub: each guest's start and READY=1"
set xlabel "guest"
set ylabel "seconds since the first start"
set grid
set key top left
plot "$OUT/scale_ready.dat" using 1:2 with points pt 7 ps 0.6 title "started", \
     "" using 1:3 with points pt 5 ps 0.6 title "READY=1"
EOF
fi
for f in "$OUT"/*.png; do
	[ -e "$f" ] && echo "# plot: $f"
done
exit 0
