"""The dashboard's JSON API through FastAPI's TestClient: answers, caching, uploads, stored runs,
and bad input refused with a 4xx and one sentence (never a 500)."""

from __future__ import annotations

import re

import pytest

pytest.importorskip("fastapi")
pytest.importorskip("httpx")  # TestClient
pytest.importorskip("multipart")

from fastapi.testclient import TestClient  # noqa: E402

from chipfit.catalog import load_catalog  # noqa: E402
from chipfit.measurement import Environment, Measurement  # noqa: E402
from chipfit.store import Store  # noqa: E402
from chipfit.web import app as web_app  # noqa: E402
from chipfit.web import create_app  # noqa: E402
from chipfit.workload.zoo import ZOO  # noqa: E402

# One 3x3 convolution, 3 -> 4 channels, padding 1, on a 1x3x8x8 input. By hand:
# parameters 4*3*3*3 weights + 4 biases = 112; FLOPs 2*(3*3*3)*4*(8*8) multiply-adds + 4*8*8 bias adds = 14080.
TINY_PROTOTXT = b"""name: "tiny"
layer { name: "data" type: "Input" top: "data" input_param { shape: { dim: 1 dim: 3 dim: 8 dim: 8 } } }
layer { name: "conv" type: "Convolution" bottom: "data" top: "conv"
        convolution_param { num_output: 4 kernel_size: 3 pad: 1 } }
"""


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    db = tmp_path_factory.mktemp("web") / "results.sqlite"
    with TestClient(create_app(db_path=db)) as c:
        c.db_path = db
        yield c


def _compare(client, **body):
    return client.post("/api/compare", json={"model": "resnet18", "mode": "infer", **body})


def test_models_lists_the_library(client):
    from chipfit.workload.library import models as library_models

    r = client.get("/api/models")
    assert r.status_code == 200
    models = r.json()
    assert [m["name"] for m in models] == [e.name for e in library_models()]
    assert {m["name"] for m in models} >= set(ZOO)
    assert next(m for m in models if m["name"] == "llama-3.1-405b")["task"] == "causal-lm"
    resnet18 = next(m for m in models if m["name"] == "resnet18")
    assert resnet18["published_params"] == 11_689_512 and resnet18["task"] == "image-classification"


def test_hardware_filters_by_class(client):
    gpus = client.get("/api/hardware", params={"class": "gpu"}).json()
    assert {h["id"] for h in gpus} == {h.id for h in load_catalog().select(hw_class="gpu")}
    assert {h["class"] for h in gpus} == {"gpu"}
    h100 = next(h for h in gpus if h["id"] == "nvidia-h100-sxm5-80gb")
    assert h100["memory_bytes"]["value"] == 80 * 2**30 and h100["memory_bytes"]["source"]
    bad = client.get("/api/hardware", params={"class": "gpus"})
    # A closed set in the OpenAPI document: refused as the schema says (422), naming the set.
    assert bad.status_code == 422
    assert bad.json()["detail"].startswith("Field 'class' is not valid: Input should be 'cpu', 'gpu', 'tpu'")


def test_compare_names_the_network_between_nodes(client):
    job = {"model": "resnet18", "mode": "train", "batch": 16, "devices": 16, "class": "gpu"}
    bad = client.post("/api/compare", json=job | {"network": "efa"})
    assert bad.status_code == 400 and "Network 'efa' is not known. Did you mean efa-p5" in bad.json()["detail"]
    r = client.post("/api/compare", json=job | {"network": "efa-p4d"})
    a100 = next(e for e in r.json()["estimates"] if e["hardware"] == "nvidia-a100-sxm4-80gb")
    assert "AWS EFA, 400 Gb/s per 8 GPUs" in " ".join(a100["assumptions"])


def test_compare_matches_the_python_api_and_caches_the_profile(client):
    from chipfit import compare

    board = client.app.state.board
    first = _compare(client, **{"class": "gpu"})
    assert first.status_code == 200, first.text
    traces = board.profiles.traces
    # 1000 requests at batch 1: the same profile (no new trace), 1000 batches of one step each.
    second = _compare(client, samples=1000, **{"class": "gpu"})
    assert second.status_code == 200 and board.profiles.traces == traces
    one, many = first.json(), second.json()
    assert one["workload"]["params"] == 11_689_512
    expected = compare("resnet18", mode="infer", batch=1, hw_class="gpu", local=False).to_dict()
    assert [e["hardware"] for e in one["estimates"]] == [e["hardware"] for e in expected["estimates"]]
    assert one["workload"]["flops_per_step_per_device"] == expected["workload"]["flops_per_step_per_device"]
    for e1, e1000 in zip(one["estimates"], many["estimates"]):
        assert e1["hardware"] == e1000["hardware"]
        if e1["total_time_s"] is not None:
            assert e1000["total_time_s"] == pytest.approx(1000 * e1["step_time_s"])
    assert one["constraints"] == {"deadline_s": None, "budget_usd": None, "hw_class": "gpu", "framework": None}


def test_compare_reports_parsed_constraints(client):
    r = _compare(client, deadline="12h", budget=50000, framework="pytorch", **{"class": "tpu"})
    assert r.status_code == 200, r.text
    assert r.json()["constraints"] == {"deadline_s": 12 * 3600.0, "budget_usd": 50000.0, "hw_class": "tpu",
                                       "framework": "pytorch"}
    assert {e["class"] for e in r.json()["estimates"]} == {"tpu"}


def test_compare_advises_under_the_constraints(client):
    r = _compare(client, deadline="1h", budget=0.01, samples=10_000)
    assert r.status_code == 200, r.text
    result = r.json()
    advice, by_id = result["advice"], {(e["hardware"], e["devices"]): e for e in result["estimates"]}
    assert advice["constraints"]["deadline_s"] == 3600 and advice["constraints"]["budget_usd"] == 0.01
    kept = [by_id[(c["hardware"], c["devices"])] for c in advice["candidates"]]
    assert kept and len(kept) + len(advice["dropped"]) == len(by_id)
    # Kept: priced, within budget and deadline; the winner is the fastest of them (objective: time).
    assert all(e["cost_usd"] is not None and e["cost_usd"] <= 0.01 and e["total_time_s"] <= 3600 for e in kept)
    fastest = min(kept, key=lambda e: e["total_time_s"])
    assert advice["winner"] == {"hardware": fastest["hardware"], "devices": 1, "name": fastest["name"]}
    assert advice["why"].startswith(fastest["hardware"])
    unpriced = next(e for e in result["estimates"] if e["cost_usd"] is None and not e["excluded_reason"])
    reason = next(d["reason"] for d in advice["dropped"] if d["hardware"] == unpriced["hardware"])
    assert "no sourced price" in reason


LLAMA3_70B = "layers=80,hidden=8192,heads=64,kv_heads=8,ffn=28672,vocab=128256"


def test_compare_by_sizes_ranks_the_spec_model(client):
    from chipfit import compare

    r = client.post("/api/compare", json={"spec": LLAMA3_70B, "mode": "train", "tokens": 1e12, "precision": "bf16",
                                          "class": "gpu"})
    assert r.status_code == 200, r.text
    got = r.json()
    # Llama 3 70B by hand: embedding and LM head 2 x 128256 x 8192 = 2,101,346,304; per layer attention
    # 2 x 8192^2 + 2 x 8192 x 1024 = 150,994,944, MLP 3 x 8192 x 28672 = 704,643,072, two RMSNorms 16,384;
    # 80 layers 68,452,352,000; final norm 8,192: 70,553,706,496.
    assert got["workload"]["params"] == 70_553_706_496
    assert got["workload"]["model"] == LLAMA3_70B and got["workload"]["seq_len"] == 2048
    assert any("sequence length 2048 assumed" in n for n in got["workload"]["profile_notes"])
    expected = compare(None, spec=LLAMA3_70B, mode="train", tokens=1e12, precision="bf16", hw_class="gpu",
                       local=False).to_dict()
    assert [e["hardware"] for e in got["estimates"]] == [e["hardware"] for e in expected["estimates"]]
    assert {e["class"] for e in got["estimates"]} == {"gpu"}
    assert "serving" not in got["estimates"][0]


def test_llm_serving_gives_first_token_tokens_per_s_and_max_batch(client):
    body = {"model": "llama-3-70b", "mode": "infer", "batch": 32, "prompt_tokens": 2048, "generate_tokens": 256,
            "precision": "int8", "class": "gpu"}
    r = client.post("/api/compare", json=body)
    assert r.status_code == 200, r.text
    got = r.json()
    assert got["workload"]["prompt_tokens"] == 2048 and got["workload"]["generate_tokens"] == 256
    h100 = next(e for e in got["estimates"] if e["hardware"] == "nvidia-h100-sxm5-80gb")
    serving = h100["serving"]
    assert serving["time_to_first_token_s"] == h100["latency_s"] and h100["throughput_unit"] == "tokens/s"
    # By hand, H100 SXM5 (int8 1978.9 TFLOP/s dense, bf16 989.4, 3350 GB/s) at the published efficiencies of the
    # assumptions (matmul 72%, memory 85%, attention 35% of the 16-bit peak). A phase is its matrix products (a GPU
    # matmul pays its FLOPs and its bytes), then its attention kernels:
    assert any("matmul 72% of the int8 peak, memory 85%" in a for a in h100["assumptions"])
    rate, bandwidth, attention_rate = 1978.9e12 * 0.72, 3350e9 * 0.85, 989.4e12 * 0.35
    layer_matmul = 2 * 8192**2 + 2 * 8192 * 1024 + 3 * 8192 * 28672  # 855,638,016 weights a token runs through
    tokens = 32 * 2048
    # Prefill: the int8 weights (every embedding row a prompt token looks up: 32 x 2048 of them), each matrix's
    # bf16 input and output, the causal attention, the bf16 KV cache written.
    prefill_flops = 2 * tokens * 80 * layer_matmul + 2 * 32 * 8192 * 128256  # LM head at the last position
    prefill_bytes = (80 * (layer_matmul + 2 * 8192) + 8192 + 128256 * 8192 + tokens * 8192
                     + 80 * tokens * (2 * (8192 + 8192) + 2 * (8192 + 1024) + 3 * (8192 + 28672)) * 2)
    attention = max(80 * 2 * 32 * 2048**2 * 8192 / attention_rate, 32 * 2048 * 80 * 2 * 1024 * 2 / bandwidth)
    prefill = prefill_flops / rate + prefill_bytes / bandwidth + attention
    assert serving["time_to_first_token_s"] == pytest.approx(prefill, rel=1e-9)  # 7.43 s
    # Decode: each of 256 steps reads the int8 weights it touches (all layers with their norms, final norm and LM
    # head, 32 embedding rows) and does 2 FLOPs per matmul weight for each of the 32 requests; then attention reads
    # the bf16 KV cache, 80 x 2 x 1024 x 2 B per token, at contexts 2049..2304.
    weights = 80 * (layer_matmul + 2 * 8192) + 8192 + 128256 * 8192 + 32 * 8192
    matmul_s = 2 * 32 * (80 * layer_matmul + 8192 * 128256) / rate + weights / bandwidth
    kv_bytes = 32 * sum(range(2049, 2305)) * 80 * 2 * 1024 * 2
    decode_s = 256 * matmul_s + kv_bytes / bandwidth  # 9.10 s
    assert serving["tokens_per_s"] == pytest.approx(32 * 256 / (prefill + decode_s), rel=1e-6)  # 496
    # 32 requests need 70.55 GB of weights + 32 x 755 MB of KV cache: more than 90% of 80 GiB. The most that
    # fit: (0.9 x 80 GiB - 70,553,706,496 - 2048 x (2 x 8192 + 3 x 28672) x 2 B of prefill activations)
    # / (2304 tokens x 327,680 B) = 8.39, so 8.
    assert h100["fits"] is False and serving["max_batch"] == 8
    assert got["advice"]["changes"] == []


BAD_COMPARES = [
    ({"model": "resnet19"}, 400, "Did you mean resnet18"),
    ({"model": "os:system"}, 400, "Unknown model"),  # never imported: only zoo names and upload ids
    ({"model": "/etc/passwd"}, 400, "Unknown model"),
    ({"model": "upload:0123456789abcdef"}, 400, "upload the file again"),
    ({"model": "resnet18", "budget": -5}, 400, "Budget -5 USD is not positive"),
    ({"model": "resnet18", "budget": 0}, 400, "not positive"),
    ({"model": "resnet18", "deadline": "soon"}, 400, "Duration 'soon'"),
    ({"model": "resnet18", "deadline": "-3d"}, 400, "Duration '-3d'"),
    ({"model": "resnet18", "batch": 0}, 400, "Batch 0"),
    ({"model": "resnet18", "batch": "many"}, 422, "Field 'batch'"),
    ({"model": "resnet18", "epochs": -1}, 400, "epochs"),
    ({"model": "resnet18", "samples": 0}, 400, "samples"),
    ({"model": "resnet18", "devices": 0}, 400, "devices"),
    ({"model": "resnet18", "devices": 3, "batch": 4}, 400, "does not split evenly"),
    ({"model": "resnet18", "precision": "fp7"}, 422, "Field 'precision' is not valid: Input should be 'fp32'"),
    ({"model": "resnet18", "mode": "serve"}, 422, "Field 'mode'"),
    ({"model": "resnet18", "class": "gpus"}, 422, "Field 'class' is not valid: Input should be 'cpu', 'gpu'"),
    ({"model": "resnet18", "framework": "pytorc"}, 422, "Field 'framework' is not valid: Input should be 'pytorch'"),
    ({"model": "resnet18", "budjet": 5}, 422, "Field 'budjet'"),
    ({}, 400, "The request names no model; give a zoo name or upload id as model, or a spec."),
    ({"model": "llama-3-8b", "spec": LLAMA3_70B}, 400, "gives both model and spec"),
    ({"spec": "layers=80,hiden=8192"}, 400, "Spec key 'hiden' is not known. Did you mean hidden?"),
    ({"model": "llama-3-8b", "mode": "train", "prompt_tokens": 8, "generate_tokens": 8}, 400, "set mode to infer"),
    ({"model": "llama-3-8b", "mode": "infer", "prompt_tokens": 8}, 400,
     "LLM serving needs generate_tokens as a whole number of tokens above 0 (not given)"),
    ({"model": "llama-3-8b", "mode": "infer", "prompt_tokens": 0, "generate_tokens": 8}, 400, "(got 0)"),
    ({"model": "resnet18", "mode": "infer", "prompt_tokens": 8, "generate_tokens": 8}, 400,
     "LLM serving needs a decoder LLM; Model 'resnet18' is a vision model, not a transformer"),
    ({"model": "upload:0123456789abcdef", "mode": "infer", "prompt_tokens": 8, "generate_tokens": 8}, 400,
     "not an uploaded file"),
    ([1, 2], 422, "not valid"),
]


@pytest.mark.parametrize(("body", "status", "phrase"), BAD_COMPARES)
def test_bad_compare_is_a_4xx_with_one_sentence(client, body, status, phrase):
    r = client.post("/api/compare", json=body)
    assert r.status_code == status, r.text
    detail = r.json()["detail"]
    assert isinstance(detail, str) and phrase in detail


def test_body_that_is_not_json_is_422(client):
    r = client.post("/api/compare", content=b"{not json", headers={"Content-Type": "application/json"})
    assert r.status_code == 422 and isinstance(r.json()["detail"], str)


def test_upload_profiles_the_file_and_compares_it(client):
    r = client.post("/api/upload", files={"file": ("tiny net.prototxt", TINY_PROTOTXT)})
    assert r.status_code == 200, r.text
    up = r.json()
    assert up["model"].startswith("upload:") and up["name"] == "tiny_net" and up["bytes"] == len(TINY_PROTOTXT)
    assert up["profile"]["params"] == 112
    assert up["profile"]["flops"]["total"] == 14080
    cmp = client.post("/api/compare", json={"model": up["model"], "mode": "infer", "class": "gpu"})
    assert cmp.status_code == 200, cmp.text
    assert cmp.json()["workload"]["model"] == "tiny_net"
    assert cmp.json()["workload"]["flops_per_step_per_device"] == 14080
    train = client.post("/api/compare", json={"model": up["model"], "mode": "train"})
    assert train.status_code == 400 and "inference only" in train.json()["detail"]


def test_upload_that_is_not_a_model(client):
    r = client.post("/api/upload", files={"file": ("notes.txt", b"hello")})
    assert r.status_code == 415 and ".onnx" in r.json()["detail"]
    r = client.post("/api/upload", files={"file": ("broken.prototxt", b"layer { type: ")})
    assert r.status_code == 400
    detail = r.json()["detail"]
    assert "broken.prototxt" in detail and "chipfit-uploads" not in detail  # the server's temp path stays hidden
    r = client.post("/api/upload", files={"file": ("empty.onnx", b"")})
    assert r.status_code == 400 and "empty" in r.json()["detail"]


def test_upload_of_random_bytes_as_onnx_is_400(client):
    pytest.importorskip("onnx")
    r = client.post("/api/upload", files={"file": ("model.onnx", bytes(range(256)) * 8)})
    assert r.status_code == 400 and "model.onnx" in r.json()["detail"]


def test_upload_too_large_is_413(client, monkeypatch):
    monkeypatch.setattr(web_app, "MAX_UPLOAD_BYTES", 1000)
    # Read and counted: over the limit though the request is small.
    r = client.post("/api/upload", files={"file": ("big.prototxt", b" " * 1001)})
    assert r.status_code == 413 and "1000" not in r.json()["detail"] and "larger than" in r.json()["detail"]
    # Refused from Content-Length alone, before the body is read.
    r = client.post("/api/upload", files={"file": ("big.prototxt", b" " * (1000 + web_app.MULTIPART_OVERHEAD_BYTES))})
    assert r.status_code == 413


def test_results_list_and_one_run(client):
    env = Environment(device="local-cpu", device_name="Test CPU", hardware_id="local-cpu", threads=2,
                      hostname="box", platform="Linux", python_version="3.11.0", torch_version="2.13.0",
                      chipfit_version="0.1.0", created_at="2025-01-01T00:00:00+00:00")
    n = 256
    m = Measurement(kind="matmul", device="local-cpu", precision="fp32", shape={"m": n, "n": n, "k": n},
                    flops=2.0 * n**3, bytes=3 * 4 * n * n, median_s=0.002, min_s=0.0018, max_s=0.0024,
                    repetitions=10)
    with Store(client.db_path) as store:
        run_id = store.record_run("bench", "local-cpu", env, [m])
    runs = client.get("/api/results").json()
    assert [(r["id"], r["kind"], r["measurement_count"]) for r in runs] == [(run_id, "bench", 1)]
    one = client.get(f"/api/results/{run_id}").json()
    (got,) = one["measurements"]
    assert got["achieved_flops_per_s"] == pytest.approx(2 * 256**3 / 0.002)  # 16.78 GFLOP/s
    assert got["spread"] == pytest.approx((0.0024 - 0.0018) / 0.002)
    missing = client.get(f"/api/results/{run_id + 1}")
    assert missing.status_code == 404 and f"Run {run_id + 1}" in missing.json()["detail"]
    assert client.get("/api/results/abc").status_code == 422


def test_openapi_describes_the_api(client):
    spec = client.get("/openapi.json").json()
    for path in ("/api/models", "/api/hardware", "/api/compare", "/api/upload", "/api/results",
                 "/api/results/{run_id}"):
        assert path in spec["paths"]
    fields = spec["components"]["schemas"]["CompareRequest"]["properties"]
    assert {"model", "mode", "batch", "seq", "class", "framework", "deadline", "budget"} <= set(fields)


def test_page_loads_nothing_from_elsewhere(client):
    page = client.get("/")
    assert page.status_code == 200 and "/static/app.js" in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    for name in ("index.html", "app.js", "style.css"):
        text = (web_app.STATIC_DIR / name).read_text()
        assert client.get(f"/static/{name}").status_code == 200
        # The SVG namespace is a name, not a fetch; any other URL would be a network request.
        urls = set(re.findall(r"(?:https?:)?//[a-z0-9.-]+\.[a-z]{2,}", text)) - {"http://www.w3.org"}
        assert urls == set(), name
    assert client.get("/docs").status_code == 404  # Swagger UI would pull its scripts from a CDN


def test_finite_turns_nan_and_infinity_into_null():
    assert web_app.finite({"a": [1.0, float("nan")], "b": float("inf"), "c": "x"}) == {"a": [1.0, None], "b": None, "c": "x"}


def test_profile_cache_traces_each_key_once_and_keeps_the_newest():
    cache = web_app.ProfileCache(maxsize=2)
    made = []
    for key in ("a", "b", "a", "c", "b"):
        cache.get((key,), lambda key=key: made.append(key) or key.upper())
    # "a" hit once; "c" evicts the least recently used "b", so "b" is traced again.
    assert made == ["a", "b", "c", "b"] and cache.traces == 4


def test_serve_refuses_a_port_that_is_not_one():
    from chipfit.errors import ChipfitError
    from chipfit.web import serve

    with pytest.raises(ChipfitError, match="Port 70000 is not a TCP port"):
        serve(port=70000)
