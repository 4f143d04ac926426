#!/bin/sh
# SPDX-License-Identifier: MIT
# Runs every fuzz target of a SAMEPAGE_FUZZ build for a bounded time (make fuzz).
#
#   run.sh BUILD_DIR SECONDS [NAME...]
#
# A target is an executable fuzz_NAME of BUILD_DIR/tests/fuzz (tests/fuzz/
# CMakeLists.txt builds those of tests/fuzz, lib/fuzz, cli/fuzz and
# daemon/fuzz); its seeds are corpus/NAME in the fuzz/ directory that holds
# fuzz_NAME.c.  New inputs go to BUILD_DIR/fuzz/corpus/NAME, never to the
# tree; a failing input is saved as BUILD_DIR/fuzz/crash-NAME-*, with the
# command that replays it.  $SAMEPAGE_FUZZ_EXCLUDE names the checks left
# out (tests/fuzz/fuzz.h), $FUZZ_SKIP the targets not run (both for known
# bugs: RELIABILITY.md).  Exit 1 if any target failed.
set -u
build=$1
seconds=$2
shift 2
src=$(cd "$(dirname "$0")/../.." && pwd)
out=$build/fuzz
mkdir -p "$out"
out=$(cd "$out" && pwd)

names=$*
if [ -z "$names" ]; then
	for bin in "$build"/tests/fuzz/fuzz_*; do
		[ -x "$bin" ] && names="$names ${bin##*/fuzz_}"
	done
fi
if [ -z "$names" ]; then
	echo "run.sh: no fuzz target in $build/tests/fuzz (fix: make fuzz builds them)" >&2
	exit 2
fi

failed=""
for name in $names; do
	case " ${FUZZ_SKIP:-} " in *" $name "*)
		echo "== fuzz_$name: skipped (FUZZ_SKIP)"
		continue ;;
	esac
	bin=$build/tests/fuzz/fuzz_$name
	if [ ! -x "$bin" ]; then
		echo "run.sh: no target fuzz_$name in $build/tests/fuzz" >&2
		failed="$failed $name"
		continue
	fi
	seeds=""
	for dir in "$src"/tests/fuzz "$src"/lib/fuzz "$src"/cli/fuzz "$src"/daemon/fuzz; do
		[ -f "$dir/fuzz_$name.c" ] && [ -d "$dir/corpus/$name" ] && seeds=$dir/corpus/$name
	done
	mkdir -p "$out/corpus/$name"
	echo "== fuzz_$name: $seconds s, seeds ${seeds:-none}${SAMEPAGE_FUZZ_EXCLUDE:+, without $SAMEPAGE_FUZZ_EXCLUDE}"
	# -close_fd_mask=3: the target's own output is not libFuzzer's;
	# -timeout: one input running longer than that is a hang.  The outer
	# timeout ends a target that cannot even report (a SIGSEGV handler
	# loop: RELIABILITY.md).
	timeout -s KILL $((seconds + 120)) "$bin" -max_total_time="$seconds" -timeout=20 \
		-close_fd_mask=3 -print_final_stats=1 -artifact_prefix="$out/crash-$name-" \
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
