#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.systemd: doctor advises systemd's MemoryKSM= only where PID 1 is
# systemd 254 or later (older versions ignore it).  A recorded tree with a
# process that loses memory to KSM, PID 1 named systemd, and a stand-in
# systemctl on PATH that prints the version under test.
#
# usage: systemd.sh KSMCTL SRCDIR
set -u
ksmctl=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bad=0
cp -a "$src/trees/linux-6.18" "$tmp/tree"
mkdir -p "$tmp/tree/proc/1" "$tmp/bin"
echo systemd >"$tmp/tree/proc/1/comm"
root=$tmp/tree

doctor_fix() { # the fixes doctor gives, with systemctl printing "$1"
	printf '#!/bin/sh\necho "%s"\n' "$1" >"$tmp/bin/systemctl"
	chmod +x "$tmp/bin/systemctl"
	PATH=$tmp/bin:$PATH "$ksmctl" --sysfs-root "$root/sys" --proc-root "$root/proc" \
		--boot-root "$root/boot" doctor --json | grep '"fix"'
}
expect() { # VERSION_LINE yes|no
	local fixes
	fixes=$(doctor_fix "$1")
	[ -n "$fixes" ] || { echo "FAIL: doctor gave no fix at all"; bad=1; return; }
	if grep -q MemoryKSM <<<"$fixes"; then
		[ "$2" = yes ] || { echo "FAIL: '$1': doctor advises MemoryKSM=: $fixes"; bad=1; }
	else
		[ "$2" = no ] || { echo "FAIL: '$1': doctor does not mention MemoryKSM="; bad=1; }
	fi
}
expect "systemd 252 (252.36-1~deb12u1)" no
expect "systemd 253 (253.5)" no
expect "systemd 254 (254.5-1)" yes
expect "systemd 257 (257.9-1)" yes
expect "not systemd at all" no
rm "$tmp/tree/proc/1/comm" # PID 1 is not systemd: a newer systemctl does not matter
expect "systemd 257 (257.9-1)" no
[ $bad = 0 ] && echo "ok: MemoryKSM= advised with systemd >= 254 only"
exit $bad
