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
#   balloon  2 guests of 256 MiB that check their memory every second, each
#            with a virtio-balloon device: once merged, every balloon takes
#            96 MiB (QEMU discards it page by page: madvise(MADV_DONTNEED)
#            on merged guest RAM), then gives it back: each reaches its
#            target within 120 s, QEMU reports no failed discard, every
#            memory check right, pages still merged after
#   churn    2 guests of 256 MiB with 2 vCPUs each (a TCG thread per vCPU),
#            a writer per vCPU rewriting 32 MiB of its guest's memory round
#            after round for 60 s, merging hot: every block it wrote checks
#            right the round after (merged meanwhile), no kernel trouble,
#            both guests power off by themselves, pages merged meanwhile
#   samepaged_guests, samepaged_io, samepaged_postcopy, samepaged_balloon,
#   samepaged_churn
#            guests, io, postcopy, balloon and churn with libsamepage: every QEMU started by
#            `KSMCTL --user run --domain vms --` against a private SAMEPAGED
#            (the kernel's KSM held at run=0); skipped (77) while
#            `ksmctl --user run` does not run programs.  samepaged_io also
#            checks that a QEMU with aio=io_uring stops at start under
#            `KSMCTL --user run`, saying why
#   samepaged_restart
#            samepaged restarted under running guests (a memory guest and an
#            I/O guest, 256 MiB, started by `KSMCTL --user run --domain vms`
#            against a private SAMEPAGED; the kernel's KSM is not touched):
#            after SIGTERM and after SIGKILL the guests run on with their
#            merged memory (Pss well under the unmerged one), ksmctl says
#            what the gap means, the restarted daemon takes them back and
#            they merge again (after run=2 and run=1); a guest killed with
#            SIGKILL is reaped; the domain's files go with the last guest.
#            No memory block or disk checksum goes wrong.
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

t_balloon() {
	"${guests[@]}" balloon --engine kernel --guests 2 --mib 256 --out "$out"
}

t_samepaged_balloon() {
	"${guests[@]}" balloon --engine samepaged "${user[@]}" --guests 2 --mib 256 --out "$out"
}

t_churn() {
	"${guests[@]}" churn --engine kernel --guests 2 --mib 256 --seconds 60 --out "$out"
}

t_samepaged_churn() {
	"${guests[@]}" churn --engine samepaged "${user[@]}" --guests 2 --mib 256 --seconds 60 --out "$out"
}

t_samepaged_io() {
	# QEMU's aio=io_uring reads into pinned pages a merge would lose
	# (RELIABILITY.md 61): under the library QEMU stops at start, saying
	# why, where without it the same QEMU runs (until timeout stops it).
	local qemu q rc
	if qemu=$(command -v qemu-system-x86_64); then
		truncate -s 1M "$out/uring.raw"
		q=("$qemu" -machine none -display none -monitor none -serial none -S
			-drive "file=$out/uring.raw,format=raw,if=none,aio=io_uring")
		timeout 3 "${q[@]}" >/dev/null 2>&1
		rc=$?
		if [ $rc = 124 ]; then
			timeout 30 "${user[1]}" --user run -- "${q[@]}" >"$out/uring.log" 2>&1
			rc=$?
			cat "$out/uring.log"
			[ $rc != 0 ] && [ $rc != 124 ] || fail "QEMU with aio=io_uring ran under the library (exit $rc)"
			grep -q "samepage: refusing io_uring" "$out/uring.log" || fail "no reason given for the refusal"
		else
			echo "# this QEMU does not run with aio=io_uring (exit $rc): its refusal not checked"
		fi
	fi
	"${guests[@]}" io --engine samepaged "${user[@]}" --seconds 60 --out "$out"
}

t_io_check() {
	"${guests[@]}" io --engine kernel --seconds 1 --aio threads --corrupt --out "$out" >"$out/log" 2>&1
	rc=$?
	cat "$out/log"
	[ $rc = 77 ] && exit 77
	[ $rc = 1 ] || fail "a guest whose disk changed behind its checksums passed (exit $rc)"
	grep -q "SAMEPAGE-IO-BAD round=1 block=1" "$out/log" || fail "the changed block is not reported"
	# A mode it does not know is refused before anything is built or
	# started (it was refused after the engine had started).
	"${guests[@]}" io --engine kernel --aio bogus --out "$out/bad" >"$out/bad.log" 2>&1
	rc=$?
	cat "$out/bad.log"
	[ $rc = 1 ] || fail "--aio bogus: exit $rc, want 1"
	grep -q -- "--aio bogus: not one of threads, native, io_uring, io_uring-direct (or both)" "$out/bad.log" ||
		fail "--aio bogus: the message does not name the input and what it takes"
	[ ! -e "$out/bad/kit" ] || fail "--aio bogus: the kit was built before the refusal"
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

# The guests of samepaged_restart: their Pss summed (kB).
pss_sum() {
	local p t=0
	for p in "$@"; do t=$((t + $(awk '/^Pss:/ {print $2}' "/proc/$p/smaps_rollup"))); done
	echo $t
}

t_samepaged_restart() {
	local ksmctl=${user[1]} samepaged=${user[3]}
	[ -x "$ksmctl" ] && [ -x "$samepaged" ] || { echo "SKIP: no ksmctl/samepaged"; exit 77; }
	bash "$src/bench/guests/kit.sh" "$out/kit" || exit $?
	local sock=$out/s.sock log=$out/samepaged.log g
	# st, dpid, qs and pids are global: the EXIT trap uses them after return.
	st=$(mktemp -d /dev/shm/samepage-qemu-restart.XXXXXX) dpid= qs=() pids=()
	ctl() { "$ksmctl" --user --socket "$sock" "$@"; }
	daemon() {
		"$samepaged" --foreground --socket "$sock" --state-dir "$st/state" 2>>"$log" &
		dpid=$!
		for _ in $(seq 100); do ctl check >/dev/null 2>&1 && return; sleep 0.1; done
		fail "samepaged did not start: $(tail -5 "$log")"
	}
	cleanup_restart() {
		local q
		for q in "${pids[@]}" "${qs[@]}" $dpid; do kill -KILL "$q" 2>/dev/null; done
		wait 2>/dev/null
		rm -rf "$st"
	}
	trap cleanup_restart EXIT
	alive() { for g in "${pids[@]}"; do kill -0 "$g" 2>/dev/null || fail "guest $g died: $(tail -5 "$out"/*.qemu.log)"; done; }
	# Waits until top lists n processes (a guard, not a timing check).
	listed() {
		for _ in $(seq 300); do
			[ "$(ctl top --json | python3 -c 'import json, sys; print(len(json.load(sys.stdin)["rows"]))')" = "$1" ] && return
			sleep 0.1
		done
		fail "ksmctl --user top does not list $1 guests"
	}
	sharing() { ctl status --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["files"]["pages_sharing"])'; }
	daemon
	ctl set pages_to_scan=20000 sleep_millisecs=100 run=0 >/dev/null || fail "ksmctl --user set failed"
	truncate -s 16M "$out/disk.raw"
	for g in mem io; do
		local app="samepage.work=$g samepage.mib=64" drive=()
		[ $g = io ] && app="samepage.work=io samepage.seconds=100000 samepage.blocks=16" &&
			drive=(-drive "if=none,id=d0,format=raw,file=$out/disk.raw,aio=threads" -device virtio-blk-pci,drive=d0)
		ctl run --domain vms -- qemu-system-x86_64 -accel tcg -m 256 -smp 1 -nodefaults -nographic \
			-monitor none -serial "file:$out/$g.console" -no-reboot -kernel "$out/kit/vmlinuz" \
			-initrd "$out/kit/initramfs.gz" -append "console=ttyS0 quiet panic=-1 no_timer_check $app" \
			-pidfile "$out/$g.pid" "${drive[@]}" >"$out/$g.qemu.log" 2>&1 &
		qs+=($!)
	done
	for _ in $(seq 1800); do
		grep -q "SAMEPAGE-MEM round=2 " "$out/mem.console" 2>/dev/null &&
			grep -q "SAMEPAGE-IO round=2 " "$out/io.console" 2>/dev/null && break
		sleep 0.2
	done
	pids=("$(cat "$out/mem.pid")" "$(cat "$out/io.pid")")
	alive
	local unmerged merged gap
	unmerged=$(pss_sum "${pids[@]}")
	ctl set run=1 >/dev/null
	ctl wait --converged --timeout 600 || fail "not converged"
	merged=$(pss_sum "${pids[@]}")
	echo "Pss of the guests: ${unmerged} kB unmerged, ${merged} kB merged, pages_sharing $(sharing)"
	[ $((merged * 10)) -lt $((unmerged * 8)) ] || fail "merging saved too little: $merged kB of $unmerged"
	for sig in TERM KILL; do
		kill -$sig $dpid
		wait $dpid 2>/dev/null
		[ $sig = TERM ] && { grep -q "stopping; domains open: 1, processes connected: 2;" "$log" ||
			fail "samepaged's stop line does not say what it leaves: $(tail -1 "$log")"; }
		ctl status >/dev/null 2>"$out/err" && fail "ksmctl --user status succeeded with samepaged down"
		grep -q "processes it served keep their merged memory" "$out/err" ||
			fail "ksmctl --user status does not say what the gap means: $(cat "$out/err")"
		sleep 3
		alive
		gap=$(pss_sum "${pids[@]}")
		echo "SIG$sig: Pss ${gap} kB with samepaged down"
		[ $((gap * 10)) -lt $((unmerged * 8)) ] || fail "merged memory lost with samepaged down: $gap kB of $unmerged"
		daemon
		grep -q "domain vms: taken back" "$log" || fail "samepaged did not take domain vms back"
		listed 2
		[ "$(sharing)" -gt 0 ] || fail "nothing merged after the restart (SIG$sig)"
	done
	# run=2 then run=1 across the restarted domain: unmerged, merged again.
	ctl set run=2 >/dev/null
	for _ in $(seq 600); do [ "$(sharing)" = 0 ] && break; sleep 0.1; done
	[ "$(sharing)" = 0 ] || fail "run=2 left pages_sharing $(sharing)"
	ctl set run=1 >/dev/null
	ctl wait --converged --timeout 600 || fail "not converged again"
	merged=$(pss_sum "${pids[@]}")
	echo "merged again: Pss ${merged} kB, pages_sharing $(sharing)"
	[ $((merged * 10)) -lt $((unmerged * 8)) ] || fail "merging again saved too little: $merged kB of $unmerged"
	alive
	grep -q "bad=[1-9]" "$out/mem.console" && fail "a memory block changed: $(grep "bad=[1-9]" "$out/mem.console" | head -3)"
	grep -Eq "SAMEPAGE-IO-BAD|ioerr=[1-9]" "$out/io.console" && fail "disk I/O went wrong: $(grep -E "BAD|ioerr=[1-9]" "$out/io.console" | head -3)"
	# A guest killed with SIGKILL is reaped; the last one closes the domain.
	kill -KILL "${pids[0]}"
	for _ in $(seq 300); do grep -q "process ${pids[0]} gone" "$log" && break; sleep 0.1; done
	grep -q "process ${pids[0]} gone" "$log" || fail "the killed guest was not reaped"
	kill -KILL "${pids[1]}"
	for _ in $(seq 300); do grep -q "domain vms: no process left, closed" "$log" && break; sleep 0.1; done
	grep -q "domain vms: no process left, closed" "$log" || fail "the domain outlived its guests"
	[ -z "$(ls "$st/state" | grep '^vms\.')" ] || fail "files left: $(ls "$st/state")"
	[ "$(ctl status --json | python3 -c 'import json, sys; print(json.load(sys.stdin)["files"]["pool_pages"])')" = 0 ] ||
		fail "pool pages left"
	grep -E "gone|closed" "$log"
}

"t_$test"
rc=$?
[ $rc = 0 ] && echo "ok: qemu.$test"
exit $rc
