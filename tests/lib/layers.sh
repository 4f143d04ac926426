#!/bin/sh
# SPDX-License-Identifier: MIT
# layers.sh - libsamepage's files call only files listed above them in
# lib/internal.h's layer list (no file calls a file that calls it back),
# and the installed static library exports only the public API and the
# calls it interposes.
#
# Usage: layers.sh LIB_SOURCE_DIR OBJECT_DIR... ARCHIVE
set -eu
src=$1
shift
archive=$(eval echo \${$#})
objs=$(for d in "$@"; do [ -d "$d" ] && find "$d" -name '*.o'; done | sort)
[ -n "$objs" ] || { echo "no object files found in $*"; exit 1; }

# The order: " *   name.c  description" lines of internal.h's head comment.
order=$(sed -n 's/^ \*   \([a-z-]*\.c\) .*/\1/p' "$src/internal.h")
rank() { echo "$order" | grep -n -x "$1" | cut -d: -f1; }

fail=0
defs=$(mktemp)
trap 'rm -f "$defs"' EXIT
for o in $objs; do
	f=$(basename "$o" .o)
	nm --defined-only -g "$o" | awk -v f="$f" '$2 ~ /[TDBR]/ {print $3, f}'
done | sort >"$defs"

for o in $objs; do
	f=$(basename "$o" .o)
	r=$(rank "$f")
	if [ -z "$r" ]; then
		echo "lib/$f is not in internal.h's layer list"
		fail=1
		continue
	fi
	for sym in $(nm -u "$o" | awk '{print $2}'); do
		def=$(awk -v s="$sym" '$1 == s {print $2}' "$defs")
		[ -n "$def" ] && [ "$def" != "$f" ] || continue
		d=$(rank "$def")
		if [ "$d" -ge "$r" ]; then
			echo "lib/$f calls $sym of lib/$def, which is below it (or beside it)"
			fail=1
		fi
	done
done

# What interpose.c and interpose-io.c define in the C library's name.
interposed='mmap|mmap64|munmap|mremap|mprotect|pkey_mprotect|madvise|process_madvise|sigaltstack|mseal|mbind|mlock|mlock2|munlock|mlockall|munlockall|ioctl'
interposed="$interposed|read|__read_chk|pread|pread64|__pread_chk|__pread64_chk|readv|preadv"
interposed="$interposed|preadv64|preadv2|preadv64v2|recv|__recv_chk|recvfrom|__recvfrom_chk"
interposed="$interposed|recvmsg|recvmmsg|io_submit|io_getevents|io_cancel|io_destroy"
interposed="$interposed|sigprocmask|pthread_sigmask|free|realloc|close|close_range|closefrom"
interposed="$interposed|dup2|dup3"
exported=$(nm -g --defined-only "$archive" | awk 'NF == 3 {print $3}' |
	grep -v -E "^(samepage_[a-z_]+|$interposed)$" || true)
if [ -n "$exported" ]; then
	echo "libsamepage.a exports internal names:" $exported
	fail=1
fi
[ "$fail" = 0 ] && echo "layers: every call goes up the list; only the API is exported"
exit $fail
