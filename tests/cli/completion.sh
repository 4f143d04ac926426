#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.completion: the bash completion offers each verb exactly the options
# of its synopsis (`ksmctl VERB --help`, first paragraph) and --help, and
# after each of them its value or the options again, as the synopsis says
# of that verb (apply --sample is a flag, estimate --sample FRACTION); `set`
# gets the tunables of the recorded tree that are in lib/knobs.def's table,
# NAME=, and never a counter, then after NAME= the values of a knob that
# has a small set of them (run=0/1/2, advisor_mode=none/scan-time, the
# 0/1 knobs), whether bash splits the word at "=" or not; `top --by` its
# groupings, domain only with --user (domains are samepaged's); `--user
# run --set NAME=` the values as set does.  domain was offered without
# --user, and nothing after NAME= (nor after run --set NAME=).
#
# usage: completion.sh KSMCTL COMPLETION KNOBS_DEF TREE
set -u
ksmctl=$1 comp=$2 knobs=$3 tree=$4
bad=0
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
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
	synopsis=$("$ksmctl" "$v" --help | sed '/^$/q')
	want=$( (grep -o -- '--[a-z][a-z-]*' <<<"$synopsis"; echo --help) | sort -u | tr '\n' ' ')
	got=$(offer ksmctl "$v" --)
	[ "$got" = "$want" ] || { echo "FAIL: ksmctl $v --<TAB> offers '$got', its synopsis has '$want'"; bad=1; }
	# After an option, per verb: its value if the synopsis gives it one
	# ("--sample FRACTION": no option offered), else the options again
	# (apply's --sample is a flag, estimate's takes a value).
	valued=$(grep -o -- '--[a-z][a-z-]* [A-Za-z0-9]' <<<"$synopsis" | sed 's/ .*//')
	for o in $(grep -o -- '--[a-z][a-z-]*' <<<"$synopsis" | sort -u); do
		got=$(offer ksmctl "$v" "$o" --)
		if grep -qx -- "$o" <<<"$valued"; then
			[ -z "${got// /}" ] ||
				{ echo "FAIL: ksmctl $v $o --<TAB> offers '$got', but $o takes a value"; bad=1; }
		elif [ "$got" != "$want" ]; then
			echo "FAIL: ksmctl $v $o --<TAB> offers '$got', not the options: $o takes no value"; bad=1
		fi
	done
done
# apply's FILE, except after --sample, which takes none (> FILE).
mkdir -p "$tmp/files" && : >"$tmp/files/k.conf"
got=$(cd "$tmp/files" && offer ksmctl apply --check "")
[ "$got" = "k.conf " ] || { echo "FAIL: apply --check <TAB> offers '$got', not the files"; bad=1; }
got=$(cd "$tmp/files" && offer ksmctl apply --sample "")
[ -z "${got// /}" ] || { echo "FAIL: apply --sample <TAB> offers '$got': it takes no FILE"; bad=1; }

tunables=$(sed -n 's/^SAMEPAGE_KNOB(\([a-z0-9_]*\), TUNABLE,.*/\1/p' "$knobs")
want=$(for f in "$tree"/sys/kernel/mm/ksm/*; do
	k=$(basename "$f"); grep -qx "$k" <<<"$tunables" && echo "$k="; done | sort | tr '\n' ' ')
got=$(offer ksmctl --sysfs-root "$tree/sys" set "")
[ "$got" = "$want" ] || { echo "FAIL: set <TAB> offers '$got', the tree's tunables are '$want'"; bad=1; }
[ -e "$tree/sys/kernel/mm/ksm/pages_shared" ] && grep -q pages_shared <<<"$got" &&
	{ echo "FAIL: set offers the counter pages_shared"; bad=1; }
# The global options' --NAME=VALUE form, which ksmctl takes: bash splits
# the word at "=" (NAME, =, VALUE) by default, or keeps it whole.  The
# split form's value was taken for the verb: nothing was offered.
for words in "--sysfs-root = $tree/sys" "--sysfs-root=$tree/sys" "--proc-root = /proc --sysfs-root = $tree/sys"; do
	# shellcheck disable=SC2086 # the words of the command line
	got=$(offer ksmctl $words set "")
	[ "$got" = "$want" ] || { echo "FAIL: ksmctl $words set <TAB> offers '$got', the tree's tunables are '$want'"; bad=1; }
done
got=$(offer ksmctl --socket = /run/x.sock top --by "")
[ "$got" = "cgroup domain process vm " ] || { echo "FAIL: --socket = S top --by offers '$got'"; bad=1; }
got=$(cd "$tree" && offer ksmctl --sysfs-root = "")
[ "$got" = "boot proc sys " ] || { echo "FAIL: --sysfs-root = <TAB> offers '$got', not directories"; bad=1; }
got=$(offer ksmctl --user set "")
[ "$got" = "$(sed 's/$/=/' <<<"$tunables" | sort | tr '\n' ' ')" ] ||
	{ echo "FAIL: --user set <TAB> offers '$got', not every tunable"; bad=1; }
got=$(offer ksmctl top --by "")
[ "$got" = "cgroup process vm " ] || { echo "FAIL: top --by offers '$got' (domain is --user's)"; bad=1; }
got=$(offer ksmctl --user top --by "")
[ "$got" = "cgroup domain process vm " ] || { echo "FAIL: --user top --by offers '$got'"; bad=1; }
# set NAME=<TAB>: the knob's values where they are few, as bash gives the
# words with "=" a word break (its default: NAME, =, VALUE) and without.
while IFS='|' read -r words want; do
	eval "words=($words)" # '' is the empty word being typed
	got=$(offer ksmctl --sysfs-root "$tree/sys" set "${words[@]}")
	[ "${got% }" = "$want" ] || { echo "FAIL: set ${words[*]}<TAB> offers '$got', not '$want'"; bad=1; }
done <<'CASES'
run = ''|0 1 2
run =|0 1 2
run=|run=0 run=1 run=2
advisor_mode = s|scan-time
advisor_mode=|advisor_mode=none advisor_mode=scan-time
use_zero_pages = ''|0 1
merge_across_nodes = ''|0 1
smart_scan=|smart_scan=0 smart_scan=1
sleep_millisecs = ''|
pages_to_scan=|
run=1 use_zero_pages = ''|0 1
CASES
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
# --set NAME=<TAB>: the values, as for set; after a whole NAME = VALUE the
# options again (the three words were taken for COMMAND).
while IFS='|' read -r words want; do
	eval "words=($words)"
	got=$(offer ksmctl --user run --set "${words[@]}")
	[ "${got% }" = "$want" ] || { echo "FAIL: --user run --set ${words[*]}<TAB> offers '$got', not '$want'"; bad=1; }
done <<'CASES'
run = ''|0 1 2
run =|0 1 2
run=|run=0 run=1 run=2
use_zero_pages=|use_zero_pages=0 use_zero_pages=1
pages_to_scan = ''|
run = 1 --|--domain --help --no-merge-any --set
run=1 --|--domain --help --no-merge-any --set
CASES
got=$(offer ksmctl --user run --domain vms -- prog --)
[ -z "${got// /}" ] || { echo "FAIL: --user run ... -- prog --<TAB> offers '$got'"; bad=1; }
[ $bad = 0 ] && echo "ok: $(wc -w <<<"$verbs") verbs' options, set's tunables and values, top --by"
exit $bad
