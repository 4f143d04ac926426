#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.watch: `ksmctl status --watch` keeps producing frames until SIGINT,
# then exits 0; with --prometheus --output, KSM gone meanwhile is up 0.
# Waits for the second frame (with a generous limit) rather than for a
# time, then checks that every frame is a whole JSON object on a line of
# its own (JSON Lines), with the scan rate and ksmd CPU measured over the
# interval (null in the first).
#
# usage: watch.sh KSMCTL SRCDIR
set -u
ksmctl=$1 src=$2
tree=$src/trees/linux-6.18
tmp=$(mktemp -d)
pid=
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

# --json --watch: each report's derived figures include those measured
# over the interval, as the text view shows them (the JSON had only the
# since-boot CPU share and the configured rate): null in the first report,
# then numbers; pages_scanned grown by 10^9 is a measured rate above 0.
cp -a "$tree" "$tmp/mtree"
"$ksmctl" --sysfs-root "$tmp/mtree/sys" --proc-root "$tmp/mtree/proc" --boot-root "$tmp/mtree/boot" \
	status --json --watch 0.1 >"$tmp/mout" &
pid=$!
frames() { grep -c '"backend"' "$tmp/mout"; }
for _ in $(seq 600); do [ "$(frames)" -ge 2 ] && break; sleep 0.05; done
echo 1048000000 >"$tmp/mtree/sys/kernel/mm/ksm/pages_scanned"
n=$(frames)
for _ in $(seq 600); do [ "$(frames)" -ge $((n + 2)) ] && break; sleep 0.05; done
kill -INT $pid
wait $pid
python3 - "$tmp/mout" <<'PY' || fail "status --json --watch lacks the figures measured over the interval"
import json, sys
frames = [json.loads(l)["derived"] for l in open(sys.argv[1]).read().splitlines()]
assert len(frames) >= 4, len(frames)
for f in frames:
    assert "ksmd_cpu_percent" in f and "scan_rate_pages_per_second" in f, f
assert frames[0]["pages_per_second_measured"] is None, frames[0]
assert frames[0]["ksmd_cpu_percent_interval"] is None, frames[0]
for f in frames[1:]:
    assert isinstance(f["ksmd_cpu_percent_interval"], (int, float)), f
    assert isinstance(f["pages_per_second_measured"], (int, float)), f
assert frames[1]["pages_per_second_measured"] == 0, frames[1]
assert any(f["pages_per_second_measured"] > 0 for f in frames[2:]), frames
print("ok: the measured figures in %d frames" % len(frames))
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

# --watch to a standard output that cannot be written (a full disk under
# >> FILE): it stops at the first report, exit 1, and says why; it went on
# writing nothing until it was stopped.
timeout 20 "$ksmctl" --sysfs-root "$tree/sys" --proc-root "$tree/proc" --boot-root "$tree/boot" \
	status --json --watch 0.1 >/dev/full 2>"$tmp/err"
rc=$?
[ $rc = 1 ] || fail "status --watch >/dev/full exited $rc, not 1 at once: $(cat "$tmp/err")"
grep -q "cannot write the output" "$tmp/err" || fail "status --watch >/dev/full: $(cat "$tmp/err")"

# A signal that ends ksmctl between --output's temporary file and its
# rename (SIGHUP from a closed terminal, any signal not handled) leaves no
# .ksm.prom.XXXXXX behind: it waits for the rename.  A process's ksm_stat
# made a FIFO holds ksmctl in that window (the report reads it), until this
# opens the FIFO and closes it.  Before, SIGHUP and SIGUSR1 left the
# temporary file; SIGTERM and SIGINT were handled (the report finished).
cp -a "$tree" "$tmp/ftree"
rm "$tmp/ftree/proc/4100/ksm_stat"
mkfifo "$tmp/ftree/proc/4100/ksm_stat"
for sig in HUP USR1 TERM INT; do
	out=$tmp/out.$sig
	mkdir "$out"
	"$ksmctl" --sysfs-root "$tmp/ftree/sys" --proc-root "$tmp/ftree/proc" --boot-root \
		"$tmp/ftree/boot" status --prometheus --watch 0.1 --output "$out/ksm.prom" &
	pid=$!
	for _ in $(seq 600); do compgen -G "$out/.ksm.prom.*" >/dev/null && break; sleep 0.05; done
	compgen -G "$out/.ksm.prom.*" >/dev/null || fail "SIG$sig: no temporary file in 30 s"
	kill -"$sig" $pid
	sleep 0.3
	exec 3<>"$tmp/ftree/proc/4100/ksm_stat"
	sleep 0.3
	exec 3>&-
	wait $pid
	left=$(cd "$out" && ls -A)
	[ "$left" = ksm.prom ] || fail "SIG$sig during the write left \"$left\", not ksm.prom alone"
	pid=
done
echo ok
