"""A corpus of bad inputs: each one gives a non-zero exit status and one sentence naming the input.

Every fixture is made in tmp_path by its case's builder, which returns the command line (with
{tmp} standing for the folder). Exit status 1 is a bad file or an impossible request, 2 a bad
argument. No case may print a traceback or a Python exception name as the whole message.
"""

from __future__ import annotations

import json
import logging
import os
import sqlite3
import zipfile
from pathlib import Path

import pytest

from chipfit import cli

HW = ["--hardware", "nvidia-h100-sxm5-80gb", "--no-local"]


# --- builders ----------------------------------------------------------------------------------
def onnx_model(path: Path, nodes=None, inputs=None, initializers=(), opset=17, outputs=None) -> Path:
    import onnx
    from onnx import TensorProto, helper

    nodes = nodes if nodes is not None else [helper.make_node("Relu", ["x"], ["y"], name="relu")]
    inputs = inputs if inputs is not None else [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])]
    outputs = outputs or [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)]
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(initializers))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    path.write_bytes(model.SerializeToString())
    return path


def external_tensor(location: str, **fields) -> "object":
    from onnx import TensorProto

    t = TensorProto(name="shape", data_type=TensorProto.INT64, dims=[2])
    t.data_location = TensorProto.EXTERNAL
    for key, value in {"location": location, **fields}.items():
        entry = t.external_data.add()
        entry.key, entry.value = key, str(value)
    return t


def reshape_with_external(tmp: Path, **fields) -> Path:
    from onnx import TensorProto, helper

    (tmp / "data.bin").write_bytes(bytes(16))
    node = helper.make_node("Reshape", ["x", "shape"], ["y"], name="reshape")
    return onnx_model(tmp / "m.onnx", nodes=[node],
                      inputs=[helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8])],
                      initializers=[external_tensor(fields.pop("location", "data.bin"), **fields)])


PROTOTXT_HEAD = 'name: "n"\nlayer { name: "data" type: "Input" top: "data" input_param { shape { dim: 1 dim: 3 dim: 8 dim: 8 } } }\n'


def prototxt(tmp: Path, body: str, head: str = PROTOTXT_HEAD) -> Path:
    path = tmp / "net.prototxt"
    path.write_text(head + body)
    return path


def conv(**fields) -> str:
    params = {"num_output": 4, "kernel_size": 3, **fields}
    inner = " ".join(f"{k}: {v}" for k, v in params.items() if v is not None)
    return f'layer {{ name: "c" type: "Convolution" bottom: "data" top: "c" convolution_param {{ {inner} }} }}\n'


def hf_config(tmp: Path, fields: dict | str) -> Path:
    path = tmp / "config.json"
    base = {"model_type": "gpt2", "n_layer": 2, "n_embd": 64, "n_head": 4, "vocab_size": 100, "n_positions": 64}
    path.write_text(fields if isinstance(fields, str) else json.dumps(base | fields))
    return path


def keras_archive(tmp: Path, members: dict[str, bytes | str], name: str = "m.keras") -> Path:
    path = tmp / name
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as z:
        for member, data in members.items():
            z.writestr(member, data)
    return path


def h5_file(tmp: Path, config: str | None) -> Path:
    import h5py

    path = tmp / "m.h5"
    with h5py.File(path, "w") as f:
        if config is not None:
            f.attrs["model_config"] = config
        f.create_dataset("w", data=[1.0, 2.0])
    return path


def catalog_dir(tmp: Path, text: str, name: str = "mine.toml") -> Path:
    folder = tmp / "cat"
    folder.mkdir(exist_ok=True)
    (folder / name).write_text(text)
    return folder


CATALOG_ENTRY = """[sources]
ds = "Vendor datasheet, https://example.com, 2026-01-01"

[[hardware]]
id = "my-chip"
name = "My chip"
vendor = "Me"
hw_class = "gpu"
memory_bytes = {{ value = {mem}, source = "ds" }}
"""


def module_file(tmp: Path, name: str, text: str) -> str:
    (tmp / f"{name}.py").write_text(text)
    return name


def nested_json(depth: int) -> str:
    return '{"model_type": "gpt2", "x": ' + "[" * depth + "]" * depth + "}"


def store_with_run(path: Path) -> Path:
    from chipfit.measurement import Environment, Measurement
    from chipfit.store import Store

    env = Environment(device="cpu", device_name="cpu", hardware_id="cpu", threads=1, hostname="h", platform="p",
                      python_version="3", torch_version="2", chipfit_version="0", created_at="2026-01-01T00:00:00")
    with Store(path) as store:
        store.record_run("bench", "cpu", env, [
            Measurement(kind="matmul", device="cpu", precision="fp32", shape={"n": i}, flops=1e9, bytes=1e6,
                        median_s=1e-3, min_s=1e-3, max_s=1e-3, repetitions=3, label="x" * 2000)
            for i in range(50)])
    return path


def corrupt(path: Path) -> Path:
    """Overwrite a page in the middle of a chipfit store with garbage."""
    con = sqlite3.connect(path)
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.execute("PRAGMA journal_mode = DELETE")
    con.close()
    data = bytearray(path.read_bytes())
    page = 4096
    data[3 * page: 3 * page + 200] = b"\xff" * 200
    path.write_bytes(bytes(data))
    return path


def symlink_loop(tmp: Path, name: str) -> Path:
    a, b = tmp / name, tmp / ("other-" + name)
    a.symlink_to(b)
    b.symlink_to(a)
    return a


def folder(tmp: Path, name: str) -> Path:
    path = tmp / name
    path.mkdir()
    return path


# --- the corpus: (id, builder(tmp) -> argv, exit status, message regex) ----------------------
def onnx_cases():
    from onnx import TensorProto, helper

    vi = helper.make_tensor_value_info
    yield "onnx-empty", lambda t: ["profile", str(_w(t / "m.onnx", b""))], 1, r"m.onnx is truncated or not an ONNX model"
    yield "onnx-garbage", lambda t: ["profile", str(_w(t / "m.onnx", b"\x08\xff" * 50))], 1, \
        r"truncated or not an ONNX model"
    yield "onnx-truncated", lambda t: ["profile", str(_w(t / "m.onnx", onnx_model(t / "a.onnx").read_bytes()[:-9]))], \
        1, r"truncated or not an ONNX model"
    yield "onnx-name-not-utf8", lambda t: ["profile", str(_w(t / "m.onnx", onnx_model(t / "a.onnx").read_bytes().replace(
        b"relu", b"\xff\xfelu")))], 1, r"m.onnx is truncated or not an ONNX model: some of its names are not UTF-8"
    yield "onnx-no-nodes", lambda t: ["profile", str(onnx_model(t / "m.onnx", nodes=[]))], 1, r"holds no graph of nodes"
    yield "onnx-cycle", lambda t: ["profile", str(onnx_model(t / "m.onnx", nodes=[
        helper.make_node("Add", ["x", "b"], ["a"], name="first"), helper.make_node("Relu", ["a"], ["b"], name="second"),
        helper.make_node("Relu", ["b"], ["y"], name="third")]))], 1, r"node 'first' reads 'b' before any node makes it"
    yield "onnx-unsorted", lambda t: ["profile", str(onnx_model(t / "m.onnx", nodes=[
        helper.make_node("Relu", ["a"], ["y"], name="late"), helper.make_node("Relu", ["x"], ["a"], name="early")]))], \
        1, r"cycle or is not in topological order"
    yield "onnx-dim-beyond-int32", lambda t: ["profile", str(onnx_model(t / "m.onnx", inputs=[
        vi("x", TensorProto.FLOAT, [1, 2**40])]))], 1, r"input 'x' has dimension 1099511627776"
    yield "onnx-dim-int64-max", lambda t: ["profile", str(onnx_model(t / "m.onnx", inputs=[
        vi("x", TensorProto.FLOAT, [1, 2**63 - 1])]))], 1, r"every dimension must be a whole number from 1 to"
    yield "onnx-elements-overflow", lambda t: ["profile", str(onnx_model(t / "m.onnx", inputs=[
        vi("x", TensorProto.FLOAT, [2**30, 2**30, 2**30])]))], 1, r"more than the 2.81e\+14 elements"
    yield "onnx-rank-20", lambda t: ["profile", str(onnx_model(t / "m.onnx", inputs=[
        vi("x", TensorProto.FLOAT, [1] * 20)]))], 1, r"tensor of 20 axes"
    yield "onnx-dim-zero", lambda t: ["profile", str(onnx_model(t / "m.onnx", inputs=[
        vi("x", TensorProto.FLOAT, [1, 0])]))], 1, r"unresolved dimensions: x \(1, 0\)"
    yield "onnx-symbolic", lambda t: ["profile", str(onnx_model(t / "m.onnx", inputs=[
        vi("x", TensorProto.FLOAT, [1, "n"])]))], 1, r"unresolved dimensions: x \(1, n\)"
    yield "onnx-train", lambda t: ["profile", str(onnx_model(t / "m.onnx")), "--train"], 1, \
        r"can be profiled for inference only"
    yield "onnx-external-absolute", lambda t: ["profile", str(reshape_with_external(t, location="/etc/passwd"))], 1, \
        r"outside its own folder"
    yield "onnx-external-parent", lambda t: ["profile", str(reshape_with_external(t, location="../x.bin"))], 1, \
        r"outside its own folder"
    yield "onnx-external-missing", lambda t: ["profile", str(reshape_with_external(t, location="none.bin"))], 1, \
        r"needs external data 'none.bin', which is not in"
    yield "onnx-external-offset-word", lambda t: ["profile", str(reshape_with_external(t, offset="abc"))], 1, \
        r"has offset 'abc', not a whole number of bytes"
    yield "onnx-external-offset-negative", lambda t: ["profile", str(reshape_with_external(t, offset=-8))], 1, \
        r"has offset '-8', not a whole number of bytes"
    yield "onnx-external-length-word", lambda t: ["profile", str(reshape_with_external(t, length="1e3"))], 1, \
        r"has length '1e3'"
    yield "onnx-external-length-wrong", lambda t: ["profile", str(reshape_with_external(t, length=4))], 1, \
        r"gives length 4 for tensor 'shape', which holds 16 bytes"
    yield "onnx-external-offset-past-end", lambda t: ["profile", str(reshape_with_external(t, offset=10**12))], 1, \
        r"ends early for tensor 'shape'"
    yield "onnx-input-unknown", lambda t: ["profile", str(onnx_model(t / "m.onnx")), "--input", "z=1x8"], 1, \
        r"has no input 'z'"
    yield "onnx-input-rank", lambda t: ["profile", str(onnx_model(t / "m.onnx")), "--input", "x=1x8x8"], 1, \
        r"give 2 values, not 3"
    yield "onnx-input-fixed-axis", lambda t: ["profile", str(onnx_model(t / "m.onnx")), "--input", "x=1x9"], 1, \
        r"fixed size 8 on axis 1"
    yield "onnx-input-bad-syntax", lambda t: ["profile", str(onnx_model(t / "m.onnx")), "--input", "x=1xa"], 2, \
        r"is not NAME=DIMS"
    yield "onnx-folder", lambda t: ["profile", str(folder(t, "m.onnx"))], 1, r"m.onnx is a folder, not a file"
    yield "onnx-symlink-loop", lambda t: ["profile", str(symlink_loop(t, "m.onnx"))], 1, \
        r"m.onnx cannot be opened \(Too many levels of symbolic links\)"
    yield "onnx-missing", lambda t: ["profile", str(t / "none.onnx")], 1, r"none.onnx does not exist"


def caffe_cases():
    yield "caffe-stride-0", lambda t: ["profile", str(prototxt(t, conv(stride=0)))], 1, \
        r"layer 'c' gives stride 0; give 1 or more"
    yield "caffe-stride-negative", lambda t: ["profile", str(prototxt(t, conv(stride=-2)))], 1, r"gives stride -2"
    yield "caffe-dilation-0", lambda t: ["profile", str(prototxt(t, conv(dilation=0)))], 1, r"gives dilation 0"
    yield "caffe-stride-h-0", lambda t: ["profile", str(prototxt(t, conv(stride_h=0, stride_w=1)))], 1, \
        r"gives stride_h/stride_w 0"
    yield "caffe-pad-negative", lambda t: ["profile", str(prototxt(t, conv(pad=-1)))], 1, r"gives pad -1; give 0 or more"
    yield "caffe-kernel-negative", lambda t: ["profile", str(prototxt(t, conv(kernel_size=-3)))], 1, \
        r"gives kernel_size -3"
    yield "caffe-num-output-word", lambda t: ["profile", str(prototxt(t, conv(num_output="many")))], 1, \
        r"layer 'c' has a field that is 'many', not a whole number"
    yield "caffe-num-output-string", lambda t: ["profile", str(prototxt(t, conv(num_output='"4"')))], 1, \
        r"has a field that is '4', not a whole number"
    yield "caffe-num-output-1e30", lambda t: ["profile", str(prototxt(t, conv(num_output="1e30")))], 1, \
        r"has a field that is 1e\+30, beyond the 2147483647"
    yield "caffe-num-output-fraction", lambda t: ["profile", str(prototxt(t, conv(num_output=3.5)))], 1, \
        r"has a field that is 3.5, not a whole number"
    yield "caffe-num-output-zero", lambda t: ["profile", str(prototxt(t, conv(num_output=0)))], 1, \
        r"has num_output 0 and group 1"
    yield "caffe-num-output-inf", lambda t: ["profile", str(prototxt(t, conv(num_output="inf")))], 1, \
        r"has a field that is"
    yield "caffe-dim-fraction", lambda t: ["profile", str(prototxt(t, "", head=PROTOTXT_HEAD.replace("dim: 8 dim: 8",
                                                                                             "dim: 3.5 dim: 8")))], 1, \
        r"layer 'data' has a field that is 3.5, not a whole number"
    yield "caffe-dim-huge", lambda t: ["profile", str(prototxt(t, "", head=PROTOTXT_HEAD.replace(
        "dim: 8 dim: 8", "dim: 2000000000 dim: 2000000000")))], 1, r"more than the 2.81e\+14 elements"
    yield "caffe-dim-zero", lambda t: ["profile", str(prototxt(t, "", head=PROTOTXT_HEAD.replace("dim: 3", "dim: 0")))], \
        1, r"has dimension 0 in shape \(1, 0, 8, 8\)"
    yield "caffe-dim-negative", lambda t: ["profile", str(prototxt(t, "", head=PROTOTXT_HEAD.replace("dim: 3",
                                                                                             "dim: -3")))], 1, \
        r"has dimension -3"
    yield "caffe-input-dim-fraction", lambda t: ["profile", str(prototxt(t, "", head='input: "data"\n' + "input_dim: 1\n"
                                                                  "input_dim: 3.5\ninput_dim: 8\ninput_dim: 8\n"))], 1, \
        r"has an input dim that is 3.5, not a whole number"
    yield "caffe-channels-1e30", lambda t: ["profile", str(prototxt(t, conv(num_output=10**30)))], 1, \
        r"beyond the 2147483647"
    yield "caffe-no-kernel", lambda t: ["profile", str(prototxt(t, conv(kernel_size=None)))], 1, r"gives no kernel_size"
    yield "caffe-unknown-type", lambda t: ["profile", str(prototxt(t, 'layer { name: "q" type: "Quux" bottom: "data" '
                                                                  'top: "q" }\n'))], 1, r"has unknown type 'Quux'"
    yield "caffe-missing-bottom", lambda t: ["profile", str(prototxt(t, 'layer { name: "r" type: "ReLU" '
                                                                  'bottom: "nope" top: "r" }\n'))], 1, \
        r"reads blob 'nope' that no input or earlier layer produces"
    yield "caffe-v1", lambda t: ["profile", str(prototxt(t, "layers { name: 'x' }\n"))], 1, r"old V1 'layers' format"
    yield "caffe-no-input", lambda t: ["profile", str(prototxt(t, conv(), head='name: "n"\n'))], 1, \
        r"declares no input dims"
    yield "caffe-binary", lambda t: ["profile", str(_w(t / "w.prototxt", b"\x00\xff\xfe" * 30))], 1, r"is not text"
    yield "caffe-unclosed", lambda t: ["profile", str(prototxt(t, "layer { name: 'x'\n"))], 1, r"Caffe file .*net.prototxt"
    yield "caffe-input-dim-count", lambda t: ["profile", str(prototxt(t, "", head='input: "data"\ninput_dim: 1\n'))], 1, \
        r"gives 1 input_dim values for 1 input"
    yield "caffe-axis", lambda t: ["profile", str(prototxt(t, conv(axis=7)))], 1, r"uses axis 7 on a blob of 4 axes"
    yield "caffe-group", lambda t: ["profile", str(prototxt(t, conv(group=2)))], 1, r"channels must split evenly"
    yield "caffe-empty-output", lambda t: ["profile", str(prototxt(t, conv(kernel_size=9)))], 1, r"makes an empty output"
    yield "caffe-reshape", lambda t: ["profile", str(prototxt(t, 'layer { name: "r" type: "Reshape" bottom: "data" '
                                                             'top: "r" reshape_param { shape { dim: 5 } } }\n'))], 1, \
        r"holds a different number of values"
    yield "caffe-rank-20", lambda t: ["profile", str(prototxt(t, "", head=PROTOTXT_HEAD.replace(
        "dim: 8 dim: 8", "dim: 1 " * 18)))], 1, r"tensor of 20 axes"
    yield "caffe-folder", lambda t: ["profile", str(folder(t, "net.prototxt"))], 1, r"net.prototxt is a folder"
    yield "caffe-symlink-loop", lambda t: ["profile", str(symlink_loop(t, "net.prototxt"))], 1, \
        r"cannot be opened \(Too many levels of symbolic links\)"
    yield "caffe-train", lambda t: ["profile", str(prototxt(t, conv())), "--train"], 1, r"inference"


def keras_cases():
    config = json.dumps({"class_name": "Sequential", "config": {"name": "s", "layers": []}})
    yield "keras-not-zip", lambda t: ["profile", str(_w(t / "m.keras", b"not a zip"))], 1, \
        r"m.keras is not a .keras archive \(a zip file\)"
    yield "keras-truncated", lambda t: ["profile", str(_w(t / "m.keras", keras_archive(
        t, {"config.json": config}, "a.keras").read_bytes()[:-30]))], 1, r"m.keras is (truncated or corrupt|not a .keras)"
    yield "keras-no-config", lambda t: ["profile", str(keras_archive(t, {"x.txt": "hi"}))], 1, \
        r"has no readable config.json"
    yield "keras-config-not-json", lambda t: ["profile", str(keras_archive(t, {"config.json": "{oops"}))], 1, \
        r"is truncated or corrupt"
    yield "keras-config-deep", lambda t: ["profile", str(keras_archive(t, {"config.json": nested_json(300)}))], 1, \
        r"config.json nests deeper than 256 levels"
    yield "keras-config-very-deep", lambda t: ["profile", str(keras_archive(t, {"config.json": nested_json(100_000)}))], \
        1, r"nested deeper than Python can parse"
    yield "keras-member-outside", lambda t: ["profile", str(keras_archive(t, {"config.json": config,
                                                                              "../evil": "x"}))], 1, \
        r"holds members outside the archive \(../evil\)"
    yield "keras-lambda", lambda t: ["profile", str(keras_archive(t, {"config.json": json.dumps(
        {"class_name": "Sequential", "config": {"name": "s", "layers": [
            {"class_name": "Lambda", "config": {"name": "l", "function": "x"}}]}})}))], 1, \
        r"m.keras cannot be loaded"
    yield "keras-custom", lambda t: ["profile", str(keras_archive(t, {"config.json": json.dumps(
        {"class_name": "Sequential", "config": {"name": "s", "layers": [
            {"module": "mine", "class_name": "Thing", "registered_name": "mine>Thing", "config": {}}]}})}))], 1, \
        r"uses custom layer class Thing, which is not registered"
    yield "keras-nan", lambda t: ["profile", str(keras_archive(t, {"config.json": '{"class_name": "Sequential", '
                                                                                  '"config": {"x": NaN}}'}))], 1, \
        r"holds the number nan"
    yield "keras-folder", lambda t: ["profile", str(folder(t, "m.keras"))], 1, r"m.keras is a folder"
    yield "keras-symlink-loop", lambda t: ["profile", str(symlink_loop(t, "m.keras"))], 1, r"Too many levels"
    yield "h5-not-hdf5", lambda t: ["profile", str(_w(t / "m.h5", b"plain text"))], 1, r"m.h5 is not an HDF5 file"
    yield "h5-weights-only", lambda t: ["profile", str(h5_file(t, None))], 1, r"holds weights only"
    yield "h5-config-not-json", lambda t: ["profile", str(h5_file(t, "{oops"))], 1, r"model_config that is not valid JSON"
    yield "h5-config-deep", lambda t: ["profile", str(h5_file(t, nested_json(300)))], 1, r"nests deeper than 256"
    yield "h5-config-list", lambda t: ["profile", str(h5_file(t, "[1, 2]"))], 1, r"model_config that is not a model"
    yield "h5-lambda", lambda t: ["profile", str(h5_file(t, json.dumps({"class_name": "Sequential", "config": {
        "name": "s", "layers": [{"class_name": "Lambda", "config": {"name": "l", "function": ["x", None, None],
                                                                   "function_type": "lambda"}}]}})))], 1, \
        r"m.h5 cannot be loaded"
    yield "h5-folder", lambda t: ["profile", str(folder(t, "m.h5"))], 1, r"m.h5 is a folder"


def hf_cases():
    yield "hf-not-json", lambda t: ["profile", str(hf_config(t, "{oops"))], 1, r"config.json is not valid JSON"
    yield "hf-no-model-type", lambda t: ["profile", str(hf_config(t, "{}"))], 1, r'has no "model_type" field'
    yield "hf-unknown-type", lambda t: ["profile", str(hf_config(t, {"model_type": "quux"}))], 1, \
        r"model type 'quux'.*which chipfit does not build"
    yield "hf-layers-1e9", lambda t: ["profile", str(hf_config(t, {"n_layer": 10**9}))], 1, \
        r"field 'n_layer' is 1000000000; give a whole number from 0 to 1000"
    yield "hf-layers-1e9-float", lambda t: ["profile", str(hf_config(t, {"n_layer": 1e9}))], 1, \
        r"field 'n_layer' is 1000000000.0"
    yield "hf-num-hidden-layers-huge", lambda t: ["profile", str(hf_config(t, {"model_type": "llama",
                                                                               "num_hidden_layers": 5000}))], 1, \
        r"field 'num_hidden_layers' is 5000"
    yield "hf-layers-negative", lambda t: ["profile", str(hf_config(t, {"n_layer": -1}))], 1, r"field 'n_layer' is -1"
    yield "hf-layers-fraction", lambda t: ["profile", str(hf_config(t, {"n_layer": 2.5}))], 1, r"field 'n_layer' is 2.5"
    yield "hf-layers-nan", lambda t: ["profile", str(hf_config(t, '{"model_type": "gpt2", "n_layer": NaN}'))], 1, \
        r"holds the number nan"
    yield "hf-infinity", lambda t: ["profile", str(hf_config(t, '{"model_type": "gpt2", "n_embd": Infinity}'))], 1, \
        r"holds the number inf"
    yield "hf-width-beyond-int32", lambda t: ["profile", str(hf_config(t, {"n_embd": 2**40}))], 1, \
        r"field 'n_embd' is 1099511627776, beyond the 2147483647"
    yield "hf-nested-100", lambda t: ["profile", str(hf_config(t, nested_json(100)))], 1, r"nests deeper than 64 levels"
    yield "hf-nested-100000", lambda t: ["profile", str(hf_config(t, nested_json(100_000)))], 1, \
        r"nests deeper than Python can parse"
    yield "hf-too-big", lambda t: ["profile", str(hf_config(t, " " * (2**20 + 1)))], 1, r"more than the 1048576"
    yield "hf-architecture", lambda t: ["profile", str(hf_config(t, {"architectures": ["BertModel"]}))], 1, \
        r"names architecture 'BertModel', which is not a gpt2 model class"
    yield "hf-heads-do-not-divide", lambda t: ["profile", str(hf_config(t, {"n_head": 12}))], 1, \
        r"config.json gives sizes transformers cannot build a GPT2LMHeadModel from \(ValueError: .embed_dim. must be"
    yield "hf-folder-named-config", lambda t: ["profile", str(folder(t, "config.json"))], 1, \
        r"config.json is a folder"
    yield "hf-symlink-loop", lambda t: ["profile", str(symlink_loop(t, "config.json"))], 1, r"Too many levels"
    yield "hf-binary", lambda t: ["profile", str(_w(t / "config.json", b"\xff\xfe\x00"))], 1, r"is not valid JSON"


def catalog_cases():
    compare = ["compare", "resnet18", "--hardware", "my-chip", "--no-local"]
    yield "catalog-nan", lambda t: ["--catalog", str(catalog_dir(t, CATALOG_ENTRY.format(mem="nan"))), *compare], 1, \
        r"mine.toml holds the number nan; give finite numbers only"
    yield "catalog-inf", lambda t: ["--catalog", str(catalog_dir(t, CATALOG_ENTRY.format(mem="inf"))), *compare], 1, \
        r"holds the number inf"
    yield "catalog-minus-inf", lambda t: ["--catalog", str(catalog_dir(t, CATALOG_ENTRY.format(mem="-inf"))),
                                          *compare], 1, r"holds the number -inf"
    yield "catalog-deep", lambda t: ["--catalog", str(catalog_dir(t, "x = " + "[" * 100 + "]" * 100 + "\n")), *compare], \
        1, r"nests deeper than 64 levels"
    yield "catalog-very-deep", lambda t: ["--catalog", str(catalog_dir(t, "x = " + "[" * 50_000 + "]" * 50_000 + "\n")),
                                          *compare], 1, r"nests deeper than Python can parse|nests deeper than 64"
    yield "catalog-syntax", lambda t: ["--catalog", str(catalog_dir(t, "[[hardware]\n")), *compare], 1, \
        r"mine.toml line 1: .*; fix the TOML syntax"
    yield "catalog-unknown-table", lambda t: ["--catalog", str(catalog_dir(t, "[oops]\n")), *compare], 1, \
        r"unknown table 'oops'"
    yield "catalog-missing-dir", lambda t: ["--catalog", str(t / "nope"), *compare], 1, r"nope' does not exist"
    yield "catalog-binary", lambda t: ["--catalog", str(_w(folder(t, "cat") / "x.toml", b"\xff\xfe")).rsplit("/", 1)[0],
                                       *compare], 1, r"cannot be read .*UTF-8"
    yield "catalog-file-is-folder", lambda t: ["--catalog", str(_mkdir(folder(t, "cat") / "x.toml").parent), *compare], \
        1, r"x.toml is a folder"
    yield "catalog-symlink-loop", lambda t: ["--catalog", str(symlink_loop(folder(t, "cat"), "x.toml").parent),
                                             *compare], 1, r"Too many levels"
    yield "catalog-bad-id", lambda t: ["--catalog", str(catalog_dir(t, CATALOG_ENTRY.format(mem=8e9).replace(
        "my-chip", "My Chip"))), *compare], 1, r"field 'id' must be a lowercase string"


def module_cases():
    yield "module-empty", lambda t: ["profile", ":factory"], 1, r"':factory' is not a zoo name"
    yield "module-relative", lambda t: ["profile", ".mod:factory"], 1, r"'.mod:factory' is not a zoo name"
    yield "module-double-dot", lambda t: ["profile", "pkg..mod:factory"], 1, r"is not a zoo name"
    yield "module-no-factory", lambda t: ["profile", "os.path:"], 1, r"'os.path:' is not a zoo name"
    yield "module-bad-factory", lambda t: ["profile", "os:1x"], 1, r"is not a zoo name"
    yield "module-missing", lambda t: ["profile", "no_such_module_xyz:f"], 1, \
        r"Module 'no_such_module_xyz' of model .* cannot be imported"
    yield "module-syntax-error", lambda t: ["profile", module_file(t, "broken_syntax", "def f(:\n") + ":f"], 1, \
        r"fails when imported \(line 1\): SyntaxError"
    yield "module-raises", lambda t: ["profile", module_file(t, "raises_at_import", "raise RuntimeError('boom')\n") +
                                      ":f"], 1, r"fails when imported: RuntimeError: boom"
    yield "module-exits", lambda t: ["profile", module_file(t, "exits_at_import", "import sys\nsys.exit(3)\n") + ":f"], \
        1, r"fails when imported: SystemExit: 3"
    yield "module-not-callable", lambda t: ["profile", module_file(t, "not_callable", "f = 3\n") + ":f"], 1, \
        r"has no factory 'f'"
    yield "module-returns-int", lambda t: ["profile", module_file(t, "returns_int", "def f():\n    return 3\n") + ":f"], \
        1, r"returned int, not a torch.nn.Module"
    yield "module-factory-raises", lambda t: ["profile", module_file(t, "factory_raises",
                                                                     "def f():\n    raise ValueError('no')\n") + ":f"], \
        1, r"cannot be built on fake tensors \(ValueError: no\)"


def spec_cases():
    base = "layers=2,hidden=64,heads=4,ffn=256,vocab=100"
    compare = ["compare", "--spec"]
    yield "spec-layers-1e9", lambda t: [*compare, base.replace("layers=2", "layers=1e9"), *HW], 1, \
        r"Spec layers is 1000000000; give a whole number from 1 to 1000"
    yield "spec-layers-0", lambda t: [*compare, base.replace("layers=2", "layers=0"), *HW], 1, \
        r"layers=0 is not a positive whole number"
    yield "spec-hidden-1e30", lambda t: [*compare, base.replace("hidden=64", "hidden=1e30"), *HW], 1, \
        r"Spec hidden is 10000000000000000\d+"
    yield "spec-hidden-word", lambda t: [*compare, base.replace("hidden=64", "hidden=big"), *HW], 1, \
        r"hidden='big' is not a whole number"
    yield "spec-hidden-nan", lambda t: [*compare, base.replace("hidden=64", "hidden=nan"), *HW], 1, \
        r"hidden='nan' is not a whole number"
    yield "spec-hidden-inf", lambda t: [*compare, base.replace("hidden=64", "hidden=inf"), *HW], 1, \
        r"hidden='inf' is not a whole number"
    yield "spec-layers-fraction", lambda t: [*compare, base.replace("layers=2", "layers=2.5"), *HW], 1, \
        r"layers='2.5' is not a whole number"
    yield "spec-unknown-key", lambda t: [*compare, base + ",depth=3", *HW], 1, r"Spec key 'depth' is not known"
    yield "spec-twice", lambda t: [*compare, base + ",layers=3", *HW], 1, r"given twice"
    yield "spec-heads", lambda t: [*compare, base.replace("heads=4", "heads=5"), *HW], 1, r"heads=5 does not divide"
    yield "spec-not-kv", lambda t: [*compare, "layers", *HW], 1, r"is not key=value"
    yield "spec-missing", lambda t: [*compare, "layers=2", *HW], 1, r"lacks hidden, heads, ffn, vocab"
    yield "spec-experts-huge", lambda t: [*compare, base + ",experts=1e12,top_k=1", *HW], 1, r"Spec experts is"


def store_cases():
    yield "store-foreign", lambda t: ["results", "list", "--db", str(_foreign(t / "other.sqlite"))], 1, \
        r"other.sqlite is a SQLite database of another program \(tables contacts\)"
    yield "store-foreign-bench", lambda t: ["bench", "--quick", "--db", str(_foreign(t / "other.sqlite"))], 1, \
        r"not a chipfit results store"
    yield "store-not-sqlite", lambda t: ["results", "list", "--db", str(_w(t / "x.sqlite", b"hello" * 100))], 1, \
        r"x.sqlite is not a chipfit results database"
    yield "store-folder", lambda t: ["results", "list", "--db", str(folder(t, "db.sqlite"))], 1, \
        r"db.sqlite is a folder"
    yield "store-new-deep", lambda t: ["bench", "--quick", "--db", str(t / "new" / "deep" / "x.sqlite")], 1, \
        r"Folder .*new/deep of results database x.sqlite does not exist"
    yield "store-list-missing", lambda t: ["results", "list", "--db", str(t / "new" / "deep" / "x.sqlite")], 1, \
        r"x.sqlite does not exist; run `chipfit bench`"
    yield "store-export-missing", lambda t: ["results", "export", "--csv", "-", "--db", str(t / "none.sqlite")], 1, \
        r"none.sqlite does not exist"
    yield "store-corrupt-list", lambda t: ["results", "list", "--db", str(corrupt(store_with_run(t / "r.sqlite")))], 1, \
        r"r.sqlite is (damaged|not a chipfit results database)"
    yield "store-corrupt-bench", lambda t: ["bench", "--quick", "--db", str(corrupt(store_with_run(t / "r.sqlite")))], \
        1, r"r.sqlite is (damaged|not a chipfit results database)"
    yield "store-newer-schema", lambda t: ["results", "list", "--db", str(_newer(store_with_run(t / "r.sqlite")))], 1, \
        r"has schema version 99, newer than this chipfit knows"
    yield "store-export-unwritable", lambda t: ["results", "export", "--csv", str(t / "no" / "dir" / "x.csv"), "--db",
                                                str(store_with_run(t / "r.sqlite"))], 1, \
        r"CSV file .*x.csv cannot be written \(No such file or directory\)"
    yield "store-export-to-folder", lambda t: ["results", "export", "--csv", str(folder(t, "out.csv")), "--db",
                                               str(store_with_run(t / "r.sqlite"))], 1, \
        r"out.csv cannot be written \(Is a directory\)"
    yield "store-unknown-kind", lambda t: ["results", "list", "--kind", "foo", "--db", str(store_with_run(
        t / "r.sqlite"))], 2, r"Run kind 'foo' is not one chipfit stores; give one of bench, measure, validate"
    yield "store-show-missing-run", lambda t: ["results", "show", "999", "--db", str(store_with_run(t / "r.sqlite"))], \
        1, r"Run 999 is not in"


def published_cases():
    yield "published-missing", lambda t: ["validate", "--published", str(t / "none.csv"), "--db", str(t / "r.sqlite")], \
        1, r"none.csv does not exist"
    yield "published-folder", lambda t: ["validate", "--published", str(folder(t, "p.csv")), "--db",
                                         str(t / "r.sqlite")], 1, r"p.csv is a folder"
    yield "published-symlink-loop", lambda t: ["validate", "--published", str(symlink_loop(t, "p.csv")), "--db",
                                               str(t / "r.sqlite")], 1, r"Too many levels"


def job_cases():
    """Numbers the Job refuses before any work (api/job.py): exit 2, the option named."""
    plan = ["plan", "llama-3-8b", "--train", "--tokens", "1e12", "--hardware", "h100"]
    yield "job-tokens-nan", lambda t: ["compare", "resnet50", "--tokens", "nan"], 2, \
        r"--tokens nan is not a finite number; give a positive number of tokens"
    yield "job-samples-inf", lambda t: ["compare", "resnet50", "--samples", "inf"], 2, \
        r"--samples inf is not a finite number"
    yield "job-epochs-overflow", lambda t: ["compare", "resnet50", "--epochs", "1e400"], 2, \
        r"--epochs inf is not a finite number; give a positive number of epochs"
    yield "job-devices-list-zero", lambda t: ["advise", "resnet50", "--devices-list", "0"], 2, \
        r"--devices-list 0 is out of range; give a whole number of devices from 1 to 1,048,576"
    yield "job-devices-huge", lambda t: ["compare", "resnet50", "--devices", "1000000000"], 2, \
        r"--devices 1e\+09 is out of range"
    yield "job-top-negative", lambda t: ["compare", "resnet50", "--top", "-1"], 2, r"--top: -1 is below 0; give 0 or more"
    yield "job-depth-negative", lambda t: ["profile", "resnet50", "--depth", "-1"], 2, r"--depth: -1 is below 1"
    yield "job-pue-nan", lambda t: ["compare", "resnet50", "--pue", "nan"], 2, r"--pue nan is not a finite number"
    yield "job-budget-negative", lambda t: ["advise", "resnet50", "--budget", "-5"], 2, \
        r"--budget -5 is out of range; give a positive number of US dollars"
    yield "job-years-nan", lambda t: ["advise", "resnet50", "--buy", "--years", "nan"], 2, \
        r"--years nan is not a finite number"
    yield "job-plan-batch-zero", lambda t: [*plan, "--batch", "0"], 2, r"Batch 0 is not a positive number of samples"
    yield "job-plan-seq-zero", lambda t: [*plan, "--seq", "0"], 2, r"--seq 0 is out of range"
    yield "job-prompt-huge", lambda t: ["compare", "llama-3-8b", "--infer", "--prompt", "1e12", "--generate", "10"], \
        2, r"--prompt 1e\+12 is out of range"


def argument_cases():
    """Refusals argparse makes (exit 2)."""
    yield "arg-batch-word", lambda t: ["compare", "resnet18", "--batch", "many"], 2, r"invalid int value: 'many'"
    yield "arg-devices-word", lambda t: ["compare", "resnet18", "--devices", "x"], 2, r"invalid int value"
    yield "arg-no-command", lambda t: [], 2, r"usage|required"
    yield "arg-unknown-command", lambda t: ["frobnicate"], 2, r"invalid choice"
    yield "arg-unknown-option", lambda t: ["compare", "resnet18", "--frob"], 2, r"unrecognized arguments: --frob"
    yield "arg-unknown-model", lambda t: ["profile", "resnet19"], 1, r"Unknown model 'resnet19'.*Did you mean resnet18"
    yield "arg-unknown-hardware", lambda t: ["compare", "resnet18", "--hardware", "h1OO", "--no-local"], 1, r"h1OO"


CASES = [*onnx_cases(), *caffe_cases(), *keras_cases(), *hf_cases(), *catalog_cases(), *module_cases(), *spec_cases(),
         *store_cases(), *published_cases(), *job_cases(), *argument_cases()]


def test_the_corpus_is_large_and_named_once():
    names = [c[0] for c in CASES]
    assert len(names) == len(set(names))
    assert len(names) >= 150


@pytest.mark.parametrize("name,build,status,message", CASES, ids=[c[0] for c in CASES])
def test_bad_input_is_one_sentence_and_a_status(name, build, status, message, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.setenv("CHIPFIT_DB", str(tmp_path / "default.sqlite"))
    monkeypatch.delenv("CHIPFIT_DEBUG", raising=False)
    # A library's log handler made under an earlier test writes to that test's closed capture stream;
    # logging would print its own traceback for that, which is the test harness's, not chipfit's.
    monkeypatch.setattr(logging, "raiseExceptions", False)
    _no_benchmarks(monkeypatch)
    argv = build(tmp_path)
    assert cli.main(argv) == status
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert "bug" not in err, err  # the catch-all's sentence: no check covered this input
    import re

    assert re.search(message, err, re.S), err


def test_unreadable_file_is_named(tmp_path, monkeypatch, capsys):
    """As root every file is readable, so the refusal is simulated where chipfit asks."""
    path = onnx_model(tmp_path / "m.onnx")
    monkeypatch.setattr(os, "access", lambda p, mode: False)
    assert cli.main(["profile", str(path)]) == 1
    assert "m.onnx cannot be read: permission denied; make it readable" in capsys.readouterr().err


def test_a_corrupt_store_fails_before_the_bench_runs(tmp_path, monkeypatch, capsys):
    calls = _no_benchmarks(monkeypatch)
    db = corrupt(store_with_run(tmp_path / "r.sqlite"))
    assert cli.main(["bench", "--quick", "--db", str(db)]) == 1
    assert calls == []


def test_a_foreign_database_is_left_as_it_was(tmp_path, capsys):
    db = _foreign(tmp_path / "other.sqlite")
    before = db.read_bytes()
    assert cli.main(["results", "list", "--db", str(db)]) == 1
    assert db.read_bytes() == before


def test_no_folder_or_file_is_made_for_a_listing(tmp_path, capsys):
    assert cli.main(["results", "list", "--db", str(tmp_path / "new" / "deep" / "x.sqlite")]) == 1
    assert not (tmp_path / "new").exists()


def test_keras_archive_weights_are_never_unpacked(tmp_path, monkeypatch):
    """A bomb in the weights member costs nothing: only config.json is read."""
    from chipfit.workload import keras_model

    keras = keras_model._import_keras()
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4)])
    path = tmp_path / "m.keras"
    model.save(path)
    with zipfile.ZipFile(path, "a", zipfile.ZIP_DEFLATED) as z:
        z.writestr("model.weights.h5", b"\0" * (64 * 2**20))  # 64 MiB of zeros, a 64 KiB member
    opened = []
    real_open = zipfile.ZipFile.open
    monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, name, *a, **k: opened.append(
        getattr(name, "filename", name)) or real_open(self, name, *a, **k))
    prof = keras_model.profile_keras(path, mode="infer", batch=1)
    assert prof.params == 8 * 4 + 4
    assert set(opened) == {"config.json"}


def test_keras2_hdf5_loads_through_the_legacy_loader(tmp_path):
    """A Keras 2 model_config (batch_input_shape, dtype as a string) as TensorFlow/Theano/CNTK Keras wrote it."""
    from chipfit.workload import profile

    config = {"class_name": "Sequential", "config": {"name": "sequential", "layers": [
        {"class_name": "Dense", "config": {"name": "dense", "trainable": True, "batch_input_shape": [None, 8],
                                           "dtype": "float32", "units": 4, "activation": "relu", "use_bias": True}},
        {"class_name": "Dense", "config": {"name": "out", "units": 2, "activation": "linear", "use_bias": True}}]},
        "keras_version": "2.2.4", "backend": "theano"}
    prof = profile(str(h5_file(tmp_path, json.dumps(config))), mode="infer", batch=3)
    assert prof.params == 8 * 4 + 4 + 4 * 2 + 2
    # Two dense layers with their bias adds, and the ReLU (1 FLOP per element), at batch 3.
    assert prof.flops() == 3 * (2 * 8 * 4 + 4) + 3 * 4 + 3 * (2 * 4 * 2 + 2)


# --- small helpers ----------------------------------------------------------------------------
def _w(path: Path, data: bytes) -> Path:
    path.write_bytes(data)
    return path


def _mkdir(path: Path) -> Path:
    path.mkdir()
    return path


def _foreign(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("CREATE TABLE contacts (name TEXT)")
    con.execute("INSERT INTO contacts VALUES ('ada')")
    con.commit()
    con.close()
    return path


def _newer(path: Path) -> Path:
    con = sqlite3.connect(path)
    con.execute("PRAGMA user_version = 99")
    con.close()
    return path


def _no_benchmarks(monkeypatch) -> list:
    """Make any benchmark a test would start fail the test: no case may get that far."""
    from chipfit.measure import microbench

    calls = []

    def refuse(*args, **kwargs):
        calls.append(args)
        raise AssertionError("a benchmark ran on a bad input")

    monkeypatch.setattr(microbench, "run_microbenchmarks", refuse)
    return calls
