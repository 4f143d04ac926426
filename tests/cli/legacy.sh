#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.legacy: the forms of the ksmctl that Debian's ksmtuned package ships
# (/usr/sbin/ksmctl start|stop) and of the original one (start NPAGES SLEEP,
# info), with their old meaning, on copies of recorded trees:
#  - start on 2.6.32 writes max_kernel_pages ($KSM_MAX_KERNEL_PAGES, else
#    half the RAM's pages, MemTotal of --proc-root's meminfo) and run=1; a bad KSM_MAX_KERNEL_PAGES changes
#    nothing;
#  - start NPAGES SLEEP writes pages_to_scan, sleep_millisecs and run=1,
#    start NPAGES pages_to_scan and run=1; stop writes run=0;
#  - info prints "flags RUN, pages_to_scan N, sleep_time MS";
#  - bad forms (three numbers, a word) and a refused plan (the scan-time
#    advisor owns pages_to_scan) change nothing; the refusal's fix is the
#    `ksmctl set` command that does it, and does.
#
# usage: legacy.sh KSMCTL SRCDIR
set -u
ksmctl=$1 src=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bad=0
fail() { echo "FAIL: $*"; bad=1; }
tree() { rm -rf "$tmp/t"; cp -a "$src/trees/$1" "$tmp/t"; ksm=$tmp/t/sys/kernel/mm/ksm; }
k() { "$ksmctl" --sysfs-root "$tmp/t/sys" --proc-root "$tmp/t/proc" "$@"; }
knobs() { (cd "$ksm" && grep -r . | sort); }

tree linux-2.6.32
echo 0 >"$ksm/run"
k start >/dev/null || fail "start on 2.6.32 exited $?"
# The tree's RAM (its proc/meminfo), not this machine's.
want=$(($(awk '/^MemTotal:/ { print $2 }' "$tmp/t/proc/meminfo") * 1024 / $(getconf PAGESIZE) / 2))
[ "$(cat "$ksm/max_kernel_pages")" = "$want" ] || fail "max_kernel_pages is $(cat "$ksm/max_kernel_pages"), want half the tree's RAM's pages ($want)"
[ "$(cat "$ksm/run")" = 1 ] || fail "start did not write run=1"
KSM_MAX_KERNEL_PAGES=4096 k start >/dev/null || fail "KSM_MAX_KERNEL_PAGES=4096 start exited $?"
[ "$(cat "$ksm/max_kernel_pages")" = 4096 ] || fail "KSM_MAX_KERNEL_PAGES=4096 was not written"
before=$(knobs)
KSM_MAX_KERNEL_PAGES=lots k start 2>"$tmp/err" >/dev/null
rc=$?
[ $rc = 2 ] && grep -q KSM_MAX_KERNEL_PAGES "$tmp/err" || fail "a bad KSM_MAX_KERNEL_PAGES: exit $rc, $(cat "$tmp/err")"
[ "$(knobs)" = "$before" ] || fail "a refused start changed knobs"

tree linux-4.19
k start 5000 100 >/dev/null || fail "start 5000 100 exited $?"
[ "$(cat "$ksm/pages_to_scan") $(cat "$ksm/sleep_millisecs") $(cat "$ksm/run")" = "5000 100 1" ] ||
	fail "start 5000 100: pages_to_scan, sleep_millisecs, run = $(cat "$ksm/pages_to_scan") $(cat "$ksm/sleep_millisecs") $(cat "$ksm/run")"
[ "$(k info)" = "flags 1, pages_to_scan 5000, sleep_time 100" ] || fail "info says '$(k info)'"
k stop >/dev/null && [ "$(cat "$ksm/run")" = 0 ] || fail "stop did not write run=0"
[ "$(k info)" = "flags 0, pages_to_scan 5000, sleep_time 100" ] || fail "info after stop says '$(k info)'"
k start 777 >/dev/null && [ "$(cat "$ksm/pages_to_scan") $(cat "$ksm/sleep_millisecs") $(cat "$ksm/run")" = "777 100 1" ] ||
	fail "start 777 did not write pages_to_scan=777 and run=1 only"
before=$(knobs)
for args in "1 2 3" "fast" "5000 soon" "-5"; do
	# shellcheck disable=SC2086
	k start $args >/dev/null 2>&1
	rc=$?
	[ $rc = 2 ] || fail "start $args exited $rc, not 2"
	[ "$(knobs)" = "$before" ] || fail "start $args changed knobs"
done
k info extra >/dev/null 2>&1
[ $? = 2 ] || fail "info extra was not refused"

tree linux-6.18 # the scan-time advisor owns pages_to_scan
before=$(knobs)
k start 5000 100 >/dev/null 2>"$tmp/err"
rc=$?
[ $rc = 5 ] && grep -q advisor "$tmp/err" || fail "start 5000 100 under the advisor: exit $rc, $(cat "$tmp/err")"
[ "$(knobs)" = "$before" ] || fail "a refused start 5000 100 changed knobs"
# Its fix is a command that does it (start cannot take advisor_mode).
want="ksmctl set advisor_mode=none pages_to_scan=5000 sleep_millisecs=100 run=1"
grep -q "^  fix: $want, or leave pages_to_scan out$" "$tmp/err" ||
	fail "start 5000 100 under the advisor does not give the command: $(cat "$tmp/err")"
echo 0 >"$ksm/run"
k ${want#ksmctl } >/dev/null || fail "the fix ($want) exited $?"
[ "$(cat "$ksm/pages_to_scan"),$(cat "$ksm/sleep_millisecs"),$(cat "$ksm/run")" = 5000,100,1 ] ||
	fail "the fix ($want) did not set pages_to_scan, sleep_millisecs and run"
[ $bad = 0 ] && echo "ok: start, start NPAGES [SLEEP], stop, info with their old meaning"
exit $bad
