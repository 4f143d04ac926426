#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.rootperm: a knob that root cannot write (EPERM or EACCES while euid
# is 0) is not "needs root, run as root": set, set --dry-run, check,
# doctor and tune say what refused it and a fix that fits, on a copy of a
# recorded tree:
#  - the immutable attribute (chattr +i; tmpfs has none: then skipped);
#  - root without CAP_DAC_OVERRIDE (setpriv drops it) and a file of mode
#    0444, as in a container whose capabilities were dropped.
# Another user is still told to run as root.  Exit 77 when not root, or
# when neither way to refuse root works here.
#
# usage: rootperm.sh KSMCTL SRCDIR
set -u
ksmctl=$1 src=$2
[ "$(id -u)" = 0 ] || { echo "SKIP: needs root (root refused a write is the case)"; exit 77; }
tmp=$(mktemp -d)
chmod 755 "$tmp" # the other user of the last case reads the tree
trap 'chattr -R -i "$tmp" 2>/dev/null; rm -rf "$tmp"' EXIT
bad=0 ran=0
fail() { echo "FAIL: $*"; bad=1; }
cp -a "$src/trees/linux-6.18" "$tmp/t"
ksm=$tmp/t/sys/kernel/mm/ksm
k() { "$@" "$ksmctl" --sysfs-root "$tmp/t/sys" --proc-root "$tmp/t/proc" --boot-root "$tmp/t/boot" "${args[@]}"; }

# expect WHAT-IT-SAYS FIX-IT-GIVES [PREFIX...]: set, set --dry-run, check, doctor, tune as root.
expect() {
	local says=$1 fixes=$2 rc
	shift 2
	args=(set sleep_millisecs=30)
	k "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	cat "$tmp/err"
	[ $rc = 3 ] || fail "$*: set exited $rc, want 3"
	grep -q "needs root\|run as root" "$tmp/err" && fail "$*: set tells root to run as root"
	grep -q "though ksmctl runs as root: .*$says" "$tmp/err" || fail "$*: set does not say $says"
	grep -q "^  fix: .*$fixes" "$tmp/err" || fail "$*: set's fix is not $fixes"
	grep -q "^  input: $ksm/sleep_millisecs" "$tmp/err" || fail "$*: set does not name the file"
	[ "$(cat "$ksm/sleep_millisecs")" = 20 ] || fail "$*: sleep_millisecs changed"
	args=(set --dry-run sleep_millisecs=30)
	k "$@" >"$tmp/out" 2>"$tmp/err"
	grep -q "need root" "$tmp/err" && fail "$*: set --dry-run says root is needed: $(cat "$tmp/err")"
	grep -q "$says" "$tmp/err" || fail "$*: set --dry-run does not say $says"
	args=(check --json)
	k "$@" >"$tmp/out" 2>"$tmp/err"
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); sys.exit(d["can_change"])' "$tmp/out" ||
		fail "$*: check says root can change it"
	grep -q "needs root" "$tmp/out" && fail "$*: check says writing needs root"
	grep -q "$says" "$tmp/out" || fail "$*: check does not say $says: $(cat "$tmp/out")"
	args=(doctor)
	k "$@" >"$tmp/out" 2>"$tmp/err"
	grep -q "this user cannot change KSM\|as root$" "$tmp/out" && fail "$*: doctor tells root to be root"
	grep -A2 "root cannot change KSM here" "$tmp/out" | grep -q "$says" ||
		fail "$*: doctor does not say $says: $(cat "$tmp/out")"
	args=(tune --once)
	k "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	[ $rc = 3 ] || fail "$*: tune exited $rc, want 3"
	grep -q "though ksmctl runs as root: .*$says" "$tmp/err" || fail "$*: tune does not say $says: $(cat "$tmp/err")"
	ran=1
}

# The immutable attribute, where the filesystem has it.
if chattr +i "$ksm/sleep_millisecs" "$ksm/run" 2>/dev/null; then
	expect "immutable attribute (EPERM)" "chattr -i $ksm/"
	chattr -i "$ksm/sleep_millisecs" "$ksm/run"
else
	echo "note: no immutable attribute on $(df --output=fstype "$tmp" | tail -1) ($tmp): that case skipped"
fi

# Root without CAP_DAC_OVERRIDE, a file its mode keeps root from.
chmod 0444 "$ksm/sleep_millisecs" "$ksm/run"
drop=(setpriv --inh-caps=-dac_override --bounding-set=-dac_override)
if "${drop[@]}" true 2>/dev/null && ! "${drop[@]}" sh -c ": >>'$ksm/run'" 2>/dev/null; then
	expect "lacks CAP_DAC_OVERRIDE" "cap-add DAC_OVERRIDE" "${drop[@]}"
else
	echo "note: setpriv cannot drop CAP_DAC_OVERRIDE here: that case skipped"
fi

# Another user is still told to run as root.
args=(set sleep_millisecs=30)
k setpriv --reuid=65534 --regid=65534 --clear-groups >"$tmp/out" 2>"$tmp/err"
rc=$?
[ $rc = 3 ] && grep -q "changing KSM needs root" "$tmp/err" ||
	fail "not root: exit $rc, want 3 and 'needs root': $(cat "$tmp/err")"

if [ $ran = 0 ]; then
	echo "SKIP: neither chattr +i nor setpriv refuses root a write here"
	exit 77
fi
[ $bad = 0 ] && echo "PASS"
exit $bad
