#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.progress: `unmerge` and `set --unmerge` show their progress on a
# terminal while pages are unmerged.  A copy of a recorded tree stands for
# the kernel: once ksmctl writes run=2, this script lowers pages_shared and
# pages_sharing to 0 over about three seconds, as the kernel's counters fall
# during a long unmerge; ksmctl runs under script(1) so stderr is a terminal.
#
# usage: progress.sh KSMCTL SRCDIR
set -u
ksmctl=$1 src=$2
tmp=$(mktemp -d)
trap 'kill $(jobs -p) 2>/dev/null; rm -rf "$tmp"' EXIT
bad=0
command -v script >/dev/null || { echo "SKIP: no script(1)"; exit 77; }

for cmd in "unmerge" "set --unmerge max_page_sharing=512"; do
	rm -rf "$tmp/tree"
	cp -a "$src/trees/linux-6.18" "$tmp/tree"
	ksm=$tmp/tree/sys/kernel/mm/ksm
	(
		for _ in $(seq 600); do [ "$(cat $ksm/run)" = 2 ] && break; sleep 0.05; done
		for i in 9 8 7 6 5 4 3 2 1 0; do
			sleep 0.3
			# Replaced, not rewritten: ksmctl never reads a file half written.
			echo $((i * 5000)) >$tmp/v && mv $tmp/v $ksm/pages_shared
			echo $((i * 30000)) >$tmp/v && mv $tmp/v $ksm/pages_sharing
			echo $((i * 200)) >$tmp/v && mv $tmp/v $ksm/ksm_zero_pages
		done
	) &
	script -qefc "'$ksmctl' --sysfs-root '$tmp/tree/sys' --proc-root '$tmp/tree/proc' $cmd" \
		/dev/null >"$tmp/out" 2>&1
	rc=$?
	wait
	tr '\r' '\n' <"$tmp/out" >"$tmp/lines"
	left=$(sed -n 's/.*unmerging: *[0-9]*%, \([0-9]*\) of [0-9]* merged pages left.*/\1/p' "$tmp/lines")
	if [ $rc != 0 ]; then
		echo "FAIL: ksmctl $cmd exited $rc:"; cat "$tmp/lines"; bad=1
	elif [ -z "$left" ] || ! grep -q "unmerging: done" "$tmp/lines"; then
		echo "FAIL: ksmctl $cmd showed no progress:"; cat "$tmp/lines"; bad=1
	elif grep -q '^run: 1 -> 1' "$tmp/lines"; then
		# run went 1 -> 2 -> 1: not a change "from 1 to 1"
		echo "FAIL: ksmctl $cmd reports run: 1 -> 1:"; cat "$tmp/lines"; bad=1
	elif [ "$(sort -n -r <<<"$left")" != "$left" ] || [ "$(head -1 <<<"$left")" = "$(tail -1 <<<"$left")" ]; then
		echo "FAIL: ksmctl $cmd: the pages left did not fall: $(echo $left)"; bad=1
	else
		echo "ok: ksmctl $cmd: $(wc -l <<<"$left") progress lines, pages left $(echo $left)"
	fi
done

# ksmctl killed during an unmerge (SIGTERM from another terminal): its
# progress child ends too, instead of writing to the terminal, which stays
# open, for ever.  The tree's counters never fall, so the unmerge waits.
rm -rf "$tmp/tree"
cp -a "$src/trees/linux-6.18" "$tmp/tree"
script -qefc "'$ksmctl' --sysfs-root '$tmp/tree/sys' --proc-root '$tmp/tree/proc' unmerge --timeout 60 &
	echo \$! >'$tmp/pid'; wait; sleep 4" /dev/null >"$tmp/out" 2>&1 &
for _ in $(seq 100); do [ -s "$tmp/pid" ] && break; sleep 0.05; done
sleep 1.5
kill -TERM "$(cat "$tmp/pid")"
sleep 1
left=$(pgrep -f -- "--sysfs-root $tmp/tree/sys")
if [ -n "$left" ]; then
	echo "FAIL: ksmctl unmerge killed, its progress goes on: $(ps -o pid=,ppid=,args= -p "$(echo $left | tr ' ' ,)")"
	kill $left
	bad=1
else
	echo "ok: ksmctl unmerge killed: its progress ended with it"
fi
wait
exit $bad
