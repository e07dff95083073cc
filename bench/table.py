#!/usr/bin/env python3
"""Print bench result rows (TSV on stdin) as one Markdown table.

Columns of a row: figure, value, unit, baseline name, baseline value, ratio,
target, note.  Empty fields print as a dash.
"""
import sys

HEAD = ["figure", "txoutbox", "unit", "baseline (same run)", "baseline", "ratio", "target", "note"]

rows = []
for line in sys.stdin:
    line = line.rstrip("\n")
    if not line:
        continue
    f = line.split("\t")
    f += [""] * (len(HEAD) - len(f))
    rows.append([x if x else "-" for x in f[: len(HEAD)]])

print("| " + " | ".join(HEAD) + " |")
print("|" + "|".join("---" for _ in HEAD) + "|")
for r in rows:
    print("| " + " | ".join(r) + " |")
