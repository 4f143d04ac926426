#!/bin/sh
# SPDX-License-Identifier: MIT
# demo_no_samepaged.sh - make demo with a samepaged that does not start:
# it says so (exit 1) and leaves no samepage-demo-* state directory in
# /dev/shm (it left an empty one each time, after waiting 10 s).
# Usage: demo_no_samepaged.sh PATH-TO-DEMO
count() { ls -d /dev/shm/samepage-demo-* 2>/dev/null | wc -l; }
before=$(count)
"$1" --guests 2 --mib 8 --no-kernel --samepaged /nonexistent/samepaged >/dev/null 2>"${TMPDIR:-/tmp}/demo-err.$$"
rc=$?
grep -q "could not start /nonexistent/samepaged" "${TMPDIR:-/tmp}/demo-err.$$" || { echo "FAIL: not said"; rc=0; }
rm -f "${TMPDIR:-/tmp}/demo-err.$$"
[ "$rc" = 1 ] || { echo "FAIL: exit $rc, not 1"; exit 1; }
[ "$(count)" = "$before" ] || { echo "FAIL: a samepage-demo-* directory was left in /dev/shm"; exit 1; }
echo "ok: demo.no_samepaged"
