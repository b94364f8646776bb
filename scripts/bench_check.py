#!/usr/bin/env python3
"""`make bench-check`: compares a bench run's figures with the committed baseline
(docs/bench.json). Every figure is already a ratio to a reference measured in its own run (a
Python onnxruntime loop, onnxruntime-genai, the in-process engine), so machine speed cancels
out; a figure that got worse than the baseline by more than the tolerance is flagged and the
check fails. Usage: bench_check.py BASELINE RUN [--tolerance 0.15]"""
import argparse
import json
import sys


def compare(baseline, run, tolerance):
    """Returns (rows, flagged): one row per figure in the baseline."""
    rows, flagged = [], []
    for key, base in baseline["figures"].items():
        now = run["figures"].get(key)
        if now is None:
            rows.append((key, base["value"], None, None, "missing"))
            flagged.append(key)
            continue
        b, n = base["value"], now["value"]
        # How much worse, as a fraction of the baseline: for "higher" figures a drop, for
        # "lower" ones a rise.
        worse = (b - n) / b if base["better"] == "higher" else (n - b) / b
        verdict = "WORSE" if worse > tolerance else "ok"
        if verdict != "ok":
            flagged.append(key)
        rows.append((key, b, n, -worse, verdict))
    return rows, flagged


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("baseline")
    ap.add_argument("run")
    ap.add_argument("--tolerance", type=float, default=0.15)
    a = ap.parse_args()
    baseline = json.load(open(a.baseline))
    run = json.load(open(a.run))
    rows, flagged = compare(baseline, run, a.tolerance)
    print(f"baseline {baseline['date']} ({baseline['machine']}) vs run {run['date']} ({run['machine']})")
    print(f"{'figure':58} {'baseline':>9} {'now':>9} {'change':>8}")
    for key, b, n, change, verdict in rows:
        now = "-" if n is None else f"{n:.3f}"
        ch = "-" if change is None else f"{change:+.0%}"
        print(f"{key:58} {b:9.3f} {now:>9} {ch:>8}  {verdict}")
    if flagged:
        print(f"\n{len(flagged)} figure(s) worse than the baseline by more than {a.tolerance:.0%}: "
              + ", ".join(flagged), file=sys.stderr)
        sys.exit(1)
    print(f"\nno figure worse than the baseline by more than {a.tolerance:.0%}")


if __name__ == "__main__":
    main()
