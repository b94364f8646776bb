"""Text-generation part of `make bench`: inferd vs onnxruntime-genai on the same ONNX files,
alternating within one run. Called by bench.py; returns a markdown section."""
import json
import os
import shutil
import statistics
import subprocess
import threading
import time
from pathlib import Path

import numpy as np

SHORT = "<|im_start|>user\nWrite a long story about a dragon.<|im_end|>\n<|im_start|>assistant\n"
PARAGRAPH = ("The river wound through the valley, past farms and orchards, under old stone bridges, "
             "and into the town where the market stood. ")


def long_prompt(tok, target=512):
    body = PARAGRAPH
    while len(tok.encode(SHORT.replace("Write a long story about a dragon.", body + "Summarise this."))) < target:
        body += PARAGRAPH
    return SHORT.replace("Write a long story about a dragon.", body + "Summarise this.")


def inferd_complete(addr, model, prompt, max_tokens=128):
    out = subprocess.run(
        ["busctl", "--address", addr, "--json=short", "--timeout=600", "call", "org.inferd.Inferd1", "/org/inferd/Inferd1",
         "org.inferd.Inferd1", "Complete", "ssa{sv}", model, prompt, "1", "max_tokens", "u", str(max_tokens)],
        capture_output=True, text=True, check=True)
    info = json.loads(out.stdout)["data"][1]
    return {k: v["data"] for k, v in info.items()}


def genai_run(og, m, tok, prompt, max_tokens=128, **search):
    """One greedy generation by onnxruntime-genai; `search` adds search options (with
    `min_length` set to its `max_length`, EOS cannot end it early)."""
    ids = tok.encode(prompt)
    p = og.GeneratorParams(m)
    p.set_search_options(max_length=len(ids) + max_tokens + 1, do_sample=False, **search)
    g = og.Generator(m, p)
    t0 = time.perf_counter()
    g.append_tokens(ids)
    g.generate_next_token()
    t1 = time.perf_counter()
    n = 1
    while not g.is_done() and n < max_tokens:
        g.generate_next_token()
        n += 1
    return {"tokens_per_second": (n - 1) / (time.perf_counter() - t1), "time_to_first_token_ms": (t1 - t0) * 1e3}


def memcpy_bandwidth():
    a = np.ones(64 << 20, np.float32)  # 256 MiB
    b = np.empty_like(a)
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(b, a)
        best = max(best, 2 * a.nbytes / (time.perf_counter() - t))  # read + write
    return best


BUILDER_EXPORTS = ["smollm2-builder-int4", "smollm2-builder-fp32"]


def link_model(src, dst, threads=None):
    """A model folder in a bench repository: hard links (inferd refuses symlinks that lead out of
    its repository), copies across file systems. With `threads`, genai_config.json is a copy
    whose intra-op threads are set (the builder writes none, so genai would take every core)."""
    dst.mkdir()
    for f in Path(src).iterdir():
        if threads is not None and f.name == "genai_config.json":
            config = json.loads(f.read_text())
            config["model"]["decoder"]["session_options"]["intra_op_num_threads"] = threads
            (dst / f.name).write_text(json.dumps(config, indent=2))
            continue
        try:
            os.link(f, dst / f.name)
        except OSError:
            shutil.copy2(f, dst / f.name)


def set_in_table(folder, table, lines):
    """Adds `lines` (TOML keys) to `table` of `folder`'s model.toml, the table created if absent.
    The file may be a hard link to the original: a file of its own is written."""
    toml = Path(folder) / "model.toml"
    text = toml.read_text()
    toml.unlink()
    head = f"[{table}]\n"
    text = text.replace(head, head + lines, 1) if head in text else text + "\n" + head + lines
    toml.write_text(text)


def drafts_off(folder):
    """Sets `generation.speculative_tokens = 0` in `folder`'s model.toml: decoding one token per
    step, as onnxruntime-genai does. Random weights repeat themselves, which prompt-lookup
    drafts would turn into speed no real text has."""
    set_in_table(folder, "generation", "speculative_tokens = 0\n")


def without_drafts(repo, name):
    """`{name}-plain` in `repo`: the same model without drafts, so the table shows what they
    change (they change no text)."""
    dst = Path(repo) / f"{name}-plain"
    link_model(Path(repo) / name, dst)
    drafts_off(dst)


def builder_exports(folder, repo, threads):
    """Adds the onnxruntime-genai builder's SmolLM2 exports (`make builder-models`) to `repo`,
    with the same intra-op threads as inferd. Returns the names found."""
    found = [n for n in BUILDER_EXPORTS if (Path(folder) / n / "model.onnx").exists()]
    for name in found:
        link_model(Path(folder) / name, Path(repo) / name, threads)
    return found


def section(addr, models_dir, names, runs=5, figures=None):
    figures = {} if figures is None else figures
    import onnxruntime_genai as og

    rows = []
    for name in names:
        folder = Path(models_dir) / name
        m = og.Model(str(folder))
        tok = og.Tokenizer(m)
        for label, prompt in [("20-token prompt", SHORT), ("512-token prompt", long_prompt(tok))]:
            ours, plain, theirs = [], [], []
            for i in range(runs):  # alternate so machine drift hits all alike
                # A different first line each run, so inferd's prompt-prefix cache never hits here.
                p = prompt.replace("<|im_start|>user\n", f"<|im_start|>user\n(run {i} of {name} {label})\n", 1)
                ours.append(inferd_complete(addr, name, p))
                plain.append(inferd_complete(addr, f"{name}-plain", p))
                theirs.append(genai_run(og, m, tok, p))
            med = lambda xs, k: statistics.median(x[k] for x in xs)
            # The figures are medians of each run's own ratio: a run's sides ran back to back,
            # so drift between runs cancels, which a ratio of medians would not do.
            paired = lambda xs, k: statistics.median(o[k] / t[k] for o, t in zip(xs, theirs))
            d_ours, d_plain = med(ours, "tokens_per_second"), med(plain, "tokens_per_second")
            d_theirs = med(theirs, "tokens_per_second")
            t_ours, t_theirs = med(ours, "time_to_first_token_ms"), med(theirs, "time_to_first_token_ms")
            d_ratio, t_ratio = paired(ours, "tokens_per_second"), paired(ours, "time_to_first_token_ms")
            p_ratio = paired(plain, "tokens_per_second")
            key = f"{name}_{label.split('-')[0]}_prompt"
            figures[f"decode_vs_genai_{key}"] = {"value": round(d_ratio, 4), "better": "higher",
                                                 "what": f"decode tok/s vs onnxruntime-genai, {name}, {label}"}
            figures[f"decode_without_drafts_vs_genai_{key}"] = {
                "value": round(p_ratio, 4), "better": "higher",
                "what": f"decode tok/s without drafts vs onnxruntime-genai, {name}, {label}"}
            figures[f"ttft_vs_genai_{key}"] = {"value": round(t_ratio, 4), "better": "lower",
                                               "what": f"time to first token vs onnxruntime-genai, {name}, {label}"}
            rows.append(f"| {name} | {label} | {d_ours:.1f} | {d_plain:.1f} | {d_theirs:.1f} | **{d_ratio:.2f}×** "
                        f"| {p_ratio:.2f}× | {t_ours:.0f} | {t_theirs:.0f} | **{t_ratio:.2f}×** |")
        del m

    # Prompt-prefix cache: a 400-token system prompt shared by two questions.
    system = PARAGRAPH * 14
    def ask(tag, question):
        prompt = (f"<|im_start|>system\n[{tag}] {system}<|im_end|>\n<|im_start|>user\n{question}"
                  "<|im_end|>\n<|im_start|>assistant\n")
        return inferd_complete(addr, names[0], prompt, 8)
    miss, hit = [], []
    for i in range(runs):
        tag = f"session {i} {time.time()}"
        miss.append(ask(tag, "Where does the river go?"))
        hit.append(ask(tag, "What stands in the town?"))
    ttft_miss = statistics.median(r["time_to_first_token_ms"] for r in miss)
    ttft_hit = statistics.median(r["time_to_first_token_ms"] for r in hit)
    reused = statistics.median(r.get("cached_prompt_tokens", 0) for r in hit)
    prompt_len = statistics.median(r["prompt_tokens"] for r in hit)
    # The share of the first token's wait the cache saves: a hit's TTFT is a few ms, so a ratio
    # of hit to miss would move by tens of percent with scheduling noise alone.
    saved = statistics.median(1 - h["time_to_first_token_ms"] / m["time_to_first_token_ms"] for m, h in zip(miss, hit))
    figures["prefix_cache_ttft_saved"] = {"value": round(saved, 4), "better": "higher",
                                          "what": f"share of TTFT a cached {prompt_len:.0f}-token prefix saves, {names[0]}"}

    conc_rows = []
    for name in names:
        ceiling = ort_batch_gains(Path(models_dir) / name)
        conc = concurrency(addr, name)
        conc_rows += [f"| {name} | {n} | {tps:.1f} | {ratio:.2f}× | {ceiling[n]:.2f}× |"
                      for n, tps, ratio in conc]
        top_n, _, top_ratio = conc[-1]
        figures[f"streams_{top_n}_vs_1_{name}"] = {"value": round(top_ratio, 4), "better": "higher",
                                                   "what": f"aggregate tok/s, {top_n} streams vs 1, {name}"}
    conc_rows = "\n".join(conc_rows)

    bw = memcpy_bandwidth()
    model = Path(models_dir) / names[0]
    # Every weight is read once per token: the native import's embedding table is the tied LM
    # head's weight too (the same bytes), which reads all of it.
    per_token = sum(f.stat().st_size for f in model.glob("model.onnx*"))
    short_decode = float(rows[0].split("|")[4])  # without drafts
    return f"""
## Text generation: inferd vs onnxruntime-genai 0.18 (targets: decode ≥ 1.10×, TTFT ≤ 0.9× at 512)

Same ONNX files on both sides, run by genai through their `genai_config.json`: inferd's own
imports (`smollm2`, the default model, imported natively from the Q4_1 GGUF with every product in
fp32; `smollm2-int8-activations`, the same files with `accuracy_level` 4 on every `MatMulNBits`,
which is faster and inexact (docs/models.md); and `smollm2-fp32`) and, where `make builder-models` has made them, the
onnxruntime-genai model builder's exports of the same SmolLM2 (`smollm2-builder-*`:
GroupQueryAttention, past/present share buffer, which inferd then uses too). Greedy,
128 new tokens at most (both stop at the same EOS), 2 intra-op threads on both sides, weights in
transparent huge pages on both sides (inferd's `execution.huge_pages`; genai through glibc's
`glibc.malloc.hugetlb=1` tunable, which `make bench` sets), {runs} runs each, alternating; medians (a ratio is the median of each run's own). Every run's prompt is different, so inferd's
prompt-prefix cache plays no part here (see the next section for it).

| model | prompt | inferd decode tok/s | inferd, no drafts | genai decode tok/s | ratio | ratio, no drafts | inferd TTFT ms | genai TTFT ms | ratio |
|---|---|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}

"inferd" decodes as it does by default, with prompt-lookup drafts (docs/models.md, "Drafts"):
when a sequence decodes alone, the tokens that followed the latest earlier occurrence of its last
2–3 tokens are checked in the same graph run as its next token, and the text is the text of
plain decoding. "No drafts" is the same model with `generation.speculative_tokens = 0`. The
20-token prompt asks for a story, which seldom repeats itself; the 512-token prompt is one
paragraph repeated and "Summarise this.", and the summary quotes it: that is where drafts pay
(answers from a document, summaries, code edits). On this CPU a run of several positions costs
the fp32 graph little more than one position, but the int4 graphs about 1.75× (ONNX Runtime's
`MatMulNBits` takes another kernel for more than one row), so inferd measures those costs and
drafts only where the tokens a draft is expected to add pay for its run.

Without drafts, both sides run the same graph, but inferd feeds `num_logits_to_keep` = 1 to its own imports
(see docs/models.md), so after a prompt their LM head runs for the last position only; genai
computes it for every prompt position. The builder's exports have no such input, so there both
sides run the same prompt pass. Decode steps are the same work on both sides, and ONNX Runtime
takes over 90% of a step (perf, 2026-11-30): a plain step is bound by the graph, and on the
same file it cannot be 1.10× genai's on this CPU; only fewer graph runs per token can. The
builder exports moved from 0.60× (token interleaving) to within 15% of genai without drafts
once inferd batched GroupQueryAttention natively and wrote its cache in place
(docs/architecture.md). Timed inside the daemon (2026-12-07), a builder int4 step without
drafts took about 7.3 ms: ONNX Runtime's run 7.0 ms, inferd's binding, inputs and logits copy
0.23 ms, the rest of the worker's turn 0.1 ms. The remaining gap is inside the run: Python
onnxruntime with IoBinding on the same file, same threads, is also 5–10% slower a step than
genai, for a reason not found yet (genai's shared arena allocator made no difference).

### Prompt-prefix cache ({names[0]})

Two questions after the same {prompt_len:.0f}-token system prompt, {runs} runs each: the second
reuses the cache of {reused:.0f} prompt tokens.

| | TTFT ms |
|---|---:|
| first question (nothing cached) | {ttft_miss:.0f} |
| second question (shared prefix from the cache) | {ttft_hit:.0f} |
| ratio | **{ttft_hit / ttft_miss:.2f}×** |

### Concurrent streams (target: 4 streams ≥ 2× one stream's aggregate tokens/s)

Greedy, 64 new tokens per stream, the 20-token prompt; wall time from the first call to the last
answer, prompts included. Each stream runs its prompt alone, then joins the continuous batch:
one decode step runs every joined stream, so the weights are read once per step for all of them.
The last column is the ceiling: what onnxruntime alone gains from the same batched step on this
machine (Python onnxruntime, one step over N rows vs one row, same file).

| model | streams | aggregate tok/s | vs 1 stream | onnxruntime's own batch-N gain |
|---|---:|---:|---:|---:|
{conc_rows}

### Bandwidth bound

memcpy bandwidth {bw / 1e9:.1f} GB/s (numpy copy, read + write); {names[0]} reads about
{per_token / 1e6:.0f} MB of weights per token (the whole model file: its table is the tied head) →
at most ≈ {bw / per_token:.0f} tokens/s if decoding were bound by memory bandwidth alone.
inferd's short-prompt decode without drafts above is {short_decode / (bw / per_token):.0%} of that bound.
"""


def concurrency(addr, name, new_tokens=64):
    """Aggregate decode rate of 1, 2 and 4 simultaneous streams, as markdown table rows."""
    conc = []
    for n in (1, 2, 4):
        results, threads = [], []
        start = time.perf_counter()
        for _ in range(n):
            t = threading.Thread(target=lambda: results.append(inferd_complete(addr, name, SHORT, new_tokens)))
            t.start()
            threads.append(t)
        for t in threads:
            t.join()
        secs = time.perf_counter() - start
        total = sum(r["completion_tokens"] for r in results)
        conc.append((n, total / secs))
    return [(n, tps, tps / conc[0][1]) for n, tps in conc]


def ort_batch_gains(folder, batches=(1, 2, 4), past=60, steps=30):
    """What onnxruntime alone gains from a batched decode step on this machine: tokens/s of one
    step over N rows ÷ tokens/s of a one-row step (the ceiling for continuous batching)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = 2
    s = ort.InferenceSession(str(folder / "model.onnx"), so, providers=["CPUExecutionProvider"])
    names = {i.name for i in s.get_inputs()}
    pasts = [i for i in s.get_inputs() if i.name.startswith("past_key_values.")]
    dtype = np.float16 if pasts[0].type == "tensor(float16)" else np.float32
    # The builder's exports leave the head size symbolic; genai_config.json has it.
    decoder = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]
    heads, size = (d if isinstance(d, int) else decoder[k]
                   for d, k in zip(pasts[0].shape[1:4:2], ["num_key_value_heads", "head_size"]))

    def rate(b):
        feed = {"input_ids": np.ones((b, 1), np.int64), "attention_mask": np.ones((b, past + 1), np.int64)}
        if "position_ids" in names:
            feed["position_ids"] = np.full((b, 1), past, np.int64)
        feed |= {i.name: np.zeros((b, heads, past, size), dtype) for i in pasts}
        for _ in range(3):
            s.run(["logits"], feed)
        t = time.perf_counter()
        for _ in range(steps):
            s.run(["logits"], feed)
        return b * steps / (time.perf_counter() - t)

    one = rate(1)
    return {b: 1.0 if b == 1 else rate(b) / one for b in batches}


def main():
    """`make bench-generation`: this section alone (the decode table, the prefix cache,
    concurrent streams, the bandwidth bound), replacing its part of docs/benchmarks.md and its
    figures in docs/bench.json; the rest keeps the figures of the last `make bench`."""
    import argparse
    import tempfile

    from bench_daemon import commit, rewrite_section, served

    ap = argparse.ArgumentParser()
    ap.add_argument("--inferd", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--json", required=True)
    args = ap.parse_args()
    figures = {}
    with tempfile.TemporaryDirectory() as t:
        repo = Path(t) / "gen"
        repo.mkdir()
        names = repository(repo, 2)
        with served(args.inferd, repo, t) as addr:
            md = section(addr, str(repo), names, figures=figures)
    md = md.replace("\nSame ONNX files on both sides",
                    f"\nMeasured alone by `make bench-generation` at {commit()}.\n\nSame ONNX files on both sides", 1)
    rewrite_section(args.out, r"\n## Text generation: [^\n]*\n.*?(?=\n### (?:Huge pages|DeepSeek-R1))", md, "text-generation")
    saved = json.loads(Path(args.json).read_text())
    saved["figures"].update(figures)
    Path(args.json).write_text(json.dumps(saved, indent=2) + "\n")


def repository(repo, threads):
    """The models the section runs, in `repo`: the int4 default, its int8-activation variant,
    the fp32 import and any builder exports, each also without drafts. Returns their names."""
    import bench_import

    for name, src in [("smollm2", Path(os.environ["INFERD_MODELS"]) / "smollm2"),
                      ("smollm2-fp32", Path(os.environ["INFERD_TEST_MODELS"]) / "smollm2-fp32")]:
        link_model(src, repo / name)
    bench_import.int8_activations(Path(os.environ["INFERD_MODELS"]) / "smollm2", repo / "smollm2-int8-activations")
    builders = builder_exports(Path(os.environ["INFERD_CACHE"]) / "builder-models", repo, threads)
    names = ["smollm2", "smollm2-int8-activations", "smollm2-fp32", *builders]
    for name in names:
        without_drafts(repo, name)
    return names


if __name__ == "__main__":
    main()
