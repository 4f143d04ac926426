#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.doctor: before ksmd's second full scan, doctor says to wait for it,
# but not when nothing is mergeable: ksmd does not scan at all then, and
# `ksmctl wait --scans 2` would never end (nothing-mergeable says what to
# do instead).  A recorded tree with run=1 and nothing merged yet, with
# and without mergeable processes.
#
# usage: doctor.sh KSMCTL SRCDIR
set -u
ksmctl=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bad=0
cp -a "$src/trees/linux-6.18" "$tmp/tree"
root=$tmp/tree ksm=$tmp/tree/sys/kernel/mm/ksm
echo 1 >"$ksm/run"
echo none >"$ksm/advisor_mode"
for f in full_scans pages_shared pages_sharing pages_unshared pages_volatile ksm_zero_pages \
	stable_node_chains stable_node_dups general_profit; do
	echo 0 >"$ksm/$f"
done
ids() {
	"$ksmctl" --sysfs-root "$root/sys" --proc-root "$root/proc" --boot-root "$root/boot" \
		doctor --json | grep -o '"id": "[a-z-]*"' | tr '\n' ' '
}
got=$(ids)
grep -q '"first-scan"' <<<"$got" || { echo "FAIL: mergeable processes, no full scan yet: $got"; bad=1; }
grep -q '"nothing-mergeable"' <<<"$got" && { echo "FAIL: nothing-mergeable with processes: $got"; bad=1; }
rm -rf "$root"/proc/[0-9]*
got=$(ids)
grep -q '"nothing-mergeable"' <<<"$got" || { echo "FAIL: no process, no nothing-mergeable: $got"; bad=1; }
grep -q '"first-scan"' <<<"$got" && { echo "FAIL: nothing mergeable, yet doctor says to wait for full scans: $got"; bad=1; }
[ $bad = 0 ] && echo "ok: first-scan only when something is mergeable"
exit $bad
