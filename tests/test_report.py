"""HTML report and plots on a small hand-made profile (no tracing): self-contained, every section, files written."""

import re
from dataclasses import replace
from html import escape

import pytest

pytest.importorskip("matplotlib")

from chipfit.advise import advise
from chipfit.catalog import Catalog, Figure, Hardware, Instance, load_catalog
from chipfit.comparison import Comparison, compare_profile
from chipfit.measurement import Measurement
from chipfit.predict import Conditions, OpArrays, Plan
from chipfit.predict.efficiency import default_efficiency
from chipfit.predict.roofline import step_time
from chipfit.report.html import html
from chipfit.rentbuy import rent_vs_buy
from chipfit.api.report import layer_times, measured_data, report_data, roofline_data
from chipfit.report.plots import plots
from chipfit.workload.profile import Op, Profile
from chipfit.workload.workload import Workload

N = 1024
MM = 2 * N**3  # one N x N x N matmul
MM_BYTES = 3 * N * N * 4  # two fp32 inputs read, one output written


def _profile() -> Profile:
    ops = []
    for layer in ("blocks.0", "blocks.1"):
        ops += [
            Op("aten.mm.default", "matmul", MM, 2 * N * N * 4, N * N * 4, "fp32", "forward", f"{layer}.fc"),
            Op("aten.relu.default", "elementwise", N * N, N * N * 4, N * N * 4, "fp32", "forward", f"{layer}.act"),
            Op("aten.mm.default", "matmul", 2 * MM, 4 * N * N * 4, 2 * N * N * 4, "fp32", "backward", f"{layer}.fc"),
            Op("aten._foreach_add_.List", "elementwise", 4 * N * N, 8 * N * N, 4 * N * N, "fp32", "optimizer",
               f"{layer}.fc.weight"),
        ]
    return Profile(model="tiny", mode="train", batch=4, seq_len=None, dtype="fp32", ops=ops, params=2 * N * N,
                   trainable_params=2 * N * N, param_bytes=8 * N * N, activation_bytes=16 * N * N)


IDS = ["nvidia-h100-sxm5-80gb", "nvidia-a100-sxm4-80gb", "nvidia-rtx-4090"]


@pytest.fixture(scope="module")
def advice():
    catalog = load_catalog()
    work = Workload(model="tiny", batch=4, samples=4e6)
    cmps = []
    for devices in (1, 4):
        prof = _profile() if devices == 1 else Profile(**{**_profile().__dict__, "batch": 1})
        plan = Plan(devices=devices)
        ests = compare_profile(prof, work, plan, [catalog.get(i) for i in IDS], catalog)
        cmps.append(Comparison(workload=work, plan=plan, profile=prof, estimates=ests, conditions=Conditions()))
    return advise(cmps, buy_years=3, electricity_usd_per_kwh=0.15)


def _with_rent_buy(advice):
    s = "test source, https://example.com/price"
    hw = Hardware(id="gpu-x", name="GPU X", vendor="T", hw_class="gpu", tdp_watts=Figure(400, s), price_usd=Figure(1500, s))
    inst = Instance(id="x1", provider="aws", name="x.1", hardware="gpu-x", count=1,
                    price_usd_per_hour=Figure(2.0, s), price_date="2025-01-01")
    rb = rent_vs_buy(hw, Catalog(hardware={"gpu-x": hw}, instances=[inst]), years=3, electricity_usd_per_kwh=0.15)
    return replace(advice, rent_buy=[rb])


def test_report_is_self_contained_and_has_every_section(advice, tmp_path):
    advice = _with_rent_buy(advice)
    ms = [Measurement(kind="train_step", device="local-cpu", precision="fp32", shape={}, flops=1e9, bytes=1e6,
                      median_s=0.2, min_s=0.19, max_s=0.22, repetitions=5, label="tiny", predicted_s=0.15)]
    path = html(report_data(advice, load_catalog(), ms), tmp_path / "report.html")
    text = path.read_text()
    assert "http://" not in text and "https://" not in text
    assert all(src.startswith("data:image/png;base64,") for src in re.findall(r'src="([^"]*)"', text))
    assert len(re.findall(r'src="data:image/png', text)) == 6  # pareto, roofline, memory, layers, measured, rent/buy
    for section in ("<h2>Ranking</h2>", "<h2>Time against cost</h2>", "<h2>Roofline with the model&#x27;s operators</h2>",
                    "<h2>Memory per device</h2>", "<h2>Time per layer</h2>", "<h2>Measured against predicted</h2>",
                    "<h2>Rent versus buy</h2>", "<h2>Assumptions</h2>", "<h3>Price sources</h3>"):
        assert section in text
    assert advice.why in text.replace("&#x27;", "'")
    # Every entry's assumptions are listed.
    for e in advice.estimates():
        for a in e.assumptions:
            assert escape(a).replace("https://", "") in text
    assert "example.com/price" in text  # a cited address stays readable, without its scheme
    assert advice.rent_buy[0].verdict in text


def test_report_without_measurements_says_how_to_get_them(advice, tmp_path):
    text = html(report_data(advise(advice.comparison), load_catalog()), tmp_path / "r.html").read_text()
    assert "No measured steps with a prediction" in text
    assert "http://" not in text and "https://" not in text


def test_plots_written_for_slides(advice, tmp_path):
    data = report_data(advice, load_catalog())
    svgs = plots(data, tmp_path / "svg", fmt="svg")
    # Rent/buy is drawn only for entries with a sourced purchase price (the RTX 4090's launch price).
    owned = {"rent_buy"} if any(r.purchase_usd for r in advice.rent_buy) else set()
    assert set(svgs) == {"pareto", "roofline", "memory", "layers"} | owned
    assert all(p.read_text().lstrip().startswith("<?xml") and "<svg" in p.read_text() for p in svgs.values())
    pngs = plots(data, tmp_path / "png", fmt="png")
    assert all(p.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" for p in pngs.values())
    with pytest.raises(Exception, match="svg or png"):
        plots(data, tmp_path, fmt="pdf")


def test_roofline_points_and_layer_times_by_hand():
    hw = load_catalog().get("nvidia-h100-sxm5-80gb")
    prof = _profile()
    d = roofline_data(prof, hw, "fp32")
    mm = [p for p in d["ops"] if p["name"] == "aten.mm.default" and p["phase"] == "forward"]
    # 2 N^3 FLOP over 12 N^2 bytes: N / 6 FLOP per byte.
    assert mm[0]["intensity_flop_per_byte"] == pytest.approx(N / 6)
    roof = min(d["peak_flops_per_s"], d["mem_bw_bytes_per_s"] * N / 6)
    assert 0 < mm[0]["achieved_flops_per_s"] < roof
    assert len(d["ops"]) == len(prof.ops) and d["ops_not_shown"] == 0
    # Per-layer times add up to the step's roofline time; optimizer ops count with their parameter's module.
    layers = layer_times(prof, hw, "fp32")
    assert set(layers) == {"blocks.0", "blocks.1"}
    total = step_time(OpArrays.from_profile(prof, "fp32"), hw, default_efficiency(hw)).total_s
    assert sum(sum(v.values()) for v in layers.values()) == pytest.approx(total)
    assert layers["blocks.0"]["optimizer"] > 0


def test_measured_data_keeps_only_predicted_steps():
    step = Measurement(kind="train_step", device="cuda:0", precision="bf16", shape={}, flops=1.0, bytes=1.0,
                       median_s=0.5, min_s=0.4, max_s=0.6, repetitions=3, label="gpt2", predicted_s=0.4)
    bench = Measurement(kind="matmul", device="cuda:0", precision="bf16", shape={"m": 1}, flops=1.0, bytes=1.0,
                        median_s=0.1, min_s=0.1, max_s=0.1, repetitions=3, predicted_s=0.1)
    unpredicted = Measurement(kind="infer_step", device="cuda:0", precision="bf16", shape={}, flops=1.0, bytes=1.0,
                              median_s=0.1, min_s=0.1, max_s=0.1, repetitions=3)
    assert measured_data([step, bench, unpredicted]) == [
        {"label": "gpt2", "kind": "train_step", "device": "cuda:0", "precision": "bf16",
         "predicted_s": 0.4, "measured_s": 0.5}]


def test_ranking_price_column_is_per_device_hour_and_wraps(advice, tmp_path):
    text = html(report_data(advise(advice.comparison), load_catalog()), tmp_path / "r.html").read_text()
    h100 = re.search(r'<tr class="[a-z]*"><td>\d+</td><td class="w">nvidia-h100-sxm5-80gb</td>.*?</tr>', text).group(0)
    # aws p5.48xlarge: $55.04/h for 8 H100s is $6.88 per device-hour; the instance follows in small text.
    assert '<td class="p">$6.88/h<br><span class=muted>aws p5.48xlarge</span></td>' in h100
    # The price cell and, at narrow widths, headers and ranges wrap (tests/e2e checks the width in a browser).
    assert "td.p{white-space:normal" in text and "th,td .muted{white-space:normal}" in text
    # A range breaks only after its dash, never between a figure and its unit.
    assert re.search(r"<span class=muted>[0-9.]+&nbsp;[a-z]+&nbsp;- [0-9.]+&nbsp;[a-z]+</span>", h100)
