#!/usr/bin/env python3
"""Fails when a module of the daemon uses a module that uses it back (directly or around a
longer circle): the layering docs/architecture.md draws, kept by `make lint`.

Each file under daemon/src is a module; its edges are the modules its `crate::…`, `super::…`
and `self::…` paths name (in `use` lines and inline), resolved to the deepest module file that
exists. A `#[cfg(test)]` module in a file of its own counts as that file; one inline is skipped,
since tests may reach anywhere.

Usage: module_cycles.py [SRC_DIR]   (default daemon/src)
"""
import re
import sys
from pathlib import Path

PATH = re.compile(r"\b(crate|super|self)((?:::[a-z_][a-z0-9_]*)+)")


def module_of(src, f):
    parts = list(f.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts = parts[:-1]
    return tuple(parts)


def code(text):
    """The file without comments, strings and inline `#[cfg(test)] mod tests { … }` blocks."""
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r'"(?:\\.|[^"\\])*"', '""', text)
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i:m.start()])
        depth, j = 1, m.end()
        while depth and j < len(text):
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def main(src):
    src = Path(src)
    files = {module_of(src, f): f for f in src.rglob("*.rs")}
    graph = {}
    for mod, f in files.items():
        edges = set()
        for root, rest in PATH.findall(code(f.read_text())):
            names = rest.split("::")[1:]
            # crate: the root; self: this module; super: its parent.
            base = {"crate": (), "self": mod, "super": mod[:-1]}[root]
            target = base + tuple(names)
            while target and target not in files:
                target = target[:-1]
            if target != mod and target in files and target != ():
                edges.add(target)
        graph[mod] = edges
    # Strongly connected components (Tarjan).
    index, low, stack, on, sccs, n = {}, {}, [], set(), [], [0]

    def visit(v):
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in graph.get(v, ()):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                sccs.append(comp)

    sys.setrecursionlimit(10000)
    for v in graph:
        if v not in index:
            visit(v)
    if sccs:
        for comp in sccs:
            names = sorted("::".join(c) for c in comp)
            ties = [f"  {'::'.join(a)} -> {'::'.join(b)}" for a in comp for b in graph[a] if b in comp]
            print(f"module circle: {', '.join(names)}\n" + "\n".join(sorted(ties)))
        sys.exit(1)
    print(f"module_cycles: {len(graph)} modules of {src}, no circles")


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "daemon/src")
