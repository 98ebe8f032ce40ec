"""The command line: real output for good input, one sentence and exit 1 for bad input."""

import csv
import json
import platform

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


def test_hardware_show_table_lists_figures_and_cloud_offerings(capsys):
    code, out, _ = run(capsys, "hardware", "show", "nvidia-h100-sxm5-80gb")
    assert code == 0 and "989 TFLOP/s" in out and "3.35 TB/s" in out and "80 GiB" in out
    assert "cloud offerings" in out and "aws-p5.48xlarge" in out


@pytest.mark.parametrize("mode, batch", [("--train", 4 * 32), ("--infer", 4)])
def test_compare_batch_defaults_per_device(capsys, mode, batch):
    # Training: 32 samples per device (Goyal et al. 2017); inference: one request per device.
    code, out, _ = run(capsys, "compare", "tests.fixtures.user_models:two_layer", mode, "--devices", "4",
                       "--hardware", "nvidia-h100-sxm5-80gb", "--no-local", "--json")
    d = json.loads(out)
    assert code == 0 and d["workload"]["batch"] == batch and d["estimates"][0]["devices"] == 4


def test_compare_prices_multi_node_traffic_on_the_network_named(capsys):
    def step(*network):
        code, out, _ = run(capsys, "compare", "tests.fixtures.user_models:two_layer", "--train", "--devices", "16",
                           "--hardware", "nvidia-a100-sxm4-80gb", "--no-local", *network, "--json")
        assert code == 0
        (est,) = json.loads(out)["estimates"]
        return est["step_time_s"], " ".join(est["assumptions"])

    default, said_default = step()
    efa, said_efa = step("--network", "efa-p4d")
    # 16 A100s span two nodes: DGX A100's 200 Gb/s per GPU by default, P4d's EFA at 400 Gb/s per 8 GPUs named.
    assert "InfiniBand HDR" in said_default and "AWS EFA, 400 Gb/s per 8 GPUs" in said_efa
    assert efa > default


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


# Exit 2: an argument wrong on its own, refused before any work; exit 1: a name or model that does not resolve.
BAD_ARGUMENT = ("--samples 0", "Batch -2", "Batch 6", "Framework 'pytorchh'", "LLM serving needs --infer",
                "Duration '5x'", "Network 'ib-hdr'", "Network 'efa'", "LLM serving (--prompt, --generate)")


def _exit_code(message: str) -> int:
    return 2 if message.startswith(BAD_ARGUMENT) else 1


@pytest.mark.parametrize("argv, message", [
    (["profile", "resnet-5O"], "Unknown model 'resnet-5O'. Did you mean resnet50"),
    (["compare", "resnet50", "--hardware", "nvidia-h20"], "Unknown hardware 'nvidia-h20': no catalog entry matches it. "
                                                           "Closest entries:"),
    (["hardware", "show", "Jetson Orin NX"], "Unknown hardware 'Jetson Orin NX': no catalog entry matches it."),
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
    assert code == _exit_code(message)
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


def test_plan_finds_fitting_plans_on_the_devices_given(capsys):
    code, out, _ = run(capsys, "plan", "llama-3-8b", "--train", "--tokens", "1e9", "--hardware",
                       "nvidia-h100-sxm5-80gb", "--devices", "8", "--batch", "64", "--seq", "2048", "--json")
    d = json.loads(out)
    assert code == 0 and d["workload"]["batch"] == 64
    ranked = d["search"]["ranked"]
    assert ranked
    for r in ranked:
        p = r["plan"]
        assert p["data_parallel"] * p["tensor_parallel"] * p["pipeline_parallel"] == 8
        assert r["memory_per_device_bytes"] <= 80 * 2**30
    times = [r["total_time_s"] for r in ranked]
    assert times == sorted(times)


def test_compare_spec_counts_the_parameters_of_the_sizes_given(capsys):
    # 2 layers, hidden 64, 4 heads (2 KV heads of 16), SwiGLU 128, vocab 100, untied head, RMSNorm:
    # attention 64*64 + 2*64*32 + 64*64, MLP 3*64*128, 2 norms of 64 per layer; embedding, head, final norm.
    code, out, _ = run(capsys, "compare", "--spec", "layers=2,hidden=64,heads=4,kv_heads=2,ffn=128,vocab=100",
                       "--train", "--tokens", "1e6", "--seq", "32", "--batch", "4", "--no-local", "--json")
    d = json.loads(out)
    per_layer = 64 * 64 + 2 * 64 * 32 + 64 * 64 + 3 * 64 * 128 + 2 * 64
    assert code == 0 and d["workload"]["params"] == 2 * per_layer + 2 * 100 * 64 + 64


def test_llm_serving_reports_time_to_first_token_and_tokens_per_second(capsys):
    code, out, _ = run(capsys, "compare", "llama-3-8b", "--infer", "--batch", "4", "--prompt", "512",
                       "--generate", "64", "--precision", "bf16", "--hardware", "nvidia-h100-sxm5-80gb", "--json")
    (e,) = json.loads(out)["estimates"]
    assert code == 0 and e["throughput_unit"] == "tokens/s" and e["fits"] is True
    assert 0 < e["latency_s"] < e["total_time_s"]
    # Generated tokens over the whole job time.
    assert e["throughput_per_s"] == pytest.approx(4 * 64 / e["total_time_s"], rel=1e-6)


@pytest.mark.parametrize("argv, message", [
    (["compare", "llama-3-8b", "--train", "--prompt", "512", "--generate", "8"],
     "LLM serving needs --infer with both --prompt and --generate as token counts."),
    (["compare", "resnet50", "--infer", "--prompt", "512", "--generate", "8"], "needs a decoder LLM"),
    (["plan", "llama-3-8b", "--hardware", "nvidia-h100-sxm5-80gb", "--deadline", "5x"],
     "Duration '5x' is not understood; write it like 90d, 12h, 45m or 3600s."),
    (["plan", "resnet50", "--hardware", "nvidia-h100-sxm5-80gb"], "chipfit plan searches transformer plans"),
    (["plan", "llama-3-8b", "--hardware", "nvidia-a100-sxm4-80gb", "--devices", "16", "--network", "ib-hdr"],
     "Network 'ib-hdr' is not known. Did you mean ib-hdr-200"),
    (["compare", "--spec", "layers=2,hiden=64,heads=4,ffn=128,vocab=100"], "Spec key 'hiden' is not known"),
    (["compare", "resnet50", "--network", "efa"], "Network 'efa' is not known. Did you mean efa-p5"),
    (["compare", "llama-3-8b", "--infer", "--prompt", "512", "--generate", "8", "--network", "efa-p5"],
     "LLM serving (--prompt, --generate) is priced within one node, so leave --network out."),
])
def test_bad_llm_and_plan_input(capsys, argv, message):
    code, _, err = run(capsys, *argv)
    assert code == _exit_code(message) and message in err and "Traceback" not in err


def test_bench_calibrate_measure_and_results_use_one_store(capsys, tmp_path):
    db = str(tmp_path / "r.sqlite")
    code, out, _ = run(capsys, "bench", "--quick", "--db", db, "--json")
    (bench,) = json.loads(out)
    assert code == 0 and bench["device"] == "local-cpu"
    kinds = {m["kind"] for m in bench["measurements"]}
    assert {"overhead", "copy", "triad", "matmul", "conv2d"} <= kinds
    code, out, err = run(capsys, "calibrate", "--db", db, "--json")
    assert code == 0, err
    cal = json.loads(out)
    assert code == 0 and cal["hardware_id"] == "local-cpu" and cal["bandwidth_bytes_per_s"] > 0
    assert {(c["family"], c["precision"]) for c in cal["curves"]} >= {("matmul", "fp32"), ("conv", "fp32")}
    code, out, _ = run(capsys, "measure", "tests.fixtures.user_models:two_layer", "--infer", "--batch", "4",
                       "--reps", "2", "--keep-freed-memory", "--db", db, "--json")
    m = json.loads(out)
    assert code == 0 and m["calibrated"] is True and m["predicted_s"] > 0 and m["median_s"] > 0
    assert m["flops"] == 2 * 4 * 64 * 128 + 2 * 4 * 128 * 10 + 4 * 128 + 4 * 10 + 4 * 128
    code, out, _ = run(capsys, "results", "list", "--db", db, "--json")
    runs = json.loads(out)
    assert [r["kind"] for r in runs] == ["bench", "measure"]
    bench_alloc, measure_alloc = (r["environment"]["extra"]["allocator"] for r in runs)
    if platform.libc_ver()[0] == "glibc":  # each run says which allocator it measured under
        assert bench_alloc.startswith("glibc ") and " defaults (" in bench_alloc
        assert measure_alloc.startswith("glibc ") and ", freed memory kept (" in measure_alloc
    csv_path = tmp_path / "all.csv"
    code, _, err = run(capsys, "results", "export", "--csv", str(csv_path), "--db", db)
    rows = list(csv.DictReader(csv_path.read_text().splitlines()))
    kinds = [r["kind"] for r in rows]
    # measure stores its step and one row per distinct operator call: addmm, relu, addmm
    assert code == 0 and len(rows) == len(bench["measurements"]) + 1 + 3
    assert sorted(r["label"] for r in rows if r["kind"] == "op") == ["aten.addmm.default"] * 2 + ["aten.relu.default"]
    assert kinds.count("infer_step") == 1


def test_calibrate_without_benchmarks_says_what_to_do(capsys, tmp_path):
    code, _, err = run(capsys, "calibrate", "--db", str(tmp_path / "empty.sqlite"))
    assert code == 1 and "No benchmark run of local-cpu" in err and "run `chipfit bench`" in err


def test_graph_files_default_to_inference_and_take_input_shapes(capsys, tmp_path):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    path = tmp_path / "lin.onnx"
    torch.onnx.export(torch.nn.Linear(8, 16), (torch.zeros(2, 8),), str(path), dynamo=False, input_names=["x"],
                      dynamic_axes={"x": {0: "batch"}})
    code, out, _ = run(capsys, "profile", str(path), "--input", "x=5x8", "--json")
    d = json.loads(out)
    assert code == 0 and d["mode"] == "infer"
    assert d["flops"]["forward"] == 2 * 5 * 8 * 16 + 5 * 16  # Gemm with its bias add
    code, _, err = run(capsys, "profile", str(path), "--input", "x5x8")
    assert code == 2 and "'x5x8' is not NAME=DIMS like input=1x3x224x224" in err


def test_every_command_writes_csv_rows(capsys):
    import csv as _csv
    import io

    code, out, _ = run(capsys, "profile", "tests.fixtures.user_models:two_layer", "--infer", "--batch", "4", "--csv")
    rows = list(_csv.DictReader(io.StringIO(out)))
    assert code == 0 and sum(float(r["flops"]) for r in rows) == 2 * 4 * 64 * 128 + 2 * 4 * 128 * 10 + 4 * 128 * 2 + 4 * 10
    code, out, _ = run(capsys, "hardware", "show", "nvidia-h100-sxm5-80gb", "--csv")
    (row,) = list(_csv.DictReader(io.StringIO(out)))
    assert float(row["peak_flops.bf16.value"]) == pytest.approx(989.4e12) and row["peak_flops.bf16.source"]
    code, _, err = run(capsys, "devices", "--csv", "--json")
    assert code == 2 and "not allowed with argument" in err
