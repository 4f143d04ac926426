#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""bench/guests/guests.py - real QEMU guests as samepage's client.

  guests.py run      boots N guests from one kernel, lets one engine merge
                     them, measures every second, reports memory before and
                     after, convergence time and scanner CPU (TSV + table)
  guests.py compare  the same guests under each configuration in turn: no
                     merging, the kernel's KSM with use_zero_pages 0 and 1,
                     and libsamepage through `ksmctl --user run` once it
                     exists (until then the column says it is not available)
  guests.py io       I/O guests (virtio-blk on a raw file, one with
                     aio=threads, one with aio=native,cache=none) writing and
                     re-reading checksummed data while merging runs hot
  guests.py postcopy a live migration with postcopy of a guest that checks
                     its memory every second, from one QEMU to another on
                     this host, both merged by the engine
  guests.py balloon  guests that check their memory every second, each with
                     a virtio-balloon device inflated (QEMU discards the
                     guest's memory it gives back, merged pages among it)
                     and deflated while the engine merges them
  guests.py churn    SMP guests (-smp 2: a TCG thread per vCPU) with a
                     writer per vCPU rewriting and checking its memory
                     round after round while merging runs hot

The guests come from kit.sh (the Debian kernel and a busybox initramfs with
init.sh as /init), built afresh in OUT/kit.  Every guest runs as
  LAUNCHER... qemu-system-x86_64 -accel tcg -m MIB -smp SMP -nographic ...
with QEMU's default mem-merge=on (guest RAM is madvise(MADV_MERGEABLE)).
An engine decides who merges: "none" (the kernel's KSM held at run=0),
"kernel" (/sys/kernel/mm/ksm) or "samepaged" (libsamepage: a private
samepaged, the guests started by `ksmctl --user run --domain vms --`).

The kernel's KSM is one global state: every engine holds the project's lock
(/tmp/samepage-kernel-ksm.lock, flock; SAMEPAGE_KSM_LOCK_HELD=1 when the
caller holds it), waits until nobody else uses KSM, saves every tunable and
puts each back on exit, on failure and on SIGINT/SIGTERM/SIGHUP (run=2
first, run last), and says so if one could not be put back (exit 1).

Exit status: 0 done (and every check held with --strict), 1 failure,
2 usage, 77 cannot run here (no QEMU, kernel image or KSM; see the message).
"""
import argparse
import ctypes
import fcntl
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
KSM = "/sys/kernel/mm/ksm"
LOCK = "/tmp/samepage-kernel-ksm.lock"
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024
TICK = os.sysconf("SC_CLK_TCK")
# struct ksm_rmap_item on 64-bit kernels: general_profit's unit of metadata.
RMAP_ITEM_BYTES = 64
# Slab per separate mapping (vm_area_struct, maple tree, anon_vma_chain):
# ~15 MB of Slab for ~65k mappings, measured here (lib/engines.c's
# MAPPING_SLAB_BYTES).
MAPPING_SLAB_BYTES = 240
# Every tunable, in the order they are put back: advisor_mode before
# pages_to_scan (changing the mode resets it), run last (see harness.c).
KNOBS = ["advisor_mode", "max_page_sharing", "merge_across_nodes", "use_zero_pages",
         "smart_scan", "stable_node_chains_prune_millisecs", "advisor_max_cpu",
         "advisor_min_pages_to_scan", "advisor_max_pages_to_scan",
         "advisor_target_scan_time", "sleep_millisecs", "pages_to_scan", "run"]
COUNTERS = ["pages_shared", "pages_sharing", "pages_unshared", "pages_volatile",
            "ksm_zero_pages", "full_scans", "general_profit"]
READY = "SAMEPAGE-GUEST-READY"
# Console lines of a guest kernel in trouble.
KERNEL_TROUBLE = ("I/O error", "Buffer I/O error", "BUG:", "Oops", "Kernel panic",
                  "Call Trace", "general protection fault", "EXT4-fs error")


class Skip(Exception):
    """Cannot run here: exit 77 with the reason."""


class Fail(Exception):
    """A real failure: exit 1 with the reason."""


T0 = time.monotonic()


def log(msg):
    print(f"guests: [{time.monotonic() - T0:6.1f}s] {msg}", file=sys.stderr, flush=True)


def read_text(path):
    with open(path) as f:
        return f.read()


def proc_fields(path, keys):
    """'Name: value kB' or 'name value' files (meminfo, smaps_rollup,
    ksm_stat): the first number of each key, as an int."""
    return text_fields(read_text(path), keys)


def text_fields(text, keys):
    """proc_fields() of a file's text already read."""
    out = {}
    for line in text.splitlines():
        name, _, rest = line.partition(" ")
        name = name.rstrip(":")
        if name in keys and rest.split() and rest.split()[0].lstrip("-").isdigit():
            out[name] = int(rest.split()[0])
    return out


def cpu_seconds(stat_path):
    """utime + stime of /proc/.../stat, in seconds."""
    rest = read_text(stat_path).rpartition(")")[2].split()
    return (int(rest[11]) + int(rest[12])) / TICK


def map_count(pid):
    with open(f"/proc/{pid}/maps", "rb") as f:
        return f.read().count(b"\n")


def pss_of_files(pid, prefix):
    """The Pss (kB) of a process's mappings of files under prefix."""
    total, inside = 0, False
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            if line[0] in "0123456789abcdef" and "-" in line.split(" ", 1)[0]:
                fields = line.split(None, 5)
                inside = len(fields) == 6 and fields[5].startswith(prefix)
            elif inside and line.startswith("Pss:"):
                total += int(line.split()[1])
    return total


def find_comm(name):
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                if read_text(f"/proc/{d}/comm").strip() == name:
                    return int(d)
            except OSError:
                pass
    return None


# ---------------------------------------------------------------- engines


class KernelKSM:
    """The kernel's KSM under the project's lock, every tunable saved and
    put back by restore().  merge=False holds it at run=0 (no merging)."""

    name = "kernel"

    def __init__(self, lock_wait, merge=True):
        self.merge = merge
        self.launch = []  # e.g. `ksmctl run --` (prctl merge-any)
        self.saved = {}
        self.lock_fd = None
        if not os.path.isdir(KSM):
            raise Skip(f"this kernel has no {KSM} (CONFIG_KSM is off)")
        if not os.access(f"{KSM}/run", os.W_OK):
            raise Fail(f"{KSM}/run is not writable: run as root")
        if not os.environ.get("SAMEPAGE_KSM_LOCK_HELD"):
            self.lock_fd = os.open(LOCK, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
            deadline = time.monotonic() + lock_wait
            while True:
                try:
                    fcntl.flock(self.lock_fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if deadline - time.monotonic() >= lock_wait - 1:
                        log(f"waiting for {LOCK} (another test or benchmark uses the kernel's KSM)")
                    if time.monotonic() > deadline:
                        raise Fail(f"{LOCK} stayed taken for {lock_wait} s")
                    time.sleep(1)
        deadline = time.monotonic() + lock_wait
        while (why := self.busy()):
            if time.monotonic() > deadline:
                raise Fail(f"the kernel's KSM stayed in use ({why}) for {lock_wait} s")
            log(f"the kernel's KSM is in use ({why}), waiting")
            time.sleep(10)
        for k in KNOBS:
            if os.path.exists(f"{KSM}/{k}"):
                self.saved[k] = self.read(k)
        self.ksmd = find_comm("ksmd")

    @staticmethod
    def read(name):
        v = read_text(f"{KSM}/{name}").strip()
        if "[" in v:  # advisor_mode: "[none] scan-time"
            v = v.split("[")[1].split("]")[0]
        return v

    @staticmethod
    def write(name, value):
        with open(f"{KSM}/{name}", "w") as f:
            f.write(str(value))

    def busy(self):
        # run=2 with nothing merged is stopped too (someone's unmerge, left).
        if self.read("run") not in ("0", "2"):
            return f"run is {self.read('run')}"
        if int(self.read("pages_shared")) or int(self.read("ksm_zero_pages")):
            return "pages are merged"
        me = os.getpid()
        for d in os.listdir("/proc"):
            if not d.isdigit() or int(d) == me:
                continue
            try:
                s = read_text(f"/proc/{d}/ksm_stat")
            except OSError:
                continue
            # (parsed from what was read: the process may be gone now)
            st = text_fields(s, ["ksm_merging_pages"])
            if "ksm_mergeable: yes" in s or "ksm_merge_any: yes" in s or st.get("ksm_merging_pages"):
                return f"pid {d} has mergeable memory"
        return None

    def configure(self, knobs):
        """Writes knobs (a dict without run) with run=0."""
        self.write("run", "0")
        if self.saved.get("advisor_mode", "none") != "none":
            self.write("advisor_mode", "none")
        for k in KNOBS:
            if k in knobs:
                self.write(k, knobs[k])

    def start(self):
        if self.merge:
            self.write("run", "1")

    def freeze(self):
        self.write("run", "0")

    def counters(self):
        return {k: int(self.read(k)) for k in COUNTERS if os.path.exists(f"{KSM}/{k}")}

    def scanner_cpu(self, pids):
        return cpu_seconds(f"/proc/{self.ksmd}/stat") if self.ksmd else 0.0

    def outside_kB(self, pids):
        """Memory the engine holds outside the guests' Pss: the guests'
        rmap items (slab), as general_profit counts them."""
        rmap = sum(proc_fields(f"/proc/{p}/ksm_stat", ["ksm_rmap_items"]).get("ksm_rmap_items", 0)
                   for p in pids)
        return rmap * RMAP_ITEM_BYTES // 1024

    def launcher(self):
        return self.launch

    def wait_unmerged(self, timeout=120):
        """After the guests are gone: ksmd frees a dead process's rmap
        items only when it runs (or at run=2), so unmerge, then stop."""
        deadline = time.monotonic() + timeout
        self.write("run", "2")
        self.write("run", "0")
        while int(self.read("pages_shared")) or int(self.read("ksm_zero_pages")):
            if time.monotonic() > deadline:
                raise Fail(f"pages still merged {timeout} s after the guests ended")
            time.sleep(0.5)

    def checks(self, pids):
        """The kernel's arithmetic on the frozen counters (run=0): the same
        numbers read twice in a row, so that nothing moved between reads."""
        prev = None
        for _ in range(50):
            c = self.counters()
            per = [proc_fields(f"/proc/{p}/ksm_stat",
                               ["ksm_rmap_items", "ksm_zero_pages", "ksm_merging_pages"])
                   for p in pids]
            snap = (c, per)
            if snap == prev:
                break
            prev = snap
            time.sleep(0.2)
        merging = sum(p["ksm_merging_pages"] for p in per)
        rmap = sum(p["ksm_rmap_items"] for p in per)
        zero = sum(p["ksm_zero_pages"] for p in per)
        out = [
            ("sum ksm_merging_pages = pages_shared + pages_sharing",
             merging, c["pages_shared"] + c["pages_sharing"]),
            ("sum ksm_rmap_items = shared + sharing + unshared + volatile",
             rmap, c["pages_shared"] + c["pages_sharing"] + c["pages_unshared"] + c["pages_volatile"]),
            ("sum ksm_zero_pages (per guest) = ksm_zero_pages", zero, c["ksm_zero_pages"]),
        ]
        if "general_profit" in c:
            out.append(("general_profit = (pages_sharing + ksm_zero_pages) * 4096 - rmap_items * 64",
                        c["general_profit"],
                        (c["pages_sharing"] + c["ksm_zero_pages"]) * PAGE_KB * 1024 - rmap * RMAP_ITEM_BYTES))
        out.append(("every guest maps merged pages (guests with ksm_merging_pages > 0)",
                    sum(1 for p in per if p["ksm_merging_pages"] + p["ksm_zero_pages"] > 0), len(pids)))
        return out

    def restore(self):
        """Puts every saved tunable back; returns the ones that did not."""
        if not self.saved:
            return []
        try:
            self.write("run", "2")
            deadline = time.monotonic() + 60
            while int(self.read("pages_shared")) and time.monotonic() < deadline:
                time.sleep(0.1)
        except OSError:
            pass
        bad = []
        for k in KNOBS:
            if k not in self.saved:
                continue
            # pages_to_scan is EINVAL under the advisor: its mode decides it.
            if k == "pages_to_scan" and self.saved.get("advisor_mode") == "scan-time":
                continue
            try:
                if self.read(k) != self.saved[k]:
                    self.write(k, self.saved[k])
            except OSError:
                pass
            if self.read(k) != self.saved[k]:
                bad.append(f"{k} is {self.read(k)}, was {self.saved[k]}")
        self.saved = {}
        if self.lock_fd is not None:
            os.close(self.lock_fd)
            self.lock_fd = None
        return bad


class Samepaged:
    """libsamepage: a private samepaged, the guests started by
    `ksmctl --user run --domain vms --`, knobs and counters through
    `ksmctl --user set/status`.  Available once `ksmctl --user run`
    runs a program (it is refused today); unavailable() says why not."""

    name = "samepaged"
    merge = True

    def __init__(self, ksmctl, samepaged, out, launcher=None, merge_any=True):
        self.ksmctl, self.samepaged = ksmctl, samepaged
        self.merge_any = merge_any
        self.dir = tempfile.mkdtemp(prefix="samepaged.", dir=out)
        self.state = tempfile.mkdtemp(prefix="samepage-guests.", dir="/dev/shm")
        self.env = dict(os.environ, SAMEPAGE_SOCKET=f"{self.dir}/sock")
        self.daemon = None
        self.launch = launcher
        self.why_not = self._start()

    def _start(self):
        for p in (self.ksmctl, self.samepaged):
            if not (p and os.access(p, os.X_OK)):
                return f"no {p or 'ksmctl/samepaged'} (make build)"
        self.daemon = subprocess.Popen(
            [self.samepaged, "--foreground", "--socket", f"{self.dir}/sock", "--state-dir", self.state],
            stdout=subprocess.DEVNULL, stderr=subprocess.STDOUT)
        for _ in range(100):
            if os.path.exists(f"{self.dir}/sock"):
                break
            time.sleep(0.05)
        if self.launch:
            return None  # the caller's own launcher: no need for `ksmctl --user run`
        probe = self.ctl("run", "--domain", "vms", "--", "/bin/true", check=False)
        if probe.returncode != 0:
            first = (probe.stderr.strip().splitlines() or ["exit %d" % probe.returncode])[0]
            return f"`ksmctl --user run` does not run programs yet ({first})"
        return None

    def unavailable(self):
        return self.why_not

    def ctl(self, *args, check=True):
        r = subprocess.run([self.ksmctl, "--user", *args], env=self.env, capture_output=True, text=True)
        if check and r.returncode:
            raise Fail(f"ksmctl --user {' '.join(args)}: exit {r.returncode}: {r.stderr.strip()}")
        return r

    def configure(self, knobs):
        self.ctl("set", *[f"{k}={v}" for k, v in knobs.items()], "run=0")

    def start(self):
        self.ctl("set", "run=1")

    def freeze(self):
        self.ctl("set", "run=0")

    def counters(self):
        files = json.loads(self.ctl("status", "--json").stdout)["files"]
        return {k: int(files[k]) for k in COUNTERS if k in files}

    def scanner_cpu(self, pids):
        """The scanner threads inside the guests plus samepaged itself."""
        total = cpu_seconds(f"/proc/{self.daemon.pid}/stat")
        for p in pids:
            for t in os.listdir(f"/proc/{p}/task"):
                try:
                    if read_text(f"/proc/{p}/task/{t}/comm").startswith("samepage"):
                        total += cpu_seconds(f"/proc/{p}/task/{t}/stat")
                except OSError:
                    pass
        return total

    def outside_kB(self, pids):
        """Memory the engine holds outside the guests' Pss: samepaged's own
        Pss, and the pages of its state files (pool, index, ledgers) that
        no process maps.  What the guests map is in their Pss already."""
        if not self.daemon:
            return 0
        files = [os.path.join(self.state, n) for n in os.listdir(self.state)]
        resident = sum(os.stat(f).st_blocks * 512 for f in files if os.path.isfile(f)) // 1024
        mapped = sum(pss_of_files(p, self.state + "/") for p in pids + [self.daemon.pid])
        daemon = proc_fields(f"/proc/{self.daemon.pid}/smaps_rollup", ["Pss"])["Pss"]
        return daemon + max(0, resident - mapped)

    def launcher(self):
        return self.launch or [self.ksmctl, "--user", "--socket", f"{self.dir}/sock", "run",
                               "--domain", "vms"] + ([] if self.merge_any else ["--no-merge-any"]) + ["--"]

    def wait_unmerged(self, timeout=120):
        pass

    def checks(self, pids):
        return []

    def restore(self):
        if self.daemon:
            self.daemon.terminate()
            try:
                self.daemon.wait(10)
            except subprocess.TimeoutExpired:
                self.daemon.kill()
            self.daemon = None
        subprocess.run(["rm", "-rf", self.state])
        return []


# ---------------------------------------------------------------- guests


def _die_with_parent():
    os.setsid()
    ctypes.CDLL(None).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG


class Guest:
    """One QEMU process: serial console to OUT/NAME.console, QEMU's own
    output to OUT/NAME.qemu.log, its pid from -pidfile (a launcher may
    stand between us and QEMU)."""

    def __init__(self, a, kit, name, launcher, append="", drive=None, extra=()):
        self.name, self.out = name, a.out
        self.console = f"{a.out}/{name}.console"
        self.pidfile = f"{a.out}/{name}.pid"
        for f in (self.console, self.pidfile):
            if os.path.exists(f):
                os.unlink(f)
        # More than one vCPU under TCG: one host thread each (MTTCG), all
        # writing guest RAM at once.
        accel = a.accel + (",thread=multi" if a.accel == "tcg" and a.smp > 1 else "")
        cmd = [a.qemu, "-accel", accel, "-m", str(a.mib), "-smp", str(a.smp), "-nodefaults", "-nographic",
               "-monitor", "none", "-serial", f"file:{self.console}", "-no-reboot",
               "-kernel", f"{kit}/vmlinuz", "-initrd", f"{kit}/initramfs.gz",
               # no_timer_check: under TCG on a loaded host the kernel's
               # IO-APIC timer check can miss its ticks and panic at boot.
               "-append", f"console=ttyS0 quiet panic=-1 no_timer_check {append}".strip(),
               "-pidfile", self.pidfile,
               "-name", name]
        if drive:
            cmd += ["-drive", f"if=none,id=d0,format=raw,{drive}", "-device", "virtio-blk-pci,drive=d0"]
        self.cmd = launcher + cmd + list(extra) + (a.qemu_arg or [])
        self.started = time.monotonic()
        self.ready_s = None
        with open(f"{a.out}/{name}.qemu.log", "w") as qlog:
            self.proc = subprocess.Popen(self.cmd, stdin=subprocess.DEVNULL, stdout=qlog,
                                         stderr=subprocess.STDOUT, preexec_fn=_die_with_parent)
        self._pid = None

    @property
    def pid(self):
        if self._pid is None:
            try:
                self._pid = int(read_text(self.pidfile))
            except (OSError, ValueError):
                return None
        return self._pid

    def text(self):
        try:
            with open(self.console, errors="replace") as f:
                return f.read()
        except OSError:
            return ""

    def tail(self, n=15):
        lines = self.text().splitlines()[-n:]
        try:
            lines += ["-- qemu:"] + read_text(f"{self.out}/{self.name}.qemu.log").splitlines()[-n:]
        except OSError:
            pass
        return "\n    ".join(lines)

    def check_alive(self):
        if self.proc.poll() is not None:
            raise Fail(f"{self.name} exited with status {self.proc.returncode}:\n    {self.tail()}")

    def kill(self):
        if self.proc.poll() is None:
            try:
                os.killpg(self.proc.pid, signal.SIGTERM)
                self.proc.wait(10)
            except (ProcessLookupError, subprocess.TimeoutExpired):
                try:
                    os.killpg(self.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                self.proc.wait()


def wait_ready(guests, timeout):
    deadline = time.monotonic() + timeout
    while any(g.ready_s is None for g in guests):
        for g in guests:
            g.check_alive()
            if g.ready_s is None and READY in g.text() and g.pid:
                g.ready_s = time.monotonic() - g.started
        if time.monotonic() > deadline:
            late = [g for g in guests if g.ready_s is None]
            raise Fail(f"{', '.join(g.name for g in late)} not booted after {timeout} s:\n    {late[0].tail()}")
        time.sleep(0.2)


def build_kit(a):
    if a.kit:
        return a.kit
    kit = f"{a.out}/kit"
    r = subprocess.run(["bash", f"{HERE}/kit.sh", kit], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    sys.stderr.write(r.stderr)
    if r.returncode == 77:
        last = r.stderr.strip().splitlines()[-1] if r.stderr.strip() else "kit.sh cannot build the guests"
        raise Skip(last.removeprefix("SKIP: "))
    if r.returncode:
        raise Fail(f"kit.sh failed with status {r.returncode}")
    return kit


# ---------------------------------------------------------------- measuring


def sample(engine, guests, t):
    pids = [g.pid for g in guests]
    for g in guests:
        g.check_alive()
    mem = proc_fields("/proc/meminfo", ["MemAvailable", "AnonPages"])
    s = {"t_s": round(t, 1),
         "pss_kB": sum(proc_fields(f"/proc/{p}/smaps_rollup", ["Pss"])["Pss"] for p in pids),
         "memavail_kB": mem["MemAvailable"], "anon_kB": mem["AnonPages"]}
    c = engine.counters()
    for k in ("pages_shared", "pages_sharing", "ksm_zero_pages", "full_scans"):
        s[k] = c.get(k, 0)
    s["scanner_cpu_s"] = round(engine.scanner_cpu(pids), 2)
    return s


SERIES = ["config", "t_s", "pss_kB", "memavail_kB", "anon_kB", "pages_shared", "pages_sharing",
          "ksm_zero_pages", "full_scans", "scanner_cpu_s"]


def saved_pages(s):
    return s["pages_sharing"] + s["ksm_zero_pages"]


def plateau(series, value, tol):
    """Index of the first sample from which value(sample) stays within tol
    of its last value."""
    final = value(series[-1])
    first = len(series) - 1
    while first > 0 and abs(value(series[first - 1]) - final) <= tol:
        first -= 1
    return first


def convergence(series, scans=3, seconds=5, band=0.01):
    """Converged when the saved pages (pages_sharing + ksm_zero_pages) have
    stayed within `band` (1%, at least 256 pages) of their last value for
    the last `scans` full scans and `seconds`.  Returns the index of the
    first sample of that plateau (when it was reached), or None."""
    if not series or saved_pages(series[-1]) <= 0:
        return None
    first = plateau(series, saved_pages, max(band * saved_pages(series[-1]), 256))
    last = series[-1]
    if last["full_scans"] - series[first]["full_scans"] < scans or last["t_s"] - series[first]["t_s"] < seconds:
        return None
    return first


def pss_settled(series, band=0.01):
    """When the guests' Pss came within `band` of its last value."""
    return series[plateau(series, lambda s: s["pss_kB"], band * series[-1]["pss_kB"])]["t_s"]


def settle(engine, guests, seconds=20):
    """After boot, waits until the guests' Pss stops growing (3 samples
    within 0.5%), then returns the last sample: memory before merging."""
    t0 = time.monotonic()
    hist = []
    while True:
        hist.append(sample(engine, guests, 0))
        last = hist[-3:]
        if len(last) == 3 and max(x["pss_kB"] for x in last) - min(x["pss_kB"] for x in last) <= 0.005 * last[-1]["pss_kB"]:
            return hist[-1]
        if time.monotonic() - t0 > seconds:
            return hist[-1]
        time.sleep(1)


def measure(a, kit, engine, label, knobs, tsv):
    """One configuration: boot, settle, merge, measure; returns its row."""
    engine.configure(knobs)
    launcher = engine.launcher()
    guests = []
    try:
        log(f"{label}: booting {a.guests} guests of {a.mib} MiB"
            + (f" under {' '.join(launcher)}" if launcher else ""))
        for i in range(a.guests):
            guests.append(Guest(a, kit, f"{label}-g{i}", launcher))
        wait_ready(guests, a.boot_timeout)
        boot_s = max(g.ready_s for g in guests)
        before = settle(engine, guests)
        pids = [g.pid for g in guests]
        outside0, maps0 = engine.outside_kB(pids), sum(map_count(p) for p in pids)
        log(f"{label}: booted in {boot_s:.1f} s, Pss {before['pss_kB'] / 1024:.0f} MiB; merging for up to {a.duration} s")
        vm0 = proc_fields("/proc/vmstat", ["thp_split_page", "cow_ksm"])
        series, conv = [], None
        cpu0 = before["scanner_cpu_s"]
        scans0 = before["full_scans"]
        t0 = time.monotonic()
        engine.start()
        while True:
            t = time.monotonic() - t0
            s = sample(engine, guests, t)
            series.append(s)
            tsv.write("\t".join(str(x) for x in [label] + [s[k] for k in SERIES[1:]]) + "\n")
            tsv.flush()
            conv = convergence(series) if engine.merge else None
            if t >= a.duration or (a.until_converged and conv is not None):
                break
            time.sleep(max(0.0, 1 - (time.monotonic() - t0 - t)))
        end = series[-1]
        outside1, maps1 = engine.outside_kB(pids), sum(map_count(p) for p in pids)
        vm = proc_fields("/proc/vmstat", ["thp_split_page", "cow_ksm"])
        after_pss = sum(x["pss_kB"] for x in series[-3:]) // len(series[-3:])
        engine.freeze()
        checks = engine.checks([g.pid for g in guests]) if engine.merge else []
        if engine.merge:
            checks.append((f"converged within {a.duration} s", int(conv is not None), 1))
            # Every page counted saved freed one page of the guests; the
            # kernel may free more (zero subpages of the THPs it splits).
            checks.append(("Pss went down by at least 90% of what the counters saved",
                           int(before["pss_kB"] - after_pss >= 0.9 * saved_pages(end) * PAGE_KB > 0), 1))
        row = {
            "config": label, "engine": engine.name if engine.merge else "none",
            "launcher": " ".join(launcher) or "-", "guests": a.guests, "mib": a.mib,
            "pages_to_scan": knobs.get("pages_to_scan", "-"), "sleep_ms": knobs.get("sleep_millisecs", "-"),
            "use_zero_pages": knobs.get("use_zero_pages", "-"), "boot_s": round(boot_s, 1),
            "pss_before_kB": before["pss_kB"], "pss_after_kB": after_pss,
            "pss_saved_kB": before["pss_kB"] - after_pss,
            # What merging cost outside the guests' Pss: the engine's
            # metadata there, and the slab of the mappings it added.
            "outside_before_kB": outside0, "outside_after_kB": outside1,
            "maps_before": maps0, "maps_after": maps1,
            "net_saved_kB": before["pss_kB"] - after_pss - (outside1 - outside0)
            - (maps1 - maps0) * MAPPING_SLAB_BYTES // 1024,
            "pages_shared": end["pages_shared"], "pages_sharing": end["pages_sharing"],
            "ksm_zero_pages": end["ksm_zero_pages"], "counted_saved_kB": saved_pages(end) * PAGE_KB,
            "converged_s": round(series[conv]["t_s"], 1) if conv is not None else "-",
            "pss_settled_s": pss_settled(series) if engine.merge else "-",
            "scans_to_converge": series[conv]["full_scans"] - scans0 if conv is not None else "-",
            "full_scans": end["full_scans"] - scans0,
            "scanner_cpu_converge_s": round(series[conv]["scanner_cpu_s"] - cpu0, 2) if conv is not None else "-",
            "scanner_cpu_run_s": round(end["scanner_cpu_s"] - cpu0, 2), "run_s": round(end["t_s"], 1),
            "memavail_before_kB": before["memavail_kB"], "memavail_after_kB": end["memavail_kB"],
            "anon_before_kB": before["anon_kB"], "anon_after_kB": end["anon_kB"],
            "thp_split_page": vm.get("thp_split_page", 0) - vm0.get("thp_split_page", 0),
            "cow_ksm": vm.get("cow_ksm", 0) - vm0.get("cow_ksm", 0),
            "checks": "-" if not checks else "ok" if all(l == r for _, l, r in checks) else "FAILED",
        }
        for what, l, r in checks:
            log(f"{label}: {'ok' if l == r else 'FAILED'}: {what}: {l} vs {r}")
        return row
    finally:
        for g in guests:
            g.kill()
        log(f"{label}: guests stopped")
        if guests:
            engine.wait_unmerged()
        log(f"{label}: unmerged")


SUMMARY = ["config", "engine", "launcher", "guests", "mib", "pages_to_scan", "sleep_ms", "use_zero_pages",
           "boot_s", "pss_before_kB", "pss_after_kB", "pss_saved_kB", "outside_before_kB", "outside_after_kB",
           "maps_before", "maps_after", "net_saved_kB", "pages_shared", "pages_sharing",
           "ksm_zero_pages", "counted_saved_kB", "converged_s", "pss_settled_s", "scans_to_converge", "full_scans",
           "scanner_cpu_converge_s", "scanner_cpu_run_s", "run_s", "memavail_before_kB",
           "memavail_after_kB", "anon_before_kB", "anon_after_kB", "thp_split_page", "cow_ksm", "checks"]


def table(rows):
    """The short table: one column per configuration."""
    def mib(kb):
        return f"{kb / 1024:.0f}" if isinstance(kb, int) else str(kb)
    lines = [("", lambda r: r["config"]),
             ("guest memory before (MiB, Pss)", lambda r: mib(r["pss_before_kB"])),
             ("after (MiB, Pss)", lambda r: mib(r["pss_after_kB"])),
             ("saved (MiB, Pss)", lambda r: mib(r["pss_saved_kB"])),
             ("engine's memory outside Pss (MiB)", lambda r: mib(r["outside_after_kB"] - r["outside_before_kB"])
              if isinstance(r["outside_after_kB"], int) else "-"),
             ("mappings added", lambda r: r["maps_after"] - r["maps_before"]
              if isinstance(r["maps_after"], int) else "-"),
             ("saved, net of both (MiB)", lambda r: mib(r["net_saved_kB"])),
             ("saved by the counters (MiB)", lambda r: mib(r["counted_saved_kB"])),
             ("pages_shared", lambda r: r["pages_shared"]),
             ("pages_sharing", lambda r: r["pages_sharing"]),
             ("ksm_zero_pages", lambda r: r["ksm_zero_pages"]),
             ("time to converge (s)", lambda r: r["converged_s"]),
             ("full scans to converge", lambda r: r["scans_to_converge"]),
             ("Pss within 1% of its end (s)", lambda r: r["pss_settled_s"]),
             ("scanner CPU to converge (s)", lambda r: r["scanner_cpu_converge_s"]),
             ("scanner CPU, whole run (s)", lambda r: r["scanner_cpu_run_s"]),
             ("run measured (s)", lambda r: r["run_s"]),
             ("MemAvailable change (MiB)", lambda r: mib(r["memavail_after_kB"] - r["memavail_before_kB"])
              if isinstance(r["memavail_after_kB"], int) else "-"),
             ("THPs split (thp_split_page)", lambda r: r["thp_split_page"]),
             ("slowest boot (s)", lambda r: r["boot_s"]),
             ("checks (arithmetic, Pss, converged)", lambda r: r["checks"])]
    width = max(14, *(len(str(r["config"])) + 2 for r in rows))
    out = []
    for title, f in lines:
        out.append(f"  {title:<32}" + "".join(f"{str(f(r)):>{width}}" for r in rows))
    return "\n".join(out)


def unavailable_row(label, why):
    row = {k: "n/a" for k in SUMMARY}
    row.update(config=label, checks="n/a", launcher="-", engine="samepaged")
    log(f"{label}: not yet available: {why}")
    return row


# ---------------------------------------------------------------- commands


def launcher_arg(a):
    return shlex.split(a.launcher) if a.launcher else []


def samepaged_engine(a):
    return Samepaged(a.ksmctl, a.samepaged, a.out, launcher_arg(a), not a.no_merge_any)


def seed_knobs(a, zero):
    return {"pages_to_scan": a.pages_to_scan, "sleep_millisecs": a.sleep_ms, "use_zero_pages": zero}


def cmd_run(a, held):
    kit = build_kit(a)
    rows = []
    with open(f"{a.out}/series.tsv", "w") as tsv:
        tsv.write("\t".join(SERIES) + "\n")
        if a.engine == "samepaged":
            held.merge = False  # the kernel stays at run=0 while libsamepage merges
            eng = samepaged_engine(a)
            try:
                if eng.unavailable():
                    raise Skip(f"libsamepage: {eng.unavailable()}")
                rows.append(measure(a, kit, eng, f"samepaged-z{a.zero}", seed_knobs(a, a.zero), tsv))
            finally:
                eng.restore()
        else:
            held.merge = a.engine == "kernel"
            held.launch = launcher_arg(a)
            label = f"kernel-z{a.zero}" if held.merge else "none"
            rows.append(measure(a, kit, held, label, seed_knobs(a, a.zero), tsv))
    return report(a, rows)


def cmd_compare(a, held):
    kit = build_kit(a)
    rows = []
    with open(f"{a.out}/series.tsv", "w") as tsv:
        tsv.write("\t".join(SERIES) + "\n")
        held.merge = False
        rows.append(measure(a, kit, held, "none", seed_knobs(a, 0), tsv))
        held.merge = True
        for z in (0, 1):
            rows.append(measure(a, kit, held, f"kernel-z{z}", seed_knobs(a, z), tsv))
        held.merge = False  # the kernel stays at run=0 while libsamepage merges
        eng = samepaged_engine(a)
        try:
            for z in (0, 1):
                if eng.unavailable():
                    rows.append(unavailable_row(f"samepaged-z{z}", eng.unavailable()))
                else:
                    rows.append(measure(a, kit, eng, f"samepaged-z{z}", seed_knobs(a, z), tsv))
        finally:
            eng.restore()
    return report(a, rows)


def report(a, rows):
    with open(f"{a.out}/summary.tsv", "w") as f:
        f.write("\t".join(SUMMARY) + "\n")
        for r in rows:
            f.write("\t".join(str(r[k]) for k in SUMMARY) + "\n")
    print(f"{rows[0]['guests']} guests x {rows[0]['mib']} MiB, {a.qemu} -accel {a.accel}, "
          f"pages_to_scan {a.pages_to_scan}, sleep_millisecs {a.sleep_ms}")
    print(table(rows))
    for r in rows:
        if r["pss_before_kB"] == "n/a":
            print(f"  {r['config']}: not yet available")
    print(f"TSV: {a.out}/summary.tsv (one row per configuration), {a.out}/series.tsv (every second)")
    failed = [r["config"] for r in rows if r["checks"] == "FAILED"]
    if failed and a.strict:
        raise Fail(f"checks failed for {', '.join(failed)} (see above)")
    return 0


def kernel_trouble(text):
    """The guest kernel's complaints (KERNEL_TROUBLE) among console lines."""
    return [l.strip() for l in text.splitlines() if any(t in l for t in KERNEL_TROUBLE)]


def io_result(g):
    """The guest's verdict from its console: (ok, summary)."""
    text = g.text()
    res = [l for l in text.splitlines() if l.startswith("SAMEPAGE-IO-RESULT")]
    trouble = kernel_trouble(text)
    bad = [l.strip() for l in text.splitlines() if l.startswith("SAMEPAGE-IO-BAD")]
    if not res:
        return False, "no SAMEPAGE-IO-RESULT line on the console", trouble + bad
    f = dict(kv.split("=", 1) for kv in res[-1].split()[1:] if "=" in kv)
    ok = (int(f.get("rounds", 0)) > 0 and f.get("bad") == "0" and f.get("ioerr") == "0"
          and not trouble and g.proc.returncode == 0)
    return ok, res[-1] + f" qemu-exit={g.proc.returncode}", trouble + bad


def chosen_engine(a, held):
    """--engine's: samepaged (the kernel's KSM held at run=0), or the
    kernel's (merging, or none)."""
    if a.engine == "samepaged":
        eng = samepaged_engine(a)
        if eng.unavailable():
            eng.restore()
            raise Skip(f"libsamepage: {eng.unavailable()}")
        held.merge = False
        return eng
    held.merge = a.engine == "kernel"
    held.launch = launcher_arg(a)
    return held


def cmd_io(a, held):
    modes = {"threads": "aio=threads", "native": "aio=native,cache=none",
             "io_uring": "aio=io_uring", "io_uring-direct": "aio=io_uring,cache=none"}
    aios = ["threads", "native"] if a.aio == "both" else a.aio.split(",")
    for m in aios:  # before anything is built, started or changed
        if m not in modes:
            raise Fail(f"--aio {m}: not one of {', '.join(modes)} (or both)")
    kit = build_kit(a)
    eng = chosen_engine(a, held)
    guests = []
    cow0 = proc_fields("/proc/vmstat", ["cow_ksm"]).get("cow_ksm", 0)
    try:
        eng.configure(seed_knobs(a, a.zero))
        eng.start()
        launcher = eng.launcher()
        for m in aios:
            disk = f"{a.out}/io-{m}.raw"
            with open(disk, "wb") as f:
                f.truncate(a.blocks << 20)
            guests.append(Guest(a, kit, f"io-{m}", launcher,
                                f"samepage.work=io samepage.seconds={a.seconds} samepage.blocks={a.blocks}"
                                f" samepage.corrupt={int(a.corrupt)}",
                                f"file={disk},{modes[m]}"))
        log(f"I/O guests {', '.join(g.name for g in guests)}: {a.seconds} s of I/O each, "
            f"merging by {eng.name}, pages_to_scan {a.pages_to_scan}, sleep_millisecs {a.sleep_ms}")
        wait_ready(guests, a.boot_timeout)
        deadline = time.monotonic() + a.seconds + a.boot_timeout + 300
        peak = 0
        with open(f"{a.out}/io-series.tsv", "w") as tsv:
            tsv.write("t_s\tpages_shared\tpages_sharing\tksm_zero_pages\tfull_scans\n")
            t0 = time.monotonic()
            while any(g.proc.poll() is None for g in guests):
                if time.monotonic() > deadline:
                    raise Fail(f"the I/O guests did not finish within {a.seconds + a.boot_timeout + 300} s")
                c = eng.counters()
                peak = max(peak, saved_pages(c))
                tsv.write(f"{time.monotonic() - t0:.1f}\t{c.get('pages_shared', 0)}\t{c.get('pages_sharing', 0)}"
                          f"\t{c.get('ksm_zero_pages', 0)}\t{c.get('full_scans', 0)}\n")
                time.sleep(1)
    finally:
        stop_all([], guests, eng, held)
    cow = proc_fields("/proc/vmstat", ["cow_ksm"]).get("cow_ksm", 0) - cow0
    failed = []
    for g in guests:
        ok, summary, lines = io_result(g)
        print(f"  {g.name:<12} {'ok' if ok else 'FAILED'}  {summary}")
        for l in lines[:20]:
            print(f"      {l}")
        if not ok:
            failed.append(g.name)
    print(f"  merging: at most {peak} pages saved at once (pages_sharing + ksm_zero_pages); "
          f"cow_ksm +{cow} (writes that copied a merged page)")
    if held.merge and peak == 0:
        failed.append("merging (nothing was merged during the I/O: the run proves nothing)")
    if failed:
        raise Fail(f"I/O check failed: {', '.join(failed)}; consoles in {a.out}")
    return 0


class QMP:
    """A QEMU monitor (QMP) on a unix socket: cmd() returns the reply,
    skipping events."""

    def __init__(self, path, guest, timeout=60):
        deadline = time.monotonic() + timeout
        while True:
            guest.check_alive()
            try:
                self.s = socket.socket(socket.AF_UNIX)
                self.s.settimeout(30)
                self.s.connect(path)
                break
            except OSError:
                self.s.close()
                if time.monotonic() > deadline:
                    raise Fail(f"{guest.name}: no QMP socket {path} within {timeout} s")
                time.sleep(0.1)
        self.f = self.s.makefile("rw")
        json.loads(self.f.readline())  # the greeting
        self.cmd("qmp_capabilities")

    def cmd(self, name, **args):
        try:
            self.f.write(json.dumps({"execute": name, "arguments": args}) + "\n")
            self.f.flush()
            while True:
                r = json.loads(self.f.readline())
                if "event" not in r:
                    break
        except (OSError, ValueError) as e:
            raise Fail(f"QMP {name}: QEMU went away ({e})")
        if "error" in r:
            raise Fail(f"QMP {name}: {r['error'].get('desc', r['error'])}")
        return r.get("return")

    def close(self):
        self.s.close()


def stop_all(qmps, guests, eng, held):
    """Closes the monitors, stops the guests, and puts the engine back
    (the kernel's KSM is put back by main())."""
    for q in qmps:
        q.close()
    for g in guests:
        g.kill()
    if eng is not held:
        eng.restore()


def marked_lines(g, tag):
    """The guest's SAMEPAGE-TAG lines, each as a dict of its key=value
    fields (numbers as int)."""
    out = []
    for l in g.text().splitlines():
        if l.startswith(f"SAMEPAGE-{tag} "):
            f = dict(kv.split("=", 1) for kv in l.split()[1:] if "=" in kv)
            out.append({k: int(v) if v.lstrip("-").isdigit() else v for k, v in f.items()})
    return out


def mem_rounds(g):
    """The memory guest's SAMEPAGE-MEM lines: [(round, bad)]."""
    return [(f.get("round", 0), f.get("bad", -1)) for f in marked_lines(g, "MEM")]


def cmd_postcopy(a, held):
    """A live migration with postcopy between two QEMUs on this host, both
    started by the engine's launcher: the source boots the memory guest,
    merging runs until it saved pages, precopy starts at 8 MiB/s, and
    after 2 s the guest switches to the destination, which fetches the
    rest on its faults (userfaultfd).  Passes when the migration completed,
    the destination runs, and the guest's memory checks after it all
    found every block right."""
    kit = build_kit(a)
    eng = chosen_engine(a, held)
    with socket.socket() as s:  # a free port for the incoming side
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    work = f"samepage.work=mem samepage.mib={a.mem_mib}"
    guests, qmps = [], []
    try:
        eng.configure(seed_knobs(a, a.zero))
        eng.start()
        launcher = eng.launcher()
        src = Guest(a, kit, "pc-src", launcher, work, extra=["-qmp", f"unix:{a.out}/pc-src.qmp,server=on,wait=off"])
        guests.append(src)
        dst = Guest(a, kit, "pc-dst", launcher, work,
                    extra=["-qmp", f"unix:{a.out}/pc-dst.qmp,server=on,wait=off",
                           "-incoming", f"tcp:127.0.0.1:{port}"])
        guests.append(dst)
        wait_ready([src], a.boot_timeout)
        deadline = time.monotonic() + a.boot_timeout
        while len(mem_rounds(src)) < 3 or (held.merge or eng is not held) and saved_pages(eng.counters()) == 0:
            src.check_alive()
            if time.monotonic() > deadline:
                raise Fail(f"the source guest filled its memory and the engine merged nothing within {a.boot_timeout} s")
            time.sleep(1)
        before = saved_pages(eng.counters())
        qs, qd = QMP(f"{a.out}/pc-src.qmp", src), QMP(f"{a.out}/pc-dst.qmp", dst)
        qmps += [qs, qd]
        caps = [{"capability": "postcopy-ram", "state": True}]
        qs.cmd("migrate-set-capabilities", capabilities=caps)
        qd.cmd("migrate-set-capabilities", capabilities=caps)
        qs.cmd("migrate-set-parameters", **{"max-bandwidth": 8 << 20})
        log(f"migrating pc-src to pc-dst with postcopy (pages saved by {eng.name}: {before})")
        qs.cmd("migrate", uri=f"tcp:127.0.0.1:{port}")
        time.sleep(2)
        qs.cmd("migrate-start-postcopy")
        status, t0 = None, time.monotonic()
        while time.monotonic() - t0 < a.seconds:
            status = qs.cmd("query-migrate").get("status")
            if status in ("completed", "failed", "cancelled"):
                break
            time.sleep(0.5)
        took = time.monotonic() - t0
        try:
            running = qd.cmd("query-status").get("status")
        except Fail:
            running = "gone"
        # The guest goes on checking its memory on the destination.
        n0 = len(mem_rounds(dst))
        t1 = time.monotonic()
        while running == "running" and len(mem_rounds(dst)) < n0 + 3 and time.monotonic() - t1 < 60:
            dst.check_alive()
            time.sleep(1)
        rounds = mem_rounds(dst)
        after = saved_pages(eng.counters())
    finally:
        stop_all(qmps, guests, eng, held)
    trouble = [l for g in guests for l in kernel_trouble(g.text())]
    bad = [r for r in rounds if r[1] != 0]
    print(f"  migration: {status} in {took:.1f} s after the switch; destination {running}; "
          f"pages saved by {eng.name} before / after: {before} / {after}")
    print(f"  the guest's memory checks on the destination: {len(rounds)} rounds, "
          f"{len(bad)} with a bad block")
    for l in trouble[:10]:
        print(f"      {l}")
    failed = []
    if status != "completed":
        failed.append(f"migration {status}: {read_text(f'{a.out}/pc-dst.qemu.log').strip()[-300:]}")
    if running != "running":
        failed.append(f"destination {running}")
    if len(rounds) < 3 or bad:
        failed.append(f"memory checks on the destination: {len(rounds)} rounds, {len(bad)} bad")
    if trouble:
        failed.append("kernel trouble on a console")
    if failed:
        raise Fail(f"postcopy: {'; '.join(failed)}; logs in {a.out}")
    return 0


def balloon_log_trouble(g):
    """QEMU's own complaints about the balloon's discards (a failed
    madvise(MADV_DONTNEED) on guest RAM)."""
    text = read_text(f"{g.out}/{g.name}.qemu.log")
    return [l.strip() for l in text.splitlines() if "discard" in l.lower() or "balloon" in l.lower()]


def cmd_balloon(a, held):
    """Memory guests with a virtio-balloon device: once the engine merged
    them, the host inflates every balloon by --balloon-mib (the guest gives
    that memory back, QEMU discards it: madvise(MADV_DONTNEED) on guest RAM,
    merged pages among it), holds it while the guests check their memory,
    then deflates.  Passes when every balloon reached its target both ways,
    QEMU reported no failed discard, the guests' memory checked right all
    along, and the engine's pages stayed merged."""
    if a.balloon_mib <= 0 or a.balloon_mib >= a.mib - a.mem_mib - 64:
        raise Fail(f"--balloon-mib {a.balloon_mib}: give 1 to {a.mib - a.mem_mib - 65} "
                   f"(the guest keeps --mem-mib {a.mem_mib} and 64 MiB for its kernel)")
    kit = build_kit(a)
    eng = chosen_engine(a, held)
    work = f"samepage.work=mem samepage.mib={a.mem_mib}"
    guests, qmps, rows = [], [], []
    try:
        eng.configure(seed_knobs(a, a.zero))
        eng.start()
        launcher = eng.launcher()
        for i in range(a.guests):
            name = f"balloon-{i}"
            guests.append(Guest(a, kit, name, launcher, work,
                                extra=["-device", "virtio-balloon-pci,id=balloon0",
                                       "-qmp", f"unix:{a.out}/{name}.qmp,server=on,wait=off"]))
        wait_ready(guests, a.boot_timeout)
        qmps = [QMP(f"{a.out}/{g.name}.qmp", g) for g in guests]

        def rounds_after(n, what):
            deadline = time.monotonic() + a.boot_timeout
            while any(len(mem_rounds(g)) < n for g in guests):
                for g in guests:
                    g.check_alive()
                if time.monotonic() > deadline:
                    raise Fail(f"the guests' memory checks stopped {what}")
                time.sleep(0.5)

        def row(phase, t):
            pids = [g.pid for g in guests]
            c = eng.counters()
            rows.append({"phase": phase, "seconds": round(t, 1),
                         "actual_MiB": [q.cmd("query-balloon")["actual"] >> 20 for q in qmps],
                         "pss_kB": sum(proc_fields(f"/proc/{p}/smaps_rollup", ["Pss"])["Pss"] for p in pids),
                         "saved": saved_pages(c)})
            log(f"{phase}: balloons at {rows[-1]['actual_MiB']} MiB in {t:.1f} s, guests' Pss "
                f"{rows[-1]['pss_kB'] >> 10} MiB, pages saved by {eng.name} {rows[-1]['saved']}")

        deadline = time.monotonic() + a.boot_timeout
        rounds_after(3, "before merging")
        while (held.merge or eng is not held) and saved_pages(eng.counters()) == 0:
            if time.monotonic() > deadline:
                raise Fail(f"{eng.name} merged nothing within {a.boot_timeout} s")
            time.sleep(1)
        time.sleep(a.settle)
        row("merged", 0)
        for phase, mib in (("inflated", a.mib - a.balloon_mib), ("deflated", a.mib)):
            for q in qmps:
                q.cmd("balloon", value=mib << 20)
            t0 = time.monotonic()
            while any(abs(q.cmd("query-balloon")["actual"] - (mib << 20)) > 1 << 20 for q in qmps):
                for g in guests:
                    g.check_alive()
                if time.monotonic() - t0 > a.seconds:
                    raise Fail(f"{phase}: the balloons are at "
                               f"{[q.cmd('query-balloon')['actual'] >> 20 for q in qmps]} MiB, "
                               f"not {mib}, after {a.seconds} s")
                time.sleep(0.1)
            took = time.monotonic() - t0
            rounds_after(max(len(mem_rounds(g)) for g in guests) + 3, f"once {phase}")
            row(phase, took)
    finally:
        stop_all(qmps, guests, eng, held)
    failed = []
    for g in guests:
        rounds = mem_rounds(g)
        bad = [r for r in rounds if r[1] != 0]
        trouble = kernel_trouble(g.text())
        qemu = balloon_log_trouble(g)
        print(f"  {g.name:<10} memory checks: {len(rounds)} rounds, {len(bad)} with a bad block; "
              f"QEMU: {qemu[0] if qemu else 'no complaint'}")
        for l in (trouble + qemu[1:])[:10]:
            print(f"      {l}")
        if bad or len(rounds) < 9:
            failed.append(f"{g.name}: {len(rounds)} rounds of memory checks, {len(bad)} bad")
        if trouble or qemu:
            failed.append(f"{g.name}: {'kernel trouble' if trouble else 'QEMU complained'}")
    print(f"  {'phase':<9} {'balloons (MiB)':<16} {'took (s)':>8} {'Pss (MiB)':>10} {'saved pages':>12}")
    for r in rows:
        print(f"  {r['phase']:<9} {str(r['actual_MiB']):<16} {r['seconds']:>8} "
              f"{r['pss_kB'] >> 10:>10} {r['saved']:>12}")
    if (held.merge or eng is not held) and rows and rows[-1]["saved"] == 0:
        failed.append(f"{eng.name} saves nothing after the balloons came back")
    if failed:
        raise Fail(f"balloon: {'; '.join(failed)}; logs in {a.out}")
    return 0


def cmd_churn(a, held):
    """SMP guests whose vCPUs all write guest RAM while merging runs hot:
    each guest runs one writer per vCPU (init.sh's churn), rewriting its
    blocks round after round and checking, before each rewrite, the blocks
    it wrote the round before (merged meanwhile: like blocks are alike in
    every guest).  Passes when every writer made at least 3 rounds with no
    bad block, every guest powered off by itself with no kernel trouble,
    and the engine merged pages while they ran."""
    kit = build_kit(a)
    eng = chosen_engine(a, held)
    work = f"samepage.work=churn samepage.mib={a.mem_mib} samepage.seconds={a.seconds}"
    guests, most = [], 0
    try:
        eng.configure(seed_knobs(a, a.zero))
        eng.start()
        launcher = eng.launcher()
        guests = [Guest(a, kit, f"churn-{i}", launcher, work) for i in range(a.guests)]
        wait_ready(guests, a.boot_timeout)
        log(f"churn: {a.guests} guests of {a.mib} MiB, {a.smp} vCPUs each, {a.mem_mib} MiB rewritten "
            f"for {a.seconds} s, {eng.name} at pages_to_scan {a.pages_to_scan}, sleep_millisecs {a.sleep_ms}")
        deadline = time.monotonic() + a.seconds + a.boot_timeout
        while any(g.proc.poll() is None for g in guests):
            if time.monotonic() > deadline:
                raise Fail(f"the guests still run {a.seconds + a.boot_timeout} s after booting")
            if held.merge or eng is not held:
                most = max(most, saved_pages(eng.counters()))
            time.sleep(1)
    finally:
        stop_all([], guests, eng, held)
    failed = []
    for g in guests:
        done = marked_lines(g, "CHURN-DONE")
        rounds = marked_lines(g, "CHURN")
        bad = sum(d.get("bad", 1) for d in done)
        trouble = kernel_trouble(g.text())
        print(f"  {g.name:<8} writers {len(done)} of {a.smp}, rounds {[d.get('rounds') for d in done]}, "
              f"bad blocks {bad}, QEMU exit {g.proc.returncode}")
        for l in trouble[:10] + [f"SAMEPAGE-CHURN {r}" for r in rounds if r.get("bad")][:10]:
            print(f"      {l}")
        if len(done) != a.smp or bad or any(d.get("rounds", 0) < 3 for d in done):
            failed.append(f"{g.name}: {len(done)} writers done of {a.smp}, {bad} bad blocks, "
                          f"rounds {[d.get('rounds') for d in done]} (at least 3 each)")
        if trouble or g.proc.returncode != 0:
            failed.append(f"{g.name}: {'kernel trouble' if trouble else f'QEMU exited {g.proc.returncode}'}")
    print(f"  pages saved by {eng.name} at most: {most}")
    if (held.merge or eng is not held) and most == 0:
        failed.append(f"{eng.name} merged nothing while the guests ran")
    if failed:
        raise Fail(f"churn: {'; '.join(failed)}; logs in {a.out}")
    return 0


def add_guest_options(p):
    """The options that shape the guests and the merging (Guest, settle
    and the engines read them), for guests.py's commands and for
    tests/estimate/guests_compare.py alike."""
    p.add_argument("--kit", help="a kit built by kit.sh (default: build one in OUT/kit)")
    p.add_argument("--guests", type=int, default=3)
    p.add_argument("--mib", type=int, default=512, help="guest RAM (-m)")
    p.add_argument("--qemu", default="qemu-system-x86_64")
    p.add_argument("--accel", default="tcg", help="tcg (default; nested KVM does not boot here) or kvm")
    p.add_argument("--smp", type=int, help="vCPUs a guest (-smp; default 1, churn's 2)")
    p.add_argument("--qemu-arg", action="append", metavar="ARG",
                   help="one more argument for every QEMU, repeated for more: e.g. "
                   "--qemu-arg=-overcommit --qemu-arg=mem-lock=on")
    p.add_argument("--pages-to-scan", type=int, default=20000, help="the seed's 20000")
    p.add_argument("--sleep-ms", type=int,
                   help="default the seed's 200; io's and churn's 0 (merging hot)")
    p.add_argument("--zero", type=int, choices=(0, 1), default=0, help="use_zero_pages")
    p.add_argument("--boot-timeout", type=int, default=300)
    p.add_argument("--lock-wait", type=int, default=900, help="seconds to wait for the kernel's KSM")


def check_guest_options(p, a, hot=False, smp=1):
    """add_guest_options' defaults that depend on the command (hot: merging
    with sleep_millisecs 0), and their limits (p.error)."""
    if a.sleep_ms is None:
        a.sleep_ms = 0 if hot else 200
    if a.smp is None:
        a.smp = smp
    if a.smp < 1:
        p.error(f"--smp {a.smp}: give 1 or more vCPUs")
    if a.guests < 1 or a.mib < 64:
        p.error("--guests must be at least 1 and --mib at least 64")


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="cmd", required=True)
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--out", default=f"{ROOT}/build/guests", help="logs, kit, TSV (default build/guests)")
    add_guest_options(common)
    common.add_argument("--launcher", help="a command put before QEMU's: with --engine kernel e.g. 'ksmctl run --'; "
                        "with samepaged it replaces 'ksmctl --user run --domain vms --' (and its probe); "
                        "compare uses it for the samepaged columns only")
    common.add_argument("--no-merge-any", action="store_true",
                        help="samepaged: only what QEMU marks mergeable (its guest RAM), as the kernel's KSM "
                        "without a launcher; default: ksmctl --user run's merge-any")
    common.add_argument("--ksmctl", default=f"{ROOT}/build/cli/ksmctl")
    common.add_argument("--samepaged", default=f"{ROOT}/build/daemon/samepaged")
    common.add_argument("--strict", action="store_true", help="exit 1 when a check fails")
    for name, hlp in (("run", "one engine"), ("compare", "every configuration, side by side")):
        s = sub.add_parser(name, parents=[common], help=hlp)
        s.add_argument("--duration", type=int, default=60, help="seconds measured after merging starts")
        s.add_argument("--until-converged", action="store_true", help="stop at convergence (at most --duration)")
        if name == "run":
            s.add_argument("--engine", choices=("none", "kernel", "samepaged"), default="kernel")
    s = sub.add_parser("io", parents=[common], help="I/O guests while merging runs hot")
    s.add_argument("--engine", choices=("none", "kernel", "samepaged"), default="kernel")
    s.add_argument("--seconds", type=int, default=600, help="I/O loop duration in each guest")
    s.add_argument("--blocks", type=int, default=16, help="MiB of disk written and re-read per round")
    s.add_argument("--aio", default="both",
                   help="threads, native (with cache=none), io_uring, io_uring-direct (with cache=none),"
                   " comma-separated, or both (threads and native, the default)")
    s.add_argument("--corrupt", action="store_true",
                   help="the guests change a byte behind their checksums: the check must fail")
    s = sub.add_parser("postcopy", parents=[common], help="a live migration with postcopy while merging")
    s.add_argument("--engine", choices=("none", "kernel", "samepaged"), default="samepaged")
    s.add_argument("--seconds", type=int, default=120, help="the most the migration may take")
    s.add_argument("--mem-mib", type=int, default=64, help="MiB the guest fills and checks")
    s = sub.add_parser("churn", parents=[common], help="SMP guests rewriting their memory while merging runs hot")
    s.add_argument("--engine", choices=("none", "kernel", "samepaged"), default="samepaged")
    s.add_argument("--seconds", type=int, default=60, help="how long each guest rewrites its memory")
    s.add_argument("--mem-mib", type=int, default=64, help="MiB each guest rewrites and checks")
    s = sub.add_parser("balloon", parents=[common], help="virtio-balloon inflated and deflated while merged")
    s.add_argument("--engine", choices=("none", "kernel", "samepaged"), default="samepaged")
    s.add_argument("--seconds", type=int, default=120, help="the most a balloon may take to reach its target")
    s.add_argument("--mem-mib", type=int, default=32, help="MiB each guest fills and checks")
    s.add_argument("--balloon-mib", type=int, default=96, help="MiB each balloon takes from its guest")
    s.add_argument("--settle", type=int, default=5, help="seconds of merging before the balloons inflate")
    p.set_defaults()
    a = p.parse_args()
    check_guest_options(p, a, hot=a.cmd in ("io", "churn"), smp=2 if a.cmd == "churn" else 1)
    a.out = os.path.abspath(a.out)
    os.makedirs(a.out, exist_ok=True)

    held = None
    code = 1

    def on_signal(sig, _frame):
        raise Fail(f"stopped by signal {sig}")

    for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, on_signal)
    try:
        if subprocess.run(["sh", "-c", f"command -v {shlex.quote(a.qemu)}"], capture_output=True).returncode:
            raise Skip(f"no {a.qemu} (apt-get install qemu-system-x86, or bench/guests/kit.sh --install)")
        held = KernelKSM(a.lock_wait)
        code = {"run": cmd_run, "compare": cmd_compare, "io": cmd_io, "postcopy": cmd_postcopy,
                "balloon": cmd_balloon, "churn": cmd_churn}[a.cmd](a, held)
    except Skip as e:
        print(f"SKIP: {e}", file=sys.stderr)
        code = 77
    except Fail as e:
        print(f"FAIL: {e}", file=sys.stderr)
        code = 1
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, signal.SIG_IGN)
        if held:
            bad = held.restore()
            for b in bad:
                print(f"RESTORE FAILED: {b}", file=sys.stderr)
            if bad:
                code = 1
    return code


if __name__ == "__main__":
    sys.exit(main())
