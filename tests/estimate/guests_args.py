#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""tests/estimate/guests_args.py - guests_compare.py's options are the ones
bench/guests/guests.py's Guest reads: a guest started from them (QEMU
replaced by `true`, so nothing boots and no KSM is touched) finds every
one.  guests_compare.py had its own copy of guests.py's options, which
fell behind (--smp, --qemu-arg: it stopped at its first guest)."""
import importlib.util
import os
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
spec = importlib.util.spec_from_file_location("guests_compare", f"{HERE}/guests_compare.py")
gc = importlib.util.module_from_spec(spec)
spec.loader.exec_module(gc)

with tempfile.TemporaryDirectory() as out:
    a = gc.parse_args(["--qemu", "true", "--out", out, "--kit", out])
    g = gc.guests.Guest(a, out, "args", [])
    rc = g.proc.wait()
    ok = rc == 0 and g.cmd[:1] == ["true"] and "-smp" in g.cmd and a.sleep_ms == 200
    print("guest command:", " ".join(g.cmd))
    print("PASS" if ok else f"FAIL: exit {rc}, sleep_ms {a.sleep_ms}")
    sys.exit(0 if ok else 1)
