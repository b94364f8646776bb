"""onnxruntime-genai builder exports, made the way users make them: an HF folder through
`python -m onnxruntime_genai.models.builder`. Runs in the builder venv (torch, transformers).

- The tiny test exports (random Llama weights, a 256-token tokenizer), fp32 and int4, written to
  TESTS/builder-tiny-{fp32,int4}: small enough to keep in the repository, so CI tests the
  builder's layout without the builder.
- SmolLM2-135M-Instruct de-quantized from its Q4_1 GGUF, int4 and fp32, written to
  BENCH/smollm2-builder-{int4,fp32}: for `make bench` and the check against onnxruntime-genai.

Each folder gets a model.toml, as a user serving the export writes one.

    make_builder_models.py --gguf SmolLM2.Q4_1.gguf --tests tests/data --bench CACHE/builder-models
"""
import argparse
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIGS = HERE.parent / "configs"

MANIFEST = """# An onnxruntime-genai builder export ({how}).
kind = "text-generation"
file = "model.onnx"
tokenizer = "tokenizer.json"

[execution]
# Decoding runs many small operators back to back: letting ONNX Runtime's threads spin
# between them is worth the CPU.
spin = true
"""


def run(*args):
    print("+", " ".join(str(a) for a in args), flush=True)
    subprocess.run([str(a) for a in args], check=True)


def build(hf, out, precision, how):
    """The builder's export of `hf` at `precision`, with a manifest, in `out`."""
    with tempfile.TemporaryDirectory() as cache:
        tmp = Path(cache) / "out"
        run(sys.executable, "-m", "onnxruntime_genai.models.builder", "-i", hf, "-o", tmp,
            "-p", precision, "-e", "cpu", "-c", Path(cache) / "cache")
        if out.exists():
            shutil.rmtree(out)
        shutil.copytree(tmp, out)
    (out / "model.toml").write_text(MANIFEST.format(how=how))


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--gguf", required=True, help="SmolLM2-135M-Instruct.Q4_1.gguf")
    ap.add_argument("--tests", required=True, help="where the tiny exports go (tests/data)")
    ap.add_argument("--bench", required=True, help="where the SmolLM2 exports go")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as work:
        work = Path(work)
        tok = work / "tiny-tokenizer.json"
        run(sys.executable, HERE / "tiny_tokenizer.py", tok)
        tiny = work / "tiny-hf"
        run(sys.executable, HERE / "make_hf.py", "--random", CONFIGS / "tiny-llama-builder.json",
            "--tokenizer", tok, tiny)
        for p in ("fp32", "int4"):
            build(tiny, Path(a.tests) / f"builder-tiny-{p}", p,
                  f"models/configs/tiny-llama-builder.json, random weights, {p}")
        smol = work / "smollm2-hf"
        run(sys.executable, HERE / "make_hf.py", a.gguf, smol)
        for p in ("int4", "fp32"):
            build(smol, Path(a.bench) / f"smollm2-builder-{p}", p,
                  f"SmolLM2-135M-Instruct de-quantized from its Q4_1 GGUF, {p}")


if __name__ == "__main__":
    main()
