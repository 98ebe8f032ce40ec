"""Collectives and DDP through torch.distributed: the formulas by hand, the CUDA path with fakes,
one process in-process, and a real 2-process gloo job under torchrun writing to a temp store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from chipfit.errors import ChipfitError
from chipfit.measure import distributed as D
from chipfit.measure.devices import LocalDevice
from chipfit.measurement import Measurement
from chipfit.predict.parallel import collective_s
from chipfit.store import Store


ROOT = Path(__file__).resolve().parents[1]
CPU = LocalDevice(id="local-cpu", kind="cpu", name="test CPU", vendor="", torch_device="cpu", precisions=("fp32",))
# A "GPU" whose tensors live on the CPU, so the CUDA timing path runs with faked events.
FAKE_GPU = LocalDevice(id="cuda:0", kind="cuda", name="fake", vendor="NVIDIA", torch_device="cpu", precisions=("fp32",))




# --- formulas ------------------------------------------------------------------------------------

def test_bus_factor_and_bandwidths_by_hand():
    assert D.bus_factor("all_reduce", 2) == 1.0  # 2 x 1/2
    assert D.bus_factor("all_reduce", 8) == 1.75  # 2 x 7/8
    assert D.bus_factor("all_gather", 8) == 0.875
    assert D.bus_factor("reduce_scatter", 4) == 0.75
    assert D.bus_factor("all_reduce", 1) == 0.0
    # 1 MB in 1 ms: algbw 1 GB/s; over 8 ranks an all-reduce moves 1.75 GB/s per link
    assert D.algbw_bytes_per_s(1e6, 1e-3) == pytest.approx(1e9)
    assert D.busbw_bytes_per_s("all_reduce", 1e6, 1e-3, 8) == pytest.approx(1.75e9)
    assert D.busbw_bytes_per_s("all_gather", 1e6, 1e-3, 4) == pytest.approx(0.75e9)
    with pytest.raises(ChipfitError, match="all_reduce"):
        D.bus_factor("allreduce", 2)


def test_sizes_parse_units_lists_and_ranges():
    assert D.parse_size("4096") == 4096
    assert D.parse_size("64K") == 65536
    assert D.parse_size("1MiB") == 2**20
    assert D.parse_size("2g") == 2 * 2**30
    assert D.parse_sizes(["4K:64K:4"]) == [4096, 16384, 65536]
    assert D.parse_sizes(["4K:16K"]) == [4096, 8192, 16384]
    assert D.parse_sizes(["1M", "4096,2K", "4K"]) == [2048, 4096, 2**20]
    for bad in ("0", "4X", "64K:4K", "4K:1M:1", "4K:1M:x", "1:2:3:4"):
        with pytest.raises(ChipfitError, match="give"):
            D.parse_sizes([bad])


def test_buffers_split_evenly_over_ranks():
    assert D.buffer_elements("all_reduce", 4100, 3) == 1025  # whole fp32 elements
    assert D.buffer_elements("all_gather", 4100, 3) == 1023  # 341 per rank
    assert D.buffer_elements("reduce_scatter", 4, 2) == 2  # at least one element per rank


def _coll(kind: str, size: int, n: int, t: float) -> Measurement:
    return Measurement(kind="collective", device="local-cpu", precision="fp32",
                       shape={"size_bytes": size, "elements": size // 4, "world_size": n}, flops=0.0,
                       bytes=float(size), median_s=t, min_s=t, max_s=t, repetitions=1, label=kind)


def test_link_fit_recovers_the_alpha_beta_model_and_predicts_it():
    bw, lat = 2e9, 2e-5
    ms = [_coll(k, s, 4, collective_s(k, s, 4, bw, lat)) for k in ("all_reduce", "all_gather")
          for s in (4096, 2**20, 2**24)]
    fit = D.fit_link(ms)
    assert fit.bw_bytes_per_s == pytest.approx(bw, rel=1e-9)
    assert fit.latency_s == pytest.approx(lat, rel=1e-9)
    assert fit.source == "fitted to this run"
    predicted = D.with_predictions(ms, fit)
    assert [m.predicted_s for m in predicted] == pytest.approx([m.median_s for m in ms], rel=1e-9)
    assert predicted[0].extra["link_bw_bytes_per_s"] == pytest.approx(bw)
    # 1 MiB all-reduce over 4 ranks: 6 steps x 20 us + 1.5 MiB / 2 GB/s
    assert predicted[1].predicted_s == pytest.approx(6 * 2e-5 + 1.5 * 2**20 / 2e9)


def test_link_fit_keeps_latency_non_negative_and_needs_two_ranks():
    # times of a pure bandwidth link with less time at the small size than bandwidth alone allows
    ms = [_coll("all_reduce", 2**20, 2, 2**20 / 1e9 * 0.5), _coll("all_reduce", 2**24, 2, 2**24 / 1e9)]
    fit = D.fit_link(ms)
    assert fit.latency_s == 0.0 and fit.bw_bytes_per_s > 0
    assert D.fit_link([_coll("all_reduce", 4096, 1, 1e-5)]) is None


def test_link_fit_of_size_independent_times_is_latency_only():
    # A noisy run where the large message came back faster: no positive bandwidth term fits, so the
    # fit is latency alone, 2(n-1) = 2 steps per all-reduce: latency = sum(x) / sum(x^2), x = 2 / t.
    ms = [_coll("all_reduce", 4096, 2, 1.0e-4), _coll("all_reduce", 2**20, 2, 0.8e-4)]
    fit = D.fit_link(ms)
    x = [2 / 1.0e-4, 2 / 0.8e-4]
    assert fit.bw_bytes_per_s == float("inf") and fit.latency_s == pytest.approx(sum(x) / sum(v * v for v in x))
    (first, _) = D.with_predictions(ms, fit)
    assert first.predicted_s == pytest.approx(2 * fit.latency_s)


# --- joining the job -----------------------------------------------------------------------------

@pytest.fixture
def fake_nccl(monkeypatch):
    calls = {}
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda i: calls.setdefault("set_device", i))
    monkeypatch.setattr(dist, "init_process_group", lambda backend, **kw: calls.update(backend=backend, **kw))
    monkeypatch.setattr(D, "_cuda_device", lambda i: LocalDevice(
        id=f"cuda:{i}", kind="cuda", name="fake", vendor="NVIDIA", torch_device=f"cuda:{i}", precisions=("fp32",)))
    return calls


def test_cuda_rank_sets_its_device_and_joins_over_nccl(fake_nccl):
    env = {"RANK": "3", "WORLD_SIZE": "4", "LOCAL_RANK": "1", "LOCAL_WORLD_SIZE": "2"}
    ctx = D.init_distributed("auto", env)
    assert (ctx.backend, ctx.rank, ctx.world_size, ctx.local_rank, ctx.nodes) == ("nccl", 3, 4, 1, 2)
    assert ctx.device.id == "cuda:1"
    assert fake_nccl == {"set_device": 1, "backend": "nccl", "rank": 3, "world_size": 4,
                         "device_id": torch.device("cuda", 1)}


def test_cpu_rank_joins_over_gloo(fake_nccl, monkeypatch):
    monkeypatch.setattr(D, "_cpu_device", lambda: CPU)
    ctx = D.init_distributed("cpu", {"RANK": "0", "WORLD_SIZE": "2", "LOCAL_RANK": "0"})
    assert (ctx.backend, ctx.device.id, ctx.nodes) == ("gloo", "local-cpu", 1)
    assert fake_nccl == {"backend": "gloo", "rank": 0, "world_size": 2}


def test_outside_torchrun_the_error_says_how_to_start():
    with pytest.raises(ChipfitError, match="torchrun --nproc-per-node 2"):
        D.init_distributed("cpu", {})


def test_bad_arguments_are_refused_before_joining(capsys):
    assert D.main(["--sizes", "4X"]) == 2
    assert "Message size '4X'" in capsys.readouterr().err
    assert D.main(["--collectives", "none"]) == 2
    assert "Nothing to measure" in capsys.readouterr().err
    assert D.main(["--collectives", "alltoall"]) == 2
    assert "not measured" in capsys.readouterr().err


# --- one process, in this process ------------------------------------------------------------------

@pytest.fixture
def one_rank():
    dist.init_process_group("gloo", store=dist.HashStore(), rank=0, world_size=1)
    yield
    dist.destroy_process_group()


class FakeEvents:
    """torch.cuda.Event/synchronize stand-ins: each record() reads a clock that ticks 4 ms."""

    def __init__(self):
        self.now_ms = 0.0
        fake = self

        class Event:
            def __init__(self, enable_timing=False):
                self.t = None

            def record(self):
                fake.now_ms += 4.0
                self.t = fake.now_ms

            def elapsed_time(self, end):
                return end.t - self.t

        self.Event = Event


def test_collectives_on_the_cuda_timing_path(one_rank, monkeypatch):
    fake = FakeEvents()
    monkeypatch.setattr(torch.cuda, "Event", fake.Event)
    monkeypatch.setattr(torch.cuda, "synchronize", lambda: None)
    ctx = D.DistContext(0, 1, 0, 1, "nccl", FAKE_GPU)
    ms = D.measure_collectives(ctx, [4096, 2**16], ["all_reduce", "all_gather"], warmup=1, iters=4, reps=3)
    assert [(m.label, m.shape["size_bytes"]) for m in ms] == [
        ("all_reduce", 4096), ("all_reduce", 65536), ("all_gather", 4096), ("all_gather", 65536)]
    for m in ms:
        assert m.median_s == pytest.approx(0.001)  # 4 ms between the events over 4 calls
        assert m.repetitions == 3 and m.device == "cuda:0"
        assert m.extra["algbw_bytes_per_s"] == pytest.approx(m.shape["size_bytes"] / 0.001)
        assert m.extra["busbw_bytes_per_s"] == 0.0  # one rank moves nothing over a link
        assert (m.extra["timer"], m.extra["backend"], m.shape["world_size"]) == ("cuda events", "nccl", 1)
    assert D.fit_link(ms) is None


def test_ddp_rows_on_one_rank(one_rank):
    ctx = D.DistContext(0, 1, 0, 1, "gloo", CPU)
    single, multi = D.measure_ddp(ctx, "tests.fixtures.user_models:tiny", batch=2, warmup=1, reps=2)
    assert (single.kind, single.label, single.shape) == ("ddp_step", "tests.fixtures.user_models:tiny",
                                                         {"batch": 2, "seq_len": 0, "world_size": 1})
    assert single.extra["ddp"] is False and multi.extra["ddp"] is True
    assert multi.extra["gradient_bytes"] == (8 * 4 + 4) * 4  # fp32 weight and bias of Linear(8, 4)
    assert multi.extra["scaling_efficiency"] == pytest.approx(single.median_s / multi.median_s)
    assert multi.extra["global_batch"] == 2 and single.repetitions == multi.repetitions == 2
    with pytest.raises(ChipfitError, match="batch 0"):
        D.measure_ddp(ctx, "tests.fixtures.user_models:tiny", batch=0)


# --- two processes under torchrun ------------------------------------------------------------------

def test_two_process_gloo_job_stores_one_run(tmp_path):
    db = tmp_path / "results.sqlite"
    env = os.environ | {"PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": "1"}
    if Path("/sys/class/net/lo").exists():
        env["GLOO_SOCKET_IFNAME"] = "lo"  # loopback only
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2",
           "-m", "chipfit.measure.distributed", "--device", "cpu", "--sizes", "4K:4M:16",
           "--collectives", "all_reduce", "all_gather", "--warmup", "1", "--iters", "2", "--reps", "3",
           "--model", "tests.fixtures.user_models:tiny", "--batch", "4", "--steps", "2", "--db", str(db)]
    out = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "busbw" in out.stdout and "efficiency" in out.stdout

    with Store(db) as store:
        (run,) = store.runs()
        assert (run.kind, run.device) == ("distributed", "local-cpu")
        assert run.environment.extra["world_size"] == 2 and run.environment.extra["backend"] == "gloo"
        assert len(run.environment.extra["hosts"]) == 2
        coll = store.measurements(run_id=run.id, kind="collective")
        ddp = store.measurements(run_id=run.id, kind="ddp_step")
    assert [(m.label, m.shape["size_bytes"]) for m in coll] == [
        (k, s) for k in ("all_reduce", "all_gather") for s in (4096, 65536, 2**20)]
    for m in coll:
        assert m.shape["world_size"] == 2 and m.repetitions == 3 and m.bytes == m.shape["size_bytes"]
        assert m.extra["busbw_bytes_per_s"] > 0
        factor = 1.0 if m.label == "all_reduce" else 0.5  # 2(n-1)/n and (n-1)/n at n = 2
        assert m.extra["busbw_bytes_per_s"] == pytest.approx(m.shape["size_bytes"] / m.median_s * factor)
        assert m.predicted_s > 0 and m.extra["link_source"] == "fitted to this run"
    assert [m.shape["world_size"] for m in ddp] == [1, 2]
    assert ddp[1].extra["scaling_efficiency"] == pytest.approx(ddp[0].median_s / ddp[1].median_s)
    assert ddp[1].extra["global_batch"] == 8
