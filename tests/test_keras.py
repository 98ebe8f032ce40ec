"""Keras 3 .keras files traced on Keras' torch backend: FLOPs by hand, ResNet-50's counts, the
layer-by-layer fallback and the errors for custom layers and broken files."""

import zipfile
from pathlib import Path

import pytest
from torch._subclasses.fake_tensor import FakeTensor

from chipfit.errors import ChipfitError
from chipfit.workload.source import profile

from chipfit.workload.keras_model import _import_keras, profile_keras  # noqa: E402

try:
    keras = _import_keras()  # sets KERAS_BACKEND=torch before keras is imported
except ChipfitError:
    pytest.skip("keras is not installed", allow_module_level=True)


def _small_cnn(path):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(8, 3, padding="same", activation="relu", name="conv")(inputs)
    x = keras.layers.BatchNormalization(name="bn")(x)
    x = keras.layers.Dropout(0.1, name="drop")(x)
    x = keras.layers.GlobalAveragePooling2D(name="pool")(x)
    keras.Model(inputs, keras.layers.Dense(10, name="fc")(x)).save(path)
    return str(path)


@pytest.fixture(scope="module")
def cnn(tmp_path_factory):
    return _small_cnn(tmp_path_factory.mktemp("keras") / "cnn.keras")


def test_small_cnn_flops_and_params_by_hand(cnn):
    prof = profile(cnn, mode="infer", batch=2)
    kinds, layers = prof.by_kind(), prof.by_layer(1)
    # Conv 3x3, 3 -> 8 channels, 'same' on 32x32, batch 2: 2 * 2*32*32*8 outputs * 27 MACs.
    assert kinds["conv"]["flops"] == 2 * (2 * 32 * 32 * 8) * 27 == 884_736
    # Keras adds the conv bias and the ReLU as separate element-wise ops: 16,384 each.
    assert layers["conv"]["forward_flops"] == 884_736 + 2 * (2 * 32 * 32 * 8)
    # Dense 8 -> 10 at batch 2, plus its 20 bias adds.
    assert kinds["matmul"]["flops"] == 2 * 2 * 8 * 10
    assert layers["fc"]["forward_flops"] == 320 + 20
    # conv 3*3*3*8+8, BN 4*8 (gamma, beta and the two moving statistics), dense 8*10+10; no seed state.
    assert prof.params == 224 + 32 + 90
    assert prof.trainable_params == 224 + 16 + 90
    assert prof.model == "cnn"


def test_small_cnn_trains_with_backward_and_optimizer(cnn):
    prof = profile(cnn, mode="train", batch=2)
    assert prof.flops("backward") > prof.flops("forward")
    assert prof.flops("optimizer") > 0
    assert prof.by_layer(1)["drop"]["forward_flops"] > 0  # dropout runs in training only


def test_keras_resnet50_counts_its_batchnorm_statistics():
    model = keras.applications.ResNet50(weights=None)
    prof = profile_keras(model, mode="infer")
    # Keras' own count includes 53,120 BN moving statistics. Trainable 25,583,592 exceeds the torch
    # zoo's 25,557,032 by 26,560: Keras' ResNet50 has a bias on every convolution, torchvision none.
    assert prof.params == model.count_params() == 25_636_712
    assert prof.trainable_params == 25_583_592 == 25_557_032 + 26_560
    assert prof.uncounted == {}
    # Keras' ResNet50 is v1 (stride on the first 1x1 conv), as He et al.'s Caffe prototxt: the
    # convolutions agree exactly, the whole forward within 1% (Keras adds conv biases, Caffe's
    # BatchNorm+Scale are priced as norms).
    caffe = profile(str(Path(__file__).parent / "fixtures" / "caffe" / "resnet50_v1.prototxt"), mode="infer")
    assert prof.by_kind()["conv"]["flops"] == caffe.by_kind()["conv"]["flops"]
    assert prof.flops("forward") == pytest.approx(caffe.flops("forward"), rel=0.01)
    assert prof.trainable_params == caffe.params + 26_560
    assert not isinstance(model.get_layer("conv1_conv").kernel.value, FakeTensor)  # real weights restored


def test_unregistered_custom_layer_is_named(tmp_path):
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2.0

    inputs = keras.Input((4,))
    keras.Model(inputs, keras.layers.Dense(3)(Doubler()(inputs))).save(tmp_path / "custom.keras")
    with pytest.raises(ChipfitError) as err:
        profile(str(tmp_path / "custom.keras"), mode="infer")
    assert "uses custom layer class Doubler, which is not registered" in str(err.value)


@keras.saving.register_keras_serializable(package="chipfit_tests")
class MaxScale(keras.layers.Layer):
    """Reads a tensor value in Python: cannot run on fake tensors."""

    def call(self, x):
        return x / float(keras.ops.convert_to_numpy(keras.ops.max(x)))


def test_layers_that_do_not_trace_fall_back_layer_by_layer(tmp_path):
    inputs = keras.Input((16,))
    x = keras.layers.Dense(32, name="d1")(inputs)
    x = MaxScale(name="scale")(x)
    keras.Model(inputs, keras.layers.Dense(4, name="d2")(x)).save(tmp_path / "fb.keras")
    prof = profile(str(tmp_path / "fb.keras"), mode="infer", batch=3)
    assert prof.by_kind()["matmul"]["flops"] == 2 * 3 * (16 * 32 + 32 * 4)
    assert prof.uncounted == {"keras.MaxScale": 1}
    fallback = next(op for op in prof.ops if not op.counted)
    assert (fallback.bytes_read, fallback.bytes_written) == (4 * 3 * 32, 4 * 3 * 32)
    assert any("each layer was traced alone" in n for n in prof.notes)
    assert any(n.endswith("scale (MaxScale).") for n in prof.notes)
    assert prof.params == 16 * 32 + 32 + 32 * 4 + 4


def test_broken_files_are_one_sentence(tmp_path):
    bad = tmp_path / "bad.keras"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ChipfitError, match="is not a .keras archive"):
        profile(str(bad), mode="infer")
    with zipfile.ZipFile(bad, "w") as archive:
        archive.writestr("../escape.txt", "x")
        archive.writestr("config.json", "{}")
    with pytest.raises(ChipfitError, match="holds members outside the archive"):
        profile(str(bad), mode="infer")
    with pytest.raises(ChipfitError, match="does not exist"):
        profile(str(tmp_path / "none.keras"), mode="infer")


def test_truncated_file_is_refused(cnn, tmp_path):
    data = open(cnn, "rb").read()
    cut = tmp_path / "cut.keras"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ChipfitError, match="cut.keras"):
        profile(str(cut), mode="infer")


def test_half_precision_inference_is_refused_with_the_fix(cnn):
    with pytest.raises(ChipfitError, match="give --precision fp32"):
        profile(cnn, mode="infer", precision="bf16")
