#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# lib.shmem_thp: a local engine's pool keeps no huge page, with shmem's
# THP set to advise and to always (test_shmem_thp.c says what failed).
# khugepaged is made to scan every 10 ms, 65536 pages a pass.  Every knob
# it writes is put back on exit, failed or not.  Skipped (77) without
# shmem THP in the kernel or without the right to set it (root).
#
# usage: shmem_thp.sh TEST_SHMEM_THP
set -u
prog=$1
thp=/sys/kernel/mm/transparent_hugepage
[ -w "$thp/shmem_enabled" ] || { echo "skip: $thp/shmem_enabled is not writable here (root, THP)"; exit 77; }
mode=$(grep -o '\[[a-z_]*\]' "$thp/shmem_enabled" | tr -d '[]')
sleep_ms=$(cat "$thp/khugepaged/scan_sleep_millisecs")
pages=$(cat "$thp/khugepaged/pages_to_scan")
restore()
{
	echo "$mode" >"$thp/shmem_enabled"
	echo "$sleep_ms" >"$thp/khugepaged/scan_sleep_millisecs"
	echo "$pages" >"$thp/khugepaged/pages_to_scan"
}
trap restore EXIT
echo 10 >"$thp/khugepaged/scan_sleep_millisecs"
echo 65536 >"$thp/khugepaged/pages_to_scan"
bad=0
for m in advise always; do
	echo "$m" >"$thp/shmem_enabled"
	echo "== shmem_enabled $m"
	"$prog" || bad=1
done
exit $bad
