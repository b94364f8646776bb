"""A private D-Bus daemon and an inferd on it, for the benchmark scripts (bench.py and the
sections it calls, which also run alone)."""
import contextlib
import re
import subprocess
import time
from pathlib import Path


def start_bus(tmp):
    addr_file = tmp / "addr"
    with open(addr_file, "w") as f:
        bus = subprocess.Popen(["dbus-daemon", "--session", "--nofork", "--print-address"], stdout=f)
    for _ in range(100):
        if addr_file.read_text().strip():
            break
        time.sleep(0.05)
    return bus, addr_file.read_text().strip()



def start_inferd(inferd, models, addr, config=None, tries=200):
    cmd = [inferd, "--models", models, "--bus", addr, "--log-level", "warn"]
    if config:
        cmd += ["--config", str(config)]
    p = subprocess.Popen(cmd)
    for _ in range(tries):
        r = subprocess.run(["busctl", "--address", addr, "call", "org.inferd.Inferd1", "/org/inferd/Inferd1",
                            "org.inferd.Inferd1", "ListModels"], capture_output=True, text=True)
        if r.returncode == 0 and "loading" not in r.stdout:
            return p
        time.sleep(0.1)
    raise SystemExit("inferd did not become ready")


@contextlib.contextmanager
def served(inferd, models, tmp, config=None, tries=200):
    """A private bus and an inferd serving `models` on it, for a `with` block: yields the bus
    address, and stops both after."""
    bus, addr = start_bus(Path(tmp))
    try:
        d = start_inferd(inferd, str(models), addr, config, tries)
        try:
            yield addr
        finally:
            d.terminate()
            d.wait()
    finally:
        bus.terminate()
        bus.wait()


def rewrite_section(out, pattern, md, what):
    """Replaces the part of `out` (docs/benchmarks.md) that `pattern` matches with `md`, for a
    section measured alone."""
    out = Path(out)
    doc = out.read_text()
    pattern = re.compile(pattern, re.S)
    if not pattern.search(doc):
        raise SystemExit(f"{out} has no {what} section to replace")
    out.write_text(pattern.sub(lambda _: md.rstrip("\n") + "\n", doc, count=1))


def commit():
    return subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
