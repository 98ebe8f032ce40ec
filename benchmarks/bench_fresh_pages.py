"""Each real step's time beside the memory it touches for the first time: why a step's time varies here.

    .venv/bin/python benchmarks/bench_fresh_pages.py gpt2 train 1 --seq 128 [--steps 25] [--retain]

Runs `chipfit measure`'s step (measure.steps.measure_step) on this CPU and prints, per step, its wall time and
its minor page faults (getrusage: one per 4 KiB page the process touches for the first time), beside the bytes
the trace says a step writes into new memory (efficiency.fresh_bytes: outputs above glibc's 32 MiB mmap
threshold). The allocator is the process's own (glibc's defaults, as chipfit measures by default), or with
`--retain` set to keep freed memory as `--keep-freed-memory` sets it (measure.allocator). Nothing is stored.
"""

import resource
import time

from chipfit.measure.allocator import describe, retain_freed_memory
from chipfit.measure.devices import local_devices
from chipfit.measure.steps import measure_step
from chipfit.predict.efficiency import fresh_bytes
from chipfit.workload import profile as trace

from case_args import case_parser


def minor_faults() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def steps(model: str, mode: str, batch: int, seq_len: int | None, n: int, warmup: int) -> list[tuple[float, int]]:
    """(seconds, minor page faults) of each of `n` timed steps after `warmup` untimed ones."""
    marks: list[tuple[float, int]] = []

    def mark(i: int, total: int, label: str) -> None:  # called before each step and once after the last
        marks.append((time.perf_counter(), minor_faults()))

    cpu = next(d for d in local_devices() if d.kind == "cpu")
    measure_step(model, cpu, mode=mode, batch=batch, seq_len=seq_len, warmup=warmup, repetitions=n, progress=mark)
    return [(t1 - t0, f1 - f0) for (t0, f0), (t1, f1) in zip(marks[warmup:], marks[warmup + 1:])]


if __name__ == "__main__":
    ap = case_parser(__doc__)
    ap.add_argument("--steps", type=int, default=25)
    ap.add_argument("--warmup", type=int, default=2)
    ap.add_argument("--retain", action="store_true", help="keep freed memory, as chipfit measure --keep-freed-memory does")
    a = ap.parse_args()
    print("allocator:", retain_freed_memory() if a.retain else describe())
    prof = trace(a.model, mode=a.mode, batch=a.batch, seq_len=a.seq, precision="fp32")
    fresh = sum(fresh_bytes(op.name, op.bytes_written) for op in prof.ops)
    print(f"{a.model} {a.mode} batch {a.batch}: the trace writes {fresh / 1e6:.0f} MB a step into new memory")
    for i, (seconds, faults) in enumerate(steps(a.model, a.mode, a.batch, a.seq, a.steps, a.warmup)):
        print(f"step {i + 1:3d}  {seconds * 1e3:8.1f} ms  {faults:8d} minor page faults ({faults * 4096 / 1e6:5.0f} MB)")
