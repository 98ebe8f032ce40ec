"""advise and rent-versus-buy on hand-made estimates, with values derived by hand."""

import pytest

from chipfit.advise import advise, fit_changes, pareto_front, why_wins
from chipfit.catalog import Catalog, Figure, Hardware, Instance, load_catalog
from chipfit.comparison import Comparison
from chipfit.errors import ChipfitError
from chipfit.predict import Conditions, Estimate, Plan
from chipfit.rentbuy import HOURS_PER_YEAR, rent_vs_buy
from chipfit.workload.profile import Profile
from chipfit.workload.workload import Workload

DAY = 86400.0
GIB = 2**30
H100, A100, TPU, RTX = "nvidia-h100-sxm5-80gb", "nvidia-a100-sxm4-80gb", "google-tpu-v6e", "nvidia-rtx-4090"


def est(hw, time_s, cost=None, devices=1, fits=True, mem=None, energy=None, cls="gpu", **kw):
    return Estimate(hardware=hw, hw_class=cls, devices=devices, fits=fits, memory_per_device_bytes=mem,
                    total_time_s=time_s, cost_usd=cost, energy_kwh=energy,
                    device_hours=None if time_s is None else time_s * devices / 3600, **kw)


def profile(batch=8, params=GIB, activation_bytes=8 * GIB):
    return Profile(model="m", mode="train", batch=batch, seq_len=None, dtype="fp32", ops=[], params=params,
                   trainable_params=params, param_bytes=4 * params, activation_bytes=activation_bytes)


def comparison(estimates, devices=1, batch=8, **prof):
    return Comparison(workload=Workload(model="m", batch=batch, samples=1000), plan=Plan(devices=devices),
                      profile=profile(batch // devices, **prof), estimates=estimates, conditions=Conditions())


def test_constraints_drop_entries_with_the_exact_reasons():
    ests = [
        est(H100, 10 * DAY, 2000.0),
        est(A100, 20 * DAY, 1500.0),
        est(TPU, 5 * DAY, None, cls="tpu"),
        est(RTX, 4 * DAY, 100.0, fits=False, mem=30 * GIB),
        est(A100, 12 * DAY, 1000.0),  # duplicate (hardware, devices): counted once
        est("groq-lpu", None, excluded_reason="Groq serves inference only."),
    ]
    a = advise(comparison(ests), deadline_s=15 * DAY, budget_usd=1800)
    reasons = {d.hardware: d.reason for d in a.dropped}
    assert reasons == {
        H100: "nvidia-h100-sxm5-80gb costs $2,000, over the $1,800 budget.",
        A100: "nvidia-a100-sxm4-80gb takes 20 d, past the 15 d deadline.",
        TPU: "google-tpu-v6e has no sourced price to hold against the $1,800 budget.",
        RTX: "nvidia-rtx-4090 needs 30 GiB per device but has 24 GiB, so the job does not fit.",
        "groq-lpu": "Groq serves inference only.",
    }
    assert a.winner is None and a.candidates == []
    assert a.why == ("No option meets the constraints; the fastest that runs at all: "
                     "nvidia-rtx-4090 needs 30 GiB per device but has 24 GiB, so the job does not fit.")

    both = advise(comparison([est(A100, 20 * DAY, 2000.0)]), deadline_s=15 * DAY, budget_usd=1800)
    assert both.dropped[0].reason == ("nvidia-a100-sxm4-80gb takes 20 d, past the 15 d deadline, "
                                      "and costs $2,000, over the $1,800 budget.")


def test_single_device_cloud_and_framework_filters():
    eight = comparison([est(H100, DAY, 800.0, devices=8)], devices=8)
    one = comparison([est(H100, 5 * DAY, 500.0), est("local-cpu", 50 * DAY, None, cls="cpu")])
    one.local_cpu = "local-cpu"
    a = advise([eight, one], single_device=True, where="cloud")
    assert {(d.hardware, d.devices): d.reason for d in a.dropped} == {
        (H100, 8): "nvidia-h100-sxm5-80gb x8 spreads the job over 8 devices, and it must run on one.",
        ("local-cpu", 1): "local-cpu has no cloud price in the catalog, and only cloud offerings were asked for.",
    }
    assert a.winner.hardware == H100 and a.winner.devices == 1
    local = advise([eight, one], where="local")
    assert [e.hardware for e in local.candidates] == ["local-cpu"]
    # Coral's Edge TPU runs TensorFlow Lite only.
    coral = load_catalog().get("google-edge-tpu")
    assert "pytorch" not in coral.frameworks
    f = advise(comparison([est(coral.id, DAY, None, cls="edge")]), framework="pytorch")
    assert f.dropped[0].reason == f"{coral.name} does not run pytorch (runs: {', '.join(coral.frameworks)})."


def test_pareto_front_keeps_only_undominated_entries():
    a, b, c, d = est("a", 1.0, 10.0), est("b", 2.0, 5.0), est("c", 3.0, 6.0), est("d", 4.0, 1.0)
    unpriced = est("e", 0.5, None)
    assert [e.hardware for e in pareto_front([c, d, unpriced, a, b])] == ["a", "b", "d"]
    same = est("f", 2.0, 5.0)  # equal to b: neither dominates the other
    assert {e.hardware for e in pareto_front([b, same, c])} == {"b", "f"}


def test_winner_sentence_against_the_cheapest_option():
    fast, cheap = est(H100, DAY, 1000.0, devices=8), est(A100, 4 * DAY, 100.0)
    a = advise([comparison([cheap]), comparison([fast], devices=8)])
    assert a.winner is fast
    assert a.why == ("nvidia-h100-sxm5-80gb x8 finishes in 24 h for $1,000, 4x faster than the cheapest option "
                     "that meets the constraints (nvidia-a100-sxm4-80gb, 4 d for $100).")
    assert [e.hardware for e in a.pareto] == [H100, A100]
    by_cost = advise([comparison([cheap]), comparison([fast], devices=8)], objective="cost")
    assert by_cost.winner is cheap
    assert by_cost.why == ("nvidia-a100-sxm4-80gb costs $100 and finishes in 4 d, 10x cheaper than the fastest "
                           "option that meets the constraints (nvidia-h100-sxm5-80gb x8, 24 h for $1,000).")
    assert why_wins(fast, [fast], "time") == "nvidia-h100-sxm5-80gb x8 finishes in 24 h for $1,000, the only option that meets the constraints."


def test_bad_constraints_raise_one_sentence():
    cmp = comparison([est(H100, DAY, 1.0)])
    with pytest.raises(ChipfitError, match="Budget -5 is not positive"):
        advise(cmp, budget_usd=-5)
    with pytest.raises(ChipfitError, match="Deadline 0 is not positive"):
        advise(cmp, deadline_s=0)
    with pytest.raises(ChipfitError, match="Did you mean cloud"):
        advise(cmp, where="clod")
    with pytest.raises(ChipfitError, match="electricity"):
        advise(cmp, buy_years=3)


def test_fit_changes_give_the_memory_each_change_leaves():
    # 2^30 params in fp32 with AdamW: 4 + 4 + 8 = 16 GiB of state; 8 GiB of activations at batch 8.
    # Total = (16 + 8) x 1.1 (allocator) + 0.5 GiB (runtime) = 26.9 GiB > 24 GiB on an RTX 4090.
    cmp = comparison([est(RTX, DAY, None, fits=False, mem=26.9 * GIB)])
    hw = load_catalog().get(RTX)
    changes, notes = fit_changes(cmp, hw, hw.memory_bytes.value)
    got = {c.change: round(c.memory_per_device_bytes / GIB, 6) for c in changes}
    assert got == {
        # mixed precision keeps 2 + 2 + 12 = 16 B per parameter, halves activations: (16 + 4) x 1.1 + 0.5
        "bf16 mixed precision (--precision bf16)": 22.5,
        # batch 4 halves activations as well
        "per-device batch 4 (from 8), 2 accumulation steps keeping the global batch": 22.5,
        # ZeRO-3 over 2 devices: 16 / 2 + 8 = 16 GiB of tensors: 16 x 1.1 + 0.5
        "2 devices with ZeRO stage 3 (FSDP), same per-device batch": 18.1,
    }
    assert all(c.fits for c in changes)
    assert notes == ["activation checkpointing needs the layer sizes of a transformer from the zoo; not worked out for m"]
    a = advise(cmp)
    assert a.winner is None and [c.change for c in a.changes] == list(got)


def test_rent_versus_buy_break_even_by_hand():
    s = "test source"
    hw = Hardware(id="gpu-x", name="GPU X", vendor="T", hw_class="gpu", tdp_watts=Figure(400, s),
                  price_usd=Figure(1500, s, note="list price 2024-01-01"))
    inst = Instance(id="x8", provider="aws", name="x.8", hardware="gpu-x", count=8,
                    price_usd_per_hour=Figure(16.0, s), price_date="2025-01-01", spot_usd_per_hour=Figure(6.4, s))
    cat = Catalog(hardware={"gpu-x": hw}, instances=[inst])
    rb = rent_vs_buy(hw, cat, years=1, electricity_usd_per_kwh=0.15, utilisation=0.5, pue=1.5, job_device_hours=100)
    # Electricity: 0.4 kW x 1.5 x $0.15 = $0.09 per hour of use.
    assert rb.electricity_usd_per_hour == pytest.approx(0.09)
    offers = {o.pricing: o for o in rb.offers}
    assert offers["on-demand"].usd_per_device_hour == 2.0 and offers["spot"].usd_per_device_hour == 0.8
    assert offers["on-demand"].break_even_hours == pytest.approx(1500 / 1.91)  # 785.3 h
    assert offers["spot"].break_even_hours == pytest.approx(1500 / 0.71)  # 2112.7 h
    assert rb.lifetime_hours == pytest.approx(HOURS_PER_YEAR / 2)  # 4383 h
    # Over 4383 h: spot 0.8 x 4383 = 3506.4; owned 1500 + 0.09 x 4383 = 1894.47; saving 1611.93.
    assert rb.verdict.startswith("Buying pays off after 2,113 hours of use per device against spot rental at $0.80")
    assert rb.verdict.endswith("saves $1,612 per device.")
    h, rent, buy = rb.curve()[-1]
    assert (h, rent, buy) == pytest.approx((4383.0, 3506.4, 1894.47))
    assert rb.job_costs() == pytest.approx({"on-demand": 200.0, "spot": 80.0, "owned": 1509.0})

    short = rent_vs_buy(hw, cat, years=0.1, electricity_usd_per_kwh=0.15, pue=1.5)
    assert short.verdict.startswith("Renting stays cheaper")  # 876.6 h of life < 2112.7 h
    unpriced = Hardware(id="gpu-y", name="GPU Y", vendor="T", hw_class="gpu", tdp_watts=Figure(400, s))
    none = rent_vs_buy(unpriced, Catalog(hardware={"gpu-y": unpriced}, instances=[]), years=3, electricity_usd_per_kwh=0.1)
    assert none.verdict == "The catalog has no sourced purchase price for GPU Y, so only renting can be costed."
    assert none.curve()[-1][2] is None
    with pytest.raises(ChipfitError, match="Utilisation 1.5"):
        rent_vs_buy(hw, cat, years=3, electricity_usd_per_kwh=0.1, utilisation=1.5)
