#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# qemu.*: real QEMU guests (bench/guests/guests.py) as the project's client,
# under the kernel's KSM.  ctest gives every test RESOURCE_LOCK kernel_ksm;
# guests.py takes /tmp/samepage-kernel-ksm.lock and puts every knob back.
# Exit 77 (skip) when QEMU, busybox-static or a readable kernel image is
# missing (.ci/run installs them; bench/guests/kit.sh --install too).
#
# usage: qemu.sh TEST SRCDIR OUTDIR [KSMCTL SAMEPAGED]
#   guests   3 guests of 512 MiB from one kernel, the seed's knobs, until
#            converged: the kernel's arithmetic holds on the guests'
#            counters and their Pss, measured from outside, goes down
#   io       one I/O guest with aio=threads and one with aio=native,
#            cache=none, 60 s each, merging hot (sleep_millisecs 0): no I/O
#            error, every checksum right
#   io_check the same check catches a byte changed behind the checksums
#   restore  a run stopped by SIGTERM, and a QEMU that fails at start, leave
#            every knob as it was and no QEMU behind (a stand-in QEMU)
#   postcopy a live migration with postcopy from one QEMU to another, the
#            guest checking its memory every second: it completes, the
#            guest runs on the destination, every block right
#   samepaged_guests, samepaged_io, samepaged_postcopy
#            guests, io and postcopy with libsamepage: every QEMU started by
#            `KSMCTL --user run --domain vms --` against a private SAMEPAGED
#            (the kernel's KSM held at run=0); skipped (77) while
#            `ksmctl --user run` does not run programs
set -u
test=$1 src=$2 out=$3
user=(--ksmctl "${4:-}" --samepaged "${5:-}")
guests=(python3 "$src/bench/guests/guests.py")
rm -rf "$out"
mkdir -p "$out"

runner=
fail() {
	echo "FAIL: $*"
	exit 1
}
# A runner left in the background is stopped (it restores the knobs).
trap '[ -n "$runner" ] && kill -TERM $runner 2>/dev/null && wait $runner' EXIT

knobs() {
	local f
	for f in /sys/kernel/mm/ksm/*; do
		case ${f##*/} in
		pages_shared | pages_sharing | pages_unshared | pages_volatile | pages_scanned | pages_skipped | \
			full_scans | ksm_zero_pages | stable_node_chains | stable_node_dups | general_profit) continue ;;
		esac
		echo "${f##*/}=$(cat "$f")"
	done
}

t_guests() {
	"${guests[@]}" run --engine kernel --guests 3 --mib 512 --until-converged --duration 180 \
		--strict --out "$out"
}

t_io() {
	"${guests[@]}" io --engine kernel --seconds 60 --out "$out"
}

t_samepaged_guests() {
	"${guests[@]}" run --engine samepaged "${user[@]}" --guests 3 --mib 512 --until-converged \
		--duration 180 --strict --out "$out"
}

t_postcopy() {
	"${guests[@]}" postcopy --engine kernel --mib 256 --out "$out"
}

t_samepaged_postcopy() {
	"${guests[@]}" postcopy --engine samepaged "${user[@]}" --mib 256 --out "$out"
}

t_samepaged_io() {
	"${guests[@]}" io --engine samepaged "${user[@]}" --seconds 60 --out "$out"
}

t_io_check() {
	"${guests[@]}" io --engine kernel --seconds 1 --aio threads --corrupt --out "$out" >"$out/log" 2>&1
	rc=$?
	cat "$out/log"
	[ $rc = 77 ] && exit 77
	[ $rc = 1 ] || fail "a guest whose disk changed behind its checksums passed (exit $rc)"
	grep -q "SAMEPAGE-IO-BAD round=1 block=1" "$out/log" || fail "the changed block is not reported"
}

# A stand-in for qemu-system-x86_64: writes its -pidfile and sleeps
# (never boots), or exits at once with status 3 when $out/fake-exit exists.
fake_qemu() {
	cat >"$out/qemu" <<FAKE
#!/bin/sh
[ -e "$out/fake-exit" ] && exit 3
while [ \$# -gt 0 ]; do [ "\$1" = -pidfile ] && echo \$\$ >"\$2"; shift; done
exec sleep 600
FAKE
	chmod +x "$out/qemu"
}

t_restore() {
	[ -d /sys/kernel/mm/ksm ] || { echo "SKIP: no /sys/kernel/mm/ksm"; exit 77; }
	fake_qemu
	# The knobs are read under the kernel-KSM lock, which guests.py then
	# holds through this test (another user of the kernel's KSM sets them).
	exec 9>/tmp/samepage-kernel-ksm.lock
	flock -w 900 9 || fail "the kernel-KSM lock was not free within 900 s"
	export SAMEPAGE_KSM_LOCK_HELD=1
	before=$(knobs)
	opts=(run --engine kernel --guests 2 --qemu "$out/qemu" --kit "$out" --pages-to-scan 1234
		--sleep-ms 77 --zero 1 --out "$out")
	# 1. SIGTERM while the guests boot.
	"${guests[@]}" "${opts[@]}" >"$out/log1" 2>&1 &
	runner=$!
	# (guests.py may first wait up to 900 s for the kernel-KSM lock)
	for _ in $(seq 9600); do
		[ -s "$out/kernel-z1-g1.pid" ] || ! kill -0 $runner 2>/dev/null && break
		sleep 0.1
	done
	pids=$(cat "$out"/*-g*.pid 2>/dev/null)
	[ -n "$pids" ] || { cat "$out/log1"; fail "the stand-in QEMU never started"; }
	[ "$(cat /sys/kernel/mm/ksm/pages_to_scan)" = 1234 ] || fail "guests.py did not set pages_to_scan"
	kill -TERM $runner
	wait $runner
	rc=$?
	cat "$out/log1"
	[ $rc = 1 ] || fail "guests.py stopped by SIGTERM exited $rc, expected 1"
	[ "$(knobs)" = "$before" ] || fail "knobs not restored after SIGTERM: $(diff <(echo "$before") <(knobs))"
	for p in $pids; do ! kill -0 "$p" 2>/dev/null || fail "QEMU (stand-in) $p survived the runner"; done
	# 2. QEMU fails at start.
	touch "$out/fake-exit"
	"${guests[@]}" "${opts[@]}" >"$out/log2" 2>&1
	rc=$?
	cat "$out/log2"
	[ $rc = 1 ] || fail "guests.py with a failing QEMU exited $rc, expected 1"
	grep -q "exited with status 3" "$out/log2" || fail "the failing QEMU's status is not reported"
	[ "$(knobs)" = "$before" ] || fail "knobs not restored after a failed QEMU: $(diff <(echo "$before") <(knobs))"
}

"t_$test"
rc=$?
[ $rc = 0 ] && echo "ok: qemu.$test"
exit $rc
