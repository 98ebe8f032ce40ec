"""Measurements carry their own trust: load, spread, and results that break physics are flagged, and
calibration refuses a fit that breaks physics."""

import pytest

from chipfit.calibrate import Calibration, calibrate_device
from chipfit.catalog import load_catalog
from chipfit.errors import ChipfitError
from chipfit.measurement import Environment, Measurement
from chipfit.predict.efficiency import Curve, OpFit
from chipfit.report.terminal import measurements_table, validation_tables
from chipfit.store import Store
from chipfit.trust import (calibration_refusals, case_trust, check_calibration, load_warning, machine_load,
                           measurement_flags, op_fit_flags, spread_text)

HW = load_catalog().get("amd-epyc-9654")
PEAK = HW.peak("fp32")
BW = HW.mem_bw_bytes_per_s.value


def matmul(seconds: float, reps: int = 5, lo: float | None = None, hi: float | None = None, n: int = 1024):
    flops = 2.0 * n**3
    return Measurement(kind="matmul", device="local-cpu", precision="fp32", shape={"m": n, "n": n, "k": n},
                       flops=flops, bytes=3 * 4 * n * n, median_s=seconds, min_s=lo or seconds, max_s=hi or seconds,
                       repetitions=reps)


def test_one_repetition_has_no_spread():
    assert matmul(1.0, reps=1).spread is None
    assert spread_text(None) == "-"
    assert matmul(1.0, lo=0.9, hi=1.3).spread == pytest.approx(0.4)
    assert spread_text(0.4) == "40%"


def test_above_peak_negative_and_noisy_are_flagged():
    fast = matmul(2.0 * 1024**3 / (1.24 * PEAK))
    assert measurement_flags(fast, PEAK, None) == ["above peak (124%): a timing error or a wrong catalog peak"]
    assert measurement_flags(matmul(-1.0), PEAK, None) == ["impossible: a time or size is zero or negative"]
    noisy = matmul(1.0, lo=0.5, hi=21.0)
    assert measurement_flags(noisy, PEAK, None) == ["noisy (spread 2050%)"]
    assert measurement_flags(matmul(1.0), PEAK, None) == []


def test_the_bench_table_says_so():
    table = measurements_table([matmul(2.0 * 1024**3 / (1.24 * PEAK)), matmul(1.0, reps=1)], HW)
    cells = {c.header: c._cells for c in table.columns}
    assert cells["of peak"][0] == "124%"
    assert cells["trust"] == ["above peak (124%): a timing error or a wrong catalog peak", "ok"]
    assert cells["spread"] == ["0%", "-"]  # five equal repetitions, and one repetition (no spread to tell)


def cal(**fields):
    base = dict(device="local-cpu", hardware_id=HW.id, curves=(Curve("matmul", "fp32", 0.7, 1e9),),
                bandwidth_bytes_per_s=0.5 * BW, kernel_overhead_s=5e-6, measurements=10, fitted_from="test",
                residuals={"matmul/fp32": 0.05})
    return Calibration(**{**base, **fields})


def test_a_sound_calibration_is_kept():
    assert calibration_refusals(cal(), HW) == []
    check_calibration(cal(), HW)


@pytest.mark.parametrize("fields,clause", [
    ({"curves": (Curve("matmul", "fp32", 1.3, 1e9),)}, "the matmul fp32 efficiency 1.3 is outside (0, 1]"),
    ({"bandwidth_bytes_per_s": 127 * BW}, "the measured memory bandwidth is 127x amd-epyc-9654's figure"),
    ({"bandwidth_bytes_per_s": -1.0}, "the measured memory bandwidth is not positive"),
    ({"kernel_overhead_s": -1e-6}, "the per-kernel overhead is negative"),
])
def test_calibration_that_breaks_physics_is_refused(fields, clause):
    with pytest.raises(ChipfitError) as err:
        check_calibration(cal(**fields), HW)
    assert str(err.value).startswith(f"The calibration of amd-epyc-9654 was not kept: {clause}")
    assert str(err.value).endswith("Run `chipfit bench` again on an idle machine (`chipfit results show` lists "
                                   "each run's load).")


def test_beating_local_cpus_own_estimates_is_not_physics():
    """local-cpu's bandwidth is itself a quick triad and its peak is derived from a clock (maybe the base clock):
    a bench 4% or 8% above them is not refused; a datasheet figure is a limit."""
    from dataclasses import replace

    from chipfit.catalog.schema import Figure

    local = replace(HW, id="local-cpu", mem_bw_bytes_per_s=Figure(BW, "measured on this machine, STREAM-like triad"),
                    peak_flops={"fp32": Figure(PEAK, "derived: 2 cores x 2.00 GHz x 32 FLOP/cycle", True)})
    assert calibration_refusals(cal(bandwidth_bytes_per_s=1.04 * BW), local) == []
    assert calibration_refusals(cal(curves=(Curve("matmul", "fp32", 1.08, 1e9),)), local) == []  # a base clock
    assert calibration_refusals(cal(curves=(Curve("matmul", "fp32", 0.0, 1e9),)), local) == [
        "the matmul fp32 efficiency 0 is not positive"]
    assert calibration_refusals(cal(bandwidth_bytes_per_s=1.04 * BW), HW) == [
        "the measured memory bandwidth is 1.04x amd-epyc-9654's figure"]


def test_calibrate_keeps_nothing_from_benchmarks_above_peak(tmp_path):
    env = Environment(device="local-cpu", device_name="cpu", hardware_id=HW.id, threads=1, hostname="h",
                      platform="p", python_version="3", torch_version="2", chipfit_version="0",
                      created_at="2026-01-01T00:00:00")
    rows = [matmul(2.0 * n**3 / (1.5 * PEAK), n=n) for n in (256, 512, 1024, 2048)]
    with Store(tmp_path / "r.sqlite") as store:
        store.record_run("bench", "local-cpu", env, rows)
        with pytest.raises(ChipfitError, match="the matmul fp32 efficiency 1.5 is outside"):
            calibrate_device(store, HW, "local-cpu")
        assert store.latest_calibration(HW.id) is None


def test_a_poor_curve_fit_is_flagged_not_refused():
    from chipfit.report.terminal import calibration_table
    from chipfit.trust import curve_flag

    poor = cal(residuals={"matmul/fp32": 0.97})
    check_calibration(poor, HW)
    table = calibration_table(poor)
    table = table[0] if isinstance(table, list) else table
    assert {c.header: c._cells for c in table.columns}["trust"][0] == "poor fit (worst 97%): bench again when idle"
    assert curve_flag(0.2) == "ok"


def test_operator_fits_are_flagged_in_the_table():
    poor = OpFit("elementwise", "fp32", 1e-6, None, 0.5, None, 10, ("gpt2",), 0.97)
    fast = OpFit("matmul", "fp32", 1e-6, 1.4, None, None, 10, ("gpt2",), 0.1)
    assert op_fit_flags(poor) == ["poor fit (RMS 97%)"]
    assert op_fit_flags(fast) == ["above compute peak"]


def test_one_round_of_validate_reports_no_spread():
    assert case_trust(None) == "one round: no spread, noise unknown"
    assert case_trust(0.8) == "noisy (spread 80%)"
    assert case_trust(0.02) == "ok"


def test_load_is_read_from_proc(tmp_path):
    (tmp_path / "self").mkdir()
    for pid, state in ((101, "R"), (102, "S"), (103, "R")):
        (tmp_path / str(pid)).mkdir()
        (tmp_path / str(pid) / "stat").write_text(f"{pid} (stress-ng (x)) {state} 1 2 3")
    (tmp_path / "cpuinfo").write_text("cpu MHz\t\t: 2400.0\ncpu MHz\t\t: 3100.5\ncpu MHz\t\t: 1200.0\n")
    load = machine_load(tmp_path)
    assert load["other_running_processes"] == ["stress-ng (x)", "stress-ng (x)"]
    assert load["cpu_mhz"] == {"min": 1200.0, "median": 2400.0, "max": 3100.5}
    assert len(load["loadavg"]) == 3
    assert load_warning({"loadavg": [7.5, 1, 1], "other_running_processes": ["stress-ng"]}, 4) == (
        "The machine was busy (1-minute load 7.5 on 4 cores; 1 other running process (stress-ng)): times may be "
        "the other work's; measure again when idle.")
    assert load_warning({"loadavg": [0.1, 0, 0], "other_running_processes": []}, 4) is None


def test_every_run_records_its_load():
    env = Environment.capture("local-cpu")
    assert {"loadavg", "other_running_processes"} <= set(env.extra["load"])
