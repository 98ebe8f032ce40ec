"""Every step stored in the shared H200 results store, re-predicted from the catalog and published defaults.

    PYTHONPATH=src .venv/bin/python benchmarks/bench_gpu_shared.py [path/to/store.sqlite] [--cache DIR]

Each measured run (model, mode, batch, sequence, precision, optimizer as the run stored them) is traced
again and predicted on its catalog entry as eager PyTorch runs it (framework "pytorch"), with the
published/class defaults only: no calibration, least of all one fitted on these runs. Peak memory is
compared with what torch.cuda.max_memory_allocated counts: the tensors (weights, gradients, optimizer
state, activations), not the allocator's slack or the CUDA context (the estimate's "workspace" part).
"""

from __future__ import annotations

import argparse
import json
import pickle
import sqlite3
import statistics
import time
from pathlib import Path

from chipfit.catalog.loader import load_catalog
from chipfit.predict import Plan, predict
from chipfit.workload import profile as profile_model
from chipfit.workload.workload import Workload

DEFAULT = Path(__file__).resolve().parents[2] / "shared" / "gpu" / "h200-2026-12-04.sqlite"
GIB = 2**30


def stored_cases(db: Path) -> list[dict]:
    """One row per distinct measured step (model, mode, batch, seq, precision, optimizer, hardware); the
    latest run of each."""
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    rows = con.execute("SELECT m.kind, m.label, m.precision, m.shape, m.median_s, m.peak_memory_bytes, m.extra, "
                       "r.hardware_id FROM measurements m JOIN runs r ON r.id = m.run_id "
                       "WHERE m.kind IN ('train_step', 'infer_step') ORDER BY m.id").fetchall()
    con.close()
    cases: dict[tuple, dict] = {}
    for kind, label, precision, shape, median_s, peak, extra, hw in rows:
        shape, extra = json.loads(shape), json.loads(extra)
        case = {"model": label, "mode": kind.removesuffix("_step"), "batch": shape["batch"],
                "seq_len": shape.get("seq_len") or None, "precision": precision,
                "optimizer": extra.get("optimizer") or "adamw", "hardware": hw,
                "measured_s": median_s, "measured_bytes": peak}
        cases[tuple(case[k] for k in ("model", "mode", "batch", "seq_len", "precision", "optimizer", "hardware"))] = case
    return list(cases.values())


def _profile(case: dict, cache: Path | None):
    key = "{model}-{mode}-{batch}-{seq_len}-{precision}-{optimizer}.pkl".format(**case)
    if cache and (cache / key).exists():
        return pickle.loads((cache / key).read_bytes())
    prof = profile_model(case["model"], mode=case["mode"], batch=case["batch"], seq_len=case["seq_len"],
                         precision=case["precision"], optimizer=case["optimizer"])
    if cache:
        cache.mkdir(parents=True, exist_ok=True)
        (cache / key).write_bytes(pickle.dumps(prof))
    return prof


def predict_case(case: dict, cache: Path | None = None) -> dict:
    hw = load_catalog().get(case["hardware"])
    prof = _profile(case, cache)
    work = Workload(model=case["model"], mode=case["mode"], batch=case["batch"], seq_len=case["seq_len"],
                    precision=case["precision"], optimizer=case["optimizer"])
    est = predict(prof, hw, work, Plan(), framework="pytorch")
    tensors = est.memory_per_device_bytes - est.memory_breakdown["workspace"]
    return {**case, "predicted_s": est.step_time_s, "predicted_bytes": tensors}


def _err(pred: float | None, meas: float | None) -> float | None:
    return None if not pred or not meas else pred / meas - 1


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("db", nargs="?", default=DEFAULT, type=Path)
    ap.add_argument("--cache", type=Path, help="keep traced profiles here between runs (delete after trace changes)")
    args = ap.parse_args()
    t0 = time.perf_counter()
    rows = [predict_case(c, args.cache) for c in stored_cases(args.db)]
    print(f"{'case':<42} {'step meas':>10} {'pred':>10} {'err':>6}   {'mem meas':>9} {'pred':>9} {'err':>6}")
    t_err, m_err = [], []
    for r in rows:
        name = f"{r['model']} {r['mode']} b{r['batch']}" + (f" s{r['seq_len']}" if r["seq_len"] else "") \
            + f" {r['precision']}"
        te, me = _err(r["predicted_s"], r["measured_s"]), _err(r["predicted_bytes"], r["measured_bytes"])
        t_err.append(abs(te))
        if me is not None:
            m_err.append(abs(me))
        mem = (f"{r['measured_bytes'] / GIB:8.1f}G {r['predicted_bytes'] / GIB:8.1f}G {me:+6.0%}"
               if me is not None else "")
        print(f"{name:<42} {r['measured_s'] * 1e3:8.2f}ms {r['predicted_s'] * 1e3:8.2f}ms {te:+6.0%}   {mem}")
    print(f"\nstep time |error|: median {statistics.median(t_err):.1%}, worst {max(t_err):.1%} ({len(t_err)} cases)")
    print(f"peak memory |error|: median {statistics.median(m_err):.1%}, worst {max(m_err):.1%} ({len(m_err)} cases)")
    print(f"({time.perf_counter() - t0:.0f} s; catalog entry and published defaults, framework pytorch, no calibration)")


if __name__ == "__main__":
    main()
