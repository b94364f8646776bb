"""`inferctl import` runs this importer as a user would call it."""
import os
import pty
import re
import subprocess

from conftest import CONFIGS, REPO


def inferctl(*args):
    """`inferctl import …` with no Python on PATH: the importer is native."""
    exe = REPO / "target" / "debug" / "inferctl"
    assert exe.exists(), "build the workspace first (make test does)"
    return subprocess.run([exe, *map(str, args)], capture_output=True, text=True, env={"PATH": "/nonexistent"})


def test_random_weights_import_natively_with_progress(tmp_path, gguf):
    p = inferctl("import", "--random", CONFIGS / "tiny-qwen2.json", "--tokenizer", gguf,
                 "--name", "tiny", "--precision", "int4", "--models", tmp_path)
    assert p.returncode == 0, p.stderr
    for stage in ("read", "convert", "write"):
        assert re.search(rf"^{stage}: (\d+)/\1 in", p.stderr, re.M), p.stderr
    names = sorted(f.name for f in (tmp_path / "tiny").iterdir())
    for f in ("model.onnx", "model.toml", "tokenizer.json", "tokenizer_config.json", "generation_config.json", "genai_config.json"):
        assert f in names
    # The same seed gives the same weights; another seed, others.
    again = inferctl("import", "--random", CONFIGS / "tiny-qwen2.json", "--tokenizer", gguf, "--name", "again",
                     "--precision", "int4", "--models", tmp_path)
    other = inferctl("import", "--random", CONFIGS / "tiny-qwen2.json", "--tokenizer", gguf, "--name", "other",
                     "--precision", "int4", "--seed", "1", "--models", tmp_path)
    assert again.returncode == 0 and other.returncode == 0, again.stderr + other.stderr
    data = lambda n: (tmp_path / n / "model.onnx.data").read_bytes()
    assert data("tiny") == data("again") != data("other")


def test_inferctl_import_reports_importer_errors(tmp_path):
    p = inferctl("import", tmp_path / "nope.gguf", "--name", "x", "--models", tmp_path / "m")
    assert p.returncode == 2
    assert "no such file or folder" in p.stderr
    bad = inferctl("import", "--random", CONFIGS / "tiny-qwen2.json", "--name", "x", "--models", tmp_path / "m")
    assert bad.returncode != 0 and "--tokenizer" in bad.stderr, bad.stderr


def test_a_gguf_imports_natively_with_no_python_anywhere(tmp_path, gguf):
    """The .deb case: `inferctl import` of a GGUF file needs no Python (none on PATH, no venv)."""
    env = {"PATH": str(tmp_path / "empty"), "HOME": str(tmp_path), "INFERD_CACHE": str(tmp_path / "cache")}
    exe = REPO / "target" / "debug" / "inferctl"
    p = subprocess.run([exe, "import", gguf, "--name", "native", "--models", tmp_path / "m"],
                       capture_output=True, text=True, env=env)
    assert p.returncode == 0, p.stderr
    # Not a terminal: one line per finished stage, with its count (a step per tensor converted).
    assert re.search(r"^read: 1/1 in [0-9.]+ s$", p.stderr, re.M), p.stderr
    assert re.search(r"^convert: 272/272 in [0-9.]+ s$", p.stderr, re.M), p.stderr
    assert re.search(r"^write: 1/1 in [0-9.]+ s$", p.stderr, re.M), p.stderr
    names = {f.name for f in (tmp_path / "m" / "native").iterdir()}
    assert {"model.onnx", "model.onnx.data", "model.toml", "tokenizer.json", "tokenizer_config.json",
            "chat_template.jinja", "config.json", "generation_config.json", "genai_config.json"} <= names
    assert "native" in (tmp_path / "m" / "native" / "model.toml").read_text()
    again = subprocess.run([exe, "import", gguf, "--name", "native", "--models", tmp_path / "m"],
                           capture_output=True, text=True, env=env)
    assert again.returncode == 2 and "--force" in again.stderr, again.stderr


def test_a_native_import_draws_a_bar_per_stage_on_a_terminal(tmp_path, gguf):
    exe = REPO / "target" / "debug" / "inferctl"
    parent, child = pty.openpty()
    p = subprocess.run([exe, "import", gguf, "--name", "tty", "--models", tmp_path], stdin=subprocess.DEVNULL,
                       stdout=subprocess.DEVNULL, stderr=child)
    os.close(child)
    out = b""
    while True:
        try:
            chunk = os.read(parent, 1 << 16)
        except OSError:  # EIO: the terminal's other end is closed and drained
            break
        if not chunk:
            break
        out += chunk
    os.close(parent)
    text = out.decode()
    assert p.returncode == 0, text
    # Redrawn in place: the convert bar passes through partial states to a full one.
    assert re.search(r"\rconvert  \[#{1,29} +\] \d+/272", text), text
    assert "\rconvert  [" + "#" * 30 + "] 272/272" in text, text
