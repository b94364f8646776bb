"""`inferctl pull` against a local server that answers as the Hugging Face Hub does (never the
internet): the repository API (`/api/models/REPO/revision/REV`), `resolve` URLs that redirect
LFS files to a CDN on another host (`localhost` vs `127.0.0.1`) with `X-Linked-Etag` (the
sha256) and `X-Linked-Size`, byte ranges, ETags, a connection dropped halfway through a file,
corrupt bytes, and a private repository that needs HF_TOKEN."""
import hashlib
import json
import os
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import REPO
from tiny_models import weights, write_folder

INFERCTL = REPO / "target" / os.environ.get("INFERD_PROFILE", "debug") / "inferctl"
TOKEN = "hf_secret_token_0123456789"
LFS = (".gguf", ".safetensors")


class FakeHub:
    """repos: {repo: {file: bytes}}; `private` repos need the token; `drop` files lose their
    connection halfway the first time; `corrupt` files are served with their last byte changed."""

    def __init__(self, repos, private=(), drop=(), corrupt=()):
        self.repos, self.private, self.drop, self.corrupt = repos, set(private), set(drop), set(corrupt)
        self.log = []  # (host, path, range, authorization)
        hub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *a):
                pass

            def send(self, status, body=b"", headers=()):
                self.send_response(status)
                for k, v in headers:
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_GET(self):
                auth = self.headers.get("Authorization")
                hub.log.append((self.headers.get("Host"), self.path, self.headers.get("Range"), auth))
                parts = self.path.split("/")
                if self.path.startswith("/api/models/"):
                    repo = "/".join(parts[3:5])
                    if repo not in hub.repos:
                        return self.send(404, b'{"error":"Repository not found"}')
                    if repo in hub.private and auth != f"Bearer {TOKEN}":
                        return self.send(401, b'{"error":"Invalid credentials"}')
                    siblings = [{"rfilename": f} for f in hub.repos[repo]]
                    return self.send(200, json.dumps({"id": repo, "sha": "c0ffee" * 6 + "abcd", "siblings": siblings}).encode())
                if parts[1] == "cdn":
                    return self.cdn(parts[2])
                repo, file = "/".join(parts[1:3]), "/".join(parts[5:])
                if repo in hub.private and auth != f"Bearer {TOKEN}":
                    return self.send(401)
                data = hub.repos.get(repo, {}).get(file)
                if data is None:
                    return self.send(404)
                if file.endswith(LFS):
                    sha = hashlib.sha256(data).hexdigest()
                    port = self.server.server_address[1]
                    return self.send(302, headers=[("Location", f"http://localhost:{port}/cdn/{repo.replace('/', '--')}--{file}"),
                                                   ("X-Linked-Etag", f'"{sha}"'), ("X-Linked-Size", str(len(data))),
                                                   ("X-Repo-Commit", "c0ffee"), ("ETag", '"gitsha"')])
                return self.send(200, data, [("ETag", '"0123456789abcdef0123456789abcdef01234567"')])

            def cdn(self, key):
                org, name, file = key.split("--", 2)
                data = hub.repos[f"{org}/{name}"][file]
                if file in hub.corrupt:
                    data = data[:-1] + bytes([data[-1] ^ 1])
                start = 0
                rng = self.headers.get("Range")
                if rng:
                    start = int(rng.removeprefix("bytes=").split("-")[0])
                body = data[start:]
                self.send_response(206 if rng else 200)
                if rng:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(body)))
                self.send_header("Accept-Ranges", "bytes")
                self.end_headers()
                if file in hub.drop:
                    hub.drop.discard(file)
                    self.wfile.write(body[: len(body) // 2])
                    self.wfile.flush()
                    self.close_connection = True
                    self.connection.shutdown(2)
                    return
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.endpoint = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()


def pull(hub, tmp_path, *args, token=None):
    env = {"PATH": "/nonexistent", "HOME": str(tmp_path / "home"), "HF_ENDPOINT": hub.endpoint,
           "INFERD_CACHE": str(tmp_path / "cache")}
    if token:
        (tmp_path / "token").write_text(token + "\n")
        env["HF_TOKEN_PATH"] = str(tmp_path / "token")
    return subprocess.run([INFERCTL, "pull", *map(str, args), "--models", tmp_path / "models"],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture
def hub(gguf):
    data = gguf.read_bytes()
    h = FakeHub({
        "org/SmolLM2-135M-Instruct-GGUF": {
            "README.md": b"# SmolLM2\n",
            "SmolLM2-135M-Instruct.Q4_1.gguf": data,
            "SmolLM2-135M-Instruct.Q8_0.gguf": b"not served in these tests",
        },
        "org/private-GGUF": {"model-Q4_1.gguf": data},
    }, private={"org/private-GGUF"}, drop={"SmolLM2-135M-Instruct.Q4_1.gguf"})
    yield h
    h.close()


def test_pull_resumes_a_dropped_download_verifies_and_imports(hub, tmp_path):
    p = pull(hub, tmp_path, "hf.co/org/SmolLM2-135M-Instruct-GGUF:Q4_1")
    assert p.returncode == 0, p.stderr
    model = tmp_path / "models" / "smollm2-135m-instruct-q4_1"
    assert (model / "model.onnx").exists() and (model / "tokenizer.json").exists()
    cdn = [(host, rng) for host, path, rng, _ in hub.log if path.startswith("/cdn/")]
    # The first attempt lost its connection halfway; the second asked for the rest.
    assert len(cdn) == 2 and cdn[0][1] is None and cdn[1][1].startswith("bytes="), cdn
    assert int(cdn[1][1].split("=")[1].rstrip("-")) > 0
    # The download is deleted after the import, with the folders it made.
    assert not (tmp_path / "cache" / "downloads").exists() or not any((tmp_path / "cache" / "downloads").rglob("*.gguf"))
    assert "Q8_0" not in " ".join(path for _, path, _, _ in hub.log)


def test_pull_a_named_file_and_keep_it(hub, tmp_path):
    hub.drop.clear()
    p = pull(hub, tmp_path, "https://huggingface.co/org/SmolLM2-135M-Instruct-GGUF:SmolLM2-135M-Instruct.Q4_1.gguf",
             "--name", "small", "--keep")
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "models" / "small" / "model.onnx").exists()
    kept = tmp_path / "cache" / "downloads" / "org" / "SmolLM2-135M-Instruct-GGUF" / "main" / "SmolLM2-135M-Instruct.Q4_1.gguf"
    assert kept.read_bytes() == hub.repos["org/SmolLM2-135M-Instruct-GGUF"]["SmolLM2-135M-Instruct.Q4_1.gguf"]


def test_a_corrupt_download_is_refused_and_deleted(hub, tmp_path):
    hub.drop.clear()
    hub.corrupt.add("SmolLM2-135M-Instruct.Q4_1.gguf")
    p = pull(hub, tmp_path, "hf.co/org/SmolLM2-135M-Instruct-GGUF:Q4_1")
    assert p.returncode != 0 and "sha256" in p.stderr, p.stderr
    assert not (tmp_path / "models" / "smollm2-135m-instruct-q4_1").exists()
    assert not list((tmp_path / "cache").rglob("*.gguf*"))


def test_a_private_repository_needs_the_token_which_stays_on_the_hub(hub, tmp_path):
    hub.drop.clear()
    p = pull(hub, tmp_path, "hf.co/org/private-GGUF")
    assert p.returncode != 0 and "HF_TOKEN" in p.stderr, p.stderr
    p = pull(hub, tmp_path, "hf.co/org/private-GGUF", token=TOKEN)
    assert p.returncode == 0, p.stderr
    assert (tmp_path / "models" / "private" / "model.onnx").exists()
    assert TOKEN not in p.stdout + p.stderr
    # The token went to the Hub's host only, never to the CDN it redirected to.
    assert all(auth is None for host, path, _, auth in hub.log if path.startswith("/cdn/"))
    assert any(auth == f"Bearer {TOKEN}" for _, path, _, auth in hub.log if path.startswith("/api/"))


def test_unknown_repositories_and_quantizations_are_named(hub, tmp_path):
    p = pull(hub, tmp_path, "hf.co/org/nothing-here")
    assert p.returncode != 0 and "org/nothing-here" in p.stderr and "404" in p.stderr, p.stderr
    p = pull(hub, tmp_path, "hf.co/org/SmolLM2-135M-Instruct-GGUF:Q5_K_M")
    assert p.returncode != 0 and "Q5_K_M" in p.stderr and "SmolLM2-135M-Instruct.Q4_1.gguf" in p.stderr, p.stderr


def test_pull_a_checkpoint_folder(tmp_path, tiny_qwen2):
    """A repository of safetensors and configs is downloaded whole (small git files served
    directly, weights redirected) and imported as a folder."""
    cfg = {"architectures": ["LlamaForCausalLM"], "model_type": "llama", "vocab_size": 49152, "hidden_size": 64,
           "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4, "num_key_value_heads": 2,
           "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 256, "tie_word_embeddings": True,
           "bos_token_id": 1, "eos_token_id": 2}
    w = weights(cfg, 0)
    del w["lm_head.weight"]  # tied
    folder = write_folder(tmp_path / "src", cfg, w, tiny_qwen2 / "tokenizer.json")
    files = {f.name: f.read_bytes() for f in folder.iterdir()}
    h = FakeHub({"org/Tiny-Llama": files})
    try:
        p = pull(h, tmp_path, "hf.co/org/Tiny-Llama", "--precision", "fp32")
    finally:
        h.close()
    assert p.returncode == 0, p.stderr
    model = tmp_path / "models" / "tiny-llama"
    assert (model / "model.onnx").exists()
    assert json.loads((model / "config.json").read_text())["num_hidden_layers"] == 2
    assert {path.rsplit("/", 1)[-1] for _, path, _, _ in h.log if "/resolve/" in path} == set(files)
