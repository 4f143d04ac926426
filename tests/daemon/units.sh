#!/bin/sh
# SPDX-License-Identifier: MIT
# units.sh SRC_DIR SAMEPAGED: samepaged's systemd units are valid
# (systemd-analyze verify), with ExecStart pointing at the built daemon.
set -eu
src=$1 bin=$2
command -v systemd-analyze >/dev/null || { echo "SKIP: no systemd-analyze"; exit 77; }
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
sed "s|@SAMEPAGED_BIN@|$bin|" "$src/samepaged.service.in" >"$dir/samepaged.service"
cp "$src/samepaged.socket.in" "$dir/samepaged.socket"
grep -q "ExecStart=$bin --foreground" "$dir/samepaged.service"
systemd-analyze verify --man=no "$dir/samepaged.service" "$dir/samepaged.socket"
echo "units: 1 passed, 0 failed"
