#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.unit: `ksmctl install-service --root DIR` writes a unit that
# `systemd-analyze verify` accepts (with ExecStart pointed at the built
# ksmctl, since the installed one may not exist yet), a sample config that
# `ksmctl apply --check` accepts, and the enable symlink; the textfile
# collector's service and timer verify too, and the service's command
# writes a complete ksm.prom (here into a temporary directory) that
# promcheck.py accepts, with no temporary file left beside it.  The unit's
# ExecStart= program: refused when not installed (no --root, --dry-run),
# a warning when the --root tree lacks it.  An /etc/ksm.conf that is a
# directory or a symbolic link to nothing: refused (exit 2), nothing
# written.  Nothing outside a temporary directory is touched.
#
# usage: unit.sh KSMCTL [CLI_BUILD_DIR CLI_SOURCE_DIR TESTS_CLI_DIR]
set -u
ksmctl=$1 built=${2:-} srcdir=${3:-} testdir=${4:-}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

# The unit's ExecStart= program must exist: on this machine (no --root)
# install-service refuses (exit 1, even for --dry-run) when it is not
# installed; below --root it warns when the tree lacks it.
if [ -n "$built" ]; then
	prog=$(sed -n 's/^ExecStart=\([^ ]*\) .*/\1/p' "$built/ksm-apply.service")
	mkdir "$tmp/r1" "$tmp/r2"
	"$ksmctl" install-service --root "$tmp/r1" --dry-run >/dev/null 2>"$tmp/err" ||
		fail "install-service --root without ksmctl in the tree exited $?"
	grep -qF "warning: install-service: $tmp/r1$prog is not in the tree" "$tmp/err" &&
		grep -qF "make install DESTDIR=$tmp/r1" "$tmp/err" ||
		fail "no warning that $tmp/r1$prog is missing: $(cat "$tmp/err")"
	mkdir -p "$tmp/r2$(dirname "$prog")" && cp "$ksmctl" "$tmp/r2$prog"
	"$ksmctl" install-service --root "$tmp/r2" --dry-run >/dev/null 2>"$tmp/err" ||
		fail "install-service --root with ksmctl in the tree exited $?"
	[ ! -s "$tmp/err" ] || fail "install-service --root with ksmctl in the tree warned: $(cat "$tmp/err")"
	if [ -x "$prog" ]; then
		echo "skip: $prog is installed here, so install-service would not refuse"
	else
		"$ksmctl" install-service --dry-run >"$tmp/out" 2>"$tmp/err"
		rc=$?
		[ $rc = 1 ] || fail "install-service with $prog missing exited $rc, not 1: $(cat "$tmp/out" "$tmp/err")"
		[ ! -s "$tmp/out" ] || fail "install-service with $prog missing went on: $(cat "$tmp/out")"
		grep -qF "the unit's ExecStart= program is not installed" "$tmp/err" &&
			grep -qF "input: $prog" "$tmp/err" && grep -qF "make install" "$tmp/err" ||
			fail "install-service with $prog missing does not say so: $(cat "$tmp/err")"
	fi
	rm -rf "$tmp/r1" "$tmp/r2"
fi

command -v systemd-analyze >/dev/null ||
	fail "systemd-analyze is missing: install Debian's systemd package"
"$ksmctl" install-service --root "$tmp" || fail "install-service --root exited $?"
unit=$tmp/etc/systemd/system/ksm-apply.service
[ -f "$unit" ] || fail "no unit at $unit"
[ "$(readlink "$tmp/etc/systemd/system/multi-user.target.wants/ksm-apply.service")" = ../ksm-apply.service ] ||
	fail "install-service did not enable the unit"
grep -q '^ExecStart=.*/ksmctl apply /etc/ksm.conf$' "$unit" || fail "ExecStart does not apply /etc/ksm.conf"
grep -q '^Type=oneshot$' "$unit" || fail "the unit is not Type=oneshot"
sed -i "s#^\(Exec[A-Za-z]*\)=[^ ]*/ksmctl#\1=$ksmctl#" "$unit" # ExecStart and ExecStop
out=$(systemd-analyze verify --man=no "$unit" 2>&1)
rc=$?
echo "$out"
[ $rc -eq 0 ] || fail "systemd-analyze verify exited $rc"
[ -z "$out" ] || fail "systemd-analyze verify printed warnings"
"$ksmctl" apply --check "$tmp/etc/ksm.conf" || fail "the installed sample config does not pass apply --check"
# A second install keeps the administrator's config, and the unit as it
# was (edited above: ExecStart) beside the new one.
echo "run = 1" >"$tmp/etc/ksm.conf"
"$ksmctl" install-service --root "$tmp" --no-enable >"$tmp/out" || fail "a second install-service exited $?"
grep -q "keep $tmp/etc/ksm.conf" "$tmp/out" ||
	fail "a second install-service did not keep the existing /etc/ksm.conf"
[ "$(cat "$tmp/etc/ksm.conf")" = "run = 1" ] || fail "install-service overwrote /etc/ksm.conf"
grep -qF "keep $unit.ksmctl-old (the file as it was" "$tmp/out" ||
	fail "a second install-service replaced the edited unit without saying so: $(cat "$tmp/out")"
grep -qF "ExecStart=$ksmctl " "$unit.ksmctl-old" || fail "the edited unit was not kept as $unit.ksmctl-old"
grep -q '^ExecStart=.*/ksmctl apply /etc/ksm.conf$' "$unit" && ! grep -qF "ExecStart=$ksmctl " "$unit" ||
	fail "the second install-service did not write the unit afresh"
rm "$unit.ksmctl-old"
"$ksmctl" install-service --root "$tmp" --no-enable >"$tmp/out" || fail "a third install-service exited $?"
[ ! -e "$unit.ksmctl-old" ] && ! grep -q ksmctl-old "$tmp/out" ||
	fail "an unchanged unit was kept as if edited: $(cat "$tmp/out")"

# An /etc/ksm.conf that `ksmctl apply /etc/ksm.conf` cannot read at boot
# (a directory, a symbolic link to nothing) is refused before anything is
# written (exit 2), and said so; it was kept as "exists" (exit 0), or the
# unit was written before a write through the link failed with "create
# the directory" (exit 5).  A link to a file in the tree is kept.
for bad in dir dangling dangling-rel; do
	r=$tmp/bad-$bad
	mkdir -p "$r/etc"
	case $bad in
	dir) mkdir "$r/etc/ksm.conf" ;;
	dangling) ln -s /nonexistent-ksmctl-test/ksm.conf "$r/etc/ksm.conf" ;;
	dangling-rel) ln -s ksm/ksm.conf "$r/etc/ksm.conf" ;;
	esac
	for dry in "" --dry-run; do
		"$ksmctl" install-service --root "$r" $dry >"$tmp/out" 2>"$tmp/err"
		rc=$?
		[ $rc = 2 ] || fail "install-service $dry with a $bad /etc/ksm.conf exited $rc, not 2: $(cat "$tmp/out" "$tmp/err")"
		[ ! -e "$r/etc/systemd" ] || fail "install-service $dry with a $bad /etc/ksm.conf wrote $(find "$r/etc/systemd")"
		! grep -q "write\|keep" "$tmp/out" || fail "install-service $dry with a $bad /etc/ksm.conf went on: $(cat "$tmp/out")"
		grep -qF "input: $r/etc/ksm.conf" "$tmp/err" && grep -qF "ksmctl apply /etc/ksm.conf" "$tmp/err" ||
			fail "install-service with a $bad /etc/ksm.conf does not name it and the unit's command: $(cat "$tmp/err")"
		case $bad in
		dir) grep -qF "is a directory" "$tmp/err" ;;
		dangling) grep -qF "a symbolic link to /nonexistent-ksmctl-test/ksm.conf, which does not exist" "$tmp/err" ;;
		dangling-rel) grep -qF "a symbolic link to ksm/ksm.conf, which does not exist" "$tmp/err" ;;
		esac || fail "install-service with a $bad /etc/ksm.conf does not say what it is: $(cat "$tmp/err")"
		! grep -q "create the directory" "$tmp/err" || fail "install-service with a $bad /etc/ksm.conf advises creating a directory"
	done
	echo "ok: install-service refuses a $bad /etc/ksm.conf, writes nothing"
done
r=$tmp/good-link
mkdir -p "$r/etc/ksm"
echo "run = 1" >"$r/etc/ksm/ksm.conf"
ln -s /etc/ksm/ksm.conf "$r/etc/ksm.conf"
"$ksmctl" install-service --root "$r" --no-enable >"$tmp/out" 2>"$tmp/err" ||
	fail "install-service with /etc/ksm.conf a link to a file of the tree exited $?: $(cat "$tmp/err")"
grep -qF "keep $r/etc/ksm.conf" "$tmp/out" && [ "$(cat "$r/etc/ksm/ksm.conf")" = "run = 1" ] ||
	fail "install-service did not keep /etc/ksm.conf, a link to a file of the tree: $(cat "$tmp/out")"

if [ -n "$built" ] && [ -d /sys/kernel/mm/ksm ]; then
	mkdir -p "$tmp/units" "$tmp/textfile"
	cp "$built/ksm-prometheus.service" "$srcdir/ksm-prometheus.timer" "$tmp/units/"
	svc=$tmp/units/ksm-prometheus.service
	grep -q '^ExecStart=[^ ]*/ksmctl status --prometheus --output /var/lib/prometheus/node-exporter/ksm.prom$' "$svc" ||
		fail "ksm-prometheus.service does not write Debian's node_exporter directory"
	sed -i "s#^ExecStart=[^ ]*#ExecStart=$ksmctl#" "$svc"
	out=$(cd "$tmp/units" && systemd-analyze verify --man=no "$svc" ksm-prometheus.timer 2>&1)
	rc=$?
	echo "$out"
	[ $rc -eq 0 ] && [ -z "$out" ] || fail "systemd-analyze verify of the textfile units: exit $rc"
	# The service's own command, with the directory changed to ours.
	cmd=$(sed -n 's/^ExecStart=//p' "$svc" | sed "s#/var/lib/prometheus/node-exporter#$tmp/textfile#")
	echo old >"$tmp/textfile/ksm.prom"
	before=$(stat -c %i "$tmp/textfile/ksm.prom")
	$cmd || fail "'$cmd' exited $?"
	python3 "$testdir/promcheck.py" "$tmp/textfile/ksm.prom" || fail "ksm.prom is not valid exposition format"
	[ "$(stat -c %i "$tmp/textfile/ksm.prom")" != "$before" ] || fail "ksm.prom was rewritten in place, not replaced"
	[ "$(stat -c %a "$tmp/textfile/ksm.prom")" = 644 ] || fail "ksm.prom is not readable by node_exporter's user"
	[ "$(ls -A "$tmp/textfile")" = ksm.prom ] || fail "files left beside ksm.prom: $(ls -A "$tmp/textfile")"
	# Where KSM is gone (a kernel without it booted, the directory kept),
	# the service still runs and ksm.prom says samepage_ksm_up 0 alone, its
	# exit status 1 no failure; it was skipped (ConditionPathExists=), and
	# the last boot's figures stayed exported under up 1.
	grep -q '^ConditionPathExists=/sys/kernel/mm/ksm' "$svc" &&
		fail "ksm-prometheus.service is skipped where KSM is gone: ksm.prom keeps the last figures"
	$cmd --sysfs-root "$testdir/trees/linux-6.6-noksm/sys" 2>/dev/null
	rc=$?
	grep -q '^SuccessExitStatus=1$' "$svc" && [ $rc = 1 ] ||
		fail "without KSM the service's command exits $rc, not a success for the unit"
	[ "$(grep -v '^#' "$tmp/textfile/ksm.prom")" = "samepage_ksm_up 0" ] ||
		fail "without KSM ksm.prom holds: $(cat "$tmp/textfile/ksm.prom")"
fi
echo "ok"
