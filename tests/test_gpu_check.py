"""benchmarks/gpu_check.sh --cpu-smoke: every step of the GPU check, on the CPU at tiny sizes, into one folder.

Marked slow (about a minute on an idle 2-core machine): `pytest -m slow` runs it; the default run leaves it out.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from chipfit.store import Store

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.slow
def test_gpu_check_cpu_smoke_runs_every_step_into_out(tmp_path):
    out = tmp_path / "check"
    env = {**os.environ, "OUT": str(out), "PYTHON": sys.executable}
    done = subprocess.run(["bash", str(ROOT / "benchmarks" / "gpu_check.sh"), "--cpu-smoke"], env=env,
                          capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr + (out / "log.txt").read_text()
    assert "cpu-smoke on local-cpu in" in done.stdout
    assert sorted(p.name for p in out.iterdir()) == [
        "bench.txt", "calibrate.txt", "devices.txt", "log.txt", "measure.txt", "results.sqlite", "summary.md",
        "validate.json"]
    summary = (out / "summary.md").read_text()
    assert summary.count("| 0 |") == 7  # devices, bench, three measures, calibrate, validate: each exit 0
    assert "| resnet18 infer batch 1 fp32 |" in summary and "| gpt2 infer batch 1 seq 16 bf16 |" in summary
    assert "| resnet18 train batch 2 fp32 |" in summary  # validate --quick --model resnet18: train and infer
    with Store(out / "results.sqlite") as store:
        assert [r.kind for r in store.runs()] == ["bench", "measure", "measure", "measure", "validate"]
        assert store.latest_calibration("local-cpu") is not None
        assert all(r.device == "local-cpu" for r in store.runs())
