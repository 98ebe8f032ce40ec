"""Validation against published runs: parsing a row's inputs, the analytic profile, every row reported."""

import csv

import pytest

from chipfit.errors import ChipfitError
from chipfit.predict.parallel import GBIT, NETWORKS
from chipfit.validate_published import (format_table, model_spec, parse_amount, parse_batch, plan_hints, row_network,
                                        summarize, validate_published, RowResult)

FIELDS = ["id", "kind", "model", "params", "tokens_or_samples", "seq_len", "global_batch", "hardware",
          "device_count", "precision", "metric", "value", "unit", "source", "confidence", "notes"]


def test_row_inputs_are_parsed():
    assert parse_batch("4M tokens", 2048) == round(4e6 / 2048)
    assert parse_batch("2048 seqs (4.2M tokens)", 2048) == 2048
    assert parse_batch("3264", None) == 3264
    assert parse_amount("ImageNet-1k, ~35 epochs x 1,281,167 imgs (last eval)") == ("samples", 35 * 1281167)
    assert parse_amount("4.05e22 FLOPs (Table 4; tokens not given)") == ("flops", 4.05e22)
    assert parse_amount("1000000000000") == ("tokens", 1e12)
    assert plan_hints("amp_bf16 (FSDP FULL_SHARD, no act-ckpt)") == ((3,), (False,))
    assert plan_hints("bf16") == ((0, 1, 2, 3), (False, True))
    assert row_network("NVIDIA A100-SXM4-80GB (Jean Zay)") is NETWORKS["opa-4x100"]
    assert row_network("NVIDIA A100-80GB (1600 Gbps RoCE)").bw_bytes_per_s == 200 * GBIT
    assert row_network("NVIDIA H100-SXM5-80GB") is None  # the catalog's default network then


# (model, params) as ../shared/validation/published.csv gives them.
ROW_PARAMS = (("LLaMA-7B", 6.7e9), ("LLaMA-65B", 65.2e9), ("Llama 2 70B", 68.98e9), ("BLOOM-176B", 176.247e9),
              ("GPT 1T (1008B, benchmark, not trained to convergence)", 1008e9), ("MPT-7B", 6_658_859_008),
              ("MPT-70B", 64_862_437_376), ("GPT-style 175B (Megatron-DeepSpeed, benchmark only)", 175e9),
              ("GPT-3 175B (MLPerf)", 175e9), ("PaLM 540B", 540.35e9))


def test_published_architectures_reproduce_each_rows_parameter_count():
    ratios = {model: model_spec(model)[0].params() / params for model, params in ROW_PARAMS}
    assert all(abs(r - 1) < 0.01 for r in ratios.values()), ratios
    assert ratios["MPT-70B"] == pytest.approx(64_839_761_920 / 64_862_437_376)
    assert model_spec("T5-11B") is None  # encoder-decoder: no decoder-only spec


def test_summary_is_median_and_p90_of_abs_error():
    rows = [RowResult(id=str(i), kind="k", metric="m", unit="u", published=100.0, predicted=100.0 + e)
            for i, e in enumerate((10, -20, 30, 40, 50))]
    rows.append(RowResult(id="x", kind="k", metric="m", unit="u", published=1.0, reason="no input"))
    s = summarize(rows)["k"]
    assert (s["rows"], s["predicted"]) == (6, 5)
    assert s["median"] == pytest.approx(0.30) and s["p90"] == pytest.approx(0.46)


def test_every_row_is_listed_with_a_prediction_or_a_reason(tmp_path):
    path = tmp_path / "published.csv"
    rows = [
        dict(id="mpt", kind="train_throughput", model="MPT-7B", params="6658859008", tokens_or_samples="",
             seq_len="2048", global_batch="48 seqs", hardware="NVIDIA H100-80GB", device_count="8",
             precision="amp_bf16 (FSDP FULL_SHARD, no act-ckpt)", metric="tokens_per_s_per_device",
             value="10643", unit="tokens/s/GPU", source="s", confidence="high", notes=""),
        dict(id="lora", kind="mlperf_train", model="Llama 2 70B LoRA fine-tune", params="70000000000",
             tokens_or_samples="", seq_len="", global_batch="8", hardware="NVIDIA H100-SXM5-80GB",
             device_count="8", precision="fp8", metric="time_to_train", value="28.07", unit="minutes",
             source="s", confidence="high", notes=""),
        dict(id="nohw", kind="train_throughput", model="MPT-7B", params="6658859008", tokens_or_samples="",
             seq_len="2048", global_batch="48 seqs", hardware="Imaginary XPU", device_count="8",
             precision="bf16", metric="tokens_per_s_per_device", value="1", unit="tokens/s", source="s",
             confidence="low", notes=""),
    ]
    with path.open("w", newline="") as f:
        w = csv.DictWriter(f, FIELDS)
        w.writeheader()
        w.writerows(rows)
    v = validate_published(path)
    assert [r.id for r in v.rows] == ["mpt", "lora", "nohw"]
    mpt, lora, nohw = v.rows
    assert mpt.predicted > 0 and "ZeRO stage 3" in mpt.how and mpt.error is not None
    assert lora.predicted is None and lora.reason == "the row gives no number of samples or tokens trained"
    assert nohw.reason.startswith("Unknown hardware 'Imaginary XPU': no catalog entry matches it. Closest entries: ")
    table = format_table(v)
    assert all(r["id"] in table for r in rows) and "not predicted" in table


def test_missing_file_is_one_sentence():
    with pytest.raises(ChipfitError) as err:
        validate_published("/nonexistent/published.csv")
    assert str(err.value) == "Published figures file /nonexistent/published.csv does not exist; give the path to published.csv."
