#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""tests/estimate/guests_compare.py - `ksmctl estimate` against the kernel's
KSM on real QEMU guests (bench/guests/guests.py's kit, guests and engine).

Boots N guests from one kernel with the kernel's KSM held at run=0, lets
their memory settle, runs the estimate on the QEMU processes (once per
--estimate given, e.g. to compare intervals), then sets run=1 and waits
until the kernel converges (guests.py's definition: pages_sharing +
ksm_zero_pages within 1% over 3 full scans and 5 s).  Prints, for each
estimate, the estimate, the kernel's converged pages_sharing +
ksm_zero_pages and the error, and writes them to OUT/estimate.tsv.

    guests_compare.py --ksmctl build/cli/ksmctl --guests 3 --mib 512 \\
        --estimate "" --estimate "--passes 1" \\
        --baseline "/tmp/old/ksmctl estimate"

guests.py holds the project's kernel-KSM lock, saves every knob and puts
each back on exit, failure or signal.  Exit status: 0 done (with --bound,
every estimate within it), 1 failure or out of bound, 2 usage, 77 cannot
run here (no QEMU, kernel image or KSM).
"""
import argparse
import importlib.util
import json
import os
import shlex
import signal
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
spec = importlib.util.spec_from_file_location("guests", f"{ROOT}/bench/guests/guests.py")
guests = importlib.util.module_from_spec(spec)
spec.loader.exec_module(guests)
log = guests.log


def run_estimate(ksmctl, pids, extra):
    cmd = [*shlex.split(ksmctl), "--pid", ",".join(map(str, pids)), "--json", "--no-progress",
           *shlex.split(extra)]
    t0 = time.monotonic()
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=3600)
    wall = time.monotonic() - t0
    if r.returncode:
        raise guests.Fail(f"{' '.join(cmd)}: exit {r.returncode}: {r.stderr.strip()}")
    doc = json.loads(r.stdout)
    log(f"{ksmctl} {extra or '(defaults)'}: ksm_pages_saved {doc['ksm_pages_saved']} "
        f"(volatile {doc.get('pages_volatile', '-')}, scanned {doc['pages_scanned']}) in {wall:.1f} s")
    return doc, wall


def compare(a, kit, eng):
    knobs = {"pages_to_scan": a.pages_to_scan, "sleep_millisecs": a.sleep_ms,
             "use_zero_pages": a.zero}
    eng.configure(knobs)
    gs, rows = [], []
    try:
        log(f"booting {a.guests} guests of {a.mib} MiB")
        for i in range(a.guests):
            gs.append(guests.Guest(a, kit, f"est-g{i}", []))
        guests.wait_ready(gs, a.boot_timeout)
        before = guests.settle(eng, gs)
        if a.wait:
            log(f"waiting {a.wait} s more before the estimate")
            time.sleep(a.wait)
        pids = [g.pid for g in gs]
        ests = [(extra, *run_estimate(a.ksmctl, pids, extra)) for extra in a.estimate]
        if a.baseline:
            ests.append((f"baseline: {a.baseline}", *run_estimate(a.baseline, pids, "")))
        log(f"Pss {before['pss_kB'] / 1024:.0f} MiB; merging (run=1) for up to {a.duration} s")
        series, conv = [], None
        t0 = time.monotonic()
        eng.start()
        while True:
            t = time.monotonic() - t0
            series.append(guests.sample(eng, gs, t))
            conv = guests.convergence(series)
            if t >= a.duration or conv is not None:
                break
            time.sleep(max(0.0, 1 - (time.monotonic() - t0 - t)))
        end = series[-1]
        c = eng.counters()
        kernel = c["pages_sharing"] + c.get("ksm_zero_pages", 0)
        log(f"kernel: pages_sharing {c['pages_sharing']}, ksm_zero_pages {c.get('ksm_zero_pages', 0)}, "
            f"pages_volatile {c.get('pages_volatile', 0)}, pages_unshared {c.get('pages_unshared', 0)}, "
            f"full_scans {end['full_scans']}, "
            + (f"converged at {series[conv]['t_s']:.0f} s" if conv is not None else "NOT converged"))
        for extra, doc, wall in ests:
            est = doc["ksm_pages_saved"]
            rows.append({"estimate_args": extra or "(defaults)", "estimate_pages": est,
                         "kernel_pages": kernel, "error_pct": round(100.0 * (est - kernel) / max(kernel, 1), 1),
                         "pages_volatile_est": doc.get("pages_volatile", "-"),
                         "pages_scanned_est": doc["pages_scanned"], "estimate_s": round(wall, 1),
                         "cpu_s": round(doc["cpu_seconds"], 2), "bytes_read": doc["bytes_read"],
                         "kernel_sharing": c["pages_sharing"], "kernel_zero": c.get("ksm_zero_pages", 0),
                         "kernel_volatile": c.get("pages_volatile", 0),
                         "converged_s": round(series[conv]["t_s"], 1) if conv is not None else "-",
                         "guests": a.guests, "mib": a.mib, "use_zero_pages": a.zero,
                         "pages_to_scan": a.pages_to_scan, "sleep_ms": a.sleep_ms})
        if conv is None:
            raise guests.Fail(f"the kernel did not converge within {a.duration} s")
        return rows
    finally:
        for g in gs:
            g.kill()
        if gs:
            eng.wait_unmerged()


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ksmctl", default=f"{ROOT}/build/cli/ksmctl estimate",
                   help="the estimate command (default: build/cli/ksmctl estimate)")
    p.add_argument("--estimate", action="append", default=None,
                   help="options of one estimate (repeatable; default: one with its defaults)")
    p.add_argument("--baseline", help="another estimate command (e.g. an older ksmctl's "
                   "'ksmctl estimate'), run once with its own defaults, for comparison")
    p.add_argument("--out", default=f"{ROOT}/build/guests-estimate")
    guests.add_guest_options(p)  # the guests' options are guests.py's own
    p.add_argument("--wait", type=int, default=0, help="seconds to wait after boot before estimating")
    p.add_argument("--duration", type=int, default=300, help="at most this long for the kernel to converge")
    p.add_argument("--bound", type=float, help="exit 1 unless every |error| is within this percent")
    a = p.parse_args(argv)
    guests.check_guest_options(p, a)
    a.estimate = a.estimate or [""]
    a.out = os.path.abspath(a.out)
    return a


def main():
    a = parse_args()
    os.makedirs(a.out, exist_ok=True)

    def on_signal(sig, _frame):
        raise guests.Fail(f"stopped by signal {sig}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    eng, code = None, 1
    try:
        if subprocess.run(["sh", "-c", f"command -v {shlex.quote(a.qemu)}"],
                          capture_output=True).returncode:
            raise guests.Skip(f"no {a.qemu} (apt-get install qemu-system-x86)")
        kit = guests.build_kit(a)
        eng = guests.KernelKSM(a.lock_wait)
        rows = compare(a, kit, eng)
        keys = list(rows[0])
        with open(f"{a.out}/estimate.tsv", "a") as f:
            f.write("\t".join(keys) + "\n")
            for r in rows:
                f.write("\t".join(str(r[k]) for k in keys) + "\n")
        print(f"{a.guests} guests x {a.mib} MiB, use_zero_pages {a.zero}, pages_to_scan "
              f"{a.pages_to_scan}, sleep_millisecs {a.sleep_ms}")
        print(f"  {'estimate':<44}{'estimate':>10}{'kernel':>10}{'error':>9}{'volatile':>10}{'time':>8}")
        for r in rows:
            print(f"  {r['estimate_args'][:44]:<44}{r['estimate_pages']:>10}{r['kernel_pages']:>10}"
                  f"{r['error_pct']:>8}%{r['pages_volatile_est']:>10}{r['estimate_s']:>7}s")
        code = 0
        if a.bound is not None and any(abs(r["error_pct"]) > a.bound for r in rows):
            print(f"FAIL: an estimate is off by more than {a.bound}%", file=sys.stderr)
            code = 1
    except guests.Skip as e:
        print(f"SKIP: {e}", file=sys.stderr)
        code = 77
    except guests.Fail as e:
        print(f"FAIL: {e}", file=sys.stderr)
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if eng:
            for b in eng.restore():
                print(f"RESTORE FAILED: {b}", file=sys.stderr)
                code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
