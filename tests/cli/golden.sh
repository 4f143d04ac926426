#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# Runs one golden case of ksmctl against a recorded tree and compares its
# output (stdout, stderr, exit status; for "rw" cases also the knob files
# afterwards) with tests/cli/golden/NAME.out.  --json output must also parse
# (python3 -m json.tool), --prometheus output must pass promcheck.py.
# KSMCTL_GOLDEN_UPDATE=1 rewrites the expected file instead.
#
# BINDIR, where make install puts ksmctl (the units' ExecStart=), reads as
# @BINDIR@, so the expected files do not depend on the install prefix.
#
# usage: golden.sh KSMCTL SRCDIR NAME [BINDIR]
set -u
ksmctl=$1 src=$2 name=$3 bindir=${4:-/nonexistent}
line=$(grep -E "^$name +\|" "$src/golden/cases.txt") || { echo "no case $name"; exit 1; }
IFS='|' read -r _ tree mode args <<<"$line"
tree=$(echo $tree) mode=$(echo $mode)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
root=$src/trees/$tree
if [ "$mode" = rw ]; then
	cp -a "$root" "$tmp/tree"
	root=$tmp/tree
fi
args=${args//@CONF@/$src/conf}
args=${args//@TMP@/$tmp}
cd "$tmp"
eval "\"$ksmctl\" --sysfs-root \"$root/sys\" --proc-root \"$root/proc\" --boot-root \"$root/boot\" $args" \
	>"$tmp/stdout" 2>"$tmp/stderr"
rc=$?
{
	cat "$tmp/stdout"
	echo "--- stderr"
	cat "$tmp/stderr"
	echo "--- exit status $rc"
	if [ "$mode" = rw ] && [ -d "$root/sys/kernel/mm/ksm" ]; then
		echo "--- knobs after"
		for f in "$root"/sys/kernel/mm/ksm/*; do echo "$(basename "$f") = $(cat "$f")"; done
	fi
} | sed -e "s|$root|@TREE@|g" -e "s|$src|@SRC@|g" -e "s|$tmp|@TMP@|g" \
	-e "s|$bindir/ksmctl|@BINDIR@/ksmctl|g" >"$tmp/actual"

status=0
# A refused command line with --json writes its error as JSON too.
case "$name: $args " in
*" --json "*)
	if ! python3 -m json.tool "$tmp/stdout" >/dev/null; then
		echo "FAIL: --json output does not parse"
		status=1
	fi ;;
*" --prometheus "*)
	if ! python3 "$src/promcheck.py" "$tmp/stdout"; then
		echo "FAIL: --prometheus output is not valid exposition format"
		status=1
	fi ;;
esac
expected=$src/golden/$name.out
if [ "${KSMCTL_GOLDEN_UPDATE:-0}" = 1 ]; then
	cp "$tmp/actual" "$expected"
	echo "updated $expected"
elif ! diff -u "$expected" "$tmp/actual"; then
	echo "FAIL: output of '$args' on $tree differs from $expected (diff above: - expected, + actual)"
	status=1
fi
exit $status
