#!/usr/bin/env python3
# SPDX-License-Identifier: MIT
"""docs.knobs: the documentation names every knob, counter and function.

usage: knobs.py PROJECT_SOURCE_DIR

Checks, and prints what is missing:
  - every name of lib/knobs.def is an entry of the KNOBS AND COUNTERS
    section of docs/samepage.3, and every entry there is a name of
    knobs.def (nothing stale);
  - every function declared in include/samepage.h is in the SYNOPSIS of
    docs/samepage.3;
  - every name of knobs.def is in README.md's "Knobs and counters"
    section.  While README.md or that section does not exist yet, this
    part only says so and does not fail.
Exit status 0 when nothing is missing, 1 otherwise.
"""
import os
import re
import sys

IDENT = r"[A-Za-z0-9_]"


def strip_c_comments(text):
    return re.sub(r"/\*.*?\*/", " ", text, flags=re.S)


def knob_names(path):
    text = strip_c_comments(open(path, encoding="utf-8").read())
    return re.findall(r"^\s*SAMEPAGE_KNOB\(\s*([a-z0-9_]+)\s*,", text, flags=re.M)


def header_functions(path):
    text = strip_c_comments(open(path, encoding="utf-8").read())
    text = "\n".join(l for l in text.splitlines() if not l.lstrip().startswith("#"))
    names = []
    for decl in text.split(";"):
        m = re.search(r"\b(samepage_[a-z0-9_]+)\s*\(", decl)
        if m and m.group(1) not in names:
            names.append(m.group(1))
    return names


def deroff(text):
    """Man page source to plain words: drop comments and font escapes."""
    out = []
    for line in text.splitlines():
        if line.startswith('.\\"') or line.startswith("'\\\""):
            continue
        line = re.sub(r"\\f(\[[^\]]*\]|\(..|.)", "", line)  # \fB \f(CW \f[B]
        line = re.sub(r"\\[&%:]", "", line)
        line = line.replace("\\-", "-").replace("\\e", "\\")
        out.append(line)
    return out


def man_sections(lines):
    """{"NAME": [lines], "SYNOPSIS": [...], ...} from .SH lines."""
    sections, cur = {}, None
    for line in lines:
        m = re.match(r'^\.SH\s+"?([^"]*)"?\s*$', line)
        if m:
            cur = m.group(1).strip().upper()
            sections[cur] = []
        elif cur:
            sections[cur].append(line)
    return sections


def has_word(text, word):
    return re.search(r"(?<!%s)%s(?!%s)" % (IDENT, re.escape(word), IDENT), text) is not None


def man_knob_entries(lines):
    """The tag line of every .TP entry of the section (its first word)."""
    entries = []
    for i, line in enumerate(lines):
        if line.strip() == ".TP" and i + 1 < len(lines):
            tag = re.sub(r"^\.[A-Z]+\s*", "", lines[i + 1]).strip().strip('"')
            if re.fullmatch(r"[a-z][a-z0-9_]*", tag):
                entries.append(tag)
    return entries


def readme_section(path, title):
    """The lines of the Markdown section titled `title` (ATX or setext
    heading, any level, case-insensitive), or None."""
    lines = open(path, encoding="utf-8").read().splitlines()
    want = title.lower()
    start, level = None, None
    for i, line in enumerate(lines):
        atx = re.match(r"^(#{1,6})\s+(.*?)\s*#*\s*$", line)
        setext = (i + 1 < len(lines) and line.strip() and
                  re.fullmatch(r"=+|-+", lines[i + 1].strip() or "x"))
        if atx:
            lvl, text = len(atx.group(1)), atx.group(2)
        elif setext:
            lvl, text = (1 if lines[i + 1].strip()[0] == "=" else 2), line.strip()
        else:
            continue
        if start is None:
            if text.strip().lower() == want:
                start, level = i + 1, lvl
        elif lvl <= level:
            return lines[start:i]
    return lines[start:] if start is not None else None


def main():
    if len(sys.argv) != 2:
        print(__doc__.strip().splitlines()[2])
        return 2
    top = sys.argv[1]
    knobs_def = os.path.join(top, "lib", "knobs.def")
    header = os.path.join(top, "include", "samepage.h")
    man = os.path.join(top, "docs", "samepage.3")
    readme = os.path.join(top, "README.md")
    bad = 0

    names = knob_names(knobs_def)
    funcs = header_functions(header)
    if len(names) < 10 or len(funcs) < 10:
        print("FAIL: found only %d names in %s and %d functions in %s: the parser is out of date"
              % (len(names), knobs_def, len(funcs), header))
        return 1

    if not os.path.exists(man):
        print("FAIL: %s does not exist" % man)
        return 1
    sections = man_sections(deroff(open(man, encoding="utf-8").read()))
    knob_lines = sections.get("KNOBS AND COUNTERS")
    synopsis = sections.get("SYNOPSIS")
    if knob_lines is None or synopsis is None:
        print("FAIL: docs/samepage.3 lacks a SYNOPSIS or a KNOBS AND COUNTERS section")
        return 1

    entries = man_knob_entries(knob_lines)
    missing = [n for n in names if n not in entries]
    stale = [e for e in entries if e not in names]
    for n in missing:
        print("FAIL: docs/samepage.3: KNOBS AND COUNTERS has no entry for %s (lib/knobs.def)" % n)
    for e in stale:
        print("FAIL: docs/samepage.3: KNOBS AND COUNTERS documents %s, which lib/knobs.def lacks" % e)
    bad |= bool(missing or stale)

    syn = "\n".join(synopsis)
    missing_f = [f for f in funcs if not has_word(syn, f)]
    for f in missing_f:
        print("FAIL: docs/samepage.3: SYNOPSIS lacks %s() (include/samepage.h)" % f)
    bad |= bool(missing_f)
    if not missing and not stale and not missing_f:
        print("ok: docs/samepage.3 documents the %d names of lib/knobs.def and the %d functions of include/samepage.h"
              % (len(names), len(funcs)))

    if not os.path.exists(readme):
        print("note: README.md does not exist yet: its knob table is not checked")
    else:
        sec = readme_section(readme, "Knobs and counters")
        if sec is None:
            print('note: README.md has no "Knobs and counters" section yet: its knob table is not checked')
        else:
            text = "\n".join(sec)
            missing_r = [n for n in names if not has_word(text, n)]
            for n in missing_r:
                print('FAIL: README.md: the "Knobs and counters" section lacks %s (lib/knobs.def)' % n)
            if missing_r:
                bad = 1
            else:
                print('ok: README.md\'s "Knobs and counters" section has the %d names' % len(names))
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
