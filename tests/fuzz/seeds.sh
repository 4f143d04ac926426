#!/bin/bash
# SPDX-License-Identifier: MIT
# Writes the seed corpora of tests/fuzz (kept in the tree; run again after
# the golden trees or cases change):
#   corpus/knob_parse    NAME\0VALUE for every tunable: defaults, limits, edges
#   corpus/knob_engine   short programs of writes and reads (fuzz_knob_engine.c)
#   corpus/ksmctl_proc   each golden tree (tests/cli/trees), once per verb
#   corpus/ksmctl_args   the golden cases' arguments, one word a line
#   corpus/ksmconf       config files: the sample, tests/cli/conf's, every
#                        tunable at its default, the refusals of cli.config
#   corpus/est_maps      a flags byte, then smaps text as Linux 6.18 writes it
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
src=$(cd "$here/../.." && pwd)
c=$here/corpus
rm -rf "$c"
mkdir -p "$c"/{knob_parse,knob_engine,ksmctl_proc,ksmctl_args,ksmconf,est_maps}

# The tunables, their defaults and limits, from the one table.
tunables=$(sed -n 's/^SAMEPAGE_KNOB(\([a-z_]*\), TUNABLE, \([A-Z]*\), \([0-9]*\), \([0-9A-Z]*\), \([0-9A-Z]*\),.*/\1 \2 \3 \4 \5/p' \
	"$src/lib/knobs.def")
n=0
while read -r name fmt def min max; do
	case $max in U32MAX) max=4294967295 ;; ULMAX) max=18446744073709551615 ;; I32MAX) max=2147483647 ;; esac
	case $fmt in
	BOOL) values=(0 1 on off y N "1
" x) ;;
	MODE) values=(none scan-time "scan-time
" "none " fast) ;;
	*) values=("$def" "$min" "$max" "+$def" "$def
" "$((min > 0 ? min - 1 : 0))" "${max}0" "-1" "0x10" " 1") ;;
	esac
	for v in "${values[@]}"; do
		printf '%s\0%s' "$name" "$v" >"$c/knob_parse/$(printf %03d $n)"
		n=$((n + 1))
	done
done <<<"$tunables"
printf 'pages_shared\0%s' 0 >"$c/knob_parse/counter"
printf 'pages_to_sacn\0%s' 1 >"$c/knob_parse/unknown"

# fuzz_knob_engine: op byte (0,1 write; 2,3 read; 4 NULL pointers), then a
# name byte (< 224: the table's entry of that index), then a value or a
# length.  Indexes: run 2, max_page_sharing 4, use_zero_pages 6,
# advisor_mode 8, pages_shared 14.
e=$c/knob_engine
printf '\x00\x02%s\x00' 1 >"$e/run1"
printf '\x00\x02%s\x00\x00\x04%s\x00' 1 2 >"$e/run1-mps"
printf '\x00\x02%s\x00\x00\x04%s\x00\x00\x02%s\x00\x00\x04%s\x00' 1 2 2 2 >"$e/run2-mps"
printf '\x00\x08%s\x00\x00\x01%s\x00' scan-time 5000 >"$e/advisor-p2s"
printf '\x00\x06%s\x00\x02\x06\x01\x02\x0e\x05' on >"$e/zero-read"
printf '\x02\x02\x00\x02\x02\x01\x02\x08\x05\x03\x0e\x14' >"$e/reads"
printf '\x00\xe0bogus\x00%s\x00\x02\xe0nope\x00\x10' 1 >"$e/unknown"
printf '\x04\x00\x04\x01\x04\x02\x04\x03\x04\x04' >"$e/nulls"

# fuzz_ksmctl_proc: a verb byte (fuzz_ksmctl_proc.c's list, 0..10), then the
# files of a tree as head(1) prints them.
for tree in "$src"/tests/cli/trees/linux-*; do
	t=${tree##*/}
	archive=$(mktemp)
	(cd "$tree" && find . -type f | sed 's|^\./||' | sort | while read -r f; do
		printf '==> %s <==\n' "$f"
		cat "$f"
		if [ -n "$(tail -c1 "$f")" ]; then echo; fi
	done) >"$archive"
	for v in $(seq 0 10); do
		{ printf "\\x$(printf %02x "$v")"; cat "$archive"; } >"$c/ksmctl_proc/$t-$v"
	done
	rm -f "$archive"
done

# fuzz_ksmctl_args: the golden cases of the verbs it runs, @CONF@/x as x.
grep -v '^#' "$src/tests/cli/golden/cases.txt" | while IFS='|' read -r name tree mode args; do
	name=$(echo "$name" | tr -d ' ')
	args=$(echo "$args" | sed 's|@CONF@/||g')
	case $args in *@TMP@* | *'$'* | *'>'*) continue ;; esac
	verb=$(echo "$args" | awk '{for (i = 1; i <= NF; i++) if ($i !~ /^-/) {print $i; exit}}')
	case $verb in check | status | set | start | stop | unmerge | apply | top | doctor | "") ;; *) continue ;; esac
	case $args in *--watch*) continue ;; esac
	printf '%s' "$(echo "$args" | xargs -n1 2>/dev/null || true)" >"$c/ksmctl_args/$name"
done
printf '%s\n' --user status --json >"$c/ksmctl_args/user-status"
printf '%s\n' set --unmerge max_page_sharing=512 --json >"$c/ksmctl_args/set-unmerge"

# fuzz_ksmconf: whole config files, good and refused.
k=$c/ksmconf
sed 's/^#run = 0$/run = 1/' "$src/cli/ksm.conf" >"$k/sample"
for f in "$src"/tests/cli/conf/*.conf; do cp "$f" "$k/$(basename "$f" .conf)"; done
while read -r name fmt def min max; do
	[ "$fmt" = MODE ] && def=none
	echo "$name = $def"
done <<<"$tunables" >"$k/defaults"
printf '\xef\xbb\xbfrun = 1\r\nsleep_millisecs=50\t# slower\r\n\r\n' >"$k/bom-crlf"
printf 'advisor_mode = scan-time\npages_to_scan = 200\n' >"$k/advisor"
printf 'pages_to_scan = 1000\0run=1\n' >"$k/nul"
printf 'run = 1\npages_to_scan = 300 junk\n' >"$k/junk"
printf 'run = 1\nrun = 0\n' >"$k/twice"
printf 'pages_to_scan = 1\x1b[31mX\nuse_zero_pages = off\n' >"$k/escape"
printf 'max_page_sharing = -1\nmerge_across_nodes = 18446744073709551616' >"$k/range"

# fuzz_est_maps: flags byte (bit 0: every compatible area), then smaps.
area() { # START END PERMS PATH VMFLAGS
	printf '%s-%s %s 00000000 00:00 0 %*s%s\nSize:                 16 kB\nRss:                   4 kB\nVmFlags: %s \n' \
		"$1" "$2" "$3" $((${#4} ? 73 - 24 - ${#1} - ${#2} : 0)) "" "$4" "$5"
}
smaps=$(
	area 5626f6595000 5626f6597000 r--p /usr/bin/head "rd mr mw me sd"
	area 5626ffe73000 5626ffe94000 rw-p '[heap]' "rd wr mr mw me ac sd"
	area 7f0a08ba0000 7f0a08ba3000 rw-p "" "rd wr mr mw me ac sd mg"
	area 7f0a08bb0000 7f0a08bb3000 rw-s '/dev/shm/a b (deleted)' "rd wr sh mr mw me ms sd"
	area 7f0a08e2f000 7f0a08e33000 r--p '[vvar]' "rd mr pf io de dd"
	area 7ffd5d4f5000 7ffd5d516000 rw-p '[stack]' "rd wr mr mw me gd ac"
	area ffffffffff600000 ffffffffff601000 --xp '[vsyscall]' "ex"
)
for f in 0 1; do
	{ printf "\\x0$f"; printf '%s\n' "$smaps"; } >"$c/est_maps/smaps-$f"
done
printf '\x01%s\n' '08048000-08056000 r-xp 00000000 03:0c 64593   /usr/sbin/gpm' \
	'bfffa000-c0000000 rwxp 00000000 00:00 0       [stack]' 'VmFlags: rd wr ex mg' >"$c/est_maps/proc5"

echo "seeds: $(find "$c" -type f | wc -l) files in $c"
