"""The command line: real output for good input, one sentence and exit 1 for bad input."""

import json

import pytest

from chipfit.cli import main


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_hardware_list_json_has_every_class(capsys):
    code, out, _ = run(capsys, "hardware", "list", "--json")
    rows = json.loads(out)
    assert code == 0 and len(rows) >= 45
    assert {"cpu", "gpu", "tpu", "asic", "fpga", "edge", "neuromorphic", "quantum"} <= {r["class"] for r in rows}


def test_hardware_show_gives_sources(capsys):
    code, out, _ = run(capsys, "hardware", "show", "nvidia-h100-sxm5-80gb", "--json")
    d = json.loads(out)
    assert code == 0
    bf16 = d["peak_flops"]["bf16"]
    assert bf16["value"] == pytest.approx(989.4e12) and bf16["dense"] is True and "NVIDIA" in bf16["source"]
    assert d["mem_bw_bytes_per_s"]["value"] == pytest.approx(3.35e12)


def test_profile_user_module_json(capsys):
    code, out, _ = run(capsys, "profile", "tests.fixtures.user_models:two_layer", "--batch", "4", "--infer", "--json")
    d = json.loads(out)
    assert code == 0
    # Forward: 2*4*64*128 + 2*4*128*10 multiply-adds doubled, plus bias adds (1 per output) and relu (1 per element).
    matmul = 2 * 4 * 64 * 128 + 2 * 4 * 128 * 10
    assert d["flops"]["forward"] == matmul + 4 * 128 + 4 * 10 + 4 * 128
    assert d["params"] == 64 * 128 + 128 + 128 * 10 + 10


def test_compare_json_schema(capsys):
    code, out, _ = run(capsys, "compare", "tests.fixtures.user_models:two_layer", "--train", "--batch", "8",
                       "--samples", "80000", "--epochs", "2", "--no-local", "--json")
    d = json.loads(out)
    assert code == 0
    assert d["workload"]["batch"] == 8 and d["workload"]["samples"] == 80000
    keys = {"hardware", "class", "devices", "fits", "memory_per_device_bytes", "step_time_s", "throughput_per_s",
            "total_time_s", "device_hours", "energy_kwh", "co2_kg", "cost_usd", "low", "high",
            "excluded_reason", "assumptions"}
    for e in d["estimates"]:
        assert keys <= set(e)
    ranked = [e for e in d["estimates"] if not e["excluded_reason"]]
    assert all(e["total_time_s"] == pytest.approx(e["step_time_s"] * 20000) for e in ranked)
    excluded = {e["class"] for e in d["estimates"] if e["excluded_reason"]}
    assert {"neuromorphic", "quantum"} <= excluded


@pytest.mark.parametrize("argv, message", [
    (["profile", "resnet-50"], "Unknown model 'resnet-50'. Did you mean resnet50"),
    (["compare", "resnet50", "--hardware", "nvidia-h100"], "Unknown hardware 'nvidia-h100'. Did you mean"),
    (["hardware", "show", "h100-sxm"], "Unknown hardware 'h100-sxm'."),
    (["compare", "resnet50", "--samples", "0"], "--samples 0 leaves nothing to do; give a positive number of samples."),
    (["compare", "resnet50", "--batch", "-2"], "Batch -2 is not a positive number of samples; give --batch 1 or more."),
    (["compare", "resnet50", "--batch", "6", "--devices", "4"], "Batch 6 does not split evenly over 4 devices"),
    (["compare", "resnet50", "--framework", "pytorchh"], "Framework 'pytorchh' is not known. Did you mean pytorch"),
    (["profile", "tests.fixtures.user_models:data_dependent", "--infer"],
     "cannot be traced on fake tensors: operator aten.nonzero.default"),
    (["profile", "tests.fixtures.nowhere:factory"], "tests.fixtures.nowhere"),
])
def test_bad_input_is_one_sentence_and_exit_1(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 1
    assert err.startswith("chipfit: ") and message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1


def test_malformed_user_catalog_names_file_line_and_field(capsys, tmp_path):
    (tmp_path / "mine.toml").write_text(
        '[sources]\nme = "my own measurement"\n\n[[hardware]]\nid = "my-npu"\nname = "My NPU"\nvendor = "Me"\n'
        'class = "asic"\nmem_bw_gb_per_s = { value = "fast", source = "me" }\n'
    )
    code, _, err = run(capsys, "--catalog", str(tmp_path), "hardware", "list")
    assert code == 1
    assert "mine.toml" in err and "line 9" in err and "mem_bw_gb_per_s" in err
