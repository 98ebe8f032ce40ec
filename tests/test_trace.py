"""The tracer on small modules, against FLOPs, bytes and memory derived by hand."""

import sys
import textwrap

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from chipfit.errors import ChipfitError
from chipfit.workload import profile, zoo
from chipfit.workload.source import resolve, surrogate_loss
from chipfit.workload.trace import trace_module


def trace(factory, make_inputs, **kw):
    """Trace with inputs from make_inputs(batch) and the surrogate (sum) loss."""
    kw.setdefault("name", "m")
    return trace_module(factory, lambda b, s: (make_inputs(b), None), surrogate_loss, **kw)


def mlp():
    return nn.Sequential(nn.Linear(16, 32, bias=False), nn.ReLU(), nn.Linear(32, 8, bias=False))


def matmul_flops(p, phase=None, module=None):
    return sum(
        op.flops
        for op in p.ops
        if op.kind == "matmul" and phase in (None, op.phase) and module in (None, op.module)
    )


class Block(nn.Module):
    """Pre-norm transformer block, no biases: attention (qkv, proj) + 4x MLP."""

    def __init__(self, d=32, heads=4):
        super().__init__()
        self.heads = heads
        self.ln1, self.ln2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.qkv, self.proj = nn.Linear(d, 3 * d, bias=False), nn.Linear(d, d, bias=False)
        self.fc1, self.fc2 = nn.Linear(d, 4 * d, bias=False), nn.Linear(4 * d, d, bias=False)

    def forward(self, x):
        b, s, d = x.shape
        q, k, v = self.qkv(self.ln1(x)).view(b, s, 3, self.heads, d // self.heads).permute(2, 0, 3, 1, 4)
        a = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.proj(a.transpose(1, 2).reshape(b, s, d))
        return x + self.fc2(F.gelu(self.fc1(self.ln2(x))))


def test_linear_forward_flops_and_bytes():
    p = trace(lambda: nn.Linear(16, 8), lambda b: torch.randn(b, 16), mode="infer", batch=4)
    [op] = p.ops
    assert (op.name, op.kind, op.phase, op.module, op.dtype) == ("aten.addmm.default", "matmul", "forward", "", "fp32")
    assert op.flops == 2 * 4 * 16 * 8 + 4 * 8  # multiply-adds plus the bias add
    assert op.bytes_read == 4 * (8 + 4 * 16 + 16 * 8)  # bias, input, weight
    assert op.bytes_written == 4 * 4 * 8
    assert p.activation_bytes == 0 and p.params == 16 * 8 + 8


def test_linear_backward_is_twice_forward():
    p = trace(lambda: nn.Linear(16, 8, bias=False), lambda b: torch.randn(b, 16, requires_grad=True), batch=4)
    forward = 2 * 4 * 16 * 8
    assert matmul_flops(p, "forward") == forward
    assert matmul_flops(p, "backward") == 2 * forward  # grad input + grad weight


def test_mlp_training_is_three_times_forward_with_phases_and_module_paths():
    p = trace(mlp, lambda b: torch.randn(b, 16, requires_grad=True), batch=4)
    forward = 2 * 4 * 16 * 32 + 2 * 4 * 32 * 8
    assert matmul_flops(p, "forward") == forward
    assert matmul_flops(p) == 3 * forward
    assert {op.phase for op in p.ops} == {"forward", "backward", "optimizer"}
    assert matmul_flops(p, "backward", "0") == 2 * 2 * 4 * 16 * 32
    assert matmul_flops(p, "backward", "2") == 2 * 2 * 4 * 32 * 8
    assert {op.module for op in p.ops if op.name == "aten.threshold_backward.default"} == {"1"}
    optimizer_modules = {op.module for op in p.ops if op.phase == "optimizer"}
    assert optimizer_modules == {"0.weight", "2.weight"}
    # AdamW (non-foreach) per parameter: step += 1, then 8 elementwise updates of the weight's size.
    adam = [op for op in p.ops if op.phase == "optimizer" and op.module == "2.weight" and op.kind == "elementwise"]
    assert sum(op.flops for op in adam) == 1 + 8 * 32 * 8


def test_first_layer_without_input_grad_only_computes_grad_weight():
    p = trace(mlp, lambda b: torch.randn(b, 16), batch=4)
    assert matmul_flops(p, "backward", "0") == 2 * 4 * 16 * 32


def test_parameter_counts_and_frozen_layers():
    def frozen():
        model = mlp()
        model[0].weight.requires_grad_(False)
        return model

    p = trace(frozen, lambda b: torch.randn(b, 16), batch=2)
    assert (p.params, p.trainable_params, p.param_bytes) == (16 * 32 + 32 * 8, 32 * 8, 4 * (16 * 32 + 32 * 8))
    assert {op.module for op in p.ops if op.phase == "optimizer"} == {"2.weight"}


def test_activation_bytes_of_a_tiny_mlp():
    # Saved for backward: the input of layer 0 (4x16 fp32) and the ReLU output (4x32 fp32), which is
    # also layer 2's input (one storage). Weights are parameters and not counted.
    p = trace(mlp, lambda b: torch.randn(b, 16), batch=4)
    assert p.activation_bytes == 4 * (4 * 16 + 4 * 32)


def test_peak_live_activations_of_a_tiny_mlp_inference():
    # Live at the ReLU: the input (4x16 fp32), layer 0's output and the ReLU's output (4x32 fp32
    # each); layer 0's output is freed before layer 2 writes its 4x8.
    p = trace(mlp, lambda b: torch.randn(b, 16), mode="infer", batch=4)
    assert p.peak_activation_bytes == 4 * (4 * 16 + 4 * 32 + 4 * 32)


def test_transformer_block_forward_matches_closed_form():
    b, s, d = 2, 16, 32
    p = trace(Block, lambda n: torch.randn(n, s, d), mode="infer", batch=b, seq_len=s)
    params_matmul = 3 * d * d + d * d + 8 * d * d
    attention = 4 * b * s * s * d  # 4*B*H*S*S*Dh with H*Dh = d
    kinds = p.by_kind()
    assert kinds["matmul"]["flops"] == 2 * params_matmul * b * s
    assert kinds["attention"]["flops"] == attention
    [att] = [op for op in p.ops if op.kind == "attention"]
    assert att.causal is True and att.name == "aten._scaled_dot_product_flash_attention_for_cpu.default"
    assert {op.module for op in p.ops if op.kind == "norm"} == {"ln1", "ln2"}
    assert any("causal" in note for note in p.notes)


def test_transformer_block_training_counts_attention_backward_twice():
    b, s, d = 2, 8, 32
    p = trace(Block, lambda n: torch.randn(n, s, d), batch=b, seq_len=s)
    attention = [op for op in p.ops if op.kind == "attention"]
    assert [op.phase for op in attention] == ["forward", "backward"]
    assert attention[1].flops == 2 * attention[0].flops == 2 * 4 * b * s * s * d
    assert {op.module for op in p.ops if op.phase == "backward" and op.kind == "matmul"} == {
        "qkv", "proj", "fc1", "fc2"
    }


def test_amp_training_keeps_fp32_weights_and_runs_matmuls_in_bf16():
    p = trace(mlp, lambda b: torch.randn(b, 16), batch=4, precision="bf16")
    assert p.dtype == "bf16" and p.param_bytes == 4 * p.params
    assert {op.dtype for op in p.ops if op.kind == "matmul"} == {"bf16"}
    # bf16 activations: input cast copy (4x16) and ReLU output (4x32), 2 bytes each; the bf16
    # weight copies autocast makes are not activations.
    assert p.activation_bytes == 2 * (4 * 16 + 4 * 32)


def test_inference_in_half_precision_casts_the_model():
    p = trace(mlp, lambda b: torch.randn(b, 16), mode="infer", batch=4, precision="fp16")
    assert p.param_bytes == 2 * p.params
    assert {op.dtype for op in p.ops if op.kind == "matmul"} == {"fp16"}


def test_fp8_is_traced_as_bf16_with_a_note():
    p = trace(mlp, lambda b: torch.randn(b, 16), mode="infer", batch=1, precision="fp8")
    assert p.dtype == "bf16"
    assert any("fp8" in note for note in p.notes)


class NonZero(nn.Module):
    def forward(self, x):
        return x[torch.nonzero(x > 0)[:, 0]]


class Item(nn.Module):
    def forward(self, x):
        return x * x.sum().item()


def test_data_dependent_shape_gives_one_clear_sentence():
    with pytest.raises(ChipfitError) as err:
        trace(NonZero, lambda b: torch.randn(b, 4), name="nz", mode="infer")
    assert str(err.value) == (
        "Model 'nz' cannot be traced on fake tensors: operator aten.nonzero.default has a data-dependent "
        "output shape; remove data-dependent control flow or give the model as ONNX."
    )


def test_item_gives_one_clear_sentence():
    with pytest.raises(ChipfitError) as err:
        trace(Item, lambda b: torch.randn(b, 4), name="it", mode="infer")
    assert str(err.value) == (
        "Model 'it' cannot be traced on fake tensors: operator aten._local_scalar_dense.default reads tensor "
        "values (a data-dependent output such as .item()); remove data-dependent control flow or give the "
        "model as ONNX."
    )


class Sorts(nn.Module):
    def forward(self, x):
        return torch.sort(x, dim=-1).values


def test_operator_without_formula_is_listed_as_uncounted():
    p = trace(Sorts, lambda b: torch.randn(b, 4), mode="infer")
    assert p.uncounted == {"aten.sort.default": 1}
    [op] = p.ops
    assert (op.kind, op.flops, op.counted) == ("other", 0.0, False)
    assert any("aten.sort.default (1x)" in note for note in p.notes)


def test_views_are_not_ops():
    p = trace(lambda: nn.Flatten(), lambda b: torch.randn(b, 2, 3).transpose(1, 2).contiguous(), mode="infer")
    assert p.ops == []


class TinyLM(nn.Module):
    def __init__(self):
        super().__init__()
        self.emb, self.head = nn.Embedding(11, 8), nn.Linear(8, 11, bias=False)

    def forward(self, ids):
        return self.head(self.emb(ids))


def test_zoo_name_defaults_to_its_sequence_length(monkeypatch):
    entry = zoo.ZooEntry("tiny-lm", "causal-lm", TinyLM, 6, 2 * 88, "test", "test", vocab_size=11)
    monkeypatch.setitem(zoo.ZOO, "tiny-lm", entry)
    p = profile("tiny-lm", mode="infer", batch=2)
    assert p.seq_len == 6
    assert matmul_flops(p) == 2 * 2 * 6 * 8 * 11
    embedding = next(op for op in p.ops if op.name == "aten.embedding.default")
    assert embedding.bytes_read == 2 * 6 * 8 + 4 * 2 * 6 * 8  # int64 ids + the gathered rows, not the table


def test_convolutions_carry_their_kernel_window():
    """A depthwise 5x5 stride-2 convolution and a 1x7 one are tagged with kernel and stride, forward and
    backward; no other operator is."""
    net = lambda: nn.Sequential(nn.Conv2d(4, 4, 5, 2, 2, groups=4, bias=False), nn.ReLU(),  # noqa: E731
                                nn.Conv2d(4, 4, (1, 7), 1, (0, 3), bias=False))
    p = trace(net, lambda b: torch.randn(b, 4, 8, 8), batch=2)
    windows = [(op.name, op.window) for op in p.ops if op.phase != "optimizer" and op.kind != "elementwise"]
    assert ("aten.convolution.default", "k5s2") in windows and ("aten.convolution.default", "k1x7s1") in windows
    assert ("aten.convolution_backward.default", "k5s2") in windows
    assert ("aten.convolution_backward.default", "k1x7s1") in windows
    assert {op.window for op in p.ops if op.kind != "conv"} == {None}


def test_zoo_resnet18_matches_published_multiply_adds():
    # torchvision lists ResNet-18 at 1.81 GFLOPS (multiply-adds of convs and the classifier).
    p = profile("resnet18", mode="infer")
    kinds = p.by_kind()
    assert (kinds["conv"]["flops"] + kinds["matmul"]["flops"]) / 2 == pytest.approx(1.81e9, rel=0.005)
    assert p.params == 11_689_512


def test_zoo_mobilenet_v2_matches_published_multiply_adds():
    # Sandler et al. 2018, table 4: MobileNetV2 (1.0, 224x224) has 300M multiply-adds and 3.4M parameters.
    p = profile("mobilenet_v2", mode="infer")
    kinds = p.by_kind()
    assert (kinds["conv"]["flops"] + kinds["matmul"]["flops"]) / 2 == pytest.approx(300e6, rel=0.005)
    depthwise = [op.window for op in p.ops if op.kind == "conv" and op.window != "k1s1"]
    assert depthwise.count("k3s2") == 5 and depthwise.count("k3s1") == 13  # stem and 4 strided blocks; 13 others


def test_user_module_from_package_path(tmp_path, monkeypatch):
    (tmp_path / "usermodels_chipfit.py").write_text(
        textwrap.dedent(
            """
            import torch
            from torch import nn

            class Net(nn.Linear):
                def example_inputs(self, batch, seq_len):
                    return torch.randn(batch, 4)

            def make():
                return Net(4, 3, bias=False)

            def bare():
                return nn.Linear(4, 3)
            """
        )
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    p = profile("usermodels_chipfit:make", batch=5)
    assert matmul_flops(p, "forward") == 2 * 5 * 4 * 3
    with pytest.raises(ChipfitError, match="no example_inputs"):
        profile("usermodels_chipfit:bare")
    with pytest.raises(ChipfitError, match="has no factory 'nope'"):
        resolve("usermodels_chipfit:nope")
    sys.modules.pop("usermodels_chipfit", None)


def test_unimportable_module_names_it():
    with pytest.raises(ChipfitError, match="Module 'no_such_pkg_chipfit.models' of model .* cannot be imported"):
        resolve("no_such_pkg_chipfit.models:make")


def test_module_instance_is_traced_and_left_intact():
    class Net(nn.Linear):
        def example_inputs(self, batch, seq_len):
            return torch.randn(batch, 6)

    net = Net(6, 2)
    weight = net.weight
    p = profile(net, batch=3)
    assert matmul_flops(p, "forward") == 2 * 3 * 6 * 2 + 3 * 2
    assert net.weight is weight and weight.grad is None
    assert type(net.weight.data) is torch.Tensor


class _Branches(nn.Module):
    """An input layer whose input needs no gradient, feeding two branches that are summed."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Linear(8, 16)
        self.left = nn.Linear(16, 4)
        self.right = nn.Linear(16, 4)

    def forward(self, x):
        y = self.stem(x)
        return self.left(y) + self.right(y)


def test_backward_ops_belong_to_the_module_whose_forward_made_them():
    p = trace(_Branches, lambda b: (torch.randn(b, 8),), name="branches", batch=3)
    mm = {}
    for op in p.ops:
        if op.phase == "backward" and op.kind == "matmul":
            mm.setdefault(op.module, []).append(op.flops)
    # stem: its input needs no gradient, so only the weight gradient (one mm of 2*16*3*8).
    assert mm["stem"] == [2 * 16 * 3 * 8]
    # each branch: gradient of its input and of its weight, 2*3*4*16 each.
    assert sorted(mm["left"]) == sorted(mm["right"]) == [2 * 3 * 4 * 16] * 2
    assert set(mm) == {"stem", "left", "right"}


def test_the_optimizer_step_is_a_steady_state_one():
    # AdamW's first step creates its two moments (zeros_like); every later step does not.
    p = trace(lambda: nn.Linear(8, 4), lambda b: (torch.randn(b, 8),), name="lin", batch=2)
    names = {op.name for op in p.ops if op.phase == "optimizer"}
    assert "aten.zeros_like.default" not in names and names
