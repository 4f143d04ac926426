#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.completion: the bash completion offers each verb exactly the options
# of its synopsis (`ksmctl VERB --help`, first paragraph) and --help; `set`
# gets the tunables of the recorded tree that are in lib/knobs.def's table,
# NAME=, and never a counter; `top --by` its groupings.
#
# usage: completion.sh KSMCTL COMPLETION KNOBS_DEF TREE
set -u
ksmctl=$1 comp=$2 knobs=$3 tree=$4
bad=0
# shellcheck source=/dev/null
source "$comp"

# The words _ksmctl offers for a command line ending in the word being typed.
offer() {
	COMP_WORDS=("$@")
	COMP_CWORD=$(($# - 1))
	COMPREPLY=()
	_ksmctl 2>/dev/null
	printf '%s\n' "${COMPREPLY[@]}" | sort -u | tr '\n' ' '
}

verbs=$("$ksmctl" --help | sed -n '/^Verbs:/,/^$/p' | awk 'NR > 1 && NF {print $1}')
for v in $verbs; do
	[ "$v" = run ] && continue # its arguments are a command
	want=$( ("$ksmctl" "$v" --help | sed '/^$/q' | grep -o -- '--[a-z][a-z-]*'; echo --help) | sort -u | tr '\n' ' ')
	got=$(offer ksmctl "$v" --)
	[ "$got" = "$want" ] || { echo "FAIL: ksmctl $v --<TAB> offers '$got', its synopsis has '$want'"; bad=1; }
done

tunables=$(sed -n 's/^SAMEPAGE_KNOB(\([a-z0-9_]*\), TUNABLE,.*/\1/p' "$knobs")
want=$(for f in "$tree"/sys/kernel/mm/ksm/*; do
	k=$(basename "$f"); grep -qx "$k" <<<"$tunables" && echo "$k="; done | sort | tr '\n' ' ')
got=$(offer ksmctl --sysfs-root "$tree/sys" set "")
[ "$got" = "$want" ] || { echo "FAIL: set <TAB> offers '$got', the tree's tunables are '$want'"; bad=1; }
[ -e "$tree/sys/kernel/mm/ksm/pages_shared" ] && grep -q pages_shared <<<"$got" &&
	{ echo "FAIL: set offers the counter pages_shared"; bad=1; }
got=$(offer ksmctl --user set "")
[ "$got" = "$(sed 's/$/=/' <<<"$tunables" | sort | tr '\n' ' ')" ] ||
	{ echo "FAIL: --user set <TAB> offers '$got', not every tunable"; bad=1; }
got=$(offer ksmctl top --by "")
[ "$got" = "cgroup domain process vm " ] || { echo "FAIL: top --by offers '$got'"; bad=1; }
got=$(offer ksmctl --user "")
grep -qw install-service <<<"$got" && { echo "FAIL: --user offers install-service"; bad=1; }
grep -qw estimate <<<"$got" && { echo "FAIL: --user offers estimate (the kernel's only)"; bad=1; }
# --user run is samepaged's (ksmctl --user run --domain vms -- qemu...):
# offered, with its options before COMMAND, none after it.
grep -qw run <<<"$got" || { echo "FAIL: --user does not offer run"; bad=1; }
got=$(offer ksmctl --user run --)
[ "$got" = "--domain --help --no-merge-any --set " ] ||
	{ echo "FAIL: --user run --<TAB> offers '$got'"; bad=1; }
got=$(offer ksmctl --user run --domain vms --set "")
[ "$got" = "$(sed 's/$/=/' <<<"$tunables" | sort | tr '\n' ' ')" ] ||
	{ echo "FAIL: --user run --set <TAB> offers '$got', not every tunable"; bad=1; }
got=$(offer ksmctl --user run --domain vms -- prog --)
[ -z "${got// /}" ] || { echo "FAIL: --user run ... -- prog --<TAB> offers '$got'"; bad=1; }
[ $bad = 0 ] && echo "ok: $(wc -w <<<"$verbs") verbs' options, set's tunables, top --by"
exit $bad
