#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.set_undo: `set` and `apply` are all or nothing when the kernel keeps
# another value than the one written (a read-back that differs): every
# change made is undone, exit 5.  They used to say so in a warning, exit 5,
# and leave the other changes made (advisor_mode=none with pages_to_scan
# was one such, cli.kernel.set_restore).  On a copy of a recorded tree
# whose sleep_millisecs is /dev/null: written fine, read back empty.
#
# usage: set_undo.sh KSMCTL SRCDIR
set -u
ksmctl=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bad=0
fail() { echo "FAIL: $*"; bad=1; }
cp -r "$src/trees/linux-6.18" "$tmp/t"
ksm=$tmp/t/sys/kernel/mm/ksm
ln -sf /dev/null "$ksm/sleep_millisecs"
before=$(cat "$ksm/stable_node_chains_prune_millisecs")
printf 'stable_node_chains_prune_millisecs = 999\nsleep_millisecs = 33\n' >"$tmp/ksm.conf"
for cmd in "set stable_node_chains_prune_millisecs=999 sleep_millisecs=33" "apply $tmp/ksm.conf"; do
	# shellcheck disable=SC2086
	"$ksmctl" --sysfs-root "$tmp/t/sys" --proc-root "$tmp/t/proc" $cmd >"$tmp/out" 2>"$tmp/err"
	rc=$?
	cat "$tmp/out" "$tmp/err"
	[ $rc = 5 ] || fail "$cmd exited $rc, want 5"
	[ "$(cat "$ksm/stable_node_chains_prune_millisecs")" = "$before" ] ||
		fail "$cmd left stable_node_chains_prune_millisecs at $(cat "$ksm/stable_node_chains_prune_millisecs"), not $before"
	grep -q 'reads back "", not 33' "$tmp/err" || fail "$cmd does not say what read back"
	grep -q 'every change was undone' "$tmp/err" || fail "$cmd does not say it undid the changes"
	grep -q '^  input: sleep_millisecs=33' "$tmp/err" || fail "$cmd does not name the value"
done
[ $bad = 0 ] && echo "PASS"
exit $bad
