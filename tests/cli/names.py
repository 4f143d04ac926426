#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""cli.names.*: every output format stays valid for any byte in a name.

usage: names.py TEST KSMCTL SRCDIR

  tree      a recorded 6.18 tree with 255 processes: process i's comm is
            "q", byte i, "z" (every value 0x01..0xff, newline included), its
            cgroup and its QEMU -name hold byte i too.  top (text, --json,
            --by cgroup/vm), status --prometheus/--json and doctor --json
            must be valid (strict UTF-8, JSON that parses, exposition format
            that promcheck.py accepts, one table line per row), name every
            process, and give each name back when its \\xHH escapes are
            undone; per-process series keep their labels when every pid
            changes (a restart).  Integers are exact: a ksm_process_profit of 2^53 + 1
            comes out as 9007199254740993, an advisor_max_pages_to_scan of
            2^64 - 1 as 18446744073709551615; top's total saved equals status's.
  estimate  ksmctl estimate --json and its table on live processes whose
            comm holds every byte value (set through /proc/PID/comm).
"""
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time

HUGE = 2**53 + 1  # not representable as a double
U64_MAX = 2**64 - 1  # an unsigned long knob's largest value
U64_MAX = 2**64 - 1  # an unsigned long knob's largest value


def fail(msg):
    print(f"FAIL: {msg}")
    sys.exit(1)


def unescape(text):
    """Undoes procfs_escape: \\xHH is the byte HH."""
    return re.sub(rb"\\x([0-9a-f]{2})", lambda m: bytes([int(m.group(1), 16)]),
                  text.encode("utf-8"))


def strict(out, what):
    """The bytes as text: valid UTF-8 and no control character but newline."""
    try:
        text = out.decode("utf-8", errors="strict")
    except UnicodeDecodeError as e:
        fail(f"{what}: not UTF-8: {e}")
    bad = [c for c in text if (ord(c) < 0x20 and c != "\n") or 0x7f <= ord(c) < 0xa0]
    if bad:
        fail(f"{what}: control characters {bad[:5]!r}")
    return text


def run(ksmctl, args, root=None, ok=(0,)):
    cmd = [ksmctl]
    if root:
        cmd += ["--sysfs-root", f"{root}/sys", "--proc-root", f"{root}/proc",
                "--boot-root", f"{root}/boot"]
    r = subprocess.run(cmd + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, timeout=120)
    if r.returncode not in ok:
        fail(f"{' '.join(args)}: exit {r.returncode}: {r.stderr.decode(errors='replace')}")
    strict(r.stderr, " ".join(args) + " (stderr)")
    return strict(r.stdout, " ".join(args))


def put(path, data):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)


def make_tree(src, root):
    shutil.copytree(f"{src}/trees/linux-6.18/sys", f"{root}/sys")
    shutil.copytree(f"{src}/trees/linux-6.18/boot", f"{root}/boot")
    for f in ("meminfo", "uptime", "sys/kernel/osrelease", "57/comm", "57/stat"):
        put(f"{root}/proc/{f}", open(f"{src}/trees/linux-6.18/proc/{f}", "rb").read())
    procs = {}
    for b in range(1, 256):
        pid = 10000 + b
        comm = b"q" + bytes([b]) + b"z"
        cg = b"/machine.slice/u" + (bytes([b]) if b not in (0x0a, 0x2f) else b"-") + b".scope"
        vm = b"vm" + bytes([b])  # QEMU's option syntax doubles a comma
        merging = 29419 + b
        profit = HUGE if b == 0xff else merging * 4096 - 64 * 100
        d = f"{root}/proc/{pid}"
        put(f"{d}/comm", comm + b"\n")
        put(f"{d}/cgroup", b"0::" + cg + b"\n")
        put(f"{d}/cmdline", b"qemu-system-x86_64\0-name\0guest=" + vm.replace(b",", b",,") +
            b",debug-threads=on\0")
        put(f"{d}/ksm_merging_pages", b"%d\n" % merging)
        put(f"{d}/ksm_stat", b"ksm_rmap_items 100\nksm_zero_pages 0\nksm_merging_pages %d\n"
            b"ksm_process_profit %d\nksm_merge_any: yes\nksm_mergeable: yes\n" % (merging, profit))
        put(f"{d}/smaps_rollup", b"Rss: 1000 kB\nKSM: %d kB\n" % (merging * 4))
        procs[pid] = {"comm": comm, "cgroup": cg, "vm": vm,
                      "merging": merging, "profit": profit}
    return procs


def check_tree(ksmctl, src):
    root = tempfile.mkdtemp()
    try:
        procs = make_tree(src, root)
        n = len(procs)

        text = run(ksmctl, ["top"], root)
        lines = text.splitlines()
        if len(lines) != n + 2:
            fail(f"top: {len(lines)} lines for {n} processes (+ header and total)")
        for pid in procs:
            if sum(1 for l in lines if re.match(rf"\s*{pid} ", l)) != 1:
                fail(f"top: pid {pid} is not on exactly one line")

        doc = json.loads(run(ksmctl, ["top", "--json"], root))
        rows = {r["pid"]: r for r in doc["rows"]}
        if set(rows) != set(procs):
            fail(f"top --json: {len(rows)} rows, want {n}")
        for pid, p in procs.items():
            r = rows[pid]
            if unescape(r["comm"]) != p["comm"] or unescape(r["cgroup"]) != p["cgroup"]:
                fail(f"top --json: pid {pid}: comm {r['comm']!r} cgroup {r['cgroup']!r}")
            if unescape(r["vm"]) != p["vm"]:
                fail(f"top --json: pid {pid}: vm {r['vm']!r}, want {p['vm']!r}")
            if r["merged_bytes"] != p["merging"] * 4096 or type(r["merged_bytes"]) is not int:
                fail(f"top --json: pid {pid}: merged_bytes {r['merged_bytes']!r}")
            if r["profit_bytes"] != p["profit"] or type(r["profit_bytes"]) is not int:
                fail(f"top --json: pid {pid}: profit_bytes {r['profit_bytes']!r}, "
                     f"want {p['profit']}")

        for by in ("cgroup", "vm"):
            doc = json.loads(run(ksmctl, ["top", "--json", "--by", by], root))
            got = sorted(unescape(r[by]) for r in doc["rows"])
            want = sorted(set(p[by] for p in procs.values()))
            if got != want:
                fail(f"top --json --by {by}: the names differ: {got[:3]} vs {want[:3]}")
            lines = run(ksmctl, ["top", "--by", by], root).splitlines()
            if len(lines) != len(want) + 2:
                fail(f"top --by {by}: {len(lines)} lines for {len(want)} rows")

        # Files of the KSM directory that no table knows, with names that
        # are no metric name (a later kernel's, a fuzzer's): none may
        # break the exposition format.
        ksm = os.path.join(root, "sys", "kernel", "mm", "ksm")
        for odd in ("odd-name", "x.y", "sp ace", "back\\slash", "9starts_with_digit"):
            with open(os.path.join(ksm, odd), "w") as f:
                f.write("7\n")
        # An unsigned long knob of the advisor may hold up to 2^64 - 1.
        with open(os.path.join(ksm, "advisor_max_pages_to_scan"), "w") as f:
            f.write(f"{U64_MAX}\n")
        prom = run(ksmctl, ["status", "--prometheus"], root)
        path = os.path.join(root, "metrics.prom")
        with open(path, "w", encoding="utf-8") as f:
            f.write(prom)
        check = subprocess.run([sys.executable, f"{src}/promcheck.py", path],
                               stdout=subprocess.PIPE, text=True)
        if check.returncode:
            fail(f"status --prometheus: {check.stdout.strip()}")
        if not re.search(rf"^samepage_ksm_process_profit_bytes\{{[^}}]*\}} {HUGE}$", prom, re.M):
            fail(f"status --prometheus: no profit sample of exactly {HUGE}")
        if not re.search(rf"^samepage_ksm_advisor_max_pages_to_scan {U64_MAX}$", prom, re.M):
            fail(f"status --prometheus: no advisor_max_pages_to_scan sample of {U64_MAX}")

        # Restarted processes (new pids, same VMs and units) continue their
        # series: the per-process label sets do not change.
        def series(text):
            return sorted(l.rsplit(" ", 1)[0] for l in text.splitlines()
                          if l.startswith("samepage_ksm_process_"))
        before = series(prom)
        for pid in procs:
            os.rename(f"{root}/proc/{pid}", f"{root}/proc/{pid + 20000}")
        after = series(run(ksmctl, ["status", "--prometheus"], root))
        for pid in procs:
            os.rename(f"{root}/proc/{pid + 20000}", f"{root}/proc/{pid}")
        if before != after or len(before) != 3 * n:
            fail(f"status --prometheus: {len(before)} per-process series before a restart, "
                 f"{len(after)} after, {len(set(before) ^ set(after))} differ")

        status = json.loads(run(ksmctl, ["status", "--json"], root))
        top = json.loads(run(ksmctl, ["top", "--json"], root))
        saved = status["derived"]["saved_bytes"]
        if type(saved) is not int or top["saved_bytes"] != saved:
            fail(f"status saved_bytes {saved!r}, top's total saved {top['saved_bytes']!r}")
        big = status["files"]["advisor_max_pages_to_scan"]
        if type(big) is not int or big != U64_MAX:
            fail(f"status --json: advisor_max_pages_to_scan is {big!r}, not {U64_MAX}")
        if type(status["derived"]["unmerge_cost_bytes"]) is not int:
            fail("status --json: unmerge_cost_bytes is not an integer")

        json.loads(run(ksmctl, ["doctor", "--json"], root, ok=(0, 1)))
        print(f"ok: {n} names with every byte value, in top, top --json, --by cgroup/vm, "
              f"status --prometheus/--json, doctor --json; {HUGE} exact")
    finally:
        shutil.rmtree(root)


def check_estimate(ksmctl):
    # 17 children, each naming itself with 15 of the 255 byte values.
    children, names = [], {}
    for start in range(1, 256, 15):
        name = bytes(range(start, min(start + 15, 256)))
        code = ("import os,sys,time\n"
                f"open('/proc/self/comm','wb').write({name!r})\n"
                "buf = bytearray(os.urandom(1 << 16)) * 4\n"
                "sys.stdout.write('ready\\n'); sys.stdout.flush(); time.sleep(120)\n")
        p = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE)
        children.append(p)
    try:
        for p in children:
            if p.stdout.readline() != b"ready\n":
                fail("a child did not start")
            names[p.pid] = open(f"/proc/{p.pid}/comm", "rb").read()[:-1]
        covered = set(b"".join(names.values()))
        if len(covered) < 254:  # the kernel may keep a byte out of comm
            fail(f"the children's names hold only {len(covered)} byte values")
        pids = ",".join(str(p) for p in names)
        doc = json.loads(run(ksmctl, ["estimate", "--no-progress", "--json", "--pid", pids]))
        got = {p["pid"]: p for p in doc["processes"]}
        for pid, name in names.items():
            if pid not in got or unescape(got[pid]["comm"]) != name:
                fail(f"estimate --json: pid {pid}: {got.get(pid, {}).get('comm')!r}, "
                     f"want {name!r}")
        lines = run(ksmctl, ["estimate", "--no-progress", "--pid", pids]).splitlines()
        for pid in names:
            if sum(1 for l in lines if re.match(rf"\s*{pid} ", l)) != 1:
                fail(f"estimate: pid {pid} is not on exactly one line")
        print(f"ok: estimate --json and its table on {len(names)} processes named with "
              f"{len(covered)} byte values")
    finally:
        for p in children:
            p.kill()
            p.wait()


def main():
    test, ksmctl, src = sys.argv[1:4]
    if test == "tree":
        check_tree(ksmctl, src)
    elif test == "estimate":
        if os.geteuid() != 0:
            print("SKIP: estimate reads other processes' memory: run as root")
            sys.exit(77)
        check_estimate(ksmctl)
    else:
        fail(f"unknown test {test}")


if __name__ == "__main__":
    main()
