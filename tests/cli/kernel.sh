#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.kernel.*: ksmctl against this machine's own KSM.
#
# Every tunable is saved before the test and restored on exit, also on
# failure or interruption, by writing sysfs directly (so a bug in ksmctl
# cannot break the restore): run=2 first, because max_page_sharing and
# merge_across_nodes can only change with no page shared, advisor_mode
# before pages_to_scan (the advisor resets it), run last.  ctest's
# RESOURCE_LOCK kernel_ksm keeps other KSM tests away meanwhile.  Waiting
# for the kernel uses full_scans with pages_to_scan high and
# sleep_millisecs 0, and generous timeouts; nothing asserts a duration.
#
# usage: kernel.sh TEST KSMCTL DUPFILL SRCDIR
set -u
test=$1 ksmctl=$2 dupfill=$3 src=$4
ksm=/sys/kernel/mm/ksm
tmp=$(mktemp -d)
children=()

if [ ! -d $ksm ]; then
	echo "SKIP: this kernel has no $ksm (CONFIG_KSM is off)"
	exit 77
fi
fail() {
	echo "FAIL: $*"
	exit 1
}
[ -w $ksm/run ] || fail "$ksm/run is not writable: run the kernel tests as root"
# RESOURCE_LOCK serializes tests within one ctest; the project's flock on
# /tmp/samepage-kernel-ksm.lock (bench/run.sh, bench/harness.c and the
# estimate tests take it too) keeps out those of another ctest or a
# benchmark.  SAMEPAGE_KSM_LOCK_HELD: our caller holds it for us
# (restore_on_failure runs this script inside itself).
if [ -z "${SAMEPAGE_KSM_LOCK_HELD:-}" ]; then
	exec 9>>/tmp/samepage-kernel-ksm.lock
	flock -w 900 9 || fail "another process held /tmp/samepage-kernel-ksm.lock for 900 s"
	export SAMEPAGE_KSM_LOCK_HELD=1
fi

# ---- save and restore ----
declare -A saved
order=()
for k in advisor_mode advisor_max_cpu advisor_min_pages_to_scan advisor_max_pages_to_scan \
	advisor_target_scan_time pages_to_scan sleep_millisecs merge_across_nodes max_page_sharing \
	stable_node_chains_prune_millisecs use_zero_pages smart_scan run; do
	[ -f $ksm/$k ] || continue
	v=$(cat $ksm/$k)
	[ $k = advisor_mode ] && v=$(sed 's/.*\[\(.*\)\].*/\1/' <<<"$v")
	saved[$k]=$v
	order+=("$k")
done

restore() {
	local k now bad=0
	for pid in "${children[@]}"; do kill "$pid" 2>/dev/null; done
	wait 2>/dev/null
	echo 2 >$ksm/run
	for _ in $(seq 100); do [ "$(cat $ksm/pages_shared)" = 0 ] && break; sleep 0.1; done
	for k in "${order[@]}"; do
		# pages_to_scan is EINVAL under the advisor: the saved mode decides it.
		[ $k = pages_to_scan ] && [ "${saved[advisor_mode]:-none}" = scan-time ] && continue
		echo "${saved[$k]}" >$ksm/$k 2>/dev/null
	done
	for k in "${order[@]}"; do
		now=$(cat $ksm/$k)
		[ $k = advisor_mode ] && now=$(sed 's/.*\[\(.*\)\].*/\1/' <<<"$now")
		[ $k = pages_to_scan ] && [ "${saved[advisor_mode]:-none}" = scan-time ] && continue
		if [ "$now" != "${saved[$k]}" ]; then
			echo "RESTORE FAILED: $k is $now, was ${saved[$k]}"
			bad=1
		fi
	done
	rm -rf "$tmp"
	[ $bad = 0 ] || exit 1
}
trap restore EXIT
trap 'exit 1' INT TERM

# ---- helpers ----
knob() { cat $ksm/$1; }
expect_exit() { # expect_exit STATUS CMD...: runs ksmctl, checks its exit status
	local want=$1
	shift
	"$ksmctl" "$@" >"$tmp/out" 2>"$tmp/err"
	local rc=$?
	cat "$tmp/out" "$tmp/err"
	[ $rc -eq "$want" ] || fail "ksmctl $* exited $rc, expected $want"
}
json_ok() { python3 -m json.tool "$tmp/out" >/dev/null || fail "output of the last command is not JSON"; }
# fast: ksmd as fast as it goes, so full scans take little time.
fast() {
	local adv=
	[ -f $ksm/advisor_mode ] && adv=advisor_mode=none
	expect_exit 0 set $adv pages_to_scan=10000 sleep_millisecs=0 run=1
}
# workload MIB [--madvise|--run]: starts dupfill, waits for its "ready PID"
workload() {
	local mib=$1 how=$2
	# Emptied now: the child's ">" may come after the wait below reads
	# the last dupfill's "ready PID" (and its pid).
	: >"$tmp/ready"
	if [ "$how" = --run ]; then
		"$ksmctl" run -- "$dupfill" "$mib" 300 >"$tmp/ready" &
	else
		"$dupfill" "$mib" 300 --madvise >"$tmp/ready" &
	fi
	children+=($!)
	for _ in $(seq 200); do grep -q ready "$tmp/ready" && break; sleep 0.05; done
	pid=$(awk '/ready/ {print $2}' "$tmp/ready")
	[ -n "$pid" ] || fail "dupfill did not start"
}
converge() {
	expect_exit 0 wait --converged --timeout 240
	[ "$(knob pages_sharing)" -gt 1000 ] || fail "pages_sharing is $(knob pages_sharing) after convergence"
}

# ---- the tests ----
t_set_restore() {
	expect_exit 0 check --json
	json_ok
	grep -q '"supported": true' "$tmp/out" || fail "check --json does not say supported"
	expect_exit 0 set --json sleep_millisecs=33 stable_node_chains_prune_millisecs=1500
	json_ok
	[ "$(knob sleep_millisecs)" = 33 ] || fail "sleep_millisecs is $(knob sleep_millisecs), not 33"
	[ "$(knob stable_node_chains_prune_millisecs)" = 1500 ] || fail "prune_millisecs not written"
	# All or nothing: a bad second value leaves the first unwritten.
	expect_exit 2 set sleep_millisecs=44 pages_to_scan=abc
	[ "$(knob sleep_millisecs)" = 33 ] || fail "a refused set changed sleep_millisecs"
	# Not root: refused with exit 3 before anything is written.
	if command -v setpriv >/dev/null; then
		mkdir -p "$tmp/bin" && cp "$ksmctl" "$tmp/bin/ksmctl" && chmod 755 "$tmp" "$tmp/bin"
		setpriv --reuid=65534 --regid=65534 --clear-groups "$tmp/bin/ksmctl" set sleep_millisecs=5 run=1 \
			>"$tmp/out" 2>&1
		rc=$?
		cat "$tmp/out"
		[ $rc -eq 3 ] || fail "set as an unprivileged user exited $rc, expected 3"
		grep -q "run as root" "$tmp/out" || fail "the refusal does not say to run as root"
		[ "$(knob sleep_millisecs)" = 33 ] || fail "an unprivileged set changed sleep_millisecs"
		# A dry run writes nothing: it shows the change to anyone, and
		# says it needs root (it was refused, exit 3).
		setpriv --reuid=65534 --regid=65534 --clear-groups "$tmp/bin/ksmctl" set --dry-run sleep_millisecs=5 \
			>"$tmp/out" 2>&1
		rc=$?
		cat "$tmp/out"
		[ $rc -eq 0 ] || fail "set --dry-run as an unprivileged user exited $rc, expected 0"
		grep -q "sleep_millisecs: 33 -> 5" "$tmp/out" || fail "set --dry-run does not show the change"
		grep -q "need root" "$tmp/out" || fail "set --dry-run does not say the change needs root"
	fi
	expect_exit 2 set no_such_knob=1
	expect_exit 2 set pages_shared=0
	if [ -f $ksm/advisor_mode ]; then
		expect_exit 0 set advisor_mode=scan-time
		grep -q '\[scan-time\]' $ksm/advisor_mode || fail "advisor_mode not scan-time"
		grep -q "reset pages_to_scan to $(knob pages_to_scan)" "$tmp/err" ||
			fail "set advisor_mode does not say that the kernel reset pages_to_scan"
		before=$(knob pages_to_scan)
		expect_exit 5 set pages_to_scan=10
		[ "$(knob pages_to_scan)" = "$before" ] || fail "pages_to_scan changed under the advisor"
		# Contradicts itself: a usage error (2, not 5), nothing written.
		expect_exit 2 set advisor_mode=scan-time pages_to_scan=10
		grep -q '\[scan-time\]' $ksm/advisor_mode || fail "a refused set changed advisor_mode"
		# The value pages_to_scan has under the advisor, asked for with
		# advisor_mode=none (the refusal's own fix): written again after
		# advisor_mode, which resets it (it read back the kernel's 100).
		now=$(knob pages_to_scan)
		expect_exit 0 set --dry-run advisor_mode=none pages_to_scan="$now"
		grep -q "^pages_to_scan: $now (written again" "$tmp/out" ||
			fail "set --dry-run does not say pages_to_scan is written again"
		expect_exit 0 set advisor_mode=none pages_to_scan="$now"
		[ "$(knob pages_to_scan)" = "$now" ] || fail "pages_to_scan is $(knob pages_to_scan), not $now"
		grep -q '\[none\]' $ksm/advisor_mode || fail "advisor_mode not none"
		expect_exit 0 set advisor_mode=scan-time
		expect_exit 0 set pages_to_scan=777 advisor_mode=none
		[ "$(knob pages_to_scan)" = 777 ] || fail "pages_to_scan is $(knob pages_to_scan), not 777"
		grep -q '\[none\]' $ksm/advisor_mode || fail "advisor_mode not none"
	fi
	expect_exit 0 status --json
	json_ok
	python3 -c 'import json,sys; d=json.load(open(sys.argv[1])); assert d["files"]["sleep_millisecs"] == 33, d["files"]' "$tmp/out" ||
		fail "status --json does not show sleep_millisecs 33"
	expect_exit 0 status --prometheus
	python3 "$src/promcheck.py" "$tmp/out" || fail "status --prometheus is not valid"
	grep -q '^node_ksmd_sleep_seconds 0.033$' "$tmp/out" || fail "node_ksmd_sleep_seconds is not 0.033"
	expect_exit 0 status
	expect_exit 0 stop
	expect_exit 1 doctor --json
	json_ok
	grep -q '"id": "not-running"' "$tmp/out" || fail "doctor does not find that ksmd is stopped"
}

t_start_stop_merge() {
	fast
	workload 32 --madvise
	converge
	expect_exit 0 stop
	[ "$(knob run)" = 0 ] || fail "run is $(knob run) after stop"
	[ "$(knob pages_sharing)" -gt 1000 ] || fail "stop dropped merged pages"
	expect_exit 0 start --json
	json_ok
	[ "$(knob run)" = 1 ] || fail "run is $(knob run) after start"
	expect_exit 0 unmerge --json
	json_ok
	grep -q '"unmerged": true' "$tmp/out" || fail "unmerge --json does not report the unmerge"
	[ "$(knob run)" = 2 ] || fail "run is $(knob run) after unmerge"
	[ "$(knob pages_shared)" = 0 ] || fail "pages_shared is $(knob pages_shared) after unmerge"
	grep -q 'ksm_merging_pages 0' /proc/$pid/ksm_stat || fail "the workload still has merged pages"
}

t_run_top() {
	# Nothing tracked (run=2 frees every rmap_item), then a root process
	# opted in: a user who cannot read its ksm_stat (S_IRUSR) is not told
	# that no process has mergeable memory (a warning, exit 1, before).
	expect_exit 0 set run=2
	expect_exit 0 stop
	workload 32 --run
	grep -q 'ksm_merge_any: yes' /proc/$pid/ksm_stat || fail "ksmctl run did not make the child mergeable: $(cat /proc/$pid/ksm_stat)"
	if command -v setpriv >/dev/null; then
		mkdir -p "$tmp/bin" && cp "$ksmctl" "$tmp/bin/ksmctl" && chmod 755 "$tmp" "$tmp/bin"
		setpriv --reuid=65534 --regid=65534 --clear-groups "$tmp/bin/ksmctl" doctor --json >"$tmp/out"
		cat "$tmp/out"
		python3 - "$tmp/out" <<'PY' || fail "doctor as another user warns that nothing is mergeable"
import json, sys
found = {f["id"]: f["severity"] for f in json.load(open(sys.argv[1]))["findings"]}
assert found.get("nothing-mergeable") == "info", found
PY
	fi
	fast
	if command -v setpriv >/dev/null; then
		setpriv --reuid=65534 --regid=65534 --clear-groups "$tmp/bin/ksmctl" wait --scans 1 --timeout 1 \
			>/dev/null 2>"$tmp/err"
		cat "$tmp/err"
		grep -q "no process has mergeable memory" "$tmp/err" &&
			fail "wait as another user says no process has mergeable memory"
	fi
	converge
	merging=$(awk '/ksm_merging_pages/ {print $2}' /proc/$pid/ksm_stat)
	echo "child $pid: ksm_merging_pages $merging"
	[ "$merging" -gt 1000 ] || fail "the child merged only $merging pages"
	expect_exit 0 top --json
	json_ok
	python3 - "$tmp/out" "$pid" <<'PY' || fail "top --json does not list the child with its merged pages"
import json, sys
rows = json.load(open(sys.argv[1]))["rows"]
row = [r for r in rows if r["pid"] == int(sys.argv[2])]
assert row and row[0]["merging_pages"] > 1000 and row[0]["profit_bytes"] > 0, rows
PY
	cg=$(sed -n 's/^0:://p' /proc/$pid/cgroup)
	expect_exit 0 top --json --by cgroup
	json_ok
	grep -qF "\"cgroup\": \"$cg\"" "$tmp/out" || fail "top --by cgroup lacks the child's cgroup $cg"
	expect_exit 0 status --prometheus
	python3 "$src/promcheck.py" "$tmp/out" || fail "status --prometheus is not valid"
	# Labelled by unit and command (no pid: a restart continues the series).
	grep -Eq "^samepage_ksm_process_merging_pages\{unit=\"[^\"]*\",comm=\"cli_dupfill\"\} [1-9]" "$tmp/out" ||
		fail "no per-process series for the child"
	expect_exit 0 top
	grep -q "^ *$pid cli_dupfill" "$tmp/out" || fail "top does not list the child"
}

t_unmerge_knobs() {
	fast
	workload 16 --madvise
	converge
	mps=$(knob max_page_sharing)
	new=$((mps + 11))
	expect_exit 5 set max_page_sharing=$new
	[ "$(knob max_page_sharing)" = "$mps" ] || fail "max_page_sharing changed without --unmerge"
	[ "$(knob pages_sharing)" -gt 1000 ] || fail "a refused set unmerged pages"
	expect_exit 0 set --unmerge --json max_page_sharing=$new
	json_ok
	grep -q '"unmerged": true' "$tmp/out" || fail "set --unmerge did not report the unmerge"
	[ "$(knob max_page_sharing)" = "$new" ] || fail "max_page_sharing is $(knob max_page_sharing), not $new"
	[ "$(knob run)" = 1 ] || fail "run was not restored to 1 after --unmerge (it is $(knob run))"
	if [ -f $ksm/merge_across_nodes ]; then
		converge
		m=$(knob merge_across_nodes)
		expect_exit 0 set --unmerge merge_across_nodes=$((1 - m))
		[ "$(knob merge_across_nodes)" = $((1 - m)) ] || fail "merge_across_nodes not changed"
	fi
	converge # merging resumes after the change
}

t_wait_scans() {
	fast
	workload 8 --madvise
	expect_exit 0 wait --scans 2 --json --timeout 240
	json_ok
	# wait's own report, checked against the kernel: a run=2 by someone else
	# resets full_scans, and wait then counts from the reset.
	python3 - "$tmp/out" "$(knob full_scans)" <<'PY' || fail "wait returned before 2 full scans"
import json, sys
d = json.load(open(sys.argv[1]))
assert d["result"] == "scanned" and d["full_scans"] - d["full_scans_start"] >= 2, d
assert int(sys.argv[2]) >= d["full_scans"], (d, sys.argv[2])
PY
	# A full scan of 2048 pages at one page a minute cannot end in a second.
	expect_exit 0 set pages_to_scan=1 sleep_millisecs=60000
	expect_exit 4 wait --scans 5 --timeout 1
	expect_exit 0 stop
	expect_exit 1 wait --scans 1 --timeout 10
	expect_exit 2 wait --scans 0
}

t_apply_file() {
	cat >"$tmp/ksm.conf" <<CONF
# test config
run = 1
sleep_millisecs = 42   # slow
pages_to_scan = 2345
CONF
	[ -f $ksm/advisor_mode ] && echo "advisor_mode = none" >>"$tmp/ksm.conf"
	before=$(knob pages_to_scan)
	expect_exit 0 apply --check "$tmp/ksm.conf"
	expect_exit 0 apply --diff "$tmp/ksm.conf"
	[ "$(knob pages_to_scan)" = "$before" ] || fail "apply --diff changed pages_to_scan"
	grep -q "pages_to_scan: $before -> 2345" "$tmp/out" || fail "apply --diff does not show pages_to_scan"
	expect_exit 0 apply "$tmp/ksm.conf"
	[ "$(knob pages_to_scan)" = 2345 ] || fail "pages_to_scan is $(knob pages_to_scan) after apply"
	[ "$(knob sleep_millisecs)" = 42 ] || fail "sleep_millisecs is $(knob sleep_millisecs) after apply"
	[ "$(knob run)" = 1 ] || fail "run is $(knob run) after apply"
	printf 'sleep_millisecs = 7\npages_to_scan 5\n' >"$tmp/bad.conf"
	expect_exit 2 apply "$tmp/bad.conf"
	grep -q "bad.conf:2" "$tmp/err" || fail "the syntax error does not name line 2"
	[ "$(knob sleep_millisecs)" = 42 ] || fail "a bad file changed sleep_millisecs"
}

# Changes knobs the hard way, then fails: for restore_on_failure only.
t_fail_midway() {
	fast
	workload 8 --madvise
	converge
	expect_exit 0 set --unmerge max_page_sharing=77 stable_node_chains_prune_millisecs=999
	[ -f $ksm/advisor_mode ] && expect_exit 0 set advisor_mode=scan-time
	fail "failing on purpose, with knobs changed and a workload running"
}

# The trap restores every knob, and stops the workload, when a test fails.
t_restore_on_failure() {
	local before after
	before=$(for k in "${order[@]}"; do echo "$k=$(cat $ksm/$k)"; done)
	bash "$0" fail_midway "$ksmctl" "$dupfill" "$src" >"$tmp/inner" 2>&1
	rc=$?
	cat "$tmp/inner"
	[ $rc -eq 1 ] || fail "the failing inner test exited $rc, expected 1"
	grep -q "failing on purpose" "$tmp/inner" || fail "the inner test did not get to its failure"
	after=$(for k in "${order[@]}"; do echo "$k=$(cat $ksm/$k)"; done)
	[ "$before" = "$after" ] || fail "knobs not restored: $(diff <(echo "$before") <(echo "$after"))"
	! pgrep -x "$(basename "$dupfill" | cut -c1-15)" >/dev/null || fail "the workload survived the failed test"
}

# Tests of other verbs, in their own files, sharing the helpers above.
. "$src/kernel-tune.sh"

"t_$test"
echo "ok: $test"
