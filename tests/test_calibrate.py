"""Calibration recovers the efficiencies it was given from synthetic measurements."""

import numpy as np
import pytest

from chipfit.calibrate import Calibration, fit, fit_curve
from chipfit.catalog.schema import Figure, Hardware
from chipfit.errors import ChipfitError
from chipfit.measurement import Measurement
from chipfit.predict.efficiency import Curve
from chipfit.predict.roofline import OpArrays, step_time
from chipfit.workload.profile import Op, Profile

HW = Hardware(id="cpu-x", name="CPU X", vendor="v", hw_class="cpu",
              peak_flops={"fp32": Figure(1e12, "s", True), "bf16": Figure(2e12, "s", True)},
              mem_bw_bytes_per_s=Figure(100e9, "s"))


def matmul(n, seconds, precision="fp32"):
    return Measurement(kind="matmul", device="local-cpu", precision=precision, shape={"m": n, "n": n, "k": n},
                       flops=2.0 * n**3, bytes=3 * n * n * 4, median_s=seconds, min_s=seconds, max_s=seconds,
                       repetitions=5)


def synthetic(e_max, half, precision="fp32", peak=1e12):
    out = []
    for n in (64, 128, 256, 512, 1024, 2048):
        flops = 2.0 * n**3
        out.append(matmul(n, flops / (peak * e_max * flops / (flops + half)), precision))
    return out


def test_fit_curve_recovers_parameters():
    flops = np.logspace(5, 11, 9)
    e = 0.8 * flops / (flops + 3e7)
    e_max, half = fit_curve(flops, e)
    assert e_max == pytest.approx(0.8, rel=0.01)
    assert half == pytest.approx(3e7, rel=0.01)


def test_fit_recovers_matmul_bandwidth_and_overhead():
    ms = synthetic(0.75, 2e7) + synthetic(0.6, 5e7, "bf16", peak=2e12)
    ms.append(Measurement(kind="triad", device="local-cpu", precision="fp32", shape={"elements": 10**7},
                          flops=2e7, bytes=12e7, median_s=12e7 / 80e9, min_s=1, max_s=1, repetitions=5))
    ms.append(Measurement(kind="overhead", device="local-cpu", precision="fp32", shape={"elements": 1},
                          flops=1, bytes=8, median_s=4e-6, min_s=4e-6, max_s=4e-6, repetitions=5))
    cal = fit(ms, HW, "synthetic")
    curves = {(c.family, c.precision): c for c in cal.curves}
    assert curves["matmul", "fp32"].e_max == pytest.approx(0.75, rel=0.01)
    assert curves["matmul", "bf16"].e_max == pytest.approx(0.6, rel=0.01)
    assert cal.bandwidth_bytes_per_s == pytest.approx(80e9)
    assert cal.memory_efficiency(HW) == pytest.approx(0.8)
    assert cal.kernel_overhead_s == pytest.approx(4e-6)
    assert max(cal.residuals.values()) < 0.02
    # The fitted efficiency reproduces the measured time of a matmul in a prediction.
    n = 512
    op = Op("aten.mm.default", "matmul", 2.0 * n**3, 3 * n * n * 4, 0, "fp32", "forward", "m")
    prof = Profile("t", "infer", 1, None, "fp32", [op], 0, 0, 0, 0)
    t = step_time(OpArrays.from_profile(prof), HW, cal.efficiency(HW))
    assert t.total_s - 4e-6 == pytest.approx(ms[3].median_s, rel=0.02)
    assert Calibration.from_dict(cal.to_dict()) == cal


def test_fit_without_benchmarks_says_what_to_do():
    with pytest.raises(ChipfitError, match=r"^No micro-benchmarks of cpu-x to calibrate from; run `chipfit bench`"):
        fit([Measurement(kind="train_step", device="local-cpu", precision="fp32", shape={}, flops=1, bytes=1,
                         median_s=1, min_s=1, max_s=1, repetitions=3)], HW)


def test_curve_shape():
    c = Curve("matmul", "fp32", 0.8, 1e6)
    assert c.at(np.array([1e6]))[0] == pytest.approx(0.4)


def test_calibration_from_another_version_says_to_recalibrate():
    with pytest.raises(ChipfitError, match=r"^The stored calibration of local-cpu was written by another chipfit version; run"):
        Calibration.from_dict({"hardware_id": "local-cpu", "curves": [], "memory_efficiency": 0.5})
