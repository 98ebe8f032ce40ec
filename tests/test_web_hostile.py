"""Hostile requests get a bounded answer and leave the server answering: huge specs and configs, slow
traces, cross-site requests, other Host names, and a server stopped by SIGTERM."""

import functools
import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import pytest

pytest.importorskip("httpx")
from fastapi.testclient import TestClient  # noqa: E402

from chipfit.web import create_app, guard  # noqa: E402

ORIGIN = "http://127.0.0.1:8000"


def _resident() -> int:
    return guard._resident_bytes(os.getpid())


@pytest.fixture()
def client(tmp_path):
    app = create_app(db_path=tmp_path / "r.sqlite", hosts=guard.allowed_hosts("127.0.0.1"))
    with TestClient(app, base_url=ORIGIN) as c:
        yield c


def test_a_spec_of_a_billion_layers_is_refused_at_once(client):
    before = _resident()
    r = client.post("/api/compare", json={"spec": "layers=1000000000,hidden=8192,heads=64,ffn=28672,vocab=128256"})
    assert r.status_code == 400
    assert r.json() == {"detail": "Spec layers is 1000000000; give a whole number from 1 to 1000."}
    assert _resident() - before < 200 * 2**20


def test_a_config_of_a_billion_layers_is_refused_before_building(client):
    config = {"model_type": "llama", "num_hidden_layers": 10**9, "hidden_size": 64, "intermediate_size": 128,
              "num_attention_heads": 4, "vocab_size": 100}
    r = client.post("/api/upload", files={"file": ("config.json", json.dumps(config).encode())})
    assert r.status_code == 400
    assert r.json()["detail"] == ("Hugging Face config config.json field 'num_hidden_layers' is 1000000000; "
                                  "give a whole number from 0 to 1000.")


def test_a_trace_past_its_time_is_stopped_and_the_lock_released(client):
    """1000 llama layers pass the bounds but not the 3 s this test gives a trace: 503, and the server traces on."""
    config = {"model_type": "llama", "num_hidden_layers": 1000, "hidden_size": 64, "intermediate_size": 128,
              "num_attention_heads": 4, "num_key_value_heads": 4, "vocab_size": 100, "max_position_embeddings": 64}
    client.app.state.board._trace = functools.partial(guard.run_limited, timeout_s=3)
    t0 = time.monotonic()
    r = client.post("/api/upload", files={"file": ("config.json", json.dumps(config).encode())})
    assert r.status_code == 503
    assert r.json()["detail"].startswith("Profiling the model took over 3 s, the dashboard's limit per request")
    assert time.monotonic() - t0 < 30
    client.app.state.board._trace = guard.run_limited  # the default limit: the lock is free, the trace runs
    ok = client.post("/api/compare", json={"model": "resnet18", "mode": "infer", "class": "tpu"})
    assert ok.status_code == 200, ok.text


def test_cross_site_requests_are_refused(client):
    onnx = b"\x08\x07"  # never parsed: the request is refused first
    for headers in ({"Origin": "https://evil.example"}, {"Origin": "null"}, {"Sec-Fetch-Site": "cross-site"},
                    {"Origin": "http://127.0.0.1.evil.example:8000"}):
        r = client.post("/api/upload", files={"file": ("m.onnx", onnx)}, headers=headers)
        assert r.status_code == 403, headers
        assert "cannot change this dashboard" in r.json()["detail"]
    same = client.post("/api/compare", json={"model": "nope"}, headers={"Origin": ORIGIN})
    assert same.status_code == 400  # reached the API: the page's own origin may post


def test_another_host_name_is_refused(tmp_path):
    app = create_app(db_path=tmp_path / "r.sqlite", hosts=guard.allowed_hosts("127.0.0.1", ["chipfit.lan"]))
    with TestClient(app, base_url="http://rebound.example:8000") as c:
        r = c.get("/api/meta")
        assert r.status_code == 403
        assert r.json()["detail"].startswith("Host 'rebound.example' is not this dashboard's address")
    for base in ("http://localhost:8000", "http://chipfit.lan:8000", ORIGIN):
        with TestClient(app, base_url=base) as c:
            assert c.get("/api/meta").status_code == 200, base


def test_messages_show_no_server_path(tmp_path):
    db = tmp_path / "deep" / "secret"
    db.mkdir(parents=True)
    app = create_app(db_path=db / "r.sqlite", hosts=None)
    with TestClient(app) as c:
        c.get("/api/results")
        r = c.get("/api/results/12345")
    assert r.status_code == 404
    assert r.json() == {"detail": "Run 12345 is not in r.sqlite; `chipfit results list` shows the stored runs."}
    assert guard.public("Catalog file /home/me/x/cat.toml line 3: bad") == "Catalog file cat.toml line 3: bad"


def test_upload_folders_of_ended_servers_are_removed(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    stale = tmp_path / f"{guard.UPLOAD_PREFIX}{dead.pid}-abc"
    stale.mkdir()
    mine = guard.upload_folder()
    assert not stale.exists() and mine.is_dir() and mine.name.startswith(f"{guard.UPLOAD_PREFIX}{os.getpid()}-")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_stops_on_a_signal_and_removes_its_uploads(tmp_path, sig):
    import httpx

    port = _free_port()
    env = dict(os.environ, TMPDIR=str(tmp_path), PYTHONPATH=str(Path(__file__).parents[1] / "src"))
    server = subprocess.Popen([sys.executable, "-m", "chipfit", "serve", "--port", str(port), "--db",
                               str(tmp_path / "r.sqlite")], env=env, stderr=subprocess.PIPE)
    try:
        for _ in range(300):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/api/meta").status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.1)
        assert list(tmp_path.glob(guard.UPLOAD_PREFIX + "*"))
        server.send_signal(sig)
        assert server.wait(timeout=20) in (0, 130, -sig)
    finally:
        server.kill()
    assert not list(tmp_path.glob(guard.UPLOAD_PREFIX + "*"))


def test_huge_uploads_are_refused_with_bounded_memory(client):
    from chipfit.web.app import MAX_UPLOAD_BYTES

    before = _resident()
    r = client.post("/api/upload", files={"file": ("config.json", b" " * (MAX_UPLOAD_BYTES + 2**20))})
    assert r.status_code == 413
    assert r.json()["detail"].startswith("The file is larger than the 64 MiB the dashboard accepts")
    r = client.post("/api/upload", files={"file": ("config.json", b'{"model_type": "gpt2"}' + b" " * 2**21)})
    assert r.status_code == 400
    assert r.json()["detail"].startswith("Hugging Face config config.json is 2097174 bytes, more than the 1048576")
    assert _resident() - before < 400 * 2**20
