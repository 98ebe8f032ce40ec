"""Collectives and DDP scaling measured for real through torch.distributed, the way nccl-tests does.

Run one process per device under torchrun (gloo on CPUs, NCCL on CUDA GPUs):

    torchrun --nproc-per-node 2 -m chipfit.measure.distributed [--sizes 4K:64M:4] [--model resnet18 --batch 8]

Every rank times the same collective: `warmup` calls, then `reps` repetitions of `iters` calls each,
a barrier before each repetition. A repetition counts at its slowest rank's time (the collective is
done when the last rank is) and the median over repetitions is reported. With S the buffer size
(the reduced buffer; the gathered buffer for all-gather; the buffer before scattering for
reduce-scatter) and t the time of one call (nccl-tests doc/PERFORMANCE.md):

    algbw = S / t        busbw = algbw x 2(n-1)/n (all-reduce),  x (n-1)/n (all-gather, reduce-scatter)

busbw is the per-direction link bandwidth a ring reaches, the B of predict/parallel.collective_s. The
DDP step of a model is timed on rank 0 alone (the others wait), then on all ranks under
DistributedDataParallel with the same per-process batch: weak-scaling efficiency = t(1) / t(n).
Rank 0 writes one run of kind "distributed" (measurements of kind "collective" and "ddp_step").
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import re
import socket
import statistics
import sys
from dataclasses import asdict, dataclass, replace
from typing import Callable, Sequence

from ..errors import ChipfitError, closest
from ..measurement import Environment, Measurement
from ..predict.parallel import LINK_LATENCY_S, collective_s
from .devices import LocalDevice
from .microbench import _sync, time_calls

COLLECTIVES = ("all_reduce", "all_gather", "reduce_scatter")
ELEMENT_BYTES = 4  # fp32 buffers, as nccl-tests' default float
DEFAULT_SIZES = ("4K:64M:4",)
_UNITS = {"": 1, "K": 2**10, "M": 2**20, "G": 2**30}

Progress = Callable[[str], None]


def bus_factor(kind: str, world_size: int) -> float:
    """busbw / algbw for a collective over `world_size` ranks (nccl-tests doc/PERFORMANCE.md)."""
    if kind not in COLLECTIVES:
        raise ChipfitError(f"Collective {kind!r} is not measured.{closest(kind, COLLECTIVES)} Use {', '.join(COLLECTIVES)}.")
    n = world_size
    return 2 * (n - 1) / n if kind == "all_reduce" else (n - 1) / n


def algbw_bytes_per_s(size_bytes: float, seconds: float) -> float:
    """Algorithm bandwidth: the buffer size over the time of one call."""
    return size_bytes / seconds


def busbw_bytes_per_s(kind: str, size_bytes: float, seconds: float, world_size: int) -> float:
    """Bus bandwidth: algbw scaled to what each rank's link carries, comparable across rank counts."""
    return algbw_bytes_per_s(size_bytes, seconds) * bus_factor(kind, world_size)


def parse_size(text: str) -> int:
    """Bytes in '4096', '4K', '64KiB', '1M', '2G' (binary units)."""
    match = re.fullmatch(r"\s*(\d+)\s*([KMG]?)(?:i?B)?\s*", text, re.IGNORECASE)
    if not match or int(match.group(1)) <= 0:
        raise ChipfitError(f"Message size {text!r} is not a positive size; give bytes such as 4096, 64K, 1M or 1G.")
    return int(match.group(1)) * _UNITS[match.group(2).upper()]


def parse_sizes(tokens: Sequence[str]) -> list[int]:
    """Sizes from tokens 'SIZE' or 'LOW:HIGH[:FACTOR]' (LOW, LOW x FACTOR, ... up to HIGH; factor 2 by default)."""
    sizes: set[int] = set()
    for token in tokens:
        for part in token.split(","):
            bounds = part.split(":")
            if len(bounds) == 1:
                sizes.add(parse_size(bounds[0]))
                continue
            if len(bounds) > 3 or (len(bounds) == 3 and not bounds[2].strip().isdigit()):
                raise ChipfitError(f"Size range {part!r} is not LOW:HIGH or LOW:HIGH:FACTOR; give e.g. 4K:64M:4.")
            low, high = parse_size(bounds[0]), parse_size(bounds[1])
            factor = int(bounds[2]) if len(bounds) == 3 else 2
            if factor < 2 or low > high:
                raise ChipfitError(f"Size range {part!r} needs LOW <= HIGH and a whole FACTOR of 2 or more; give e.g. 4K:64M:4.")
            while low <= high:
                sizes.add(low)
                low *= factor
    return sorted(sizes)


def buffer_elements(kind: str, size_bytes: int, world_size: int) -> int:
    """fp32 elements of the full buffer: S rounded down to whole elements, and for all-gather and
    reduce-scatter to a multiple of the rank count (each rank holds an equal shard); at least one
    element per rank."""
    per = world_size if kind != "all_reduce" else 1
    return max(per, size_bytes // ELEMENT_BYTES // per * per)


@dataclass(frozen=True)
class DistContext:
    """This process in the job: its rank, the job's size, its device and the backend it talks over."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    backend: str  # "gloo" or "nccl"
    device: LocalDevice

    @property
    def nodes(self) -> int:
        return max(1, self.world_size // max(1, self.local_world_size))


def _env_int(env: dict, name: str) -> int:
    try:
        return int(env[name])
    except (KeyError, ValueError) as exc:
        raise ChipfitError(
            f"Environment variable {name} is missing or not a number; start this module with torchrun, "
            "e.g. `torchrun --nproc-per-node 2 -m chipfit.measure.distributed`."
        ) from exc


def _cpu_device() -> LocalDevice:
    from .devices import local_devices

    return local_devices()[0]


def _cuda_device(index: int) -> LocalDevice:
    from .devices import cuda_devices

    gpus = cuda_devices()
    if index >= len(gpus):
        raise ChipfitError(
            f"Local rank {index} has no GPU: this node has {len(gpus)}; give --nproc-per-node {len(gpus)} or fewer."
        )
    return gpus[index]


def init_distributed(device: str = "auto", env: dict | None = None) -> DistContext:
    """Join the torchrun job described by `env` (os.environ by default): NCCL on the local rank's GPU
    when `device` is "cuda" (or "auto" with CUDA present), else gloo on the CPU."""
    import torch
    import torch.distributed as dist

    env = os.environ if env is None else env
    if device not in ("auto", "cpu", "cuda"):
        raise ChipfitError(f"Device {device!r} is not known; give auto, cpu or cuda.")
    rank, world, local = _env_int(env, "RANK"), _env_int(env, "WORLD_SIZE"), _env_int(env, "LOCAL_RANK")
    local_world = int(env.get("LOCAL_WORLD_SIZE", world))
    use_cuda = device == "cuda" or (device == "auto" and torch.cuda.is_available())
    if use_cuda and not torch.cuda.is_available():
        raise ChipfitError("--device cuda was given but torch sees no CUDA GPU here; use --device cpu.")
    if use_cuda:
        here = _cuda_device(local)
        torch.cuda.set_device(local)
        dist.init_process_group("nccl", rank=rank, world_size=world, device_id=torch.device("cuda", local))
    else:
        here = _cpu_device()
        dist.init_process_group("gloo", rank=rank, world_size=world)
    return DistContext(rank, world, local, local_world, "nccl" if use_cuda else "gloo", here)


def _slowest(times: list[float], ctx: DistContext) -> list[float]:
    """Per repetition, the largest time any rank saw (an all-reduce MAX over the ranks)."""
    import torch
    import torch.distributed as dist

    t = torch.tensor(times, dtype=torch.float64, device=ctx.device.torch_device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return t.tolist()


def _collective_call(kind: str, elements: int, ctx: DistContext) -> Callable[[], object]:
    import torch
    import torch.distributed as dist

    dev = torch.device(ctx.device.torch_device)
    n = ctx.world_size
    if kind == "all_reduce":
        buf = torch.ones(elements, dtype=torch.float32, device=dev)
        return lambda: dist.all_reduce(buf)
    shard = torch.ones(elements // n, dtype=torch.float32, device=dev)
    full = torch.ones(elements, dtype=torch.float32, device=dev)
    # torch >= 2.12 names these *_single; older releases *_tensor (same arguments).
    if kind == "all_gather":
        gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
        return lambda: gather(full, shard)
    scatter = getattr(dist, "reduce_scatter_single", None) or dist.reduce_scatter_tensor
    return lambda: scatter(shard, full)


def time_collective(fn: Callable[[], object], ctx: DistContext, warmup: int, iters: int, reps: int) -> list[float]:
    """Seconds per call for each repetition of `iters` calls, at the slowest rank."""
    import torch.distributed as dist

    for _ in range(warmup):
        fn()
    _sync(ctx.device)()
    times = []
    for _ in range(reps):
        dist.barrier()
        times += time_calls(fn, ctx.device, inner=iters, reps=1)
    return _slowest(times, ctx)


def measure_collectives(ctx: DistContext, sizes: Sequence[int], kinds: Sequence[str] = ("all_reduce",),
                        warmup: int = 5, iters: int = 5, reps: int = 10,
                        progress: Progress | None = None) -> list[Measurement]:
    """One Measurement per collective and size (every rank gets the same list)."""
    out = []
    for kind in kinds:
        for size in sizes:
            elements = buffer_elements(kind, size, ctx.world_size)
            nbytes = elements * ELEMENT_BYTES
            if progress:
                progress(f"{kind} {nbytes} B")
            t = time_collective(_collective_call(kind, elements, ctx), ctx, warmup, iters, reps)
            median = statistics.median(t)
            out.append(Measurement(
                kind="collective", device=ctx.device.id, precision="fp32",
                shape={"size_bytes": nbytes, "elements": elements, "world_size": ctx.world_size},
                flops=0.0, bytes=float(nbytes), median_s=median, min_s=min(t), max_s=max(t), repetitions=len(t),
                label=kind,
                extra={"backend": ctx.backend, "world_size": ctx.world_size, "nodes": ctx.nodes,
                       "algbw_bytes_per_s": algbw_bytes_per_s(nbytes, median),
                       "busbw_bytes_per_s": busbw_bytes_per_s(kind, nbytes, median, ctx.world_size),
                       "bus_factor": bus_factor(kind, ctx.world_size), "warmup": warmup, "calls_per_rep": iters,
                       "timer": "cuda events" if ctx.device.kind == "cuda" else "perf_counter",
                       "rank_reduction": "max over ranks per repetition"},
            ))
    return out


# --- the alpha-beta model against the measurements -------------------------------------------

def _ring_terms(kind: str, size_bytes: float, n: int) -> tuple[float, float]:
    """(latency steps, bytes each rank sends) of a ring collective, as collective_s charges them."""
    steps = 2 * (n - 1) if kind == "all_reduce" else n - 1
    return steps, bus_factor(kind, n) * size_bytes


@dataclass(frozen=True)
class LinkFit:
    """Per-direction bandwidth and per-step latency of the link the collectives ran over."""

    bw_bytes_per_s: float
    latency_s: float
    source: str  # "given" or "fitted to this run"


def fit_link(measurements: Sequence[Measurement]) -> LinkFit | None:
    """Least-squares fit of t = steps x latency + bytes / bandwidth (relative error, both terms
    non-negative) over every collective of the run; None with fewer than two ranks. A run whose
    times do not grow with size gets an infinite bandwidth (latency only)."""
    import numpy as np

    rows = [(*_ring_terms(m.label, m.shape["size_bytes"], m.shape["world_size"]), m.median_s)
            for m in measurements if m.kind == "collective" and m.shape["world_size"] > 1]
    if not rows:
        return None
    steps, volume, t = (np.array(c, dtype=float) for c in zip(*rows))
    a = np.stack([steps / t, volume / t], axis=1)
    (latency, inv_bw), *_ = np.linalg.lstsq(a, np.ones_like(t), rcond=None)
    # Non-negative least squares in two unknowns: where the joint fit makes one term negative,
    # the best fit has that term at zero and the other fitted alone.
    if latency < 0:
        latency, inv_bw = 0.0, float(np.sum(volume / t) / np.sum((volume / t) ** 2))
    elif inv_bw <= 0:  # times did not grow with size: latency-bound at these sizes
        latency, inv_bw = float(np.sum(steps / t) / np.sum((steps / t) ** 2)), 0.0
    bandwidth = 1 / float(inv_bw) if inv_bw > 0 else float("inf")
    return LinkFit(bandwidth, float(latency), "fitted to this run")


def with_predictions(measurements: Sequence[Measurement], link: LinkFit) -> list[Measurement]:
    """The collectives with predicted_s from predict/parallel.collective_s (ring) over `link`."""
    out = []
    for m in measurements:
        predicted = collective_s(m.label, m.shape["size_bytes"], m.shape["world_size"], link.bw_bytes_per_s,
                                 link.latency_s, "ring")
        extra = m.extra | {"link_bw_bytes_per_s": link.bw_bytes_per_s, "link_latency_s": link.latency_s,
                           "link_source": link.source}
        out.append(replace(m, predicted_s=predicted, extra=extra))
    return out


# --- DDP scaling -------------------------------------------------------------------------------

def _train_step(model: str, ctx: DistContext, batch: int, seq_len: int | None, ddp: bool):
    """A training step (forward, loss, backward, AdamW) of `model`, wrapped in DDP when `ddp`."""
    import torch
    from torch.nn.parallel import DistributedDataParallel

    from ..workload.source import resolve

    source = resolve(model)
    dev = torch.device(ctx.device.torch_device)
    torch.manual_seed(0)
    net = source.build().to(dev).train()
    inputs, targets = source.make_batch(batch, seq_len if seq_len is not None else source.default_seq_len)
    inputs = tuple(x.to(dev) if isinstance(x, torch.Tensor) else x
                   for x in (inputs if isinstance(inputs, tuple) else (inputs,)))
    targets = targets.to(dev) if isinstance(targets, torch.Tensor) else targets
    params = [p for p in net.parameters() if p.requires_grad]
    grad_bytes = sum(p.numel() * p.element_size() for p in params)
    if ddp:
        net = DistributedDataParallel(net, device_ids=[ctx.local_rank] if ctx.device.kind == "cuda" else None)
    opt = torch.optim.AdamW(params)

    def step():
        opt.zero_grad(set_to_none=True)
        source.loss(net(*inputs), targets).backward()
        opt.step()

    return step, source.name, grad_bytes


def _step_times(step: Callable[[], None], ctx: DistContext, warmup: int, reps: int) -> list[float]:
    for _ in range(warmup):
        step()
    _sync(ctx.device)()
    return time_calls(step, ctx.device, inner=1, reps=reps)


def measure_ddp(ctx: DistContext, model: str, batch: int, seq_len: int | None = None, warmup: int = 2,
                reps: int = 5, link: LinkFit | None = None, progress: Progress | None = None) -> list[Measurement]:
    """Two "ddp_step" Measurements (every rank gets them): the plain step on rank 0 alone (world_size 1)
    and the DDP step on every rank (world_size n, slowest rank per step), `batch` samples per process.
    With `link`, the n-rank row carries the predicted all-reduce time of the gradients."""
    import torch.distributed as dist

    if batch < 1 or reps < 1 or warmup < 0:
        raise ChipfitError(f"DDP batch {batch}, steps {reps} and warm-up {warmup} must be >= 1, >= 1 and >= 0.")
    if progress:
        progress(f"{model} on rank 0 alone")
    single = [0.0] * reps
    if ctx.rank == 0:  # no reference to the plain step (and its model) outlives the timing
        single = _step_times(_train_step(model, ctx, batch, seq_len, ddp=False)[0], ctx, warmup, reps)
    dist.barrier()
    single = _slowest(single, ctx)  # rank 0's times reach every rank
    if progress:
        progress(f"{model} DDP on {ctx.world_size} ranks")
    step, name, grad_bytes = _train_step(model, ctx, batch, seq_len, ddp=True)
    dist.barrier()
    multi = _slowest(_step_times(step, ctx, warmup, reps), ctx)
    t1, tn = statistics.median(single), statistics.median(multi)
    shape = {"batch": batch, "seq_len": seq_len or 0}
    common = {"backend": ctx.backend, "optimizer": "adamw", "warmup": warmup, "gradient_bytes": grad_bytes,
              "timer": "cuda events" if ctx.device.kind == "cuda" else "perf_counter"}

    def row(times: list[float], world: int, extra: dict) -> Measurement:
        return Measurement(
            kind="ddp_step", device=ctx.device.id, precision="fp32", shape=shape | {"world_size": world},
            flops=0.0, bytes=0.0, median_s=statistics.median(times), min_s=min(times), max_s=max(times),
            repetitions=len(times), label=name, extra=common | {"world_size": world} | extra,
        )

    scaled = {"ddp": True, "nodes": ctx.nodes, "global_batch": batch * ctx.world_size,
              "single_process_median_s": t1, "scaling_efficiency": t1 / tn,
              "speedup": ctx.world_size * t1 / tn}
    if link is not None:
        scaled["gradient_allreduce_predicted_s"] = collective_s(
            "all_reduce", grad_bytes, ctx.world_size, link.bw_bytes_per_s, link.latency_s, "ring")
    return [row(single, 1, {"ddp": False}), row(multi, ctx.world_size, scaled)]


# --- the command -------------------------------------------------------------------------------

def table(measurements: Sequence[Measurement]) -> str:
    """The collectives like nccl-tests prints them, then the DDP rows."""
    from ..units import nbytes, seconds, si

    lines = []
    coll = [m for m in measurements if m.kind == "collective"]
    if coll:
        lines.append(f"{'collective':<15}{'size':>10}{'time':>11}{'algbw':>12}{'busbw':>12}{'predicted':>11}{'error':>8}")
        for m in coll:
            p = m.predicted_s
            error = f"{p / m.median_s - 1:+.0%}" if p else "-"
            lines.append(f"{m.label:<15}{nbytes(m.shape['size_bytes']):>10}{seconds(m.median_s):>11}"
                         f"{si(m.extra['algbw_bytes_per_s'], 'B/s'):>12}{si(m.extra['busbw_bytes_per_s'], 'B/s'):>12}"
                         f"{seconds(p) if p else '-':>11}{error:>8}")
        if coll[0].extra.get("link_source"):
            e = coll[0].extra
            lines.append(f"predicted: ring model, link {si(e['link_bw_bytes_per_s'], 'B/s')} per direction, "
                         f"{seconds(e['link_latency_s'])} per step ({e['link_source']})")
    ddp = [m for m in measurements if m.kind == "ddp_step"]
    if ddp:
        lines.append(f"{'model':<15}{'ranks':>6}{'batch/rank':>11}{'step':>11}{'efficiency':>11}{'gradients':>11}")
        for m in ddp:
            eff = m.extra.get("scaling_efficiency")
            lines.append(f"{m.label:<15}{m.shape['world_size']:>6}{m.shape['batch']:>11}{seconds(m.median_s):>11}"
                         f"{f'{eff:.0%}' if eff else '-':>11}{nbytes(m.extra['gradient_bytes']):>11}")
    return "\n".join(lines)


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="torchrun --nproc-per-node N -m chipfit.measure.distributed",
        description="All-reduce/all-gather/reduce-scatter bus bandwidth across message sizes and the DDP "
                    "step time of a model on N processes; rank 0 stores one run and prints the table.")
    p.add_argument("--sizes", nargs="+", default=list(DEFAULT_SIZES),
                   help="message sizes: 4096, 64K, 1M, or ranges LOW:HIGH[:FACTOR] (default 4K:64M:4)")
    p.add_argument("--collectives", nargs="+", default=list(COLLECTIVES), metavar="KIND",
                   help=f"any of {', '.join(COLLECTIVES)} (default all); 'none' to skip")
    p.add_argument("--warmup", type=int, default=5, help="untimed calls per size (default 5)")
    p.add_argument("--iters", type=int, default=5, help="calls per timed repetition (default 5)")
    p.add_argument("--reps", type=int, default=10, help="timed repetitions per size (default 10)")
    p.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"),
                   help="auto: NCCL on CUDA GPUs when present, else gloo on the CPU")
    p.add_argument("--model", help="also time the DDP training step of this model (zoo name or package.module:factory)")
    p.add_argument("--batch", type=int, default=8, help="samples per process for --model (default 8)")
    p.add_argument("--seq", type=int, help="sequence length for a language --model")
    p.add_argument("--steps", type=int, default=5, help="timed DDP steps (default 5, after 2 warm-up steps)")
    p.add_argument("--link-bw", type=float, metavar="BYTES_PER_S",
                   help="predict with this per-direction link bandwidth instead of the one fitted to the run")
    p.add_argument("--latency-s", type=float, default=LINK_LATENCY_S,
                   help=f"per-step latency with --link-bw (default {LINK_LATENCY_S:g} s)")
    p.add_argument("--db", help="results database (default $CHIPFIT_DB or ~/.local/share/chipfit/results.sqlite)")
    p.add_argument("--no-store", action="store_true", help="print only; write nothing")
    p.add_argument("--json", action="store_true", help="print the run as JSON")
    return p


def _checked(args: argparse.Namespace) -> tuple[list[int], list[str]]:
    kinds = [] if args.collectives == ["none"] else [k for t in args.collectives for k in t.split(",") if k]
    for k in kinds:
        bus_factor(k, 2)  # raises for an unknown collective
    if args.warmup < 0 or args.iters < 1 or args.reps < 1:
        raise ChipfitError(f"--warmup {args.warmup}, --iters {args.iters} and --reps {args.reps} must be >= 0, >= 1 "
                           "and >= 1.")
    if args.link_bw is not None and args.link_bw <= 0:
        raise ChipfitError(f"--link-bw {args.link_bw:g} is not a positive bandwidth; give bytes per second, e.g. 1e10.")
    if not kinds and not args.model:
        raise ChipfitError("Nothing to measure: --collectives none and no --model; give one of them.")
    return parse_sizes(args.sizes), kinds


@dataclass(frozen=True)
class DistributedRun:
    """What rank 0 measured and stored (run_id None with --no-store)."""

    run_id: int | None
    context: DistContext
    hardware_id: str
    environment: Environment
    link: LinkFit | None
    measurements: list[Measurement]

    def to_dict(self) -> dict:
        c = self.context
        return {"run_id": self.run_id, "world_size": c.world_size, "nodes": c.nodes, "backend": c.backend,
                "device": c.device.id, "hardware_id": self.hardware_id, "environment": self.environment.to_dict(),
                "link": None if self.link is None else asdict(self.link),
                "measurements": [m.to_dict() for m in self.measurements]}


def run(args: argparse.Namespace, ctx: DistContext, progress: Progress | None = None) -> DistributedRun | None:
    """Measure what `args` asks on this rank; rank 0 stores the run in one transaction and returns it."""
    import torch.distributed as dist

    sizes, kinds = _checked(args)
    ms = measure_collectives(ctx, sizes, kinds, args.warmup, args.iters, args.reps, progress)
    link = (LinkFit(args.link_bw, args.latency_s, "given") if args.link_bw else fit_link(ms)) if ms else None
    if link is not None:
        ms = with_predictions(ms, link)
    if args.model:
        ms += measure_ddp(ctx, args.model, args.batch, args.seq, reps=args.steps, link=link, progress=progress)
    hosts = [None] * ctx.world_size
    dist.all_gather_object(hosts, socket.gethostname())
    if ctx.rank != 0:
        return None
    from ..catalog import load_catalog
    from .devices import match_catalog

    hw_id = match_catalog(ctx.device, load_catalog(), measure_bandwidth=False).id
    env = Environment.capture(ctx.device.id, ctx.device.name, hw_id, extra={
        "world_size": ctx.world_size, "backend": ctx.backend, "nodes": ctx.nodes,
        "local_world_size": ctx.local_world_size, "hosts": hosts})
    run_id = None
    if not args.no_store:
        from ..store import Store

        with Store(args.db) as store:
            run_id = store.record_run("distributed", ctx.device.id, env, ms)
    return DistributedRun(run_id, ctx, hw_id, env, link, ms)


def main(argv: Sequence[str] | None = None) -> int:
    """The torchrun entry point; returns the exit status (2 for bad input)."""
    import torch.distributed as dist

    args = _parser().parse_args(argv)
    try:
        _checked(args)  # every rank refuses bad input before joining the job
        ctx = init_distributed(args.device)
    except ChipfitError as exc:
        if os.environ.get("RANK", "0") == "0":
            print(f"error: {exc}", file=sys.stderr)
        return 2
    lead = ctx.rank == 0
    try:
        result = run(args, ctx, progress=(lambda msg: print(f"[rank 0] {msg}", file=sys.stderr)) if lead else None)
        # DDP's reducer (kept alive by reference cycles until a collection) must be gone before its
        # process group, and every rank done with the group: else gloo threads abort at exit.
        gc.collect()
        dist.barrier()
    except ChipfitError as exc:
        if lead:
            print(f"error: {exc}", file=sys.stderr)
        return 2
    finally:
        dist.destroy_process_group()
    if result is not None:
        if args.json:
            print(json.dumps(result.to_dict(), indent=2))
        else:
            where = f"run {result.run_id}" if result.run_id is not None else "not stored"
            print(f"{where}: {ctx.world_size} ranks over {ctx.backend} on {ctx.nodes} node(s), "
                  f"{ctx.device.id} ({result.hardware_id})")
            print(table(result.measurements))
    return 0


if __name__ == "__main__":
    sys.exit(main())
