"""Real steps on a tiny model: the optimizer really runs, the profile's work is carried, errors."""

from __future__ import annotations

import pytest
import torch

from chipfit.errors import ChipfitError
from chipfit.measure.devices import LocalDevice
from chipfit.measure.power import EnergyMeter, EnergyReading
from chipfit.measure.steps import measure_step
from chipfit.workload.profile import Profile
from tests.fixtures.user_models import Tiny

CPU = LocalDevice(id="local-cpu", kind="cpu", name="test CPU", vendor="", torch_device="cpu",
                  precisions=("fp32", "bf16"), memory_bytes=2**30)



class CountingMeter(EnergyMeter):
    method, estimated = "test counter", False

    def stop(self) -> EnergyReading:
        return EnergyReading(6.0, 1.5, self.method, False)


def _profile(param_bytes: int) -> Profile:
    return Profile(model="Tiny", mode="train", batch=2, seq_len=None, dtype="fp32", ops=[], params=36,
                   trainable_params=36, param_bytes=param_bytes, activation_bytes=0)


def test_train_step_runs_the_optimizer_and_records_everything():
    model = Tiny()
    before = model.fc.weight.detach().clone()
    seen = []
    m = measure_step(model, CPU, mode="train", batch=2, warmup=1, repetitions=3, predicted_s=0.5,
                     profile=_profile(144), meter=CountingMeter(),
                     progress=lambda done, total, label: seen.append((done, total)))
    assert not torch.equal(model.fc.weight, before)  # 4 AdamW steps moved the weights
    assert (m.kind, m.device, m.label, m.precision, m.shape) == (
        "train_step", "local-cpu", "Tiny", "fp32", {"batch": 2, "seq_len": 0})
    assert m.repetitions == 3 and 0 < m.min_s <= m.median_s <= m.max_s
    assert (m.flops, m.bytes, m.predicted_s) == (0.0, 0.0, 0.5)  # the empty profile's work
    assert m.energy_j == pytest.approx(2.0)  # 6 J over 3 timed steps
    assert (m.power_watts, m.energy_estimated) == (4.0, False)
    assert m.peak_memory_bytes is None and m.extra["process_peak_rss_bytes"] > 0
    assert m.extra["optimizer"] == "adamw" and m.extra["amp"] is False
    assert seen == [(0, 4), (1, 4), (2, 4), (3, 4), (4, 4)]


def test_bf16_inference_casts_the_model():
    model = Tiny()
    m = measure_step(model, CPU, mode="infer", batch=3, precision="bf16", warmup=0, repetitions=2)
    assert model.fc.weight.dtype == torch.bfloat16
    assert (m.kind, m.precision, m.repetitions, m.energy_j) == ("infer_step", "bf16", 2, None)
    assert m.power_method.startswith("unavailable")


def test_bad_requests_are_user_errors():
    with pytest.raises(ChipfitError, match="needs at least 4.0 GiB"):
        measure_step(Tiny(), CPU, profile=_profile(2**30))  # 4 x 1 GiB of weights and state > 1 GiB
    with pytest.raises(ChipfitError, match="repetitions"):
        measure_step(Tiny(), CPU, repetitions=0)
    with pytest.raises(ChipfitError, match="Precision"):
        measure_step(Tiny(), CPU, precision="fp4")
    with pytest.raises(ChipfitError, match="Unknown model"):
        measure_step("resnet5O", CPU)


def test_a_step_keeps_its_mean_beside_its_median(monkeypatch):
    """Timed steps of 0.1, 0.2 and 0.6 s: median 0.2 s, mean 0.3 s (what a run of such steps takes per step)."""
    import chipfit.measure.steps as steps

    times = iter([[0.1], [0.2], [0.6]])
    monkeypatch.setattr(steps, "time_calls", lambda step, device, inner, reps: next(times))
    m = measure_step(Tiny(), CPU, mode="infer", batch=1, warmup=0, repetitions=3)
    assert (m.median_s, m.extra["mean_s"]) == (pytest.approx(0.2), pytest.approx(0.3))
