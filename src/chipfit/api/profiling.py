"""What a use case needs to know about a job's model: its defaults, its profile, its transformer sizes."""

from __future__ import annotations

from dataclasses import replace
from typing import Callable

from ..catalog import resolve_hardware
from ..errors import ArgumentError, ChipfitError
from ..workload.profile import Profile
from .job import Job

# profile_job's signature: the job (defaults applied) and the per-device batch to trace at.
Profiler = Callable[[Job, int], Profile]


def model_facts(job: Job) -> tuple[bool, int | None]:
    """(is it a decoder LLM, its own context length) for the default rules of Job.with_defaults."""
    if job.spec is not None:
        return True, None
    if not isinstance(job.model, str):
        return False, None
    from ..workload.library import generative
    from ..workload.source import resolve

    source = resolve(job.model)
    return generative(job.model), getattr(source, "default_seq_len", None)


def counted(job: Job, catalog) -> Job:
    """`job` with the device count its hardware names give ("8x H100", "p5.48xlarge") where it gives none itself
    (--devices, --max-devices); names that give different counts need --devices."""
    if job.devices is not None or job.max_devices is not None or not job.hardware:
        return job
    counts = {resolve_hardware(h, catalog).devices for h in job.hardware}
    if len(counts) > 1:
        raise ArgumentError(f"The hardware names {', '.join(map(repr, job.hardware))} give different device counts; "
                            "give --devices N for all of them.")
    count = counts.pop()
    return replace(job, devices=count) if count else job


def prepared(job: Job, question: str) -> Job:
    """`job` with its defaults for `question` (compare, advise, plan, profile, measure) filled in."""
    if job.model is None and job.spec is None:
        raise ChipfitError("Name a model (a zoo name, a file or package.module:factory) or give --spec.")
    llm, context = model_facts(job)
    return job.with_defaults(question, llm=llm, context=context)


def llm_spec(job: Job):
    """The TransformerSpec of the job's --spec, or of its zoo decoder LLM."""
    from ..workload import llm

    from ..workload import library

    if job.spec is not None:
        return llm.parse_spec(job.spec)
    return library.transformer_spec(job.model)


def lora_spec(job: Job):
    """The TransformerSpec a --lora job fine-tunes, its adapters checked against it (ArgumentError)."""
    try:
        spec = llm_spec(job)
    except ChipfitError as exc:
        raise ArgumentError(f"--lora adapts the matrices of a transformer from the library or --spec; {exc}") from None
    try:
        job.lora_config().check(spec)
    except ChipfitError as exc:
        raise ArgumentError(str(exc)) from None
    return spec


def profile_job(job: Job, batch: int) -> Profile:
    """One step of the job at per-device `batch`: analytic for a spec, a served LLM or LoRA, else traced."""
    from ..workload import llm
    from ..workload import profile as trace

    if job.lora is not None:
        return llm.profile_spec(lora_spec(job), mode=job.mode, batch=batch, seq_len=job.seq,
                                precision=job.precision, optimizer=job.optimizer, lora=job.lora_config())

    if job.serving:
        # The prefill: an encoder-decoder's encoder reads the prompt and its decoder takes one start token.
        spec = llm_spec(job)
        return llm.profile_spec(spec, mode="infer", batch=batch, seq_len=1 if spec.encoder_decoder else job.prompt,
                                precision=job.precision, encoder_len=job.prompt)
    if job.spec is not None:
        prof = llm.profile_spec(llm_spec(job), mode=job.mode, batch=batch, seq_len=job.seq,
                                precision=job.precision, optimizer=job.optimizer)
        prof.notes.extend(d for d in job.defaults if d.startswith("sequence length"))
        return prof
    return trace(job.model, mode=job.mode, batch=batch, seq_len=job.seq, precision=job.precision,
                 optimizer=job.optimizer, input_shapes=dict(job.input_shapes) or None)
