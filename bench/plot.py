#!/usr/bin/env python3
"""Plot bench result rows (TSV, the rows bench/table.py prints) with gnuplot.

    bench/plot.py <results.tsv> <out.svg>

One pair of bars per throughput row (unit msg/s, txn/s or rows/s) that has a numeric
baseline: txoutbox beside its same-run baseline, on a log scale, the ratio
printed above the pair.  Rows without a baseline or in other units (latency,
memory) stay in the table only.  Needs gnuplot (Debian: gnuplot-nox).
"""
import os
import re
import subprocess
import sys
import tempfile

THROUGHPUT = {"msg/s", "txn/s", "rows/s"}


def number(text):
    try:
        return float(text)
    except ValueError:
        return None


def short(figure, limit=46):
    """The figure's number and the start of its name, for an axis label."""
    figure = figure.replace('"', "'")
    return figure if len(figure) <= limit else figure[: limit - 3].rstrip() + "..."


def figure_number(line):
    m = re.match(r"\d+", line)
    return int(m.group()) if m else 0


def rows_to_plot(lines):
    rows = []
    for line in lines:
        f = line.rstrip("\n").split("\t")
        if len(f) < 6:
            continue
        figure, value, unit, _base_name, base = f[:5]
        v, b = number(value), number(base)
        if unit in THROUGHPUT and v and b:
            rows.append((short(figure), v, b))
    return rows


def main():
    if len(sys.argv) != 3:
        sys.exit("usage: bench/plot.py <results.tsv> <out.svg>")
    with open(sys.argv[1], encoding="utf-8") as f:
        rows = rows_to_plot(sorted(f, key=figure_number))
    if not rows:
        sys.exit("plot: no throughput rows with a baseline in " + sys.argv[1])
    with tempfile.TemporaryDirectory() as tmp:
        data = os.path.join(tmp, "rows.dat")
        with open(data, "w", encoding="utf-8") as f:
            for i, (label, v, b) in enumerate(rows):
                f.write(f'{i} "{label}" {v} {b} {v / b:.2f}\n')
        width = max(900, 70 * len(rows))
        script = f"""
set terminal svg size {width},720 font "sans,11" background "white"
set output "{sys.argv[2]}"
set title "txoutbox beside its same-run baseline (log scale; ratio above each pair)"
set style data histograms
set style histogram clustered gap 1
set style fill solid 0.85 border -1
set boxwidth 0.9
set logscale y
set yrange [500:*]
set ylabel "throughput (msg/s or txn/s)"
set grid ytics
set xtics rotate by -40 scale 0 font ",9" noenhanced
set rmargin 14
set bmargin 16
set key top left
plot "{data}" using 3:xtic(2) title "txoutbox" lc rgb "#2b6cb0", \\
     "" using 4 title "baseline" lc rgb "#a0aec0", \\
     "" using ($1):(($3 > $4 ? $3 : $4) * 1.25):(sprintf("%.2fx", $5)) with labels notitle font ",9"
"""
        subprocess.run(["gnuplot"], input=script, text=True, check=True)


if __name__ == "__main__":
    main()
