#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/runtimes/run.sh - COPIES copies of one program (a language runtime)
# holding the same data, under each configuration in turn, in one run:
#   plain      no merging
#   kernel     the kernel's KSM (ksmctl run: merge-any), the project's
#              kernel-KSM lock held, its knobs put back at the end
#   samepaged  one samepaged domain (ksmctl --user run --domain)
#   samepaged-tuned  the same with GLIBC_TUNABLES=glibc.malloc.mmap_threshold
#              (glibc maps every block at or above it by itself: those merge,
#              malloc's heap does not)
# Both engines get the same knobs (the seed's: pages_to_scan 20000,
# sleep_millisecs 200).  The program is run as PROGRAM [ARGS...] MIB SECONDS
# and prints "rounds N bad M" (bench/runtimes/dup.js, dup.py).
#
# One TSV line a configuration: the most saved at once (pages_sharing +
# ksm_zero_pages, MiB), the copies' Pss SECONDS-3 s after their start (MiB;
# samepaged's own included), the rounds all copies did, and the bad checks.
#
# Usage: bash bench/runtimes/run.sh [--build-dir DIR] [--copies N] [--mib N]
#          [--seconds S] [--configs "plain kernel samepaged samepaged-tuned"]
#          [--mmap-threshold BYTES] -- PROGRAM [ARGS...]
set -euo pipefail
cd "$(dirname "$0")/../.."
build=build copies=3 mib=64 seconds=20 mmap_threshold=131072
configs="plain kernel samepaged samepaged-tuned"
pts=20000 sleep_ms=200
while [ $# -gt 0 ]; do
	case "$1" in
	--build-dir) build=$2; shift 2 ;;
	--copies) copies=$2; shift 2 ;;
	--mib) mib=$2; shift 2 ;;
	--seconds) seconds=$2; shift 2 ;;
	--configs) configs=$2; shift 2 ;;
	--mmap-threshold) mmap_threshold=$2; shift 2 ;;
	--) shift; break ;;
	*) echo "run.sh: unknown option $1 (see the usage at the top of $0)" >&2; exit 2 ;;
	esac
done
[ $# -gt 0 ] || { echo "run.sh: no program given (-- PROGRAM [ARGS...])" >&2; exit 2; }
ksmctl=$build/cli/ksmctl samepaged=$build/daemon/samepaged
for f in "$ksmctl" "$samepaged"; do
	[ -x "$f" ] || { echo "run.sh: $f is missing (make, or --build-dir DIR)" >&2; exit 2; }
done
ksm=/sys/kernel/mm/ksm
tmp=$(mktemp -d /dev/shm/samepage-runtimes.XXXXXX)
chmod 700 "$tmp"
daemon=
saved_knobs=
# The kernel's knobs as they were before the kernel configuration: every
# page unmerged first (run=2), then the old values.
restore_knobs() {
	[ -n "$saved_knobs" ] || return 0
	local r p s
	read -r r p s <<<"$saved_knobs"
	echo 2 >$ksm/run
	echo "$p" >$ksm/pages_to_scan
	echo "$s" >$ksm/sleep_millisecs
	echo "$r" >$ksm/run
	saved_knobs=
}
cleanup() {
	[ -n "$daemon" ] && kill "$daemon" 2>/dev/null && wait "$daemon" 2>/dev/null
	restore_knobs
	rm -rf "$tmp"
}
trap cleanup EXIT

# saved pages now: the kernel's or samepaged's pages_sharing + ksm_zero_pages
saved_pages() {
	if [ "$1" = kernel ]; then
		echo $(($(cat $ksm/pages_sharing) + $(cat $ksm/ksm_zero_pages)))
	else
		"$ksmctl" --socket "$tmp/sock" status --json 2>/dev/null | python3 -c '
import json, sys
f = json.load(sys.stdin)["files"]
print(f["pages_sharing"] + f.get("ksm_zero_pages", 0))' 2>/dev/null || echo 0
	fi
}

pss_kb() {
	local t=0
	for p in "$@"; do
		t=$((t + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup" 2>/dev/null || echo 0)))
	done
	echo $t
}

run_config() {
	local c=$1 pids=() i most=0 pss=0
	shift
	local -a launch=()
	case $c in
	plain) launch=() ;;
	kernel) launch=("$ksmctl" run --) ;;
	samepaged) launch=("$ksmctl" --socket "$tmp/sock" run --domain bench --) ;;
	samepaged-tuned)
		launch=("$ksmctl" --socket "$tmp/sock" run --domain bench --
			env "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=$mmap_threshold") ;;
	*) echo "run.sh: unknown configuration $c" >&2; exit 2 ;;
	esac
	for i in $(seq "$copies"); do
		"${launch[@]}" "$@" "$mib" "$seconds" >"$tmp/out.$i" 2>&1 &
		pids+=($!)
	done
	local start=$SECONDS
	while kill -0 "${pids[0]}" 2>/dev/null; do
		sleep 0.5
		if [ "$c" != plain ]; then
			local n
			n=$(saved_pages "$c")
			[ "$n" -gt "$most" ] && most=$n
		fi
		if [ "$pss" = 0 ] && [ $((SECONDS - start)) -ge $((seconds - 3)) ]; then
			pss=$(pss_kb "${pids[@]}" ${daemon:+"$daemon"})
		fi
	done
	local rc=0
	for p in "${pids[@]}"; do wait "$p" || rc=1; done
	local rounds bad
	rounds=$(cat "$tmp"/out.* | awk '/^rounds/ {r += $2} END {print r + 0}')
	bad=$(cat "$tmp"/out.* | awk '/^rounds/ {b += $4} END {print b + 0}')
	[ "$rc" = 0 ] || { echo "run.sh: a copy failed under $c:" >&2; cat "$tmp"/out.* >&2; }
	awk -v c="$c" -v m="$most" -v p="$pss" -v r="$rounds" -v b="$bad" \
		'BEGIN {printf "%s\t%.1f\t%.1f\t%d\t%d\n", c, m * 4096 / 1048576, p / 1024, r, b}'
	rm -f "$tmp"/out.*
	return $rc
}

echo "# $* ($copies copies of $mib MiB, $seconds s; pages_to_scan $pts, sleep_millisecs $sleep_ms; $build;" \
	"$(git rev-parse --short HEAD 2>/dev/null), $(date -u '+%F %H:%M UTC'), $(uname -r))"
printf 'config\tsaved_max_mib\tpss_mib\trounds\tbad\n'
status=0
for c in $configs; do
	case $c in
	kernel)
		exec 9>/tmp/samepage-kernel-ksm.lock
		flock 9
		saved_knobs="$(cat $ksm/run) $(cat $ksm/pages_to_scan) $(cat $ksm/sleep_millisecs)"
		echo 2 >$ksm/run
		echo $pts >$ksm/pages_to_scan
		echo $sleep_ms >$ksm/sleep_millisecs
		echo 1 >$ksm/run
		run_config kernel "$@" || status=1
		restore_knobs
		flock -u 9
		;;
	samepaged*)
		"$samepaged" --foreground --socket "$tmp/sock" --state-dir "$tmp" >"$tmp/daemon.log" 2>&1 &
		daemon=$!
		for _ in $(seq 100); do [ -S "$tmp/sock" ] && break; sleep 0.05; done
		"$ksmctl" --socket "$tmp/sock" set pages_to_scan=$pts sleep_millisecs=$sleep_ms run=1 >/dev/null
		run_config "$c" "$@" || status=1
		kill "$daemon"
		wait "$daemon" 2>/dev/null || true
		daemon=
		;;
	*) run_config "$c" "$@" || status=1 ;;
	esac
done
exit $status
