#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.install: `cmake --install` into a temporary prefix gives every
# function that include/samepage.h declares its own man page, a ".so" of
# samepage(3), so that `man samepage_open` finds the manual; and the
# completion, the unit and ksmctl(1) are installed.  The prefix given to
# `cmake --install` is the one in samepage.pc (a program builds with
# `pkg-config --cflags --libs samepage` and runs), and the installed
# ksmctl finds the installed preload library (`--user run`): both named
# the configured prefix before.
#
# usage: install.sh BUILD_DIR PROJECT_SOURCE_DIR
set -u
build=$1 top=$2
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
bad=0
cmake --install "$build" --prefix "$tmp" >"$tmp/log" 2>&1 || { cat "$tmp/log"; echo "FAIL: cmake --install"; exit 1; }
man3=$tmp/share/man/man3
# Every function the header declares, found as the docs test finds them
# (tests/docs/knobs.py), not by CMake's own rule.
fns=$(python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import knobs
print(" ".join(knobs.header_functions(sys.argv[2])))' "$top/tests/docs" "$top/include/samepage.h")
[ -n "$fns" ] || { echo "FAIL: no function found in samepage.h"; exit 1; }
n=0
for fn in $fns; do
	n=$((n + 1))
	if [ "$(cat "$man3/$fn.3" 2>/dev/null)" != ".so man3/samepage.3" ]; then
		echo "FAIL: $man3/$fn.3 is missing or is not '.so man3/samepage.3'"
		bad=1
		continue
	fi
	# man itself follows the .so to samepage(3) (its NAME section).
	if command -v man >/dev/null && ! MANWIDTH=100 man -M "$tmp/share/man" 3 "$fn" 2>/dev/null | grep -q "samepage_open"; then
		echo "FAIL: man -M $tmp/share/man 3 $fn does not show samepage(3)"
		bad=1
	fi
done
extra=$(cd "$man3" && ls | grep -v '^samepage\.3$' | sed 's/\.3$//' | sort)
want=$(tr ' ' '\n' <<<"$fns" | sort)
[ "$extra" = "$want" ] || { echo "FAIL: man3 pages and header functions differ:"; diff <(echo "$want") <(echo "$extra"); bad=1; }
for f in share/man/man1/ksmctl.1 share/bash-completion/completions/ksmctl lib/systemd/system/ksm-apply.service \
	lib/systemd/system/ksm-prometheus.service lib/systemd/system/ksm-prometheus.timer; do
	[ -s "$tmp/$f" ] || { echo "FAIL: $f is not installed"; bad=1; }
done
pc=$(find "$tmp" -name samepage.pc)
if [ -z "$pc" ]; then
	echo "FAIL: samepage.pc is not installed"
	bad=1
elif [ -n "${SAMEPAGE_SANITIZED:-}" ]; then
	echo "skip: a sanitized library is not run from a program built without its runtime"
	grep -q "^prefix=$tmp\$" "$pc" || { echo "FAIL: samepage.pc does not name $tmp"; bad=1; }
elif command -v pkg-config >/dev/null; then
	flags=$(PKG_CONFIG_PATH=$(dirname "$pc") pkg-config --cflags --libs samepage)
	echo "pkg-config: $flags"
	grep -q -- "-I$tmp/include" <<<"$flags" || { echo "FAIL: samepage.pc does not name $tmp/include"; bad=1; }
	libdir=$(sed -n 's/^-L//p' <<<"$(tr ' ' '\n' <<<"$flags")")
	# shellcheck disable=SC2086
	if cc -o "$tmp/basic" "$top/examples/basic.c" $flags -Wl,-rpath,"$libdir" 2>"$tmp/cc.err"; then
		"$tmp/basic" >"$tmp/basic.out" 2>&1 || { cat "$tmp/basic.out"; echo "FAIL: basic.c built with pkg-config does not run"; bad=1; }
		grep -q "saved" "$tmp/basic.out" || { cat "$tmp/basic.out"; echo "FAIL: basic.c says nothing saved"; bad=1; }
	else
		cat "$tmp/cc.err"
		echo "FAIL: cc basic.c \$(pkg-config --cflags --libs samepage)"
		bad=1
	fi
fi
[ -n "${SAMEPAGE_SANITIZED:-}" ] || (
	unset SAMEPAGE_PRELOAD SAMEPAGE_SOCKET SAMEPAGE_DOMAIN
	"$tmp/bin/ksmctl" --user run -- true 2>"$tmp/run.err"
) || { cat "$tmp/run.err"; echo "FAIL: the installed ksmctl --user run does not find the installed preload library"; bad=1; }
ran="pkg-config and --user run"
[ -z "${SAMEPAGE_SANITIZED:-}" ] || ran="the installed files only"
[ $bad = 0 ] && echo "ok: $n functions, each with a man page that shows samepage(3); $ran"
exit $bad
