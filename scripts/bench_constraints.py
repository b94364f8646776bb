"""The cost of structured output: decode tokens/s of SmolLM2 with a JSON schema vs without, on
the same prompts (tests/fixtures/structured_output.json), alternated prompt by prompt. Part of
`make bench`; runs alone as `python scripts/bench_constraints.py INFERD MODELS_DIR`."""
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

FIXTURE = Path(__file__).resolve().parent.parent / "tests/fixtures/structured_output.json"


def chat(addr, model, prompt, options):
    """ChatComplete over D-Bus; returns its info (tokens_per_second, completion_tokens...)."""
    args = ["busctl", "--address", addr, "--json=short", "--timeout=600", "call", "org.inferd.Inferd1",
            "/org/inferd/Inferd1", "org.inferd.Inferd1", "ChatComplete", "sa(ss)a{sv}", model, "1", "user",
            prompt, str(len(options))]
    for k, (sig, v) in options.items():
        args += [k, sig, str(v)]
    out = subprocess.run(args, capture_output=True, text=True, check=True)
    data = json.loads(out.stdout)["data"]
    info = {k: v["data"] for k, v in data[1].items()}
    info["text"] = data[0]
    return info


def measure(addr, model="smollm2"):
    fx = json.loads(FIXTURE.read_text())
    fmt = json.dumps({"type": "json_schema", "json_schema": {"name": "thing", "schema": fx["schema"]}})
    base = {"max_tokens": ("u", fx["max_tokens"]), "temperature": ("d", 0)}
    t0 = time.perf_counter()
    first = chat(addr, model, fx["prompts"][0], {**base, "response_format": ("s", fmt)})
    first_s = time.perf_counter() - t0
    free, bound, ratios = [], [], []
    for p in fx["prompts"]:
        a = chat(addr, model, p, base)
        b = chat(addr, model, p, {**base, "response_format": ("s", fmt)})
        if a["completion_tokens"] > 1 and b["completion_tokens"] > 1:
            free.append(a["tokens_per_second"])
            bound.append(b["tokens_per_second"])
            ratios.append(b["tokens_per_second"] / a["tokens_per_second"])
    return {
        "free_tps": statistics.median(free),
        "schema_tps": statistics.median(bound),
        "ratio": statistics.median(ratios),
        "prompts": len(ratios),
        "first_request_s": first_s,
        "first_tokens": first["completion_tokens"],
    }


def section(addr, model="smollm2", figures=None):
    r = measure(addr, model)
    if figures is not None:
        figures["json_schema_decode_vs_free"] = {
            "value": round(r["ratio"], 3), "better": "higher",
            "what": "decode tokens/s with a JSON schema vs without, same prompts",
        }
    return f"""
## Structured output: the cost of a JSON schema (target ≥ 0.90×)

`{model}` answering the {r['prompts']} prompts of `tests/fixtures/structured_output.json` over
D-Bus (`ChatComplete`, greedy, `max_tokens` 200), each prompt once without and once with its
JSON schema as `response_format`, alternated. Decode speed is the answer's own
`tokens_per_second`.

| | decode tokens/s (median) |
|---|---:|
| no constraint | {r['free_tps']:.1f} |
| JSON schema (llguidance mask every token) | {r['schema_tps']:.1f} |
| **ratio, paired by prompt (median)** | **{r['ratio']:.2f}×** |

The model's first constrained request builds the vocabulary's token trie; that request took
{r['first_request_s']:.2f} s for {r['first_tokens']} tokens in this run.
"""


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from bench_daemon import start_bus, start_inferd
    with tempfile.TemporaryDirectory() as t:
        bus, addr = start_bus(Path(t))
        d = start_inferd(sys.argv[1], sys.argv[2], addr)
        try:
            print(section(addr))
        finally:
            d.terminate()
            d.wait()
            bus.terminate()
            bus.wait()
