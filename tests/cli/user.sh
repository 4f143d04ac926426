#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.user.*: `ksmctl --user` (the samepaged back-end) against a real
# samepaged on a private socket, with its state in /dev/shm.  The kernel's
# KSM is never touched.
#  absent  no daemon (no socket file; a stale socket): status, set, wait, top
#          and check exit 1 and say "samepaged is not running at SOCKET", what
#          that means for the processes it served (doctor too) and how to
#          start it, for --socket and for $SAMEPAGE_SOCKET; run with
#          a domain runs the program all the same (its exit status), with a
#          warning that it joins the domain when samepaged starts and how to
#          start it (it exited 1 before), run with a bad domain name
#          exits 2 without running the program, run with a private engine runs
#          the program; install-service exits 2 and says what to do instead.
#  e2e     a daemon and a client (spclient) merging 16 MiB of duplicate
#          pages: set, wait --converged, status (text: general_profit is
#          saved minus metadata_bytes; --json: pages_sharing
#          > 0, --prometheus: promcheck.py and samepaged_* names only,
#          full_scans and pages_scanned gauges (they fall as clients come
#          and go), pool_pages_reclaimed/refused counters), top
#          --json finds the client, check, doctor, all-or-nothing refusals
#          (run=3: exit 2; max_page_sharing while merged: exit 5) that
#          change nothing, apply, and unmerge bringing pages_sharing to 0.
#  unscanned  a program under `ksmctl --user run` while run = 0: its profit
#          is its metadata only (negative), but doctor does not report
#          process-loses (nor advise dropping `ksmctl run`) before a scan.
#  exec    a client that exec'd is listed by top under its current name.
#  many    300 clients: top lists them all, check counts them.
#  statedir  the daemon's state directory removed while it runs: its log
#          says so and how to fix it, and a program under `ksmctl --user
#          run --domain` says samepaged refused it (not "start samepaged").
#  relsock  a relative --socket or $SAMEPAGE_SOCKET reaches the program
#          under `ksmctl --user run` absolute: it finds samepaged from
#          another directory.
#  command  a preload library at a path with a space or a colon is refused
#          (LD_PRELOAD cannot name it), the program not run.
#          `ksmctl --user run` runs its command as the shell and `ksmctl
#          run` do: a file without execute permission (named or found in
#          PATH) is "Permission denied", 126, not 127; a script without "#!"
#          runs with /bin/sh; a missing command is 127.  PATH is searched as
#          execvp searches it: an empty entry is the current directory.  A program with file
#          capabilities the user lacks (run as nobody; needs root to set
#          them) is refused (exit 1), as a set-user-ID one: the dynamic
#          linker would ignore LD_PRELOAD and it would run without merging.
#          A bad --set is refused (exit 2) naming the knob and the values it
#          takes, as `ksmctl set` refuses it, and so are a knob set twice
#          and pages_to_scan with advisor_mode=scan-time;
#          --set or --domain without its argument says what it needs.
#  tenant  (as root) ksmctl --user as another user (nobody): a daemon
#          whose socket is its own (mode 0600) is explained as such, with
#          the drop-in that opens it (exit 3); a daemon run with
#          --allow-user nobody:vmA: run --domain vmB is refused before the
#          program runs (exit 3, the daemon's reason, the fix), run
#          --domain vmA runs it, set is refused (exit 3) and the knob kept.
# The daemon and the client are killed on every exit (trap).
#
# usage: user.sh TEST KSMCTL SAMEPAGED SPCLIENT SRCDIR
set -u
test=$1 ksmctl=$2 samepaged=$3 spclient=$4 src=$5
tmp=$(mktemp -d) shm= daemon_pid= client_pid=
sock=$tmp/s.sock
fails=0

cleanup()
{
	for pid in $client_pid $daemon_pid; do
		kill -TERM "$pid" 2>/dev/null
		for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
		kill -KILL "$pid" 2>/dev/null
		wait "$pid" 2>/dev/null
	done
	rm -rf "$tmp" ${shm:+"$shm"}
}
trap cleanup EXIT

fail()
{
	echo "FAIL: $*"
	[ -s "$tmp/err" ] && sed 's/^/  stderr: /' "$tmp/err"
	fails=$((fails + 1))
}

# expect RC ARGS...: runs ksmctl ARGS (stdout in $tmp/out, stderr in
# $tmp/err) and checks its exit status.
expect()
{
	local want=$1 rc
	shift
	"$ksmctl" "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	if [ "$rc" != "$want" ]; then
		fail "ksmctl $* exited $rc, not $want"
		return 1
	fi
	echo "ok: ksmctl $* -> $rc"
}

# says FILE TEXT: FILE contains TEXT.
says()
{
	grep -qF -- "$2" "$1" || fail "$(basename "$1") of the last command lacks: $2"
}

# jq-like checks in Python: json_ok PYTHON-EXPRESSION-ON-d < file
json_ok()
{
	python3 -c "import json, sys; d = json.load(sys.stdin); sys.exit(0 if ($1) else 1)" \
		<"$tmp/out" || fail "JSON check failed: $1"
}

# value NAME: the knob or counter as samepaged reports it.
value()
{
	"$ksmctl" --socket "$sock" status --json |
		python3 -c "import json, sys; print(json.load(sys.stdin)['files']['$1'])"
}

absent()
{
	local verb stale=$tmp/stale.sock rc
	for verb in status "set run=1" "wait --scans 1" top check unmerge; do
		# shellcheck disable=SC2086
		expect 1 --user --socket "$sock" $verb
		says "$tmp/err" "samepaged is not running at $sock"
		says "$tmp/err" "systemctl --user start samepaged.socket"
		says "$tmp/err" "processes it served keep their merged memory, but merge no more and free nothing until it runs again"
	done
	expect 1 --user --socket "$sock" doctor
	says "$tmp/out" "processes it served keep their merged memory, but merge no more"
	says "$tmp/out" "(with the state directory it had)"
	# its own finding: no samepaged is not a kernel without KSM
	says "$tmp/out" "samepaged is not reachable (no-samepaged)"
	SAMEPAGE_SOCKET=$sock expect 1 --user status
	says "$tmp/err" "samepaged is not running at $sock"
	# No socket named and no XDG_RUNTIME_DIR (root by sudo, a service):
	# /run/samepaged.sock, the system unit's socket, which `systemctl --user`
	# does not start.
	if [ ! -e /run/samepaged.sock ]; then
		env -u SAMEPAGE_SOCKET -u XDG_RUNTIME_DIR "$ksmctl" --user status >"$tmp/out" 2>"$tmp/err"
		rc=$?
		[ $rc = 1 ] || fail "ksmctl --user status without a socket exited $rc, not 1"
		says "$tmp/err" "samepaged is not running at /run/samepaged.sock"
		says "$tmp/err" "systemctl start samepaged.socket"
		! grep -q 'systemctl --user' "$tmp/err" || fail "the fix for /run/samepaged.sock says systemctl --user: $(cat "$tmp/err")"
		if [ -z "${SAMEPAGE_SANITIZED:-}" ]; then # see "A sanitized preload" below
			env -u SAMEPAGE_SOCKET -u XDG_RUNTIME_DIR "$ksmctl" --user run --domain d -- true >"$tmp/out" 2>"$tmp/err"
			rc=$?
			[ $rc = 0 ] || fail "ksmctl --user run --domain without a socket exited $rc, not 0 (the program's)"
			says "$tmp/err" "systemctl start samepaged.socket, as root"
			! grep -q 'systemctl --user' "$tmp/err" || fail "run's fix for /run/samepaged.sock says systemctl --user: $(cat "$tmp/err")"
		fi
	fi
	expect 1 --user --socket "$sock" check --json
	json_ok 'd["reachable"] is False and d["backend"] == "samepaged" and d["run"] is None'
	# A Prometheus report all the same, samepaged_up 0 alone, so that a
	# textfile collector's file loses the last figures.
	expect 1 --user --socket "$sock" status --prometheus
	[ "$(grep -v '^#' "$tmp/out")" = "samepaged_up 0" ] ||
		fail "status --prometheus without samepaged: $(cat "$tmp/out")"
	# A socket file nobody listens on: ECONNREFUSED, the same advice.
	python3 -c "import socket, sys; socket.socket(socket.AF_UNIX, socket.SOCK_SEQPACKET).bind(sys.argv[1])" "$stale"
	expect 1 --socket "$stale" status
	says "$tmp/err" "samepaged is not running at $stale (Connection refused)"
	# A path that is no socket (a directory, a file): said so, not "not
	# running", which would send the admin to start a daemon.
	local notsock
	: >"$tmp/plain"
	for notsock in "$tmp" "$tmp/plain"; do
		expect 1 --user --socket "$notsock" status
		says "$tmp/err" "$notsock is a"
		says "$tmp/err" "not a socket: no samepaged listens there"
		! grep -q "samepaged is not running" "$tmp/err" ||
			fail "--socket $notsock (no socket) said samepaged is not running: $(cat "$tmp/err")"
	done
	# run: with no daemon yet the program runs all the same (its exit
	# status), with a warning that says it joins the domain when samepaged
	# starts and how to start it; a private engine needs none.
	if [ -z "${SAMEPAGE_SANITIZED:-}" ]; then
		expect 3 --user --socket "$sock" run --domain vms -- sh -c 'exit 3'
		says "$tmp/err" "no samepaged listens at $sock: sh runs without merging and joins domain vms when samepaged starts there"
		says "$tmp/err" "systemctl --user start samepaged.socket"
		# Said once: the preload library inside sh does not repeat it.
		! grep -q "samepaged is not running at" "$tmp/err" ||
			fail "run --domain said twice that no samepaged answers"
	fi
	# Without ksmctl, the preload library is the one that says it.
	if [ -z "${SAMEPAGE_SANITIZED:-}" ] && [ -n "${SAMEPAGE_PRELOAD:-}" ]; then
		SAMEPAGE_MERGE_ANY=1 SAMEPAGE_DOMAIN=vms SAMEPAGE_SOCKET=$sock LD_PRELOAD=$SAMEPAGE_PRELOAD \
			"$(type -P true)" 2>"$tmp/err"
		says "$tmp/err" "samepage: samepaged is not running at $sock"
	fi
	# A name no daemon accepts is bad usage (exit 2), refused before the
	# program runs, with the rule; the preload library says the same rule.
	local name
	for name in a/b "bad name" .hidden "$(printf '%0300d' 0)"; do
		expect 2 --user --socket "$sock" run --domain "$name" -- sh -c "touch $tmp/ran"
		says "$tmp/err" "run: bad domain name"
		says "$tmp/err" "1 to 64 of A-Za-z0-9._-, not starting with a dot"
		[ ! -e "$tmp/ran" ] || fail "run --domain '$name' ran the program"
	done
	if [ -z "${SAMEPAGE_SANITIZED:-}" ] && [ -n "${SAMEPAGE_PRELOAD:-}" ]; then
		SAMEPAGE_MERGE_ANY=1 SAMEPAGE_DOMAIN=a/b SAMEPAGE_SOCKET=$sock LD_PRELOAD=$SAMEPAGE_PRELOAD \
			"$(type -P true)" 2>"$tmp/err"
		says "$tmp/err" "cannot join domain a/b: not a domain name (fix: set SAMEPAGE_DOMAIN to 1 to 64"
	fi
	# A sanitized preload library cannot be loaded into the unsanitized
	# programs it is for (the preload.* tests cover it, unsanitized).
	[ -n "${SAMEPAGE_SANITIZED:-}" ] || expect 0 --user --socket "$sock" run -- true
	expect 2 --user --socket "$sock" install-service --dry-run
	says "$tmp/err" "systemctl --user enable --now samepaged.socket"
	expect 2 --user --socket "$sock" estimate --all
	says "$tmp/err" "drop --user; for programs run with \`ksmctl --user run\`, add --all-memory"
	expect 2 --socket
	says "$tmp/err" "--socket needs a socket path"
}

# start_daemon: samepaged on $sock, its state in /dev/shm; 1 if it did not
# answer.
start_daemon()
{
	[ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] || { echo "skip: /dev/shm is not tmpfs"; exit 77; }
	shm=$(mktemp -d /dev/shm/ksmctl-user.XXXXXX)
	"$samepaged" --foreground --socket "$sock" --state-dir "$shm/state" "$@" 2>"$tmp/daemon.log" &
	daemon_pid=$!
	for _ in $(seq 100); do
		"$ksmctl" --socket "$sock" check >/dev/null 2>&1 && break
		sleep 0.1
	done
	expect 0 --user --socket "$sock" check || { cat "$tmp/daemon.log"; return 1; }
}

# advice: the commands that --user's messages advise are --user's own (with
# --socket PATH when given), never the kernel's `ksmctl set`: doctor's
# fixes, run's warning that samepaged is not merging, an unknown knob.
advice()
{
	start_daemon || return
	expect 2 --user --socket "$sock" set bogus=1
	says "$tmp/err" "use a name of samepaged's knobs; \`ksmctl --socket $sock status\` lists them"
	if [ -z "${SAMEPAGE_SANITIZED:-}" ]; then
		expect 0 --user --socket "$sock" run --domain vm -- true
		says "$tmp/err" "nothing merges until \`ksmctl --socket $sock set run=1\`"
	fi
	# 4 patterns in 4096 pages: 1024 copies each, more than max_page_sharing
	# (256), so doctor reports the cap and how to raise it.
	expect 0 --user --socket "$sock" set pages_to_scan=10000 sleep_millisecs=0 run=1
	: >"$tmp/client.out" # now: the child's ">" may come after the wait reads the last one's
	SAMEPAGE_SOCKET=$sock "$spclient" vm 16 >"$tmp/client.out" 2>&1 &
	client_pid=$!
	for _ in $(seq 100); do grep -q ready "$tmp/client.out" && break; sleep 0.1; done
	expect 0 --user --socket "$sock" wait --converged --timeout 120
	"$ksmctl" --user --socket "$sock" doctor --json >"$tmp/out" 2>"$tmp/err"
	json_ok 'any(f["id"] == "capped" for f in d["findings"])'
	python3 - "$tmp/out" "$sock" <<'PY' || fail "a doctor fix advises a command not of ksmctl --socket $sock"
import json, re, sys
d = json.load(open(sys.argv[1]))
bad = [f["fix"] for f in d["findings"]
       if re.search(r"ksmctl (set|start|wait|top|run)\b", f["fix"])
       or ("ksmctl" in f["fix"] and "ksmctl --socket " + sys.argv[2] not in f["fix"])]
for b in bad:
    print("  fix: " + b)
sys.exit(1 if bad else 0)
PY
	SAMEPAGE_SOCKET=$sock "$ksmctl" --user doctor >"$tmp/out" 2>"$tmp/err"
	says "$tmp/out" "ksmctl --user set --unmerge max_page_sharing=N"
}

e2e()
{
	start_daemon || return
	says "$tmp/out" "reachable          yes"
	says "$tmp/out" "clients            0 processes"

	# pages_to_scan is the domain's rate, as ksmd's is the system's: two
	# clients of one domain scan half of it each per wake-up (issue 13, 6).
	SAMEPAGE_SOCKET=$sock "$spclient" rate 16 >"$tmp/rate1.out" 2>&1 &
	local r1=$!
	SAMEPAGE_SOCKET=$sock "$spclient" rate 16 >"$tmp/rate2.out" 2>&1 &
	local r2=$!
	for _ in $(seq 100); do grep -q ready "$tmp/rate1.out" && grep -q ready "$tmp/rate2.out" && break; sleep 0.1; done
	expect 0 --user --socket "$sock" set pages_to_scan=1000 sleep_millisecs=600000 run=1
	local scanned=0
	for _ in $(seq 100); do
		scanned=$(value pages_scanned)
		[ "$scanned" -ge 1000 ] && break
		sleep 0.1
	done
	sleep 1
	scanned=$(value pages_scanned)
	[ "$scanned" = 1000 ] && echo "ok: two clients scanned pages_to_scan between them" ||
		fail "two clients of one domain scanned $scanned pages in their first wake-up, not pages_to_scan (1000)"
	expect 0 --user --socket "$sock" set run=0
	kill $r1 $r2
	wait $r1 $r2 2>/dev/null

	# Knobs first, client second: a client whose scanner is idle does not
	# notice run=1 written through the daemon by another process until it
	# calls the library itself (see the report on lib/scan.c's ksmd()).
	expect 0 --user --socket "$sock" set pages_to_scan=10000 sleep_millisecs=0 run=1
	says "$tmp/out" "run: 0 -> 1"
	: >"$tmp/client.out" # now: the child's ">" may come after the wait reads the last one's
	SAMEPAGE_SOCKET=$sock "$spclient" vm 16 >"$tmp/client.out" 2>&1 &
	client_pid=$!
	for _ in $(seq 100); do grep -q ready "$tmp/client.out" && break; sleep 0.1; done
	grep -q "ready $client_pid" "$tmp/client.out" || { fail "the client did not start: $(cat "$tmp/client.out")"; return; }

	expect 0 --user --socket "$sock" wait --converged --timeout 120 --json
	json_ok 'd["result"] == "converged" and d["pages_sharing"] > 0'

	expect 0 --user --socket "$sock" status
	says "$tmp/out" "(samepaged back-end, $sock)"
	# samepaged's general_profit subtracts metadata_bytes, not rmap items.
	says "$tmp/out" "(saved minus metadata_bytes "
	! grep -q "rmap_items of metadata" "$tmp/out" || fail "status --user explains general_profit with rmap_items"
	# No ksmd: the scanning runs in each client's own thread, said so.
	says "$tmp/out" "each client scans in its own samepage-ksmd thread"
	SAMEPAGE_SOCKET=$sock expect 0 --user status --json
	json_ok 'd["backend"] == "samepaged" and d["path"] == "'"$sock"'" and d["files"]["pages_sharing"] > 0 and d["files"]["run"] == 1'
	expect 0 --user --socket "$sock" status --prometheus
	python3 "$src/promcheck.py" "$tmp/out" || fail "--prometheus output is not valid exposition format"
	grep -Eq '^samepaged_pages_sharing [1-9]' "$tmp/out" || fail "no samepaged_pages_sharing > 0"
	grep -Eq '^samepaged_process_merging_pages\{unit="[^"]*",comm="cli_spclient",domain="vm"\} [1-9]' "$tmp/out" ||
		fail "no samepaged_process_merging_pages for the client (unit, comm, domain)"
	! grep -Eq '^(# [A-Z]+ )?(node_ksmd_|samepage_ksm_)' "$tmp/out" || fail "kernel metric names in --user output"
	# A counter never goes down: full_scans (the fewest of the connected
	# clients') and pages_scanned/pages_skipped (their sums) are gauges;
	# the cumulative pool_pages_reclaimed/refused are counters.
	local series
	for series in "samepaged_full_scans gauge" "samepaged_pages_scanned gauge" \
		"samepaged_pool_pages_reclaimed_total counter" "samepaged_pool_pages_refused_total counter"; do
		grep -qx "# TYPE $series" "$tmp/out" && echo "ok: $series" || fail "--user --prometheus lacks # TYPE $series"
	done
	! grep -Eq '^samepaged_(full_scans|pages_scanned|pages_skipped)_total|^samepaged_pool_pages_(reclaimed|refused) ' "$tmp/out" ||
		fail "--user --prometheus: a non-monotonic counter or a cumulative gauge: $(grep -E 'full_scans|pages_scanned|pool_pages_re' "$tmp/out")"

	expect 0 --user --socket "$sock" top --json
	json_ok 'any(r["pid"] == '"$client_pid"' and r["comm"] == "cli_spclient" and r["merging_pages"] > 0 for r in d["rows"])'
	expect 0 --user --socket "$sock" top
	says "$tmp/out" "$client_pid cli_spclient"
	expect 0 --user --socket "$sock" top --by domain --json
	json_ok 'any(r["domain"] == "vm" and r["processes"] == 1 and r["merging_pages"] > 0 for r in d["rows"])'

	expect 0 --user --socket "$sock" check --json
	json_ok 'd["reachable"] and d["running"] and d["clients"] == 1 and "pages_sharing" in d["knobs_present"] and "pool_pages" in d["knobs_present"]'
	"$ksmctl" --user --socket "$sock" doctor --json >"$tmp/out" 2>"$tmp/err"
	json_ok '"findings" in d and all(f["id"] not in ("no-ksm", "not-running", "nothing-mergeable") for f in d["findings"])'

	# Refusals change nothing: a bad value anywhere (exit 2), a knob that
	# needs an unmerge first (exit 5).
	expect 2 --user --socket "$sock" set pages_to_scan=5 run=3
	says "$tmp/err" "bad value for run"
	[ "$(value run)" = 1 ] && [ "$(value pages_to_scan)" = 10000 ] || fail "set run=3 changed a knob"
	expect 5 --user --socket "$sock" set sleep_millisecs=7 max_page_sharing=100
	[ "$(value max_page_sharing)" = 256 ] && [ "$(value sleep_millisecs)" = 0 ] || fail "a refused set changed a knob"
	[ -n "${SAMEPAGE_SANITIZED:-}" ] || expect 0 --user --socket "$sock" run --domain vms -- true
	expect 2 --user --socket "$sock" run --domain vms --set run=1 -- true
	says "$tmp/err" "ksmctl --user set"

	printf 'pages_to_scan = 20000\n' >"$tmp/ksm.conf"
	expect 0 --user --socket "$sock" apply "$tmp/ksm.conf"
	[ "$(value pages_to_scan)" = 20000 ] || fail "apply did not write pages_to_scan"

	# The mapping budget: 30,720 scattered duplicates need a mapping each,
	# more than vm.max_map_count allows; doctor and the log say what would.
	local max
	max=$(cat /proc/sys/vm/max_map_count)
	if [ "$max" -lt 100000 ]; then
		SAMEPAGE_SOCKET=$sock "$spclient" vm 240 scatter >"$tmp/scatter.out" 2>&1 &
		local scatter=$!
		local found=
		for _ in $(seq 1200); do
			"$ksmctl" --user --socket "$sock" doctor --json >"$tmp/out" 2>"$tmp/err"
			grep -q '"map-budget"' "$tmp/out" && found=1 && break
			sleep 0.1
		done
		[ -n "$found" ] || fail "doctor never reported the mapping budget: $(cat "$tmp/out")"
		json_ok 'any(f["id"] == "map-budget" and "sysctl -w vm.max_map_count=" in f["fix"] and int(f["fix"].split("=")[1].split()[0]) > '"$max"' for f in d["findings"])'
		for _ in $(seq 100); do grep -q "mapping budget refused" "$tmp/daemon.log" && break; sleep 0.1; done
		says "$tmp/daemon.log" "would let them all happen (sysctl -w vm.max_map_count="
		kill "$scatter"
		wait "$scatter" 2>/dev/null
	else
		echo "ok: the mapping budget not tried: vm.max_map_count is $max here"
	fi

	# Merge-any keeps malloc's heap out (8 MiB, 2048 pages, once a full
	# scan saw them all); doctor says how much and why.
	# (Not under the sanitizers: malloc is theirs, no heap or chunk of glibc.)
	if [ -z "${SAMEPAGE_SANITIZED:-}" ]; then
		SAMEPAGE_SOCKET=$sock "$spclient" vm 8 malloc >"$tmp/malloc.out" 2>&1 &
		local mallocer=$! kept=
		for _ in $(seq 600); do
			"$ksmctl" --user --socket "$sock" doctor --json >"$tmp/out" 2>"$tmp/err"
			python3 - "$tmp/out" "$mallocer" <<-'PY' && kept=1 && break
	import json, re, sys
	d = json.load(open(sys.argv[1]))
	sys.exit(0 if any(f["id"] == "kept-out" and "cli_spclient (pid %s," % sys.argv[2] in f["evidence"]
	                  and int(re.search(r"pages_kept_malloc (\d+)", f["evidence"]).group(1)) >= 2048
	                  and "GLIBC_TUNABLES=glibc.malloc.mmap_threshold=" in f["fix"]
	                  for f in d["findings"]) else 1)
	PY
			sleep 0.1
		done
		[ -n "$kept" ] && echo "ok: doctor reports malloc's pages kept out, and the tunable that maps blocks by themselves" ||
			fail "doctor never reported 2048 pages of malloc kept out: $(cat "$tmp/out")"
		# status sums them over the clients, Prometheus exports them, and a
		# full scan's time counts them, which the scanners visit (asked
		# at a bounded rate: sleep_millisecs 50, put back after).
		local old_sleep
		old_sleep=$("$ksmctl" --user --socket "$sock" status --json |
			python3 -c 'import json, sys; print(json.load(sys.stdin)["files"]["sleep_millisecs"])')
		"$ksmctl" --user --socket "$sock" set sleep_millisecs=50 >/dev/null
		"$ksmctl" --user --socket "$sock" status --json >"$tmp/out" 2>"$tmp/err"
		"$ksmctl" --user --socket "$sock" set "sleep_millisecs=$old_sleep" >/dev/null
		python3 -c 'import json, sys
d = json.load(open(sys.argv[1])); f, g = d["files"], d["derived"]
items = f["pages_shared"] + f["pages_sharing"] + f["pages_unshared"] + f["pages_volatile"]
sys.exit(0 if f["pages_kept_malloc"] >= 2048 and
         g["full_scan_seconds"] * g["scan_rate_pages_per_second"] >= items + f["pages_kept_malloc"] - 1
         else 1)' "$tmp/out" &&
			echo "ok: status sums pages_kept_malloc over the clients, a full scan's time counts them" ||
			fail "status --json: no pages_kept_malloc of 2048 or more, or a full scan that leaves them out: $(cat "$tmp/out" "$tmp/err")"
		"$ksmctl" --user --socket "$sock" status --prometheus >"$tmp/out" 2>"$tmp/err"
		grep -Eq '^samepaged_pages_kept_malloc ([2-9][0-9]{3}|[0-9]{5,})$' "$tmp/out" &&
			echo "ok: status --prometheus exports pages_kept_malloc" ||
			fail "status --prometheus: no samepaged_pages_kept_malloc of 2048 or more: $(grep kept "$tmp/out")"
		kill "$mallocer"
		wait "$mallocer" 2>/dev/null
	else
		echo "ok: malloc kept out not tried: malloc is the sanitizer's"
	fi

	expect 0 --user --socket "$sock" unmerge
	says "$tmp/out" "run: 1 -> 2"
	local sharing=
	for _ in $(seq 600); do
		sharing=$(value pages_sharing)
		[ "$sharing" = 0 ] && break
		sleep 0.1
	done
	[ "$sharing" = 0 ] && echo "ok: pages_sharing 0 after unmerge" || fail "pages_sharing is $sharing 60 s after unmerge"
	expect 1 --user --socket "$sock" wait
	says "$tmp/err" "start it: ksmctl --socket $sock start"
}

# unscanned: doctor judges a process's profit only once it was scanned.
unscanned()
{
	[ -z "${SAMEPAGE_SANITIZED:-}" ] || { echo "skip: a sanitized preload library"; exit 77; }
	start_daemon || return
	expect 0 --user --socket "$sock" set run=0
	"$ksmctl" --user --socket "$sock" run --domain d -- \
		python3 -c 'import sys, time; x = bytearray(8 << 20); print("ready", flush=True); time.sleep(120)' \
		>"$tmp/client.out" 2>&1 &
	client_pid=$!
	local profit=
	for _ in $(seq 100); do
		"$ksmctl" --user --socket "$sock" top --json >"$tmp/out" 2>"$tmp/err"
		profit=$(python3 -c 'import json, sys; r = [r for r in json.load(sys.stdin)["rows"] if r["comm"] == "python3"]; print(r[0]["profit_bytes"] if r and r[0].get("profit_bytes") is not None else "")' <"$tmp/out" 2>/dev/null)
		[ -n "$profit" ] && [ "$profit" -lt 0 ] && break
		sleep 0.1
	done
	[ -n "$profit" ] || { fail "ksmctl --user top never listed the client: $(cat "$tmp/out" "$tmp/client.out")"; return; }
	echo "ok: the unscanned client's profit is $profit"
	"$ksmctl" --user --socket "$sock" doctor --json >"$tmp/out" 2>"$tmp/err"
	json_ok 'all(f["id"] != "process-loses" for f in d["findings"])'
	json_ok 'any(f["id"] == "not-running" for f in d["findings"])'
	"$ksmctl" --user --socket "$sock" doctor >"$tmp/out" 2>"$tmp/err"
	! grep -q "loses memory" "$tmp/out" || fail "doctor says an unscanned process loses memory: $(grep -A2 'loses memory' "$tmp/out")"
}

# exec_name: a client that exec'd is listed by top with its current name,
# not the one it had when it first joined its domain: python3 closes its
# connection (all its descriptors, as a daemon does) while it maps the pool,
# so samepaged keeps its ledger, then execs sleep, which joins again with
# the same pid and start time and gets that ledger back, named python3.
exec_name()
{
	[ -z "${SAMEPAGE_SANITIZED:-}" ] || { echo "skip: a sanitized preload library"; exit 77; }
	start_daemon || return
	"$ksmctl" --user --socket "$sock" run --domain d -- python3 -c '
import os, sys, time
time.sleep(0.5)
os.closerange(3, 65536)
time.sleep(0.5)  # samepaged sees the connection closed while the pool is mapped
print("ready", flush=True)
os.execv("'"$(type -P sleep)"'", ["sleep", "120"])' >"$tmp/client.out" 2>&1 &
	client_pid=$!
	for _ in $(seq 100); do grep -q ready "$tmp/client.out" && break; sleep 0.1; done
	grep -q ready "$tmp/client.out" || { fail "the client did not start: $(cat "$tmp/client.out")"; return; }
	local comm=
	for _ in $(seq 50); do
		"$ksmctl" --user --socket "$sock" top --json >"$tmp/out" 2>"$tmp/err"
		comm=$(python3 -c 'import json, sys; r = [r for r in json.load(sys.stdin)["rows"] if r["pid"] == int(sys.argv[1])]; print(r[0]["comm"] if r else "")' "$client_pid" <"$tmp/out")
		[ "$comm" = sleep ] && break
		sleep 0.1
	done
	[ "$(cat /proc/$client_pid/comm)" = sleep ] || fail "the client's comm is $(cat /proc/$client_pid/comm), not sleep"
	[ "$comm" = sleep ] && echo "ok: top names the exec'd client sleep" ||
		fail "ksmctl --user top names the exec'd client '$comm', not sleep: $(cat "$tmp/out")"
	expect 0 --user --socket "$sock" top
	grep -Eq "^ *$client_pid +sleep " "$tmp/out" || fail "top's table does not name $client_pid sleep: $(cat "$tmp/out")"
}

# many: 300 clients, more than one answer of CLIENTS holds (a packet of
# 64 KiB, about 200 lines): top --json lists every one (ksmctl follows the
# answer's "more=N"; it listed the first ones only before).
many()
{
	start_daemon || return
	local n=300 k ready=0
	for k in $(seq $n); do
		SAMEPAGE_SOCKET=$sock "$spclient" many 1 >"$tmp/many.$k" 2>&1 &
		client_pid="$client_pid $!"
	done
	for _ in $(seq 600); do
		ready=$(cat "$tmp"/many.* | grep -c '^ready')
		[ "$ready" = $n ] && break
		sleep 0.1
	done
	[ "$ready" = $n ] || { fail "$ready of $n clients started: $(grep -vh ready "$tmp"/many.* | head -3)"; return; }
	local rows=0
	for _ in $(seq 100); do
		"$ksmctl" --user --socket "$sock" top --json >"$tmp/out" 2>"$tmp/err" ||
			{ fail "top --json failed: $(cat "$tmp/err")"; return; }
		rows=$(python3 -c 'import json, sys; print(len({r["pid"] for r in json.load(sys.stdin)["rows"] if r["comm"] == "cli_spclient"}))' <"$tmp/out")
		[ "$rows" = $n ] && break
		sleep 0.1
	done
	[ "$rows" = $n ] && echo "ok: top --json lists all $n clients" ||
		fail "top --json lists $rows of $n clients"
	expect 0 --user --socket "$sock" check
	says "$tmp/out" "clients            $n processes"
}

statedir()
{
	[ -z "${SAMEPAGE_SANITIZED:-}" ] || { echo "skip: a sanitized preload library"; exit 77; }
	start_daemon || return
	rm -rf "$shm/state"
	expect 0 --user --socket "$sock" run --domain vms -- true
	says "$tmp/err" "cannot join domain vms of samepaged at $sock"
	says "$tmp/err" "(fix: samepaged refused it: its log says why)"
	grep -qF "start samepaged" "$tmp/err" && fail "the program advises starting a samepaged that runs"
	grep -qF "the state directory $shm/state was removed while samepaged ran" "$tmp/daemon.log" &&
		echo "ok: samepaged says its state directory was removed" ||
		fail "samepaged's log does not say its state directory was removed: $(cat "$tmp/daemon.log")"
	grep -qF "fix: restart samepaged" "$tmp/daemon.log" || fail "samepaged's log lacks the fix"
}

# relsock: a relative socket path (--socket, or $SAMEPAGE_SOCKET) reaches
# the program absolute: one that changes directory (a daemon, QEMU's
# -daemonize) still finds samepaged (it said "samepaged is not running at
# sd/s.sock" and merged nothing).
relsock()
{
	[ -z "${SAMEPAGE_SANITIZED:-}" ] || { echo "skip: a sanitized preload library"; exit 77; }
	start_daemon || return
	expect 0 --user --socket "$sock" set run=1
	local how rc
	cd "$tmp" || return
	for how in option env; do
		if [ $how = option ]; then
			"$ksmctl" --socket s.sock run --domain t1 -- \
				sh -c 'cd / && echo "$SAMEPAGE_SOCKET" && exec python3 -c 1' >"$tmp/out" 2>"$tmp/err"
		else
			SAMEPAGE_SOCKET=s.sock "$ksmctl" --user run --domain t1 -- \
				sh -c 'cd / && echo "$SAMEPAGE_SOCKET" && exec python3 -c 1' >"$tmp/out" 2>"$tmp/err"
		fi
		rc=$?
		[ $rc = 0 ] || fail "run with a relative socket ($how) exited $rc"
		[ "$(cat "$tmp/out")" = "$sock" ] && echo "ok: a relative socket ($how) reaches the program as $sock" ||
			fail "a relative socket ($how) reached the program as '$(cat "$tmp/out")', not $sock"
		! grep -q "samepaged is not running" "$tmp/err" || fail "the program under run with a relative socket ($how) did not find samepaged"
	done
	cd - >/dev/null || return
}

# aslimit: a program under an address-space limit too small for the
# domain's pool says so and how to lift it, and runs (without merging).
aslimit()
{
	[ -z "${SAMEPAGE_SANITIZED:-}" ] || { echo "skip: a sanitized preload library"; exit 77; }
	start_daemon || return
	(ulimit -v 8388608 && exec "$ksmctl" --user --socket "$sock" run --domain vms -- sh -c 'exit 4') \
		>"$tmp/out" 2>"$tmp/err"
	local rc=$?
	[ "$rc" = 4 ] || fail "the program under ulimit -v exited $rc, not its own 4"
	says "$tmp/err" "cannot join domain vms of samepaged at $sock: this process cannot map the domain's files"
	says "$tmp/err" "fix: lift its address-space limit: ulimit -v, systemd's LimitAS="
}

run_command()
{
	local rc
	# A preload library whose path has a space or a colon: refused, the
	# program not run (LD_PRELOAD splits there, and the program ran
	# without the library, the dynamic linker's error twice per process).
	local odd
	for odd in "$tmp/x y" "$tmp/x:y"; do
		mkdir -p "$odd"
		cp "$SAMEPAGE_PRELOAD" "$odd/libsamepage-preload.so"
		SAMEPAGE_PRELOAD="$odd/libsamepage-preload.so" expect 1 --user run -- sh -c "touch $tmp/ran"
		says "$tmp/err" "the preload library's path has a space or a colon"
		says "$tmp/err" "input: $odd/libsamepage-preload.so"
		[ ! -e "$tmp/ran" ] || fail "the program ran with the preload library at '$odd'"
	done
	# --set is checked as `ksmctl set` checks its arguments (plan_add):
	# the same messages, the input with its origin "--set".
	expect 2 --user run --set run=5 -- sh -c "touch $tmp/ran"
	says "$tmp/err" "ksmctl: bad value for run"
	says "$tmp/err" "input: run=5 (--set)"
	says "$tmp/err" "fix: give a whole number from 0 to 2"
	expect 2 --user run --set max_page_sharing=1 -- true
	says "$tmp/err" "fix: give a whole number from 2 to 2147483647"
	expect 2 --user run --set pages_to_scan -- true
	says "$tmp/err" "run: --set pages_to_scan: not NAME=VALUE"
	expect 2 --user run --set pages_shared=1 -- true
	says "$tmp/err" "\"pages_shared\" is a counter, not a knob"
	expect 2 --user run --set no_such=1 -- true
	says "$tmp/err" "unknown knob \"no_such\""
	says "$tmp/err" "input: no_such=1 (--set)"
	# A knob given twice is refused, as by `ksmctl set` (run took both).
	expect 2 --user run --set run=1 --set run=0 -- sh -c "touch $tmp/ran"
	says "$tmp/err" "run is set twice (first at --set)"
	# pages_to_scan with advisor_mode=scan-time, which the engine would
	# refuse once the program runs (the library said "invalid argument"
	# and ignored it): refused before, as by `ksmctl set`, in either order.
	expect 2 --user run --set advisor_mode=scan-time --set pages_to_scan=6 -- sh -c "touch $tmp/ran"
	says "$tmp/err" "ksmctl: pages_to_scan cannot be set with advisor_mode=scan-time"
	says "$tmp/err" "input: pages_to_scan=6 (--set)"
	says "$tmp/err" "fix: leave pages_to_scan out (the advisor sets it), or set advisor_mode=none"
	expect 2 --user run --set pages_to_scan=6 --set advisor_mode=scan-time -- sh -c "touch $tmp/ran"
	says "$tmp/err" "input: pages_to_scan=6 (--set)"
	expect 2 --user run --set
	says "$tmp/err" "run: --set needs NAME=VALUE"
	expect 2 --user run --domain
	says "$tmp/err" "run: --domain needs a domain's name"
	[ ! -e "$tmp/ran" ] || fail "run --set run=5 ran the program"
	printf 'echo "ran $1"\n' >"$tmp/noshebang"
	expect 126 --user run -- "$tmp/noshebang" x
	says "$tmp/err" "cannot execute: Permission denied"
	PATH=$tmp:$PATH expect 126 --user run -- noshebang x
	says "$tmp/err" "cannot execute: Permission denied"
	expect 127 --user run -- "$tmp/missing"
	says "$tmp/err" "cannot execute: No such file or directory"
	# A name in no directory of PATH, even with empty entries (the
	# current directory for execvp), is 127, and says so.
	cd "$tmp" || return
	PATH=":/nonexistent::" "$ksmctl" --user run -- no-such-command-x >"$tmp/out" 2>"$tmp/err"
	rc=$?
	cd - >/dev/null || return
	[ "$rc" = 127 ] || fail "a command in no directory of PATH=:/nonexistent:: exited $rc, not 127"
	says "$tmp/err" "run: no-such-command-x: not found in PATH"
	expect 127 --user run -- ""
	says "$tmp/err" "run: the command's name is empty"
	if [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; then
		cp "$(type -P true)" "$tmp/captrue"
		# security.capability, revision 2: CAP_NET_RAW (13) permitted, effective.
		if python3 -c 'import os, struct, sys; os.setxattr(sys.argv[1], "security.capability", struct.pack("<5I", 0x02000001, 1 << 13, 0, 0, 0))' "$tmp/captrue" 2>/dev/null; then
			chmod 755 "$tmp"
			setpriv --reuid=65534 --regid=65534 --clear-groups \
				"$ksmctl" --user run -- "$tmp/captrue" >"$tmp/out" 2>"$tmp/err"
			rc=$?
			[ "$rc" = 1 ] || fail "a program with file capabilities run as nobody: exit $rc, not 1"
			says "$tmp/err" "it has file capabilities (security.capability)"
			# root has them all: it runs, preloaded.
			[ -n "${SAMEPAGE_SANITIZED:-}" ] || expect 0 --user run -- "$tmp/captrue"
		fi
	fi
	# A sanitized preload library cannot be loaded into /bin/sh.
	[ -z "${SAMEPAGE_SANITIZED:-}" ] || return 0
	chmod +x "$tmp/noshebang"
	expect 0 --user run -- "$tmp/noshebang" "x y"
	says "$tmp/out" "ran x y"
	# The private engine's knobs are --set's, its domain --domain's: none
	# comes from the caller's environment (a stray SAMEPAGE_KNOBS=run=0
	# merged nothing, without a word).
	SAMEPAGE_KNOBS=run=0 SAMEPAGE_DOMAIN=stray expect 0 --user run -- env
	grep -q '^SAMEPAGE_KNOBS=' "$tmp/out" && fail "--user run passed the caller's SAMEPAGE_KNOBS on"
	grep -q '^SAMEPAGE_DOMAIN=' "$tmp/out" && fail "--user run passed the caller's SAMEPAGE_DOMAIN on"
	SAMEPAGE_KNOBS=run=0 expect 0 --user run --set pages_to_scan=7 -- env
	says "$tmp/out" "SAMEPAGE_KNOBS=pages_to_scan=7"
	# PATH is searched as execvp searches it (env(1) is execvp): an empty
	# entry (leading, doubled, trailing, or all of PATH="") is the current
	# directory; a directory of the program's name is passed over.
	mkdir -p "$tmp/cwd" "$tmp/bin" "$tmp/dir/probe"
	printf '#!/bin/sh\necho cwd\n' >"$tmp/cwd/probe"
	printf '#!/bin/sh\necho bin\n' >"$tmp/bin/probe"
	chmod +x "$tmp/cwd/probe" "$tmp/bin/probe"
	local p want got env
	env=$(type -P env)
	cd "$tmp/cwd" || return
	for p in ":$tmp/bin=cwd" "$tmp/dir::$tmp/bin=cwd" "$tmp/dir:=cwd" "=cwd" "$tmp/dir:$tmp/bin=bin"; do
		want=$(PATH=${p%=*} "$env" probe 2>&1)
		got=$(PATH=${p%=*} "$ksmctl" --user run -- probe 2>&1)
		[ "$want" = "${p##*=}" ] || fail "PATH='${p%=*}': execvp (env) ran '$want', not the probe of ${p##*=}"
		[ "$got" = "$want" ] &&
			echo "ok: PATH='${p%=*}': ksmctl --user run ran the probe of $got, as execvp" ||
			fail "PATH='${p%=*}': ksmctl --user run ran '$got', execvp the probe of '$want'"
	done
	cd - >/dev/null || return
}

# as_nobody RC ARGS...: expect, as user nobody.
as_nobody()
{
	local want=$1 rc
	shift
	setpriv --reuid=65534 --regid=65534 --clear-groups "$ksmctl" "$@" >"$tmp/out" 2>"$tmp/err"
	rc=$?
	[ "$rc" = "$want" ] && echo "ok: (nobody) ksmctl $* -> $rc" ||
		fail "(nobody) ksmctl $* exited $rc, not $want"
}

tenant()
{
	{ [ "$(id -u)" = 0 ] && command -v setpriv >/dev/null; } ||
		{ echo "skip: needs root and setpriv"; exit 77; }
	chmod 755 "$tmp"
	start_daemon || return
	as_nobody 3 --user --socket "$sock" status
	says "$tmp/err" "this user may not connect to $sock (mode 0600)"
	says "$tmp/err" "SocketMode=0666"
	kill "$daemon_pid" && wait "$daemon_pid" 2>/dev/null
	rm -rf "$shm"
	start_daemon --allow-user nobody:vmA || return
	expect 0 --user --socket "$sock" set pages_to_scan=123
	as_nobody 3 --user --socket "$sock" run --domain vmB -- sh -c 'echo ran'
	says "$tmp/err" "refuses domain vmB: uid 65534 may join only domains vmA (--allow-user), not vmB"
	says "$tmp/err" "fix: run with a domain samepaged's --allow-user gives this user"
	[ ! -s "$tmp/out" ] || fail "the program ran in a domain samepaged refuses"
	if [ -z "${SAMEPAGE_SANITIZED:-}" ]; then
		as_nobody 0 --user --socket "$sock" run --domain vmA -- sh -c 'echo ran'
		[ "$(cat "$tmp/out")" = ran ] || fail "the program did not run in its own domain"
	fi
	as_nobody 3 --user --socket "$sock" set pages_to_scan=456
	[ "$(value pages_to_scan)" = 123 ] || fail "a tenant's set changed pages_to_scan to $(value pages_to_scan)"
}

case $test in
tenant) tenant ;;
absent) absent ;;
aslimit) aslimit ;;
relsock) relsock ;;
command) run_command ;;
exec) exec_name ;;
statedir) statedir ;;
unscanned) unscanned ;;
advice) advice ;;
e2e) e2e ;;
many) many ;;
*) echo "unknown test $test"; exit 2 ;;
esac
[ $fails = 0 ] && echo "ok: cli.user.$test" && exit 0
exit 1
