"""chipfit: which hardware should a deep-learning job run on, and what will it cost?

    import chipfit
    p = chipfit.profile("resnet50", mode="train", batch=64)              # -> Profile
    c = chipfit.compare("resnet50", batch=256, samples=1281167, epochs=90)  # -> Comparison
    c.to_dict()                                                           # the JSON of `compare --json`
    a = chipfit.advise("resnet50", samples=1281167, epochs=90, deadline="2d", budget=2000)

The parameters are the command line's options (`--class` is hw_class, `--no-local` is local=False,
`--catalog DIR` is catalog=[DIR]); what is left out takes the default rule of chipfit.api.Job.
Each function builds a Job and calls the use case in chipfit.api.
"""

from __future__ import annotations

__version__ = "0.1.0"

from typing import Sequence

from .catalog import load_catalog
from .errors import ChipfitError

__all__ = ["ChipfitError", "advise", "compare", "load_catalog", "plan", "profile", "report", "__version__"]


def _run(use_case: str, catalog: Sequence[str], db: str | None, fields: dict, **options):
    """Build the Job of `fields`, open the store (the default one only if it exists) and run `use_case`."""
    import contextlib

    from . import api
    from .api.job import Constraints, Job, conditions, parse_duration
    from .store import Store, default_db_path

    limits = {k: fields.pop(k) for k in ("deadline", "budget", "energy", "co2", "where", "single_device", "objective",
                                         "buy", "years", "electricity", "utilisation") if k in fields}
    buy = limits.get("buy", False)
    constraints = Constraints(
        deadline_s=parse_duration(limits["deadline"]) if limits.get("deadline") else None,
        budget_usd=limits.get("budget"), energy_kwh=limits.get("energy"), co2_kg=limits.get("co2"),
        where=limits.get("where", "any"), single_device=limits.get("single_device", False),
        objective=limits.get("objective", "time"), buy_years=limits.get("years") if buy else None,
        electricity_usd_per_kwh=limits.get("electricity") if buy else None,
        utilisation=limits.get("utilisation", 1.0))
    env = conditions(fields.pop("pue", None), fields.pop("grid", None))
    shapes = tuple((k, tuple(v)) for k, v in (fields.pop("input", None) or {}).items())
    hardware = fields.pop("hardware", None) or ()
    job = Job(**fields, hardware=(hardware,) if isinstance(hardware, str) else tuple(hardware), input_shapes=shapes,
              constraints=constraints, conditions=env)
    store = Store(db) if db or default_db_path().exists() else contextlib.nullcontext(None)
    with store as opened:
        return getattr(api, use_case)(job, load_catalog(catalog), opened, **options)


def profile(model, *, mode: str | None = None, batch: int | None = None, seq: int | None = None,
            precision: str | None = None, optimizer: str = "adamw", input: dict | None = None,
            seq_len: int | None = None):
    """Trace one step of `model` (zoo name, 'package.module:factory' or nn.Module) on fake tensors: `chipfit profile`.
    `seq_len` is the older name of `seq`."""
    from .api.job import Job
    from .api.profiling import prepared, profile_job

    shapes = tuple((k, tuple(v)) for k, v in (input or {}).items())
    job = prepared(Job(model=model, mode=mode, batch=batch, seq=seq or seq_len, precision=precision,
                       optimizer=optimizer, input_shapes=shapes), "profile")
    return profile_job(job, job.batch)


def compare(model=None, *, spec: str | None = None, mode: str | None = None, batch: int | None = None,
            seq: int | None = None, prompt: int | None = None, generate: int | None = None,
            samples: float | None = None, epochs: float = 1.0, tokens: float | None = None,
            precision: str | None = None, optimizer: str = "adamw", devices: int = 1, hw_class: str | None = None,
            hardware: Sequence[str] | str | None = None, framework: str | None = None, network: str | None = None,
            pue: float | None = None, grid: float | None = None, input: dict | None = None, local: bool = True,
            catalog: Sequence[str] = (), db: str | None = None, seq_len: int | None = None,
            lora: int | None = None, lora_targets: str | None = None, lora_base: str | None = None):
    """Profile `model` (or the transformer `spec`) and rank every catalog entry for the job: `chipfit compare`.
    Returns a chipfit.comparison.Comparison. `seq_len` is the older name of `seq`; `lora` (a rank) fine-tunes
    LoRA adapters on a frozen base (docs/finetune.md)."""
    fields = dict(model=model, spec=spec, mode=mode, batch=batch, seq=seq or seq_len, prompt=prompt, generate=generate,
                  samples=samples, epochs=epochs, tokens=tokens, precision=precision, optimizer=optimizer,
                  lora=lora, lora_targets=lora_targets, lora_base=lora_base,
                  devices=devices, hw_class=hw_class, hardware=hardware, framework=framework, network=network,
                  pue=pue, grid=grid, input=input, local=local)
    return _run("compare", catalog, db, fields)


def advise(model, *, mode: str | None = None, batch: int | None = None, seq: int | None = None,
           samples: float | None = None, epochs: float = 1.0, tokens: float | None = None,
           precision: str | None = None, optimizer: str = "adamw", devices_list: Sequence[int] = (1, 8, 64),
           hw_class: str | None = None, framework: str | None = None, deadline: str | None = None,
           budget: float | None = None, energy: float | None = None, co2: float | None = None, where: str = "any",
           single_device: bool = False, objective: str = "time", buy: bool = False, years: float = 3.0,
           electricity: float | None = None, utilisation: float = 1.0, pue: float | None = None,
           grid: float | None = None, input: dict | None = None, catalog: Sequence[str] = (), db: str | None = None):
    """Rank hardware and device counts under the constraints, with rent versus buy (`buy`): `chipfit advise`.
    Returns a chipfit.advise.Advice."""
    fields = dict(model=model, mode=mode, batch=batch, seq=seq, samples=samples, epochs=epochs, tokens=tokens,
                  precision=precision, optimizer=optimizer, device_counts=tuple(devices_list), hw_class=hw_class,
                  framework=framework, deadline=deadline, budget=budget, energy=energy, co2=co2, where=where,
                  single_device=single_device, objective=objective, buy=buy, years=years, electricity=electricity,
                  utilisation=utilisation, pue=pue, grid=grid, input=input)
    return _run("advise", catalog, db, fields)


def report(model, *, mode: str | None = None, batch: int | None = None, seq: int | None = None,
           samples: float | None = None, epochs: float = 1.0, tokens: float | None = None,
           precision: str | None = None, optimizer: str = "adamw", devices_list: Sequence[int] = (1, 8, 64),
           hw_class: str | None = None, framework: str | None = None, deadline: str | None = None,
           budget: float | None = None, objective: str = "time", catalog: Sequence[str] = (), db: str | None = None):
    """The advice and every plot's data (chipfit.api.ReportData); draw it with chipfit.report.html.html."""
    fields = dict(model=model, mode=mode, batch=batch, seq=seq, samples=samples, epochs=epochs, tokens=tokens,
                  precision=precision, optimizer=optimizer, device_counts=tuple(devices_list), hw_class=hw_class,
                  framework=framework, deadline=deadline, budget=budget, objective=objective)
    return _run("report", catalog, db, fields)


def plan(model=None, *, hardware: str, spec: str | None = None, tokens: float | None = None,
         batch: int | None = None, seq: int | None = None, precision: str | None = None,
         max_devices: int | None = None, devices: int | None = None, deadline: str | None = None,
         budget: float | None = None, objective: str = "time", network: str | None = None, top: int = 5,
         lora: int | None = None, lora_targets: str | None = None, lora_base: str | None = None,
         catalog: Sequence[str] = ()):
    """The best parallel plans for training a transformer on one kind of hardware: `chipfit plan`.
    `lora` (a rank) fine-tunes LoRA adapters on a frozen base (`--lora`, docs/finetune.md).
    Returns a chipfit.api.PlanResult."""
    fields = dict(model=model, spec=spec, mode="train", tokens=tokens, batch=batch, seq=seq, precision=precision,
                  max_devices=max_devices, devices=devices, hardware=hardware, deadline=deadline, budget=budget,
                  objective=objective, network=network, lora=lora, lora_targets=lora_targets, lora_base=lora_base)
    return _run("plan", catalog, None, fields, top=top)
