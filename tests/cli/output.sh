#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.output: status --output on a full filesystem (a 4 KiB tmpfs, so root
# and mount(8) are needed: skipped otherwise) exits 2 with one message whose
# fix is the room, and keeps the file as it was; nothing more is said of
# standard output, which is fine.
#
# usage: output.sh KSMCTL SRCDIR
set -u
ksmctl=$1 src=$2
tree=$src/trees/linux-6.18
dir=$(mktemp -d)
trap 'umount "$dir" 2>/dev/null; rmdir "$dir"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

mount -t tmpfs -o size=4k tmpfs "$dir" 2>/dev/null || { echo "SKIP: cannot mount a tmpfs"; exit 77; }
echo "old" >"$dir/ksm.prom"
head -c 4096 /dev/zero >"$dir/fill" 2>/dev/null
"$ksmctl" --sysfs-root "$tree/sys" --proc-root "$tree/proc" status --prometheus \
	--output "$dir/ksm.prom" >/dev/null 2>"$dir.err"
rc=$?
err=$(cat "$dir.err"); rm -f "$dir.err"
[ $rc = 2 ] || fail "status --output on a full filesystem exited $rc, not 2: $err"
[ "$(grep -c '^ksmctl: ' <<<"$err")" = 1 ] || fail "not one message: $err"
grep -q "cannot write the output file: No space left on device" <<<"$err" &&
	grep -q "fix: make room on its filesystem" <<<"$err" || fail "the message: $err"
[ "$(cat "$dir/ksm.prom")" = old ] || fail "the old file was not kept: $(cat "$dir/ksm.prom")"
[ -z "$(find "$dir" -name '.ksm.prom.*')" ] || fail "a temporary file was left: $(ls -a "$dir")"
echo "ok: a full filesystem is one message, the file kept"
