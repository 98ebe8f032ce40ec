"""Validation against published runs: reading a row's cells, the metrics, and every row reported."""

import csv

import pytest

from chipfit.errors import ChipfitError
from chipfit.predict.parallel import GBIT, NETWORKS
from chipfit.published_run import (RowUnreadable, parse_amount, parse_batch, parse_devices, parse_lengths,
                                   parse_params, plan_hints, read_run, row_network, serving_engine)
from chipfit.row_lookup import name_candidates
from chipfit.validate_published import (METRICS, WHOLE_RUN_GOODPUT, Predicted, RowResult, format_table, summarize,
                                        validate_published)

FIELDS = ["id", "kind", "model", "params", "tokens_or_samples", "seq_len", "global_batch", "hardware",
          "device_count", "precision", "metric", "value", "unit", "source", "confidence", "notes"]


def _row(**cells) -> dict:
    return {f: "" for f in FIELDS} | cells


def _write(tmp_path, rows, name="published.csv"):
    path = tmp_path / name
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows(_row(**r) for r in rows)
    return path


def test_cells_are_read_as_papers_and_logs_write_them():
    assert parse_params("6700000000") == (6.7e9, 6.7e9)
    assert parse_params("37B / 671B") == (671e9, 37e9)  # MoE: active / total
    assert parse_amount("ImageNet-1k, ~35 epochs x 1,281,167 imgs (last eval)") == ("samples", 35 * 1281167)
    assert parse_amount("4.05e22 FLOPs (Table 4; tokens not given)") == ("flops", 4.05e22)
    assert parse_amount("3072 samples x 8192 tokens") == ("tokens", 3072 * 8192)
    assert parse_amount("2560000 samples (9 of 10 runs)") == ("samples", 2.56e6)
    assert parse_amount("~2.5M samples (median)") == ("samples", 2.5e6)
    assert parse_amount("15000000000000 (card: 'over 15T')") == ("count", 15e12)
    assert parse_batch("4M tokens", 2048) == round(4e6 / 2048)
    assert parse_batch("2048 seqs (4.2M tokens)", 2048) == 2048
    assert parse_batch("16M tokens", 8192) == 1953
    assert parse_batch("3264", None) == 3264
    assert parse_lengths("prompt 128, output 2048") == (None, None, 128, 2048)
    assert parse_lengths("224x224") == (None, 224, None, None)
    assert parse_lengths("8192") == (8192, None, None, None)
    assert parse_devices("512 chips (128 hosts x 4)") == 512
    assert parse_devices("1024 GCDs") == 512  # two GCDs per MI250X package
    assert plan_hints("amp_bf16 (FSDP FULL_SHARD, no act-ckpt)") == ((3,), (False,))
    assert plan_hints("bf16") == ((0, 1, 2, 3), (False, True))


def test_network_from_a_rate_or_a_system_a_sourced_network_names():
    assert row_network("NVIDIA A100-80GB (1600 Gbps RoCE)").bw_bytes_per_s == 200 * GBIT  # per 8-GPU node
    assert row_network("NVIDIA H100 SXM5 80GB (400 Gbps RoCE per GPU)").bw_bytes_per_s == 400 * GBIT
    assert row_network("Gaudi 2 (3x 100 Gbps RoCE scale-out per chip)").bw_bytes_per_s == 300 * GBIT
    assert row_network("NVIDIA A100-SXM4-80GB (Jean Zay)") is NETWORKS["opa-4x100"]
    assert row_network("AMD Instinct MI250X GCD (Frontier)") is NETWORKS["slingshot-frontier"]
    assert row_network("NVIDIA H100-SXM-80GB (DGX H100)") is NETWORKS["ib-ndr-400"]
    assert row_network("NVIDIA H100-SXM5-80GB") is None  # the catalog's default network then


def test_model_names_are_tried_without_their_qualifiers():
    assert name_candidates("Llama 2 70B LoRA fine-tune (MLPerf llama2_70b_lora)")[:4] == [
        "Llama 2 70B LoRA fine-tune (MLPerf llama2_70b_lora)", "Llama 2 70B LoRA fine-tune", "Llama 2 70B LoRA",
        "Llama 2 70B"]


def test_unreadable_cells_are_one_sentence_each():
    with pytest.raises(RowUnreadable, match=r"^params 'lots' is neither a number nor 'active / total'$"):
        parse_params("lots")
    with pytest.raises(RowUnreadable, match=r"gives more active than total"):
        parse_params("671B / 37B")
    with pytest.raises(RowUnreadable, match=r"^value 'n/a' is not a positive number$"):
        read_run(_row(id="x", value="n/a", hardware="h"))
    with pytest.raises(RowUnreadable, match=r"^the row has more cells than the header has columns"):
        read_run(_row(id="x", value="1", hardware="h") | {None: ["stray"]})
    with pytest.raises(RowUnreadable, match=r"^the row has no unit column$"):
        read_run({k: v for k, v in _row(id="x", value="1", hardware="h").items() if k != "unit"})


def test_metrics_read_off_one_prediction():
    # 8 devices, 16 sequences of 2048 tokens every 2 s: 2048 tokens/s per device; a 10-hour job.
    p = Predicted(how="", devices=8, tdp_watts=700.0, peak_flops=1e15, step_s=2.0, samples_per_step=16,
                  tokens_per_sample=2048, total_s=36000.0, model_flops_per_token=6e9, hardware_flops_per_token=8e9)
    run = read_run(_row(id="x", value="1", hardware="h", metric="co2",
                        unit="tCO2eq (at 0.5 kgCO2eq/kWh incl. PUE)"))
    assert METRICS["tokens_per_s_per_device"](p, run) == 2048
    assert METRICS["mfu"](p, run) == pytest.approx(100 * 2048 * 6e9 / 1e15)
    assert METRICS["tflops_per_device"](p, run) == pytest.approx(2048 * 8e9 / 1e12)
    device_hours = 80 / WHOLE_RUN_GOODPUT
    assert METRICS["gpu_hours"](p, run) == pytest.approx(device_hours)
    assert METRICS["energy_dynamic"](p, run) == pytest.approx(device_hours * 700 / 1e6)
    assert METRICS["co2"](p, run) == pytest.approx(device_hours * 700 / 1e6 * 0.5)  # MWh x kg/kWh = t
    assert METRICS["time_to_train"](p, run) == 600
    assert METRICS["chip_hours"](p, run) == METRICS["gpu_hours"](p, run)
    assert METRICS["wall_clock_hours"](p, run) == pytest.approx(10 / WHOLE_RUN_GOODPUT)
    serving = Predicted(how="", devices=4, output_tokens_per_s=8000.0, time_to_first_token_s=0.05)
    assert METRICS["output_tokens_per_s_per_device"](serving, run) == 2000
    assert METRICS["time_to_first_token"](serving, run) == pytest.approx(50)
    with pytest.raises(RowUnreadable, match="^the prediction has no job length"):
        METRICS["gpu_hours"](serving, run)


def test_summary_is_median_and_p90_of_abs_error():
    rows = [RowResult(id=str(i), kind="k", metric="m", unit="u", published=100.0, predicted=100.0 + e)
            for i, e in enumerate((10, -20, 30, 40, 50))]
    rows.append(RowResult(id="x", kind="k", metric="m", unit="u", published=1.0, reason="no input"))
    s = summarize(rows)["k"]
    assert (s["rows"], s["predicted"]) == (6, 5)
    assert s["median"] == pytest.approx(0.30) and s["p90"] == pytest.approx(0.46)


H100 = "nvidia-h100-sxm5-80gb"


def test_no_row_sinks_the_others_and_each_miss_says_why(tmp_path):
    rows = [
        dict(id="mixtral", kind="train_throughput", model="Mixtral 8x7B", params="12.9B / 46.7B", seq_len="4096",
             global_batch="1024 seqs", hardware=H100, device_count="64", precision="bf16",
             metric="tokens_per_s_per_device", value="3000", unit="tokens/s/GPU"),
        dict(id="badvalue", kind="train_throughput", model="Mixtral 8x7B", params="12.9B / 46.7B", hardware=H100,
             metric="tokens_per_s_per_device", value="n/a", unit="tokens/s/GPU"),
        dict(id="badparams", kind="train_throughput", model="Mixtral 8x7B", params="lots", hardware=H100,
             metric="tokens_per_s_per_device", value="1", unit="tokens/s/GPU"),
        dict(id="nomodel", kind="train_total", model="Imaginary-LM 9B", params="9B", tokens_or_samples="1e12",
             hardware=H100, metric="gpu_hours", value="1000", unit="GPU-h"),
        dict(id="nohw", kind="train_throughput", model="Mixtral 8x7B", params="12.9B / 46.7B", hardware="Imaginary XPU",
             device_count="8", metric="tokens_per_s_per_device", value="1", unit="tokens/s"),
        dict(id="nometric", kind="train_throughput", model="Mixtral 8x7B", params="12.9B / 46.7B", hardware=H100,
             metric="happiness", value="1", unit="smiles"),
    ]
    v = validate_published(_write(tmp_path, rows))
    got = {r.id: r for r in v.rows}
    assert list(got) == [r["id"] for r in rows]
    assert got["mixtral"].predicted > 0 and got["mixtral"].error is not None and "x nvidia-h100" in got["mixtral"].how
    assert got["badvalue"].reason == "value 'n/a' is not a positive number" and got["badvalue"].published is None
    assert got["badparams"].reason == "params 'lots' is neither a number nor 'active / total'"
    assert got["nomodel"].reason.startswith("no model in the library is called 'Imaginary-LM 9B'")
    assert "Imaginary XPU" in got["nohw"].reason
    assert got["nometric"].reason.startswith("metric 'happiness' is not one chipfit predicts")
    table = format_table(v)
    assert all(f"{r['id']} " in table for r in rows) and table.count("not predicted: ") == 5


def test_summary_table_of_a_fixture_over_two_files(tmp_path):
    row = dict(kind="train_throughput", model="Mixtral 8x7B", params="12.9B / 46.7B", seq_len="4096",
               global_batch="1024 seqs", hardware=H100, device_count="64", precision="bf16",
               metric="tokens_per_s_per_device", unit="tokens/s/GPU")
    first = _write(tmp_path, [row | dict(id="a", value="2000"), row | dict(id="b", value="4000")], "a.csv")
    second = _write(tmp_path, [row | dict(id="c", value="8000")], "b.csv")
    v = validate_published([first, second])
    predicted = v.rows[0].predicted
    assert all(r.predicted == pytest.approx(predicted) for r in v.rows)  # same inputs, same prediction
    errors = sorted(abs(predicted / x - 1) for x in (2000, 4000, 8000))
    assert v.summary["all"]["median"] == pytest.approx(errors[1])
    assert f"all                   3         3 {errors[1]:>8.1%}" in format_table(v)


def test_a_serving_row_is_the_serving_predictor_at_its_lengths_and_batch(tmp_path):
    from chipfit.catalog import load_catalog
    from chipfit.predict.decode import predict_inference
    from chipfit.workload.library import transformer_spec

    row = dict(kind="infer_throughput", model="Llama 3 8B (TensorRT-LLM)", params="8030261248",
               seq_len="prompt 128, output 2048", hardware="NVIDIA H100 SXM5 80GB", device_count="2 (TP2)",
               precision="fp8 (weights and KV cache)", metric="output_tokens_per_s_per_device", unit="tokens/s/GPU")
    v = validate_published(_write(tmp_path, [row | dict(id="b64", global_batch="64", value="1000"),
                                             row | dict(id="offline", value="1000")]))
    hw = load_catalog().get(H100)
    spec = transformer_spec("llama-3-8b")
    kw = dict(prompt_tokens=128, generated_tokens=2048, weight_precision="fp8", kv_precision="fp8", devices=2)
    assert v.rows[0].predicted == pytest.approx(predict_inference(spec, hw, batch=64, **kw).tokens_per_s / 2)
    largest = predict_inference(spec, hw, batch=1, **kw).max_batch  # Offline: the batch that fills memory
    assert v.rows[1].predicted == pytest.approx(predict_inference(spec, hw, batch=largest, **kw).tokens_per_s / 2)
    assert "batch 64" in v.rows[0].how and f"batch {largest}" in v.rows[1].how


def test_a_serving_row_runs_the_engine_and_release_its_source_names(tmp_path):
    from chipfit.catalog import load_catalog
    from chipfit.predict.decode import predict_inference
    from chipfit.workload.library import transformer_spec

    assert serving_engine("NVIDIA/TensorRT-LLM docs/source/performance.md (v0.6.1 'Peak Throughput' tables; "
                          "L40S tables from v0.5)") == "tensorrt-llm==0.6.1"
    assert serving_engine("TensorRT LLM perf overview") == "tensorrt-llm"
    assert serving_engine("vLLM v0.8.4 benchmark_throughput") == "vllm==0.8.4"
    assert serving_engine("MLPerf Inference v4.1 closed: NVIDIA/results/H200_TRT") is None
    row = dict(id="old", kind="infer_throughput", model="Llama 2 70B", params="68976653312",
               seq_len="prompt 128, output 128", global_batch="64", hardware="NVIDIA H100 SXM 80GB",
               device_count="2 (TP2)", precision="fp8 (weights and KV cache)", metric="output_tokens_per_s",
               value="1000", unit="tokens/s", source="NVIDIA/TensorRT-LLM docs/source/performance.md (v0.6.1)")
    v = validate_published(_write(tmp_path, [row]))
    kw = dict(batch=64, prompt_tokens=128, generated_tokens=128, weight_precision="fp8", kv_precision="fp8",
              devices=2)
    hw, spec = load_catalog().get(H100), transformer_spec("llama-2-70b")
    old = predict_inference(spec, hw, framework="tensorrt-llm==0.6.1", **kw).tokens_per_s
    assert v.rows[0].predicted == pytest.approx(old)
    assert old < predict_inference(spec, hw, framework="tensorrt-llm", **kw).tokens_per_s
    assert "tensorrt-llm==0.6.1" in v.rows[0].how


def test_cli_reads_several_files_and_a_missing_one_is_one_sentence(tmp_path, capsys):
    from chipfit.cli import main

    row = dict(kind="train_throughput", model="Imaginary-LM 9B", params="9B", hardware=H100,
               metric="tokens_per_s_per_device", value="1", unit="tokens/s")
    first = _write(tmp_path, [row | dict(id="first-file-row")], "a.csv")
    second = _write(tmp_path, [row | dict(id="second-file-row")], "b.csv")
    assert main(["validate", "--published", str(first), str(second)]) == 0
    out = capsys.readouterr().out
    assert "first-file-row" in out and "second-file-row" in out and "all                   2         0" in out
    assert main(["validate", "--published", str(tmp_path / "none.csv")]) == 1
    assert "none.csv does not exist; give the path to published.csv." in capsys.readouterr().err


def test_a_file_that_is_not_a_csv_is_one_sentence(tmp_path):
    binary = tmp_path / "weights.bin"
    binary.write_bytes(bytes(range(256)))
    with pytest.raises(ChipfitError, match=r"^Published figures file .*weights.bin is not a UTF-8 CSV"):
        validate_published(binary)


def test_missing_file_is_one_sentence():
    with pytest.raises(ChipfitError) as err:
        validate_published("/nonexistent/published.csv")
    assert str(err.value) == ("Published figures file /nonexistent/published.csv does not exist; "
                              "give the path to published.csv.")
