"""The DeepSeek-R1 distills' shapes in `make bench`: random weights at each real shape
(models/configs/*-shape.json), imported by the native importer (`inferctl import --random …
--precision int4`, timed, its peak RSS measured) and served by inferd one at a time: decode
tok/s, inferd's peak RSS, and the fraction of the memory-bandwidth bound. Called by bench.py;
returns a markdown section."""
import json
import statistics
from pathlib import Path

from bench_generation import drafts_off, inferd_complete, link_model, memcpy_bandwidth
from bench_import import measured

CONFIGS = Path(__file__).resolve().parent.parent / "models" / "configs"
SHAPES = ["r1-distill-qwen-1.5b-shape", "r1-distill-qwen-7b-shape", "r1-distill-llama-8b-shape"]


def imported(inferctl, gguf, name, root):
    """The native int4 import of shape `name` under `root` (made once: an 8B import takes
    minutes), and its measurements: {"seconds", "peak_rss_mib"}."""
    stats = root / f"{name}.import.json"
    if not (root / name / "model.onnx").exists() or not stats.exists():
        secs, rss = measured([str(inferctl), "import", "--random", str(CONFIGS / f"{name}.json"), "--tokenizer",
                              str(gguf), "--name", name, "--precision", "int4", "--models", str(root), "--force"])
        stats.write_text(json.dumps({"seconds": secs, "peak_rss_mib": rss}))
    return root / name, json.loads(stats.read_text())


def peak_rss_mib(pid):
    status = Path(f"/proc/{pid}/status").read_text().splitlines()
    return next(int(l.split()[1]) for l in status if l.startswith("VmHWM")) / 1024


def section(inferctl, gguf, root, tmp, start_inferd, addr, runs=3, tokens=32):
    root.mkdir(parents=True, exist_ok=True)
    bw = memcpy_bandwidth()
    rows = []
    for name in SHAPES:
        folder, imp = imported(inferctl, gguf, name, root)
        repo = tmp / f"shape-{name}"
        repo.mkdir()
        link_model(folder, repo / name)
        drafts_off(repo / name)
        d = start_inferd(str(repo), addr)
        try:
            out = [inferd_complete(addr, name, "Hello, tell me about rivers.", tokens) for _ in range(runs)]
            rss = peak_rss_mib(d.pid)
        finally:
            d.terminate()
            d.wait()
        tps = statistics.median(r["tokens_per_second"] for r in out)
        cfg = json.loads((folder / "config.json").read_text())
        size = sum(f.stat().st_size for f in folder.glob("model.onnx*"))
        # Read each step: every weight but the embedding table (fp16), of which one row is.
        per_token = size - cfg["vocab_size"] * cfg["hidden_size"] * 2
        bound = bw / per_token
        rows.append(f"| {name} | {cfg['num_hidden_layers']} × {cfg['hidden_size']}, vocab {cfg['vocab_size']:,} "
                    f"| {size / 1e9:.2f} GB | {imp['seconds']:.0f} s | {imp['peak_rss_mib'] / 1024:.1f} GiB "
                    f"| {tps:.2f} | {rss / 1024:.1f} GiB | {bound:.2f} tok/s | {tps / bound:.0%} |")
    table = "\n".join(rows)
    return f"""
### DeepSeek-R1 distill shapes (`models/configs/*-shape.json`, int4)

Random weights at each real shape, imported by the native importer
(`inferctl import --random CONFIG --tokenizer SmolLM2.gguf --precision int4`: import time and
the importer's peak RSS), then served alone by inferd without drafts (random weights repeat themselves): greedy,
{tokens} new tokens, {runs} runs, median. The bound is the measured copy bandwidth ({bw / 1e9:.1f} GB/s) over the bytes read per
token (every weight but the embedding table).

| shape | layers × hidden | model files | import | import peak RSS | decode tok/s | inferd peak RSS | bandwidth bound | fraction |
|---|---|---:|---:|---:|---:|---:|---:|---:|
{table}
"""


def main():
    """`make bench-shapes`: this section alone, replacing its part of docs/benchmarks.md (the
    rest keeps the figures of the last `make bench`)."""
    import argparse
    import os
    import tempfile

    from bench_daemon import commit, rewrite_section, start_bus, start_inferd

    ap = argparse.ArgumentParser()
    ap.add_argument("--inferd", required=True)
    ap.add_argument("--inferctl", required=True)
    ap.add_argument("--gguf", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        bus, addr = start_bus(tmp)
        try:
            md = section(args.inferctl, args.gguf, Path(os.environ["INFERD_BENCH_MODELS"]) / "native", tmp,
                         lambda repo, a: start_inferd(args.inferd, repo, a, tries=3000), addr)
        finally:
            bus.terminate()
            bus.wait()
    md = md.replace("(`models/configs/*-shape.json`, int4)\n",
                    f"(`models/configs/*-shape.json`, int4)\n\nMeasured alone by `make bench-shapes` at {commit()}.\n", 1)
    rewrite_section(args.out, r"\n### DeepSeek-R1[^\n]*shape[^\n]*\n.*?(?=\n## )", md, "DeepSeek-R1 shape")


if __name__ == "__main__":
    main()
