"""Load on the dashboard's API: 200 concurrent POST /api/compare against a server on loopback.

    .venv/bin/python benchmarks/bench_web_load.py [--requests 200] [--record benchmarks/results/web_load.json]

Starts `uvicorn chipfit.web:create_app` in a child process on a free 127.0.0.1 port, then sends
two rounds of concurrent requests (httpx AsyncClient): "cold", where the first requests find no
cached profile and wait for its one trace, and "warm". The jobs vary (class, samples, deadline,
budget) over one profile (resnet18, inference, batch 1). Prints errors (must be 0), throughput and
latency percentiles; exits 1 on any error. Loopback only; every request and the run are time-bounded.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import socket
import statistics
import subprocess
import sys
import time
from datetime import datetime, timezone
from pathlib import Path

HOST = "127.0.0.1"
REQUEST_TIMEOUT_S = 120.0
STARTUP_TIMEOUT_S = 60.0
CLASSES = (None, "gpu", "tpu", "cpu", "asic")


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return s.getsockname()[1]


def job(i: int) -> dict:
    """The i-th request's body: one model and batch, so one profile; the rest varies."""
    body = {"model": "resnet18", "mode": "infer", "batch": 1, "samples": 1000 * (1 + i % 7)}
    if CLASSES[i % len(CLASSES)]:
        body["class"] = CLASSES[i % len(CLASSES)]
    if i % 3 == 0:
        body["deadline"] = f"{1 + i % 5}h"
    if i % 4 == 0:
        body["budget"] = 10.0 * (1 + i % 3)
    return body


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in 0..100)."""
    ordered = sorted(values)
    rank = max(1, -(-len(ordered) * q // 100))
    return ordered[int(rank) - 1]


async def round_of(base: str, n: int) -> dict:
    import httpx

    limits = httpx.Limits(max_connections=n, max_keepalive_connections=n)
    async with httpx.AsyncClient(base_url=base, timeout=REQUEST_TIMEOUT_S, limits=limits) as client:
        async def one(i: int) -> tuple[float, str | None]:
            t0 = time.perf_counter()
            try:
                r = await client.post("/api/compare", json=job(i))
                error = None if r.status_code == 200 and r.json().get("estimates") else f"{r.status_code}: {r.text[:200]}"
            except Exception as exc:  # counted and shown, never hidden
                error = f"{type(exc).__name__}: {exc}"
            return time.perf_counter() - t0, error

        t0 = time.perf_counter()
        results = await asyncio.gather(*(one(i) for i in range(n)))
        wall_s = time.perf_counter() - t0
    latencies = [r[0] for r in results]
    errors = [r[1] for r in results if r[1]]
    return {
        "requests": n, "errors": len(errors), "first_errors": errors[:3], "wall_s": wall_s,
        "throughput_per_s": n / wall_s, "p50_s": statistics.median(latencies),
        "p99_s": percentile(latencies, 99), "max_s": max(latencies),
    }


def start_server(port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "uvicorn", "chipfit.web:create_app", "--factory", "--host", HOST,
           "--port", str(port), "--log-level", "warning"]
    proc = subprocess.Popen(cmd)
    import httpx

    deadline = time.monotonic() + STARTUP_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"The server exited with {proc.returncode} before it answered.")
        try:
            if httpx.get(f"http://{HOST}:{port}/api/meta", timeout=1.0).status_code == 200:
                return proc
        except httpx.TransportError:
            time.sleep(0.2)
    proc.terminate()
    raise SystemExit(f"The server did not answer on {HOST}:{port} within {STARTUP_TIMEOUT_S:.0f} s.")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--requests", type=int, default=200, help="concurrent requests per round (default 200)")
    ap.add_argument("--record", type=Path, help="also write the results as JSON to this file")
    args = ap.parse_args()
    if not 1 <= args.requests <= 1000:
        raise SystemExit("--requests must be between 1 and 1000.")
    port = free_port()
    proc = start_server(port)
    try:
        base = f"http://{HOST}:{port}"
        rounds = {name: asyncio.run(round_of(base, args.requests)) for name in ("cold", "warm")}
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
    print(f"{args.requests} concurrent POST /api/compare on {HOST} ({os.cpu_count()} cores)")
    print(f"{'round':<6} {'errors':>6} {'wall':>8} {'req/s':>8} {'p50':>8} {'p99':>8} {'max':>8}")
    for name, r in rounds.items():
        print(f"{name:<6} {r['errors']:>6} {r['wall_s']:>7.2f}s {r['throughput_per_s']:>8.1f} "
              f"{r['p50_s']:>7.3f}s {r['p99_s']:>7.3f}s {r['max_s']:>7.3f}s")
        for e in r["first_errors"]:
            print(f"  error: {e}")
    if args.record:
        record = {"date": datetime.now(timezone.utc).isoformat(timespec="seconds"), "cores": os.cpu_count(),
                  "python": platform.python_version(), "machine": platform.machine(),
                  "job": "resnet18 infer batch 1, class/samples/deadline/budget varied", "rounds": rounds}
        args.record.parent.mkdir(parents=True, exist_ok=True)
        args.record.write_text(json.dumps(record, indent=2) + "\n")
    return 1 if any(r["errors"] for r in rounds.values()) else 0


if __name__ == "__main__":
    sys.exit(main())
