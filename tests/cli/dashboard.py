#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""cli.dashboard: contrib/grafana/ksm-dashboard.json is valid JSON, a
Grafana dashboard (panels with gridPos and targets), and every series its
queries name is one `ksmctl status --prometheus` writes for a 6.18 tree,
with the labels the queries select on (vm, unit, comm).  It works on a
host whose node_exporter runs its own ksmd collector too: every series is
then written by `--no-node-ksmd` or by that collector (its nine files, by
its names: general_profit is none of them).  No query names a series
ksmctl marks deprecated (its HELP starts with DEPRECATED: a name in a unit
other than the base unit, written for one release beside its
replacement).

usage: dashboard.py KSMCTL SRCDIR(tests/cli) DASHBOARD
"""
import json
import re
import subprocess
import sys


# node_exporter's ksmd collector (collector/ksmd_linux.go): what it exports.
NODE_EXPORTER_KSMD = {"node_ksmd_full_scans_total", "node_ksmd_sleep_seconds"} | {
    f"node_ksmd_{f}" for f in ("merge_across_nodes", "pages_shared", "pages_sharing",
                               "pages_to_scan", "pages_unshared", "pages_volatile", "run")}


def series(ksmctl, tree, *extra):
    prom = subprocess.run([ksmctl, "--sysfs-root", f"{tree}/sys", "--proc-root", f"{tree}/proc",
                           "status", "--prometheus", *extra], capture_output=True, text=True,
                          check=True)
    names, labels, deprecated = set(), set(), set()
    for line in prom.stdout.splitlines():
        if line.startswith("# HELP ") and line.split(" ", 3)[3:4] and \
                line.split(" ", 3)[3].startswith("DEPRECATED"):
            deprecated.add(line.split(" ")[2])
        m = re.match(r"^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})? ", line)
        if m and not line.startswith("#"):
            names.add(m.group(1))
            labels |= set(re.findall(r'([a-z_]+)="', m.group(3) or ""))
    return names, labels, deprecated


def main(ksmctl, src, path):
    dash = json.load(open(path, encoding="utf-8"))
    tree = f"{src}/trees/linux-6.18"
    names, labels, deprecated = series(ksmctl, tree)
    beside = series(ksmctl, tree, "--no-node-ksmd")[0] | NODE_EXPORTER_KSMD
    assert dash.get("title") and dash.get("uid") and dash.get("panels"), "not a dashboard"
    queried = 0
    for p in dash["panels"]:
        assert {"x", "y", "w", "h"} <= set(p.get("gridPos", {})), f"panel {p.get('title')}: gridPos"
        assert p.get("targets"), f"panel {p.get('title')}: no query"
        for t in p["targets"]:
            expr = t["expr"]
            for name in re.findall(r"\b((?:node_ksmd|samepage_ksm)_[a-z_]+)\b", expr):
                queried += 1
                if name not in names:
                    sys.exit(f"FAIL: panel '{p['title']}' queries {name}, which ksmctl does not write")
                if name in deprecated:
                    sys.exit(f"FAIL: panel '{p['title']}' queries {name}, which ksmctl marks "
                             "deprecated")
                if name not in beside:
                    sys.exit(f"FAIL: panel '{p['title']}' queries {name}, which neither "
                             "ksmctl --no-node-ksmd nor node_exporter's ksmd collector writes")
            for label in re.findall(r"\b([a-z_]+)(?:=~|!=|=)\"", expr):
                if label not in labels | {"instance", "job"}:
                    sys.exit(f"FAIL: panel '{p['title']}' selects on label {label}, which ksmctl does not write")
    variables = dash["templating"]["list"]
    for v in variables:
        for name in re.findall(r"\b((?:node_ksmd|samepage_ksm)_[a-z_]+)\b", v.get("query", "")):
            if name not in names:
                sys.exit(f"FAIL: variable {v['name']} queries {name}")
    print(f"ok: {len(dash['panels'])} panels, {queried} series queried, all written by ksmctl")


if __name__ == "__main__":
    main(*sys.argv[1:4])
