#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/run.sh - runs the benchmarks of libsamepage against the kernel's KSM
# (make bench; make bench QUICK=1 for the reduced set) and writes the
# results: OUT/latest.tsv (or OUT/quick.tsv), one line per workload, case
# and metric with the engine's value, the kernel's and their ratio; the
# raw lines of every run in OUT/raw*.tsv; the memory-returned series of
# workload 2 and its gnuplot PNG (OUT/vm-like.png).  It builds nothing: the
# programs come from BUILD/bench (make build).
#
# The kernel's KSM is one global state: the whole run holds the lock file
# /tmp/samepage-kernel-ksm.lock (flock), which the project's kernel-KSM
# tests take too, every program also waits until nobody else uses KSM and
# checks that it put every tunable back (the run fails if not).  A run that fails (someone else touched KSM meanwhile) is
# retried once.
set -euo pipefail

root=$(cd "$(dirname "$0")/.." && pwd)
# make bench BUILD=dir passes its build directory in the environment.
build=$root/${BUILD:-build}
out=
quick=0
callgrind=1
repeat=
while [ $# -gt 0 ]; do
	case $1 in
	--quick) quick=1 ;;
	--build-dir) build=$2; shift ;;
	--out) out=$2; shift ;;
	--no-callgrind) callgrind=0 ;;
	--repeat) repeat=$2; shift ;;
	*) echo "usage: $0 [--quick] [--build-dir DIR] [--out DIR] [--repeat N] [--no-callgrind]" >&2; exit 2 ;;
	esac
	shift
done
bin=$build/bench
out=${out:-$root/bench/results}
mkdir -p "$out"
[ -x "$bin/bench_merge_time" ] || { echo "run.sh: no $bin/bench_merge_time: run make build" >&2; exit 1; }
[ -d /sys/kernel/mm/ksm ] || { echo "run.sh: no /sys/kernel/mm/ksm: the kernel has no KSM" >&2; exit 77; }

tag=latest sfx= mib=256
if [ $quick = 1 ]; then tag=quick sfx=-quick mib=32; fi
# Timings on a shared 2-CPU VM vary from run to run: the full run takes the
# median of 3 runs of every program (engine and kernel alternating).
repeat=${repeat:-$([ $quick = 1 ] && echo 1 || echo 3)}
raw=$out/raw-$tag.tsv
: >"$raw"

exec 9>>/tmp/samepage-kernel-ksm.lock
if ! flock -n 9; then
	echo "run.sh: waiting for /tmp/samepage-kernel-ksm.lock" >&2
	flock -w 1800 9 || { echo "run.sh: the kernel-KSM lock stayed taken" >&2; exit 1; }
fi
export SAMEPAGE_KSM_LOCK_HELD=1

knobs() {
	local f
	for f in run pages_to_scan sleep_millisecs merge_across_nodes max_page_sharing \
		stable_node_chains_prune_millisecs use_zero_pages smart_scan advisor_mode \
		advisor_max_cpu advisor_min_pages_to_scan advisor_max_pages_to_scan \
		advisor_target_scan_time; do
		[ -e /sys/kernel/mm/ksm/$f ] && echo "$f=$(cat /sys/kernel/mm/ksm/$f)"
	done
}
knobs_before=$(knobs)
mmc_before=$(cat /proc/sys/vm/max_map_count)

failed=0
# run PROG CASE [ARGS...]: the program for both engines, engine first
# (@ENGINE@ in an argument becomes lib or kernel, @REP@ the repetition).
run() {
	local prog=$1 case=$2 eng try rep
	shift 2
	for rep in $(seq "$repeat"); do for eng in lib kernel; do
		local args=("${@//@ENGINE@/$eng}")
		for try in 1 2; do
			if "$bin/$prog" --engine $eng --case $case "${args[@]//@REP@/$rep}" >"$raw.part"; then
				cat "$raw.part" >>"$raw"
				break
			fi
			echo "run.sh: $prog --engine $eng --case $case $* failed (try $try)" >&2
			[ $try = 2 ] && failed=1
		done
		rm -f "$raw.part"
	done; done
}

start=$(date +%s)
q=()
[ $quick = 1 ] && q=(--quick)
cases="idle busy"
[ $quick = 1 ] && cases=idle
for c in idle busy; do
	run bench_merge_time $c "${q[@]}"
done
for c in $cases; do
	run bench_vm $c "${q[@]}" --zero 0 --series "$out/vm-$c$sfx-@ENGINE@-@REP@.dat"
done
# The library pays a mapping per merged zero page with use_zero_pages=0;
# with 1 both engines drop zero pages without any: run both settings.
[ $quick = 0 ] && for c in $cases; do
	run bench_vm $c --zero 1
done
for c in $cases; do
	run bench_scan $c "${q[@]}"
	run bench_scatter $c "${q[@]}"
	run bench_cow $c "${q[@]}"
	run bench_churn $c "${q[@]}"
	# 10-scale at the default vm.max_map_count, and at 1048576 (the
	# program sets it for its run and puts it back).
	run bench_scale $c "${q[@]}"
	run bench_scale $c "${q[@]}" --max-map-count 1048576
done

# 7-multi: the seed's scenario across processes (issue 5): guest processes
# from one image, libsamepage + samepaged against the kernel's KSM, with
# the benchmarks' knobs; make demo's program, in its --tsv mode.
demo=$build/examples/demo
if [ -x "$demo" ] && [ -x "$build/daemon/samepaged" ]; then
	mmib=$([ $quick = 1 ] && echo 16 || echo 128)
	for rep in $(seq "$repeat"); do
		SAMEPAGE_KSM_LOCK_HELD=1 "$demo" --samepaged "$build/daemon/samepaged" \
			--guests 4 --mib "$mmib" --pages-to-scan 25600 --sleep-ms 0 --tsv \
			>>"$raw" 2>"$out/multi$sfx.log" ||
			{ echo "run.sh: 7-multi failed, see $out/multi$sfx.log" >&2; failed=1; }
	done
fi

# Each program checks that it put every knob back (and fails if not);
# this whole-run comparison can also see writes by someone who ignores the
# lock, so it only warns, except for run, which must never be left at 1.
knobs_after=$(knobs)
if [ "$knobs_before" != "$knobs_after" ]; then
	echo "run.sh: warning: kernel KSM knobs differ from before the run (another user?):" >&2
	diff <(echo "$knobs_before") <(echo "$knobs_after") >&2 || true
fi
if [ "$(cat /sys/kernel/mm/ksm/run)" = 1 ] && ! grep -qx run=1 <<<"$knobs_before"; then
	echo "run.sh: run=1 left behind" >&2
	failed=1
fi

if [ "$(cat /proc/sys/vm/max_map_count)" != "$mmc_before" ]; then
	echo "run.sh: vm.max_map_count was $mmc_before and is $(cat /proc/sys/vm/max_map_count)" >&2
	failed=1
fi

# The kernel is no longer used: let the other users of KSM in.
flock -u 9

# callgrind: instructions per page of the library's scan path (full run
# only: slow).  Only ksm_do_scan and what it calls is counted.
if [ $quick = 0 ] && [ $callgrind = 1 ] && command -v valgrind >/dev/null; then
	for dup in 0 1 2; do
		cg=$out/callgrind-dup$dup.out
		scanned=$(valgrind --tool=callgrind --toggle-collect=ksm_do_scan \
			--callgrind-out-file="$cg" "$bin/bench_scanpath" --pages 8192 --dup $dup \
			2>/dev/null | awk '$1 == "pages_scanned" { print $2 }') || true
		ir=$(awk '/^(summary|totals):/ { print $2; exit }' "$cg" 2>/dev/null) || true
		name=$(case $dup in 0) echo scan_only ;; 1) echo merge ;; *) echo all_alike ;; esac)
		if [ -n "$scanned" ] && [ -n "$ir" ] && [ "$ir" != 0 ]; then
			printf 'callgrind\t-\tengine\t%s_per_page\tIr\t%s\n' "$name" \
				"$(awk -v a="$ir" -v b="$scanned" 'BEGIN { printf "%.1f", a / b }')" >>"$raw"
		else
			echo "run.sh: callgrind of bench_scanpath --dup $dup gave no count" >&2
			failed=1
		fi
	done
fi
elapsed=$(( $(date +%s) - start ))

# The table: engine, kernel and ratio (engine / kernel) per workload, case
# and metric (the median of the repeated runs), with the target where the
# issue sets one.  The first pass over the raw lines keeps their order, the
# second reads them sorted by value within each key.
table=$out/$tag.tsv
awk -F'\t' -v OFS='\t' '
function target(w, m) {
	if (w == "1-P" && m == "time") return "<=1"
	if (w ~ /^2-VM/ && m == "converge") return "<=0.333"
	if (w == "3-scan" && m == "cpu_per_GiB_scan") return "<=0.5"
	if (w == "5-C" && m == "cow_break") return "<=1"
	if (w ~ /^(1|2|4)-/ && m == "returned_net") return ">=1"
	if (w ~ /^6-metadata/ && m == "per_page") return "engine<=16"
	if (w == "10-scale" && m == "returned_net") return ">=0.5"
	if (w ~ /^10-scale@/ && m == "returned_net") return ">=0.95"
	if (w ~ /^10-scale@/ && m == "converge") return "<=1"
	if (w == "7-multi" && (m == "converge" || m == "cpu")) return "<=1"
	if (m == "counter_read_max") return "engine<=2"
	return ""
}
function verdict(t, e, r) {
	if (t == "") return ""
	if (substr(t, 1, 8) == "engine<=") return e <= substr(t, 9) + 0 ? "met" : "SHORT"
	if (r == "-") return "?"
	if (substr(t, 1, 2) == "<=") return r <= substr(t, 3) + 0 ? "met" : "SHORT"
	return r >= substr(t, 3) + 0 ? "met" : "SHORT"
}
NR == FNR {
	key = $1 OFS $2 OFS $4 OFS $5
	if (!(key in seen)) { seen[key] = 1; order[n++] = key }
	next
}
{
	key = $1 OFS $2 OFS $4 OFS $5
	cnt[key, $3]++
	all[key, $3, cnt[key, $3]] = $6
}
END {
	for (i = 0; i < n; i++)
		for (j = 0; j < 2; j++) {
			e = j ? "kernel" : "engine"
			if ((order[i], e) in cnt)
				val[order[i], e] = all[order[i], e, int((cnt[order[i], e] + 1) / 2)]
		}
	print "workload", "case", "metric", "unit", "engine", "kernel", "ratio", "target", "verdict"
	for (i = 0; i < n; i++) {
		k = order[i]; split(k, f, OFS)
		e = ((k, "engine") in val) ? val[k, "engine"] : "-"
		c = ((k, "kernel") in val) ? val[k, "kernel"] : "-"
		r = (e != "-" && c != "-" && c + 0 != 0) ? sprintf("%.3g", e / c) : "-"
		t = target(f[1], f[3])
		print k, e, c, r, t, verdict(t, e, r)
	}
}' "$raw" <(sort -t$'\t' -k1,5 -k6,6g "$raw") >"$table"

# Every workload must have produced numbers for both engines.
want="1-P 5-D 2-VM 6-metadata 3-scan 4-scatter 5-C 10-scale 10-scale@1048576"
for w in $want; do
	for eng in engine kernel; do
		awk -F'\t' -v w="$w" -v e="$eng" '$1 == w && $3 == e { found = 1 } END { exit !found }' \
			"$raw" || { echo "run.sh: no $eng numbers for workload $w" >&2; failed=1; }
	done
done

# The series to plot: for each case and engine, that of the repetition
# whose convergence time was the median.
for c in $cases; do
	for eng in lib kernel; do
		e=$([ $eng = lib ] && echo engine || echo kernel)
		rep=$(awk -F'\t' -v c=$c -v e=$e '$1 == "2-VM" && $2 == c && $3 == e && $4 == "converge" {
			print ++n "\t" $6 }' "$raw" | sort -t$'\t' -k2,2g |
			awk '{ r[NR] = $1 } END { if (NR) print r[int((NR + 1) / 2)] }')
		[ -n "$rep" ] && mv -f "$out/vm-$c$sfx-$eng-$rep.dat" "$out/vm-$c$sfx-$eng.dat"
		rm -f "$out/vm-$c$sfx-$eng"-[0-9]*.dat
	done
done

# The plot of workload 2: memory returned over time, engine vs kernel.
if command -v gnuplot >/dev/null && [ -s "$out/vm-idle$sfx-lib.dat" ] && [ -s "$out/vm-idle$sfx-kernel.dat" ]; then
	png=$out/vm-like$sfx.png
	plots="'$out/vm-idle$sfx-lib.dat' using 1:2 with lines lw 2 lc rgb '#1f77b4' title 'libsamepage, idle', \
'$out/vm-idle$sfx-kernel.dat' using 1:2 with lines lw 2 lc rgb '#d62728' title 'kernel KSM, idle'"
	if [ -s "$out/vm-busy-lib.dat" ] && [ -s "$out/vm-busy-kernel.dat" ] && [ $quick = 0 ]; then
		plots="$plots, '$out/vm-busy-lib.dat' using 1:2 with lines lw 2 dt 2 lc rgb '#1f77b4' title 'libsamepage, busy', \
'$out/vm-busy-kernel.dat' using 1:2 with lines lw 2 dt 2 lc rgb '#d62728' title 'kernel KSM, busy'"
	fi
	gnuplot <<-GP || { echo "run.sh: gnuplot failed" >&2; failed=1; }
		set terminal pngcairo size 900,520 font 'DejaVu Sans,10' noenhanced
		set output '$png'
		set title 'Workload 2 (VM-like, 4 x $mib MiB, use_zero_pages=0): memory returned'
		set xlabel 'seconds since madvise + run=1'
		set ylabel 'MiB returned by the process'
		set label 1 'engine: RssAnon + its memfds; kernel: RssAnon - (pages_sharing + ksm_zero_pages)' at graph 0.01, graph 0.97 font ',8'
		set key bottom right
		set grid
		plot $plots
	GP
fi

{
	# SAMEPAGE_BENCH_REV names the commit of a tree exported without .git.
	rev=${SAMEPAGE_BENCH_REV:-$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo unknown)}
	[ -n "$(git -C "$root" status --porcelain -- lib include 2>/dev/null)" ] && rev="$rev+dirty-lib"
	echo "# samepage benchmarks ($tag), commit $rev, $(date -u '+%Y-%m-%d %H:%M UTC'), $(uname -r)," \
		"$(awk -F': ' '/^model name/ { print $2; exit }' /proc/cpuinfo), $(nproc) CPUs," \
		"median of $repeat, ${elapsed}s"
	column -t -s $'\t' "$table"
} | tee "$out/$tag.txt"
[ $failed = 0 ] || { echo "run.sh: FAILED (see above)" >&2; exit 1; }
echo "results: $table"
