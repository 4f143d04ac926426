#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""Checks Prometheus text exposition format: every sample line is
`name{label="value",...} number`, every metric family has one # TYPE line
before its samples (and at most one # HELP), names are valid, counters end
in _total and only counters do, a value whose HELP says it is cumulative is
a counter, no series repeats, and the file is UTF-8.  Names are in base
units (Prometheus's naming rules: seconds, bytes, ratios): a name ending in
another unit (_millisecs, _ms, _percent, _kb...) is refused, unless its
HELP starts with "DEPRECATED" and names, after "use", its replacement,
which the file must hold.  Exit 1 with the offending line otherwise.
"""
import re
import sys

NAME = r"[a-zA-Z_:][a-zA-Z0-9_:]*"
LABEL = r'[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\\n]|\\.)*"'
SAMPLE = re.compile(rf"^({NAME})(\{{(?:{LABEL})(?:,{LABEL})*\}})? (\S+)$")
TYPES = {"counter", "gauge", "histogram", "summary", "untyped"}
NOT_BASE_UNIT = re.compile(
    r"_(millisecs?|milliseconds?|msecs?|ms|microseconds?|usecs?|us|nanoseconds?|ns|minutes?|"
    r"hours?|days?|percent|pct|kb|kib|mb|mib|gb|gib|kilobytes?|megabytes?|gigabytes?)(_total)?$")


def main(path):
    types, helps, seen, cumulative, deprecated = {}, set(), set(), set(), {}
    try:
        # node_exporter's textfile collector refuses a file that is not UTF-8.
        lines = open(path, "rb").read().decode("utf-8", errors="strict").splitlines()
    except UnicodeDecodeError as e:
        return f"not UTF-8: {e}"
    if not lines:
        return "empty output"
    for n, line in enumerate(lines, 1):
        where = f"line {n}: {line!r}"
        if line.startswith("# HELP "):
            name = line.split(" ", 3)[2]
            if name in helps:
                return f"second HELP for {name}: {where}"
            helps.add(name)
            if re.search(r"\bcumulative\b", line):
                cumulative.add(name)
            text = line.split(" ", 3)[3] if line.count(" ") >= 3 else ""
            if text.startswith("DEPRECATED"):
                m = re.search(rf"\buse ({NAME})\b", text)
                if not m:
                    return f"a DEPRECATED HELP that names no replacement (use NAME): {where}"
                deprecated[name] = (m.group(1), where)
            elif NOT_BASE_UNIT.search(name):
                return f"a name in a unit other than the base unit (seconds, bytes): {where}"
        elif line.startswith("# TYPE "):
            parts = line.split(" ")
            if len(parts) != 4 or parts[3] not in TYPES or not re.fullmatch(NAME, parts[2]):
                return f"bad TYPE: {where}"
            if parts[2] in types:
                return f"second TYPE for {parts[2]}: {where}"
            types[parts[2]] = parts[3]
        elif line.startswith("#"):
            continue
        else:
            m = SAMPLE.match(line)
            if not m:
                return f"not a sample: {where}"
            name, labels, value = m.groups()
            if name not in types:
                return f"sample before its # TYPE: {where}"
            if types[name] == "counter" and not name.endswith("_total"):
                return f"counter without _total: {where}"
            if types[name] != "counter" and name.endswith("_total"):
                return f"_total on a {types[name]}, not a counter: {where}"
            if name in cumulative and types[name] != "counter":
                return f"a cumulative value (its HELP says so) as a {types[name]}: {where}"
            try:
                float(value)
            except ValueError:
                return f"value is not a number: {where}"
            if (name, labels) in seen:
                return f"repeated series: {where}"
            seen.add((name, labels))
    for name, (replacement, where) in deprecated.items():
        if replacement not in types:
            return f"{name} is deprecated for {replacement}, which is not written: {where}"
    return None


if __name__ == "__main__":
    err = main(sys.argv[1])
    if err:
        print(f"promcheck: {sys.argv[1]}: {err}")
        sys.exit(1)
