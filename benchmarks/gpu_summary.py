"""summary.md of a benchmarks/gpu_check.sh run: what each step stored, read back from its results store.

    python benchmarks/gpu_summary.py OUT_DIR [STEP|EXIT|SECONDS ...]

Reads OUT_DIR/results.sqlite (bench, measure, validate runs) and OUT_DIR/validate.json, writes OUT_DIR/summary.md:
the steps with their exit status and time, the best matmul per precision and the copy bandwidth of bench, each
measured step beside its prediction with peak memory and energy, and validate's errors.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from chipfit.catalog import load_catalog
from chipfit.store import Store


def _ms(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds * 1e3:.4g} ms"


def _bench(store: Store) -> list[str]:
    runs = store.runs(kind="bench")
    if not runs:
        return ["No bench run stored."]
    run = runs[-1]
    ms = store.measurements(run_id=run.id)
    best: dict[str, tuple[float, int]] = {}
    for m in ms:
        if m.kind == "matmul" and m.achieved_flops_per_s and m.achieved_flops_per_s > best.get(m.precision, (0, 0))[0]:
            best[m.precision] = (m.achieved_flops_per_s, m.shape["n"])
    hw = load_catalog().hardware.get(run.hardware_id)
    lines = [f"run {run.id} on {run.device} ({run.environment.device_name}, catalog {run.hardware_id}), "
             f"torch {run.environment.torch_version}", "",
             "| matmul | best TFLOP/s | at n | of the catalog's dense peak | energy method |",
             "| --- | --- | --- | --- | --- |"]
    method = next((m.power_method for m in ms if m.kind == "matmul"), "")
    for p, (r, n) in best.items():
        peak = hw.peak(p) if hw else None
        lines.append(f"| {p} | {r / 1e12:.3g} | {n} | {'-' if not peak else f'{r / peak:.0%}'} | {method} |")
    for m in ms:
        if m.kind in ("copy", "triad"):
            watts = "-" if m.power_watts is None else f"{m.power_watts:.0f} W"
            lines.append(f"\n{m.kind}: {m.achieved_bytes_per_s / 1e9:.0f} GB/s over {m.shape['elements']} fp32 "
                         f"elements, {watts}")
    return lines


def _measures(store: Store) -> list[str]:
    lines = ["| run | workload | measured | predicted | error | peak memory | energy per step | power | energy from |",
             "| --- | --- | --- | --- | --- | --- | --- | --- | --- |"]
    for run in store.runs(kind="measure"):
        for m in store.measurements(run_id=run.id):
            if not m.kind.endswith("_step"):
                continue
            seq = f" seq {m.shape['seq_len']}" if m.shape.get("seq_len") else ""
            error = "-" if not m.predicted_s else f"{m.predicted_s / m.median_s - 1:+.0%}"
            peak = "-" if m.peak_memory_bytes is None else f"{m.peak_memory_bytes / 2**30:.2f} GiB"
            energy = "-" if m.energy_j is None else f"{m.energy_j:.3g} J" + (" (est.)" if m.energy_estimated else "")
            watts = "-" if m.power_watts is None else f"{m.power_watts:.0f} W"
            lines.append(f"| {run.id} | {m.label} {m.kind.removesuffix('_step')} batch {m.shape['batch']}{seq} "
                         f"{m.precision} | {_ms(m.median_s)} | {_ms(m.predicted_s)} | {error} | {peak} | {energy} | "
                         f"{watts} | {m.power_method} |")
    return lines if len(lines) > 2 else ["No measure run stored."]


def _validate(path: Path) -> list[str]:
    if not path.is_file():
        return ["No validate output (validate.json) was written."]
    v = json.loads(path.read_text())
    s = v["summary"]

    def pct(x):
        return "-" if x is None else f"{x:.1%}"

    lines = [f"{s['cases']} cases on {v['hardware']}; median (worst) |error|: published defaults "
             f"{pct(s['median_abs_error_before'])} ({pct(s['worst_abs_error_before'])}), micro-benchmark calibration "
             f"{pct(s['median_abs_error_micro'])} ({pct(s['worst_abs_error_micro'])}), leave-one-model-out "
             f"{pct(s['median_abs_error_after'])} ({pct(s['worst_abs_error_after'])}); median spread "
             f"{pct(s['median_spread'])}.", "",
             "| case | measured | before | after (LOMO) |", "| --- | --- | --- | --- |"]
    for c in v["cases"]:
        seq = f" seq {c['seq_len']}" if c["seq_len"] else ""
        after = "-" if c["error_after"] is None else f"{c['error_after']:+.0%}"
        lines.append(f"| {c['model']} {c['mode']} batch {c['batch']}{seq} {c['precision']} | {_ms(c['measured_s'])} | "
                     f"{c['error_before']:+.0%} | {after} |")
    if v.get("bf16_speedup_measured"):
        lines.append(f"\nmeasured bf16 speed-up over fp32 (first case): {v['bf16_speedup_measured']:.2f}x")
    return lines


def summary(out: Path, steps: list[str]) -> str:
    lines = ["# chipfit gpu_check", "", "| step | exit | seconds |", "| --- | --- | --- |"]
    for step in steps:
        name, code, seconds = step.split("|")
        lines.append(f"| {name} | {code} | {seconds} |")
    with Store(out / "results.sqlite") as store:
        lines += ["", "## bench", "", *_bench(store), "", "## measure", "", *_measures(store)]
    lines += ["", "## validate", "", *_validate(out / "validate.json")]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    target = Path(sys.argv[1])
    (target / "summary.md").write_text(summary(target, sys.argv[2:]))
