#!/bin/sh
# SPDX-License-Identifier: MIT
# cli.sh SAMEPAGED VERSION: samepaged's command line without a daemon
# running: --version prints the project's version, --help every option
# of samepaged(8), a bad option or limit exits 2 naming it.
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

echo "cli: $passed passed, $fails failed"
[ "$fails" = 0 ]
