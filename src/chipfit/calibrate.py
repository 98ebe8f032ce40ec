"""Calibrate: fit one device's efficiencies from its stored micro-benchmarks.

    matmul / conv:  e(F) = e_max * F / (F + half_flops) per precision, F = FLOPs of one call,
                    e = achieved FLOP/s / the device's peak at that precision
    memory:         median achieved copy/triad bandwidth (bytes/s; divided by the device's
                    bandwidth figure when the calibration is applied)
    overhead:       median seconds of a tiny kernel

Predictions for the calibrated device use these in place of the published defaults.
"""

from __future__ import annotations

import statistics
from dataclasses import asdict, dataclass, field

import numpy as np

from .catalog.schema import Hardware
from .errors import ChipfitError
from .measurement import Measurement
from .predict.efficiency import Curve, Efficiency, default_efficiency
from .predict.roofline import peak_for

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

    def memory_efficiency(self, hw: Hardware) -> float | None:
        """Measured bandwidth as a fraction of `hw`'s bandwidth figure."""
        if self.bandwidth_bytes_per_s is None or hw.mem_bw_bytes_per_s is None:
            return None
        return self.bandwidth_bytes_per_s / hw.mem_bw_bytes_per_s.value

    def efficiency(self, hw: Hardware) -> Efficiency:
        """The fitted factors as an Efficiency for predictions on `hw` (the calibrated device)."""
        base = default_efficiency(hw.hw_class)
        return Efficiency(
            # Precisions without a curve of their own run at the fp32 matmul curve's best.
            matmul=next((c.e_max for c in self.curves if (c.family, c.precision) == ("matmul", "fp32")), base.matmul),
            vector=base.vector,
            memory=self.memory_efficiency(hw) or base.memory,
            kernel_overhead_s=self.kernel_overhead_s if self.kernel_overhead_s is not None else base.kernel_overhead_s,
            source=f"calibrated on {self.hardware_id} from {self.fitted_from}",
            curves=self.curves,
        )

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "Calibration":
        try:
            return cls(**{**d, "curves": tuple(Curve(**c) for c in d["curves"])})
        except (TypeError, KeyError) as exc:
            raise ChipfitError(
                f"The stored calibration of {d.get('hardware_id', 'this device')} was written by another chipfit "
                "version; run `chipfit bench` and `chipfit calibrate` again."
            ) from exc


def fit(measurements: list[Measurement], hw: Hardware, fitted_from: str = "") -> Calibration:
    """Fit `hw`'s efficiencies from micro-benchmark measurements taken on it."""
    curves, residuals = [], {}
    for family in ("matmul", "conv2d"):
        by_precision: dict[str, list[Measurement]] = {}
        for m in measurements:
            if m.kind == family and m.achieved_flops_per_s:
                by_precision.setdefault(m.precision, []).append(m)
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
    if not curves and bandwidth is None and not overheads:
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
    )


def calibrate_device(store, hw: Hardware, device: str = "local-cpu") -> Calibration:
    """Fit `hw` from the newest `chipfit bench` run of `device` in `store`, and keep the result there."""
    import datetime as _dt

    runs = store.runs(kind="bench", device=device)
    if not runs:
        raise ChipfitError(f"No benchmark run of {device} in {store.path}; run `chipfit bench` on this machine first.")
    run = runs[-1]
    cal = fit(store.measurements(run_id=run.id), hw, f"bench run {run.id} of {run.created_at}")
    now = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    store.save_calibration(hw.id, device, now, cal.to_dict())
    return cal


def stored_calibration(store, hw_id: str) -> Calibration | None:
    """The newest calibration of `hw_id` kept in `store`, or None."""
    data = store.latest_calibration(hw_id)
    return Calibration.from_dict(data) if data else None
