# SPDX-License-Identifier: MIT
# cli.kernel.tune: `ksmctl tune` on this machine's own KSM.  Sourced by
# kernel.sh, whose lock, save/restore trap and helpers it uses (the trap
# puts back every knob whatever happens here).
#  - ksmtuned's policy: with KSM_THRES_COEF=100 its threshold is all of
#    MemTotal, so it boosts: pages_to_scan is KSM_NPAGES_BOOST and
#    sleep_millisecs what ksmtuned.sh computes from MemTotal;
#  - the pressure policy as a daemon (--always: memory here may be
#    plentiful), a workload merges under it, SIGTERM ends it, and --restore
#    puts back the knobs it found.
t_tune() {
	local total sleep k tpid st
	workload 64 --madvise
	printf 'KSM_THRES_COEF=100\nKSM_NPAGES_BOOST=700\n' >"$tmp/k.conf"
	expect_exit 0 tune --once --policy ksmtuned --config "$tmp/k.conf"
	total=$(awk '/^MemTotal:/ {print $2}' /proc/meminfo)
	sleep=$((10 * 16 * 1024 * 1024 / total))
	[ $sleep -le 10 ] && sleep=10
	[ "$(knob run)" = 1 ] && [ "$(knob pages_to_scan)" = 700 ] && [ "$(knob sleep_millisecs)" = $sleep ] ||
		fail "ksmtuned's boost: run $(knob run), pages_to_scan $(knob pages_to_scan), sleep $(knob sleep_millisecs) (expected 1, 700, $sleep)"
	declare -A found
	for k in run pages_to_scan sleep_millisecs advisor_mode advisor_max_cpu advisor_target_scan_time; do
		[ -f $ksm/$k ] && found[$k]=$(knob $k)
	done
	"$ksmctl" tune --always --interval 1 --restore >"$tmp/tune.out" 2>"$tmp/tune.err" &
	tpid=$!
	children+=("$tpid")
	converge
	kill -TERM "$tpid"
	wait "$tpid"
	st=$?
	cat "$tmp/tune.out" "$tmp/tune.err"
	[ $st = 0 ] || fail "tune exited $st on SIGTERM"
	grep -q "tune pressure converging" "$tmp/tune.out" || fail "tune never logged a converging decision"
	for k in "${!found[@]}"; do
		[ "$(knob $k)" = "${found[$k]}" ] || fail "--restore: $k is $(knob $k), was ${found[$k]}"
	done
}
