"""source.resolve/profile dispatch by input: config.json, .keras, .onnx, .prototxt, torchvision:/timm: names."""

import importlib.util
from pathlib import Path

import pytest
import torch

from chipfit.errors import ChipfitError
from chipfit.workload.source import ParsedFile, profile, resolve

FIXTURES = Path(__file__).parent / "fixtures"
ALEXNET = FIXTURES / "caffe" / "alexnet.prototxt"


def test_prototxt_goes_to_the_caffe_parser():
    from chipfit.workload.caffe import profile_prototxt

    source = resolve(str(ALEXNET))
    assert isinstance(source, ParsedFile) and source.name == "alexnet" and source.default_seq_len is None
    via_source = profile(str(ALEXNET), mode="infer", batch=2)
    direct = profile_prototxt(ALEXNET, batch=2)
    assert (via_source.params, via_source.flops(), via_source.batch) == (direct.params, direct.flops(), 2)


def test_parsed_files_cannot_be_built_or_given_onnx_inputs():
    with pytest.raises(ChipfitError, match="is parsed, not built"):
        resolve(str(ALEXNET)).build()
    with pytest.raises(ChipfitError, match="leave --input out"):
        profile(str(ALEXNET), mode="infer", input_shapes={"data": (1, 3, 227, 227)})
    with pytest.raises(ChipfitError, match="Input shapes are given for ONNX files only"):
        profile("resnet18", mode="infer", input_shapes={"x": (1, 3, 224, 224)})


def test_onnx_goes_to_the_onnx_parser_with_input_shapes(tmp_path):
    pytest.importorskip("onnx")
    path = tmp_path / "linear.onnx"
    torch.onnx.export(torch.nn.Linear(8, 16), (torch.zeros(2, 8),), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}})
    prof = profile(str(path), mode="infer", batch=1, input_shapes={"x": (4, 8)})
    # Gemm 4x8 @ 8x16 with its bias: 2 FLOPs per multiply-add plus one add per output.
    assert prof.flops() == 2 * 4 * 8 * 16 + 4 * 16
    assert prof.params == 8 * 16 + 16
    with pytest.raises(ChipfitError, match="inference only"):
        profile(str(path), mode="train")


def test_config_json_and_its_folder_are_hugging_face():
    pytest.importorskip("transformers")
    from chipfit.workload.hf_config import HFConfigModel

    assert isinstance(resolve(str(FIXTURES / "hf" / "tiny-gpt2")), HFConfigModel)
    assert isinstance(resolve(str(FIXTURES / "hf" / "tiny-gpt2" / "config.json")), HFConfigModel)
    with pytest.raises(ChipfitError, match="does not exist"):
        resolve("no/such/config.json")


def test_hugging_face_source_builds_for_real_runs():
    pytest.importorskip("transformers")
    source = resolve(str(FIXTURES / "hf" / "tiny-llama"))
    model = source.build().eval()
    inputs, _ = source.make_batch(2, 5)
    with torch.no_grad():
        logits = model(*inputs).logits
    assert logits.shape == (2, 5, 256)
    assert torch.isfinite(logits).all()  # weights really initialised outside fake mode


def test_keras_file_builds_for_real_runs(tmp_path):
    from chipfit.workload.keras_model import KerasFile, _import_keras

    try:
        keras = _import_keras()
    except ChipfitError:
        pytest.skip("keras is not installed")
    inputs = keras.Input((6,))
    keras.Model(inputs, keras.layers.Dense(3)(inputs)).save(tmp_path / "dense.keras")
    source = resolve(str(tmp_path / "dense.keras"))
    assert isinstance(source, KerasFile)
    model = source.build()
    batch, _ = source.make_batch(4, None)
    assert model(*batch).shape == (4, 3)


@pytest.mark.parametrize("prefix", ["torchvision", "timm"])
def test_hub_names_need_their_package(prefix):
    if importlib.util.find_spec(prefix) is not None:
        pytest.skip(f"{prefix} is installed")
    with pytest.raises(ChipfitError) as err:
        resolve(f"{prefix}:resnet50")
    assert str(err.value) == (
        f"Models named '{prefix}:NAME' need the {prefix} package, which is not installed; install a {prefix} "
        "build that matches your torch, or use a zoo name."
    )


def test_zoo_names_and_factories_still_resolve():
    assert resolve("resnet18").name == "resnet18"
    assert resolve("tests.fixtures.user_models:two_layer").name == "tests.fixtures.user_models:two_layer"
