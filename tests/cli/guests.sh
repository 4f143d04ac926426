#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.doctor.guests: `ksmctl doctor` names the VMs whose guest memory no
# KSM can merge (shared or hugetlbfs guest RAM: guest-memory) and those
# whose private guest RAM is not marked mergeable (mem-merge=off:
# vm-opted-out), and no other.
#  tree  a recorded 6.18 tree with four processes: QEMU with a shared memfd
#        backend of 1 GiB (900 MiB resident; named by libvirt's machine
#        scope), qemu-kvm with 512 MiB of hugetlbfs, QEMU with 1.5 GiB of
#        private guest RAM, and a shell with a shared 1 GiB mapping.  The
#        finding is information (2 of 3 VMs, less out of reach than in),
#        names the first two with their sizes and neither of the others;
#        without the private VM it is a warning and doctor exits 1.  A
#        fifth, QEMU with 1 GiB of private memory not marked mergeable, is
#        the one vm-opted-out names.
#  live  this machine's /proc: FAKEVM (fakevm.c, built as
#        qemu-system-x86_64) with 64 MiB of shared memory, then with 64 MiB
#        of hugetlbfs (as root: 32 huge pages reserved, vm.nr_hugepages put
#        back on every exit), is named with its pid; with private memory
#        marked mergeable it is named by neither finding; not marked, by
#        vm-opted-out.  With a private file mapping (-mem-path on tmpfs,
#        share=off) it is named by neither: the kernel merges its pages.
#  user  (with SAMEPAGED) the same FAKEVM under `ksmctl --user run` against
#        a private samepaged: with 64 MiB in a private file mapping it is
#        named by `ksmctl --user doctor` (libsamepage merges anonymous
#        memory only), with shared memory too.
#
# usage: guests.sh KSMCTL SRCDIR FAKEVM [SAMEPAGED]
set -u
ksmctl=$1 src=$2 fakevm=$3 samepaged=${4:-}
tmp=$(mktemp -d) vm_pid= live_pid= hp_old= daemon_pid= shm=
bad=0

cleanup()
{
	[ -n "$vm_pid" ] && kill "$vm_pid" 2>/dev/null && wait "$vm_pid" 2>/dev/null
	[ -n "$daemon_pid" ] && kill "$daemon_pid" 2>/dev/null && wait "$daemon_pid" 2>/dev/null
	[ -n "$hp_old" ] && echo "$hp_old" >/proc/sys/vm/nr_hugepages
	rm -rf "$tmp" ${shm:+"$shm"}
}
trap cleanup EXIT

fail() { echo "FAIL: $*"; bad=1; }

# live KIND [ID [KSMCTL_ARGS...]]: fakevm with 64 MiB of KIND (under
# `ksmctl --user run` with KSMCTL_ARGS); the evidence of doctor's finding
# ID (guest-memory) in $got, the fakevm's pid in $live_pid
live()
{
	local kind=$1 id=${2:-guest-memory}
	shift $(($# < 2 ? $# : 2))
	rm -f "$tmp/in" && mkfifo "$tmp/in"
	# Emptied now: the child's ">" may come after the wait below reads
	# the last fakevm's "ready".
	: >"$tmp/ready"
	if [ $# -gt 0 ]; then
		"$ksmctl" "$@" run --domain guests -- "$fakevm" "--$kind" 64 <"$tmp/in" >"$tmp/ready" 2>&1 &
	else
		"$fakevm" "--$kind" 64 <"$tmp/in" >"$tmp/ready" 2>&1 &
	fi
	vm_pid=$! live_pid=$!
	exec 9>"$tmp/in"
	got=
	for _ in $(seq 100); do grep -q ready "$tmp/ready" && break; sleep 0.1; done
	if grep -q ready "$tmp/ready"; then
		# Under --user, a client of samepaged once it has said HELLO,
		# which may come after "ready": doctor sees it from then on.
		for _ in $(seq 100); do
			[ $# -gt 0 ] || break
			"$ksmctl" "$@" top 2>/dev/null | grep -qw "$live_pid" && break
			sleep 0.1
		done
		"$ksmctl" "$@" doctor --json >"$tmp/live.json"
		got=$(python3 -c '
import json, sys
for f in json.load(open(sys.argv[1]))["findings"]:
    if f["id"] == sys.argv[2]:
        print(f["evidence"])' "$tmp/live.json" "$id")
	else
		fail "fakevm --$kind: $(cat "$tmp/ready")"
	fi
	exec 9>&-
	wait "$vm_pid"
	vm_pid=
	echo "live, $kind, $id${*:+, $*}: $got"
}
# named WHAT: whether $got names the live VM with 64 MiB of WHAT; a host
# with four VMs that keep more out of reach lists ours among "N more" (skip)
named()
{
	[[ $got == *"(qemu-system-x86, pid $live_pid): 64.0 MiB $1"* ]] && return 0
	[[ $got == *" more. In all"* ]] && { echo "skip: four larger VMs listed first"; return 0; }
	return 1
}

if [ -n "$samepaged" ]; then
	[ -z "${SAMEPAGE_SANITIZED:-}" ] || { echo "skip: ksmctl --user run in a sanitizer build"; exit 77; }
	[ "$(stat -f -c %T /dev/shm 2>/dev/null)" = tmpfs ] || { echo "skip: /dev/shm is not tmpfs"; exit 77; }
	shm=$(mktemp -d /dev/shm/ksmctl-guests.XXXXXX)
	sock=$tmp/s.sock
	"$samepaged" --foreground --socket "$sock" --state-dir "$shm/state" 2>"$tmp/daemon.log" &
	daemon_pid=$!
	for _ in $(seq 100); do "$ksmctl" --socket "$sock" check >/dev/null 2>&1 && break; sleep 0.1; done
	live file guest-memory --user --socket "$sock"
	named "in a private file mapping" || fail "--user: file-backed guest RAM not named: $got"
	live shared guest-memory --user --socket "$sock"
	named shared || fail "--user: shared guest RAM not named: $got"
	live mergeable guest-memory --user --socket "$sock"
	[[ $got == *"pid $live_pid)"* ]] && fail "--user: anonymous guest RAM named: $got"
	[ $bad = 0 ] && echo "ok: ksmctl --user doctor names the VMs libsamepage cannot merge"
	exit $bad
fi

# ---- tree: made-up processes in a recorded tree ----
cp -a "$src/trees/linux-6.18" "$tmp/tree"
root=$tmp/tree
area()	# START SIZE_KB PERMS PATH RSS_KB ANON_KB HUGETLB_KB FLAGS
{
	printf '%s-%x %s 00000000 00:01 42 %s\n' "$1" $((0x$1 + $2 * 1024)) "$3" "$4"
	printf 'Size: %d kB\nRss: %d kB\nAnonymous: %d kB\nShared_Hugetlb: 0 kB\nPrivate_Hugetlb: %d kB\nVmFlags: %s\n' \
		"$2" "$5" "$6" "$7" "$8"
}
proc()	# PID COMM CMDLINE CGROUP; smaps on stdin
{
	mkdir -p "$root/proc/$1"
	echo "$2" >"$root/proc/$1/comm"
	printf '%b' "$3" >"$root/proc/$1/cmdline"
	echo "0::$4" >"$root/proc/$1/cgroup"
	cat >"$root/proc/$1/smaps"
}
{
	area 7f0000000000 1048576 rw-s '/memfd:memory-backend-memfd (deleted)' 921600 0 0 'rd wr sh mr mw me ms'
	area 7f1000000000 4096 rw-s /dev/shm/ring 4096 0 0 'rd wr sh mr mw me ms'
} | proc 5100 qemu-system-x86 'qemu-system-x86_64\0-m\0001024\0' \
	'/machine.slice/machine-qemu\x2d1\x2dweb.scope/libvirt/emulator'
area 7f2000000000 524288 rw-p '/dev/hugepages/libvirt/qemu/2-db (deleted)' 0 0 524288 'rd wr mr mw me de ht' |
	proc 5200 qemu-kvm 'qemu-kvm\0-name\0guest=db,debug-threads=on\0' '/machine.slice/x.scope'
area 7f3000000000 2097152 rw-p '' 1572864 1572864 0 'rd wr mr mw me ac mg' |
	proc 5300 qemu-system-x86 'qemu-system-x86_64\0-name\0guest=plain\0' '/'
area 7f4000000000 1048576 rw-s /dev/shm/big 1048576 0 0 'rd wr sh mr mw me ms' |
	proc 5400 bash 'bash\0' '/'
area 7f5000000000 1048576 rw-p '' 1048576 1048576 0 'rd wr mr mw me ac' |
	proc 5500 qemu-system-x86 'qemu-system-x86_64\0-machine\0mem-merge=off\0-name\0guest=off\0' '/'

doctor() { "$ksmctl" --sysfs-root "$root/sys" --proc-root "$root/proc" --boot-root "$root/boot" doctor "$@"; }
finding()	# ID: that object of doctor --json, one line
{
	doctor --json | python3 -c '
import json, sys
for f in json.load(sys.stdin)["findings"]:
    if f["id"] == sys.argv[1]:
        print(f["severity"], "|", f["summary"], "|", f["evidence"])' "$1"
}
got=$(finding vm-opted-out)
echo "tree, opted out: $got"
[[ $got == "info | 1 of 4 VMs opted out of KSM | off (qemu-system-x86, pid 5500): 1.0 GiB of private memory, none marked mergeable" ]] ||
	fail "opted out: $got"
rm -rf "$root/proc/5500"
got=$(finding guest-memory)
echo "tree, 3 VMs: $got"
[[ $got == "info | 2 of 3 VMs keep guest memory that KSM cannot merge |"* ]] || fail "not info, 2 of 3 VMs: $got"
[[ $got == *"web (qemu-system-x86, pid 5100): 900.0 MiB shared"* ]] || fail "the shared VM, by its machine scope: $got"
[[ $got == *"db (qemu-kvm, pid 5200): 512.0 MiB hugetlbfs"* ]] || fail "the hugetlbfs VM: $got"
[[ $got == *"pid 5300"* || $got == *"pid 5400"* ]] && fail "names a VM of private memory, or a shell: $got"
[[ $got == *"In all 1.4 GiB out of reach, against 1.5 GiB of private memory"* ]] || fail "totals: $got"
rm -rf "$root/proc/5300"
got=$(finding guest-memory)
echo "tree, 2 VMs: $got"
[[ $got == "warning | 2 of 2 VMs"* ]] || fail "not a warning without the private VM: $got"
doctor >"$tmp/out"
rc=$?
[ $rc = 1 ] || fail "doctor exits $rc with the warning, not 1"
grep -q 'use transparent huge pages instead' "$tmp/out" || fail "no fix in the text: $(cat "$tmp/out")"

# ---- live: this machine's /proc ----
live shared
named shared || fail "live shared memory not named: $got"
live mergeable
[[ $got == *"pid $live_pid)"* ]] && fail "live private memory named: $got"
live mergeable vm-opted-out
[[ $got == *"pid $live_pid)"* ]] && fail "live mergeable memory said opted out: $got"
live private vm-opted-out
# (64 MiB and what else the process has in large private areas: a
# sanitizer's runtime has some)
[[ $got == *"(qemu-system-x86, pid $live_pid): 6"*" MiB of private memory, none marked mergeable"* ||
	$got == *" more" ]] || fail "live memory not marked mergeable not named: $got"
live file
[[ $got == *"pid $live_pid)"* ]] && fail "live file-backed private memory named: $got"
if [ "$(id -u)" = 0 ] && hp_old=$(cat /proc/sys/vm/nr_hugepages 2>/dev/null); then
	echo $((hp_old + 32)) >/proc/sys/vm/nr_hugepages
	if [ "$(cat /proc/sys/vm/nr_hugepages)" -ge $((hp_old + 32)) ]; then
		live hugetlb
		named hugetlbfs || fail "live hugetlbfs not named: $got"
	else
		echo "skip hugetlbfs: the kernel gave $(cat /proc/sys/vm/nr_hugepages) huge pages of $((hp_old + 32)) asked"
	fi
else
	echo "skip hugetlbfs: reserving huge pages needs root"
fi
[ $bad = 0 ] && echo "ok: doctor names the VMs whose guest memory no KSM merges"
exit $bad
