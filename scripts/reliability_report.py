#!/usr/bin/env python3
"""Renders the results `make reliability` / `make soak` left in a folder (one JSON file per test,
written by the tests' `record`, and fuzz.json) as the results table of docs/reliability.md,
between its `<!-- results -->` and `<!-- /results -->` markers. Rows of tests not in this run
keep their previous text."""

import json
import pathlib
import re
import sys

ORDER = ["R1 broker faults", "R2 load", "R3 bad input", "R4 fuzzing", "R5 vanishing clients",
         "R6 SIGTERM under load", "R8 hostile clients", "Soak"]
HEADER = ("| test | load | faults | sent | answered | lost | duplicates | errors by type | RSS start→end |\n"
          "|---|---|---|---|---|---|---|---|---|")


def cell(v):
    if isinstance(v, dict):
        return ", ".join(f"{k}: {n}" for k, n in v.items()) or "none"
    return str(v).replace("|", "\\|")


def row(r):
    extra = []
    if "latency_ms" in r:
        extra.append("p50/p99 ms: " + ", ".join(
            f"{op} {p[0]:.0f}/{p[1]:.0f}" for op, p in r["latency_ms"].items()))
    if "latency_ms_p50_by_window" in r:
        w = r["latency_ms_p50_by_window"]
        extra.append(f"p50 ms first→last window: {w[0]:.0f}→{w[-1]:.0f}")
    if "freed" in r:
        extra.append(r["freed"])
    load = cell(r.get("load", "-")) + ("; " + "; ".join(extra) if extra else "")
    cols = [r["test"], load, cell(r.get("faults", "-")), cell(r.get("sent", "-")),
            cell(r.get("answered", "-")), cell(r.get("lost", "-")),
            cell(r.get("duplicates", "-")), cell(r.get("errors", "-")), cell(r.get("rss", "-"))]
    return "| " + " | ".join(cols) + " |"


def fuzz_row(f):
    total = sum(t["executions"] for t in f.values())
    crashes = sum(t["crashes"] for t in f.values())
    per = ", ".join(f"{name} {t['executions']:,} in {t['seconds']} s" for name, t in f.items())
    return {"test": "R4 fuzzing", "load": per, "faults": "-", "sent": f"{total:,} inputs",
            "answered": "-", "lost": "-", "duplicates": "-",
            "errors": {"crashes": crashes}, "rss": "-"}


def main(folder, doc):
    folder, doc = pathlib.Path(folder), pathlib.Path(doc)
    results = {}
    for p in folder.glob("*.json"):
        r = json.loads(p.read_text())
        if p.name == "fuzz.json":
            r = fuzz_row(r)
        results[r["test"]] = row(r)
    text = doc.read_text()
    m = re.search(r"<!-- results -->\n(.*?)<!-- /results -->", text, re.S)
    if not m:
        sys.exit(f"{doc}: no <!-- results --> markers")
    old = {}
    for line in m.group(1).splitlines():
        cells = [c.strip() for c in line.strip("|").split("|")]
        if line.startswith("| R") or line.startswith("| Soak"):
            old[cells[0]] = line
    rows = [results.get(t, old.get(t)) for t in ORDER]
    table = HEADER + "\n" + "\n".join(r for r in rows if r) + "\n"
    doc.write_text(text[:m.start(1)] + table + text[m.end(1):])
    print(f"{doc}: {len(results)} result(s) from {folder}")


if __name__ == "__main__":
    main(*sys.argv[1:3])
