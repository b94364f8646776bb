"""Shared fixtures: the SmolLM2 GGUF from the cache (prepared by `make fetch`) and imports cached
by a key over the source file, the precision and the importer's own code, so CI reuses them."""
import hashlib
import os
import subprocess
import sys
from pathlib import Path

import pytest

HERE = Path(__file__).resolve().parent
IMPORTER = HERE.parent
REPO = IMPORTER.parent.parent
CACHE = Path(os.environ.get("INFERD_CACHE", Path.home() / ".cache/inferd"))
GGUF = CACHE / "gguf" / "SmolLM2-135M-Instruct.Q4_1.gguf"
CONFIGS = REPO / "models" / "configs"
FIXTURES = REPO / "tests" / "fixtures"

sys.path.insert(0, str(HERE))


def run_import(args, check=True):
    """Runs the importer CLI as a user would; returns the CompletedProcess."""
    p = subprocess.run([sys.executable, "-m", "inferd_import", *map(str, args)], capture_output=True, text=True, cwd=IMPORTER)
    if check and p.returncode != 0:
        raise AssertionError(f"import failed ({p.returncode}):\n{p.stderr}")
    return p


def _code_hash():
    h = hashlib.sha256()
    for f in sorted((IMPORTER / "inferd_import").rglob("*.py")):
        h.update(f.read_bytes())
    return h.hexdigest()[:16]


def _file_hash(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def cached_import(name, source_args, precision):
    key = "-".join([name, precision, _code_hash(), _file_hash(source_args[-1] if source_args[0] != "--random" else source_args[1])])
    root = CACHE / "imports" / key
    if not (root / name / "model.onnx").exists():
        run_import([*source_args, "--name", name, "--precision", precision, "--models", root, "--force"])
    return root / name


@pytest.fixture(scope="session")
def gguf():
    if not GGUF.exists():
        pytest.fail(f"{GGUF} is missing: run `make fetch`")
    return GGUF


@pytest.fixture(scope="session")
def smollm2_fp32(gguf):
    return cached_import("smollm2-fp32", [gguf], "fp32")


@pytest.fixture(scope="session")
def smollm2_int4(gguf):
    return cached_import("smollm2-int4", [gguf], "int4")


def tiny_qwen2_source(tiny_qwen2):
    """The tiny-qwen2 import's random weights, by transformers' names (`.tensor(name)`)."""
    import json

    from inferd_import.sources import TokenizerFiles
    from inferd_import.sources.random_init import RandomSource

    class Tok:
        def tokenizer(self):
            return TokenizerFiles(json.loads((tiny_qwen2 / "tokenizer.json").read_text()))

    return RandomSource(CONFIGS / "tiny-qwen2.json", Tok(), 0)


@pytest.fixture(scope="session")
def tiny_qwen2(gguf):
    return cached_import("tiny-qwen2", ["--random", CONFIGS / "tiny-qwen2.json", "--tokenizer", gguf], "fp32")
