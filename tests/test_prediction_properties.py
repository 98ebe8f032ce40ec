"""Property tests (hypothesis): predictions are finite, non-negative, and move the way physics says.

More data takes longer and costs more, a longer sequence or a larger batch does not make a step
faster, more devices under ZeRO do not hold more per device, and more generated tokens take longer.
The profiles are analytic transformers (workload.llm), so each example is a fast loop, no trace.
"""

import math

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from chipfit.catalog import load_catalog
from chipfit.predict import Plan, predict
from chipfit.predict.decode import predict_inference
from chipfit.workload.llm import TransformerSpec, profile_spec
from chipfit.workload.workload import Workload

CATALOG = load_catalog()
HARDWARE = ["nvidia-h100-sxm5-80gb", "google-tpu-v5e", "amd-instinct-mi300x", "amd-epyc-9654", "nvidia-l4"]
NO_LESS = 1 - 1e-9  # "not less", up to floating-point rounding of equal figures
SETTINGS = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])

specs = st.builds(
    lambda layers, heads, head_dim, ffn_mult, vocab: TransformerSpec(
        layers=layers, hidden=heads * head_dim, heads=heads, kv_heads=heads, ffn=ffn_mult * heads * head_dim,
        vocab=vocab),
    st.integers(1, 48), st.sampled_from([1, 2, 4, 8, 16]), st.sampled_from([16, 32, 64, 128]),
    st.integers(1, 4), st.integers(100, 64_000))
hardware = st.sampled_from(HARDWARE).map(CATALOG.get)
precisions = st.sampled_from(["fp32", "bf16"])


def figures(est) -> dict:
    return {k: v for k, v in {
        "step_time_s": est.step_time_s, "total_time_s": est.total_time_s, "memory": est.memory_per_device_bytes,
        "energy_kwh": est.energy_kwh, "co2_kg": est.co2_kg, "cost_usd": est.cost_usd,
        "compute_s": est.compute_s, "memory_s": est.memory_s, "communication_s": est.communication_s,
        **{f"low.{k}": v for k, v in est.low.items()}, **{f"high.{k}": v for k, v in est.high.items()},
    }.items() if v is not None}


def job(spec, hw, *, mode="train", batch=1, seq=128, samples=None, precision="bf16", devices=1, zero=0):
    prof = profile_spec(spec, mode=mode, batch=batch, seq_len=seq, precision=precision)
    work = Workload(model="t", mode=mode, batch=batch * devices, seq_len=seq, samples=samples, precision=precision)
    return predict(prof, hw, work, Plan(devices=devices, zero_stage=zero))


@SETTINGS
@given(specs, hardware, st.sampled_from(["train", "infer"]), st.integers(1, 64), st.integers(1, 4096),
       st.floats(1, 1e12), precisions, st.sampled_from([1, 2, 8, 64]))
def test_every_figure_is_finite_and_not_negative(spec, hw, mode, batch, seq, samples, precision, devices):
    est = job(spec, hw, mode=mode, batch=batch, seq=seq, samples=samples, precision=precision, devices=devices)
    if est.excluded_reason:
        return
    for name, value in figures(est).items():
        assert math.isfinite(value) and value >= 0, (name, value)
    assert est.low["total_time_s"] <= est.total_time_s <= est.high["total_time_s"]


@SETTINGS
@given(specs, hardware, st.floats(1, 1e9), st.floats(1.01, 1e3))
def test_more_data_takes_longer_and_costs_more(spec, hw, samples, factor):
    small, large = (job(spec, hw, samples=s, batch=8) for s in (samples, samples * factor))
    if small.excluded_reason:
        return
    assert large.total_time_s > small.total_time_s
    for name in ("energy_kwh", "co2_kg", "cost_usd"):
        a, b = getattr(small, name), getattr(large, name)
        if a is not None:
            assert b >= a * NO_LESS, name
    assert large.step_time_s == pytest.approx(small.step_time_s)


@SETTINGS
@given(specs, hardware, st.integers(16, 2048), st.integers(2, 4), st.sampled_from(["train", "infer"]))
def test_a_longer_sequence_is_no_faster_and_holds_no_less(spec, hw, seq, factor, mode):
    short, long = (job(spec, hw, mode=mode, seq=s) for s in (seq, seq * factor))
    if short.excluded_reason:
        return
    assert long.step_time_s >= short.step_time_s * NO_LESS
    assert long.memory_per_device_bytes >= short.memory_per_device_bytes * NO_LESS


@SETTINGS
@given(specs, hardware, st.integers(1, 32), st.integers(2, 8), st.sampled_from(["train", "infer"]))
def test_a_larger_batch_is_no_faster_per_step(spec, hw, batch, factor, mode):
    small, large = (job(spec, hw, mode=mode, batch=b, seq=256) for b in (batch, batch * factor))
    if small.excluded_reason:
        return
    assert large.step_time_s >= small.step_time_s * NO_LESS
    assert large.memory_per_device_bytes >= small.memory_per_device_bytes * NO_LESS


@SETTINGS
@given(specs, st.sampled_from(["nvidia-h100-sxm5-80gb", "google-tpu-v5e", "amd-instinct-mi300x"]).map(CATALOG.get),
       st.integers(1, 3), st.sampled_from([2, 4, 8, 16]))
def test_more_devices_under_zero_hold_no_more_each(spec, hw, zero, devices):
    few, many = (job(spec, hw, batch=2, devices=d, zero=zero) for d in (devices, devices * 2))
    if few.excluded_reason or many.excluded_reason:
        return
    assert many.memory_per_device_bytes * NO_LESS <= few.memory_per_device_bytes


@SETTINGS
@given(specs, st.sampled_from(HARDWARE[:3]).map(CATALOG.get), st.integers(1, 16), st.integers(1, 2048),
       st.integers(1, 512), st.integers(2, 4))
def test_serving_more_tokens_takes_longer(spec, hw, batch, prompt, generated, factor):
    a = predict_inference(spec, hw, batch=batch, prompt_tokens=prompt, generated_tokens=generated)
    b = predict_inference(spec, hw, batch=batch, prompt_tokens=prompt, generated_tokens=generated * factor)
    if a.excluded_reason or b.excluded_reason:
        return
    assert b.total_s > a.total_s
    assert b.kv_cache_bytes >= a.kv_cache_bytes * NO_LESS
    for value in (a.total_s, a.time_to_first_token_s, a.tokens_per_s, a.memory_per_device_bytes):
        assert math.isfinite(value) and value > 0
