"""One architecture, several sources: the PyTorch trace, its ONNX export and the Caffe prototxt
agree on parameters exactly and on forward FLOPs within 1% (issue 5's cross-checks)."""

import warnings

import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnx")

import chipfit  # noqa: E402
from chipfit.workload import zoo  # noqa: E402
from chipfit.workload.caffe import profile_prototxt  # noqa: E402
from chipfit.workload.onnx_model import profile_onnx  # noqa: E402

RESNET50_PARAMS = 25_557_032  # torchvision's published count


def onnx_of(name: str, seq_len, path):
    """Export the zoo module itself (real weights, eval mode) with torch's TorchScript exporter."""
    entry = zoo.get(name)
    inputs, _ = entry.make_batch(1, seq_len)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(entry.build().eval(), inputs, str(path), dynamo=False, do_constant_folding=False,
                          input_names=[f"input{i}" for i in range(len(inputs))])
    return profile_onnx(path)


def test_resnet50_from_pytorch_onnx_and_caffe(tmp_path):
    traced = chipfit.profile("resnet50", mode="infer", batch=1)
    exported = onnx_of("resnet50", None, tmp_path / "resnet50.onnx")
    caffe = profile_prototxt("tests/fixtures/caffe/resnet50.prototxt", batch=1)
    assert traced.params == exported.params == caffe.params == RESNET50_PARAMS
    for other in (exported, caffe):
        assert other.flops("forward") == pytest.approx(traced.flops("forward"), rel=0.01)
    # Convolutions and the classifier agree to the FLOP: 4.089 G multiply-adds, doubled, plus bias adds.
    conv = {p: sum(op.flops for op in prof.ops if op.kind in ("conv", "matmul")) for p, prof in
            (("torch", traced), ("onnx", exported), ("caffe", caffe))}
    assert conv["torch"] == conv["onnx"] == conv["caffe"]


def test_bert_from_pytorch_and_its_onnx_export(tmp_path):
    traced = chipfit.profile("bert-base-uncased", mode="infer", batch=1, seq=128)
    exported = onnx_of("bert-base-uncased", 128, tmp_path / "bert.onnx")
    # The masked-LM forward never uses the pooler, so the exporter drops its 768x768 weight and bias.
    assert exported.params == traced.params - (768 * 768 + 768)
    assert traced.params == 109_482_240
    assert exported.flops("forward") == pytest.approx(traced.flops("forward"), rel=0.01)
