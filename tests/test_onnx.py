"""ONNX profiling: FLOPs of exported torch models against hand formulas, custom ops, and bad files."""

import sys
import warnings

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
torch = pytest.importorskip("torch")
from onnx import TensorProto, helper, numpy_helper  # noqa: E402
from torch import nn  # noqa: E402

from chipfit.errors import ChipfitError  # noqa: E402
from chipfit.workload.onnx_model import profile_onnx  # noqa: E402


def export(model: nn.Module, args: tuple, path, names: list[str], dynamic: dict | None = None):
    """The TorchScript exporter ships with torch (the newer one needs onnxscript). Without constant
    folding, BatchNorm stays a node of its own instead of being folded into the conv before it."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(
            model.eval(), args, str(path), dynamo=False, input_names=names, dynamic_axes=dynamic, do_constant_folding=False
        )
    return path


def save(graph, path, opsets=(("", 17),)):
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid(d, v) for d, v in opsets])
    onnx.save(model, str(path))
    return path


class Bottleneck(nn.Module):
    """A ResNet-50 bottleneck with a strided 3x3 and a projection shortcut."""

    def __init__(self, cin: int, width: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, width, 1, bias=False), nn.BatchNorm2d(width)
        self.conv2, self.bn2 = nn.Conv2d(width, width, 3, stride, 1, bias=False), nn.BatchNorm2d(width)
        self.conv3, self.bn3 = nn.Conv2d(width, 4 * width, 1, bias=False), nn.BatchNorm2d(4 * width)
        self.down = nn.Sequential(nn.Conv2d(cin, 4 * width, 1, stride, bias=False), nn.BatchNorm2d(4 * width))

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = torch.relu(self.bn2(self.conv2(y)))
        return torch.relu(self.bn3(self.conv3(y)) + self.down(x))


class TinyResNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, 16, 7, 2, 3, bias=False), nn.BatchNorm2d(16), nn.ReLU(), nn.MaxPool2d(3, 2, 1))
        self.block = Bottleneck(16, 8, 2)
        self.fc = nn.Linear(32, 10)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.block(self.stem(x)), 1), 1))


@pytest.fixture(scope="module")
def resnet_file(tmp_path_factory):
    torch.manual_seed(0)
    model = TinyResNet()
    for m in model.modules():  # distinct statistics; the weights stay 1 and biases 0, as untrained
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.5, 2)
    path = tmp_path_factory.mktemp("onnx") / "tiny_resnet.onnx"
    with torch.no_grad():
        export(model, (torch.randn(1, 3, 64, 64),), path, ["image"], {"image": {0: "batch"}})
    return path, sum(p.numel() for p in model.parameters())


def test_resnet_style_export_flops_by_hand(resnet_file):
    path, torch_params = resnet_file
    p = profile_onnx(path, batch=2)
    n = 2
    # 64x64 -> stem conv 32x32 -> max pool 16x16 -> block: 1x1 at 16x16, strided 3x3 and the rest at 8x8.
    convs = sorted([
        2 * n * 16 * 32 * 32 * (3 * 7 * 7),  # stem 7x7, 3 -> 16
        2 * n * 8 * 16 * 16 * 16,  # conv1 1x1, 16 -> 8
        2 * n * 8 * 8 * 8 * (8 * 3 * 3),  # conv2 3x3 stride 2, 8 -> 8
        2 * n * 32 * 8 * 8 * 8,  # conv3 1x1, 8 -> 32
        2 * n * 32 * 8 * 8 * 16,  # shortcut 1x1 stride 2, 16 -> 32
    ])
    assert sorted(op.flops for op in p.ops if op.name == "onnx.Conv") == convs
    assert sorted(op.window for op in p.ops if op.name == "onnx.Conv") == ["k1s1", "k1s1", "k1s2", "k3s2", "k7s2"]
    (gemm,) = [op for op in p.ops if op.name == "onnx.Gemm"]
    assert gemm.flops == 2 * n * 32 * 10 + n * 10 and gemm.kind == "matmul"  # + the bias adds
    (pool,) = [op for op in p.ops if op.name == "onnx.GlobalAveragePool"]
    assert pool.flops == n * 32 * 8 * 8
    (maxpool,) = [op for op in p.ops if op.name == "onnx.MaxPool"]
    assert maxpool.flops == n * 16 * 16 * 16 * 9
    assert p.uncounted == {} and p.batch == 2 and p.dtype == "fp32" and p.mode == "infer"
    # Parameters match PyTorch's exactly: BatchNorm running statistics are not parameters.
    assert p.params == torch_params
    bn_channels = 16 + 8 + 8 + 32 + 32
    assert f"params leaves out {2 * bn_channels} BatchNormalization running statistics" in " ".join(p.notes)
    # The exporter stores equal initializers once: bn2's and the shortcut BatchNorm's weight and bias
    # become Identity copies of bn1's and bn3's. They still count as parameters, but are stored once.
    assert sum(op.name == "onnx.Identity" for op in p.ops) == 4
    assert p.param_bytes == 4 * (torch_params - 2 * 8 - 2 * 32 + 2 * bn_channels)
    stem = next(op for op in p.ops if op.name == "onnx.Conv")
    assert stem.bytes_read == 4 * (n * 3 * 64 * 64 + 16 * 3 * 49) and stem.bytes_written == 4 * n * 16 * 32 * 32


def test_symbolic_batch_must_be_resolved(resnet_file):
    path, _ = resnet_file
    with pytest.raises(ChipfitError) as err:
        profile_onnx(path)
    assert str(err.value) == (
        f"ONNX file {path} has inputs with unresolved dimensions: image (batch, 3, 64, 64);"
        " give their shapes with input_shapes (on the command line: --input NAME=1x3x224x224)."
    )
    one = profile_onnx(path, input_shapes={"image": (1, 3, 64, 64)})
    two = profile_onnx(path, batch=2)
    assert two.flops() == pytest.approx(2 * one.flops())
    with pytest.raises(ChipfitError, match=r"has no input 'img'; its inputs are image\. Did you mean image\?"):
        profile_onnx(path, input_shapes={"img": (1, 3, 64, 64)})
    with pytest.raises(ChipfitError, match=r"has fixed size 3 on axis 1; give 3 there, not 4\."):
        profile_onnx(path, input_shapes={"image": (1, 4, 64, 64)})
    with pytest.raises(ChipfitError, match=r"input 'image' has 4 dims \(batch, 3, 64, 64\); give 4 values, not 2\."):
        profile_onnx(path, input_shapes={"image": (1, 3)})


class TwoMatMuls(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.randn(6, 5))

    def forward(self, x, y):
        return torch.softmax((x @ self.w).transpose(1, 2) @ y, dim=-1)  # (B,4,6)@(6,5) -> (B,5,4)@(B,4,3)


def test_matmul_flops_by_hand(tmp_path):
    path = export(TwoMatMuls(), (torch.randn(3, 4, 6), torch.randn(3, 4, 3)), tmp_path / "mm.onnx", ["x", "y"])
    p = profile_onnx(path)
    assert [op.flops for op in p.ops if op.name == "onnx.MatMul"] == [2 * 3 * 4 * 5 * 6, 2 * 3 * 5 * 3 * 4]
    (transpose,) = [op for op in p.ops if op.name == "onnx.Transpose"]
    assert transpose.kind == "memory" and transpose.flops == 0 and transpose.bytes == 2 * 4 * 3 * 4 * 5
    (softmax,) = [op for op in p.ops if op.name == "onnx.Softmax"]
    assert softmax.flops == 5 * 3 * 5 * 3
    assert p.params == 30 and p.batch == 3


# --- hand-built graphs: attention, norms, unknown ops -------------------------------------------
def test_com_microsoft_attention_and_shapes_after_it(tmp_path):
    b, s, d, heads = 2, 8, 16, 2
    graph = helper.make_graph(
        [
            helper.make_node("Attention", ["x", "w", "bias"], ["a"], domain="com.microsoft", num_heads=heads, unidirectional=1),
            helper.make_node("LayerNormalization", ["a", "gamma"], ["ln"], axis=-1),
            helper.make_node("Relu", ["ln"], ["y"]),
        ],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [b, s, d])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            helper.make_tensor("w", TensorProto.FLOAT, [d, 3 * d], [0.0] * (3 * d * d)),
            helper.make_tensor("bias", TensorProto.FLOAT, [3 * d], [0.0] * (3 * d)),
            helper.make_tensor("gamma", TensorProto.FLOAT, [d], [1.0] * d),
        ],
    )
    path = save(graph, tmp_path / "attn.onnx", (("", 17), ("com.microsoft", 1)))
    p = profile_onnx(path)
    attn, ln, relu = p.ops
    projection = 2 * b * s * d * 3 * d
    scores = 2 * b * s * s * d  # Q.K^T summed over heads: heads x (s x s x d/heads)
    weighted = 2 * b * s * s * d  # weights.V
    assert (attn.name, attn.kind, attn.causal) == ("com.microsoft.Attention", "attention", True)
    assert attn.flops == projection + scores + weighted
    assert attn.bytes_written == 4 * b * s * d
    assert ln.flops == 6 * b * s * d and ln.kind == "norm"  # 5 per element + the scale
    assert relu.counted and relu.flops == b * s * d
    assert p.params == 3 * d * d + 3 * d + d


def test_onnx_attention_op_with_past(tmp_path):
    b, h, s, past, dh = 1, 4, 3, 5, 8
    graph = helper.make_graph(
        [helper.make_node("Attention", ["q", "k", "v", "", "pk", "pv"], ["y", "present_k", "present_v"], is_causal=1)],
        "g",
        [
            helper.make_tensor_value_info("q", TensorProto.FLOAT, [b, h, s, dh]),
            helper.make_tensor_value_info("k", TensorProto.FLOAT, [b, h, s, dh]),
            helper.make_tensor_value_info("v", TensorProto.FLOAT, [b, h, s, dh]),
            helper.make_tensor_value_info("pk", TensorProto.FLOAT, [b, h, past, dh]),
            helper.make_tensor_value_info("pv", TensorProto.FLOAT, [b, h, past, dh]),
        ],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
    )
    p = profile_onnx(save(graph, tmp_path / "attn23.onnx", (("", 23),)))
    (op,) = p.ops
    assert op.kind == "attention" and op.causal is True
    assert op.flops == 2 * (2 * b * h * s * dh * (past + s))


def test_unknown_op_is_listed_not_zeroed(tmp_path):
    graph = helper.make_graph(
        [helper.make_node("Mystery", ["x"], ["m"], domain="acme"), helper.make_node("Relu", ["x"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, [4]), helper.make_tensor_value_info("m", TensorProto.FLOAT, None)],
    )
    p = profile_onnx(save(graph, tmp_path / "u.onnx", (("", 17), ("acme", 1))))
    assert p.uncounted == {"acme.Mystery": 1}
    assert "No FLOP formula or no shape for: acme.Mystery; their FLOPs are left out." in p.notes
    assert p.ops[1].flops == 4


# --- safety and bad files -----------------------------------------------------------------------
def test_truncated_file_exact_message(resnet_file, tmp_path):
    path, _ = resnet_file
    cut = tmp_path / "cut.onnx"
    data = path.read_bytes()
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ChipfitError) as err:
        profile_onnx(cut, batch=1)
    assert str(err.value) == (
        f"ONNX file {cut} is truncated or not an ONNX model: its protobuf data ends early or is malformed."
    )
    empty = tmp_path / "empty.onnx"
    empty.write_bytes(b"")
    with pytest.raises(ChipfitError, match=r"is truncated or not an ONNX model: it holds no graph of nodes\.$"):
        profile_onnx(empty)


def _external_model(tmp_path, location: str):
    weight = helper.make_tensor("w", TensorProto.FLOAT, [4, 4], [0.0] * 16)
    weight.data_location = TensorProto.EXTERNAL
    weight.ClearField("float_data")
    for key, value in (("location", location), ("offset", "0"), ("length", "64")):
        entry = weight.external_data.add()
        entry.key, entry.value = key, value
    graph = helper.make_graph(
        [helper.make_node("MatMul", ["x", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [weight],
    )
    folder = tmp_path / "model"
    folder.mkdir(exist_ok=True)
    return save(graph, folder / "m.onnx")


@pytest.mark.parametrize("location", ["../secret.bin", "/etc/passwd", "sub/../../secret.bin"])
def test_external_data_outside_the_model_folder_is_rejected(tmp_path, location):
    path = _external_model(tmp_path, location)
    with pytest.raises(ChipfitError) as err:
        profile_onnx(path)
    assert str(err.value) == (
        f"ONNX file {path} refers to external data {location!r} outside its own folder {path.parent.resolve()};"
        " chipfit reads external data only from the model's folder."
    )


def test_external_data_in_the_folder_is_used(tmp_path):
    # Weights stay on disk (only dims are needed); the int64 Reshape target is read for shape inference.
    graph = helper.make_graph(
        [helper.make_node("Reshape", ["x", "shape"], ["r"]), helper.make_node("MatMul", ["r", "w"], ["y"])],
        "g",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [
            numpy_helper.from_array(np.array([6, 4], dtype=np.int64), "shape"),
            numpy_helper.from_array(np.full((4, 5), 0.5, dtype=np.float32), "w"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    path = tmp_path / "ext.onnx"
    onnx.save_model(model, str(path), save_as_external_data=True, location="ext.bin", size_threshold=0)
    assert all(t.data_location == TensorProto.EXTERNAL for t in onnx.load(str(path), load_external_data=False).graph.initializer)
    p = profile_onnx(path)
    assert p.ops[1].flops == 2 * 6 * 5 * 4
    assert p.params == 20  # the int64 shape tensor is not a parameter
    assert p.param_bytes == 20 * 4 + 2 * 8


def test_size_limit_training_and_missing_package(resnet_file, monkeypatch):
    path, _ = resnet_file
    with pytest.raises(ChipfitError, match=r"over the 100-byte limit; keep the weights in external data beside it\.$"):
        profile_onnx(path, batch=1, max_bytes=100)
    with pytest.raises(ChipfitError, match=r"inference only .* profile training from a PyTorch source\.$"):
        profile_onnx(path, batch=1, mode="train")
    monkeypatch.setitem(sys.modules, "onnx", None)
    with pytest.raises(ChipfitError) as err:
        profile_onnx(path, batch=1)
    assert str(err.value) == "Profiling ONNX files needs the onnx package: pip install 'chipfit[onnx]'."


def test_einsum_and_resize_formulas(tmp_path):
    graph = helper.make_graph(
        [
            helper.make_node("Einsum", ["a", "b"], ["e"], equation="bij,bjk->bik"),
            helper.make_node("Resize", ["img", "", "scales"], ["up"], mode="linear"),
        ],
        "g",
        [
            helper.make_tensor_value_info("a", TensorProto.FLOAT, [2, 3, 4]),
            helper.make_tensor_value_info("b", TensorProto.FLOAT, [2, 4, 5]),
            helper.make_tensor_value_info("img", TensorProto.FLOAT, [1, 1, 2, 2]),
        ],
        [helper.make_tensor_value_info("e", TensorProto.FLOAT, None), helper.make_tensor_value_info("up", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(np.array([1, 1, 2, 2], dtype=np.float32), "scales")],
    )
    einsum, resize = profile_onnx(save(graph, tmp_path / "f.onnx")).ops
    assert (einsum.kind, einsum.flops) == ("matmul", 2 * 2 * 3 * 4 * 5)
    # Bilinear: 3 blends of 3 FLOPs for each of the 4 x 4 outputs.
    assert (resize.kind, resize.flops, resize.bytes_written) == ("elementwise", 9 * 16, 4 * 16)
