"""`make gpu-bench`: inferd against onnxruntime-genai on the same ONNX files, on an NVIDIA GPU.

For each model given as NAME=FOLDER, alternating the two sides run by run:
  - decode tokens/s at batch 1 (--tokens new tokens; EOS is moved out of reach on both sides,
    so every run decodes them all) and time to first token at a 512-token prompt;
  - onnxruntime-genai twice, with its past/present share buffer on and off: its best counts,
    and the table says which it was;
  - inferd's aggregate tokens/s with --streams concurrent requests, against one stream;
  - the fraction of the bandwidth bound: weight bytes read per token × tokens/s over the
    device's copy bandwidth (measured with torch where it has CUDA, else --bandwidth-gbs).
The random-weight models run without prompt-lookup drafts. With --fixture-model FOLDER (the real
SmolLM2), inferd's greedy text on the provider, drafting, is checked against
tests/fixtures/smollm2_fp32_greedy.json (transformers' text), and the same model is timed with
drafts and without, on free text and on a summary that quotes its prompt (the texts must be the
same). Exit status 1 if a text differs.

Prints a markdown block (date, GPU, commit) for docs/benchmarks.md; --out appends it there.
--provider cpu runs the same on a machine without a GPU (genai's CPU package), to test the
script itself.

Needs: ORT_DYLIB_PATH (inferd's ONNX Runtime: onnxruntime-gpu's library on a GPU), inferd and
inferctl (INFERD_BIN, default target/release/inferd), dbus-daemon, busctl, and the
onnxruntime_genai package (onnxruntime-genai-cuda on a GPU).
"""
import argparse
import datetime
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from bench import start_bus  # noqa: E402
import bench_generation  # noqa: E402
from bench_generation import PARAGRAPH, SHORT  # noqa: E402

FIXTURE = HERE.parent / "tests" / "fixtures" / "smollm2_fp32_greedy.json"


def copy_model(src, dst, provider, eos, drafts):
    """A hard-linked copy of a model folder with its manifest set to `provider` (GPU required),
    its EOS moved to `eos` when given, and prompt-lookup drafts off unless `drafts` (random
    weights repeat themselves, which drafts would turn into speed no real text has)."""
    dst.mkdir()
    for f in src.iterdir():
        if f.name in ("model.toml", "genai_config.json"):
            continue
        try:
            os.link(f, dst / f.name)
        except OSError:
            shutil.copy2(f, dst / f.name)
    toml = (src / "model.toml").read_text() if (src / "model.toml").exists() else 'kind = "text-generation"\n'
    lines = [l for l in toml.splitlines() if not l.startswith(("providers", "require_gpu"))]
    gpu = provider != "cpu"
    execution = f'providers = ["{provider}"]\nrequire_gpu = {"true" if gpu else "false"}'
    text = "\n".join(lines)
    text = text.replace("[execution]", f"[execution]\n{execution}", 1) if "[execution]" in text \
        else f"{text}\n[execution]\n{execution}\n"
    keys = ([f"eos_token_ids = [{eos}]"] if eos is not None else []) + ([] if drafts else ["speculative_tokens = 0"])
    if keys:
        keys = "\n".join(keys)
        text = text.replace("[generation]", f"[generation]\n{keys}", 1) if "[generation]" in text \
            else f"{text}\n[generation]\n{keys}\n"
    (dst / "model.toml").write_text(text + "\n")
    config = json.loads((src / "genai_config.json").read_text())
    if eos is not None:
        config["model"]["eos_token_id"] = eos
    (dst / "genai_config.json").write_text(json.dumps(config, indent=2))
    return config


def busctl(addr, *args):
    out = subprocess.run(["busctl", "--address", addr, "--json=short", "call", "org.inferd.Inferd1",
                          "/org/inferd/Inferd1", "org.inferd.Inferd1", *args],
                         capture_output=True, text=True, check=True)
    return json.loads(out.stdout)["data"]


def complete(addr, model, prompt, tokens):
    data = busctl(addr, "Complete", "ssa{sv}", model, prompt, "2", "max_tokens", "u", str(tokens),
                  "temperature", "d", "0")
    return data[0], {k: v["data"] for k, v in data[1].items()}


def wait_ready(addr, names, timeout):
    deadline = time.time() + timeout
    while time.time() < deadline:
        try:
            models = {m["name"]["data"] if isinstance(m["name"], dict) else m["name"]: m
                      for m in busctl(addr, "ListModels")[0]}
        except (subprocess.CalledProcessError, json.JSONDecodeError, KeyError):
            time.sleep(0.5)
            continue
        states = {n: models.get(n, {}).get("state", {}).get("data") for n in names}
        if all(s == "ready" for s in states.values()):
            return {n: {k: v["data"] for k, v in models[n].items()} for n in names}
        if any(s == "failed" for s in states.values()):
            raise SystemExit(f"a model failed to load: {models}")
        time.sleep(0.5)
    raise SystemExit(f"models not ready after {timeout} s")


def genai_side(og, folder, provider, share_buffer):
    config = og.Config(str(folder))
    config.clear_providers()
    if provider != "cpu":
        config.append_provider(provider)
    model = og.Model(config)
    return model, og.Tokenizer(model), share_buffer


def genai_run(og, side, prompt, tokens):
    model, tok, share = side
    return bench_generation.genai_run(og, model, tok, prompt, tokens, past_present_share_buffer=share,
                                      min_length=len(tok.encode(prompt)) + tokens + 1)


def long_prompt(tok, target=512):
    body = PARAGRAPH
    while len(tok.encode(SHORT.replace("Write a long story about a dragon.", body))) < target:
        body += PARAGRAPH
    return SHORT.replace("Write a long story about a dragon.", body)


def streams(addr, name, n, tokens):
    """Aggregate decode tokens/s of n concurrent requests (wall clock over all their tokens)."""
    out = [None] * n

    def one(i):
        out[i] = complete(addr, name, f"{SHORT}(stream {i} {time.time()})", tokens)[1]
    threads = [threading.Thread(target=one, args=(i,)) for i in range(n)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(o["completion_tokens"] for o in out) / (time.perf_counter() - t)


def device_bandwidth(provider, fallback_gbs):
    if provider != "cpu":
        try:
            import torch
            if torch.cuda.is_available():
                a = torch.empty(1 << 30, dtype=torch.uint8, device="cuda")
                b = torch.empty_like(a)
                best = 0.0
                for _ in range(10):
                    torch.cuda.synchronize()
                    t = time.perf_counter()
                    b.copy_(a)
                    torch.cuda.synchronize()
                    best = max(best, 2 * a.numel() / (time.perf_counter() - t))
                return best, "torch device-to-device copy"
        except ImportError:
            pass
    if fallback_gbs:
        return fallback_gbs * 1e9, "--bandwidth-gbs"
    import numpy as np
    a = np.ones(64 << 20, np.float32)
    b = np.empty_like(a)
    best = 0.0
    for _ in range(5):
        t = time.perf_counter()
        np.copyto(b, a)
        best = max(best, 2 * a.nbytes / (time.perf_counter() - t))
    return best, "numpy host copy"


def weight_bytes(folder, config):
    """Bytes read per token: the weight files, less the embedding table (one row is read)."""
    files = sum(f.stat().st_size for f in folder.glob("model.onnx*"))
    dec = config["model"]["decoder"]
    table = config["model"].get("vocab_size", 0) * dec.get("hidden_size", 0) * 2
    return max(files - table, 1)


def fixture_check(addr, name):
    """Cases whose greedy text differs from transformers' (special tokens left out)."""
    fx = json.loads(FIXTURE.read_text())
    bad = []
    for case in fx["cases"]:
        prompt = fx["chat_format"].replace("{prompt}", case["prompt"])
        text, _ = complete(addr, name, prompt, len(case["new_ids"]))
        want = case["text"].replace("<|im_end|>", "")
        if text != want:
            bad.append((case["prompt"], text, want))
    return bad


QUOTING = SHORT.replace("Write a long story about a dragon.", PARAGRAPH * 4 + "Summarise this.")


def drafts_table(addr, runs, tokens=128):
    """The real SmolLM2 with prompt-lookup drafts (its default) and without, on free text and on
    a summary that quotes its prompt, alternating: decode tok/s, and whether every text was the
    same both ways (drafts must never change it)."""
    rows, same = [], True
    for label, prompt in [("story (free text)", SHORT), ("summary (quotes its prompt)", QUOTING)]:
        on, off = [], []
        for i in range(runs):
            p = f"(run {i})\n{prompt}"
            text_on, info_on = complete(addr, "fixture", p, tokens)
            text_off, info_off = complete(addr, "fixture-plain", p, tokens)
            same &= text_on == text_off
            on.append(info_on["tokens_per_second"])
            off.append(info_off["tokens_per_second"])
        d_on, d_off = statistics.median(on), statistics.median(off)
        rows.append(f"| {label} | {d_on:.0f} | {d_off:.0f} | **{d_on / d_off:.2f}×** |")
    return f"""SmolLM2 (real weights) with prompt-lookup drafts and without, greedy, {tokens} new tokens at most:
text {"the same both ways" if same else "DIFFERENT (a bug)"}.

| prompt | with drafts tok/s | without tok/s | gain |
|---|---:|---:|---:|
{chr(10).join(rows)}""", same


def gpu_name(provider):
    if provider == "cpu":
        return "none (CPU)"
    r = subprocess.run(["nvidia-smi", "--query-gpu=name", "--format=csv,noheader"], capture_output=True, text=True)
    return r.stdout.strip().splitlines()[0] if r.returncode == 0 and r.stdout.strip() else "unknown GPU"


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model", action="append", default=[], metavar="NAME=FOLDER")
    ap.add_argument("--fixture-model", metavar="FOLDER", help="the real SmolLM2 (fp32 or fp16)")
    ap.add_argument("--provider", default="cuda", choices=["cuda", "cpu"])
    ap.add_argument("--tokens", type=int, default=256)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--streams", type=int, default=8)
    ap.add_argument("--ttft-tokens", type=int, default=512, help="prompt length for time to first token")
    ap.add_argument("--bandwidth-gbs", type=float)
    ap.add_argument("--load-timeout", type=int, default=900)
    ap.add_argument("--inferd", default=os.environ.get("INFERD_BIN", "target/release/inferd"))
    ap.add_argument("--out", help="append the markdown block to this file")
    args = ap.parse_args()
    import onnxruntime_genai as og

    models = [(n, Path(f)) for n, f in (m.split("=", 1) for m in args.model)]
    with tempfile.TemporaryDirectory(dir=os.environ.get("GPU_BENCH_TMPDIR")) as t:
        tmp = Path(t)
        repo = tmp / "repo"
        repo.mkdir()
        configs = {}
        for name, folder in models:
            vocab = json.loads((folder / "genai_config.json").read_text())["model"]["vocab_size"]
            configs[name] = copy_model(folder, repo / name, args.provider, vocab - 1, drafts=False)
        if args.fixture_model:
            copy_model(Path(args.fixture_model), repo / "fixture", args.provider, None, drafts=True)
            copy_model(Path(args.fixture_model), repo / "fixture-plain", args.provider, None, drafts=False)
        bus, addr = start_bus(tmp)
        d = subprocess.Popen([args.inferd, "--models", str(repo), "--bus", addr, "--log-level", "warn"])
        rows, notes, failed = [], [], False
        try:
            names = [n for n, _ in models] + (["fixture", "fixture-plain"] if args.fixture_model else [])
            status = wait_ready(addr, names, args.load_timeout)
            for n in names:
                if status[n]["provider"] != args.provider:
                    raise SystemExit(f"{n} runs on {status[n]['provider']}, not {args.provider}")
            bandwidth, how = device_bandwidth(args.provider, args.bandwidth_gbs)
            for name, _ in models:
                folder = repo / name
                sides = {share: genai_side(og, folder, args.provider, share) for share in (True, False)}
                prompt512 = long_prompt(sides[True][1], args.ttft_tokens)
                complete(addr, name, SHORT, 8)  # warm-up
                for side in sides.values():
                    genai_run(og, side, SHORT, 8)
                ours, theirs = [], {True: [], False: []}
                for i in range(args.runs):
                    p = f"(run {i})\n{SHORT}"
                    ours.append(complete(addr, name, p, args.tokens)[1])
                    for share, side in sides.items():
                        theirs[share].append(genai_run(og, side, p, args.tokens))
                ttft_ours = statistics.median(complete(addr, name, f"(ttft {i})\n{prompt512}", 1)[1]
                                              ["time_to_first_token_ms"] for i in range(args.runs))
                med = lambda xs, k: statistics.median(x[k] for x in xs)
                best = max((True, False), key=lambda s: med(theirs[s], "tokens_per_second"))
                ttft_theirs = statistics.median(genai_run(og, sides[best], f"(ttft {i})\n{prompt512}", 2)
                                                ["time_to_first_token_ms"] for i in range(args.runs))
                d_ours, d_theirs = med(ours, "tokens_per_second"), med(theirs[best], "tokens_per_second")
                one = streams(addr, name, 1, args.tokens)
                many = streams(addr, name, args.streams, args.tokens)
                bound = bandwidth / weight_bytes(folder, configs[name])
                rows.append(f"| {name} | {d_ours:.0f} | {d_theirs:.0f} ({'share buffer' if best else 'no share buffer'}) "
                            f"| **{d_ours / d_theirs:.2f}×** | {one:.0f} | {many:.0f} | **{many / one:.1f}×** "
                            f"| {ttft_ours:.0f} | {ttft_theirs:.0f} | {d_ours / bound:.1%} |")
                del sides
            if args.fixture_model:
                bad = fixture_check(addr, "fixture")
                failed = bool(bad)
                notes.append("SmolLM2 greedy text on {}, with drafts: {}".format(
                    args.provider, "equals the transformers fixture" if not bad else f"DIFFERS: {bad}"))
                table, same = drafts_table(addr, args.runs)
                failed |= not same
                notes.append(table)
        finally:
            d.terminate()
            d.wait()
            bus.terminate()
            bus.wait()
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    md = f"""
### {datetime.date.today().isoformat()}, {gpu_name(args.provider)}, commit {commit or '?'} (`make gpu-bench`)

{args.tokens} new tokens, greedy, EOS out of reach on both sides, inferd without prompt-lookup drafts
(random weights), {args.runs} runs alternating; medians.
onnxruntime-genai at its best of share buffer on and off (which one in brackets). Bound: weight bytes
per token over {bandwidth / 1e9:.0f} GB/s ({how}).

| model | inferd decode tok/s | genai decode tok/s | ratio | inferd 1 stream tok/s | {args.streams} streams tok/s | gain | inferd TTFT ms ({args.ttft_tokens}) | genai TTFT ms ({args.ttft_tokens}) | inferd, of the bound |
|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|
{chr(10).join(rows)}
{chr(10).join(f"{chr(10)}{n}" for n in notes)}
"""
    print(md)
    if args.out:
        with open(args.out, "a") as f:
            f.write(md)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
