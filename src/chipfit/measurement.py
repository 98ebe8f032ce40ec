"""Measurement: what really happened on a device, and the Environment that produced it.

A Measurement is one timed thing (a micro-benchmark at one size and precision, or a real
training/inference step); a run groups the Measurements taken in one Environment.
Times are per repetition (one call of the kernel or one step), in seconds.
"""

from __future__ import annotations

import datetime as _dt
import os
import platform
import socket
import subprocess
import sys
from dataclasses import asdict, dataclass, field, replace

# Kinds of measurement (Measurement.kind): micro-benchmarks matmul, conv2d, conv2d_depthwise(_backward)
# (efficiency by size and precision), copy and triad (bandwidth), overhead (seconds per tiny
# kernel); real steps train_step and infer_step, with one "op" row per profiled operator;
# collective and ddp_step from torchrun. Calibration reads all but the last two.


@dataclass(frozen=True)
class Measurement:
    """One timed kernel or step on one device.

    shape: the problem size, e.g. {"m": 1024, "n": 1024, "k": 1024} or {"elements": N}.
    flops / bytes: work of one repetition (bytes = tensor bytes read + written).
    energy_j / power_watts: per repetition and average over the timed window; None when
    nothing could be measured or estimated. energy_estimated says the number did not come
    from a counter, and power_method says how it was had.
    """

    kind: str
    device: str  # LocalDevice.id, e.g. "local-cpu", "cuda:0"
    precision: str
    shape: dict[str, int]
    flops: float
    bytes: float
    median_s: float
    min_s: float
    max_s: float
    repetitions: int
    label: str = ""  # operator or model name, e.g. "add", "resnet50"
    energy_j: float | None = None
    power_watts: float | None = None
    power_method: str = ""
    energy_estimated: bool | None = None
    predicted_s: float | None = None  # steps: chipfit's prediction for the same step
    peak_memory_bytes: int | None = None
    extra: dict = field(default_factory=dict)
    run_id: int | None = None  # set when read back from the store

    @property
    def achieved_flops_per_s(self) -> float | None:
        """FLOP/s at the median time; None for kernels that do no arithmetic to speak of."""
        return self.flops / self.median_s if self.flops and self.median_s > 0 else None

    @property
    def achieved_bytes_per_s(self) -> float | None:
        return self.bytes / self.median_s if self.bytes and self.median_s > 0 else None

    @property
    def spread(self) -> float | None:
        """(max - min) / median: how noisy the repetitions were; None for one repetition (no spread to tell)."""
        if self.repetitions < 2 or not self.median_s > 0:
            return None
        return (self.max_s - self.min_s) / self.median_s

    def with_run(self, run_id: int) -> Measurement:
        return replace(self, run_id=run_id)

    def to_dict(self) -> dict:
        return asdict(self) | {
            "achieved_flops_per_s": self.achieved_flops_per_s,
            "achieved_bytes_per_s": self.achieved_bytes_per_s,
            "spread": self.spread,
        }


def _chipfit_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("chipfit")
    except PackageNotFoundError:
        return ""


def git_commit(path: str | os.PathLike | None) -> str:
    """HEAD commit of the git checkout holding `path`, or '' when there is none."""
    if path is None:
        return ""
    folder = path if os.path.isdir(path) else os.path.dirname(os.path.abspath(path))
    try:
        out = subprocess.run(
            ["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5
        )
    except (OSError, subprocess.SubprocessError):
        return ""
    return out.stdout.strip() if out.returncode == 0 else ""


@dataclass(frozen=True)
class Environment:
    """Where and with what a run was taken; enough to tell two runs apart later."""

    device: str  # LocalDevice.id
    device_name: str
    hardware_id: str  # catalog entry the device matched, or the built one ("local-cpu")
    threads: int  # torch.get_num_threads() during the run
    hostname: str
    platform: str
    python_version: str
    torch_version: str
    chipfit_version: str
    created_at: str  # ISO 8601, UTC
    git_commit: str = ""  # of the model code, when it lives in a git checkout
    extra: dict = field(default_factory=dict)

    @classmethod
    def capture(
        cls,
        device: str,
        device_name: str = "",
        hardware_id: str = "",
        model_path: str | os.PathLike | None = None,
        extra: dict | None = None,
    ) -> Environment:
        """The environment of this process now (imports torch), with the machine's load (trust.machine_load)
        in extra["load"]."""
        import torch

        from .trust import machine_load

        return cls(
            device=device,
            device_name=device_name,
            hardware_id=hardware_id or device,
            threads=torch.get_num_threads(),
            hostname=socket.gethostname(),
            platform=platform.platform(),
            python_version=sys.version.split()[0],
            torch_version=torch.__version__,
            chipfit_version=_chipfit_version(),
            created_at=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
            git_commit=git_commit(model_path),
            extra={"load": machine_load(), **(extra or {})},
        )

    def to_dict(self) -> dict:
        return asdict(self)
