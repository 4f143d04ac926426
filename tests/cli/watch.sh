#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.watch: `ksmctl status --watch` keeps producing frames until SIGINT,
# then exits 0; with --prometheus --output, KSM gone meanwhile is up 0.
# Waits for the second frame (with a generous limit) rather than for a
# time, then checks that every frame is a whole JSON object on a line of
# its own (JSON Lines).
#
# usage: watch.sh KSMCTL SRCDIR
set -u
ksmctl=$1 src=$2
tree=$src/trees/linux-6.18
tmp=$(mktemp -d)
trap 'kill $pid 2>/dev/null; rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

"$ksmctl" --sysfs-root "$tree/sys" --proc-root "$tree/proc" --boot-root "$tree/boot" \
	status --json --watch 0.1 >"$tmp/out" &
pid=$!
for _ in $(seq 600); do
	[ "$(grep -c '"backend"' "$tmp/out")" -ge 2 ] && break
	sleep 0.05
done
[ "$(grep -c '"backend"' "$tmp/out")" -ge 2 ] || fail "fewer than 2 frames in 30 s"
kill -INT $pid
wait $pid
rc=$?
[ $rc -eq 0 ] || fail "status --watch exited $rc on SIGINT, expected 0"
python3 - "$tmp/out" <<'PY' || fail "a frame is not a JSON object on a line of its own"
import json, sys
n = 0
for line in open(sys.argv[1]).read().splitlines():  # JSON Lines: an object a line
    obj = json.loads(line)
    assert obj["files"]["pages_to_scan"] == 2400, obj
    n += 1
print(f"{n} frames")
assert n >= 2
PY

# --prometheus --output: when KSM goes away under a watch (a tree's ksm
# directory removed; samepaged stopped, with --user), the file says
# samepage_ksm_up 0 alone instead of zeros under up 1; it comes back.
cp -a "$tree" "$tmp/tree"
"$ksmctl" --sysfs-root "$tmp/tree/sys" --proc-root "$tmp/tree/proc" --boot-root "$tmp/tree/boot" \
	status --prometheus --watch 0.1 --output "$tmp/ksm.prom" 2>"$tmp/err" &
pid=$!
wait_for() { # wait_for SAMPLE-LINE: until the file has it (30 s at most)
	for _ in $(seq 600); do grep -qx "$1" "$tmp/ksm.prom" 2>/dev/null && return 0; sleep 0.05; done
	fail "no '$1' in 30 s: $(cat "$tmp/ksm.prom" "$tmp/err")"
}
wait_for "samepage_ksm_up 1"
mv "$tmp/tree/sys/kernel/mm/ksm" "$tmp/ksm.away"
wait_for "samepage_ksm_up 0"
[ "$(grep -vc '^#' "$tmp/ksm.prom")" = 1 ] || fail "more than up 0 without KSM: $(cat "$tmp/ksm.prom")"
mv "$tmp/ksm.away" "$tmp/tree/sys/kernel/mm/ksm"
wait_for "samepage_ksm_up 1"
grep -qx "node_ksmd_pages_to_scan 2400" "$tmp/ksm.prom" || fail "no figures once back: $(cat "$tmp/ksm.prom")"
kill -INT $pid
wait $pid
echo ok
