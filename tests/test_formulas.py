"""Per-operator formulas against hand-derived counts, on meta tensors (no memory, no compute)."""

import pytest
import torch
import torch.nn.functional as F

from chipfit.workload.formulas import REGISTRY, SDPA_FORWARD, named_args, op_cost

aten = torch.ops.aten


def meta(*shape):
    return torch.empty(*shape, device="meta")


def cost(func, *args, **kwargs):
    return op_cost(func, args, kwargs, func(*args, **kwargs))


def test_mm_is_two_flops_per_multiply_add():
    assert cost(aten.mm.default, meta(3, 4), meta(4, 5)) == ("matmul", 2 * 3 * 4 * 5, None)


def test_addmm_adds_the_bias_per_output_element():
    assert cost(aten.addmm.default, meta(5), meta(3, 4), meta(4, 5)) == ("matmul", 120 + 15, None)


def test_bmm_and_baddbmm():
    assert cost(aten.bmm.default, meta(2, 3, 4), meta(2, 4, 5))[1] == 2 * 2 * 3 * 4 * 5
    assert cost(aten.baddbmm.default, meta(2, 3, 5), meta(2, 3, 4), meta(2, 4, 5))[1] == 240 + 30


def test_matrix_vector_and_dot():
    assert cost(aten.mv.default, meta(3, 4), meta(4))[1] == 24
    assert cost(aten.addmv.default, meta(3), meta(3, 4), meta(4))[1] == 24 + 3
    assert cost(aten.dot.default, meta(7), meta(7))[1] == 14


def test_resnet_stem_conv():
    # 3 -> 64 channels, 7x7, stride 2, padding 3 on 224x224: output 112x112.
    x, w = meta(2, 3, 224, 224), meta(64, 3, 7, 7)
    args = (x, w, None, [2, 2], [3, 3], [1, 1], False, [0, 0], 1)
    out = aten.convolution.default(*args)
    assert out.shape == (2, 64, 112, 112)
    per_sample = 2 * 64 * 112 * 112 * 3 * 49
    assert op_cost(aten.convolution.default, args, {}, out) == ("conv", 2 * per_sample, None)
    with_bias = (x, w, meta(64), *args[3:])
    assert op_cost(aten.convolution.default, with_bias, {}, out)[1] == 2 * per_sample + 2 * 64 * 112 * 112


def test_grouped_and_transposed_conv():
    # groups=2: each output sees Cin/groups = 4 channels of a 3x3 window.
    x, w = meta(1, 8, 10, 10), meta(6, 4, 3, 3)
    args = (x, w, None, [1, 1], [1, 1], [1, 1], False, [0, 0], 2)
    out = aten.convolution.default(*args)
    assert cost(aten.convolution.default, *args)[1] == 2 * 6 * 10 * 10 * 4 * 9 == 2 * out.numel() * 4 * 9
    # Transposed 4 -> 2 channels, 2x2 kernel, stride 2: each of 5x5 input pixels meets 4*2*4 weights.
    x, w = meta(1, 4, 5, 5), meta(4, 2, 2, 2)
    args = (x, w, None, [2, 2], [0, 0], [1, 1], True, [0, 0], 1)
    assert aten.convolution.default(*args).shape == (1, 2, 10, 10)
    assert cost(aten.convolution.default, *args)[1] == 2 * 25 * 4 * 2 * 4


def test_conv_backward_follows_output_mask():
    x, w, g = meta(2, 3, 8, 8), meta(5, 3, 3, 3), meta(2, 5, 6, 6)
    one = 2 * 2 * 5 * 6 * 6 * 3 * 9

    def backward(mask):
        return cost(aten.convolution_backward.default, g, x, w, [5], [1, 1], [0, 0], [1, 1], False, [0, 0], 1, mask)

    assert backward([True, True, False]) == ("conv", 2 * one, None)
    assert backward([False, True, True])[1] == one + g.numel()


def test_sdpa_cpu_flash_forward_backward_and_causal_flag():
    b, h, s, d = 2, 3, 5, 4
    q, k, v = meta(b, h, s, d), meta(b, h, s, d), meta(b, h, s, d)
    forward = 4 * b * h * s * s * d
    assert cost(aten._scaled_dot_product_flash_attention_for_cpu.default, q, k, v, 0.0, True) == (
        "attention",
        forward,
        True,
    )
    assert cost(aten._scaled_dot_product_flash_attention_for_cpu.default, q, k, v)[2] is False
    lse = meta(b, s, h)
    grads = cost(aten._scaled_dot_product_flash_attention_for_cpu_backward.default, q, q, k, v, q, lse, 0.0, True)
    assert grads == ("attention", 2 * forward, True)


def test_sdpa_value_head_dim_and_key_length_may_differ():
    q, k, v = meta(1, 2, 3, 4), meta(1, 2, 6, 4), meta(1, 2, 6, 8)
    out = (meta(1, 2, 3, 8),)
    # QK^T: 2*B*H*Sq*Sk*D = 2*1*2*3*6*4 = 288; PV: 2*1*2*3*6*8 = 576.
    assert op_cost(aten._scaled_dot_product_efficient_attention.default, (q, k, v, None, False), {}, out)[1] == 864


def test_every_sdpa_backend_has_forward_and_backward_formulas():
    for name in SDPA_FORWARD:
        for op_name in (name, name + "_backward"):
            packet = getattr(aten, op_name, None)
            if packet is not None:
                assert REGISTRY[packet][0] == "attention", op_name


def test_pointwise_reduction_softmax_norm():
    x = meta(4, 8)
    assert cost(aten.gelu.default, x) == ("elementwise", 32, None)
    assert cost(aten.add.Tensor, x, meta(8)) == ("elementwise", 32, None)
    assert cost(aten.sum.dim_IntList, x, [1]) == ("reduction", 32, None)
    assert cost(aten._softmax.default, x, 1, False) == ("reduction", 5 * 32, None)
    # layer norm over 8 with weight and bias: 5 + 2 FLOPs per element.
    assert cost(aten.native_layer_norm.default, x, [8], meta(8), meta(8), 1e-5) == ("norm", 7 * 32, None)
    assert cost(aten.native_layer_norm.default, x, [8], None, None, 1e-5)[1] == 5 * 32


def test_pooling_counts_the_window():
    out = cost(aten.max_pool2d_with_indices.default, meta(1, 2, 8, 8), [3, 3], [2, 2], [1, 1])
    assert out == ("reduction", 2 * 4 * 4 * 9, None)


def test_memory_ops_are_counted_with_zero_flops():
    x = meta(4, 8)
    assert cost(aten.clone.default, x) == ("memory", 0.0, None)  # clone is tagged pointwise; memory wins
    assert cost(aten.cat.default, [x, x]) == ("memory", 0.0, None)
    assert cost(aten.embedding.default, meta(10, 8), torch.zeros(3, dtype=torch.long, device="meta"))[0] == "memory"


def test_op_without_formula_is_other():
    x = meta(4, 8)
    assert cost(aten.sort.default, x) == ("other", 0.0, None)


def test_named_args_fill_defaults():
    args = named_args(aten._scaled_dot_product_flash_attention_for_cpu.default, (meta(1), meta(1), meta(1)), {})
    assert args["is_causal"] is False and args["dropout_p"] == 0.0


@pytest.mark.parametrize("causal", [False, True])
def test_functional_sdpa_reaches_the_counted_kernel(causal):
    from torch.utils._python_dispatch import TorchDispatchMode

    seen = []

    class Spy(TorchDispatchMode):
        def __torch_dispatch__(self, func, types, args=(), kwargs=None):
            out = func(*args, **(kwargs or {}))
            kind, flops, is_causal = op_cost(func, args, kwargs or {}, out)
            if kind == "attention":
                seen.append((flops, is_causal))
            return out

    q = torch.randn(1, 2, 4, 8)
    with Spy():
        F.scaled_dot_product_attention(q, q, q, is_causal=causal)
    assert seen == [(4 * 2 * 4 * 4 * 8, causal)]


def test_topk_of_moe_routing_is_a_reduction_over_its_input():
    from torch._subclasses.fake_tensor import FakeTensorMode

    from chipfit.workload.formulas import op_cost

    with FakeTensorMode():
        logits = torch.randn(16, 8)
        values, indices = torch.ops.aten.topk.default(logits, 2)
        assert op_cost(torch.ops.aten.topk.default, (logits, 2), {}, (values, indices)) == ("reduction", 16 * 8, None)
