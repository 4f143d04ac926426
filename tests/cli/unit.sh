#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.unit: `ksmctl install-service --root DIR` writes a unit that
# `systemd-analyze verify` accepts (with ExecStart pointed at the built
# ksmctl, since the installed one may not exist yet), a sample config that
# `ksmctl apply --check` accepts, and the enable symlink.  Nothing outside a
# temporary directory is touched.
set -u
ksmctl=$1
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
fail() { echo "FAIL: $*"; exit 1; }

command -v systemd-analyze >/dev/null ||
	fail "systemd-analyze is missing: install Debian's systemd package"
"$ksmctl" install-service --root "$tmp" || fail "install-service --root exited $?"
unit=$tmp/etc/systemd/system/ksm-apply.service
[ -f "$unit" ] || fail "no unit at $unit"
[ "$(readlink "$tmp/etc/systemd/system/multi-user.target.wants/ksm-apply.service")" = ../ksm-apply.service ] ||
	fail "install-service did not enable the unit"
grep -q '^ExecStart=.*/ksmctl apply /etc/ksm.conf$' "$unit" || fail "ExecStart does not apply /etc/ksm.conf"
grep -q '^Type=oneshot$' "$unit" || fail "the unit is not Type=oneshot"
sed -i "s#^ExecStart=[^ ]*#ExecStart=$ksmctl#" "$unit"
out=$(systemd-analyze verify --man=no "$unit" 2>&1)
rc=$?
echo "$out"
[ $rc -eq 0 ] || fail "systemd-analyze verify exited $rc"
[ -z "$out" ] || fail "systemd-analyze verify printed warnings"
"$ksmctl" apply --check "$tmp/etc/ksm.conf" || fail "the installed sample config does not pass apply --check"
# A second install keeps the administrator's config.
echo "run = 1" >"$tmp/etc/ksm.conf"
"$ksmctl" install-service --root "$tmp" --no-enable | grep -q "keep $tmp/etc/ksm.conf" ||
	fail "a second install-service did not keep the existing /etc/ksm.conf"
[ "$(cat "$tmp/etc/ksm.conf")" = "run = 1" ] || fail "install-service overwrote /etc/ksm.conf"
echo "ok"
