#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# pkg.debian: the Debian packages of debian/, built from a copy of the tree
# (`dpkg-buildpackage -us -uc -b`, under nocheck: the tests run from the
# tree already; and the source package, `dpkg-source -b`), then checked:
#  1. what each package holds (the files it must have, no file in two
#     packages), /etc/ksm.conf a conffile, the relations (samepage
#     Conflicts and Replaces ksmtuned, and Provides it once it ships
#     ksm-tune.service; the -dev package needs the library of its own
#     version; Multi-Arch), the symbols file and a man page for every
#     function of samepage.h, the version is the project's;
#  2. lintian finds no error and no warning in the binary packages and the
#     source package (when lintian is installed);
#  3. the package's files (dpkg -x, no root needed): ksmctl --version by
#     ksmtuned's path /usr/sbin/ksmctl, ksmtuned's forms (start 5000 100,
#     info, stop) on a recorded sysfs tree, /etc/ksm.conf passes
#     `apply --check`, every unit runs a program of the package, and the
#     README's example (in libsamepage-dev's examples) builds with
#     pkg-config against libsamepage-dev and merges pages with
#     libsamepage0's shared library;
#  4. as root: the README's `apt install ./samepage_*.deb
#     ./libsamepage0_*.deb` in a throwaway copy of this system (an overlay
#     of / in a private mount namespace: the real system is never
#     written), the units enabled as debian/rules says, `ksmctl
#     install-service [--tune]` enables the package's units (no copy in
#     /etc), a purge leaves nothing (ksm-prometheus.service's ksm.prom
#     included); and, when apt can fetch ksmtuned, installing over it removes
#     it and keeps its ksm.service enabled (now ours), and its enabled
#     tuner goes on as ksm-tune.service --policy ksmtuned (a disabled one
#     stays off); where systemd --test computes the boot's initial
#     transaction, the boot starts ksm-apply.service, and over ksmtuned
#     ksm-tune.service or, without its tuner, ksm.service too.
# Skipped (77) without dpkg-buildpackage or debhelper.
#
# usage: pkg.sh SRCDIR WORKDIR VERSION
set -u
src=$1 work=$2 version=$3
bad=0
fail() {
	echo "FAIL: $*"
	bad=1
}

for tool in dpkg-buildpackage dpkg-deb dh git; do
	if ! command -v $tool >/dev/null; then
		echo "SKIP: $tool is missing (apt-get install dpkg-dev debhelper git)"
		exit 77
	fi
done
git -C "$src" rev-parse --is-inside-work-tree >/dev/null 2>&1 || {
	echo "SKIP: $src is not a git work tree (the copy to build is made from git ls-files)"
	exit 77
}

# --- build, from a copy of the tree: its files, committed or not ---------
rm -rf "$work"
mkdir -p "$work/src"
(cd "$src" && git ls-files -z --cached --others --exclude-standard |
	while IFS= read -r -d '' f; do
		case $f in obj-*) continue ;; esac
		[ -e "$f" ] && printf '%s\0' "$f"
	done | tar --null -T - -cf -) | tar -xf - -C "$work/src" || { echo "FAIL: copying the tree"; exit 1; }
# The source package (for lintian), from the clean copy.
(cd "$work" && dpkg-source -b src >"$work/source.log" 2>&1) || fail "dpkg-source -b: $(cat "$work/source.log")"
echo "building the packages (log: $work/build.log)"
if ! (cd "$work/src" && DEB_BUILD_OPTIONS="nocheck parallel=2" dpkg-buildpackage -us -uc -b) \
	>"$work/build.log" 2>&1; then
	tail -40 "$work/build.log"
	echo "FAIL: dpkg-buildpackage -us -uc -b (log: $work/build.log)"
	exit 1
fi
grep -E 'warning:' "$work/build.log" | grep -v '^dpkg-' | sed 's/^/build: /'

ma=$(dpkg-architecture -qDEB_HOST_MULTIARCH)
arch=$(dpkg-architecture -qDEB_HOST_ARCH)
unitdir=$(pkg-config --variable=systemdsystemunitdir systemd 2>/dev/null || echo /lib/systemd/system)
userunitdir=$(pkg-config --variable=systemduserunitdir systemd 2>/dev/null || echo /usr/lib/systemd/user)
deb() { echo "$work/${1}"_*_"$arch".deb; }
for p in samepage libsamepage0 libsamepage-dev; do
	[ -f "$(deb $p)" ] || { echo "FAIL: no package $p was built"; ls "$work"; exit 1; }
done
sp=$(deb samepage) lib=$(deb libsamepage0) dev=$(deb libsamepage-dev)

# --- 1. contents and relations ---------------------------------------------
files() { dpkg-deb --fsys-tarfile "$1" | tar -t | sed 's|^\./|/|' | grep -v '/$'; }
field() { dpkg-deb -f "$1" "$2" | tr ',' '\n' | sed 's/^ *//; s/ *$//'; }
want_files() {
	local pkg=$1 f
	shift
	for f in "$@"; do
		files "$(deb "$pkg")" | grep -qxF "$f" || fail "$pkg does not hold $f"
	done
}
fns=$(python3 -c 'import sys; sys.path.insert(0, sys.argv[1]); import knobs
print(" ".join(knobs.header_functions(sys.argv[2])))' "$src/tests/docs" "$src/include/samepage.h")
[ -n "$fns" ] || fail "no function found in samepage.h"

want_files samepage /etc/ksm.conf /usr/bin/ksmctl /usr/sbin/ksmctl /usr/sbin/samepaged \
	"$unitdir/ksm-apply.service" "$unitdir/ksm.service" "$unitdir/ksm-prometheus.service" \
	"$unitdir/ksm-prometheus.timer" "$unitdir/samepaged.service" "$unitdir/samepaged.socket" \
	"$userunitdir/samepaged.service" "$userunitdir/samepaged.socket" \
	/usr/share/bash-completion/completions/ksmctl /usr/share/man/man1/ksmctl.1.gz \
	/usr/share/man/man8/samepaged.8.gz /usr/share/samepage/ksm.conf /usr/share/doc/samepage/copyright
want_files libsamepage0 "/usr/lib/$ma/libsamepage.so.0" /usr/share/doc/libsamepage0/copyright
# shellcheck disable=SC2046 # one path per function
want_files libsamepage-dev /usr/include/samepage.h "/usr/lib/$ma/libsamepage.a" \
	"/usr/lib/$ma/libsamepage.so" "/usr/lib/$ma/pkgconfig/samepage.pc" /usr/share/man/man3/samepage.3.gz \
	/usr/share/doc/libsamepage-dev/examples/basic.c \
	$(for fn in $fns; do echo "/usr/share/man/man3/$fn.3.gz"; done)
files "$lib" | grep -q "^/usr/lib/$ma/libsamepage\.so\.0\.[0-9.]*$" || fail "libsamepage0 holds no libsamepage.so.0.N file"
dup=$(for d in "$sp" "$lib" "$dev"; do files "$d" | grep -v '^/usr/share/doc/'; done | sort | uniq -d)
[ -z "$dup" ] || fail "files in two packages: $dup"
[ "$(dpkg-deb --fsys-tarfile "$sp" | tar -tv ./usr/sbin/ksmctl | sed 's/.* -> //')" = ../bin/ksmctl ] ||
	fail "/usr/sbin/ksmctl is not a link to ../bin/ksmctl"
[ "$(dpkg-deb -I "$sp" conffiles 2>/dev/null)" = /etc/ksm.conf ] ||
	fail "samepage's conffiles are '$(dpkg-deb -I "$sp" conffiles 2>&1)', not /etc/ksm.conf"

for p in samepage libsamepage0 libsamepage-dev; do
	v=$(dpkg-deb -f "$(deb $p)" Version)
	v=${v#*:}
	[ "${v%%-*}" = "$version" ] ||
		fail "$p's version is $v, the project's is $version: add a debian/changelog entry (dch -v $version)"
done
field "$sp" Conflicts | grep -qx ksmtuned || fail "samepage does not conflict with ksmtuned"
field "$sp" Replaces | grep -qx ksmtuned || fail "samepage does not replace ksmtuned (both ship /usr/sbin/ksmctl)"
if files "$sp" | grep -q '/ksm-tune\.service$'; then
	field "$sp" Provides | grep -q '^ksmtuned\b' ||
		fail "samepage ships ksm-tune.service, ksmtuned's tuner, but does not Provide ksmtuned (debian/control)"
fi
field "$dev" Depends | grep -qx "libsamepage0 (= $(dpkg-deb -f "$lib" Version))" ||
	fail "libsamepage-dev does not depend on libsamepage0 of its own version: $(dpkg-deb -f "$dev" Depends)"
[ "$(dpkg-deb -f "$sp" Multi-Arch)" = foreign ] || fail "samepage is not Multi-Arch: foreign"
for d in "$lib" "$dev"; do
	[ "$(dpkg-deb -f "$d" Multi-Arch)" = same ] || fail "$(basename "$d") is not Multi-Arch: same"
done
syms=$(dpkg-deb -I "$lib" symbols 2>/dev/null)
head -1 <<<"$syms" | grep -q '^libsamepage\.so\.0 libsamepage0 ' || fail "libsamepage0 has no symbols file for libsamepage.so.0"
for fn in $fns; do
	grep -q "^ $fn@Base " <<<"$syms" || fail "$fn is not in libsamepage0's symbols file"
done
dpkg-deb -f "$sp" Depends | grep -q libsamepage0 && fail "samepage depends on libsamepage0 (its programs link libsamepage statically)"

# --- 2. lintian ------------------------------------------------------------
if command -v lintian >/dev/null; then
	lintian --fail-on error,warning "$work"/samepage_*_"$arch".changes "$work"/samepage_*.dsc \
		>"$work/lintian.log" 2>&1 ||
		fail "lintian: $(grep -E '^[EW]:' "$work/lintian.log" || cat "$work/lintian.log")"
	sed 's/^/lintian: /' "$work/lintian.log" | grep -v 'root privileges'
else
	echo "lintian is not installed: not checked (apt-get install lintian)"
fi

# --- 3. the package's files ---------------------------------------------------
x=$work/root
for d in "$sp" "$lib" "$dev"; do dpkg -x "$d" "$x"; done
out=$("$x/usr/sbin/ksmctl" --version 2>&1)
[ "$out" = "ksmctl $version" ] || fail "/usr/sbin/ksmctl --version says '$out'"
out=$("$x/usr/sbin/samepaged" --version 2>&1)
[ "$out" = "samepaged $version" ] || fail "samepaged --version says '$out'"
t=$work/tree
cp -a "$src/tests/cli/trees/linux-4.19" "$t"
k() { "$x/usr/sbin/ksmctl" --sysfs-root "$t/sys" --proc-root "$t/proc" "$@"; }
knob() { cat "$t/sys/kernel/mm/ksm/$1"; }
echo 0 >"$t/sys/kernel/mm/ksm/run"
k start 5000 100 >/dev/null || fail "ksmctl start 5000 100 exited $?"
[ "$(knob pages_to_scan) $(knob sleep_millisecs) $(knob run)" = "5000 100 1" ] ||
	fail "start 5000 100 left pages_to_scan, sleep_millisecs, run at $(knob pages_to_scan) $(knob sleep_millisecs) $(knob run)"
[ "$(k info)" = "flags 1, pages_to_scan 5000, sleep_time 100" ] || fail "ksmctl info says '$(k info)'"
k stop >/dev/null && [ "$(knob run)" = 0 ] || fail "ksmctl stop did not write run=0"
"$x/usr/bin/ksmctl" --sysfs-root "$src/tests/cli/trees/linux-6.18/sys" apply --check "$x/etc/ksm.conf" >"$work/apply.log" 2>&1 ||
	fail "ksmctl apply --check /etc/ksm.conf: $(cat "$work/apply.log")"
for u in "$x$unitdir"/* "$x$userunitdir"/*; do
	sed -n 's/^Exec[A-Za-z]*=[-@+!:]*\([^ ]*\).*/\1/p' "$u" | while read -r prog; do
		# /bin/kill (ExecReload's SIGUSR1) is procps's: a dependency.
		if [ "$prog" = /bin/kill ]; then
			field "$sp" Depends | grep -q '^procps' ||
				echo "FAIL: $(basename "$u") runs /bin/kill, and samepage does not depend on procps"
			continue
		fi
		[ -x "$x$prog" ] || echo "FAIL: $(basename "$u") runs $prog, which the package does not hold"
	done
done | grep . && bad=1
# The README's example (as the -dev package ships it), against the
# packaged header, .pc and shared library.
cflags=$(PKG_CONFIG_PATH="$x/usr/lib/$ma/pkgconfig" pkg-config --define-variable=prefix="$x/usr" \
	--cflags --libs samepage) || fail "pkg-config samepage (libsamepage-dev's samepage.pc)"
# shellcheck disable=SC2086
if cc -o "$work/basic" "$x/usr/share/doc/libsamepage-dev/examples/basic.c" $cflags 2>"$work/cc.log"; then
	readelf -d "$work/basic" | grep -q 'NEEDED.*\[libsamepage\.so\.0\]' ||
		fail "basic.c did not link libsamepage.so.0 (the shared library)"
	out=$(LD_LIBRARY_PATH="$x/usr/lib/$ma" timeout 300 "$work/basic" 2>&1)
	[[ $out =~ ^pages_sharing\ [1-9][0-9]*: ]] || fail "basic.c with libsamepage0's library: '$out'"
else
	fail "cc examples/basic.c \$(pkg-config --cflags --libs samepage): $(cat "$work/cc.log")"
fi

# --- 4. apt install in a throwaway copy of this system -------------------------
# in_copy SCRIPT: runs SCRIPT (bash) as root, chrooted into an overlay of /
# whose writes go to a tmpfs of a private mount namespace, with the packages
# in /tmp/debs; everything it changes is gone when it returns.
in_copy() {
	local d rc
	d=$(mktemp -d)
	unshare --mount --propagation private bash -c '
		set -e
		d=$1 sp=$2 lib=$3 dev=$4 script=$5
		mount -t tmpfs -o size=4g tmpfs "$d"
		mkdir "$d/upper" "$d/work" "$d/root"
		mount -t overlay overlay -o lowerdir=/,upperdir="$d/upper",workdir="$d/work" "$d/root"
		mount -t proc proc "$d/root/proc"
		mount --rbind /dev "$d/root/dev"
		# /sys read-only (systemd --test needs it and its cgroups; the
		# kernel'"'"'s KSM knobs cannot be written from the copy).
		mount -t sysfs -o ro,nosuid,nodev,noexec sysfs "$d/root/sys" 2>/dev/null &&
			mount --bind -o ro /sys/fs/cgroup "$d/root/sys/fs/cgroup" 2>/dev/null || true
		for m in run tmp; do mount -t tmpfs tmpfs "$d/root/$m"; done
		mkdir "$d/root/tmp/debs"
		cp "$sp" "$lib" "$dev" "$d/root/tmp/debs/"
		set +e
		chroot "$d/root" env -i PATH=/usr/sbin:/usr/bin:/sbin:/bin DEBIAN_FRONTEND=noninteractive \
			LC_ALL=C bash -c "cd /tmp/debs && $script"
	' _ "$d" "$sp" "$lib" "$dev" "$1"
	rc=$?
	rmdir "$d" 2>/dev/null
	return $rc
}
# What every scenario starts from: none of the packages installed (in the copy).
clean='for p in samepage libsamepage0 libsamepage-dev ksmtuned; do
	dpkg-query -W -f="\${Status}" $p 2>/dev/null | grep -q "^install\|config-files" && apt-get purge -y -q $p >/dev/null
done
apt_install() { apt-get install -y -q --no-install-recommends "$@" >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; return 1; }; }
no() { echo "FAIL: $*"; bad=1; }
bad=0
# The units the boot would start: the start jobs of systemd'"'"'s initial
# transaction for multi-user.target (systemd --test, which refuses root), one
# a line; nothing where systemd cannot compute it here.  Enabled is not
# enough: of two wanted units that conflict, the boot starts one.
boot_starts() {
	runuser -u nobody -- /lib/systemd/systemd --test --system --unit=multi-user.target --no-pager 2>/dev/null |
		sed -n "/^-> By jobs:/,\$ s/^[[:space:]]*Action: \(.*\) -> start\$/\1/p"
}
'
if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null || ! command -v unshare >/dev/null; then
	echo "apt install not tried: it needs root, apt-get and unshare (a copy of the system in a mount namespace)"
elif ! in_copy true 2>"$work/overlay.log"; then
	msg="no overlay copy of / here ($(head -c 300 "$work/overlay.log"))"
	# CI runs as root on a machine that has it: there the check is due.
	if [ -n "${CI:-}" ]; then fail "apt install: $msg"; else echo "apt install not tried: $msg"; fi
else
	in_copy "$clean"'
apt_install ./samepage_*.deb ./libsamepage0_*.deb || no "apt install ./samepage_*.deb ./libsamepage0_*.deb"
[ "$(readlink -f "$(command -v ksmctl)")" = /usr/bin/ksmctl ] || no "ksmctl on PATH is not /usr/bin/ksmctl: $(command -v ksmctl)"
[ "$(/usr/sbin/ksmctl --version)" = "ksmctl '"$version"'" ] || no "installed /usr/sbin/ksmctl --version: $(/usr/sbin/ksmctl --version 2>&1)"
dpkg-query -W -f="\${Conffiles}" samepage | grep -q "^ /etc/ksm.conf " || no "/etc/ksm.conf is not a conffile of the installed samepage"
ldconfig -p | grep -q "libsamepage\.so\.0 .*=> .*/'"$ma"'/libsamepage\.so\.0$" || no "ldconfig does not know libsamepage.so.0"
# ksmctl --user run finds the installed preload library (a private engine).
env -u SAMEPAGE_PRELOAD ksmctl --user run -- true || no "the installed ksmctl --user run -- true failed"
for u in ksm-apply.service:enabled ksm.service:disabled samepaged.socket:disabled samepaged.service:disabled \
	ksm-prometheus.timer:disabled; do
	s=$(systemctl is-enabled ${u%%:*} 2>&1)
	[ "$s" = ${u#*:} ] || no "${u%%:*} is $s after installation, not ${u#*:}"
done
# ksmctl install-service [--tune] (README, doctor'"'"'s fix) enables the
# package'"'"'s unit: a copy in /etc/systemd/system would hide the package'"'"'s
# later versions and outlive its purge, enabled, running a ksmctl that is gone.
for v in "--tune ksm-tune.service" " ksm-apply.service"; do
	ksmctl install-service ${v% *} >/tmp/is.log 2>&1 || no "ksmctl install-service ${v% *} exited $?: $(cat /tmp/is.log)"
	[ ! -e /etc/systemd/system/${v#* } ] || no "ksmctl install-service ${v% *} wrote /etc/systemd/system/${v#* } over the package'"'"'s unit"
	[ "$(systemctl is-enabled ${v#* })" = enabled ] || no "${v#* } is $(systemctl is-enabled ${v#* }) after ksmctl install-service ${v% *}"
done
boot=$(boot_starts)
if [ -n "$boot" ]; then
	grep -qx ksm-apply.service <<<"$boot" || no "the boot would not start ksm-apply.service (/etc/ksm.conf)"
	! grep -qx ksm.service <<<"$boot" || no "the boot would start ksm.service (run=1), which a new installation leaves disabled"
	grep -qx ksm-tune.service <<<"$boot" || no "the boot would not start ksm-tune.service, enabled by install-service --tune"
fi
# ksm-prometheus.service'"'"'s metrics (its command, as its timer runs it where
# node_exporter'"'"'s directory is): gone with the package, or node_exporter
# would serve the last ones for ever.
prom=/var/lib/prometheus/node-exporter/ksm.prom
mkdir -p ${prom%/*}
cmd=$(sed -n "s/^ExecStart=//p" '"$unitdir"'/ksm-prometheus.service)
if ! $cmd >/tmp/prom.log 2>&1 || [ ! -s $prom ]; then
	echo "ksm.prom not checked: the unit'"'"'s $cmd failed here: $(cat /tmp/prom.log)"
	prom=
fi
apt-get purge -y -q samepage libsamepage0 >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; no "apt-get purge samepage libsamepage0"; }
left=$(ls -d /etc/ksm.conf /usr/bin/ksmctl /usr/sbin/ksmctl /usr/lib/'"$ma"'/libsamepage.so.0 \
	/etc/systemd/system/*/ksm-apply.service /etc/systemd/system/ksm-*.service \
	/etc/systemd/system/*/ksm-tune.service 2>/dev/null)
[ -z "$left" ] || no "left after purge: $left"
[ -z "$prom" ] || [ ! -e $prom ] || no "left after purge: $prom (ksm-prometheus.service'"'"'s metrics)"
[ $bad = 0 ] && echo "ok: apt install ./samepage_*.deb ./libsamepage0_*.deb, the units, purge"
exit $bad' || bad=1
	# Over ksmtuned, twice: as it installs itself (its tuner,
	# ksmtuned.service, enabled), and with its tuner disabled.
	over='
if ! apt_install ksmtuned >/dev/null; then
	echo "apt could not install ksmtuned here: installing over it not tried"
	exit 0
fi
[ "$(systemctl is-enabled ksm.service)" = enabled ] || no "ksmtuned did not enable its ksm.service"
[ $tuner = yes ] || systemctl disable -q ksmtuned.service
apt_install ./samepage_*.deb ./libsamepage0_*.deb || no "apt install ./samepage_*.deb over ksmtuned"
[ "$(dpkg-query -W -f="\${db:Status-Abbrev}" ksmtuned)" = "rc " ] || no "ksmtuned is not removed: $(dpkg-query -W -f="\${db:Status-Abbrev}" ksmtuned)"
[ "$(/usr/sbin/ksmctl --version)" = "ksmctl '"$version"'" ] || no "/usr/sbin/ksmctl is not ours: $(/usr/sbin/ksmctl --version 2>&1)"
[ "$(systemctl is-enabled ksm.service)" = enabled ] || no "ksm.service, enabled by ksmtuned, is $(systemctl is-enabled ksm.service) after samepage replaced it"
grep -qx "ExecStart=/usr/sbin/ksmctl start" '"$unitdir"'/ksm.service || no "ksm.service is not samepage'"'"'s"
# ksmtuned'"'"'s enabled tuner goes on as ksm-tune.service, with its algorithm
# and the /etc/ksmtuned.conf apt kept; a disabled one stays off.
tune=$(systemctl is-enabled ksm-tune.service 2>&1)
if [ $tuner = yes ]; then
	[ "$tune" = enabled ] || no "ksm-tune.service is $tune after samepage replaced ksmtuned with ksmtuned.service enabled"
	grep -qx "KSMCTL_TUNE_ARGS=\"--policy ksmtuned\"" /etc/default/ksm-tune 2>/dev/null ||
		no "/etc/default/ksm-tune does not give --policy ksmtuned: $(cat /etc/default/ksm-tune 2>&1)"
	[ -f /etc/ksmtuned.conf ] || no "/etc/ksmtuned.conf is gone after apt removed ksmtuned"
	want="ksm-tune.service ksm-apply.service"
else
	[ "$tune" = disabled ] || no "ksm-tune.service is $tune after samepage replaced ksmtuned with ksmtuned.service disabled"
	[ ! -e /etc/default/ksm-tune ] || no "/etc/default/ksm-tune written, ksmtuned.service was disabled"
	want="ksm.service ksm-apply.service"
fi
boot=$(boot_starts)
if [ -z "$boot" ]; then
	echo "the boot over ksmtuned not checked: no initial transaction from systemd --test here"
else
	# ksmtuned started KSM at boot (ksm.service, then its tuner): so must
	# samepage, which also applies /etc/ksm.conf (ksm-apply.service).
	for u in $want; do
		grep -qx "$u" <<<"$boot" || no "the boot would not start $u (samepage installed over ksmtuned, tuner=$tuner): it starts $(grep ksm <<<"$boot" | tr "\n" " ")"
	done
fi
apt-get purge -y -q samepage libsamepage0 >/tmp/apt.log 2>&1 || { cat /tmp/apt.log; no "apt-get purge samepage libsamepage0"; }
[ ! -e /etc/default/ksm-tune ] || no "left after purge: /etc/default/ksm-tune"
[ $bad = 0 ] && echo "ok: installed over ksmtuned (tuner=$tuner): removed it, /usr/sbin/ksmctl and ksm.service (still enabled) are ours, the tuner goes on or stays off, purge"
exit $bad'
	in_copy "$clean tuner=yes $over" || bad=1
	in_copy "$clean tuner=no $over" || bad=1
fi

[ $bad = 0 ] && echo "ok: $(basename "$sp") $(basename "$lib") $(basename "$dev"): contents, relations, the programs, the library, $(command -v lintian >/dev/null && echo 'lintian, ')apt install"
exit $bad
