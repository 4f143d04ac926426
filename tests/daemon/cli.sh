#!/bin/sh
# SPDX-License-Identifier: MIT
# cli.sh SAMEPAGED VERSION: samepaged's command line without a daemon
# running: --version prints the project's version, --help every option
# of samepaged(8), a bad option or limit exits 2 naming it; a socket path
# that holds a file, and a state directory that others may enter, belongs
# to another user or is a link, are refused (exit 1) and left alone; a
# --pid-file that cannot be written is refused before the fork (exit 1),
# and a good one names the daemon when the start returns; its socket is
# mode 0600 (0666 with --allow-user).  A start refused
# for its socket or pid file leaves no state directory it made (one that
# was there stays).
set -u
bin=$1 version=$2 man=$3
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fails=0 passed=0
fail() { echo "FAIL: $*"; fails=$((fails + 1)); }
ok() { passed=$((passed + 1)); }

"$bin" --version >"$tmp/out" 2>"$tmp/err" && [ "$(cat "$tmp/out")" = "samepaged $version" ] &&
	[ ! -s "$tmp/err" ] && ok || fail "--version printed '$(cat "$tmp/out" "$tmp/err")'"

"$bin" --help >"$tmp/help" 2>&1 && ok || fail "--help exited non-zero"
# Every option of the man page's SYNOPSIS is in --help.
for opt in $(sed -n '/^\.SH SYNOPSIS/,/^\.SH/p' "$man" | grep -o '\\-\\-[a-z\\-]*' | sed 's/\\//g'); do
	grep -q -- "$opt" "$tmp/help" && ok || fail "--help lacks $opt"
done

"$bin" --bogus >"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" = 2 ] && grep -q -- "--bogus" "$tmp/err" && ok ||
	fail "--bogus exited $rc: $(cat "$tmp/err")"

# A bad value of a limit: exit 2, the option and its range named, before
# anything is made.
for bad in "--max-connections 0" "--max-domains 99999" "--idle-timeout 10s" \
	"--max-domains-per-process -1" "--max-connections-per-process"; do
	# shellcheck disable=SC2086
	"$bin" --foreground --socket "$tmp/s" --state-dir "$tmp/state" $bad >"$tmp/out" 2>"$tmp/err"
	rc=$?
	opt=${bad%% *}
	[ "$rc" = 2 ] && grep -q -- "$opt" "$tmp/err" && [ ! -e "$tmp/state" ] && [ ! -e "$tmp/s" ] &&
		ok || fail "$bad exited $rc: $(cat "$tmp/err")"
done

# A bad --allow-user (no such user; empty, malformed or foreign domain
# patterns): exit 2, the argument and a fix named, nothing made.
for bad in "no-such-user-xyz" "65534:" "65534:vm/a" "65534:vmA,,vmB" "65534:,vmA" ":vmA"; do
	"$bin" --foreground --socket "$tmp/s" --state-dir "$tmp/state" --allow-user "$bad" \
		>"$tmp/out" 2>"$tmp/err"
	rc=$?
	[ "$rc" = 2 ] && grep -qF -- "--allow-user $bad:" "$tmp/err" && grep -q "fix: " "$tmp/err" &&
		[ ! -e "$tmp/state" ] && [ ! -e "$tmp/s" ] && ok ||
		fail "--allow-user '$bad' exited $rc: $(cat "$tmp/err")"
done

# An empty path (an unset variable) or one longer than samepaged keeps:
# exit 2, nothing made (an empty one was the default, a long socket path
# was cut to another path).
long=$tmp/$(printf 'x%.0s' $(seq 120))
for bad in "--socket" "--state-dir" "--pid-file" "--socket $long"; do
	# shellcheck disable=SC2086
	timeout 5 "$bin" --foreground --socket "$tmp/s" --state-dir "$tmp/state" $bad "" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	opt=${bad%% *}
	[ "$rc" = 2 ] && grep -q -- "$opt \"" "$tmp/err" && grep -q "fix: " "$tmp/err" &&
		[ ! -e "$tmp/state" ] && [ ! -e "$tmp/s" ] && ok || fail "$bad '' exited $rc: $(cat "$tmp/err")"
done

# refused WHAT TEXT ARGS...: samepaged exits 1 at start-up (5 s at most),
# its message holding TEXT.
refused()
{
	local what=$1 text=$2 rc
	shift 2
	timeout 5 "$bin" --foreground "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	[ "$rc" = 1 ] && grep -q -- "$text" "$tmp/err" && ok ||
		fail "$what: exited $rc: $(cat "$tmp/err")"
}

# Something at the socket's path that is not a socket is never removed.
echo precious >"$tmp/file"
refused "--socket at a file" "not a socket" --socket "$tmp/file" --state-dir "$tmp/st"
[ "$(cat "$tmp/file")" = precious ] && ok || fail "--socket removed the file at its path"
[ ! -e "$tmp/st" ] && ok || fail "--socket at a file: the new state directory $tmp/st was left"
mkdir -m 700 "$tmp/was"
refused "--socket at a file, state directory there" "not a socket" --socket "$tmp/file" \
	--state-dir "$tmp/was"
[ -d "$tmp/was" ] && ok || fail "--socket at a file: removed the state directory that was there"

# A state directory others may enter, or of another user, or a link.
mkdir -m 755 "$tmp/open"
refused "state directory of mode 0755" "chmod 700" --socket "$tmp/s" --state-dir "$tmp/open"
mkdir -m 700 "$tmp/real"
ln -s "$tmp/real" "$tmp/link"
refused "state directory as a link" "symbolic link" --socket "$tmp/s" --state-dir "$tmp/link"
if [ "$(id -u)" = 0 ]; then
	mkdir -m 700 "$tmp/theirs"
	chown 65534 "$tmp/theirs"
	refused "state directory of another user" "belongs to uid 65534" --socket "$tmp/s" \
		--state-dir "$tmp/theirs"
fi

# --pid-file in the background (the fork): a pid file that cannot be
# written is refused before the fork (exit 1, the path and a fix named, no
# socket left); a good one holds the daemon's pid when the start returns.
# A daemon left running by a failure is found by its unique socket path.
stop_daemon()
{
	local pid
	for pid in $(pgrep -f -- "--socket $1" 2>/dev/null); do
		kill -TERM "$pid" 2>/dev/null
		for _ in 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20; do
			kill -0 "$pid" 2>/dev/null || break
			sleep 0.1
		done
		kill -KILL "$pid" 2>/dev/null
	done
}
timeout 5 "$bin" --socket "$tmp/pf.sock" --state-dir "$tmp/pfst" --pid-file "$tmp/no/such/dir/g.pid" \
	>"$tmp/out" 2>"$tmp/err"
rc=$?
[ "$rc" = 1 ] && grep -q "cannot write the pid file $tmp/no/such/dir/g.pid" "$tmp/err" &&
	grep -q "fix: " "$tmp/err" && [ ! -e "$tmp/pf.sock" ] && [ ! -e "$tmp/pfst" ] && ok ||
	fail "--pid-file in a missing directory exited $rc (want 1, no socket or state directory left): $(cat "$tmp/err")"
stop_daemon "$tmp/pf.sock"
# A pid file it cannot write whole (no room: a file size limit of 0) is
# not left behind, empty, nor is the socket; one that is no regular file
# is refused and left as it is (root's --pid-file /dev/null was truncated).
(
	ulimit -f 0
	trap '' XFSZ
	timeout 5 "$bin" --foreground --socket "$tmp/ph.sock" --state-dir "$tmp/phst" \
		--pid-file "$tmp/h.pid" 2>&1
) | cat >"$tmp/err"
grep -q "cannot write the pid file $tmp/h.pid" "$tmp/err" && [ ! -e "$tmp/h.pid" ] &&
	[ ! -e "$tmp/ph.sock" ] && [ ! -e "$tmp/phst" ] && ok ||
	fail "--pid-file with no room: the pid file, socket or state directory left: $(cat "$tmp/err")"
mkfifo "$tmp/fifo.pid"
refused "--pid-file at a FIFO" "is not a regular file" --socket "$tmp/pi.sock" --state-dir "$tmp/pist" \
	--pid-file "$tmp/fifo.pid"
[ -p "$tmp/fifo.pid" ] && [ ! -e "$tmp/pi.sock" ] && ok || fail "--pid-file at a FIFO: changed, or the socket left"
timeout 5 "$bin" --socket "$tmp/pg.sock" --state-dir "$tmp/pgst" --pid-file "$tmp/g.pid" \
	>"$tmp/out" 2>"$tmp/err"
rc=$?
pid=$(cat "$tmp/g.pid" 2>/dev/null)
[ "$rc" = 0 ] && [ -n "$pid" ] && [ "$(cat "/proc/$pid/comm" 2>/dev/null)" = samepaged ] && ok ||
	fail "--pid-file $tmp/g.pid: exit $rc, pid '$pid' is not samepaged: $(cat "$tmp/err")"
# The control socket is the user's alone: mode 0600 (samepaged(8)).
mode=$(stat -c %a "$tmp/pg.sock" 2>/dev/null)
[ "$mode" = 600 ] && ok || fail "the control socket's mode is $mode (want 600)"
# A second samepaged on the same socket: refused, nothing made.
refused "--socket served by another samepaged" "another samepaged answers there" \
	--socket "$tmp/pg.sock" --state-dir "$tmp/second"
[ ! -e "$tmp/second" ] && [ -S "$tmp/pg.sock" ] && ok ||
	fail "a second samepaged on $tmp/pg.sock left its state directory, or took the socket"
# A second samepaged on another socket and the same state directory would
# take the first one's domains and reap its clients: refused, naming the
# first one's pid, its socket not left; the first one goes on.
refused "--state-dir used by another samepaged" "another samepaged (pid $pid) uses the state directory" \
	--socket "$tmp/pg2.sock" --state-dir "$tmp/pgst"
[ ! -e "$tmp/pg2.sock" ] && [ -S "$tmp/pg.sock" ] && kill -0 "$pid" 2>/dev/null && ok ||
	fail "a second samepaged on $tmp/pgst left its socket, or the first one stopped"
stop_daemon "$tmp/pg.sock"
# Once the first one stopped, the directory is free again.
timeout 5 "$bin" --socket "$tmp/pg3.sock" --state-dir "$tmp/pgst" >"$tmp/out" 2>"$tmp/err" &&
	[ -S "$tmp/pg3.sock" ] && ok || fail "the state directory stayed locked after its daemon stopped: $(cat "$tmp/err")"
stop_daemon "$tmp/pg3.sock"
# With --allow-user, anyone may connect (0666) and SO_PEERCRED decides.
timeout 5 "$bin" --socket "$tmp/pa.sock" --state-dir "$tmp/past" --allow-user 65534 \
	--allow-user "65534:vm-a-*,vm.b" >"$tmp/out" 2>"$tmp/err"
mode=$(stat -c %a "$tmp/pa.sock" 2>/dev/null)
[ "$mode" = 666 ] && ok || fail "--allow-user: the control socket's mode is $mode (want 666)"
stop_daemon "$tmp/pa.sock"

echo "cli: $passed passed, $fails failed"
[ "$fails" = 0 ]
