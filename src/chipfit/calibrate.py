"""Calibrate: fit one device's efficiencies from its stored micro-benchmarks and, where there
are any, from operator times measured in real steps (the Habitat idea: what real models run).

From micro-benchmarks (`chipfit bench`):
    matmul / conv:  e(F) = e_max * F / (F + half_flops) per precision, F = FLOPs of one call,
                    e = achieved FLOP/s / the device's peak at that precision
    memory:         median achieved copy/triad bandwidth (bytes/s; divided by the device's
                    bandwidth figure when the calibration is applied)
    overhead:       median seconds of a tiny kernel
From operator measurements (kind "op", recorded by `chipfit measure` and `chipfit validate`),
per operator family (chipfit.predict.efficiency.op_family) and precision:
    t = overhead + F / (peak * e_compute) + B / (bandwidth * e_memory) + B_new / fresh_rate
    (B_new: bytes written into newly allocated memory, which page-faults; efficiency.fresh_bytes),
    four non-negative parameters, least squares on relative error weighted by each row's share
    of the measured time; the matmul and conv2d micro-benchmarks join their families' rows. Families are
    paths ("elementwise/rng"); every prefix is fitted on the rows below it and an operator is priced by the
    most specific one fitted, so a family no other model has takes its parent kind's fit.
    These replace the roofline for the ops of that family.
From real steps with an operator profile beside them:
    framework seconds per operator, per phase (forward, backward, optimizer): the part of a clean
    step's time that no operator accounts for (Python, autograd, the optimizer's loop), fitted by
    non-negative least squares on relative error over the stored steps.
Traced operators that no profiled real step ran (unmatched everywhere, e.g. the optimizer state
AdamW creates on its first step) are priced at zero. Families without operator data keep the
micro-benchmark figures. Nothing is fitted per model.

Predictions for the calibrated device use these in place of the published defaults.
"""

from __future__ import annotations

import itertools
import statistics
from dataclasses import asdict, dataclass, field

import numpy as np

from .catalog.schema import Hardware
from .errors import ChipfitError
from .measurement import Measurement
from .predict.efficiency import (Curve, Efficiency, OpFit, default_efficiency, family_chain, fresh_bytes,
                                 op_family, pages_fault_on_allocation)
from .predict.as_run import tf32_convolutions
from .predict.roofline import MATRIX_KINDS, op_peak, peak_for
from .trust import check_calibration
from .workload.profile import KINDS as OP_KINDS, PHASES, conv_window
from .workload.workload import BYTES_PER_ELEMENT

# The half-efficiency sizes tried by the fit: 1 kFLOP to 1 PFLOP, 20 per decade, and 0 (flat).
_HALF_GRID = np.concatenate([[0.0], np.logspace(3, 15, 241)])


def _best_on(grid: np.ndarray, flops: np.ndarray, efficiency: np.ndarray) -> tuple[float, float, float]:
    """(error, e_max, h) of the best h on `grid`; e_max has a closed form for each h."""
    best = (np.inf, 0.0, 0.0)
    for h in grid:
        g = flops / (flops + h) / efficiency  # model / observation, per unit e_max
        e_max = g.sum() / (g * g).sum()
        err = float(((e_max * g - 1.0) ** 2).sum())
        if err < best[0] - 1e-15:
            best = (err, float(e_max), float(h))
    return best


def fit_curve(flops: np.ndarray, efficiency: np.ndarray) -> tuple[float, float]:
    """(e_max, half_flops) minimising the relative squared error of e_max * F / (F + h).

    A coarse log grid of h, then a fine one around the best point.
    """
    flops, efficiency = np.asarray(flops, float), np.asarray(efficiency, float)
    if len(flops) == 0 or np.any(efficiency <= 0):
        raise ValueError("need at least one positive efficiency to fit")
    _, e_max, h = _best_on(_HALF_GRID, flops, efficiency)
    if h > 0:
        _, e_max, h = _best_on(np.geomspace(h / 1.13, h * 1.13, 201), flops, efficiency)
    return e_max, h


def nonnegative_lstsq(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, float]:
    """x >= 0 minimising |a x - b|^2 (few columns: every subset of free columns is tried), and that
    squared error. On a tie the fewer-parameter solution wins."""
    n = a.shape[1]
    scale = np.linalg.norm(a, axis=0)
    scale[scale == 0] = 1.0
    a = a / scale
    best_x, best_err = np.zeros(n), float(b @ b)
    tie = 1e-10 * best_err  # improvements smaller than this are rounding, not a better fit
    for size in range(1, n + 1):
        for cols in itertools.combinations(range(n), size):
            sol, *_ = np.linalg.lstsq(a[:, cols], b, rcond=None)
            if np.any(sol < 0):
                continue
            x = np.zeros(n)
            x[list(cols)] = sol
            r = a @ x - b
            err = float(r @ r)
            if err < best_err - tie:
                best_x, best_err = x, err
    return best_x / scale, best_err


def relative_fit(columns: np.ndarray, measured_s: np.ndarray, weight: np.ndarray) -> tuple[np.ndarray, float]:
    """Non-negative coefficients c minimising sum w (columns @ c / t - 1)^2; and the weighted RMS
    relative error (weights normalised to sum 1)."""
    w = np.sqrt(weight / weight.sum())
    coef, err = nonnegative_lstsq(columns / measured_s[:, None] * w[:, None], w)
    return coef, float(np.sqrt(err))


def model_of(m: Measurement) -> str:
    """The model an op or step measurement was taken on."""
    return m.extra.get("model") or m.label


def without_model(measurements: list[Measurement], model: str) -> list[Measurement]:
    """`measurements` minus every op and step row taken on `model` (micro-benchmarks stay):
    what a leave-one-model-out calibration may see."""
    return [m for m in measurements if m.kind not in ("op", "train_step", "infer_step") or model_of(m) != model]


def measured_family(m: Measurement) -> str:
    """The family of an "op" measurement, from the operator itself (rows stored by older versions get
    today's families)."""
    return op_family(m.extra["op_kind"], m.label, m.flops, m.bytes, m.extra.get("mode"), m.extra.get("window"))


def _op_rows(measurements: list[Measurement]) -> list[dict]:
    """Operator rows to fit, each with its family (measured_family): "op" measurements of real steps (their
    mean time, see measure.opprofile; the median in rows stored without one), and the matmul and conv2d
    micro-benchmarks (dense, and depthwise forward and backward), which are operators of those families too
    (matmul writes into a kept output; conv2d allocates its)."""
    rows = []
    for m in measurements:
        if m.median_s <= 0:
            continue
        if m.kind == "op":
            fresh = m.extra.get("fresh_bytes", 0.0) if pages_fault_on_allocation(m.device) else 0.0
            rows.append(dict(family=measured_family(m), kind=m.extra["op_kind"], fresh=fresh,
                             calls=m.shape.get("calls", 1), model=model_of(m)))
        elif m.kind in MICRO_BENCHMARK_KINDS and m.precision in BYTES_PER_ELEMENT:
            kind = "matmul" if m.kind == "matmul" else "conv"
            backward = m.kind.endswith("_backward")
            aten = "aten.convolution_backward.default" if backward else "aten.convolution.default"
            # The new output: a convolution's (same padding: the input's size over the stride), or, backward, the
            # input's gradient.
            stride = m.shape.get("stride", 1)
            height, width = m.shape.get("height", 0), m.shape.get("width", 0)
            if not backward:
                height, width = -(-height // stride), -(-width // stride)
            out = (m.shape.get("batch", 0) * m.shape.get("channels_out", 0) * height * width
                   * BYTES_PER_ELEMENT[m.precision])
            window = conv_window((m.shape.get("kernel", 3),) * 2, (stride,) * 2)
            family = "matmul" if kind == "matmul" else op_family(kind, aten, m.flops, m.bytes, window=window)
            fresh = fresh_bytes(aten, out) if pages_fault_on_allocation(m.device) else 0.0
            rows.append(dict(family=family, kind=kind, fresh=fresh, calls=1, model=MICRO_BENCHMARKS))
        else:
            continue
        rows[-1].update(precision=m.precision, flops=m.flops, bytes=m.bytes, t=m.extra.get("mean_s", m.median_s),
                        cuda=m.device.startswith("cuda"))
    return rows


MICRO_BENCHMARKS = "micro-benchmarks"
# Micro-benchmarks that time one operator of a model's families (the rest measure bandwidth and overhead).
MICRO_BENCHMARK_KINDS = ("matmul", "conv2d", "conv2d_depthwise", "conv2d_depthwise_backward")
# A family known from micro-benchmarks alone is fitted when they measured it at this many sizes at least.
MIN_MICRO_ROWS = 3


def fit_ops(measurements: list[Measurement], hw: Hardware) -> tuple[OpFit, ...]:
    """Per (family, precision), t = o + F / (peak e_compute) + B / (bw e_memory) + fresh / fresh_rate,
    from the op rows of real steps and the matmul and conv micro-benchmarks. Every prefix of a family
    path (efficiency.family_chain) is fitted on all the rows below it, so a family without data of its own
    is priced by its parent. A family without real-step rows is fitted only from at least MIN_MICRO_ROWS
    micro-benchmark sizes of that very family, or of the kernel windows below it (a depthwise convolution's
    benchmarks price any low-intensity window they did not measure, never a dense convolution)."""
    bw = hw.mem_bw_bytes_per_s.value if hw.mem_bw_bytes_per_s else None
    groups: dict[tuple[str, str], list[dict]] = {}
    for r in _op_rows(measurements):
        r["precision"] = ran_at(r["kind"] == "conv", r["precision"], r["cuda"], hw)
        for family in family_chain(r["family"]):
            groups.setdefault((family, r["precision"]), []).append(r)
    fits = []
    for (family, precision), rs in sorted(groups.items()):
        if all(r["model"] == MICRO_BENCHMARKS for r in rs) and (
                len(rs) < MIN_MICRO_ROWS or any(family not in (r["family"], _unwindowed(r["family"])) for r in rs)):
            continue  # micro-benchmarks alone fit their own family, never a parent that would blend them
        peaks = np.array([op_peak(hw, r["kind"], precision) or 0.0 for r in rs])
        if not bw or np.any(peaks <= 0):
            continue  # no figure to express an efficiency against
        calls = np.array([r["calls"] for r in rs], float)
        t = np.array([r["t"] for r in rs])
        cols = np.stack([np.ones(len(rs)), np.array([r["flops"] for r in rs]) / peaks,
                         np.array([r["bytes"] for r in rs]) / bw, np.array([r["fresh"] for r in rs])], axis=1)
        # Where the rows cannot tell the terms apart (one shape, seen by several models), the fit keeps the first
        # that explains them: time proportional to the work (FLOPs on matrix units, else bytes), then a constant.
        order = [1, 0, 2, 3] if family.split("/")[0] in MATRIX_KINDS else [2, 0, 1, 3]
        coef, err = relative_fit(cols[:, order], t, calls * t)
        o, inv_c, inv_m, s_fresh = coef[np.argsort(order)]
        fits.append(OpFit(family, precision, float(o), 1 / inv_c if inv_c > 0 else None,
                          1 / inv_m if inv_m > 0 else None, 1 / s_fresh if s_fresh > 0 else None, int(calls.sum()),
                          tuple(sorted({r["model"] for r in rs})), err))
    return tuple(fits)


def _unwindowed(family: str) -> str:
    """A convolution family without its kernel window: "conv/backward/low_intensity/k5s2" -> its parent."""
    parent = family.rsplit("/", 1)[0]
    return parent if parent.endswith("/low_intensity") else family


def fit_absent_ops(measurements: list[Measurement]) -> tuple[str, ...]:
    """Traced operators ("phase:aten name") that real steps never ran: unmatched in every profiled step
    and in no operator row, such as the optimizer state a first step creates (zeros_like)."""
    unmatched = {k for m in measurements if m.kind in ("train_step", "infer_step") and "op_profile" in m.extra
                 for k in m.extra["op_profile"].get("unmatched", {})}
    ran = {f"{m.extra['phase']}:{m.label}" for m in measurements if m.kind == "op"}
    return tuple(sorted(unmatched - ran))


def fit_step_overhead(measurements: list[Measurement]) -> dict[str, float]:
    """Framework seconds per operator, per phase: s >= 0 minimising the relative error of
    t_step = (measured operator time) + sum over phases of (operators in the phase) * s,
    over the steps that carry an operator profile (`op_profile` in their extra)."""
    rows = [m for m in measurements if m.kind in ("train_step", "infer_step") and "op_profile" in m.extra]
    if not rows:
        return {}
    counts = np.array([[m.extra["op_profile"]["ops_by_phase"].get(p, 0) for p in PHASES] for m in rows], float)
    t = np.array([m.median_s for m in rows])
    gap = t - np.array([m.extra["op_profile"]["matched_ops_s"] for m in rows])
    used = [i for i in range(len(PHASES)) if counts[:, i].any()]
    coef, _ = nonnegative_lstsq(counts[:, used] / t[:, None], gap / t)
    return {PHASES[i]: float(c) for i, c in zip(used, coef)}


@dataclass(frozen=True)
class Calibration:
    """Fitted efficiencies of one device, and what they were fitted from."""

    device: str
    hardware_id: str
    curves: tuple[Curve, ...]
    bandwidth_bytes_per_s: float | None
    kernel_overhead_s: float | None
    measurements: int
    fitted_from: str  # e.g. "run 3 (2026-11-21T23:40:00+00:00)"
    residuals: dict[str, float] = field(default_factory=dict)  # family/precision -> worst relative error
    op_fits: tuple[OpFit, ...] = ()  # from operator measurements of real steps
    step_overhead_s: dict[str, float] = field(default_factory=dict)  # phase -> framework seconds per operator
    op_models: tuple[str, ...] = ()  # the models whose operators and steps were fitted
    absent_ops: tuple[str, ...] = ()  # "phase:aten name" traced but never run by a real step

    def memory_efficiency(self, hw: Hardware) -> float | None:
        """Measured bandwidth as a fraction of `hw`'s bandwidth figure."""
        if self.bandwidth_bytes_per_s is None or hw.mem_bw_bytes_per_s is None:
            return None
        return self.bandwidth_bytes_per_s / hw.mem_bw_bytes_per_s.value

    def efficiency(self, hw: Hardware) -> Efficiency:
        """The fitted factors as an Efficiency for predictions on `hw` (the calibrated device)."""
        base = default_efficiency(hw)
        return Efficiency(
            # Precisions without a curve of their own run at the fp32 matmul curve's best.
            matmul=next((c.e_max for c in self.curves if (c.family, c.precision) == ("matmul", "fp32")), base.matmul),
            vector=base.vector,
            memory=self.memory_efficiency(hw) or base.memory,
            kernel_overhead_s=self.kernel_overhead_s if self.kernel_overhead_s is not None else base.kernel_overhead_s,
            source=f"calibrated on {self.hardware_id} from {self.fitted_from}",
            curves=self.curves,
            op_fits=self.op_fits,
            step_overhead_s=dict(self.step_overhead_s),
            absent_ops=self.absent_ops,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        try:
            cal = cls(**{**d, "curves": tuple(Curve(**c) for c in d["curves"]),
                         "op_fits": tuple(OpFit(**{**f, "models": tuple(f["models"])}) for f in d.get("op_fits", ())),
                         "op_models": tuple(d.get("op_models", ())), "absent_ops": tuple(d.get("absent_ops", ()))})
            if any(f.family.split("/")[0] not in OP_KINDS for f in cal.op_fits):
                raise KeyError("operator families of an older version")
            return cal
        except (TypeError, KeyError) as exc:
            raise ChipfitError(
                f"The stored calibration of {d.get('hardware_id', 'this device')} was written by another chipfit "
                "version; run `chipfit bench` and `chipfit calibrate` again."
            ) from exc


def ran_at(is_conv: bool, precision: str, on_cuda: bool, hw: Hardware) -> str:
    """The precision an operator or benchmark ran at: cuDNN runs fp32 convolutions on CUDA at TF32
    (as_run.tf32_convolutions), so their efficiency is measured against, and priced at, the TF32 peak."""
    if is_conv and on_cuda and precision == "fp32" and tf32_convolutions(hw, None, "fp32"):
        return "tf32"
    return precision


def fit(measurements: list[Measurement], hw: Hardware, fitted_from: str = "") -> Calibration:
    """Fit `hw`'s efficiencies from measurements taken on it: micro-benchmarks, and operator and
    step rows where there are any."""
    curves, residuals = [], {}
    for family in ("matmul", "conv2d"):
        by_precision: dict[str, list[Measurement]] = {}
        for m in measurements:
            if m.kind == family and m.achieved_flops_per_s:
                by_precision.setdefault(
                    ran_at(m.kind == "conv2d", m.precision, m.device.startswith("cuda"), hw), []).append(m)
        for precision, ms in sorted(by_precision.items()):
            peak, used = peak_for(hw, precision)
            if peak is None or used != precision:
                continue  # no figure to measure efficiency against
            flops = np.array([m.flops for m in ms])
            eff = np.array([m.achieved_flops_per_s / peak for m in ms])
            e_max, half = fit_curve(flops, eff)
            name = "conv" if family == "conv2d" else "matmul"
            curve = Curve(name, precision, e_max, half)
            curves.append(curve)
            residuals[f"{name}/{precision}"] = float(np.max(np.abs(curve.at(flops) / eff - 1.0)))
    bandwidths = [m.achieved_bytes_per_s for m in measurements if m.kind in ("copy", "triad") and m.achieved_bytes_per_s]
    bandwidth = statistics.median(bandwidths) if bandwidths else None
    overheads = [m.median_s for m in measurements if m.kind == "overhead"]
    op_fits = fit_ops(measurements, hw)
    if not curves and bandwidth is None and not overheads and not op_fits:
        raise ChipfitError(
            f"No micro-benchmarks of {hw.id} to calibrate from; run `chipfit bench` on this machine first."
        )
    return Calibration(
        device=measurements[0].device,
        hardware_id=hw.id,
        curves=tuple(curves),
        bandwidth_bytes_per_s=bandwidth,
        kernel_overhead_s=statistics.median(overheads) if overheads else None,
        measurements=len(measurements),
        fitted_from=fitted_from,
        residuals=residuals,
        op_fits=op_fits,
        step_overhead_s=fit_step_overhead(measurements) if op_fits else {},
        op_models=tuple(sorted({model_of(m) for m in measurements if m.kind == "op"})),
        absent_ops=fit_absent_ops(measurements) if op_fits else (),
    )


def device_measurements(store, device: str = "local-cpu", require_bench: bool = True) -> tuple[list[Measurement], str]:
    """What a calibration of `device` is fitted from: its newest `chipfit bench` run, and every stored
    operator row and step with an operator profile; and a phrase saying so."""
    runs = store.runs(kind="bench", device=device)
    if not runs and require_bench:
        raise ChipfitError(f"No benchmark run of {device} in {store.path}; run `chipfit bench` on this machine first.")
    ops = store.measurements(kind="op", device=device)
    steps = [m for k in ("train_step", "infer_step") for m in store.measurements(kind=k, device=device)
             if "op_profile" in m.extra]
    parts = [f"bench run {runs[-1].id} of {runs[-1].created_at}"] if runs else []
    if ops:
        models = sorted({model_of(m) for m in ops})
        parts.append(f"{len(ops)} operator rows and {len(steps)} steps of {len(models)} models ({', '.join(models)})")
    bench = store.measurements(run_id=runs[-1].id) if runs else []
    return bench + ops + steps, ", ".join(parts)


def calibrate_device(store, hw: Hardware, device: str = "local-cpu") -> Calibration:
    """Fit `hw` from what `device_measurements` finds in `store`, and keep the result there."""
    import datetime as _dt

    measurements, source = device_measurements(store, device)
    cal = fit(measurements, hw, source)
    check_calibration(cal, hw)  # nothing that breaks physics is kept
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    store.save_calibration(hw.id, device, now, cal.to_dict())
    return cal


def stored_calibration(store, hw_id: str) -> Calibration | None:
    """The newest calibration of `hw_id` kept in `store`, or None."""
    data = store.latest_calibration(hw_id)
    return Calibration.from_dict(data) if data else None
