"""Inference-engine fusion: batch norms folded, epilogues fused, 8-bit storage."""

import pytest

from chipfit.workload import profile as trace
from chipfit.workload.fusion import fuse_for_compiler, fuse_for_engine, runs_compiled

# ResNet-50 residual adds at batch 1: (channels x side^2) x blocks per stage.
RESIDUAL_ELEMENTS = 256 * 56**2 * 3 + 512 * 28**2 * 4 + 1024 * 14**2 * 6 + 2048 * 7**2 * 3


@pytest.fixture(scope="module")
def resnet():
    return trace("resnet50", mode="infer", batch=1, precision="bf16")


def test_resnet_batch_norms_fold_and_epilogues_fuse(resnet):
    fused = fuse_for_engine(resnet, "bf16")
    assert sum(op.kind == "norm" for op in resnet.ops) == 53
    assert not any(op.kind == "norm" for op in fused.ops)
    elementwise = [op for op in fused.ops if op.kind == "elementwise"]
    assert len(elementwise) == 16 + 49  # residual adds and ReLUs still run, inside the conv epilogues
    # Each add reads only the residual branch it did not produce; activations cost nothing.
    assert sum(op.bytes for op in elementwise) == 2 * RESIDUAL_ELEMENTS
    convs = [op for op in resnet.ops if op.kind == "conv"]
    assert [op for op in fused.ops if op.kind == "conv"] == convs
    assert fused.flops() == pytest.approx(resnet.flops() - sum(op.flops for op in resnet.ops if op.kind == "norm"))


def test_int8_engine_halves_every_byte_of_the_bf16_trace(resnet):
    fused, eight = fuse_for_engine(resnet, "bf16"), fuse_for_engine(resnet, "int8")
    assert [op.bytes for op in eight.ops] == pytest.approx([op.bytes / 2 for op in fused.ops], abs=1)


def test_layer_norm_is_not_folded_and_training_is_untouched():
    gpt2 = trace("gpt2", mode="infer", batch=1, seq_len=64, precision="bf16")
    fused = fuse_for_engine(gpt2, "bf16")
    assert sum(op.kind == "norm" for op in fused.ops) == sum(op.kind == "norm" for op in gpt2.ops) == 25
    gelu = [op for op in fused.ops if op.name == "aten.gelu.default"]
    assert len(gelu) == 12 and all(op.bytes == 0 for op in gelu)  # in the c_fc epilogue
    train = trace("resnet18", mode="train", batch=1, precision="bf16")
    assert fuse_for_engine(train, "bf16") is train


def test_compare_on_a_fusing_engine_prices_the_fused_graph(resnet):
    from chipfit.catalog import load_catalog
    from chipfit.comparison import compare_profile
    from chipfit.predict import Plan, predict
    from chipfit.workload.workload import Workload

    catalog = load_catalog()
    h100 = catalog.get("nvidia-h100-sxm5-80gb")
    job = Workload(model="resnet50", mode="infer", batch=1, precision="bf16")
    (trt,) = compare_profile(resnet, job, Plan(), [h100], catalog, framework="tensorrt")
    (eager,) = compare_profile(resnet, job, Plan(), [h100], catalog, framework="pytorch")
    assert trt.step_time_s == pytest.approx(predict(fuse_for_engine(resnet, "bf16"), h100, job, Plan()).step_time_s)
    assert eager.step_time_s == pytest.approx(predict(resnet, h100, job, Plan()).step_time_s)
    assert trt.step_time_s < eager.step_time_s


def test_xla_fuses_elementwise_ops_and_casts_in_both_passes_but_not_the_optimizer():
    train = trace("resnet18", mode="train", batch=1, precision="bf16")
    xla = fuse_for_compiler(train)
    assert len(xla.ops) == len(train.ops)  # nothing folded in training
    pairs = list(zip(train.ops, xla.ops))
    relu_bwd = [(a, b) for a, b in pairs if a.name == "aten.threshold_backward.default"]
    # ReLU backward in the producing conv-backward's epilogue: reads only the saved output it gates on.
    assert relu_bwd and all(b.bytes == a.bytes_read - a.bytes_written for a, b in relu_bwd)
    casts = [b for a, b in pairs if a.name.startswith("aten._to_copy") and a.phase == "backward"]
    assert casts and all(b.bytes_written == 0 for b in casts)
    assert all(a == b for a, b in pairs if a.phase == "optimizer")
    assert all(a == b for a, b in pairs if a.kind in ("conv", "matmul", "norm"))
    assert xla.flops() == train.flops()


def test_tpus_run_compiled_and_gpus_eager_unless_jax():
    from chipfit.catalog import load_catalog
    from chipfit.comparison import compare_profile
    from chipfit.predict import Plan, predict
    from chipfit.workload.workload import Workload

    catalog = load_catalog()
    tpu, gpu = catalog.get("google-tpu-v4"), catalog.get("nvidia-h100-sxm5-80gb")
    assert runs_compiled("tpu") and not runs_compiled("gpu") and runs_compiled("gpu", "jax")
    train = trace("resnet18", mode="train", batch=2, precision="bf16")
    job = Workload(model="resnet18", mode="train", batch=2, precision="bf16")
    xla = predict(fuse_for_compiler(train), tpu, job, Plan(), arrays=None)
    assert predict(train, tpu, job, Plan()).step_time_s == pytest.approx(xla.step_time_s)
    eager = predict(train, gpu, job, Plan())
    (jax,) = compare_profile(train, job, Plan(), [gpu], catalog, framework="jax")
    assert jax.step_time_s < eager.step_time_s
    assert any("XLA" in a for a in jax.assumptions) and not any("XLA" in a for a in eager.assumptions)
