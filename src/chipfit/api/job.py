"""Job: what the user asks, with its defaults and checks in one place.

Every shell (the CLI, the Python API, the dashboard) builds a Job and hands it to a use case
(chipfit.api). The checks here need no model and no torch, so a wrong argument is refused at
once; the defaults that depend on the model (is it an LLM, a graph file, what context does it
have) are applied by `Job.with_defaults`, whose rules are stated in the job's `defaults`.
Pure: no torch, no I/O.
"""

from __future__ import annotations

import math
import re
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from ..catalog.schema import CLASSES, FRAMEWORKS
from ..errors import ArgumentError, ChipfitError, closest
from ..predict import Conditions
from ..predict.parallel import NETWORKS
from ..workload.lora import BASE_BYTES, LoRA, parse_targets
from ..workload.workload import OPTIMIZERS, PRECISION_CHOICES, Workload

MODES = ("train", "infer")
WHERE = ("any", "cloud", "local")
OBJECTIVES = ("time", "cost", "energy", "device_hours")
# What each use case answers; the batch and precision defaults differ by the question.
QUESTIONS = ("compare", "advise", "plan", "profile", "measure")

# Per-device training batch when none is given: 32 samples per worker, the ImageNet recipe of
# Goyal et al. 2017 ("Accurate, Large Minibatch SGD", sec. 5: n = 32 per GPU, 256 on 8 GPUs);
# BERT's pre-training batch is the same 256 sequences (Devlin et al. 2019, sec. A.2).
TRAIN_BATCH_PER_DEVICE = 32
# Global batch of a plan search when none is given: about 4M tokens per step, the LLaMA recipe
# (Touvron et al. 2023, Table 2: 4M-token batches for every model size).
PLAN_BATCH_TOKENS = 4 * 2**20
# A transformer given only by its sizes has no context length of its own; this is the most
# common one among the published runs in ../shared/validation/published.csv.
SPEC_DEFAULT_SEQ = 2048
# Files a runtime loads as stored (ONNX Runtime, Caffe): inference at the file's fp32.
GRAPH_FILES = (".onnx", ".prototxt")
# Upper bounds that catch typing slips (1e400 is inf; a billion devices is no job).
MAX_COUNT = 2**31 - 1
MAX_DEVICES = 1_048_576

_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """'90d', '12h', '45m', '3600s' or plain seconds -> seconds."""
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([smhdw]?)\s*", str(text).lower())
    if not m:
        raise ArgumentError(f"Duration {text!r} is not understood; write it like 90d, 12h, 45m or 3600s.")
    value = float(m.group(1)) * _DURATION[m.group(2) or "s"]
    if not 0 < value < math.inf:
        raise ArgumentError(f"Duration {text!r} is not a positive finite time; give a deadline after now, like 90d.")
    return value


def _positive(value, option: str, what: str, *, whole: bool = False, minimum: float = 0.0,
              maximum: float = math.inf, inclusive: bool = False) -> None:
    """Refuse `value` unless it is a finite number above `minimum` (or at it, `inclusive`) and at most `maximum`."""
    if value is None:
        return
    kind = "whole number" if whole else "number"
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (whole and value != int(value)):
        raise ArgumentError(f"{option} {value!r} is not a {kind}; give {what}.")
    if not math.isfinite(value):
        raise ArgumentError(f"{option} {value} is not a finite number; give {what}.")
    low_ok = value >= minimum if inclusive else value > minimum
    if not low_ok or value > maximum:
        raise ArgumentError(f"{option} {value:g} is out of range; give {what}.")


def _known(value, what: str, choices) -> None:
    if value is not None and value not in choices:
        raise ArgumentError(f"{what} {value!r} is not known.{closest(str(value), choices)} "
                          f"Use one of: {', '.join(choices)}.")


def conditions(pue: float | None = None, grid_kg_per_kwh: float | None = None) -> Conditions:
    """Conditions with the defaults for what is not given, each figure checked (--pue, --grid)."""
    _positive(pue, "--pue", "a data-centre PUE from 1.0 to 3.0", minimum=1.0, inclusive=True, maximum=3.0)
    _positive(grid_kg_per_kwh, "--grid", "a grid intensity from 0 to 2 kg CO2 per kWh", inclusive=True, maximum=2.0)
    return Conditions(pue=Conditions.pue if pue is None else pue,
                      grid_kg_per_kwh=Conditions.grid_kg_per_kwh if grid_kg_per_kwh is None else grid_kg_per_kwh)


@dataclass(frozen=True)
class Constraints:
    """The user's limits and how to rank: advise drops what breaks them; plan searches within them.
    `buy_years` with `electricity_usd_per_kwh` adds rent versus buy."""

    deadline_s: float | None = None
    budget_usd: float | None = None
    energy_kwh: float | None = None
    co2_kg: float | None = None
    where: str = "any"
    single_device: bool = False
    objective: str = "time"
    buy_years: float | None = None
    electricity_usd_per_kwh: float | None = None
    utilisation: float = 1.0

    def __post_init__(self) -> None:
        _positive(self.deadline_s, "--deadline", "a time after now, like 90d or 12h")
        _positive(self.budget_usd, "--budget", "a positive number of US dollars")
        _positive(self.energy_kwh, "--energy", "a positive number of kWh")
        _positive(self.co2_kg, "--co2", "a positive number of kg CO2")
        _positive(self.buy_years, "--years", "a lifetime above 0 and at most 50 years", maximum=50)
        _positive(self.electricity_usd_per_kwh, "--electricity", "a price in USD per kWh, 0 or more", inclusive=True)
        _positive(self.utilisation, "--utilisation", "a share of the lifetime above 0 and at most 1", maximum=1)
        _known(self.where, "Where", WHERE)
        _known(self.objective, "Objective", OBJECTIVES)
        if self.buy_years is not None and self.electricity_usd_per_kwh is None:
            raise ArgumentError("--buy needs --electricity, the price you pay per kWh, to cost owned hardware.")

    def to_dict(self) -> dict:
        return asdict(self)


@dataclass(frozen=True)
class Job:
    """One question about one model: the job, the hardware to weigh, the limits and the conditions.

    `model` is a name (zoo, file, package.module:factory, hub id) or an nn.Module; `spec` instead
    gives a transformer by its sizes. `batch` is the global batch; `devices` the devices per entry
    (compare; default 1; plan: exactly this many), `device_counts` those advise weighs, `max_devices`
    the most a plan search tries. `lora` fine-tunes rank-`lora` adapters on a frozen base (workload.lora):
    on `lora_targets` (comma-separated matrix names or all-linear; default q,k,v,o), the base stored in
    `lora_base` (fp8, int8, nf4 for QLoRA; default the compute precision).
    None means "the default", filled in by `with_defaults` with the rule in `defaults`.
    """

    model: Any = None
    spec: str | None = None
    label: str | None = None  # the name results show, where not the model's own (an uploaded file)
    mode: str | None = None
    batch: int | None = None
    seq: int | None = None
    prompt: int | None = None
    generate: int | None = None
    samples: float | None = None
    epochs: float = 1.0
    tokens: float | None = None
    precision: str | None = None
    optimizer: str = "adamw"
    lora: int | None = None
    lora_targets: str | None = None
    lora_base: str | None = None
    devices: int | None = None
    device_counts: tuple[int, ...] = ()
    max_devices: int | None = None
    hw_class: str | None = None
    hardware: tuple[str, ...] = ()
    framework: str | None = None
    network: str | None = None
    input_shapes: tuple[tuple[str, tuple[int, ...]], ...] = ()
    local: bool = True
    llm: bool = False  # a decoder LLM (set by with_defaults)
    constraints: Constraints = field(default_factory=Constraints)
    conditions: Conditions = field(default_factory=Conditions)
    defaults: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        if self.batch is not None and (not isinstance(self.batch, int) or self.batch < 1):
            raise ArgumentError(f"Batch {self.batch} is not a positive number of samples; give --batch 1 or more.")
        counts = (("--batch", self.batch, "a whole number of samples per step, 1 or more"),
                  ("--seq", self.seq, "a whole number of tokens, 1 or more"),
                  ("--prompt", self.prompt, "a whole number of prompt tokens, 1 or more"),
                  ("--generate", self.generate, "a whole number of generated tokens, 1 or more"))
        for option, value, what in counts:
            _positive(value, option, what, whole=True, minimum=1, inclusive=True, maximum=MAX_COUNT)
        for option, value in (("--devices", self.devices), ("--max-devices", self.max_devices),
                              *(("--devices-list", n) for n in self.device_counts)):
            _positive(value, option, f"a whole number of devices from 1 to {MAX_DEVICES:,}", whole=True,
                      minimum=1, inclusive=True, maximum=MAX_DEVICES)
        for name in ("samples", "tokens"):
            value = getattr(self, name)
            if value is not None and isinstance(value, (int, float)) and math.isfinite(value) and value <= 0:
                raise ArgumentError(f"--{name} {value:g} leaves nothing to do; give a positive number of {name}.")
            _positive(value, f"--{name}", f"a positive number of {name}, like 1e9")
        if isinstance(self.epochs, (int, float)) and math.isfinite(self.epochs) and self.epochs <= 0:
            raise ArgumentError(f"--epochs {self.epochs:g} leaves nothing to do; give a positive number of epochs.")
        _positive(self.epochs, "--epochs", "a positive number of epochs")
        _known(self.mode, "Mode", MODES)
        _known(self.precision, "Precision", PRECISION_CHOICES)
        _known(self.optimizer, "Optimizer", OPTIMIZERS)
        _known(self.hw_class, "Hardware class", CLASSES)
        if self.serving:
            from ..predict.host import serving_framework

            try:
                serving_framework(self.framework)
            except ChipfitError as exc:
                raise ArgumentError(str(exc)) from None
        else:
            _known(self.framework, "Framework", FRAMEWORKS)
        _known(self.network, "Network", tuple(NETWORKS))
        self._check_lora()
        if self.model is not None and self.spec is not None:
            raise ArgumentError("Give a model or --spec, not both.")
        if self.serving and (self.mode == "train" or not self.prompt or not self.generate):
            raise ArgumentError("LLM serving needs --infer with both --prompt and --generate as token counts.")
        if self.serving and self.network is not None:
            raise ArgumentError("--network prices the traffic between nodes of training and batch inference; LLM "
                              "serving (--prompt, --generate) is priced within one node, so leave --network out.")

    def _check_lora(self) -> None:
        _positive(self.lora, "--lora", "the adapters' rank as a whole number of 1 or more, like 16", whole=True,
                  minimum=1, inclusive=True, maximum=MAX_COUNT)
        _known(self.lora_base, "LoRA base storage (--lora-base)", tuple(BASE_BYTES))
        if self.lora is None and (self.lora_targets is not None or self.lora_base is not None):
            raise ArgumentError("--lora-targets and --lora-base shape LoRA adapters; give --lora RANK with them.")
        if self.lora is not None and (self.mode == "infer" or self.serving):
            raise ArgumentError("--lora fine-tunes adapters, a training job; leave out --infer, --prompt and "
                                "--generate, or leave out --lora.")

    def lora_config(self) -> LoRA | None:
        """The LoRA adapters the job trains, or None for full training."""
        if self.lora is None:
            return None
        try:
            return LoRA(int(self.lora), parse_targets(self.lora_targets), self.lora_base)
        except ChipfitError as exc:
            raise ArgumentError(str(exc)) from None

    # --- what the job is -------------------------------------------------------------------
    @property
    def serving(self) -> bool:
        """LLM serving: prefill of `prompt` tokens, then `generate` tokens one by one."""
        return self.prompt is not None or self.generate is not None

    @property
    def training(self) -> bool:
        return self.mode == "train"

    @property
    def name(self) -> str:
        """The model's name as results show it."""
        if self.label is not None:
            return self.label
        if self.spec is not None:
            return self.spec
        return self.model if isinstance(self.model, str) or self.model is None else type(self.model).__name__

    @property
    def graph_file(self) -> bool:
        return isinstance(self.model, str) and self.model.lower().endswith(GRAPH_FILES)

    def workload(self) -> Workload:
        """The Workload the predictors take (after `with_defaults`)."""
        return Workload(model=self.name, mode=self.mode, batch=self.batch, seq_len=self.seq, samples=self.samples,
                        epochs=self.epochs, tokens=self.tokens, precision=self.precision, optimizer=self.optimizer,
                        prompt_tokens=self.prompt, generate_tokens=self.generate)

    def to_dict(self) -> dict:
        d = {f.name: getattr(self, f.name) for f in fields(self)}
        d["model"] = self.name if self.spec is None else None
        d["constraints"] = self.constraints.to_dict()
        d["conditions"] = asdict(self.conditions)
        d["input_shapes"] = {k: list(v) for k, v in self.input_shapes}
        return d

    # --- defaults --------------------------------------------------------------------------
    def with_defaults(self, question: str, *, llm: bool, context: int | None) -> Job:
        """This job with every None the rules below fill in, each rule used stated in `defaults`.

        `llm`: the model is a decoder LLM (a spec, or a causal LM); `context`: its own sequence length.
        """
        _known(question, "question", QUESTIONS)
        said: list[str] = []
        mode = self.mode or ("infer" if self.serving or self.graph_file else "train")
        if self.mode is None and mode == "infer" and self.graph_file:
            said.append("inference: a graph file holds no training step")
        seq = self.seq
        if self.serving:
            seq = self.prompt + self.generate
        elif seq is None:
            seq = context or (SPEC_DEFAULT_SEQ if self.spec is not None else None)
            if seq and self.spec is not None:
                said.append(f"sequence length {SPEC_DEFAULT_SEQ} assumed for the spec; set --seq")
        precision = self.precision
        if precision is None:
            rule = "llm" if llm else "file" if self.graph_file else "measure" if question == "measure" else "mixed"
            precision = "bf16" if rule in ("llm", "mixed") else "fp32"
            said.append(_PRECISION_RULES[rule])
        batch = self.batch or self._default_batch(question, mode, seq)
        if self.batch is None:
            said.append(self._batch_rule(question, mode, batch))
        devices = self.devices if question == "plan" else self.devices or 1
        return replace(self, mode=mode, seq=seq, precision=precision, batch=batch, llm=llm, devices=devices,
                       defaults=(*self.defaults, *said))

    def _default_batch(self, question: str, mode: str, seq: int | None) -> int:
        if question == "plan":
            return max(1, PLAN_BATCH_TOKENS // (seq or 1))
        if question in ("profile", "measure"):
            return 1
        per_device = TRAIN_BATCH_PER_DEVICE if mode == "train" and not self.serving else 1
        if question == "advise":
            counts = self.device_counts or (1,)
            lcm = math.lcm(*counts)
            return lcm * math.ceil(per_device * min(counts) / lcm)
        return per_device * (self.devices or 1)

    def _batch_rule(self, question: str, mode: str, batch: int) -> str:
        if question == "plan":
            return f"global batch {batch} sequences: about 4M tokens per step, the LLaMA recipe"
        if question in ("profile", "measure"):
            return "batch 1: one sample's step; set --batch"
        if mode == "train" and not self.serving:
            return (f"global batch {batch}: {TRAIN_BATCH_PER_DEVICE} samples per device, the per-GPU batch of the "
                    "ImageNet recipe (Goyal et al. 2017); set --batch")
        return f"batch {batch}: one request per device, as latency is asked; set --batch"


_PRECISION_RULES = {
    "llm": "precision bf16: LLMs are trained (mixed precision) and served in bf16; set --precision",
    "mixed": "precision bf16: training in bf16 mixed precision (fp32 master weights, as PyTorch AMP and XLA on "
             "TPUs run it) and inference in bf16, the same on every entry so the ranking is even; "
             "set --precision fp32 for plain fp32",
    "file": "precision fp32: a graph file runs as stored; set --precision",
    "measure": "precision fp32: PyTorch runs a model in fp32 unless told otherwise; set --precision",
}
