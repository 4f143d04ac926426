#!/usr/bin/env bash
# SPDX-License-Identifier: MIT
# cli.docs: every verb that `ksmctl --help` lists has --help (exit 0, with
# --user too), a section in the man page docs/ksmctl.1 and a place in the
# bash completion;
# every exit status of util.h is documented; each line of a verb's
# synopsis names ksmctl (or continues the line above); no --help prints "%%"; the
# man page, rendered, runs no two sentences together; the
# LICENSE file is the MIT licence every SPDX line names.
#
# usage: docs.sh KSMCTL PROJECT_SOURCE_DIR
set -u
ksmctl=$1 top=$2
man=$top/docs/ksmctl.1 comp=$top/cli/ksmctl.bash-completion.in
bad=0
verbs=$("$ksmctl" --help | sed -n '/^Verbs:/,/^$/p' | awk 'NR > 1 && NF {print $1}')
[ -n "$verbs" ] || { echo "FAIL: ksmctl --help lists no verbs"; exit 1; }
for v in $verbs; do
	help=$("$ksmctl" "$v" --help 2>&1) || { echo "FAIL: ksmctl $v --help exits $?"; bad=1; }
	# The help comes before any refusal of the global options (estimate's
	# did not: "--user estimate --help" was refused, exit 2).
	"$ksmctl" --user "$v" --help >/dev/null 2>&1 || { echo "FAIL: ksmctl --user $v --help exits $?"; bad=1; }
	# A printf escape printed as it is ("95%%") means the text went through fputs.
	grep -q '%%' <<<"$help" && { echo "FAIL: ksmctl $v --help prints '%%'"; bad=1; }
	# Each synopsis line is a command (usage: ksmctl ..., or ksmctl ...
	# under it) or indented continuation: never a bare "--user VERB".
	sed '/^$/q' <<<"$help" | grep -Ev '^($|usage: ksmctl |       ksmctl |    )' |
		sed "s/^/FAIL: ksmctl $v --help: a synopsis line without ksmctl: /" | grep . && bad=1
	grep -q "^\.B.* $(sed 's/-/\\\\-/g' <<<"$v")\b\|^\.B $(sed 's/-/\\\\-/g' <<<"$v")\$\|^\.BR $v " "$man" ||
		{ echo "FAIL: the man page has no entry for $v"; bad=1; }
	grep -qw -- "$v" "$comp" || { echo "FAIL: the bash completion lacks $v"; bad=1; }
done
for code in 0 1 2 3 4 5; do
	grep -q "^\.B $code\$" "$man" || { echo "FAIL: the man page does not document exit status $code"; bad=1; }
done
# Rendered, no sentence runs into the next ("set).Each": a .BR line's
# third word is joined to the second).
if command -v groff >/dev/null; then
	groff -man -Tutf8 -rLL=300n "$man" 2>/dev/null | col -b | grep -E '[a-z)]\.[A-Z][a-z]' |
		sed 's/^ */FAIL: the man page runs two sentences together: /' | grep . && bad=1
fi
bash -n "$comp" || bad=1
# The licence the SPDX lines name is in the tree.
grep -q '^MIT License$' "$top/LICENSE" 2>/dev/null || { echo "FAIL: no MIT LICENSE file"; bad=1; }
other=$(cd "$top" && git grep -h 'SPDX-License-Identifier:' 2>/dev/null | grep -v 'SPDX-License-Identifier: MIT' | grep -v "grep" | head -3)
[ -z "$other" ] || { echo "FAIL: SPDX lines other than MIT: $other"; bad=1; }
[ $bad = 0 ] && echo "ok: $(wc -w <<<"$verbs") verbs documented"
exit $bad
