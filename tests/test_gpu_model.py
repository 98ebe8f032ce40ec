"""The step as a GPU runs it (predict/as_run, fusion.fuse_attention, host, gpu_efficiency): hand-derived figures."""

import numpy as np
import pytest

from chipfit.catalog.loader import load_catalog
from chipfit.catalog.schema import Figure, Hardware
from chipfit.errors import ChipfitError
from chipfit.predict import Plan, predict
from chipfit.predict.as_run import arrays_as_run, profile_as_run
from chipfit.predict.decode import predict_inference
from chipfit.predict.efficiency import Efficiency, pages_fault_on_allocation
from chipfit.predict.fusion import (attention_kernel, fuse_attention, fused_attention_flops,
                                    fused_attention_saved_bytes)
from chipfit.predict.gpu_efficiency import (BATCH_NORM_STATISTICS_MEMORY_EFFICIENCY, CONV_GPU_EFFICIENCY,
                                            matrix_efficiency)
from chipfit.predict.host import (HOST_KERNEL_S, HOST_VIEW_S, foreach_launches, serving_framework, stream_end)
from chipfit.predict.roofline import op_times, step_time
from chipfit.workload.profile import AttentionCall, Op, Profile
from chipfit.workload.workload import Workload

S = "test figure"
# An NVIDIA GPU with round figures: 400 TFLOP/s bf16, 200 tf32, 100 fp32, 2 TB/s (machine balance 200 FLOP/B bf16).
GPU = Hardware(
    id="test-nv", name="Test NV GPU", vendor="NVIDIA", hw_class="gpu",
    peak_flops={"fp32": Figure(100e12, S, True), "tf32": Figure(200e12, S, True), "bf16": Figure(400e12, S, True)},
    memory_bytes=Figure(80 * 2**30, S), mem_bw_bytes_per_s=Figure(2e12, S),
)
CPU = Hardware(id="test-cpu", name="Test CPU", vendor="T", hw_class="cpu",
               peak_flops={"fp32": Figure(1e12, S, True)}, mem_bw_bytes_per_s=Figure(100e9, S))
NO_OVERHEAD = Efficiency(matmul=1.0, vector=1.0, memory=1.0, kernel_overhead_s=0.0)


def _op(name, kind, flops, read, written, phase="forward", dtype="bf16", group=None):
    return Op(name=name, kind=kind, flops=flops, bytes_read=read, bytes_written=written, dtype=dtype, phase=phase,
              module="m", group=group)


def _profile(ops, mode="train", **kw):
    return Profile(model="t", mode=mode, batch=2, seq_len=1024, dtype="bf16", ops=ops, params=1000,
                   trainable_params=1000, param_bytes=4000, activation_bytes=kw.pop("activation_bytes", 0), **kw)


# B=2, H=12, S=1024, D=64 in bf16, causal, as a math path traced it (scores saved: probabilities in fp32 and
# the dropout mask: 2*12*1024*1024*(4 + 1) bytes).
CALL = AttentionCall(batch=2, heads=12, q_len=1024, kv_len=1024, head_dim=64, v_dim=64, element_bytes=2,
                     causal=True, dropout=True, saved_inside_bytes=2 * 12 * 1024 * 1024 * 5,
                     peak_inside_bytes=2 * 12 * 1024 * 1024 * 4)


def test_flash_attention_flops_and_saved_bytes_by_hand():
    forward, backward = fused_attention_flops(CALL)
    # QK^T and PV: 2 * B*H*S*S*(D + Dv) = 2 * 24 * 1024^2 * 128, causal blocks: (S + 1) / (2S) of them.
    assert forward == pytest.approx(2 * 24 * 1024**2 * 128 * 1025 / 2048)
    assert backward == pytest.approx(2.5 * forward)  # five S x S products against two
    # Output (B*H*S*Dv bf16) and logsumexp (B*H*S fp32): 3,145,728 + 98,304 bytes, no S x S tensor.
    assert fused_attention_saved_bytes(CALL) == 24 * 1024 * 64 * 2 + 24 * 1024 * 4 == 3_244_032


def test_kernel_choice_follows_dtype_mask_and_head_size():
    assert attention_kernel(CALL) == "flash"
    assert attention_kernel(AttentionCall(2, 12, 1024, 1024, 64, 64, 4, False)) == "efficient"  # fp32
    assert attention_kernel(AttentionCall(2, 12, 1024, 1024, 64, 64, 2, False, mask_bytes=8)) == "efficient"
    assert attention_kernel(AttentionCall(2, 12, 1024, 1024, 512, 512, 2, False)) == "math"  # head dim > 256


def test_fused_attention_replaces_the_math_path_and_its_saved_scores():
    scores = 2 * 12 * 1024 * 1024
    ops = [_op("aten.addmm.default", "matmul", 1e9, 10, 10),
           _op("aten.bmm.default", "matmul", 1e9, 10, scores * 4, group=0),
           _op("aten._safe_softmax.default", "reduction", 5e6, scores * 4, scores * 4, group=0),
           _op("aten.bmm.default", "matmul", 1e9, scores * 4, 10, group=0),
           _op("aten.bmm.default", "matmul", 1e9, 10, 10, phase="backward", group=0),
           _op("aten._softmax_backward_data.default", "reduction", 4e6, 10, 10, phase="backward", group=0),
           _op("aten.mm.default", "matmul", 1e9, 10, 10, phase="backward")]
    prof = _profile(ops, activation_bytes=10**9, backward_peak_bytes=2 * 10**9, attention=[CALL],
                    dispatches={"forward": 40, "backward": 30})
    run = fuse_attention(prof)
    assert [op.name for op in run.ops] == ["aten.addmm.default", "aten._scaled_dot_product_flash_attention.default",
                                           "aten._scaled_dot_product_flash_attention_backward.default",
                                           "aten.mm.default"]
    fwd, bwd = fused_attention_flops(CALL)
    assert (run.ops[1].flops, run.ops[2].flops) == (pytest.approx(fwd), pytest.approx(bwd))
    q = 24 * 1024 * 64 * 2
    assert run.ops[1].bytes_read == 3 * q and run.ops[1].bytes_written == q + 24 * 1024 * 4
    change = fused_attention_saved_bytes(CALL) - CALL.saved_inside_bytes
    assert run.activation_bytes == 10**9 + change
    assert run.backward_peak_bytes == 2 * 10**9 + change
    assert run.dispatches == {"forward": 40 - 3 + 1, "backward": 30 - 2 + 1}
    # On a GPU under PyTorch the training memory follows (backward's peak); on a CPU nothing changes.
    assert profile_as_run(prof, GPU, None).activation_bytes == run.backward_peak_bytes
    assert profile_as_run(prof, CPU, None) is prof
    assert profile_as_run(prof, GPU, "tensorflow") is prof


def test_stream_end_by_hand():
    # Host issues at 0.5, 1.0, 1.5; kernels of 1 s start at 0.5, 1.5, 2.5: the last ends at 3.5.
    assert stream_end(np.ones(3), np.full(3, 0.5)) == pytest.approx(3.5)
    # A slow host: issues at 2, 4, 6; each 1 s kernel waits for it: ends at 7.
    assert stream_end(np.ones(3), np.full(3, 2.0)) == pytest.approx(7.0)


def test_host_bound_step_for_an_op_count():
    # 100 kernels and 200 views in the forward: 100 * 10 us + 200 * 5 us = 2 ms of host time, 20 us per kernel,
    # against 100 kernels of 1 MB (0.5 us at 2 TB/s): the device waits for the host; the step ends 2 ms + the
    # last kernel's 0.5 us after it starts.
    ops = [_op("aten.add.Tensor", "elementwise", 0, 500_000, 500_000, dtype="fp32") for _ in range(100)]
    prof = _profile(ops, mode="infer", dispatches={"forward": 300})
    arrays = arrays_as_run(prof, GPU, "pytorch", "fp32")
    assert arrays.host.sum() == pytest.approx(100 * HOST_KERNEL_S + 200 * HOST_VIEW_S) == pytest.approx(2e-3)
    st = step_time(arrays, GPU, NO_OVERHEAD)
    assert st.total_s == pytest.approx(2e-3 + 0.5e-6)
    assert st.device_s == pytest.approx(100 * 0.5e-6)
    # A compiled or replayed graph (XLA, TensorRT) has no per-operator host stream: the device decides.
    assert step_time(arrays_as_run(prof, GPU, "tensorrt", "fp32"), GPU, NO_OVERHEAD).total_s == pytest.approx(50e-6)


def test_foreach_optimizer_launches_by_hand():
    # 300 parameters of 1 MiB in fp32 (262,144 elements), one AdamW op each: ceil(300 / 48) = 7 launches by tensor
    # count, ceil(300 * 262144 / (320 * 65536)) = 4 by elements: 7 launches, one foreach call on the host.
    ops = [_op("aten.lerp_.Scalar", "elementwise", 0, 2**21, 2**20, phase="optimizer", dtype="fp32")] * 300
    fe = foreach_launches(_profile(ops))
    assert (fe.calls, fe.launches, fe.per_op["aten.lerp_.Scalar"]) == (1, 7, pytest.approx(7 / 300))


def test_tf32_convolutions_on_ampere_not_volta_and_not_matmuls():
    catalog = load_catalog()
    a100, v100 = catalog.get("nvidia-a100-sxm4-80gb"), catalog.get("nvidia-v100-sxm2-16gb")
    prof = _profile([_op("aten.convolution.default", "conv", 1e12, 10**8, 10**8, dtype="fp32"),
                     _op("aten.mm.default", "matmul", 1e12, 10**8, 10**8, dtype="fp32")], mode="infer")
    assert arrays_as_run(prof, a100, None, "fp32").precision.tolist() == ["tf32", "fp32"]
    assert arrays_as_run(prof, v100, None, "fp32").precision.tolist() == ["fp32", "fp32"]
    # The convolution's FLOPs then run at the TF32 peak (156 TFLOP/s dense on A100) times the cuDNN factor.
    t = op_times(arrays_as_run(prof, a100, None, "fp32"), a100, Efficiency(kernel_overhead_s=0.0))
    assert t[0] == pytest.approx(1e12 / (a100.peak("tf32") * CONV_GPU_EFFICIENCY))


def test_gpu_family_efficiencies_by_hand():
    # Intensity equal to the machine balance: half the best matmul efficiency.
    assert matrix_efficiency(0.8, np.array([200.0]), np.array([1.0]), np.array([200.0]))[0] == pytest.approx(0.4)
    # A bf16 training batch norm: the traced pass at 85% of bandwidth, the statistics pass (its output's size) at 3%.
    bn = _op("aten.native_batch_norm.default", "norm", 0, 10**9, 10**9)
    arrays = arrays_as_run(_profile([bn]), GPU, None, "bf16")
    t = op_times(arrays, GPU, Efficiency(kernel_overhead_s=0.0))
    assert t[0] == pytest.approx(2e9 / (2e12 * 0.85) + 1e9 / (2e12 * BATCH_NORM_STATISTICS_MEMORY_EFFICIENCY))


def test_transformer_training_memory_follows_the_fused_kernel():
    hw = load_catalog().get("nvidia-h200-sxm-141gb")
    scores = CALL.saved_inside_bytes
    prof = _profile([_op("aten.bmm.default", "matmul", 1e9, 10, 10, group=0)], activation_bytes=scores + 10**8,
                    attention=[CALL])
    job = Workload(model="t", mode="train", batch=2, seq_len=1024, precision="bf16")
    gpu = predict(prof, hw, job, Plan(), framework="pytorch").memory_breakdown["activations"]
    assert gpu == 10**8 + fused_attention_saved_bytes(CALL)


def test_cuda_memory_takes_no_page_faults():
    assert pages_fault_on_allocation("cpu") and pages_fault_on_allocation("local-cpu")
    assert not pages_fault_on_allocation("cuda:0")
    prof = _profile([_op("aten.mul.Tensor", "elementwise", 0, 10**9, 10**9)], mode="infer")
    assert arrays_as_run(prof, GPU, None, "bf16").fresh is None
    assert arrays_as_run(prof, CPU, None, "bf16").fresh.tolist() == [1e9]


def test_serving_engine_or_eager_decode_loop():
    from chipfit.workload.llm import parse_spec

    hw = load_catalog().get("nvidia-h200-sxm-141gb")
    spec = parse_spec("layers=32,hidden=4096,heads=32,ffn=11008,vocab=32000")
    engine = predict_inference(spec, hw, prompt_tokens=512, generated_tokens=16, framework="vllm")
    eager = predict_inference(spec, hw, prompt_tokens=512, generated_tokens=16, framework="pytorch")
    # 32 layers x (50 kernels x 10 us + 100 views x 5 us) = 32 ms per token, above the device's ~3 ms.
    assert eager.decode_step_s == pytest.approx(32 * (50 * 10e-6 + 100 * 5e-6))
    assert eager.decode_bound == "host" and engine.decode_step_s < 0.01
    assert serving_framework(None) == "vllm"
    with pytest.raises(ChipfitError, match=r"^LLM serving under 'deepspeed' is not modelled; give --framework "
                                           r"pytorch \(an eager Hugging Face decode loop\) or a serving engine: "
                                           r"vllm, sglang, tensorrt-llm \(optionally with its release, as "
                                           r"tensorrt-llm==0\.6\.1\)\.$"):
        serving_framework("deepspeed")
    assert serving_framework("tensorrt-llm==0.6.1") == "tensorrt-llm==0.6.1"
    with pytest.raises(ChipfitError, match=r"^Framework version 'latest' in 'tensorrt-llm==latest' is not a release "
                                           r"number; give it as NAME==MAJOR\.MINOR, e\.g\. tensorrt-llm==0\.6\.1\.$"):
        serving_framework("tensorrt-llm==latest")


def test_trace_marks_each_attention_call_forward_and_backward():
    import torch
    import torch.nn.functional as F

    from chipfit.workload.trace import trace_module

    class Attn(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.qkv = torch.nn.Linear(64, 192)

        def forward(self, x):
            q, k, v = self.qkv(x).view(2, 16, 3, 4, 16).permute(2, 0, 3, 1, 4)
            return F.scaled_dot_product_attention(q, k, v, dropout_p=0.1, is_causal=True).sum()

    prof = trace_module(Attn, lambda b, s: (torch.randn(b, 16, 64), None), lambda out, _: out, name="attn",
                        batch=2, seq_len=16)
    (call,) = prof.attention
    assert (call.batch, call.heads, call.q_len, call.kv_len, call.head_dim, call.causal, call.dropout) == \
        (2, 4, 16, 16, 16, True, True)
    grouped = {op.phase for op in prof.ops if op.group == 0}
    assert grouped == {"forward", "backward"}
    # The CPU's math path keeps the 2 x 4 x 16 x 16 probabilities (fp32) for backward, among what it saved inside.
    assert call.saved_inside_bytes >= 2 * 4 * 16 * 16 * 4
    assert prof.dispatches["forward"] > sum(op.phase == "forward" for op in prof.ops)  # views are dispatched too
    fused = fuse_attention(prof)
    assert [op.kind for op in fused.ops if op.group is None and op.kind == "attention"] == ["attention"] * 2
    assert fused.activation_bytes == prof.activation_bytes - call.saved_inside_bytes + fused_attention_saved_bytes(call)


def test_calibrate_a_gpu_from_a_store_of_another_machine(capsys, tmp_path):
    """`chipfit calibrate --device cuda:0` on a machine without it fits from the store's runs of it, on the catalog
    entry those runs recorded, without the host's fresh-page term."""
    import json

    from chipfit.cli import main
    from chipfit.measurement import Environment, Measurement
    from chipfit.store import Store

    def env(kind):
        return Environment(device="cuda:0", device_name="NVIDIA H200", hardware_id="nvidia-h200-sxm-141gb",
                           threads=16, hostname="gpu-host", platform="Linux", python_version="3.12",
                           torch_version="2.11.0+cu130", chipfit_version="", created_at="2026-12-04T11:43:00+00:00")

    bench = [Measurement(kind="matmul", device="cuda:0", precision="bf16", shape={"m": n, "n": n, "k": n},
                         flops=2.0 * n**3, bytes=6.0 * n * n, median_s=2.0 * n**3 / 600e12 + 5e-6, min_s=1e-6,
                         max_s=1e-3, repetitions=5) for n in (1024, 2048, 4096, 8192)]
    # Elementwise rows whose outputs are large (fresh bytes on a CPU): a CUDA fit must not use them.
    ops = [Measurement(kind="op", device="cuda:0", precision="bf16", shape={"calls": 10}, flops=n, bytes=4.0 * n,
                       median_s=4.0 * n / 4e12 + 2e-6, min_s=1e-6, max_s=1e-3, repetitions=5, label="aten.add.Tensor",
                       extra={"op_kind": "elementwise", "model": "m", "mode": "train", "phase": "forward",
                              "fresh_bytes": 2.0 * n}) for n in (2**24, 2**26, 2**28)]
    path = tmp_path / "gpu.sqlite"
    with Store(path) as store:
        store.record_run("bench", "cuda:0", env("bench"), bench)
        store.record_run("measure", "cuda:0", env("measure"), ops)
    code = main(["calibrate", "--device", "cuda:0", "--db", str(path), "--json"])
    out = json.loads(capsys.readouterr().out)
    assert code == 0 and out["hardware_id"] == "nvidia-h200-sxm-141gb"
    fits = {(f["family"], f["precision"]): f for f in out["op_fits"]}
    assert fits["elementwise/out", "bf16"]["fresh_bytes_per_s"] is None
    assert fits["elementwise/out", "bf16"]["e_memory"] == pytest.approx(4e12 / 4.8e12, rel=0.02)
