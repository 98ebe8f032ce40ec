"""Time and peak memory to profile each zoo model, and time to compare one profile against the catalog.

    .venv/bin/python benchmarks/bench_profile_compare.py [--models resnet50 gpt2 ...]

Each model is profiled in a fresh process, so its peak RSS (ru_maxrss) is its own, torch included.
Targets (issue 2): llama-3-70b training at seq 4096 under 2 GB; compare under 0.5 s after profiling.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

CHILD = """
import json, resource, sys, time
t0 = time.perf_counter()
import chipfit
t1 = time.perf_counter()
p = chipfit.profile(sys.argv[1], mode="train", batch=int(sys.argv[2]), seq_len=int(sys.argv[3]) or None, precision="bf16")
t2 = time.perf_counter()
print(json.dumps({"import_s": t1 - t0, "profile_s": t2 - t1, "ops": len(p.ops), "params": p.params,
                  "tflop": p.flops() / 1e12, "rss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}))
"""


def job(name: str) -> tuple[int, int]:
    """(batch, seq) the benchmark profiles a model at: vision batch 64, LLMs batch 1 at seq <= 4096."""
    from chipfit.workload.zoo import get

    entry = get(name)
    if entry.default_seq_len is None:
        return 64, 0
    return 1, min(entry.default_seq_len, 4096)


def profile_all(models: list[str]) -> list[dict]:
    rows = []
    for name in models:
        batch, seq = job(name)
        out = subprocess.run([sys.executable, "-c", CHILD, name, str(batch), str(seq)],
                             capture_output=True, text=True, check=True)
        rows.append({"model": name, "batch": batch, "seq": seq or None, **json.loads(out.stdout)})
    return rows


def compare_time(model: str, repeats: int = 5) -> dict:
    """Median wall time of ranking one traced profile against the whole catalog (no tracing)."""
    import chipfit
    from chipfit.catalog import load_catalog
    from chipfit.comparison import compare_profile
    from chipfit.measure.devices import local_cpu_hardware
    from chipfit.predict import Plan
    from chipfit.workload.workload import Workload

    batch, seq = job(model)
    prof = chipfit.profile(model, mode="train", batch=batch, seq_len=seq or None, precision="bf16")
    work = Workload(model=model, batch=batch, seq_len=seq or None, precision="bf16", samples=1e6)
    catalog = load_catalog()
    entries = list(catalog.hardware.values())
    local = local_cpu_hardware()
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        compare_profile(prof, work, Plan(), entries, catalog, local_cpu=local)
        times.append(time.perf_counter() - t)
    return {"model": model, "entries": len(entries) + 1, "ops": len(prof.ops), "median_s": statistics.median(times),
            "max_s": max(times)}


def main() -> None:
    from chipfit.workload.zoo import ZOO

    ap = argparse.ArgumentParser()
    ap.add_argument("--models", nargs="*", default=list(ZOO))
    args = ap.parse_args()
    print(f"{'model':<20}{'batch':>6}{'seq':>6}{'ops':>8}{'TFLOP/step':>12}{'profile s':>11}{'peak RSS MiB':>14}")
    for r in profile_all(args.models):
        print(f"{r['model']:<20}{r['batch']:>6}{r['seq'] or '-':>6}{r['ops']:>8}{r['tflop']:>12.4g}"
              f"{r['profile_s']:>11.2f}{r['rss_mib']:>14.0f}")
    print()
    print(f"{'compare (predict only)':<24}{'entries':>8}{'ops':>8}{'median s':>10}{'max s':>8}")
    for model in ("resnet50", "llama-3-70b"):
        if model in args.models:
            r = compare_time(model)
            print(f"{r['model']:<24}{r['entries']:>8}{r['ops']:>8}{r['median_s']:>10.3f}{r['max_s']:>8.3f}")


if __name__ == "__main__":
    main()
