"""One row of a published-runs CSV read into the inputs a prediction may use, never its `value`.

The columns are those of ../shared/validation/README.md. Cells are free text as papers and result
logs write them; each reader below takes the forms the README's rows use and says in one sentence
what it could not read:

- params: '6700000000', '70B', or a mixture of experts as 'active / total' ('37B / 671B');
- tokens_or_samples: a number of tokens ('1.4e12 (note)'), '3072 samples x 8192 tokens',
  '~35 epochs x 1,281,167 imgs', '2.5M samples', or '4.05e22 FLOPs';
- seq_len: '2048', an image size '224x224', or serving lengths 'prompt 128, output 2048';
- global_batch: '3264', '2048 seqs (4.2M tokens)', '4M tokens';
- device_count: the first number ('512 chips (128 hosts x 4)', '2 (TP2)'); 'GCDs' count half packages;
- hardware: free text for the hardware resolver, optionally with the network '(400 Gbps RoCE per GPU)';
- model and notes: a LoRA fine-tune ('LoRA', with its rank: 'lora_rank 16', 'LoRA rank 16').
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from .predict.host import SERVING_ENGINES
from .predict.parallel import GBIT, NETWORKS, Network

COLUMNS = ("id", "kind", "model", "params", "tokens_or_samples", "seq_len", "global_batch", "hardware",
           "device_count", "precision", "metric", "value", "unit")
# Sequence length where a row gives none: GPT-3's 2048 (Brown et al. 2020, Table 2.1).
DEFAULT_SEQ_LEN = 2048
# AMD's MI250X and MI250 packages each hold two graphics compute dies (AMD Instinct MI250X page); rows
# that count GCDs count half packages, while the catalog entry is the whole package.
GCDS_PER_PACKAGE = 2
_SCALE = {"": 1.0, "k": 1e3, "m": 1e6, "b": 1e9, "g": 1e9, "t": 1e12}
_NUMBER = r"~?(\d[\d,]*(?:\.\d+)?(?:e[+-]?\d+)?)\s*([kmbgt](?![a-z]))?"


class RowUnreadable(Exception):
    """A row whose inputs do not determine a prediction; the message is the reason shown."""


@dataclass(frozen=True)
class PublishedRun:
    """A published row's inputs (what a prediction may use) and its figure (what it is checked against)."""

    id: str
    kind: str
    model: str
    metric: str
    unit: str
    value: float
    params: float | None  # total (every expert)
    active_params: float | None  # what one token runs through (= params for a dense model)
    amount: tuple[str, float] | None  # ('tokens' | 'samples' | 'flops' | 'count', n)
    seq_len: int | None
    image_size: int | None
    prompt_tokens: int | None
    output_tokens: int | None
    batch_text: str
    hardware: str
    devices: int | None  # in catalog units (packages, chips)
    precision_text: str
    engine: str | None = None  # the serving engine the row's source names (serving_engine)
    lora_rank: int | None = None  # a LoRA fine-tune's adapter rank; None: every weight trains

    @property
    def serving(self) -> bool:
        return self.prompt_tokens is not None or self.output_tokens is not None

    @property
    def training(self) -> bool:
        return self.kind.startswith("train") or self.kind == "mlperf_train"

    def batch(self, seq_len: int | None) -> int | None:
        return parse_batch(self.batch_text, seq_len)


def number(text: str) -> float | None:
    """The first number in `text`, with a K/M/B/T suffix; None when there is none."""
    m = re.search(_NUMBER, (text or "").lower())
    return float(m.group(1).replace(",", "")) * _SCALE[m.group(2) or ""] if m else None


def parse_params(text: str) -> tuple[float | None, float | None]:
    """(total, active) parameters of '6700000000', '70B' or an MoE's 'active / total' ('37B / 671B')."""
    if not (text or "").strip():
        return None, None
    parts = text.split("/")
    values = [number(p) for p in parts]
    if len(parts) > 2 or None in values:
        raise RowUnreadable(f"params {text!r} is neither a number nor 'active / total'")
    if len(values) == 2:
        active, total = values
        if active > total:
            raise RowUnreadable(f"params {text!r} gives more active than total parameters; write 'active / total'")
        return total, active
    return values[0], values[0]


def parse_amount(text: str) -> tuple[str, float] | None:
    """('tokens' | 'samples' | 'flops' | 'count', n) of tokens_or_samples; None when empty."""
    t = (text or "").lower()
    if not t.strip():
        return None
    m = re.search(_NUMBER + r"\s*epochs?\s*x\s*" + _NUMBER, t)
    if m:
        epochs = float(m.group(1).replace(",", "")) * _SCALE[m.group(2) or ""]
        return "samples", epochs * float(m.group(3).replace(",", "")) * _SCALE[m.group(4) or ""]
    m = re.search(_NUMBER + r"\s*(?:samples|seqs|sequences)\s*x\s*" + _NUMBER + r"\s*tokens", t)
    if m:
        return "tokens", number(m.group(0)) * float(m.group(3).replace(",", "")) * _SCALE[m.group(4) or ""]
    n = number(t)
    if n is None:
        raise RowUnreadable(f"tokens_or_samples {text!r} gives no number of tokens, samples or FLOPs")
    if re.search(r"^\D*" + _NUMBER + r"\s*flops", t):
        return "flops", n
    if re.search(r"^\D*" + _NUMBER + r"\s*(?:samples|images|imgs|sequences|seqs)", t):
        return "samples", n
    if re.search(r"^\D*" + _NUMBER + r"\s*tokens", t):
        return "tokens", n
    return "count", n  # a bare number: tokens for a sequence model, samples for an image model


def parse_batch(text: str, seq_len: int | None) -> int | None:
    """Global batch in sequences (or samples): '2048 seqs (4.2M tokens)', '4M tokens', '3264'."""
    if not (text or "").strip():
        return None
    m = re.search(r"([\d,]+)\s*seqs", text)
    if m:
        return int(m.group(1).replace(",", ""))
    m = re.search(r"([\d.]+\s*[kmbt]?)\s*tokens", text.lower())
    if m:
        return max(1, round(number(m.group(1)) / (seq_len or DEFAULT_SEQ_LEN)))
    n = number(text)
    if n is None or n < 1:
        raise RowUnreadable(f"global_batch {text!r} is not a batch size")
    return int(n)


def parse_lengths(text: str) -> tuple[int | None, int | None, int | None, int | None]:
    """(sequence, image side, prompt, output) from seq_len: '2048', '224x224', 'prompt 128, output 2048'."""
    t = (text or "").lower()
    prompt, output = (re.search(rf"{word}\s*~?(\d+)", t) for word in ("prompt", "output"))
    if prompt or output or "prompt" in t:
        return None, None, int(prompt.group(1)) if prompt else None, int(output.group(1)) if output else None
    image = re.match(r"\s*(\d+)\s*x\s*(\d+)", t)
    if image:
        return None, int(image.group(1)), None, None
    n = number(t)
    if t.strip() and n is None:
        raise RowUnreadable(f"seq_len {text!r} is not a sequence length, an image size or 'prompt N, output M'")
    return (int(n) if n else None), None, None, None


def parse_lora(model: str, notes: str) -> int | None:
    """The adapter rank of a row whose model or notes says LoRA ('lora_rank 16', 'LoRA rank 16'); None otherwise."""
    said = f"{model} {notes}".lower()
    if not re.search(r"\blora\b", said):
        return None
    m = re.search(r"lora[_ ]?(?:rank|r|dim)\s*[=:]?\s*(\d+)|\brank\s*[=:]?\s*(\d+)", said)
    if m is None:
        raise RowUnreadable("the row is a LoRA fine-tune but gives no adapter rank; write 'LoRA rank N' in its notes")
    return int(m.group(1) or m.group(2))


def parse_devices(text: str) -> int | None:
    """Devices in catalog units: the first number, halved for counts of GCDs."""
    if not (text or "").strip():
        return None
    n = number(text)
    if n is None or n < 1:
        raise RowUnreadable(f"device_count {text!r} is not a device count")
    per_package = GCDS_PER_PACKAGE if "gcd" in text.lower() else 1
    return max(1, int(n) // per_package)


def parse_precision(text: str) -> str:
    """The matrix precision a row's precision column names; bf16 where it names none."""
    t = (text or "").lower()
    for name in ("fp8", "int8", "int4", "tf32", "fp32"):
        if name in t:
            return name
    if ("fp16" in t or t.strip() == "amp") and "bf16" not in t:
        return "fp16"  # plain "AMP" is torch.cuda.amp, whose default dtype is float16
    return "bf16"


def plan_hints(text: str) -> tuple[tuple[int, ...], tuple[bool, ...]]:
    """ZeRO stages and recomputation a row's precision column pins ('FULL_SHARD', 'act-ckpt')."""
    t = (text or "").lower()
    zero = (3,) if "full_shard" in t or "zero-3" in t or "zero3" in t else (0, 1, 2, 3)
    recompute = (False,) if "no act-ckpt" in t else (True,) if "act-ckpt" in t else (False, True)
    return zero, recompute


def row_network(hardware: str, node_size: int = 8) -> Network | None:
    """The scale-out network a hardware cell names: a rate ('(1600 Gbps RoCE)' per node, '(400 Gbps RoCE
    per GPU)', '(3x 100 Gbps RoCE scale-out per chip)'), or a system or cluster that a sourced network of
    predict.parallel.NETWORKS names in its description ('(Jean Zay)', '(DGX H100)'); None otherwise."""
    m = re.search(r"(?:(\d+)\s*x\s*)?(\d+(?:\.\d+)?)\s*gb(?:ps|/s|it/s)\b([^,;)]*)", hardware.lower())
    if m:
        gbps = float(m.group(2)) * int(m.group(1) or 1)
        per = re.search(r"per\s+(?:(\d+)\s+)?(gpus?|chips?|devices?|gcds?|nodes?)", m.group(3))
        devices = 1 if per and not per.group(1) and not per.group(2).startswith("node") else \
            int(per.group(1)) if per and per.group(1) else node_size
        return Network(f"{gbps:g} Gb/s per {devices} device(s)", gbps * GBIT / devices,
                       "the published row's hardware column")
    for part in re.findall(r"\(([^)]*)\)", hardware):
        for name in (p.strip() for p in part.split(",")):
            if not re.search(r"[a-z]", name.lower()) or len(name) < 3:
                continue
            hits = [n for n in NETWORKS.values() if re.search(rf"\b{re.escape(name)}\b", f"{n.name} {n.source}", re.I)]
            if len(hits) == 1:
                return hits[0]
    return None


def serving_engine(text: str) -> str | None:
    """The LLM serving engine a row names, with the release it gives ("NVIDIA/TensorRT-LLM ... (v0.6.1 ...)" ->
    "tensorrt-llm==0.6.1"); None where it names none."""
    for name in SERVING_ENGINES:
        if re.search(name.replace("-", r"[- ]?"), text, re.I):
            release = re.search(r"\bv(\d+\.\d+(?:\.\d+)?)\b", text)
            return f"{name}=={release.group(1)}" if release else name
    return None


def read_run(row: dict) -> PublishedRun:
    """The row's inputs, parsed; RowUnreadable names the first cell that cannot be read."""
    if None in row:
        raise RowUnreadable("the row has more cells than the header has columns; quote cells that contain commas")
    missing = [c for c in COLUMNS if c not in row]
    if missing:
        raise RowUnreadable(f"the row has no {', '.join(missing)} column")
    value = number(row["value"]) if re.fullmatch(r"\s*" + _NUMBER + r"\s*", (row["value"] or "").lower()) else None
    if value is None or value <= 0:
        raise RowUnreadable(f"value {row['value']!r} is not a positive number")
    params, active = parse_params(row["params"])
    seq, image, prompt, output = parse_lengths(row["seq_len"])
    if not row["hardware"].strip():
        raise RowUnreadable("the row names no hardware")
    return PublishedRun(
        id=row["id"], kind=row["kind"].strip(), model=row["model"].strip(), metric=row["metric"].strip(),
        unit=row["unit"], value=value, params=params, active_params=active,
        amount=parse_amount(row["tokens_or_samples"]), seq_len=seq, image_size=image, prompt_tokens=prompt,
        output_tokens=output, batch_text=row["global_batch"], hardware=row["hardware"],
        devices=parse_devices(row["device_count"]), precision_text=row["precision"],
        engine=serving_engine(f"{row['source']} {row['precision']}"),
        lora_rank=parse_lora(row["model"], row.get("notes") or ""),
    )

