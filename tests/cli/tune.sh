#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.tune.*: `ksmctl tune` on recorded trees (tests/cli/trees, copied), its
# decisions checked on the knob files it writes.  A decision is a function
# of the files it reads, the clock included (PROC/uptime), so each step of a
# test writes the files, runs `tune --once --state FILE` (the policy's
# memory kept between runs) and checks the knobs.
#  ksmtuned  --policy ksmtuned: the knobs equal what ksmtuned.sh's
#            arithmetic gives (computed here, in bash, as the script does),
#            over a sequence of boosts, decays, clamps and stops, for the
#            defaults and a config file; its QEMU process match
#  pressure  the default policy: stopped while memory is plentiful, the
#            CPU budget while converging, idle after two full scans without
#            change, or (pages_scanned, 6.6+) a full scan's worth of pages
#            scanned after a change of the pages saved alone, but two full
#            scans after new pages; back to converging on new pages or a new
#            guest; PSI; hysteresis; --always; --advisor; a 4.19 tree (no
#            advisor, no pages_scanned: two full scans); the pages_to_scan of
#            a budget computed here
#  signals   the daemon: SIGUSR1 decides at once (ksmtuned's first decision
#            waits for its interval otherwise), so does AnonPages growing
#            while idle and MemAvailable falling below --available while
#            stopped, SIGTERM ends it, --restore puts back the knobs it
#            found
#  config    bad ksmtuned.conf lines and bad options: exit 2, FILE:LINE,
#            input and fix, no knob changed; the forms a real file uses
#  doctor    doctor notices a running ksmtuned, and says what to do
#  unit      install-service --tune: ksm-tune.service verifies; ksm-apply's
#            ExecStop and Conflicts
#  user      --user against a private samepaged and a client: tune drives
#            the daemon's knobs, counts the client and its scanner's CPU,
#            and the client merges
#
# usage: tune.sh TEST KSMCTL SRCDIR [SAMEPAGED SPCLIENT]
set -u
test=$1 ksmctl=$(realpath "$2") src=$3 samepaged=${4:-} spclient=${5:-}
tmp=$(mktemp -d)
fails=0 pids=() shm=
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null; done
	wait 2>/dev/null
	rm -rf "$tmp" ${shm:+"$shm"}
}
trap cleanup EXIT
fail() {
	echo "FAIL: $*"
	[ -s "$tmp/err" ] && sed 's/^/  stderr: /' "$tmp/err"
	fails=$((fails + 1))
}

# ---- a tree, and its files ----
tree=$tmp/tree
ksm=$tree/sys/kernel/mm/ksm
mktree() { # mktree linux-6.18
	rm -rf "$tree" "$tmp/state"
	cp -a "$src/trees/$1" "$tree"
	mkdir -p "$tree/proc/pressure"
	psi 0
	settime 1000
	setcpu 0
}
knob() { sed 's/.*\[\(.*\)\].*/\1/' "$ksm/$1"; }
# The daemon under test reads these files while the test writes them: each
# is renamed into place, so that it never sees one half written.
put() { cat >"$1.new" && mv "$1.new" "$1"; }
setknob() { echo "$2" | put "$ksm/$1"; }
settime() { echo "$1.00 0.00" | put "$tree/proc/uptime"; }
psi() { printf 'some avg10=%s avg60=0.00 avg300=0.00 total=0\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n' "$1" \
	| put "$tree/proc/pressure/memory"; }
setmem() { # setmem TOTAL FREE BUFFERS CACHED AVAILABLE [ANON] (kB)
	printf 'MemTotal: %s kB\nMemFree: %s kB\nMemAvailable: %s kB\nBuffers: %s kB\nCached: %s kB\n%s' \
		"$1" "$2" "$5" "$3" "$4" "${6:+AnonPages: $6 kB
}" | put "$tree/proc/meminfo"
}
setcpu() { # setcpu TICKS: ksmd's utime (pid 57, as the trees have it)
	local f=(57 "(ksmd)" S 2 0 0 0 0 0 0 0 0 0 "$1" 0 0 0 0 0 0 0 500)
	mkdir -p "$tree/proc/57"
	echo ksmd | put "$tree/proc/57/comm"
	echo "${f[*]} $(printf '0 %.0s' $(seq 30))" | put "$tree/proc/57/stat"
}
addproc() { # addproc PID COMM RSS_KB [KSM_STAT_TEXT]
	mkdir -p "$tree/proc/$1"
	echo "$2" | put "$tree/proc/$1/comm"
	printf 'Name:\t%s\nVmRSS:\t%s kB\n' "$2" "$3" | put "$tree/proc/$1/status"
	[ -n "${4:-}" ] && printf '%b' "$4" | put "$tree/proc/$1/ksm_stat"
	return 0
}
counters() { # counters FULL_SCANS SHARING SHARED UNSHARED VOLATILE [SCANNED]
	setknob full_scans "$1"
	setknob pages_sharing "$2"
	setknob pages_shared "$3"
	setknob pages_unshared "$4"
	setknob pages_volatile "$5"
	[ -n "${6:-}" ] && setknob pages_scanned "$6"
	return 0
}
# tune ARGS...: one decision on the tree (stdout $tmp/out, stderr $tmp/err), exit status in $rc.
tune() {
	"$ksmctl" --sysfs-root "$tree/sys" --proc-root "$tree/proc" --boot-root "$tree/boot" \
		tune "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	cat "$tmp/out"
}
once() { # once ARGS...: tune --once --state, expecting exit 0
	tune --once --state "$tmp/state" "$@"
	[ $rc = 0 ] || fail "tune --once $* exited $rc"
}
expect_knobs() { # expect_knobs WHAT name=value...
	local what=$1 kv
	shift
	for kv in "$@"; do
		[ "$(knob "${kv%%=*}")" = "${kv#*=}" ] ||
			fail "$what: ${kv%%=*} is $(knob "${kv%%=*}"), expected ${kv#*=}"
	done
}
says() { grep -qF -- "$2" "$1" || fail "$(basename "$1") lacks: $2"; }
json_ok() { python3 -c "import json, sys; d = json.load(sys.stdin); sys.exit(0 if ($1) else 1)" \
	<"$tmp/out" || fail "JSON check failed: $1"; }
snapshot() { for f in "$ksm"/*; do echo "$(basename "$f")=$(cat "$f")"; done; }

# ---- ksmtuned.sh's arithmetic, as the script does it (bash integers, kB) ----
# ksmtuned_expect TOTAL FREE COMMITTED: updates $npages as adjust() does and
# sets $want (the knobs to check), with $SLEEP_MSEC $BOOST $DECAY $NMIN $NMAX
# $COEF $CONST the configuration.
ksmtuned_expect() {
	local total=$1 free=$2 committed=$3 sleep thres
	sleep=$((SLEEP_MSEC * 16 * 1024 * 1024 / total))
	[ $sleep -le 10 ] && sleep=10
	thres=$((total * COEF / 100))
	[ $CONST -gt $thres ] && thres=$CONST
	if [ $((committed + thres)) -lt $total ] && [ $free -gt $thres ]; then
		want="run=0"
		return
	fi
	if [ $free -lt $thres ]; then npages=$((npages + BOOST)); else npages=$((npages + DECAY)); fi
	if [ $npages -lt $NMIN ]; then npages=$NMIN; elif [ $npages -gt $NMAX ]; then npages=$NMAX; fi
	want="run=1 pages_to_scan=$npages sleep_millisecs=$sleep"
}
# step TOTAL FREE BUFFERS CACHED COMMITTED [tune args]: one ksmtuned decision
# (committed is one qemu-kvm process of that RSS), checked.
step() {
	local total=$1 free=$2 buffers=$3 cached=$4 committed=$5 before
	shift 5
	setmem "$total" "$free" "$buffers" "$cached" "$free"
	addproc 3000 qemu-kvm "$committed"
	before=$(knob pages_to_scan)
	ksmtuned_expect "$total" $((free + buffers + cached)) "$committed"
	once --policy ksmtuned "$@"
	# shellcheck disable=SC2086
	expect_knobs "total $total free $free+$buffers+$cached committed $committed" $want
	[ "$want" != run=0 ] || [ "$(knob pages_to_scan)" = "$before" ] ||
		fail "a stop changed pages_to_scan from $before"
}

t_ksmtuned() {
	mktree linux-6.18
	rm -rf "$tree/proc/4"[0-9][0-9][0-9] # its processes are not QEMU; ours are
	SLEEP_MSEC=10 BOOST=300 DECAY=-50 NMIN=64 NMAX=1250 COEF=20 CONST=2048 npages=0
	local total=8388608 # 8 GiB: sleep 20 ms, thres 1677721 kB
	step $total 6000000 10000 20000 500000 --config /dev/null # plenty: stop
	[ "$(knob run)" = 0 ] || fail "ksmtuned's stop did not write run=0"
	for _ in 1 2 3 4 5; do
		step $total 1000000 10000 20000 500000 --config /dev/null # free < thres: boost, to the max
	done
	step $total 3000000 10000 20000 7000000 --config /dev/null # committed high, free >= thres: decay
	step $total 3000000 10000 20000 7000000 --config /dev/null
	grep -q "decay" "$tmp/out" || fail "the log does not say decay: $(cat "$tmp/out")"
	# free exactly thres: not "< thres", so decay (the script's -lt).
	step $total 1677700 21 0 7000000 --config /dev/null
	# A config file: every variable, shell forms.
	cat >"$tmp/k.conf" <<-'EOF'
		# ksmtuned.conf
		KSM_MONITOR_INTERVAL=30
		KSM_SLEEP_MSEC=100   # for a 16 GiB host
		export KSM_NPAGES_BOOST="1000"
		KSM_NPAGES_DECAY='-2000'
		KSM_NPAGES_MIN=100
		KSM_NPAGES_MAX=2500
		KSM_THRES_COEF=50
		KSM_THRES_CONST=4096
		LOGFILE=/var/log/ksmtuned
		DEBUG=1
	EOF
	rm -f "$tmp/state"
	SLEEP_MSEC=100 BOOST=1000 DECAY=-2000 NMIN=100 NMAX=2500 COEF=50 CONST=4096 npages=0
	total=4194304 # 4 GiB: sleep 400 ms
	for f in 1000000 1000000 1000000 3000000 3000000; do
		step $total $f 0 0 3000000 --config "$tmp/k.conf"
	done
	# Numbers as ksmtuned's bash reads them (RELIABILITY.md 109): where
	# the script does $[ ] arithmetic only (KSM_SLEEP_MSEC, the boost and
	# decay, KSM_THRES_COEF) a leading 0 is octal, 0x hex; the model above
	# is bash arithmetic too.  Before, 0300 was read as 300.
	# (KSM_MONITOR_INTERVAL goes to sleep(1), which reads decimal.)
	printf '%s\n' KSM_SLEEP_MSEC=0100 KSM_NPAGES_BOOST=0300 KSM_NPAGES_DECAY=-050 \
		KSM_THRES_COEF=030 KSM_MONITOR_INTERVAL=030 >"$tmp/octal.conf"
	rm -f "$tmp/state"
	SLEEP_MSEC=0100 BOOST=0300 DECAY=-050 NMIN=64 NMAX=1250 COEF=030 CONST=2048 npages=0
	total=4194304
	step $total 100000 0 0 3000000 --config "$tmp/octal.conf" # boost: 192, not 300
	expect_knobs "KSM_NPAGES_BOOST=0300 (octal)" pages_to_scan=192 sleep_millisecs=256
	for f in 100000 100000 3000000 3000000; do
		step $total $f 0 0 3000000 --config "$tmp/octal.conf"
	done
	printf '%s\n' KSM_NPAGES_BOOST=0x100 >"$tmp/hex.conf"
	rm -f "$tmp/state"
	SLEEP_MSEC=10 BOOST=0x100 DECAY=-50 NMIN=64 NMAX=1250 COEF=20 CONST=2048 npages=0
	step $total 100000 0 0 3000000 --config "$tmp/hex.conf"
	expect_knobs "KSM_NPAGES_BOOST=0x100 (hex)" pages_to_scan=256
	# KSM_NPAGES_MAX (and MIN, KSM_THRES_CONST) is compared by [ -gt ]:
	# decimal, but once npages takes it, $[ ] reads it as octal (01250 is
	# 680): ksmtuned then steps 1250, 980, 1250...  ksmctl takes 1250
	# throughout, and says so.
	printf '%s\n' KSM_NPAGES_MAX=01250 >"$tmp/max.conf"
	rm -f "$tmp/state"
	SLEEP_MSEC=10 BOOST=300 DECAY=-50 NMIN=64 NMAX=1250 COEF=20 CONST=2048 npages=0
	for _ in 1 2 3 4 5 6; do
		step $total 100000 0 0 3000000 --config "$tmp/max.conf"
	done
	expect_knobs "KSM_NPAGES_MAX=01250" pages_to_scan=1250
	says "$tmp/err" "ksmctl: warning: tune: $tmp/max.conf:1: KSM_NPAGES_MAX=01250 is taken as 1250; ksmtuned compares it as 1250, but its arithmetic reads it as octal, 680"
	# A host of 64 GiB: the sleep formula gives 2, which the script raises to 10.
	rm -f "$tmp/state"
	SLEEP_MSEC=10 BOOST=300 DECAY=-50 NMIN=64 NMAX=1250 COEF=20 CONST=2048 npages=0
	step 67108864 1000000 0 0 0 --config /dev/null
	# The advisor owns pages_to_scan: ksmtuned's writes need it off.
	setknob advisor_mode "none [scan-time]"
	step 67108864 1000000 0 0 0 --config /dev/null
	expect_knobs "advisor turned off" advisor_mode=none
	tune --once --dry-run --json --policy ksmtuned --config /dev/null
	json_ok 'd["policy"] == "ksmtuned" and d["dry_run"] and "pages_to_scan" in d["set"]'

	# pgrep '^qemu(-(kvm|system-.+)|:.{1,11})$' on the process name, VmRSS summed.
	rm -rf "$tree/proc/3000"
	addproc 3001 qemu-kvm 1000
	addproc 3002 qemu-system-x86 20000
	addproc 3003 "qemu:vm-name" 300000
	addproc 3004 qemu-img 4000000
	addproc 3005 qemu-system- 4000000
	addproc 3006 kvm 4000000
	addproc 3007 "qemu:" 4000000
	addproc 3008 "xqemu-kvm" 4000000
	tune --once --dry-run --json --policy ksmtuned --config /dev/null
	json_ok 'd["read"]["committed_kb"] == 1000 + 20000 + 300000'
	# What is not known is null, not -1; advisor_mode a word, as set's.
	json_ok 'all(v is None or isinstance(v, str) or v >= 0 for v in d["read"].values())
		and d["read"]["advisor_mode"] in ("none", "scan-time", None)'
}

# ---- the pressure policy ----
# pages_for CPU_PCT SLEEP_MS COST: the pages_to_scan of a budget (tune-pressure.c's formula).
pages_for() {
	awk -v cpu="$1" -v s="$2" -v c="$3" 'BEGIN {
		f = cpu / 100; p = f * s / 1000 / (c * (1 - f))
		if (p < 16) p = 16; if (p > 1000000) p = 1000000
		printf "%d\n", p }'
}

# converging_pages CPU_PCT COST KB: converging, the budget's pages_to_scan,
# or fewer if KB of mergeable memory (VmRSS) take a full scan every 3 s with
# fewer (tune-pressure.c's pacing).
converging_pages() {
	local budget pace
	budget=$(pages_for "$1" 100 "$2")
	pace=$(($3 / ($(getconf PAGESIZE) / 1024) * 100 / 3000))
	[ "$pace" -lt 16 ] && pace=16
	echo $((pace < budget ? pace : budget))
}

t_pressure() {
	local total=16777216 cost c1 cost2 cost3 p
	mktree linux-6.18
	addproc 3100 qemu-system-x86 1048576 # a guest of 1 GiB
	setknob advisor_mode "[none] scan-time"
	counters 10 1000 100 500 50 1000000
	# Plenty of memory: stopped, nothing else written.
	setmem $total 8000000 0 0 8000000
	once
	expect_knobs "memory plentiful" run=0 pages_to_scan=2400 advisor_mode=none
	says "$tmp/out" "memory plentiful: MemAvailable 47.7% >= 20%"
	# Memory needed: converging at the budget's pages (the cost not measured yet).
	setmem $total 1500000 0 0 1500000
	settime 1010
	once
	expect_knobs "memory needed" run=1 sleep_millisecs=100 advisor_mode=none \
		pages_to_scan="$(converging_pages 30 2e-6 1048576)"
	says "$tmp/out" "paced to a full scan every 3 s"
	# The log names what changed: advisor_mode was none already.
	grep -q "; set [^;]*advisor_mode" "$tmp/out" && fail "tune logs advisor_mode=none, which it was already"
	says "$tmp/out" "; set pages_to_scan=$(converging_pages 30 2e-6 1048576) sleep_millisecs=100 run=1;"
	says "$tmp/out" "memory needed: MemAvailable 8.9% < 20%"
	# 10 s later: 2.5 s of ksmd CPU over 1000000 pages scanned, and pages merged.
	settime 1020
	setcpu 250
	counters 11 9000 900 500 50 2000000
	once --json
	cost=$(awk 'BEGIN { printf "%.17g", (250 / 100 - 0 / 100) / 1000000 }')
	expect_knobs "converging" pages_to_scan="$(converging_pages 30 "$cost" 1048576)"
	json_ok 'd["state"] == "converging" and "pages saved changed" in d["why"]'
	# One full scan, then two, without change: converged, idle at 1% CPU.
	settime 1030
	setcpu 300
	counters 12 9000 900 500 50 2400000
	once
	c1=$(awk -v c="$cost" 'BEGIN { printf "%.17g", (c + (3.0 - 2.5) / 400000) / 2 }')
	expect_knobs "one scan without change" pages_to_scan="$(converging_pages 30 "$c1" 1048576)"
	says "$tmp/out" "converging: 1 of 2 full scans without change"
	settime 1040
	setcpu 350
	counters 13 9005 900 500 50 2800000
	once
	cost2=$(awk -v c="$c1" 'BEGIN { printf "%.17g", (c + (3.5 - 3.0) / 400000) / 2 }')
	p=$(pages_for 1 100 "$cost2")
	expect_knobs "converged" run=1 advisor_mode=none pages_to_scan="$p" sleep_millisecs=100
	says "$tmp/out" "converged: pages saved steady over 2 full scans"
	# Idle stays idle while nothing changes.
	settime 1050
	counters 15 9005 900 500 50 2800000
	once
	expect_knobs "still idle" pages_to_scan="$p"
	says "$tmp/out" "tune pressure idle"
	# Idle, a cost that wanders within a factor of 2 (0.1 s over 40000
	# pages: 2.5 us, the mean 2.03 us) rewrites nothing.
	settime 1055
	setcpu 360
	counters 15 9005 900 500 50 2840000
	once --json
	cost3=$(awk -v c="$cost2" 'BEGIN { printf "%.17g", (c + (3.6 - 3.5) / 40000) / 2 }')
	[ "$(pages_for 1 100 "$cost3")" != "$p" ] || fail "the test's cost did not wander"
	expect_knobs "idle, the cost wandering" pages_to_scan="$p"
	json_ok 'd["state"] == "idle" and d["written"] == ""'
	# A new guest of 512 MiB: converging again, before ksmd has seen its pages.
	addproc 3101 qemu-system-x86 524288
	settime 1060
	once
	expect_knobs "new guest" pages_to_scan="$(converging_pages 30 "$cost3" $((1048576 + 524288)))"
	says "$tmp/out" "mergeable processes grew"
	# Idle again: from the converging value, the idle one is written.
	settime 1070
	counters 17 9005 900 500 50 2840000
	once
	expect_knobs "idle again" pages_to_scan="$(pages_for 1 100 "$cost3")"
	# New pages tracked (ksmd found memory nobody announced): converging.
	settime 1080
	counters 18 9005 900 60000 50 2840000
	once
	expect_knobs "new pages" pages_to_scan="$(converging_pages 30 "$cost3" $((1048576 + 524288)))"
	says "$tmp/out" "new pages tracked"
	# Hysteresis: needed until MemAvailable is 5 points above 20%.
	setmem $total 3700000 0 0 3700000 # 22%
	once
	expect_knobs "hysteresis" run=1
	says "$tmp/out" "memory still needed"
	setmem $total 4400000 0 0 4400000 # 26%
	once
	expect_knobs "plenty again" run=0
	# Tasks stalling on memory: needed, whatever MemAvailable says.
	psi 2.50
	once
	expect_knobs "PSI" run=1
	says "$tmp/out" "tasks stall on memory 2.50% >= 1%"
	psi 0.00
	# No PSI (a kernel booted without it, as Debian's are) or a line that
	# gives no percentage: the stalls are unknown, in the log as in
	# --json (null), never "stalls 0.00%", which says no task stalled.
	for c in none abc; do
		if [ $c = none ]; then rm "$tree/proc/pressure/memory"; else psi $c; fi
		tune --once --dry-run
		says "$tmp/out" "stalls unknown (no PSI)"
		! grep -q "stalls 0.00%" "$tmp/out" || fail "PSI $c: $(cat "$tmp/out")"
		tune --once --dry-run --json
		json_ok 'd["read"]["psi_memory_some_avg10"] is None'
	done
	psi 0.00
	# --always, with another budget.
	rm -f "$tmp/state"
	setknob run 0
	setmem $total 8000000 0 0 8000000
	once --always --max-cpu 50
	expect_knobs "--always" run=1 advisor_mode=none \
		pages_to_scan="$(converging_pages 50 2e-6 $((1048576 + 524288)))"
	says "$tmp/out" "merging always (--always)"
	# --advisor: converging under the kernel's advisor, idle without it.
	rm -f "$tmp/state"
	setmem $total 1500000 0 0 1500000
	settime 2000
	once --advisor
	expect_knobs "--advisor" run=1 sleep_millisecs=100 advisor_mode=scan-time advisor_max_cpu=30 \
		advisor_target_scan_time=1 advisor_min_pages_to_scan="$(pages_for 30 100 2e-6)"
	says "$tmp/out" "by the kernel's scan-time advisor"
	settime 2010
	counters 25 9005 900 60000 50 2800000
	once --advisor
	expect_knobs "--advisor, converged" advisor_mode=none pages_to_scan="$(pages_for 1 100 2e-6)"
	# --dry-run decides and writes nothing; --json parses.
	rm -f "$tmp/state"
	setmem $total 1000000 0 0 1000000
	local before
	before=$(snapshot)
	tune --once --dry-run --json
	[ "$before" = "$(snapshot)" ] || fail "--dry-run changed knobs"
	json_ok 'd["dry_run"] and d["set"]["run"] == 1 and d["written"] == ""'
	# One decision, one line: the journal keeps a line as a record.
	[ "$(wc -l <"$tmp/out")" = 1 ] || fail "--json wrote a decision on $(wc -l <"$tmp/out") lines"

	# Converged by pages_scanned (6.6+), 100000 pages tracked.  After a
	# change of the pages saved alone, a full scan's worth of pages scanned
	# is enough (every page looked at once more, and nothing merged), where
	# two full scans were waited for; after new pages, two full scans
	# still (a new page merges at its second visit, or in the scan after,
	# paired with a page the cursor passed before it).
	mktree linux-6.18
	addproc 3100 qemu-system-x86 409600
	setknob advisor_mode "[none] scan-time"
	setmem $total 1500000 0 0 1500000
	settime 3000
	counters 20 1000 100 500 98400 5000000
	once
	says "$tmp/out" "merging starts"
	settime 3001
	counters 21 31000 3100 500 65400 5210000 # saved, and nothing new tracked
	once
	says "$tmp/out" "pages saved changed: 3048 -> 33048" # and 2048 ksm_zero_pages
	settime 3002
	counters 22 31000 3100 500 65400 5290000
	once
	expect_knobs "80000 pages scanned" pages_to_scan="$(converging_pages 30 2e-6 409600)"
	says "$tmp/out" "converging: 1 of 2 full scans without change, or 80000 of 100000 pages scanned"
	# A state file of the version before, without the marks of pages_scanned:
	# the full scans decide until the next change.
	grep -v '^ps.mark_scanned \|^ps.new_scans ' "$tmp/state" >"$tmp/oldstate"
	settime 3003
	counters 22 31000 3100 500 65400 5320000
	tune --once --dry-run --state "$tmp/oldstate"
	says "$tmp/out" "converging: 1 of 2 full scans without change"
	once
	expect_knobs "a full scan's worth scanned" run=1 pages_to_scan="$(pages_for 1 100 2e-6)"
	says "$tmp/out" "tune pressure idle"
	says "$tmp/out" "converged: pages saved steady over 110000 pages scanned (a full scan's worth: 100000), new pages 2 full scans old"
	# Pages saved and new pages at once: the log names the first, and the
	# new pages are waited for, a full scan's worth scanned or not.
	settime 3004
	counters 22 41000 4100 30500 54400 5330000 # 130000 tracked
	once
	says "$tmp/out" "pages saved changed: 33048 -> 43048"
	settime 3005
	counters 23 41000 4100 30500 54400 5480000
	once
	expect_knobs "new pages, one full scan" pages_to_scan="$(converging_pages 30 2e-6 520000)" # tracked, above VmRSS
	says "$tmp/out" "converging: 1 of 2 full scans without change, or 150000 of 130000 pages scanned (a full scan's worth) with new pages 2 full scans old (1)"
	settime 3006
	counters 24 41000 4100 30500 54400 5600000
	once
	expect_knobs "new pages, two full scans" pages_to_scan="$(pages_for 1 100 2e-6)"
	says "$tmp/out" "converged: pages saved steady over 2 full scans"

	# 4.19: no advisor, no pages_scanned, no ksm_stat.  The cost comes from
	# the CPU share the knobs gave: f = P*cost / (S + P*cost).
	mktree linux-4.19
	addproc 3100 qemu-system-x86 67108864 # 64 GiB: the pace's pages are more than the budget's
	counters 10 1000 100 500 50
	setmem $total 1000000 0 0 1000000
	once --max-cpu 40
	p=$(pages_for 40 100 2e-6)
	expect_knobs "4.19" run=1 sleep_millisecs=100 pages_to_scan="$p"
	[ ! -e "$ksm/advisor_mode" ] || fail "advisor_mode was created on a kernel without it"
	settime 1010
	setcpu 300 # 30% of a CPU over 10 s
	counters 11 5000 500 500 50
	once --max-cpu 40
	cost=$(awk -v p="$p" 'BEGIN { f = (3 - 0) / 10; printf "%.17g", f * 100 / 1000 / (p * (1 - f)) }')
	expect_knobs "4.19, measured" pages_to_scan="$(pages_for 40 100 "$cost")"
	# Converged after two full scans without change, pages_scanned unknown.
	settime 1020
	counters 12 5000 500 500 50
	once --max-cpu 40
	expect_knobs "4.19, one full scan" pages_to_scan="$(pages_for 40 100 "$cost")"
	says "$tmp/out" "converging: 1 of 2 full scans without change;"
	settime 1030
	counters 13 5000 500 500 50
	once --max-cpu 40
	expect_knobs "4.19, converged" pages_to_scan="$(pages_for 1 100 "$cost")"
	says "$tmp/out" "converged: pages saved steady over 2 full scans"
}

# ---- signals ----
# daemon ARGS...: starts `tune ARGS` in the background on the tree, output in $tmp/d.out.
# A background command's ">FILE" truncates FILE in the child, which may
# run after the caller's next grep: FILE is emptied here first, or a wait
# for its first line sees the last daemon's (cli.tune.signals failed so
# under load: "d.out lacks: tune pressure stopped", the idle part's log).
daemon() {
	: >"$tmp/d.out"
	: >"$tmp/d.err"
	"$ksmctl" --sysfs-root "$tree/sys" --proc-root "$tree/proc" --boot-root "$tree/boot" \
		tune "$@" >"$tmp/d.out" 2>"$tmp/d.err" &
	dpid=$!
	pids+=("$dpid")
}
# decisions N: waits (60 s at most) until the daemon has logged N decisions.
decisions() {
	for _ in $(seq 600); do
		[ "$(grep -c ' tune ' "$tmp/d.out")" -ge "$1" ] && return 0
		sleep 0.1
	done
	fail "the daemon logged $(grep -c ' tune ' "$tmp/d.out") decisions, not $1: $(cat "$tmp/d.out" "$tmp/d.err")"
	return 1
}
stop_daemon() { # stop_daemon: SIGTERM, exit status 0
	kill -TERM "$dpid"
	wait "$dpid"
	local st=$?
	[ $st = 0 ] || fail "the daemon exited $st on SIGTERM: $(cat "$tmp/d.err")"
}

t_signals() {
	mktree linux-6.18
	setmem 16777216 1000000 0 0 1000000
	# The pressure policy decides at once, then every hour; SIGUSR1 now.
	daemon --interval 3600
	decisions 1 || return
	# While it runs, set of a knob it drives warns that it will not last,
	# and doctor says it runs; set of another knob, or of another tree's,
	# says nothing of it.
	"$ksmctl" --sysfs-root "$tree/sys" --proc-root "$tree/proc" set pages_to_scan=77 >/dev/null \
		2>"$tmp/err" || fail "set pages_to_scan beside the daemon exited $?: $(cat "$tmp/err")"
	says "$tmp/err" "ksmctl tune (pid $dpid) drives run, pages_to_scan and sleep_millisecs"
	# Every driven knob it changed is named, not only the first.
	"$ksmctl" --sysfs-root "$tree/sys" --proc-root "$tree/proc" set pages_to_scan=79 \
		sleep_millisecs=33 use_zero_pages=1 >/dev/null 2>"$tmp/err" ||
		fail "set of two driven knobs beside the daemon exited $?: $(cat "$tmp/err")"
	says "$tmp/err" "it will set pages_to_scan, sleep_millisecs again at its next decision (to keep these values"
	"$ksmctl" --sysfs-root "$tree/sys" --proc-root "$tree/proc" set use_zero_pages=0 >/dev/null \
		2>"$tmp/err"
	! grep -q "ksmctl tune" "$tmp/err" || fail "set use_zero_pages warned: $(cat "$tmp/err")"
	cp -a "$tree" "$tmp/other"
	"$ksmctl" --sysfs-root "$tmp/other/sys" --proc-root "$tmp/other/proc" set pages_to_scan=78 \
		>/dev/null 2>"$tmp/err"
	! grep -q "ksmctl tune" "$tmp/err" || fail "set on another tree warned: $(cat "$tmp/err")"
	rm -rf "$tmp/other"
	"$ksmctl" --sysfs-root "$tree/sys" --proc-root "$tree/proc" --boot-root "$tree/boot" doctor \
		--json >"$tmp/out"
	json_ok 'any(f["id"] == "tuner" and "pid %d" % '"$dpid"' in f["evidence"] for f in d["findings"])'
	stop_daemon
	# KSM unreadable for a while (samepaged stopped, with --user): one
	# warning for the outage, not one per decision, and one when it is back.
	daemon --interval 0.1
	decisions 1 || return
	mv "$ksm" "$tmp/ksm.away"
	sleep 1
	mv "$tmp/ksm.away" "$ksm"
	for _ in $(seq 600); do grep -q "can be read again" "$tmp/d.err" && break; sleep 0.1; done
	[ "$(grep -c "cannot read the memory or KSM state" "$tmp/d.err")" = 1 ] &&
		grep -q "can be read again" "$tmp/d.err" ||
		fail "not one warning for the outage and one at its end: $(cat "$tmp/d.err")"
	stop_daemon
	mktree linux-6.18
	setmem 16777216 1000000 0 0 1000000
	daemon --interval 3600
	decisions 1 || return
	kill -USR1 "$dpid"
	decisions 2 || return
	says "$tmp/d.out" "SIGUSR1: something new to merge"
	stop_daemon
	[ "$(grep -c ' tune ' "$tmp/d.out")" = 2 ] || fail "more than two decisions: $(cat "$tmp/d.out")"
	# Converging, it decides again within a second, whatever the interval:
	# with an hour between decisions, a new clock is still read.
	mktree linux-6.18
	setmem 16777216 1000000 0 0 1000000
	daemon --interval 3600 --state "$tmp/cstate"
	decisions 1 || return
	says "$tmp/d.out" "tune pressure converging"
	settime 2000
	for _ in $(seq 600); do grep -q '^ps.prev.t 2000$' "$tmp/cstate" 2>/dev/null && break; sleep 0.1; done
	grep -q '^ps.prev.t 2000$' "$tmp/cstate" || fail "converging, no decision came before the interval"
	stop_daemon
	# Idle, it reads AnonPages every second between decisions: growth beyond
	# what the policy counts as new (64 MiB here) decides at once, whatever
	# the interval, and a guest is noticed; less growth waits.
	mktree linux-6.18
	setmem 16777216 1000000 0 0 1000000 2000000
	counters 10 1000 100 500 50 1000000
	once
	settime 1010
	counters 12 1000 100 500 50 1010000
	once
	says "$tmp/out" "tune pressure idle"
	daemon --interval 3600 --state "$tmp/state"
	decisions 1 || return
	says "$tmp/d.out" "tune pressure idle"
	settime 1990
	setmem 16777216 1000000 0 0 1000000 2030000
	sleep 3
	! grep -q '^ps.prev.t 1990$' "$tmp/state" || fail "AnonPages grew by 30000 kB, and a decision came"
	settime 2000
	addproc 3102 qemu-system-x86 524288
	setmem 16777216 1000000 0 0 1000000 2600000
	for _ in $(seq 600); do grep -q '^ps.prev.t 2000$' "$tmp/state" 2>/dev/null && break; sleep 0.1; done
	grep -q '^ps.prev.t 2000$' "$tmp/state" || fail "idle, AnonPages grew by 600000 kB, and no decision came"
	decisions 2 || return
	says "$tmp/d.out" "mergeable processes grew"
	says "$tmp/d.out" "(decided at once: AnonPages grew 600000 kB since the last decision)"
	stop_daemon
	# Stopped (memory plentiful), it reads MemAvailable every second
	# between decisions: memory running short starts merging at once,
	# whatever the interval (it waited for the interval, 5-10 s in the
	# benchmark's runs).
	mktree linux-6.18
	setmem 16777216 14000000 0 0 14000000
	daemon --interval 3600 --state "$tmp/sstate"
	decisions 1 || return
	says "$tmp/d.out" "tune pressure stopped"
	settime 2000
	setmem 16777216 1000000 0 0 1000000
	for _ in $(seq 600); do grep -q '^ps.prev.t 2000$' "$tmp/sstate" 2>/dev/null && break; sleep 0.1; done
	grep -q '^ps.prev.t 2000$' "$tmp/sstate" || fail "stopped, MemAvailable fell to 6%, and no decision came"
	decisions 2 || return
	says "$tmp/d.out" "memory needed: MemAvailable"
	stop_daemon
	# Unchanged decisions are not logged; a change of state is.  The state
	# file tells that a decision has read the new clock.
	mktree linux-6.18
	setmem 16777216 14000000 0 0 14000000
	daemon --interval 0.1 --state "$tmp/dstate"
	decisions 1 || return
	settime 2000
	for _ in $(seq 600); do grep -q '^ps.prev.t 2000$' "$tmp/dstate" 2>/dev/null && break; sleep 0.1; done
	grep -q '^ps.prev.t 2000$' "$tmp/dstate" || fail "no decision read the new clock"
	[ "$(grep -c ' tune ' "$tmp/d.out")" = 1 ] || fail "unchanged decisions logged: $(cat "$tmp/d.out")"
	setmem 16777216 1000000 0 0 1000000
	decisions 2 || return
	says "$tmp/d.out" "tune pressure converging"
	stop_daemon
	# ksmtuned's first decision comes after its interval, or on SIGUSR1.
	mktree linux-6.18
	setmem 16777216 1000000 0 0 1000000
	setknob run 0
	daemon --policy ksmtuned --config /dev/null --interval 3600
	sleep 1
	[ "$(grep -c ' tune ' "$tmp/d.out")" = 0 ] || fail "ksmtuned's policy decided before its interval"
	[ "$(knob run)" = 0 ] || fail "run changed before the first decision"
	kill -USR1 "$dpid"
	decisions 1 || return
	expect_knobs "ksmtuned after SIGUSR1" run=1 pages_to_scan=300 advisor_mode=none
	stop_daemon
	# --restore: the knobs found at start come back on SIGTERM.
	mktree linux-6.18
	setmem 16777216 1000000 0 0 1000000
	setknob advisor_mode "[none] scan-time"
	setknob run 0
	setknob pages_to_scan 1234
	setknob sleep_millisecs 56
	local before
	before=$(snapshot)
	daemon --interval 3600 --restore
	decisions 1 || return
	expect_knobs "while tuning" run=1 sleep_millisecs=100
	stop_daemon
	says "$tmp/d.out" "tune: restored"
	diff <(echo "$before") <(snapshot) >/dev/null ||
		fail "--restore did not put back the knobs: $(diff <(echo "$before") <(snapshot))"
	# Without --restore, the knobs stay as tune left them.
	daemon --interval 3600
	decisions 1 || return
	stop_daemon
	expect_knobs "no --restore" run=1 sleep_millisecs=100
	# A line starts with its time, except in the journal (JOURNAL_STREAM
	# names stdout), which stamps each line itself.
	tune --once --dry-run >/dev/null
	grep -Eq '^[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9:]{8} tune pressure ' "$tmp/out" || fail "no time: $(cat "$tmp/out")"
	: >"$tmp/j.out"
	JOURNAL_STREAM=$(stat -c '%d:%i' "$tmp/j.out") "$ksmctl" --sysfs-root "$tree/sys" \
		--proc-root "$tree/proc" tune --once --dry-run >>"$tmp/j.out"
	grep -q '^tune pressure ' "$tmp/j.out" || fail "a time of its own in the journal: $(cat "$tmp/j.out")"
}

# ---- bad input ----
# refused WHAT TEXT...: the last tune exited 2, said each TEXT, changed nothing.
refused() {
	local what=$1 t
	shift
	[ $rc = 2 ] || fail "$what: exit $rc, not 2"
	for t in "$@"; do says "$tmp/err" "$t"; done
	[ "$before" = "$(snapshot)" ] || fail "$what: knobs changed"
}

t_config() {
	local before c
	mktree linux-6.18
	setmem 16777216 1000000 0 0 1000000
	before=$(snapshot)
	bad() { # bad TEXT-OF-LINE-3 CAUSE FIX [SHOWN-IN-INPUT]: TEXT as printf %b reads it
		printf '# ksmtuned.conf\nKSM_MONITOR_INTERVAL=60\n%b\n' "$1" >"$tmp/bad.conf"
		tune --once --policy ksmtuned --config "$tmp/bad.conf"
		refused "$1" "ksmctl: $2" "input: $tmp/bad.conf:3${4:+: $4}" "fix: $3"
		! tr -d '\n' <"$tmp/err" | LC_ALL=C grep -q '[[:cntrl:]]' ||
			fail "$1: a control character printed raw: $(cat -A "$tmp/err")"
	}
	bad "KSM_NPAGES_MAXX=1250" 'unknown variable "KSM_NPAGES_MAXX"' "use KSM_MONITOR_INTERVAL,"
	bad "KSM_NPAGES_MAX=many" "bad value for KSM_NPAGES_MAX" "give a whole number from 0 to 4294967295 (pages)"
	bad "KSM_THRES_COEF=150" "bad value for KSM_THRES_COEF" "give a whole number from 0 to 100 (percent of MemTotal)"
	bad "KSM_SLEEP_MSEC = 10" 'syntax error: a space before "="' 'no space around "="'
	bad "KSM_SLEEP_MSEC=10 20" 'syntax error: more than one word after "="' 'give one word, or quote it'
	bad "KSM_SLEEP_MSEC=\$HOME" "bad value for KSM_SLEEP_MSEC" "give a whole number"
	# Where ksmtuned's bash fails ("value too great for base": 8 and 9 in
	# an octal number), and a hex number [ -lt ] refuses (RELIABILITY.md
	# 109; before, 08 was taken as 8).
	bad "KSM_NPAGES_BOOST=08" "bad value for KSM_NPAGES_BOOST: 08 is octal in ksmtuned's arithmetic (a leading 0), where 8 and 9 are not digits" \
		"write KSM_NPAGES_BOOST=8: without its leading 0"
	bad "KSM_NPAGES_DECAY='-009'" "bad value for KSM_NPAGES_DECAY: 009 is octal" "write KSM_NPAGES_DECAY=-9: without"
	bad "KSM_SLEEP_MSEC=090" "bad value for KSM_SLEEP_MSEC: 090 is octal" "write KSM_SLEEP_MSEC=90: without"
	bad "KSM_THRES_COEF=018" "bad value for KSM_THRES_COEF: 018 is octal" "write KSM_THRES_COEF=18: without"
	bad "KSM_NPAGES_MAX=01290" "bad value for KSM_NPAGES_MAX: 01290 is octal in ksmtuned's arithmetic once npages or thres takes it" \
		"write KSM_NPAGES_MAX=1290: without"
	bad "KSM_THRES_CONST=0x800" "bad value for KSM_THRES_CONST" "give a whole number from 0 to 1099511627776 (kB) in decimal (ksmtuned compares it with [ -lt ], which reads no hex)"
	# A NUL byte ended the line unseen (KSM_NPAGES_MAX=1250 was taken);
	# a control byte is shown as \xHH, not sent to the terminal.
	bad 'KSM_NPAGES_MAX=1250\0junk' "the line contains a NUL byte" "remove it" \
		'KSM_NPAGES_MAX=1250\x00junk'
	bad 'KSM_NPAGES_MAXX\x1b[2J=1' 'unknown variable "KSM_NPAGES_MAXX\x1b[2J"' "use KSM_MONITOR_INTERVAL," \
		'KSM_NPAGES_MAXX\x1b[2J=1'
	bad "KSM_MONITOR_INTERVAL=30" "KSM_MONITOR_INTERVAL is set twice (first on line 2)" "give each variable once"
	bad "ksm start" 'syntax error: not NAME=VALUE' "write one NAME=VALUE per line"
	bad "KSM_NPAGES_MIN=2000" "KSM_NPAGES_MIN (2000) is above KSM_NPAGES_MAX (1250)" "give KSM_NPAGES_MIN <= KSM_NPAGES_MAX"
	tune --once --policy ksmtuned --config "$tmp/none.conf"
	refused "missing --config" "cannot read the ksmtuned config: No such file or directory" "input: $tmp/none.conf"
	# A --config that cannot be read (a directory: a mistyped path) was
	# taken for an empty file: ksmtuned's defaults, exit 0.
	mkdir -p "$tmp/conf.d"
	tune --once --policy ksmtuned --config "$tmp/conf.d"
	refused "a directory as --config" "cannot read the ksmtuned config: Is a directory" \
		"input: $tmp/conf.d" "fix: name ksmtuned's file"
	# Options.
	for c in "--policy frob" "--max-cpu 0" "--max-cpu 101" "--available -1" "--interval 0" \
		"--idle-cpu 40" "--advisor --max-cpu 5" "--config /dev/null" "--policy ksmtuned --max-cpu 20" "--once extra"; do
		# shellcheck disable=SC2086
		tune --once $c
		refused "$c" "ksmctl: tune:" "fix:"
	done
	# A state file it could not write: refused before any knob is written.
	tune --once --state "$tmp/no/such/dir/state"
	refused "--state in a missing directory" "ksmctl: tune: cannot write the state file" \
		"input: $tmp/no/such/dir/state" "fix: name a file in a directory you can write"
	# A file that is no state file at all (a typo'd --state /etc/passwd):
	# refused, unchanged; it was read as "starting afresh" and replaced at
	# the first decision.
	printf 'root:x:0:0:root:/root:/bin/bash\n' >"$tmp/passwd"
	tune --once --state "$tmp/passwd"
	refused "--state OTHER-FILE" "ksmctl: tune: not a state file ksmctl wrote" "input: $tmp/passwd"
	[ "$(cat "$tmp/passwd")" = "root:x:0:0:root:/root:/bin/bash" ] || fail "--state OTHER-FILE changed it"
	# A state path that state_save cannot rename over, or must not: refused
	# up front, --dry-run too, as a missing directory is.  A directory was
	# a warning at every decision, exit 0, no state kept; a device was
	# replaced by a regular file (root's --state /dev/null: never test that
	# on the real one, a copy of its node here).
	mkdir "$tmp/statedir"
	[ "$(id -u)" = 0 ] && mknod "$tmp/null" c 1 3
	for mode in "" --dry-run; do
		# shellcheck disable=SC2086
		tune --once $mode --state "$tmp/statedir"
		refused "--state DIR $mode" "ksmctl: tune: the state file is a directory" \
			"input: $tmp/statedir" "fix: name a file"
		[ -c "$tmp/null" ] || continue
		# shellcheck disable=SC2086
		tune --once $mode --state "$tmp/null"
		refused "--state DEVICE $mode" "ksmctl: tune: the state file is not a regular file" \
			"input: $tmp/null"
		[ -c "$tmp/null" ] || fail "--state DEVICE $mode replaced the device"
	done
	[ ! -e "$tmp/statedir.tmp" ] || fail "--state DIR left $tmp/statedir.tmp"
	# Another user's file in a sticky directory (as in /tmp): the rename
	# over it fails, so it is refused too.  As nobody, when root can
	# switch to it.
	if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
		mkdir -m 1777 "$tmp/sticky"
		echo "run 1" >"$tmp/sticky/state"
		chmod 755 "$tmp"
		chmod -R a+rwX "$tree"
		setpriv --reuid=65534 --regid=65534 --clear-groups "$ksmctl" --sysfs-root "$tree/sys" \
			--proc-root "$tree/proc" --boot-root "$tree/boot" tune --once \
			--state "$tmp/sticky/state" >"$tmp/out" 2>"$tmp/err"
		rc=$?
		refused "another user's --state in a sticky directory" \
			"ksmctl: tune: cannot replace the state file: another user's file in a sticky directory" \
			"input: $tmp/sticky/state"
		chmod 700 "$tmp"
	fi
	# An empty --state or --config (an unset variable): refused, not taken
	# for ".tmp" in the current directory (the state lost at every run) or
	# for a missing file.
	mkdir "$tmp/cwd"
	cd "$tmp/cwd" || exit 1
	tune --once --state ""
	refused "--state ''" "ksmctl: tune: --state needs a file, not an empty string" \
		'input: --state ""' "fix: name the state file, or leave --state out"
	tune --once --policy ksmtuned --config=
	refused "--config=" "ksmctl: tune: --config needs a file, not an empty string" \
		'input: --config ""' "fix: name ksmtuned's file"
	cd - >/dev/null || exit 1
	[ -z "$(ls -A "$tmp/cwd")" ] || fail "an empty --state or --config left: $(ls -A "$tmp/cwd")"
	# A state file with a line this ksmctl does not know (another
	# version's): a warning on one line, then afresh.
	printf 'ps.prev.t 2000\ngarbage\n' >"$tmp/garbage"
	tune --once --dry-run --state "$tmp/garbage"
	[ $rc = 0 ] || fail "--state FILE of garbage: exit $rc"
	says "$tmp/err" '(line "garbage"); starting afresh'
	# Not allowed to write: exit 3, before deciding.
	chmod 0444 "$ksm/run"
	if ! [ -w "$ksm/run" ]; then
		tune --once
		[ $rc = 3 ] || fail "a read-only run file: exit $rc, not 3"
	fi
	chmod 0644 "$ksm/run"
	# No KSM at all.
	mktree linux-6.6-noksm
	tune --once
	[ $rc = 1 ] || fail "no KSM: exit $rc, not 1"
	says "$tmp/err" "KSM is not available"
}

t_doctor() {
	mktree linux-6.18
	"$ksmctl" --sysfs-root "$tree/sys" --proc-root "$tree/proc" --boot-root "$tree/boot" doctor --json >"$tmp/out"
	json_ok 'all(f["id"] != "ksmtuned" for f in d["findings"])'
	addproc 700 ksmtuned 3000
	"$ksmctl" --sysfs-root "$tree/sys" --proc-root "$tree/proc" --boot-root "$tree/boot" doctor --json >"$tmp/out"
	rc=$?
	[ $rc = 1 ] || fail "doctor with ksmtuned running exited $rc, not 1"
	json_ok 'any(f["id"] == "ksmtuned" and f["severity"] == "warning" and "pid 700" in f["evidence"]
		and "systemctl disable --now ksmtuned.service" in f["fix"] and "install-service --tune" in f["fix"]
		for f in d["findings"])'
	# tune itself warns about it.
	setmem 16777216 1000000 0 0 1000000
	tune --once --dry-run
	says "$tmp/err" "ksmtuned is running (pid 700)"
	# Another ksmctl tune daemon on the same tree: a second one (or a
	# --once from cron) says so at start; two ran silently, each undoing
	# the other's decisions.  A --dry-run one writes nothing: no word.
	daemon --interval 3600
	decisions 1 || return
	tune --once
	says "$tmp/err" "another ksmctl tune (pid $dpid) drives the same KSM"
	tune --once --dry-run
	grep -q "another ksmctl tune" "$tmp/err" && fail "tune --dry-run warned: $(cat "$tmp/err")"
	stop_daemon
	tune --once
	grep -q "another ksmctl tune" "$tmp/err" && fail "tune warned with no other daemon: $(cat "$tmp/err")"
	# A daemon started with a relative --sysfs-root in another directory
	# drives the same tree: its root is below its working directory, not
	# below the caller's (it was not found).
	: >"$tmp/d.out" # emptied now, not when the child starts (daemon())
	(cd "$tree" && exec "$ksmctl" --sysfs-root sys --proc-root proc tune --interval 3600) \
		>"$tmp/d.out" 2>"$tmp/d.err" &
	dpid=$!
	pids+=("$dpid")
	decisions 1 || return
	tune --once
	says "$tmp/err" "another ksmctl tune (pid $dpid) drives the same KSM"
	stop_daemon
}

t_unit() {
	local root=$tmp/root unit
	mkdir -p "$root"
	"$ksmctl" install-service --tune --root "$root" >"$tmp/out" || fail "install-service --tune exited $?"
	unit=$root/etc/systemd/system/ksm-tune.service
	[ -f "$unit" ] || { fail "no $unit"; return; }
	[ "$(readlink "$root/etc/systemd/system/multi-user.target.wants/ksm-tune.service")" = ../ksm-tune.service ] ||
		fail "install-service --tune did not enable ksm-tune.service"
	[ ! -e "$root/etc/ksm.conf" ] || fail "install-service --tune wrote /etc/ksm.conf, which tune does not read"
	says "$unit" "Conflicts=ksmtuned.service ksm.service"
	says "$unit" "After=ksm-apply.service ksmtuned.service ksm.service"
	says "$unit" "ExecReload=/bin/kill -USR1 \$MAINPID"
	grep -q '^ExecStart=[^ ]*/ksmctl tune \$KSMCTL_TUNE_ARGS$' "$unit" || fail "ksm-tune.service's ExecStart"
	"$ksmctl" install-service --root "$root" --no-enable >"$tmp/out"
	unit=$root/etc/systemd/system/ksm-apply.service
	# Not ksm.service: both are wanted at boot (ksmtuned's enabling kept),
	# and a conflict would drop it (run=1 at boot).
	says "$unit" "Conflicts=ksmtuned.service"
	grep -q '^Conflicts=.*ksm\.service' "$unit" && fail "ksm-apply.service conflicts with ksm.service"
	# Conflicts= alone does not order the conflicting unit's stop (run=0)
	# before this unit's start; ksm.service's start (run=1) comes first.
	says "$unit" "After=local-fs.target ksmtuned.service ksm.service"
	grep -q '^ExecStop=[^ ]*/ksmctl stop$' "$unit" || fail "ksm-apply.service has no ExecStop=ksmctl stop"
	if command -v systemd-analyze >/dev/null; then
		sed -i "s#^\(Exec[A-Za-z]*\)=[^ ]*/ksmctl#\1=$ksmctl#" "$root"/etc/systemd/system/*.service
		(cd "$root/etc/systemd/system" && systemd-analyze verify --man=no ksm-tune.service ksm-apply.service) \
			>"$tmp/out" 2>&1 || fail "systemd-analyze verify: $(cat "$tmp/out")"
		[ ! -s "$tmp/out" ] || fail "systemd-analyze verify printed: $(cat "$tmp/out")"
	fi
}

# ---- samepaged ----
value() { "$ksmctl" --socket "$sock" status --json |
	python3 -c "import json, sys; print(json.load(sys.stdin)['files']['$1'])"; }

t_user() {
	[ -x "$samepaged" ] && [ -x "$spclient" ] || { echo "SKIP: no samepaged"; exit 77; }
	[ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] || { echo "SKIP: /dev/shm is not tmpfs"; exit 77; }
	shm=$(mktemp -d /dev/shm/ksmctl-tune.XXXXXX)
	sock=$tmp/s.sock
	"$samepaged" --foreground --socket "$sock" --state-dir "$shm/state" 2>"$tmp/daemon.log" &
	pids+=($!)
	for _ in $(seq 100); do "$ksmctl" --socket "$sock" check >/dev/null 2>&1 && break; sleep 0.1; done
	# --always: memory on this machine may be plentiful.  Knobs before the
	# client (see user.sh: an idle scanner notices run=1 at its next call).
	"$ksmctl" --user --socket "$sock" tune --once --always --max-cpu 50 --json \
		--state "$tmp/state" >"$tmp/out" 2>"$tmp/err" || fail "tune --user exited $?"
	json_ok 'd["set"]["run"] == 1 and d["read"]["mergeable_processes"] == 0'
	[ "$(value run)" = 1 ] && [ "$(value sleep_millisecs)" = 100 ] &&
		[ "$(value pages_to_scan)" = "$(pages_for 50 100 2e-6)" ] ||
		fail "samepaged's knobs: run $(value run) sleep $(value sleep_millisecs) pages $(value pages_to_scan)"
	: >"$tmp/client.out" # emptied now, not when the child starts (daemon())
	SAMEPAGE_SOCKET=$sock "$spclient" vm 16 >"$tmp/client.out" 2>&1 &
	pids+=($!)
	local client=$!
	for _ in $(seq 100); do grep -q ready "$tmp/client.out" && break; sleep 0.1; done
	"$ksmctl" --socket "$sock" wait --converged --timeout 120 >/dev/null 2>&1 || fail "the client did not converge"
	"$ksmctl" --user --socket "$sock" tune --once --always --max-cpu 50 --json \
		--state "$tmp/state" >"$tmp/out" 2>"$tmp/err" || fail "tune --user exited $?"
	json_ok 'd["read"]["mergeable_processes"] == 1 and d["read"]["mergeable_kb"] >= 16384
		and d["read"]["ksmd_cpu_seconds"] >= 0 and d["read"]["pages_sharing"] > 0'
	kill "$client"
	# ksmtuned's policy on samepaged: thres is all of MemTotal, so boost.
	printf 'KSM_THRES_COEF=100\n' >"$tmp/k.conf"
	"$ksmctl" --user --socket "$sock" tune --once --policy ksmtuned --config "$tmp/k.conf" \
		>"$tmp/out" 2>"$tmp/err" || fail "tune --user --policy ksmtuned exited $?"
	[ "$(value pages_to_scan)" = 300 ] || fail "ksmtuned on samepaged: pages_to_scan $(value pages_to_scan)"
}

"t_$test"
[ $fails = 0 ] && echo "ok: cli.tune.$test" && exit 0
exit 1
