"""Footprint: idle RSS with no model loaded (and ONNX Runtime's share of it), start → READY=1
with the default models loading in the background, and the stripped binaries' sizes.

A section of bench.py; alone (`make bench-footprint`) it prints the section:
    bench_footprint.py INFERD INFERCTL MODELS
"""
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from bench_daemon import start_bus, start_inferd


def rss_kib(pid):
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def mapping_rss_kib(pid, needle):
    """Resident KiB of the mappings whose path contains `needle`."""
    total, current = 0, ""
    for line in Path(f"/proc/{pid}/smaps").read_text().splitlines():
        parts = line.split()
        if parts and "-" in parts[0] and len(parts) >= 5:
            current = parts[5] if len(parts) > 5 else ""
        elif parts and parts[0] == "Rss:" and needle in current:
            total += int(parts[1])
    return total


def idle(inferd, addr, tmp):
    """RSS of a daemon serving an empty repository, once it answers and has settled."""
    empty = tmp / "empty"
    empty.mkdir(exist_ok=True)
    d = start_inferd(inferd, str(empty), addr)
    try:
        time.sleep(1)
        return rss_kib(d.pid), mapping_rss_kib(d.pid, "libonnxruntime")
    finally:
        d.terminate()
        d.wait()


def start_to_ready(inferd, models, addr, tmp, runs=10):
    """Seconds from spawning inferd to its READY=1 on NOTIFY_SOCKET, one per run."""
    path = tmp / "notify.sock"
    times = []
    for _ in range(runs):
        path.unlink(missing_ok=True)
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            s.bind(str(path))
            s.settimeout(30)
            env = dict(os.environ, NOTIFY_SOCKET=str(path))
            start = time.perf_counter()
            d = subprocess.Popen([inferd, "--models", models, "--bus", addr, "--log-level", "warn"], env=env)
            try:
                while b"READY=1" not in s.recv(4096):
                    pass
                times.append(time.perf_counter() - start)
            finally:
                d.terminate()
                d.wait()
    return times


def section(inferd, inferctl, models, addr, tmp):
    idle_rss, idle_ort = idle(inferd, addr, tmp)
    ready = start_to_ready(inferd, models, addr, tmp)
    sizes = {b: Path(p).stat().st_size for b, p in [("inferd", inferd), ("inferctl", inferctl)]}
    ready_ms = statistics.median(ready) * 1000
    return f"""## Footprint

| what | value | target |
|---|---:|---:|
| idle RSS, no model loaded | {idle_rss / 1024:.1f} MiB | ≤ 20 MiB |
| … of which libonnxruntime's pages (it loads with the first model) | {idle_ort / 1024:.1f} MiB | |
| start → READY=1, the default models loading in the background (median of {len(ready)}; slowest {max(ready) * 1000:.0f} ms) | {ready_ms:.0f} ms | ≤ 200 ms |
| `inferd` binary, stripped | {sizes['inferd'] / 1e6:.1f} MB | ≤ 15 MB |
| `inferctl` binary, stripped | {sizes['inferctl'] / 1e6:.1f} MB | |

Idle RSS is the daemon's VmRSS a second after it first answers `ListModels` with an empty model
repository. At start ONNX Runtime is only probed (loaded, asked its version and providers,
unloaded), so none of its pages stay. Start → READY=1 is from spawning `inferd` to its `READY=1`
datagram on `NOTIFY_SOCKET`, the models of `make run` loading meanwhile.
"""


if __name__ == "__main__":
    inferd, inferctl, models = sys.argv[1:4]
    with tempfile.TemporaryDirectory() as t:
        tmp = Path(t)
        bus, addr = start_bus(tmp)
        try:
            print(section(inferd, inferctl, models, addr, tmp))
        finally:
            bus.terminate()
            bus.wait()
