"""One job, one answer: the same job through `chipfit compare --json`, chipfit.compare and
POST /api/compare gives the same estimates, for every zoo model, training and inference."""

from __future__ import annotations

import json

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")

from fastapi.testclient import TestClient  # noqa: E402

import chipfit  # noqa: E402
import chipfit.workload as workload  # noqa: E402
from chipfit.cli import main  # noqa: E402
from chipfit.web import create_app  # noqa: E402
from chipfit.workload.zoo import ZOO  # noqa: E402
from chipfit.workload.zoo_vision_more import BUILDERS as VISION_MORE  # noqa: E402  (these run under -m slow)

HARDWARE = ["nvidia-h100-sxm5-80gb", "google-tpu-v5p", "amd-instinct-mi300x", "intel-xeon-platinum-8480plus"]
BATCH = 2
SEQ = 32  # sequence models only: short, so the big LLMs trace quickly


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    with TestClient(create_app(db_path=tmp_path_factory.mktemp("agree") / "r.sqlite")) as c:
        # Trace in this process (not the dashboard's limited worker), so the shells share one trace per job.
        c.app.state.board._trace = lambda fn, *args, stopping=None, **kwargs: fn(*args, **kwargs)
        yield c


@pytest.fixture(scope="module", autouse=True)
def one_trace_per_argument_set():
    """Each distinct trace is done once and shared by the shells: a shell that asks for a different
    profile (another precision, batch or length) still gets its own, so a disagreement shows."""
    real, seen = workload.profile, {}

    def memo(model, **options):
        key = (model, *sorted((k, repr(v)) for k, v in options.items()))
        if key not in seen:
            seen[key] = real(model, **options)
        return seen[key]

    workload.profile = memo
    yield
    workload.profile = real


def _estimates(d: dict) -> list[dict]:
    return [{k: v for k, v in e.items() if k != "speedup_vs_local_cpu"} for e in d["estimates"]]


@pytest.mark.parametrize("mode", ["train", "infer"])
# Text-to-image models trace for 5-40 s a step on one CPU core: run with `pytest -m slow` (tests/test_diffusion.py
# profiles and compares Stable Diffusion 2 in the default run); so do the further torchvision models
# (test_zoo_vision_more traces a model of each family in the default run).
@pytest.mark.parametrize("model", [pytest.param(m, marks=pytest.mark.slow)
                                   if z.task == "text-to-image" or m in VISION_MORE else m for m, z in ZOO.items()])
def test_cli_python_and_dashboard_give_the_same_estimates(capsys, client, model, mode):
    seq = SEQ if ZOO[model].default_seq_len else None
    argv = ["compare", model, f"--{mode}", "--batch", str(BATCH), "--no-local", "--json"]
    argv += [a for h in HARDWARE for a in ("--hardware", h)] + (["--seq", str(seq)] if seq else [])
    assert main(argv) == 0
    by_cli = json.loads(capsys.readouterr().out)
    by_python = json.loads(json.dumps(chipfit.compare(model, mode=mode, batch=BATCH, seq=seq, hardware=HARDWARE,
                                                      local=False).to_dict(), default=str))
    r = client.post("/api/compare", json={"model": model, "mode": mode, "batch": BATCH, "seq": seq,
                                          "hardware": HARDWARE})
    assert r.status_code == 200, r.text
    by_web = r.json()
    assert {e["hardware"] for e in by_cli["estimates"]} == set(HARDWARE)
    assert _estimates(by_cli) == _estimates(by_python) == _estimates(by_web)
    # The job as each shell understood it, the defaults it took included.
    assert by_cli["workload"] == by_python["workload"] == by_web["workload"]
    assert by_cli["workload"]["precision"] == "bf16"
