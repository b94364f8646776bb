"""A private D-Bus daemon and an inferd on it, for the benchmark scripts (bench.py and the
sections it calls, which also run alone)."""
import subprocess
import time


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
