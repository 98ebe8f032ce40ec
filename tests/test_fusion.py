"""Inference-engine fusion: batch norms folded, epilogues fused, 8-bit storage."""

import pytest

from chipfit.workload import profile as trace
from chipfit.predict.fusion import fuse_for_compiler, fuse_for_engine, fuse_into_norms, runs_compiled

# ResNet-50 residual adds at batch 1: (channels x side^2) x blocks per stage.
RESIDUAL_ELEMENTS = 256 * 56**2 * 3 + 512 * 28**2 * 4 + 1024 * 14**2 * 6 + 2048 * 7**2 * 3


@pytest.fixture(scope="module")
def resnet():
    return trace("resnet50", mode="infer", batch=1, precision="bf16")


def test_resnet_batch_norms_fold_and_epilogues_fuse(resnet):
    fused = fuse_for_engine(resnet, "bf16")
    assert sum(op.kind == "norm" for op in resnet.ops) == 53
    assert not any(op.kind == "norm" for op in fused.ops)
    # Residual adds and ReLUs run inside the conv epilogues: no kernels of their own.
    assert sum(op.kind == "elementwise" for op in resnet.ops) == 16 + 49
    assert not any(op.kind == "elementwise" for op in fused.ops)
    convs, fused_convs = ([op for op in p.ops if op.kind == "conv"] for p in (resnet, fused))
    assert len(fused_convs) == 53 and [op.bytes_written for op in fused_convs] == [op.bytes_written for op in convs]
    # Each add's conv also reads the residual branch it did not produce (2 bytes per bf16 element).
    assert sum(op.bytes_read for op in fused_convs) - sum(op.bytes_read for op in convs) == 2 * RESIDUAL_ELEMENTS
    assert fused.flops() == pytest.approx(resnet.flops() - sum(op.flops for op in resnet.ops if op.kind == "norm"))


def test_int8_engine_halves_every_byte_of_the_bf16_trace(resnet):
    fused, eight = fuse_for_engine(resnet, "bf16"), fuse_for_engine(resnet, "int8")
    assert [op.bytes for op in eight.ops] == pytest.approx([op.bytes / 2 for op in fused.ops], abs=1)


def test_layer_norm_is_not_folded_and_training_is_untouched():
    gpt2 = trace("gpt2", mode="infer", batch=1, seq_len=64, precision="bf16")
    fused = fuse_for_engine(gpt2, "bf16")
    assert sum(op.kind == "norm" for op in fused.ops) == sum(op.kind == "norm" for op in gpt2.ops) == 25
    assert sum(op.name == "aten.gelu.default" for op in gpt2.ops) == 12
    assert not any(op.name == "aten.gelu.default" for op in fused.ops)  # in the c_fc epilogue
    assert fused.flops() == pytest.approx(gpt2.flops())
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
    assert trt.step_time_s == pytest.approx(predict(fuse_for_engine(resnet, "bf16"), h100, job, Plan(),
                                                    framework="tensorrt").step_time_s)
    assert eager.step_time_s == pytest.approx(predict(resnet, h100, job, Plan()).step_time_s)
    assert trt.step_time_s < eager.step_time_s
    # The local CPU is priced beside the catalog, on the same graph, and each entry's speed-up is against it.
    cpu = next(h for h in catalog.hardware.values() if h.hw_class == "cpu" and h.mem_bw_bytes_per_s and h.peak("fp32"))
    gpu_est, local = compare_profile(resnet, job, Plan(), [h100], catalog, local_cpu=cpu)
    assert local.step_time_s == pytest.approx(predict(resnet, cpu, job, Plan()).step_time_s)
    assert gpu_est.speedup_vs_local_cpu == pytest.approx(local.total_time_s / gpu_est.total_time_s)


def test_xla_fuses_elementwise_ops_and_casts_in_both_passes_but_not_the_optimizer():
    train = trace("resnet18", mode="train", batch=1, precision="bf16")
    xla = fuse_for_compiler(train)

    def fusible(op):
        return op.phase != "optimizer" and (op.kind == "elementwise" or op.name.startswith("aten._to_copy"))

    # Only the input cast, first of the forward pass, has no producer to join (the casts after it join it).
    assert fusible(train.ops[0]) and xla.ops[0].name == train.ops[0].name
    assert [op for op in xla.ops[1:] if fusible(op)] == []
    fused = [op for op in train.ops[1:] if fusible(op)]
    # Elementwise ops of the forward (20 BN counter adds, 17 ReLUs, 8 residual adds) and backward
    # (17 ReLU backwards, 8 gradient adds, the loss scale) passes, and the casts of both (24 + 23)
    # less the input cast.
    assert len(fused) == (45 + 26) + (24 + 23) - 1
    assert len(xla.ops) == len(train.ops) - len(fused)
    kinds = ("conv", "norm", "matmul", "reduction")
    assert [(op.phase, op.name) for op in xla.ops if op.kind in kinds] == [
        (op.phase, op.name) for op in train.ops if op.kind in kinds]
    assert [op for op in xla.ops if op.phase == "optimizer"] == [op for op in train.ops if op.phase == "optimizer"]
    # Fused outputs are never written; their kernels read only what the chain did not produce.
    assert sum(op.bytes_written for op in xla.ops) == sum(op.bytes_written for op in train.ops) - sum(
        op.bytes_written for op in fused)
    assert sum(op.bytes_read for op in xla.ops) == sum(op.bytes_read for op in train.ops) - sum(
        min(op.bytes_read, op.bytes_written) for op in fused)
    assert xla.flops() == pytest.approx(train.flops())


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


def test_ngc_mxnet_runs_relu_and_residual_add_inside_the_batch_norm():
    train = trace("resnet50", mode="train", batch=1, precision="fp16")
    fused = fuse_into_norms(train)
    forward = [op for op in fused.ops if op.phase == "forward"]
    # Every forward ReLU and residual add follows a batch norm (ResNet-50 v1.5: bn-relu, bn-add-relu).
    assert not any(op.kind == "elementwise" and op.name != "aten.add_.Tensor" for op in forward)
    assert sum(op.kind == "norm" for op in forward) == 53
    assert fused.flops() == pytest.approx(train.flops())
    assert [op for op in fused.ops if op.phase == "optimizer"] == [op for op in train.ops if op.phase == "optimizer"]
