"""bench_check flags figures worse than the baseline by more than the tolerance, in the
direction each figure counts as better."""
import json
import subprocess
import sys
from pathlib import Path

from bench_check import compare

HERE = Path(__file__).parent


def figures(a, b):
    return {"date": "d", "machine": "m", "figures": {
        "speedup": {"value": a, "better": "higher", "what": ""},
        "latency": {"value": b, "better": "lower", "what": ""}}}


def test_within_tolerance_passes_and_beyond_is_flagged():
    base = figures(2.0, 1.0)
    assert compare(base, figures(1.8, 1.1), 0.15)[1] == []
    assert compare(base, figures(1.6, 1.0), 0.15)[1] == ["speedup"]
    assert compare(base, figures(2.0, 1.2), 0.15)[1] == ["latency"]
    # Better is never flagged, however large the change.
    assert compare(base, figures(9.0, 0.1), 0.15)[1] == []


def test_a_missing_figure_fails_the_check(tmp_path):
    (tmp_path / "base.json").write_text(json.dumps(figures(2.0, 1.0)))
    run = figures(2.0, 1.0)
    del run["figures"]["latency"]
    (tmp_path / "run.json").write_text(json.dumps(run))
    r = subprocess.run([sys.executable, str(HERE / "bench_check.py"), str(tmp_path / "base.json"),
                        str(tmp_path / "run.json")], capture_output=True, text=True)
    assert r.returncode == 1 and "latency" in r.stderr
