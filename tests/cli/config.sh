#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.config: one config parser (common/ksmconf.c) for `ksmctl apply` and
# `samepaged --config`.  Every refused file is refused by both, exit 2,
# with the same cause, the same input (FILE:LINE: the line) and the same
# fix, the line shown with its control bytes, NUL bytes and byte-order
# marks escaped (\xHH, as names are); `pages_to_scan = 300 junk` among
# them (samepaged used to run with 300), and a line with a NUL byte (both
# read it up to the NUL: "pages_to_scan = 1000\0run=1" was one valid
# setting).  So are a directory and a file whose read fails (both used to
# read as an empty file: "0 settings valid", exit 0).  A good file is
# accepted by both, a byte-order mark first, and samepaged runs with it.
# pages_to_scan with advisor_mode=scan-time is refused by both in either
# order, whatever the kernel (samepaged ran with scan-time second, and
# reset pages_to_scan; apply applied it on a kernel without the advisor).
# "-" is standard input for both (it was a file named "-"): a refused line
# is named "(standard input):LINE", a good file on a pipe is accepted.
#
# usage: config.sh KSMCTL SAMEPAGED SRCDIR
set -u
ksmctl=$1 samepaged=$2 src=$3
tmp=$(mktemp -d) shm=$(mktemp -d /dev/shm/cli-config-XXXXXX) daemon_pid=
trap '[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null; wait; rm -rf "$tmp" "$shm"' EXIT
bad=0
tree=$src/trees/linux-4.19 # no advisor: pages_to_scan may be set

# [as=CMD] [in=INPUT] both_refuse WHAT FILE SOCKET STATE: ksmctl apply
# --check FILE and samepaged --config FILE (run by CMD if given, INPUT on
# their standard input) both exit 2 with the same message, left in kmsg;
# else says so and fails.
both_refuse()
{
	local what=$1 file=$2 sock=$3 state=$4 k d
	${as:-} "$ksmctl" --sysfs-root "$tree/sys" --proc-root "$tree/proc" apply --check "$file" \
		<"${in:-/dev/null}" >/dev/null 2>"$tmp/k.err"
	k=$?
	${as:-} timeout 20 "$samepaged" --foreground --config "$file" --socket "$sock" \
		--state-dir "$state" <"${in:-/dev/null}" >/dev/null 2>"$tmp/d.err"
	d=$?
	kmsg=$(sed 's/^ksmctl: //' "$tmp/k.err") dmsg=$(sed 's/^samepaged: //' "$tmp/d.err")
	if [ $k != 2 ] || [ $d != 2 ]; then
		echo "FAIL: $what: ksmctl apply exits $k, samepaged --config $d (want 2 and 2)"
		echo "$kmsg"; echo "$dmsg"; bad=1; return 1
	elif [ "$kmsg" != "$dmsg" ]; then
		echo "FAIL: $what: the messages differ:"; diff <(echo "$kmsg") <(echo "$dmsg"); bad=1; return 1
	fi
}

n=0
while IFS='|' read -r text want; do
	n=$((n + 1))
	printf '%b' "$text" >"$tmp/c$n.conf"
	both_refuse "'$text'" "$tmp/c$n.conf" "$tmp/s$n.sock" "$shm/s$n" || continue
	if ! grep -q "^  input: $tmp/c$n.conf:[0-9]*: .*$want" <<<"$kmsg" || ! grep -q "^  fix: ." <<<"$kmsg"; then
		echo "FAIL: '$text': no 'input: FILE:LINE: ...$want' and fix in:"; echo "$kmsg"; bad=1
	elif tr -d '\n' <<<"$kmsg" | LC_ALL=C grep -q '[[:cntrl:]]'; then
		echo "FAIL: '$text': a control character printed raw:"; cat -A <<<"$kmsg"; bad=1
	fi
done <<'CASES'
run = 1\npages_to_scan = 300 junk\n|pages_to_scan = 300 junk
run 1\n|run 1
max_page_sharing = 1\n|max_page_sharing = 1
frobnicate = 1\n|frobnicate = 1
pages_shared = 0\n|pages_shared = 0
run = 1\nsleep_millisecs = 10\nrun = 0\n|run = 0
= 1\n|= 1
run =\n|run =
use_zero_pages = maybe\n|use_zero_pages = maybe
advisor_mode = fast\n|advisor_mode = fast
pages_to_scan = 1000\0run=1\n|pages_to_scan = 1000\\x00run=1
run = 1\n# a comment\0\n|# a comment\\x00
run = 1\n\xef\xbb\xbfpages_to_scan = 100\n|\\xef\\xbb\\xbfpages_to_scan = 100
pages_to_scan = 1\x1b[31mX\n|pages_to_scan = 1\\x1b\[31mX
run\a = 1\n|run\\x07 = 1
CASES

# pages_to_scan with advisor_mode=scan-time, in either order: the parser
# refuses the file, so ksmctl apply and samepaged, whose knobs have the
# advisor, both do, with the same message (samepaged ran with the file
# whose scan-time came second: the advisor reset pages_to_scan), and apply
# does on a kernel without the advisor too (4.19: it skipped advisor_mode
# as absent and applied the rest of a contradictory file).
for kernel in linux-6.18 linux-4.19; do
	for text in 'advisor_mode = scan-time\npages_to_scan = 200\n' \
		'pages_to_scan = 200\nadvisor_mode = scan-time\n'; do
		n=$((n + 1))
		printf '%b' "$text" >"$tmp/c$n.conf"
		tree=$src/trees/$kernel both_refuse "'$text' ($kernel)" "$tmp/c$n.conf" \
			"$tmp/s$n.sock" "$shm/s$n" &&
			! grep -qF "  input: pages_to_scan=200 ($tmp/c$n.conf:" <<<"$kmsg" &&
			{ echo "FAIL: '$text': the input is not the pages_to_scan line:"; echo "$kmsg"; bad=1; }
	done
done

# Not a config file, or one that cannot be read (/proc/self/mem: EIO at
# the first read): refused by both, exit 2, the same message naming the
# path, never "0 settings" applied.  ksmctl apply on a copy of the tree.
cp -r "$tree" "$tmp/tree"
for path in "$tmp" /proc/self/mem; do
	for mode in --check --diff ""; do
		# shellcheck disable=SC2086
		"$ksmctl" --sysfs-root "$tmp/tree/sys" --proc-root "$tmp/tree/proc" apply $mode "$path" \
			>"$tmp/k.out" 2>"$tmp/k.err"
		k=$?
		if [ $k != 2 ] || [ -s "$tmp/k.out" ] || ! grep -qF "  input: $path" "$tmp/k.err" ||
			! grep -q "^  fix: ." "$tmp/k.err"; then
			echo "FAIL: ksmctl apply $mode $path exits $k (want 2, no output, input: $path and a fix)"
			cat "$tmp/k.out" "$tmp/k.err"; bad=1
		fi
	done
	timeout 20 "$samepaged" --foreground --config "$path" --socket "$tmp/np.sock" \
		--state-dir "$shm/np" >/dev/null 2>"$tmp/d.err"
	d=$?
	kmsg=$(sed 's/^ksmctl: //' "$tmp/k.err") dmsg=$(sed 's/^samepaged: //' "$tmp/d.err")
	if [ $d != 2 ]; then
		echo "FAIL: samepaged --config $path exits $d, not 2"; cat "$tmp/d.err"; bad=1
	elif [ "$kmsg" != "$dmsg" ]; then
		echo "FAIL: $path: the messages differ:"; diff <(echo "$kmsg") <(echo "$dmsg"); bad=1
	fi
done

# An empty name (an unset variable, as in --config "$CONF"): refused by
# both, exit 2, the same message saying so (not "create it").
if both_refuse "an empty file name" "" "$tmp/empty.sock" "$shm/empty" &&
	{ ! grep -qx "the config file's name is empty" <<<"$kmsg" || ! grep -qx '  input: ""' <<<"$kmsg"; }; then
	echo "FAIL: an empty file name: the message does not say so:"; echo "$kmsg"; bad=1
fi

# "-" is standard input: a refused line is named "(standard input):LINE"
# by both.
printf 'run = 1\nrun = 0\n' >"$tmp/twice.conf"
if in=$tmp/twice.conf both_refuse "a refused file on stdin" - "$tmp/stdin.sock" "$shm/stdin" &&
	! grep -qxF '  input: (standard input):2: run = 0' <<<"$kmsg"; then
	echo "FAIL: a refused file on stdin: the input is not '(standard input):2: run = 0':"
	echo "$kmsg"; bad=1
fi

# A file this user may not read: both refuse it, exit 2, the same message,
# whose fix is the permission (not "create it": it exists).  As nobody,
# when root can switch to it.
if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
	as_nobody() { setpriv --reuid=65534 --regid=65534 --clear-groups "$@"; }
	printf 'run = 1\n' >"$tmp/secret.conf"
	chmod 600 "$tmp/secret.conf"
	chmod 755 "$tmp" "$shm"
	mkdir -m 777 "$shm/nobody"
	if as=as_nobody both_refuse "unreadable file" "$tmp/secret.conf" "$shm/nobody/s.sock" \
		"$shm/nobody/st" &&
		{ ! grep -qF "  input: $tmp/secret.conf" <<<"$kmsg" || ! grep -q "^  fix: .*readable" <<<"$kmsg"; }; then
		echo "FAIL: unreadable file: no input naming it, or a fix that is not the permission:"
		echo "$kmsg"; bad=1
	fi
	# --check validates the file: no root needed (a lint step, a review).
	printf 'pages_to_scan = 300\n' >"$tmp/lint.conf"
	chmod 644 "$tmp/lint.conf"
	out=$(as_nobody "$ksmctl" --sysfs-root "$tree/sys" --proc-root "$tree/proc" apply --check \
		"$tmp/lint.conf" 2>&1) ||
		{ echo "FAIL: apply --check as nobody exits $?: $out"; bad=1; }
fi

# A good file, comments and blank lines included, and a UTF-8 byte-order
# mark first (as Windows editors write; it was read as part of the first
# name): both accept it.
printf '\xef\xbb\xbfpages_to_scan = 300   # per batch\n# the seed\n\nsleep_millisecs=50\nrun = 1\n' \
	>"$tmp/good.conf"
"$ksmctl" --sysfs-root "$tree/sys" --proc-root "$tree/proc" apply --check "$tmp/good.conf" >/dev/null ||
	{ echo "FAIL: ksmctl apply --check refuses the good file"; bad=1; }
out=$(cat "$tmp/good.conf" | "$ksmctl" --sysfs-root "$tree/sys" --proc-root "$tree/proc" apply --check - 2>&1)
[ "$out" = "(standard input): 3 settings valid for this kernel" ] ||
	{ echo "FAIL: ksmctl apply --check - on a pipe of the good file: $out"; bad=1; }
"$samepaged" --foreground --config "$tmp/good.conf" --socket "$tmp/good.sock" --state-dir "$shm/good" \
	2>"$tmp/d.err" &
daemon_pid=$!
for _ in $(seq 100); do [ -S "$tmp/good.sock" ] && break; sleep 0.1; done
got=$("$ksmctl" --socket "$tmp/good.sock" status --json 2>&1 |
	python3 -c 'import json,sys; f=json.load(sys.stdin)["files"]; print(f["pages_to_scan"], f["sleep_millisecs"], f["run"])' 2>&1)
[ "$got" = "300 50 1" ] || { echo "FAIL: samepaged with the good file: pages_to_scan, sleep_millisecs, run = '$got'"; cat "$tmp/d.err"; bad=1; }
[ $bad = 0 ] && echo "ok: $n refused files, same message from both; the good file runs"
exit $bad
