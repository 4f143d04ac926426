#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs every fuzz target of a SAMEPAGE_FUZZ build for a bounded time (make fuzz).
#
#   run.sh BUILD_DIR SECONDS [NAME...]
#
# A target is a libFuzzer executable fuzz_NAME anywhere in BUILD_DIR (those
# tests/fuzz/CMakeLists.txt builds from tests/fuzz, lib/fuzz, cli/fuzz and
# daemon/fuzz, and those other directories build, as tests/daemon's
# fuzz_protocol).  Its seeds: corpus/NAME, else fuzz_corpus, in the source
# directory of the build directory that holds it, or corpus/NAME beside
# fuzz_NAME.c in one of those fuzz/ directories.  New inputs go to
# BUILD_DIR/fuzz/corpus/NAME, never to the tree; a failing input is saved as
# BUILD_DIR/fuzz/crash-NAME-*, with the command that replays it.
# $SAMEPAGE_FUZZ_EXCLUDE names the checks left out (tests/fuzz/fuzz.h),
# $FUZZ_SKIP the targets not run (both for known bugs: RELIABILITY.md).
# Exit 1 if any target failed.
set -u
build=$1
seconds=$2
shift 2
src=$(cd "$(dirname "$0")/../.." && pwd)
out=$build/fuzz
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Every libFuzzer executable of the build (its runtime knows -max_total_time).
targets=$(find "$build" -name 'fuzz_*' -type f -perm -u+x ! -path '*/CMakeFiles/*' | sort |
	while read -r bin; do grep -qa max_total_time "$bin" && echo "$bin"; done)
names=$*
[ -z "$names" ] && names=$(for bin in $targets; do echo "${bin##*/fuzz_}"; done)
if [ -z "$names" ]; then
	echo "run.sh: no fuzz target in $build (fix: make fuzz builds them)" >&2
	exit 2
fi

failed=""
for name in $names; do
	case " ${FUZZ_SKIP:-} " in *" $name "*)
		echo "== fuzz_$name: skipped (FUZZ_SKIP)"
		continue ;;
	esac
	bin=$(for b in $targets; do [ "${b##*/}" = "fuzz_$name" ] && echo "$b"; done | head -1)
	if [ -z "$bin" ]; then
		echo "run.sh: no target fuzz_$name in $build" >&2
		failed="$failed $name"
		continue
	fi
	rel=$(dirname "${bin#"$build"/}")
	seeds=""
	for dir in "$src/$rel/corpus/$name" "$src/$rel/fuzz_corpus" "$src/tests/fuzz/corpus/$name" \
		"$src/lib/fuzz/corpus/$name" "$src/cli/fuzz/corpus/$name" "$src/daemon/fuzz/corpus/$name"; do
		if [ -d "$dir" ]; then
			case $dir in */fuzz/corpus/*) [ -f "${dir%/corpus/*}/fuzz_$name.c" ] || continue ;; esac
			seeds=$dir
			break
		fi
	done
	mkdir -p "$out/corpus/$name"
	echo "== fuzz_$name: $seconds s, seeds ${seeds:-none}${SAMEPAGE_FUZZ_EXCLUDE:+, without $SAMEPAGE_FUZZ_EXCLUDE}"
	# -close_fd_mask=1: what the target prints is not libFuzzer's (its
	# messages and the sanitizers' reports go to stderr, in the log);
	# -timeout: one input running longer than that is a hang.  The outer
	# timeout ends a target that cannot even report (a SIGSEGV handler
	# loop: RELIABILITY.md).
	timeout -s KILL $((seconds + 120)) "$bin" -max_total_time="$seconds" -timeout=20 \
		-close_fd_mask=1 -print_final_stats=1 -artifact_prefix="$out/crash-$name-" \
		"$out/corpus/$name" $seeds >"$out/$name.log" 2>&1
	status=$?
	[ $status -eq 137 ] && echo "   killed after $((seconds + 120)) s: it hung"
	grep -E '^(#[0-9]+ +DONE|stat::number_of_executed_units|stat::peak_rss_mb)' "$out/$name.log"
	if [ $status -ne 0 ]; then
		failed="$failed $name"
		grep -aE '^[^ ]+\.c:[0-9]+: |ERROR: [A-Za-z]+Sanitizer|runtime error|ALARM|SUMMARY|Test unit written' \
			"$out/$name.log" | head -12
		echo "   replay: $bin $out/crash-$name-<file>   (log: $out/$name.log)"
	fi
done
if [ -n "$failed" ]; then
	echo "fuzz: FAILED:$failed"
	exit 1
fi
echo "fuzz: every target ran $seconds s without a failure"
