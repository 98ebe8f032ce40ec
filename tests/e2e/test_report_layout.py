"""The HTML report in a real browser: its ranking table fits an 800-pixel-wide window with every
catalog entry, the price column included (narrow columns wrap instead of overflowing)."""

from __future__ import annotations

import pytest

pytest.importorskip("matplotlib")

from tests.e2e.test_dashboard import ARTIFACTS, CHROMIUM, CHROMIUM_ARGS  # noqa: E402  (skips without chromium/playwright)

from playwright.sync_api import sync_playwright  # noqa: E402

from chipfit.advise import advise  # noqa: E402
from chipfit.api.report import report_data  # noqa: E402
from chipfit.catalog import load_catalog  # noqa: E402
from chipfit.comparison import Comparison, compare_profile  # noqa: E402
from chipfit.predict import Conditions, Plan  # noqa: E402
from chipfit.report.html import html  # noqa: E402
from chipfit.workload.workload import Workload  # noqa: E402
from tests.test_report import _profile  # noqa: E402


@pytest.mark.parametrize("width", [800, 1280])
def test_ranking_table_fits_the_window(tmp_path, width):
    catalog = load_catalog()
    work, plan, prof = Workload(model="tiny", batch=4, samples=4e6), Plan(devices=1), _profile()
    estimates = compare_profile(prof, work, plan, list(catalog.hardware.values()), catalog)
    advice = advise(Comparison(workload=work, plan=plan, profile=prof, estimates=estimates, conditions=Conditions()))
    report = html(report_data(advice, catalog), tmp_path / "report.html")
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": width, "height": 900})
        page.goto(report.as_uri())
        # The answer first: the summary and the key plots come before the full ranking table.
        order = page.evaluate("""() => [...document.querySelectorAll('dl.summary, figure, table')]
            .map(e => e.tagName === 'TABLE' ? 'table' : e.tagName === 'DL' ? 'summary' : 'figure').slice(0, 3)""")
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / f"report-{width}.png"), full_page=True)
        table_px, box_px, priced = page.evaluate("""() => {
            const t = document.querySelector('table'), cells = [...t.querySelectorAll('td.p')];
            return [t.scrollWidth, t.parentElement.clientWidth, cells.filter(c => c.textContent.includes('/h')).length]; }""")
        browser.close()
    assert order == ["summary", "figure", "figure"]
    assert priced >= 5  # the catalog's priced entries show their rate
    assert table_px <= box_px, f"the ranking is {table_px} px wide in a {box_px} px box at a {width} px window"
