"""Where a held-out prediction misses: per operator family, the measured operator time of one validate
case beside the time the leave-one-model-out calibration prices it at (the fit `chipfit validate` uses
for that case's "after" column).

    .venv/bin/python benchmarks/bench_calibration_families.py --db STORE gpt2 train 1 [--seq 128]

STORE is a results database with a `chipfit validate` run in it. Nothing is measured; the local CPU's
bandwidth figure is measured again (a quick triad), as `chipfit validate --stored` does.
"""

import collections

from chipfit.calibrate import device_measurements, fit, measured_family, model_of, without_model
from chipfit.measure.devices import local_cpu_hardware
from chipfit.predict.roofline import OpArrays, op_times
from chipfit.store import Store
from chipfit.workload import profile as trace

from case_args import case_parser


def families(db: str, model: str, mode: str, batch: int, seq_len: int | None) -> tuple[list[tuple], float, float]:
    """(family, measured s, predicted s) rows, largest first; the measured step and the predicted operators' sum."""
    with Store(db) as store:
        pool, _ = device_measurements(store, require_bench=False)
    hw = local_cpu_hardware()
    eff = fit(without_model(pool, model), hw, f"all but {model}").efficiency(hw)
    prof = trace(model, mode=mode, batch=batch, seq_len=seq_len, precision="fp32")
    arrays = OpArrays.from_profile(prof)
    predicted = collections.Counter()
    for family, t in zip(arrays.family, op_times(arrays, hw, eff)):
        predicted[family] += float(t)
    measured = collections.Counter()
    steps = []
    for m in pool:
        same = model_of(m) == model and m.extra.get("mode", mode) == mode and m.extra.get("batch", batch) == batch
        if m.kind == "op" and same:
            measured[measured_family(m)] += m.extra.get("mean_s", m.median_s) * m.shape.get("calls", 1)
        elif m.kind == f"{mode}_step" and m.label == model and m.shape.get("batch") == batch and m.precision == "fp32":
            steps.append(m.median_s)
    rows = sorted(((f, measured[f], predicted[f]) for f in set(measured) | set(predicted)), key=lambda r: -max(r[1:]))
    return rows, (steps[-1] if steps else float("nan")), sum(predicted.values())


if __name__ == "__main__":
    ap = case_parser(__doc__)
    ap.add_argument("--db", required=True)
    a = ap.parse_args()
    rows, step_s, ops_s = families(a.db, a.model, a.mode, a.batch, a.seq)
    print(f"{a.model} {a.mode} batch {a.batch}: step measured {step_s * 1e3:.1f} ms; operators predicted "
          f"{ops_s * 1e3:.1f} ms (leave-one-model-out, before the framework time per operator)")
    print(f"{'family':<36} {'measured':>10} {'predicted':>10}  error")
    for family, meas, pred in rows:
        if max(meas, pred) >= 1e-3:
            err = f"{pred / meas - 1:+.0%}" if meas else "-"
            print(f"{family:<36} {meas * 1e3:8.1f} ms {pred * 1e3:8.1f} ms  {err}")
