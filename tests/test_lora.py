"""LoRA and QLoRA fine-tuning: FLOPs, parameters and memory against hand-derived formulas, the options' errors,
and the published LoRA runs predicted through the generic path."""

import csv
import io
import json
from pathlib import Path

import pytest

from chipfit.catalog import load_catalog
from chipfit.cli import main
from chipfit.predict.memory import memory_per_device
from chipfit.predict.parallel import group_collective_s, topology
from chipfit.predict.plan import Plan
from chipfit.predict.plans import search_plans
from chipfit.predictors import plan_shape
from chipfit.workload.llm import TransformerSpec, profile_spec
from chipfit.workload.lora import LoRA
from chipfit.workload.workload import Workload

# A small GQA transformer: h 64, 4 heads of 16, 2 KV heads (k and v 32 wide), gated MLP 128, vocab 100.
SPEC = TransformerSpec(layers=2, hidden=64, heads=4, kv_heads=2, ffn=128, vocab=100, name="tiny")
B, S, R = 2, 16, 8
T = B * S
H, KV, F, V, L = 64, 32, 128, 100, 2
# Frozen matrices one token runs through: q, k, v, o, gate, up, down per layer, and the LM head.
N_BASE = L * (H * H + 2 * H * KV + H * H + 3 * H * F) + H * V
# Adapters on q, k, v, o: r (d_in + d_out) each.
N_ADAPTER = L * R * ((H + H) + (H + KV) + (H + KV) + (H + H))


def _matmul_flops(prof, phase=None):
    return sum(op.flops for op in prof.ops if op.kind == "matmul" and phase in (None, op.phase))


def test_adapter_parameters_are_rank_times_in_plus_out():
    prof = profile_spec(SPEC, batch=B, seq_len=S, precision="bf16", lora=LoRA(R))
    assert N_ADAPTER == 2 * 8 * 448
    assert prof.trainable_params == N_ADAPTER and prof.params == SPEC.params() + N_ADAPTER


def test_training_flops_are_two_forward_base_passes_and_three_adapter_passes():
    lora = profile_spec(SPEC, batch=B, seq_len=S, precision="bf16", lora=LoRA(R))
    full = profile_spec(SPEC, batch=B, seq_len=S, precision="bf16")
    # Base forward 2 N T, base input-gradient backward 2 N T, adapters 6 N_a T (forward 2, backward 4).
    assert _matmul_flops(lora, "forward") == 2 * N_BASE * T + 2 * N_ADAPTER * T
    assert _matmul_flops(lora, "backward") == 2 * N_BASE * T + 4 * N_ADAPTER * T
    assert _matmul_flops(lora) == 4 * N_BASE * T + 6 * N_ADAPTER * T
    assert _matmul_flops(full) == 6 * N_BASE * T
    attention = [sum(op.flops for op in p.ops if op.kind == "attention") for p in (lora, full)]
    assert attention[0] == attention[1]  # activation gradients still flow through every attention
    # AdamW steps the adapters only: 8 FLOPs per parameter.
    assert lora.flops("optimizer") == 8 * N_ADAPTER


def test_all_linear_adapts_the_mlp_too():
    prof = profile_spec(SPEC, batch=B, seq_len=S, precision="bf16", lora=LoRA(R, ("all-linear",)))
    mlp = L * R * 3 * (H + F)
    assert prof.trainable_params == N_ADAPTER + mlp


def test_memory_is_frozen_base_plus_adapter_weights_gradients_and_optimizer():
    prof = profile_spec(SPEC, batch=B, seq_len=S, precision="bf16", lora=LoRA(R))
    n_frozen = SPEC.params()
    assert prof.frozen_param_bytes == 2 * n_frozen  # bf16 base: no fp32 master, no gradient, no state
    job = Workload(model="tiny", batch=B, seq_len=S, precision="bf16")
    mem = memory_per_device(prof, job, Plan(), "gpu")
    assert mem["weights"] == pytest.approx(2 * n_frozen + 2 * N_ADAPTER)
    assert mem["gradients"] == pytest.approx(2 * N_ADAPTER)
    assert mem["optimizer"] == pytest.approx(12 * N_ADAPTER)  # fp32 master, momentum and variance
    # Saved per layer (bytes e = 2): norm inputs 2h; attention input h (q, k, v are adapted), Q, K, V, output
    # and the fp32 log-sum-exp; the frozen MLP saves gate, up and SiLU outputs (3f) but neither its input nor
    # the down-projection's; each adapter its x A (r wide). Then ids, the final norm input and fp32 log-probs.
    e = 2
    per_layer = e * T * (2 * H + H + H + KV + KV + H + 3 * F) + 4 * B * 4 * S + e * T * R * 4
    assert mem["activations"] == pytest.approx(L * per_layer + T * 8 + T * H * e + T * V * 4)
    full = profile_spec(SPEC, batch=B, seq_len=S, precision="bf16")
    assert prof.activation_bytes < full.activation_bytes


def test_zero3_shards_frozen_weights_and_qlora_stores_them_in_four_bits():
    job = Workload(model="tiny", batch=2 * B, seq_len=S, precision="bf16")
    prof = profile_spec(SPEC, batch=B, seq_len=S, precision="bf16", lora=LoRA(R))
    sharded = memory_per_device(prof, job, Plan(devices=2, zero_stage=3), "gpu")
    assert sharded["weights"] == pytest.approx((2 * SPEC.params() + 2 * N_ADAPTER) / 2)
    qlora = profile_spec(SPEC, batch=B, seq_len=S, precision="bf16", lora=LoRA(R, base="nf4"))
    layers = N_BASE - H * V  # the layer matrices; embedding, norms and head stay in bf16
    assert qlora.frozen_param_bytes == round(layers * (4 + 0.127) / 8 + (SPEC.params() - layers) * 2)
    # Each layer's GEMMs dequantise their nf4 weights first, forward and again in backward.
    dequant = [op for op in qlora.ops if op.name.startswith("dequantize")]
    assert len(dequant) == 2 * 2 * L and sum(op.bytes_written for op in dequant) == 2 * 2 * layers


def test_data_parallel_reduces_only_the_adapter_gradients():
    hw = load_catalog().get("nvidia-h100-sxm5-80gb")
    job = Workload(model="tiny", batch=2 * B, seq_len=S, precision="bf16", tokens=float(2 * B * S))
    search = search_plans(lambda b: profile_spec(SPEC, batch=b, seq_len=S, precision="bf16", lora=LoRA(R)),
                          plan_shape(SPEC, S), job, hw, devices=2, zero_stages=(0,), recompute=(False,),
                          micro_batch_sizes=(B,), top=50)
    (dp,) = [r for r in search.ranked if r.plan.data_parallel == 2]
    assert dp.parts.data_comm_s == pytest.approx(group_collective_s("all_reduce", 2 * N_ADAPTER, 2, topology(hw)))


def run(capsys, *argv):
    code = main(list(argv))
    return code, *capsys.readouterr()


TINY = "layers=2,hidden=64,heads=4,kv_heads=2,ffn=128,vocab=100"


@pytest.mark.parametrize("extra, message", [
    (("--lora", "0"), "--lora 0 is out of range; give the adapters' rank as a whole number of 1 or more, like 16."),
    (("--lora", "32"), "LoRA rank 32 is not below the 32 columns of k_proj in"),
    (("--lora", "8", "--lora-targets", "q_proj,wq"), "LoRA target 'wq' is not a matrix of"),
    (("--lora-base", "nf4"), "--lora-targets and --lora-base shape LoRA adapters; give --lora RANK with them."),
    (("--lora", "8", "--lora-base", "nf5"), "LoRA base storage (--lora-base) 'nf5' is not known."),
])
def test_bad_lora_options_are_one_sentence_and_exit_2(capsys, extra, message):
    code, out, err = run(capsys, "plan", "--spec", TINY, "--hardware", "nvidia-h100-sxm5-80gb", "--devices", "1",
                         *extra)
    assert code == 2 and message in err and "Traceback" not in err and not out


def test_plan_with_lora_fits_what_full_fine_tuning_cannot(capsys):
    # Llama 2 70B at 4K tokens on 8 H100s: full fine-tuning (16 bytes per parameter) cannot fit; LoRA can.
    args = ("plan", "llama-2-70b", "--hardware", "nvidia-h100-sxm5-80gb", "--devices", "8", "--seq", "4096",
            "--batch", "8", "--tokens", "3.3e7", "--json")
    code, out, _ = run(capsys, *args)
    assert code == 0 and json.loads(out)["search"]["ranked"] == []
    code, out, _ = run(capsys, *args, "--lora", "16")
    d = json.loads(out)
    assert code == 0 and d["search"]["ranked"]
    assert d["finetune"] == "LoRA rank 16 on q_proj, k_proj, v_proj, o_proj, the rest frozen"


LORA_ROWS = {"mlpt40-lora-h100x8", "mlpt40-lora-h200x8", "mlpt40-lora-gaudi2x8"}
# Generic-path prediction (no constant fitted to these rows) against MLPerf's time to train: within this share.
PUBLISHED_TOLERANCE = 0.30


# ../shared/validation/published.csv's LoRA row (its header and the row, fields as given there).
SHARED_LORA_ROW = (
    "id,kind,model,params,tokens_or_samples,seq_len,global_batch,hardware,device_count,precision,metric,value,unit,"
    "source,confidence,notes\n"
    'mlpt40-lora-h100x8,mlperf_train,"Llama 2 70B LoRA fine-tune (MLPerf llama2_70b_lora, lora_rank 16)",'
    "70000000000,,,8,NVIDIA H100-SXM5-80GB (DGX H100),8,fp8 (config_DGXH100_1x8x4xtp4pp1cp1.sh FP8=True),"
    "time_to_train,28.07,minutes,MLCommons MLPerf Training v4.0,high,\n"
)


def test_published_lora_rows_are_predicted_by_the_generic_path():
    from chipfit.validate_published import predict_row

    here = Path(__file__).resolve().parents[1]
    more = here / "benchmarks" / "validation" / "published_more.csv"
    rows = [r for r in csv.DictReader(more.open(encoding="utf-8")) if r["id"] in LORA_ROWS]
    rows.append(next(csv.DictReader(io.StringIO(SHARED_LORA_ROW))))  # ../shared is not in a clean clone
    results = {r["id"]: predict_row(r, load_catalog()) for r in rows}
    assert set(results) == LORA_ROWS
    # The shared row gives neither the samples trained nor the sequence length: it says so.
    assert results["mlpt40-lora-h100x8"].reason == "the row gives no number of tokens or samples trained"
    for key in ("mlpt40-lora-h200x8", "mlpt40-lora-gaudi2x8"):
        r = results[key]
        assert "LoRA rank 16" in r.how and r.error < PUBLISHED_TOLERANCE, (key, r.reason, r.predicted)


def test_dashboard_api_takes_lora_as_the_job_does(tmp_path):
    pytest.importorskip("httpx")
    from fastapi.testclient import TestClient

    from chipfit import compare
    from chipfit.web.app import create_app

    job = {"spec": TINY, "mode": "train", "batch": 4, "seq": 16, "hardware": ["nvidia-h100-sxm5-80gb"]}
    with TestClient(create_app(db_path=tmp_path / "results.sqlite")) as client:
        r = client.post("/api/compare", json=job | {"lora": 8, "lora_base": "nf4"})
        bad = client.post("/api/compare", json=job | {"lora": 0})
    assert r.status_code == 200 and bad.status_code == 400
    assert bad.json()["detail"].startswith("--lora 0 is out of range")
    (web,) = r.json()["estimates"]
    (api,) = compare(spec=TINY, mode="train", batch=4, seq=16, hardware="nvidia-h100-sxm5-80gb", local=False,
                     lora=8, lora_base="nf4").to_dict()["estimates"]
    assert web["step_time_s"] == pytest.approx(api["step_time_s"])
    assert web["memory_per_device_bytes"] == pytest.approx(api["memory_per_device_bytes"])
