"""Caffe prototxt profiling: published anchors, shapes by hand, and bad input."""

from pathlib import Path

import pytest

from chipfit.errors import ChipfitError
from chipfit.workload.caffe import parse_net, profile_prototxt
from chipfit.workload.protobuf_text import parse

FIXTURES = Path(__file__).parent / "fixtures" / "caffe"


def matrix_macs(profile, bias_adds: int) -> float:
    """Multiply-adds of convolutions and fully connected layers (the published convention): their
    FLOPs less the bias adds (1 per output element of a layer with bias), halved."""
    kinds = profile.by_kind()
    return (kinds["conv"]["flops"] + kinds["matmul"]["flops"] - bias_adds) / 2


def write(tmp_path, body: str, name: str = "net.prototxt") -> Path:
    path = tmp_path / name
    path.write_text(body)
    return path


TINY_INPUT = 'layer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 1 dim: 4 dim: 4 } } }\n'


# --- published anchors ------------------------------------------------------------------------
def test_alexnet_params_and_macs():
    # Caffe's bvlc_alexnet (grouped conv2/4/5, 227x227): per layer weights + biases.
    params = (
        (96 * 3 * 11 * 11 + 96)
        + (256 * 48 * 5 * 5 + 256)
        + (384 * 256 * 3 * 3 + 384)
        + (384 * 192 * 3 * 3 + 384)
        + (256 * 192 * 3 * 3 + 256)
        + (9216 * 4096 + 4096)
        + (4096 * 4096 + 4096)
        + (4096 * 1000 + 1000)
    )
    assert params == 60_965_224
    macs = (
        55 * 55 * 96 * 3 * 121
        + 27 * 27 * 256 * 48 * 25
        + 13 * 13 * 384 * 256 * 9
        + 13 * 13 * 384 * 192 * 9
        + 13 * 13 * 256 * 192 * 9
        + 9216 * 4096
        + 4096 * 4096
        + 4096 * 1000
    )
    bias_adds = 55 * 55 * 96 + 27 * 27 * 256 + 13 * 13 * (384 + 384 + 256) + 4096 + 4096 + 1000
    p = profile_prototxt(FIXTURES / "alexnet.prototxt", batch=1)
    assert p.params == params
    assert matrix_macs(p, bias_adds) == macs == 724_406_816
    # Sze et al., "Efficient Processing of Deep Neural Networks", Proc. IEEE 2017, Table: AlexNet 724M MACs, 61M weights.
    assert round(macs / 1e6) == 724


def test_vgg16_params_and_flops():
    # torchvision vgg16 IMAGENET1K_V1 meta: num_params 138,357,544, 15.47 GFLOPS (multiply-adds) at 224x224.
    p = profile_prototxt(FIXTURES / "vgg16.prototxt", batch=1)
    assert p.params == 138_357_544
    convs = [(224, 3, 64), (224, 64, 64), (112, 64, 128), (112, 128, 128), (56, 128, 256), (56, 256, 256),
             (56, 256, 256), (28, 256, 512), (28, 512, 512), (28, 512, 512), (14, 512, 512), (14, 512, 512),
             (14, 512, 512)]  # (output side, in channels, out channels), 3x3 kernels
    macs = sum(side * side * cin * cout * 9 for side, cin, cout in convs) + 25088 * 4096 + 4096 * 4096 + 4096 * 1000
    bias_adds = sum(side * side * cout for side, _, cout in convs) + 4096 + 4096 + 1000
    assert matrix_macs(p, bias_adds) == macs == 15_470_264_320
    assert round(macs / 1e9, 2) == 15.47
    # Everything else (bias adds, ReLU, pooling, softmax) adds 0.12%: ~30.9 GFLOP forward.
    assert 2 * macs * 1.001 < p.flops("forward") < 2 * macs * 1.002


def test_resnet50_params_macs_and_batchnorm_stats():
    # torchvision resnet50 IMAGENET1K_V1 meta: num_params 25,557,032 and 4.089 GFLOPS (multiply-adds);
    # Caffe's ResNet-50 keeps BatchNorm's affine part in Scale layers, so the learned params match.
    p = profile_prototxt(FIXTURES / "resnet50.prototxt")
    assert p.batch == 1
    assert p.params == p.trainable_params == 25_557_032
    assert matrix_macs(p, bias_adds=1000) == 4_089_184_256  # only fc1000 has a bias
    # ~8.2 GFLOP forward: 8.18 from conv/fc, 1.1% more from BatchNorm, Scale, ReLU, adds and pooling.
    assert abs(p.flops("forward") - 8.2e9) / 8.2e9 < 0.01
    assert 1.01 < p.flops("forward") / (2 * 4_089_184_256) < 1.012
    # 53 BatchNorm layers over 26,560 channels: mean + variance per channel and one factor per layer.
    net = parse_net(FIXTURES / "resnet50.prototxt")
    assert net.stats == 2 * 26_560 + 53
    assert p.param_bytes == 4 * (25_557_032 + 53_173)


def test_resnet50_original_caffe_layout():
    # He et al. 2016, Table 1: ResNet-50 "3.8 x 10^9" FLOPs (multiply-adds), stride in the first 1x1 conv.
    p = profile_prototxt(FIXTURES / "resnet50_v1.prototxt")
    assert p.params == 25_557_032
    assert abs(matrix_macs(p, 1000) - 3.8e9) / 3.8e9 < 0.02
    # With the stride in the 3x3 conv instead, each stage's first 1x1 conv (cin -> w) runs at twice the
    # side: cin x w x ((2 side)^2 - side^2) more multiply-adds per stage.
    extra = sum(cin * w * 3 * side**2 for cin, w, side in [(256, 128, 28), (512, 256, 14), (1024, 512, 7)])
    assert 4_089_184_256 - matrix_macs(p, 1000) == extra == 231_211_008


def test_googlenet_params_and_ceil_pooling():
    # Szegedy et al. 2015, Table 1 modules; params = 1x1 + reduce/3x3 + reduce/5x5 + pool proj, with biases.
    modules = {"3a": (192, 64, 96, 128, 16, 32, 32), "3b": (256, 128, 128, 192, 32, 96, 64),
               "4a": (480, 192, 96, 208, 16, 48, 64), "4b": (512, 160, 112, 224, 24, 64, 64),
               "4c": (512, 128, 128, 256, 24, 64, 64), "4d": (512, 112, 144, 288, 32, 64, 64),
               "4e": (528, 256, 160, 320, 32, 128, 128), "5a": (832, 256, 160, 320, 32, 128, 128),
               "5b": (832, 384, 192, 384, 48, 128, 128)}
    params = (64 * 3 * 49 + 64) + (64 * 64 + 64) + (192 * 64 * 9 + 192) + (1024 * 1000 + 1000)
    for cin, n1, r3, n3, r5, n5, pp in modules.values():
        params += cin * n1 + n1 + cin * r3 + r3 + r3 * n3 * 9 + n3 + cin * r5 + r5 + r5 * n5 * 25 + n5 + cin * pp + pp
    net = parse_net(FIXTURES / "googlenet.prototxt")
    assert net.params == params == 6_998_552
    shapes = {layer.name: layer.output_shapes[0] for layer in net.layers}
    # Caffe rounds pooling up: 112 -> 56 (floor would give 55), 56 -> 28, 28 -> 14, 14 -> 7.
    assert shapes["pool1/3x3_s2"] == (10, 64, 56, 56)
    assert shapes["pool2/3x3_s2"] == (10, 192, 28, 28)
    assert shapes["pool3/3x3_s2"] == (10, 480, 14, 14)
    assert shapes["pool4/3x3_s2"] == (10, 832, 7, 7)
    assert shapes["pool5/7x7_s1"] == (10, 1024, 1, 1)
    assert shapes["prob"] == (10, 1000)


def test_batch_comes_from_the_file_or_the_argument():
    ten = profile_prototxt(FIXTURES / "alexnet.prototxt")
    one = profile_prototxt(FIXTURES / "alexnet.prototxt", batch=1)
    assert ten.batch == 10 and one.batch == 1
    assert ten.flops() == pytest.approx(10 * one.flops())
    assert ten.params == one.params


# --- layers by hand ---------------------------------------------------------------------------
def test_small_net_flops_bytes_and_peak_memory(tmp_path):
    path = write(tmp_path, TINY_INPUT + """
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 2 kernel_size: 1 } }
layer { name: "relu" type: "ReLU" bottom: "conv" top: "conv" }
layer { name: "pool" type: "Pooling" bottom: "conv" top: "pool"
        pooling_param { pool: MAX kernel_size: 2 stride: 2 } }
""")
    p = profile_prototxt(path)
    conv, relu, pool = p.ops
    assert (conv.name, conv.kind, conv.module, conv.window) == ("caffe.Convolution", "conv", "conv", "k1s1")
    assert conv.flops == 2 * 2 * 16 * 1 + 32  # 2 channels x 16 positions x 1 MAC, + 32 bias adds
    assert conv.bytes_read == 4 * (16 + 2 + 2) and conv.bytes_written == 4 * 32
    assert relu.flops == 32 and relu.bytes == 4 * 64
    assert pool.flops == 8 * 4 and pool.kind == "reduction"
    assert p.params == 4
    # data (64 B) and conv (128 B) live together; then data is freed before pool (32 B) appears.
    assert p.peak_activation_bytes == 192
    assert p.mode == "infer" and p.activation_bytes == 0 and p.dtype == "fp32"


def test_deconvolution_reshape_flatten_scale_prelu_eltwise(tmp_path):
    path = write(tmp_path, """
input: "x"
input_dim: 1 input_dim: 4 input_dim: 5 input_dim: 5
layer { name: "up" type: "Deconvolution" bottom: "x" top: "up"
        convolution_param { num_output: 2 kernel_size: 4 stride: 2 pad: 1 } }
layer { name: "sc" type: "Scale" bottom: "up" top: "sc" }
layer { name: "pr" type: "PReLU" bottom: "sc" top: "pr" }
layer { name: "sum" type: "Eltwise" bottom: "sc" bottom: "pr" top: "sum" }
layer { name: "r" type: "Reshape" bottom: "sum" top: "r" reshape_param { shape { dim: 0 dim: -1 dim: 10 } } }
layer { name: "f" type: "Flatten" bottom: "r" top: "f" }
""")
    net = parse_net(path)
    shapes = {layer.name: layer.output_shapes[0] for layer in net.layers}
    assert shapes["up"] == (1, 2, 10, 10)  # 2 x (5 - 1) + 4 - 2 x 1
    assert shapes["r"] == (1, 20, 10) and shapes["f"] == (1, 200)
    params = {layer.name: layer.params for layer in net.layers}
    assert params == {"up": 4 * 2 * 16 + 2, "sc": 2, "pr": 2, "sum": 0, "r": 0, "f": 0}
    flops = {layer.name: layer.flops for layer in net.layers}
    assert flops["up"] == 2 * (4 * 25) * (2 * 16) + 200  # every input value meets 2 x 4 x 4 weights; bias adds
    assert flops["sum"] == 200
    p = profile_prototxt(path)
    assert [op.module for op in p.ops] == ["up", "sc", "pr", "sum"]  # Reshape and Flatten move no data


def test_train_phase_layers_are_left_out(tmp_path):
    path = write(tmp_path, TINY_INPUT + """
layer { name: "acc" type: "Accuracy" bottom: "data" top: "acc" include { phase: TRAIN } }
layer { name: "sm" type: "Softmax" bottom: "data" top: "sm" }
""")
    p = profile_prototxt(path)
    assert [op.module for op in p.ops] == ["sm"] and p.ops[0].flops == 5 * 16


# --- bad input --------------------------------------------------------------------------------
def test_unknown_layer_type_names_file_layer_and_type(tmp_path):
    path = write(tmp_path, TINY_INPUT + 'layer { name: "custom1" type: "Python" bottom: "data" top: "y" }\n')
    with pytest.raises(ChipfitError) as err:
        profile_prototxt(path)
    assert str(err.value) == (
        f"Caffe file {path} layer 'custom1' has unknown type 'Python'; use one of the supported types"
        " (BatchNorm, Concat, Convolution, Deconvolution, Dropout, Eltwise, Flatten, InnerProduct, Input, LRN,"
        " PReLU, Pooling, ReLU, Reshape, Scale, Sigmoid, Softmax, Split, TanH)."
    )


def test_unknown_type_suggests_a_close_one(tmp_path):
    path = write(tmp_path, TINY_INPUT + 'layer { name: "c" type: "Convolutoin" bottom: "data" top: "y" }\n')
    with pytest.raises(ChipfitError, match=r"Did you mean Convolution, "):
        profile_prototxt(path)


def test_training_is_refused(tmp_path):
    with pytest.raises(ChipfitError) as err:
        profile_prototxt(FIXTURES / "alexnet.prototxt", mode="train")
    assert "inference only" in str(err.value) and "PyTorch" in str(err.value)


@pytest.mark.parametrize(
    "body, message",
    [
        (TINY_INPUT + 'layer { name: "a" type: "ReLU" bottom: "nope" top: "a" }',
         "layer 'a' reads blob 'nope' that no input or earlier layer produces"),
        ('layer { name: "a" type: "ReLU" bottom: "x" ', "1 message(s) are not closed"),
        ('layers { name: "a" type: RELU }', "old V1 'layers' format"),
        ('layer { name: "a" type: "ReLU" }', "declares no input dims"),
        (TINY_INPUT + 'layer { name: "p" type: "Pooling" bottom: "data" top: "p" pooling_param { kernel_size: 9 } }',
         "layer 'p' makes an empty output"),
    ],
)
def test_bad_prototxt_messages(tmp_path, body, message):
    path = write(tmp_path, body)
    with pytest.raises(ChipfitError, match=message.replace("(", r"\(").replace(")", r"\)")):
        parse_net(path)


def test_size_limit_and_binary_files(tmp_path):
    path = write(tmp_path, TINY_INPUT)
    with pytest.raises(ChipfitError, match="over the 10-byte limit"):
        parse_net(path, max_bytes=10)
    weights = tmp_path / "w.caffemodel"
    weights.write_bytes(b"\x8a\xff\x00\x01")
    with pytest.raises(ChipfitError, match="is not text"):
        parse_net(weights)


# --- the text format reader -------------------------------------------------------------------
def test_protobuf_text_values():
    msg = parse(
        """# comment
        name: "a \\"q\\"" num: -3 ratio: 1.5e-1 flag: true mode: MAX
        dims: [1, 2, 3] sub <k: 0x10> sub { k: 2 }; """,
        "t",
    )
    assert msg.get("name") == 'a "q"' and msg.get("num") == -3 and msg.get("ratio") == 0.15
    assert msg.get("flag") is True and msg.get("mode") == "MAX"
    assert msg.all("dims") == [1, 2, 3]
    assert [s.get("k") for s in msg.all("sub")] == [16, 2]


def test_protobuf_text_errors_give_the_line():
    with pytest.raises(ChipfitError, match=r"^t line 2: unexpected '}'"):
        parse("a: 1\n}", "t")
    with pytest.raises(ChipfitError, match=r"^t line 1: expected ':' or '\{' after 'a'"):
        parse("a 1", "t")
