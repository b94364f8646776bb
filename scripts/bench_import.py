"""Import part of `make bench`: the native importer (`inferctl import`, Rust) against the Python
importer on the same GGUF (wall time, peak RSS, folder size); and the native import rewritten
to int8 activations (`accuracy_level` 4), which the generation section runs beside the default
against onnxruntime-genai on the same file. Called by bench.py; returns a markdown section."""
import os
import subprocess
import sys
import time
from pathlib import Path

import onnx

from bench_generation import link_model


def measured(cmd, cwd=None):
    """Runs `cmd`; its wall time (s) and peak RSS (MiB, the process's own: `wait4`'s rusage)."""
    t = time.perf_counter()
    with open(os.devnull, "wb") as null:
        p = subprocess.Popen(cmd, cwd=cwd, stdout=null, stderr=subprocess.PIPE)
        err = p.stderr.read()
        _, status, usage = os.wait4(p.pid, 0)
    if status != 0:
        raise RuntimeError(f"{cmd} failed: {err.decode()[-2000:]}")
    return time.perf_counter() - t, usage.ru_maxrss / 1024


def folder_mb(path):
    return sum(f.stat().st_size for f in Path(path).iterdir()) / 1e6


def int8_activations(src, dst):
    """`src` with every MatMulNBits at accuracy_level 4 (int8 activations): the speed that
    exactness costs, measured on the same weights."""
    link_model(src, dst)
    m = onnx.load(str(dst / "model.onnx"), load_external_data=False)
    for n in m.graph.node:
        if n.op_type == "MatMulNBits":
            n.attribute.append(onnx.helper.make_attribute("accuracy_level", 4))
    (dst / "model.onnx").unlink()  # a hard link to the original: write a file of its own
    onnx.save(m, str(dst / "model.onnx"))


def section(inferctl, gguf, tmp):
    rows = []
    gguf_mb = Path(gguf).stat().st_size / 1e6
    importer = Path(__file__).resolve().parent.parent / "models" / "importer"
    runs = [
        ("native (`inferctl import`, Rust), GGUF's own quantization",
         [inferctl, "import", gguf, "--name", "native", "--models", tmp, "--force"], None, "native"),
        ("Python importer, `--precision int4` (re-quantized)",
         [sys.executable, "-m", "inferd_import", gguf, "--name", "int4", "--precision", "int4", "--models", tmp, "--force"],
         importer, "int4"),
        ("Python importer, `--precision fp32`",
         [sys.executable, "-m", "inferd_import", gguf, "--name", "fp32", "--precision", "fp32", "--models", tmp, "--force"],
         importer, "fp32"),
    ]
    for label, cmd, cwd, name in runs:
        secs, rss = measured([str(c) for c in cmd], cwd)
        size = folder_mb(Path(tmp) / name)
        rows.append(f"| {label} | {secs:.1f} s | {rss:.0f} MiB | {size:.0f} MB ({size / gguf_mb:.2f}×) |")
    table = "\n".join(rows)
    return f"""## Importing a GGUF (SmolLM2-135M-Instruct Q4_1, {gguf_mb:.0f} MB)

The same file through both importers, one after another. Peak RSS is the importing process's own
(`wait4`); the native importer maps the GGUF, so its pages count as they are read (file cache, not
a copy), and it writes each tensor before it reads the next.

| importer | wall time | peak RSS | folder (vs GGUF) |
|---|---:|---:|---:|
{table}

"""
