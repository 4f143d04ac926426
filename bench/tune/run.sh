#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/tune/run.sh - the tuning benchmark (BENCHMARKS.md, "Tuning"): the
# seed's static settings, the kernel's scan-time advisor, ksmtuned's
# algorithm (`ksmctl tune --policy ksmtuned`) and `ksmctl tune` (default,
# --always, --advisor), one after the other on the same workload (see
# bench_tune.c), then the plots of memory saved and ksmd's CPU time over
# time.  It builds nothing: bench_tune and ksmctl come from BUILD (make
# build).  bench_tune takes the kernel-KSM lock itself and puts every knob
# back.
#
# usage: bench/tune/run.sh [--out DIR] [bench_tune options] [CONFIG...]
# DIR defaults to bench/tune/results/COMMIT (the checkout's short commit).
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
build=$root/${BUILD:-build}
out=$root/bench/tune/results/$(git -C "$root" rev-parse --short=7 HEAD 2>/dev/null || echo work)
if [ "${1:-}" = --out ]; then
	out=$2
	shift 2
fi
args=("$@")
configs=0
for a in "${args[@]}"; do
	case $a in static|advisor|ksmtuned|tune|tune-always|tune-advisor) configs=1 ;; esac
done
[ $configs = 1 ] || args+=(static advisor ksmtuned tune tune-always tune-advisor)
[ -x "$build/bench/tune/bench_tune" ] || { echo "run.sh: no $build/bench/tune/bench_tune: make build" >&2; exit 1; }
mkdir -p "$out"
# A copy: a rebuild during the run must not change the program under test.
cp "$build/cli/ksmctl" "$out/ksmctl"
trap 'rm -f "$out/ksmctl"' EXIT
uptime >"$out/load.txt"
"$build/bench/tune/bench_tune" --ksmctl "$out/ksmctl" --out "$out" "${args[@]}"
uptime >>"$out/load.txt"
if command -v gnuplot >/dev/null; then
	plots=() cpu=()
	for f in "$out"/series-*.tsv; do
		c=$(basename "$f" .tsv)
		c=${c#series-}
		plots+=("'$f' using 1:2 with lines title '$c'")
		cpu+=("'$f' using 1:4 with lines title '$c'")
	done
	gnuplot <<-EOF2
		set terminal png size 900,500
		set xlabel 'seconds'
		set key left top
		set output '$out/saved.png'
		set ylabel 'memory saved (MiB)'
		plot $(IFS=,; echo "${plots[*]}")
		set output '$out/cpu.png'
		set ylabel 'ksmd CPU time (s, cumulative)'
		plot $(IFS=,; echo "${cpu[*]}")
	EOF2
fi
