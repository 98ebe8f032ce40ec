"""Real steps: a workload's training step (forward, loss, backward, optimizer) or inference
batch, run on real random tensors of the profiled shapes, timed like the micro-benchmarks.

The step is the one the tracer profiles (workload/trace.py): training in bf16/fp16 keeps
fp32 weights and runs the forward under autocast; inference casts the model; fp8/int8 run
as bf16. The optimizer is torch's default implementation (what a user's loop runs). On a GPU the
model is built on the device (a 7B model's initialisation on the host takes minutes), and the step's
energy is read from the device's meter (power.device_meter: NVML's counter on NVIDIA GPUs) over the
timed steps, with untimed steps after them where the meter needs a longer window (power.fill_window).
"""

from __future__ import annotations

import contextlib
import resource
import statistics
import sys
from typing import Any

from ..errors import ChipfitError
from ..measurement import Measurement
from ..workload.profile import Profile
from .devices import LocalDevice
from .microbench import Progress, _sync, _tf32, time_calls
from .power import EnergyMeter, device_meter, fill_window

# Training needs weights, gradients and two AdamW moments: 4x the fp32 weights, before activations.
_TRAIN_WEIGHT_COPIES = 4


def _to(tree: Any, device, dtype=None) -> Any:
    import torch

    if isinstance(tree, torch.Tensor):
        cast = dtype if dtype is not None and tree.is_floating_point() else None
        return tree.to(device=device, dtype=cast)
    if isinstance(tree, (tuple, list)):
        return type(tree)(_to(t, device, dtype) for t in tree)
    if isinstance(tree, dict):
        return {k: _to(v, device, dtype) for k, v in tree.items()}
    return tree


def _source(model):
    from torch import nn

    from ..workload.source import UserModel, resolve

    if isinstance(model, nn.Module):
        return UserModel(type(model).__name__, lambda: model)
    return resolve(model)


def _check_fits(name: str, profile: Profile | None, mode: str, device: LocalDevice) -> None:
    if profile is None or not device.memory_bytes:
        return
    need = profile.param_bytes * (_TRAIN_WEIGHT_COPIES if mode == "train" else 1)
    if need > device.memory_bytes:
        raise ChipfitError(
            f"Model {name!r} needs at least {need / 2**30:.1f} GiB for its {mode} step but {device.name} has "
            f"{device.memory_bytes / 2**30:.1f} GiB; measure a smaller model or batch on this device."
        )


def measure_step(
    model,
    device: LocalDevice,
    *,
    mode: str = "train",
    batch: int = 1,
    seq_len: int | None = None,
    precision: str = "fp32",
    optimizer: str = "adamw",
    warmup: int = 2,
    repetitions: int = 5,
    profile: Profile | None = None,
    predicted_s: float | None = None,
    meter: EnergyMeter | None = None,
    progress: Progress | None = None,
) -> Measurement:
    """Time `repetitions` real steps of `model` (zoo name, 'package.module:factory' or an
    nn.Module with example_inputs) on `device` after `warmup` steps.

    `profile` (of the same workload) supplies the step's FLOPs and bytes and a memory check;
    `predicted_s` is stored next to the measured time. progress(done, total, label) is
    called once per step.
    """
    import torch

    from ..workload.trace import COMPUTE_DTYPES
    from ..workload.workload import Workload

    Workload(model=str(model), mode=mode, batch=batch, seq_len=seq_len, precision=precision, optimizer=optimizer)
    if warmup < 0 or repetitions < 1:
        raise ChipfitError(f"Warm-up {warmup} and repetitions {repetitions} must be >= 0 and >= 1; give --reps 1 or more.")
    source = _source(model)
    if seq_len is None:
        seq_len = source.default_seq_len
    _check_fits(source.name, profile, mode, device)
    train = mode == "train"
    dev = torch.device(device.torch_device)
    compute = COMPUTE_DTYPES[precision]
    sync = _sync(device)

    torch.manual_seed(0)
    with torch.device(dev) if device.kind != "cpu" else contextlib.nullcontext():
        net = source.build()
    if not train and compute != torch.float32:
        net = net.to(compute)
    net = net.to(dev).train(train)
    inputs, targets = source.make_batch(batch, seq_len)
    inputs = inputs if isinstance(inputs, tuple) else (inputs,)
    inputs = _to(inputs, dev, None if train else (compute if compute != torch.float32 else None))
    targets = _to(targets, dev)

    if train:
        params = [p for p in net.parameters() if p.requires_grad]
        opt = (torch.optim.AdamW(params) if optimizer == "adamw"
               else torch.optim.SGD(params, lr=1e-3, momentum=0.9))
        use_amp = compute != torch.float32

        def step():
            opt.zero_grad(set_to_none=True)
            with torch.autocast(dev.type, dtype=compute) if use_amp else contextlib.nullcontext():
                loss = source.loss(net(*inputs), targets)
            loss.backward()
            opt.step()
    else:
        def step():
            with torch.inference_mode():
                net(*inputs)

    total = warmup + repetitions
    label = f"{source.name} {mode} {precision} batch {batch}"
    times: list[float] = []
    meter = meter or device_meter(device)
    with _tf32(precision == "tf32" and device.kind == "cuda"):
        for i in range(total):
            if progress:
                progress(i, total, label)
            if i == warmup:
                sync()
                if device.kind == "cuda":
                    torch.cuda.reset_peak_memory_stats(dev)
                meter.start()
            if i < warmup:
                step()
            else:
                times += time_calls(step, device, inner=1, reps=1)
        energy_steps = repetitions + fill_window(meter, step, sync)
        reading = meter.stop()
    if progress:
        progress(total, total, label)

    peak = int(torch.cuda.max_memory_allocated(dev)) if device.kind == "cuda" else None
    extra = {"threads": torch.get_num_threads(), "optimizer": optimizer if train else "", "warmup": warmup,
             "timer": "cuda events" if device.kind == "cuda" else "perf_counter",
             "amp": train and compute != torch.float32, "mean_s": statistics.fmean(times),
             "energy_steps": energy_steps}
    if device.kind == "cpu":
        # ru_maxrss: KiB on Linux, bytes on macOS; the whole process's high-water mark
        scale = 1 if sys.platform == "darwin" else 1024
        extra["process_peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * scale
    return Measurement(
        kind=f"{mode}_step", device=device.id, precision=precision,
        shape={"batch": batch, "seq_len": seq_len or 0},
        flops=profile.flops() if profile else 0.0, bytes=float(profile.bytes()) if profile else 0.0,
        median_s=statistics.median(times), min_s=min(times), max_s=max(times), repetitions=len(times),
        label=source.name, energy_j=reading.joules / energy_steps if reading.joules is not None else None,
        power_watts=reading.watts, power_method=reading.method, energy_estimated=reading.estimated,
        predicted_s=predicted_s, peak_memory_bytes=peak, extra=extra,
    )
