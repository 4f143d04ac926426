#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.progress: `unmerge` and `set --unmerge` show their progress on a
# terminal while pages are unmerged, and put run back when interrupted.  A copy of a recorded tree stands for
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

# ksmctl interrupted during an unmerge (SIGTERM from a service manager,
# SIGINT from a terminal's ^C, SIGHUP): run is put back as it was and the
# other knobs are left alone, it says so, and it ends by the signal.  It
# left run=2 (the kernel's interrupted write leaves 0), every process
# unmerging, and said nothing.  The tree's counters never fall.
for sig in TERM INT HUP; do
	rm -rf "$tmp/tree"
	cp -a "$src/trees/linux-6.18" "$tmp/tree"
	ksm=$tmp/tree/sys/kernel/mm/ksm
	# A background job of a script ignores SIGINT; env gives it back.
	env --default-signal=INT "$ksmctl" --sysfs-root "$tmp/tree/sys" --proc-root "$tmp/tree/proc" \
		set --unmerge max_page_sharing=300 --timeout 60 2>"$tmp/err" &
	pid=$!
	for _ in $(seq 100); do [ "$(cat $ksm/run)" = 2 ] && break; sleep 0.05; done
	kill -$sig $pid
	wait $pid
	rc=$?
	want=$((128 + $(kill -l $sig)))
	if [ $rc != $want ] || [ "$(cat $ksm/run)" != 1 ] || [ "$(cat $ksm/max_page_sharing)" != 256 ] ||
		! grep -q "interrupted by SIG$sig while unmerging" "$tmp/err"; then
		echo "FAIL: set --unmerge interrupted by SIG$sig: exit $rc (want $want), run $(cat $ksm/run)," \
			"max_page_sharing $(cat $ksm/max_page_sharing):"
		cat "$tmp/err"
		bad=1
	else
		echo "ok: set --unmerge interrupted by SIG$sig: exit $rc, run back to 1, max_page_sharing 256"
	fi
done
exit $bad
