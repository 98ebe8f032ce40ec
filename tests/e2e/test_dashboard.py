"""The dashboard in a real browser: Playwright drives Debian's headless Chromium against the app
on a loopback port, runs a comparison and an upload, and saves a screenshot to test-artifacts/.

Skipped when playwright, the web extra or /usr/bin/chromium is missing (`.ci/run` installs them).
"""

from __future__ import annotations

import os
import socket
import threading
import time
from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
COMPARE_TIMEOUT_MS = 120_000  # the first compare traces resnet18 on a shared 2-core machine

if not os.path.exists(CHROMIUM):
    pytest.skip(f"{CHROMIUM} is not installed (apt-get install chromium)", allow_module_level=True)
pytest.importorskip("playwright.sync_api")
pytest.importorskip("uvicorn")
pytest.importorskip("fastapi")

import uvicorn  # noqa: E402
from playwright.sync_api import expect, sync_playwright  # noqa: E402

from chipfit.measurement import Environment, Measurement  # noqa: E402
from chipfit.store import Store  # noqa: E402
from chipfit.web import create_app  # noqa: E402
from tests.test_web import LLAMA3_70B, TINY_PROTOTXT  # noqa: E402


def _free_loopback_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    db = tmp_path_factory.mktemp("e2e") / "results.sqlite"
    env = Environment(device="local-cpu", device_name="Test CPU", hardware_id="local-cpu", threads=2,
                      hostname="box", platform="Linux", python_version="3.11.0", torch_version="2.13.0",
                      chipfit_version="0.1.0", created_at="2025-01-01T00:00:00+00:00")
    triad = Measurement(kind="triad", device="local-cpu", precision="fp32", shape={"elements": 2**20},
                        flops=2.0 * 2**20, bytes=12.0 * 2**20, median_s=0.001, min_s=0.0009, max_s=0.0012,
                        repetitions=20, label="triad")
    with Store(db) as store:
        store.record_run("bench", "local-cpu", env, [triad])
    port = _free_loopback_port()
    srv = uvicorn.Server(uvicorn.Config(create_app(db_path=db), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 30
    while not srv.started:
        if time.monotonic() > deadline or not thread.is_alive():
            pytest.fail(f"The dashboard did not start on 127.0.0.1:{port}.")
        time.sleep(0.05)
    yield f"http://127.0.0.1:{port}"
    srv.should_exit = True
    thread.join(10)


@pytest.fixture(scope="module")
def page(server):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        pg = browser.new_page(viewport={"width": 1400, "height": 1000})
        pg.server, pg.problems = server, []
        pg.on("pageerror", lambda exc: pg.problems.append(f"page error: {exc}"))
        pg.on("console", lambda msg: msg.type == "error" and pg.problems.append(f"console: {msg.text}"))
        pg.on("request", lambda req: req.url.startswith(server) or pg.problems.append(f"left the server: {req.url}"))
        pg.goto(server + "/")
        pg.wait_for_selector("body[data-ready=true]")
        yield pg
        browser.close()


def test_comparison_shows_table_and_plots(page, tmp_path):
    page.select_option("#model", "resnet18")
    page.check("input[name=mode][value=infer]")
    page.fill("input[name=batch]", "1")
    page.fill("input[name=samples]", "1000000")
    page.click("#run")
    page.wait_for_selector("#ranking-table tbody tr.row", timeout=COMPARE_TIMEOUT_MS)

    api = page.request.post(page.server + "/api/compare", data={"model": "resnet18", "mode": "infer", "batch": 1,
                                                   "samples": 1_000_000}).json()
    runnable = [e["hardware"] for e in api["estimates"] if not e["excluded_reason"]]
    rows = page.locator("#ranking-table tbody tr.row")
    assert rows.count() == len(runnable)
    assert [rows.nth(i).get_attribute("data-hardware") for i in range(3)] == runnable[:3]

    bars = page.locator("#plot-bars svg rect")
    fitting = [e for e in api["estimates"] if not e["excluded_reason"] and e["fits"] is not False]
    assert bars.count() == min(15, len(fitting))
    assert bars.first.bounding_box()["width"] > 1
    priced = [e for e in fitting if e["cost_usd"]]
    assert page.locator("#plot-scatter svg circle").count() == len(priced) > 0
    assert page.locator("#summary").inner_text().count("resnet18") == 1
    winner = api["advice"]["winner"]["hardware"]
    assert page.locator("#advice").inner_text().startswith(f"Advice: {winner} ")
    assert page.locator("#ranking-table tr.winner").get_attribute("data-hardware") == winner

    rows.first.click()  # a row opens its assumptions
    assert "efficiency" in page.locator("#ranking-table tr.assumptions").first.inner_text()

    ARTIFACTS.mkdir(exist_ok=True)
    (ARTIFACTS / ".gitignore").write_text("*\n")
    page.screenshot(path=str(ARTIFACTS / "dashboard.png"), full_page=True)
    assert (ARTIFACTS / "dashboard.png").stat().st_size > 10_000
    assert page.problems == [], page.problems


def test_bad_input_shows_the_servers_sentence(page):
    page.fill("input[name=budget]", "-1")
    page.click("#run")
    page.wait_for_selector("#error:not([hidden])")
    assert page.locator("#error").inner_text() == "Budget -1 USD is not positive; give a budget above 0 or leave it empty."
    # The answer of the earlier request is gone: it would read as the answer to this one.
    assert page.locator("#ranking").is_hidden() and page.locator("#summary").is_hidden()
    assert page.locator("#plots").is_hidden() and page.locator("#placeholder").is_visible()
    page.screenshot(path=str(ARTIFACTS / "dashboard-error.png"), full_page=True)
    page.fill("input[name=budget]", "")
    # The browser logs the 400 itself; that one was asked for.
    page.problems[:] = [p for p in page.problems if "status of 400" not in p]


def test_upload_then_compare(page, tmp_path):
    model = tmp_path / "tiny.prototxt"
    model.write_bytes(TINY_PROTOTXT)
    page.set_input_files("#upload", str(model))
    expect(page.locator("#upload-status")).to_contain_text("parameters", timeout=COMPARE_TIMEOUT_MS)
    assert page.locator("#upload-status").inner_text().startswith("tiny.prototxt: 112 parameters")
    assert page.locator("#model").input_value().startswith("upload:")
    page.click("#run")
    expect(page.locator("#summary .v").first).to_have_text("tiny", timeout=COMPARE_TIMEOUT_MS)
    assert page.locator("#ranking-table tbody tr.row").count() > 0


def test_llm_by_sizes_serving_ranks_with_serving_columns(page):
    page.click("button[data-tab=compare]")
    page.check("input[name=mode][value=infer]")
    page.select_option("#model", "resnet18")
    assert page.locator("#serving-fields").is_hidden()  # not a decoder LLM
    page.select_option("#model", "llama-3-8b")
    assert page.locator("#serving-fields").is_visible()
    page.check("input[name=source][value=spec]")
    assert page.locator("#model").is_hidden() and page.locator("#spec").is_visible()
    page.fill("#spec", LLAMA3_70B)
    page.fill("input[name=batch]", "32")
    page.fill("input[name=samples]", "")
    page.select_option("#precision", "int8")
    page.fill("input[name=prompt_tokens]", "2048")
    page.fill("input[name=generate_tokens]", "256")
    page.click("#run")
    expect(page.locator("#ranking-table thead")).to_contain_text("first token", timeout=COMPARE_TIMEOUT_MS)

    api = page.request.post(page.server + "/api/compare", data={
        "spec": LLAMA3_70B, "mode": "infer", "batch": 32, "precision": "int8", "prompt_tokens": 2048,
        "generate_tokens": 256}).json()
    runnable = [e["hardware"] for e in api["estimates"] if not e["excluded_reason"]]
    rows = page.locator("#ranking-table tbody tr.row")
    assert rows.count() == len(runnable)
    assert [rows.nth(i).get_attribute("data-hardware") for i in range(3)] == runnable[:3]
    headers = page.locator("#ranking-table thead th").all_inner_texts()
    assert headers[4:7] == ["first token", "tokens/s", "max batch"]
    # Llama 3 70B at int8 on one H100: 8 requests of 2048 + 256 tokens fit (tests/test_web.py derives it).
    h100 = page.locator('#ranking-table tr.row[data-hardware="nvidia-h100-sxm5-80gb"] td')
    assert h100.nth(6).inner_text() == "8" and h100.nth(4).inner_text() == "7.43 s"
    summary = page.locator("#summary").inner_text()
    assert "70.6 G" in summary and "LLM serving, 2048 prompt + 256 generated tokens" in summary
    ARTIFACTS.mkdir(exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / "dashboard-serving.png"), full_page=True)
    assert page.problems == [], page.problems


def test_stored_measurements_tab(page):
    page.click("button[data-tab=results]")
    page.wait_for_selector("#runs-table tbody tr")
    assert page.locator("#runs-table tbody tr").count() == 1
    page.click("#runs-table tbody tr")
    page.wait_for_selector("#measurements-table tbody tr")
    cells = page.locator("#measurements-table tbody tr").first.inner_text()
    assert "triad" in cells and "1.00 ms" in cells
    assert page.problems == [], page.problems
