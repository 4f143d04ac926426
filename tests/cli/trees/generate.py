#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Writes the sysfs/procfs trees that ksmctl's golden tests read.

Each tree is the layout of one kernel generation, as mm/ksm.c and
fs/proc/base.c of that version create it (file names, formats), with
plausible values: 2.6.32 (the first KSM, RHEL 6), 4.19 (NUMA, chains,
no per-process files), 6.1 (ksm_stat with ksm_rmap_items only), 6.18
(everything, the advisor on) and a 6.6 kernel built without CONFIG_KSM.
The values are written by hand here, not captured from machines; run this
script again after changing them, then regenerate the golden files
(KSMCTL_GOLDEN_UPDATE=1 ctest -R cli.golden).
"""
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))


def put(path, text):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text)


def meminfo(total_kb, avail_kb):
    return (f"MemTotal:       {total_kb} kB\nMemFree:        {avail_kb // 2} kB\n"
            f"MemAvailable:   {avail_kb} kB\nBuffers:          123456 kB\n")


def ksmd_stat(pid, utime, stime, start):
    # pid (comm) state ppid ... field 14 utime, 15 stime, 22 starttime
    f = [str(pid), "(ksmd)", "S", "2"] + ["0"] * 9 + [str(utime), str(stime)] + ["0"] * 6
    f += [str(start)] + ["0"] * 30
    return " ".join(f) + "\n"


def ksm_stat(gen, rmap, zero, merging, any_, mergeable):
    # ksm_process_profit() with 4 KiB pages and 64-byte rmap_items.
    profit = (merging + zero) * 4096 - rmap * 64
    lines = [f"ksm_rmap_items {rmap}"]
    if gen >= (6, 5):
        lines.append(f"ksm_zero_pages {zero}")
    if gen >= (6, 4):
        lines += [f"ksm_merging_pages {merging}", f"ksm_process_profit {profit}"]
    if gen >= (6, 15):
        lines += [f"ksm_merge_any: {any_}", f"ksm_mergeable: {mergeable}"]
    return "\n".join(lines) + "\n"


def tree(name, release, ksm, procs, gen, total_kb, avail_kb, config="y", thp=None, nodes=1,
         cgroup_v2=True):
    root = os.path.join(HERE, name)
    shutil.rmtree(root, ignore_errors=True)
    for k, v in ksm.items():
        put(f"{root}/sys/kernel/mm/ksm/{k}", f"{v}\n")
    if thp:
        put(f"{root}/sys/kernel/mm/transparent_hugepage/enabled", thp + "\n")
    for n in range(nodes):
        put(f"{root}/sys/devices/system/node/node{n}/cpulist", f"{2 * n}-{2 * n + 1}\n")
    put(f"{root}/proc/sys/kernel/osrelease", release + "\n")
    put(f"{root}/proc/meminfo", meminfo(total_kb, avail_kb))
    put(f"{root}/proc/uptime", "86400.00 170000.00\n")
    put(f"{root}/boot/config-{release}",
        "CONFIG_MMU=y\n" + ("CONFIG_KSM=y\n" if config == "y" else "# CONFIG_KSM is not set\n"))
    if ksm:
        put(f"{root}/proc/57/comm", "ksmd\n")
        put(f"{root}/proc/57/stat", ksmd_stat(57, 172800, 86400, 500))
    for p in procs:
        d = f"{root}/proc/{p['pid']}"
        put(f"{d}/comm", p["comm"] + "\n")
        cg = p.get("cgroup", "/")
        put(f"{d}/cgroup", f"0::{cg}\n" if cgroup_v2 else
            f"3:memory:{cg}\n2:cpu,cpuacct:{cg}\n1:name=systemd:{cg}\n")
        if gen >= (5, 19):
            put(f"{d}/ksm_merging_pages", f"{p.get('merging', 0)}\n")
        if gen >= (6, 1):
            put(f"{d}/ksm_stat", ksm_stat(gen, p.get("rmap", 0), p.get("zero", 0),
                                          p.get("merging", 0),
                                          p.get("any", "no"), p.get("mergeable", "no")))
        if gen >= (4, 14):
            rollup = (f"00400000-7fffffffe000 ---p 00000000 00:00 0 [rollup]\n"
                      f"Rss:            {p.get('rss', 10240)} kB\nPss:            1000 kB\n")
            if gen >= (6, 6):
                rollup += f"KSM:            {p.get('merging', 0) * 4} kB\n"
            put(f"{d}/smaps_rollup", rollup)


# 2.6.32: the first KSM; max_kernel_pages still there (removed in 2.6.33).
tree("linux-2.6.32", "2.6.32-754.el6.x86_64", {
    "max_kernel_pages": 2007738, "full_scans": 311, "pages_shared": 10240,
    "pages_sharing": 51200, "pages_to_scan": 100, "pages_unshared": 40960,
    "pages_volatile": 2048, "run": 1, "sleep_millisecs": 20,
}, [
    {"pid": 2001, "comm": "qemu-kvm", "cgroup": "/libvirt/qemu/vm1"},
], gen=(2, 6), total_kb=16307000, avail_kb=8000000, cgroup_v2=False)

# 4.19: NUMA (merge_across_nodes), use_zero_pages, chains; smaps_rollup
# (4.14) but no per-process KSM files yet.  Sharing hit max_page_sharing.
tree("linux-4.19", "4.19.0-27-amd64", {
    "full_scans": 1200, "max_page_sharing": 256, "merge_across_nodes": 0,
    "pages_shared": 4000, "pages_sharing": 1020000, "pages_to_scan": 1250,
    "pages_unshared": 30000, "pages_volatile": 1500, "run": 1, "sleep_millisecs": 10,
    "stable_node_chains": 12, "stable_node_chains_prune_millisecs": 2000,
    "stable_node_dups": 3900, "use_zero_pages": 0,
}, [
    {"pid": 3100, "comm": "qemu-system-x86", "cgroup": "/machine.slice/machine-qemu\\x2d1\\x2dvm1.scope"},
    {"pid": 3200, "comm": "qemu-system-x86", "cgroup": "/machine.slice/machine-qemu\\x2d2\\x2dvm2.scope"},
], gen=(4, 19), total_kb=263000000, avail_kb=120000000, thp="[always] madvise never", nodes=2)

# 6.1: ksm_stat has ksm_rmap_items only; ksm_merging_pages (5.19).  No
# general_profit (6.4).  Mostly volatile memory: the doctor should say so.
tree("linux-6.1", "6.1.0-28-amd64", {
    "full_scans": 40, "max_page_sharing": 256, "merge_across_nodes": 1,
    "pages_shared": 200, "pages_sharing": 900, "pages_to_scan": 100,
    "pages_unshared": 2100, "pages_volatile": 45000, "run": 1, "sleep_millisecs": 20,
    "stable_node_chains": 0, "stable_node_chains_prune_millisecs": 2000,
    "stable_node_dups": 0, "use_zero_pages": 0,
}, [
    {"pid": 1200, "comm": "java", "cgroup": "/system.slice/app.service", "rmap": 40000,
     "merging": 700},
    {"pid": 1300, "comm": "java", "cgroup": "/system.slice/app.service", "rmap": 9000,
     "merging": 400},
    {"pid": 1400, "comm": "bash", "cgroup": "/user.slice/user-1000.slice/session-2.scope"},
], gen=(6, 1), total_kb=8000000, avail_kb=5000000, thp="always [madvise] never")

# 6.18: every file; the scan-time advisor on; containers and units.
tree("linux-6.18", "6.18.2-arch1-1", {
    "advisor_max_cpu": 70, "advisor_max_pages_to_scan": 30000,
    "advisor_min_pages_to_scan": 500, "advisor_mode": "none [scan-time]",
    "advisor_target_scan_time": 200, "full_scans": 96, "general_profit": 1529284608,
    "ksm_zero_pages": 2048, "max_page_sharing": 256, "merge_across_nodes": 1,
    "pages_scanned": 48000000, "pages_shared": 52000, "pages_sharing": 380000,
    "pages_skipped": 9000000, "pages_to_scan": 2400, "pages_unshared": 120000,
    "pages_volatile": 4000, "run": 1, "sleep_millisecs": 20, "smart_scan": 1,
    "stable_node_chains": 0, "stable_node_chains_prune_millisecs": 2000,
    "stable_node_dups": 0, "use_zero_pages": 1,
}, [
    {"pid": 4100, "comm": "qemu-system-x86", "rmap": 300000, "zero": 1500, "merging": 260000,
     "any": "yes", "mergeable": "yes",
     "cgroup": "/machine.slice/machine-qemu\\x2d1\\x2dweb.scope/libvirt/emulator"},
    {"pid": 4200, "comm": "node", "rmap": 180000, "zero": 548, "merging": 170000,
     "any": "yes", "mergeable": "yes",
     "cgroup": "/system.slice/docker-3f1a2b.scope"},
    {"pid": 4201, "comm": "node", "rmap": 26000, "zero": 0, "merging": 2000,
     "any": "yes", "mergeable": "yes",
     "cgroup": "/system.slice/docker-3f1a2b.scope"},
    {"pid": 4300, "comm": "redis-server", "rmap": 50000, "zero": 0, "merging": 0,
     "any": "no", "mergeable": "yes",
     "cgroup": "/system.slice/redis.service"},
    {"pid": 4400, "comm": "sshd", "cgroup": "/system.slice/ssh.service"},
], gen=(6, 18), total_kb=65000000, avail_kb=30000000, thp="always [madvise] never")

# 6.6 built without CONFIG_KSM: no /sys/kernel/mm/ksm at all.
tree("linux-6.6-noksm", "6.6.58-rpi", {}, [
    {"pid": 900, "comm": "bash"},
], gen=(6, 6), total_kb=4000000, avail_kb=3000000, config="n")
