#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# bench/guests/kit.sh - builds the real guests' kit from Debian packages:
# the Debian kernel image and an initramfs of busybox-static with our /init
# (bench/guests/init.sh) and the virtio-blk and virtio-balloon modules, in OUTDIR (a build
# directory: nothing here is committed).  Downloads nothing; with --install,
# run as root, it first installs what is missing with apt-get.
#
# usage: kit.sh [--install] OUTDIR
#   writes OUTDIR/vmlinuz, OUTDIR/initramfs.gz, OUTDIR/kit.env (KERNEL_VERSION)
# exit: 0 built; 77 cannot (missing package or unreadable kernel, and not
# installable here: the message says what to install); 1 a real failure.
#
# Environment: SAMEPAGE_GUEST_KERNEL=/boot/vmlinuz-X picks the kernel (default:
# the newest /boot/vmlinuz-*); its modules come from /lib/modules/X.
set -euo pipefail

# The packages the guests need: QEMU, a static busybox, a kernel image.
packages=(qemu-system-x86 busybox-static linux-image-amd64)

install=0
if [ "${1:-}" = --install ]; then
	install=1
	shift
fi
[ $# = 1 ] || { echo "usage: $0 [--install] OUTDIR" >&2; exit 2; }
out=$1
here=$(cd "$(dirname "$0")" && pwd)

skip() {
	echo "SKIP: $*" >&2
	exit 77
}

kernel() {
	if [ -n "${SAMEPAGE_GUEST_KERNEL:-}" ]; then
		echo "$SAMEPAGE_GUEST_KERNEL"
	else
		ls -1v /boot/vmlinuz-* 2>/dev/null | tail -n 1
	fi
}

# What is missing, as a sentence, or nothing.
missing() {
	local k
	k=$(kernel)
	command -v qemu-system-x86_64 >/dev/null || echo "no qemu-system-x86_64 (package qemu-system-x86)"
	[ -x /bin/busybox ] && grep -qx cpio <(/bin/busybox --list 2>/dev/null) ||
		echo "no /bin/busybox with cpio (package busybox-static)"
	if [ -z "$k" ] || [ ! -e "$k" ]; then
		echo "no kernel image ${k:-/boot/vmlinuz-*} (package linux-image-amd64)"
	elif [ ! -r "$k" ]; then
		echo "$k is not readable by $(id -un) (run as root, or chmod a+r it)"
	fi
}

why=$(missing)
if [ -n "$why" ] && [ $install = 1 ]; then
	[ "$(id -u)" = 0 ] || skip "$(echo "$why" | paste -sd';') - and --install needs root"
	command -v apt-get >/dev/null || skip "$(echo "$why" | paste -sd';') - and no apt-get here"
	echo "kit.sh: installing ${packages[*]} with apt-get" >&2
	export DEBIAN_FRONTEND=noninteractive
	apt-get update -q >&2 && apt-get install -y -q --no-install-recommends "${packages[@]}" >&2 ||
		skip "apt-get install ${packages[*]} failed"
	why=$(missing)
fi
[ -z "$why" ] || skip "$(echo "$why" | paste -sd';' | sed 's/;/; /g') - install with: apt-get install ${packages[*]} (or $0 --install as root)"

k=$(kernel)
ver=${k##*/vmlinuz-}
mods=/lib/modules/$ver

mkdir -p "$out"
root=$(mktemp -d "$out/initramfs.XXXXXX")
trap 'rm -rf "$root"' EXIT
mkdir -p "$root"/{bin,dev,proc,sys,tmp,mnt,lib/modules}
cp /bin/busybox "$root/bin/busybox"
ln -s busybox "$root/bin/sh"
install -m 755 "$here/init.sh" "$root/init"

# virtio-blk for the I/O guest and virtio-balloon for the memory guest,
# with their dependencies in load order (the Debian kernel builds them as
# modules).  /init loads lib/modules/*.ko in
# the order of lib/modules/order.
: >"$root/lib/modules/order"
if [ -f "$mods/modules.dep" ]; then
	# deps MODULE: its dependencies (deepest first), then itself.
	deps() {
		local line d
		line=$(grep "^[^:]*/$1:" "$mods/modules.dep") || return 0
		for d in ${line#*:}; do deps "$(basename "$d")"; done
		echo "${line%%:*}"
	}
	for m in $(deps virtio_pci.ko; deps virtio_blk.ko; deps virtio_balloon.ko); do
		f=$(basename "$m")
		grep -qx "$f" "$root/lib/modules/order" && continue
		case $m in
		*.xz) xz -dc "$mods/$m" >"$root/lib/modules/${f%.xz}"; f=${f%.xz} ;;
		*.zst) zstd -qdc "$mods/$m" >"$root/lib/modules/${f%.zst}"; f=${f%.zst} ;;
		*.gz) gzip -dc "$mods/$m" >"$root/lib/modules/${f%.gz}"; f=${f%.gz} ;;
		*) cp "$mods/$m" "$root/lib/modules/$f" ;;
		esac
		echo "$f" >>"$root/lib/modules/order"
	done
fi
[ -s "$root/lib/modules/order" ] ||
	echo "kit.sh: no virtio modules in $mods: the I/O guest will have no disk (and the memory guest no balloon) unless the kernel has them built in" >&2

(cd "$root" && find . | /bin/busybox cpio -o -H newc -R 0:0 2>/dev/null) | gzip -6 >"$out/initramfs.gz.tmp"
mv "$out/initramfs.gz.tmp" "$out/initramfs.gz"
cp "$k" "$out/vmlinuz"
echo "KERNEL_VERSION=$ver" >"$out/kit.env"
echo "kit.sh: $out/vmlinuz ($ver), $out/initramfs.gz ($(du -k "$out/initramfs.gz" | cut -f1) KiB)" >&2
