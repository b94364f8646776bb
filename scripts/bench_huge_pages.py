"""Huge pages in `make bench`, and alone in `make bench-huge-pages`: inferd's decode with its
weights in huge pages (`execution.huge_pages`, the default) and without, on the same files.
Huge pages are the process's, so each side is its own daemon serving one model; the two
alternate, a fresh daemon each round."""
import argparse
import os
import shutil
import statistics
import subprocess
import tempfile
from pathlib import Path

from bench_daemon import commit, rewrite_section, served
from bench_generation import BUILDER_EXPORTS, SHORT, drafts_off, inferd_complete, link_model, set_in_table


def huge_page_mib(addr):
    """AnonHugePages of the inferd serving on `addr` (the only one this script runs)."""
    pid = subprocess.run(["pgrep", "-n", "-x", "inferd"], capture_output=True, text=True).stdout.split()[0]
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    kb = next(int(l.split()[1]) for l in rollup.splitlines() if l.startswith("AnonHugePages:"))
    return kb / 1024


def one_round(inferd, src, huge, tmp, requests=3):
    """A daemon serving `src` alone, without drafts; its median decode tok/s over `requests` and
    its memory in huge pages."""
    repo = tmp / "repo"
    shutil.rmtree(repo, ignore_errors=True)
    repo.mkdir()
    link_model(src, repo / "m")
    drafts_off(repo / "m")
    set_in_table(repo / "m", "execution", f"huge_pages = {'true' if huge else 'false'}\nintra_threads = 2\n")
    with served(inferd, repo, tmp) as addr:
        rates = [inferd_complete(addr, "m", SHORT.replace("user\n", f"user\n(run {i})\n", 1))["tokens_per_second"]
                 for i in range(requests)]
        return statistics.median(rates), huge_page_mib(addr)


def section(inferd, models, rounds=3):
    rows = []
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        for name, src in models:
            on, off, ratios, mib = [], [], [], 0.0
            for _ in range(rounds):  # alternate so machine drift hits both alike
                (a, mib), (b, _) = one_round(inferd, src, True, tmp), one_round(inferd, src, False, tmp)
                on.append(a)
                off.append(b)
                ratios.append(a / b)
            rows.append(f"| {name} | {statistics.median(on):.1f} | {statistics.median(off):.1f} | "
                        f"**{statistics.median(ratios):.2f}×** | {mib:.0f} |")
    return f"""
### Huge pages (`execution.huge_pages`)

inferd's decode with the weights in transparent huge pages (the default, docs/models.md) and
without, on the same files: greedy, the 20-token story prompt, 128 tokens, no drafts, 2 intra-op
threads. Huge pages are a process's, so each side is a daemon serving that one model; the two
alternate, a fresh daemon each round, {rounds} rounds of 3 requests (medians; the ratio is the
median of each round's own). The last column is the daemon's memory in huge pages.

| model | decode tok/s, huge pages | 4 KiB pages | ratio | MiB in huge pages |
|---|---:|---:|---:|---:|
{chr(10).join(rows)}

The text-generation table above compares inferd with onnxruntime-genai with huge pages on both
sides; genai gets
them from glibc's tunable (it loads on the main thread, whose memory glibc then advises), inferd by
itself (its models load on their own threads, whose malloc arenas the tunable leaves alone).
"""


def models():
    """The SmolLM2 files of the generation table: the int4 default, the fp32 import and any
    builder exports."""
    found = [("smollm2", Path(os.environ["INFERD_MODELS"]) / "smollm2"),
             ("smollm2-fp32", Path(os.environ["INFERD_TEST_MODELS"]) / "smollm2-fp32")]
    builders = Path(os.environ["INFERD_CACHE"]) / "builder-models"
    return found + [(n, builders / n) for n in BUILDER_EXPORTS if (builders / n / "model.onnx").exists()]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--inferd", required=True)
    ap.add_argument("--out", required=True)
    args = ap.parse_args()
    md = section(args.inferd, models())
    md = md.replace("(`execution.huge_pages`)\n",
                    f"(`execution.huge_pages`)\n\nMeasured alone by `make bench-huge-pages` at {commit()}.\n", 1)
    rewrite_section(args.out, r"\n### Huge pages \(`execution.huge_pages`\)\n.*?(?=\n### )", md, "huge pages")


if __name__ == "__main__":
    main()
