"""The CUDA measurement paths with fakes (no GPU here): NVML energy in measure, GPU-sized bench and validate,
a device that is not here, the allocator option on a GPU."""

from __future__ import annotations

import sys
from types import SimpleNamespace

import pytest
import torch

from chipfit.cli import main
from chipfit.measure import devices, power
from chipfit.measure.devices import LocalDevice
from chipfit.measure.microbench import matmul_sizes, plan
from chipfit.measure.power import EnergyMeter, NvmlMeter, device_meter, fill_window
from chipfit.measure.steps import measure_step
from chipfit.measurement import Measurement
from tests.fixtures.user_models import Tiny
from tests.test_microbench import FakeCuda
from tests.test_power import FakeNvml

# A "GPU" whose tensors live on the CPU, so the CUDA code paths run with faked events, memory stats and NVML.
UUID = "5b6e2a6b-0e4f-4c1a-9a57-3e0f2d1c9b11"
FAKE_H200 = LocalDevice(id="cuda:0", kind="cuda", name="NVIDIA H200", vendor="NVIDIA", torch_device="cpu",
                        precisions=("fp32", "tf32", "bf16", "fp16", "int8"), memory_bytes=141 * 10**9,
                        details={"uuid": UUID})
CPU = LocalDevice(id="local-cpu", kind="cpu", name="CPU", vendor="", torch_device="cpu", precisions=("fp32", "bf16"))


class UuidNvml(FakeNvml):
    """FakeNvml that finds a GPU by its UUID and remembers which it was asked for."""

    def nvmlDeviceGetHandleByUUID(self, uuid):
        self.asked = uuid
        return ("handle", uuid)


@pytest.fixture
def fake_gpu(monkeypatch):
    """CUDA events, synchronize and memory stats faked; NVML with an energy counter (2.5 J between two reads)."""
    cuda = FakeCuda()
    monkeypatch.setattr(torch.cuda, "Event", cuda.Event)
    monkeypatch.setattr(torch.cuda, "synchronize", cuda.synchronize)
    monkeypatch.setattr(torch.cuda, "reset_peak_memory_stats", lambda device=None: None)
    monkeypatch.setattr(torch.cuda, "max_memory_allocated", lambda device=None: 3 * 2**30)
    nvml = UuidNvml(counter=True)
    monkeypatch.setitem(sys.modules, "pynvml", nvml)
    monkeypatch.setattr(NvmlMeter, "min_window_s", 0.05)
    return nvml


def test_measure_reads_nvml_energy_over_a_window_long_enough(fake_gpu):
    """measure_step without a meter reads the GPU's NVML counter (found by UUID, not by CUDA's index), times
    its steps with CUDA events, and runs untimed steps until the window is as long as the counter needs."""
    m = measure_step(Tiny(), FAKE_H200, mode="infer", batch=2, warmup=1, repetitions=3)
    assert fake_gpu.asked == f"GPU-{UUID}"
    assert (m.power_method, m.energy_estimated) == ("NVML total energy counter", False)
    steps = m.extra["energy_steps"]
    assert steps > 3  # 3 timed steps are far shorter than the 50 ms window: more were run for the energy
    assert m.energy_j == pytest.approx(2.5 / steps)
    assert m.repetitions == 3 and m.median_s == pytest.approx(0.004)  # each timed step spans one 4 ms event tick
    assert (m.extra["timer"], m.peak_memory_bytes) == ("cuda events", 3 * 2**30)


def test_fill_window_runs_until_the_meter_window_is_long_enough(monkeypatch):
    clock = iter(range(100))
    monkeypatch.setattr(power.time, "perf_counter", lambda: float(next(clock)))
    meter = EnergyMeter()
    meter.min_window_s = 4.0
    meter.start()  # t = 0; each elapsed() check reads the next second
    calls, syncs = [], []
    made = fill_window(meter, lambda: calls.append(1), lambda: syncs.append(1), calls_per_check=3)
    assert (made, len(calls), len(syncs)) == (9, 9, 3)  # checks at 1, 2, 3 s run a group each; at 4 s it stops
    plain = EnergyMeter()
    plain.start()
    assert fill_window(plain, lambda: calls.append(1), lambda: None) == 0  # a meter with no minimum window


def test_device_meter_uses_the_catalog_tdp_where_nvml_is_missing(monkeypatch):
    monkeypatch.setitem(sys.modules, "pynvml", None)
    hw = SimpleNamespace(tdp_watts=SimpleNamespace(value=700.0, source="NVIDIA H200 datasheet"))
    meter = device_meter(FAKE_H200, hw)
    assert isinstance(meter, power.EstimatedGpuMeter) and meter.method.startswith("estimated: TDP 700 W (NVIDIA")
    assert type(device_meter(FAKE_H200)) is EnergyMeter


def test_cuda_devices_keep_the_uuid_nvml_finds_them_by(monkeypatch):
    props = SimpleNamespace(name="NVIDIA H200", major=9, minor=0, total_memory=141 * 10**9,
                            multi_processor_count=132, uuid=UUID)
    seen = []
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    monkeypatch.setattr(torch.cuda, "get_device_properties", lambda i: props)
    monkeypatch.setattr(devices, "_nvml_details", lambda i, uuid: seen.append((i, uuid)) or {})
    (gpu,) = devices.cuda_devices()
    assert gpu.details["uuid"] == UUID and seen == [(0, UUID)]


def test_gpu_quick_bench_reaches_the_sizes_where_a_big_gpu_peaks():
    sizes = {p: [b.size for b in plan(FAKE_H200, quick=True) if b.kind == "matmul" and b.precision == p]
             for p in FAKE_H200.precisions}
    assert sizes["bf16"] == sizes["fp16"] == sizes["tf32"] == [1024, 4096, 8192, 16384]
    # A 4 GB GPU: 16384^2 x 3 operands x 2 bytes = 1.6 GB is over a quarter of it; 8192's 0.4 GB is not.
    small = LocalDevice(id="cuda:0", kind="cuda", name="small", vendor="", torch_device="cpu",
                        precisions=("fp16",), memory_bytes=4 * 10**9)
    assert matmul_sizes(small, "fp16", quick=True) == [1024, 4096, 8192]
    assert matmul_sizes(CPU, "fp32", quick=True) == [256, 1024]  # the CPU's sizes as they were
    assert matmul_sizes(CPU, "fp32") == [128, 256, 512, 1024, 2048]


def test_validate_on_a_gpu_runs_gpu_sized_bf16_cases_and_an_fp32_contrast(monkeypatch):
    import chipfit.measure.opprofile as opprofile
    import chipfit.measure.steps as steps
    import chipfit.workload as workload
    from chipfit import validate
    from chipfit.measure.opprofile import OpTimes
    from chipfit.workload.profile import Op, Profile
    from tests.test_calibrate import HW, synthetic

    gpu = validate.case_set(FAKE_H200)
    assert (gpu.precision, gpu.contrast) == ("bf16", "fp32")
    v100 = LocalDevice(id="cuda:0", kind="cuda", name="V100", vendor="", torch_device="cpu", precisions=("fp32", "fp16"))
    assert validate.case_set(v100).precision == "fp16"  # no bf16 before Ampere
    cpu_work = {(m, mode): b * (seq or 1) for m, mode, b, seq in validate.case_set(CPU).cases}
    for model, mode, batch, seq in gpu.cases:  # every GPU case has at least 8x the samples (tokens) of the CPU's
        assert batch * (seq or 1) >= 8 * cpu_work[(model, mode)]
    assert [c[0] for c in validate.case_set(FAKE_H200, quick=True).cases] == [
        "resnet18", "resnet18", "mobilenet_v2", "mobilenet_v2", "vit_b_16", "vit_b_16", "gpt2", "gpt2",
        "bert-base-uncased", "bert-base-uncased"]
    asked = []

    def fake_trace(model, **kw):
        asked.append(("trace", kw["precision"]))
        return Profile(model, kw["mode"], kw["batch"], None, kw["precision"],
                       [Op("aten.mm.default", "matmul", 1e9, 10**7, 0, "bf16", "forward", "m")], 0, 0, 0, 0)

    def fake_step(model, device, **kw):
        asked.append(("step", kw["precision"]))
        t = 0.04 if kw["precision"] == "bf16" else 0.1
        return Measurement(kind="infer_step", device=device.id, precision=kw["precision"],
                           shape={"batch": kw["batch"], "seq_len": 0}, flops=1e9, bytes=1, median_s=t, min_s=t,
                           max_s=t, repetitions=kw["repetitions"], label=model, extra={"mean_s": t})

    monkeypatch.setattr(workload, "profile", fake_trace)
    monkeypatch.setattr(steps, "measure_step", fake_step)
    monkeypatch.setattr(opprofile, "profile_ops", lambda model, device, prof, **kw: OpTimes(prof, [[0.03]], [0.04]))
    cases = (("a", "infer", 64, None), ("b", "infer", 64, None))
    v = validate.run_validation(HW, FAKE_H200, synthetic(0.75, 2e7), [], cases, 1, 1, precision="bf16",
                                contrast="fp32")
    assert asked == [("trace", "bf16")] * 2 + [("step", "bf16")] * 2 + [("step", "fp32")]
    assert [c.precision for c in v.cases] == ["bf16", "bf16"]
    assert v.bf16_speedup_measured == pytest.approx(0.1 / 0.04)  # the fp32 contrast over the bf16 case


def test_validate_model_names_a_case_or_says_which_there_are():
    from chipfit.errors import ChipfitError
    from chipfit.validate import case_set

    assert {c[0] for c in case_set(CPU, models=("gpt2",)).cases} == {"gpt2"}
    with pytest.raises(ChipfitError) as err:
        case_set(FAKE_H200, quick=True, models=("resnet50",))
    assert str(err.value) == ("--model 'resnet50' is not among the validation cases here; give one or more of "
                              "resnet18, mobilenet_v2, vit_b_16, gpt2, bert-base-uncased.")


CPU_ONLY = ("(it has local-cpu); give --device one of those (`chipfit devices` lists them) or run on a machine that "
            "has it.")


@pytest.mark.parametrize("argv, device", [
    (["measure", "resnet18", "--device", "cuda:0"], "cuda:0"),
    (["validate", "--device", "cuda:7"], "cuda:7"),
    (["bench", "--quick", "--device", "mps"], "mps"),
    (["calibrate", "--device", "cuda:0"], "cuda:0"),
])
def test_a_device_that_is_not_here_is_one_sentence_and_stores_nothing(capsys, tmp_path, monkeypatch, argv, device):
    monkeypatch.setattr(devices, "cuda_devices", lambda: [])
    monkeypatch.setattr(devices, "mps_device", lambda: [])
    db = tmp_path / "results.sqlite"
    code = main([*argv, "--db", str(db)])
    _, err = capsys.readouterr()
    assert code == 1
    assert err == f"chipfit: No device {device!r} on this machine {CPU_ONLY}\n"
    assert not db.exists()


def test_keep_freed_memory_is_refused_for_a_gpu(capsys, tmp_path, monkeypatch):
    monkeypatch.setattr(devices, "cuda_devices", lambda: [FAKE_H200])
    db = tmp_path / "results.sqlite"
    code = main(["measure", "resnet18", "--device", "cuda:0", "--keep-freed-memory", "--db", str(db)])
    _, err = capsys.readouterr()
    assert code == 1 and not db.exists()
    assert err == ("chipfit: --keep-freed-memory sets glibc's allocator for CPU measurements, but cuda:0's memory "
                   "comes from PyTorch's caching allocator, which keeps freed memory already; drop the option.\n")


def test_a_gpu_run_records_the_caching_allocator():
    from chipfit.measure.allocator import device_allocator

    assert device_allocator(FAKE_H200) == ("PyTorch's CUDA caching allocator (freed device memory kept for the next "
                                           "allocation)")



def test_a_bench_budget_that_is_not_positive_is_refused(capsys, tmp_path):
    db = tmp_path / "results.sqlite"
    code = main(["bench", "--quick", "--budget", "0", "--db", str(db)])
    assert (code, capsys.readouterr().err) == (
        1, "chipfit: --budget 0 is not a positive number of seconds; give e.g. --budget 0.4.\n")
    assert not db.exists()


def test_validate_on_a_gpu_stores_cuda_timed_steps_with_peak_memory_and_nvml_energy(fake_gpu, monkeypatch):
    """The real measure_step under validate on the (faked) GPU: every stored step is timed with CUDA events,
    carries torch.cuda.max_memory_allocated's peak and NVML's energy; the fp32 contrast step too."""
    import chipfit.measure.opprofile as opprofile
    from chipfit import validate
    from chipfit.measure.opprofile import OpTimes
    from tests.test_calibrate import HW, synthetic

    monkeypatch.setattr(opprofile, "profile_ops",
                        lambda model, device, prof, **kw: OpTimes(prof, [[1e-3] * len(prof.ops)], [0.004]))
    tiny, two = "tests.fixtures.user_models:tiny", "tests.fixtures.user_models:two_layer"
    cases = ((tiny, "infer", 4, None), (two, "infer", 4, None))
    records = []
    v = validate.run_validation(HW, FAKE_H200, synthetic(0.75, 2e7), [], cases, 2, 1, record=records.append,
                                precision="bf16", contrast="fp32")
    steps = [m for m in records if m.kind == "infer_step"]
    assert [(m.label, m.precision) for m in steps] == [(tiny, "bf16"), (two, "bf16"), (tiny, "fp32")]
    for m in steps:
        assert (m.extra["timer"], m.peak_memory_bytes, m.power_method) == (
            "cuda events", 3 * 2**30, "NVML total energy counter")
        assert m.median_s == pytest.approx(0.004)  # one 4 ms tick of the fake CUDA events per step
    assert v.bf16_speedup_measured == pytest.approx(1.0)
