"""Inference on 1 to 1024 devices: every zoo model predicts (no crash) with finite figures.

Data-parallel inference runs independent replicas, so no entry needs an interconnect figure for it;
the step time of a replica at its share of the batch stays the step of one device.
"""

import math

import pytest

from chipfit.catalog import load_catalog
from chipfit.predict import Plan, predict
from chipfit.workload import profile, zoo
from chipfit.workload.workload import Workload
from chipfit.workload.zoo_vision_more import BUILDERS as VISION_MORE  # traced under `pytest -m slow` here

# One of each kind: linked GPU, GPU without a sourced link, XLA-compiled TPU, CPU.
HARDWARE = ("nvidia-h100-sxm5-80gb", "nvidia-l4", "google-tpu-v5e", "amd-epyc-9654")
DEVICES = (1, 2, 3, 8, 64, 1024)


@pytest.fixture(scope="module")
def catalog():
    return load_catalog(())


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow)
                                  if zoo.ZOO[n].task == "text-to-image" or n in VISION_MORE else n
                                  for n in sorted(zoo.ZOO)])  # text-to-image: 5-40 s a trace
def test_every_zoo_model_infers_on_1_to_1024_devices(name, catalog):
    seq = 16 if zoo.get(name).default_seq_len else None
    prof = profile(name, mode="infer", batch=1, seq_len=seq)
    for hw_id in HARDWARE:
        hw = catalog.get(hw_id)
        one = None
        for devices in DEVICES:
            job = Workload(model=name, mode="infer", batch=devices, seq_len=seq)
            est = predict(prof, hw, job, Plan(devices=devices))
            assert not est.excluded_reason, (hw_id, devices, est.excluded_reason)
            assert est.devices == devices
            assert math.isfinite(est.step_time_s) and est.step_time_s > 0
            one = one or est
            # Replicas do not talk: a replica's step is one device's step, its memory one device's.
            assert est.step_time_s == pytest.approx(one.step_time_s)
            assert est.memory_per_device_bytes == pytest.approx(one.memory_per_device_bytes)
            if devices > 1:
                assert f"{devices} independent replicas" in " ".join(est.assumptions)
