"""report.html opened in a real headless chromium, used as a person would: filter, sort, click.

Chromium and chromium-driver come from Debian, selenium from PyPI (``scripts/browser_up.sh`` installs what is
missing); when the browser cannot start the test is skipped with the reason. Screenshots are test artefacts in
``outputs/test-artifacts/`` (``REPORT_HTML_SHOTS=DIR`` writes them to DIR instead, e.g. ``docs``).
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

import pandas as pd
import pytest
from chromium_driver import ROOT, BrowserUnavailable, severe_console_messages, start, stop
from score_fixtures import make_scores_dir

from data_selection.options.report import ReportOptions
from data_selection.reports.selection import run_report
from data_selection.select import SelectOptions, run_select

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def driver():
    try:
        d = start()
    except BrowserUnavailable as err:
        pytest.skip(f"no headless browser: {err}")
    yield d
    stop(d)


@pytest.fixture(scope="module")
def page(tmp_path_factory, qwen_tokenizer_dir):
    root = tmp_path_factory.mktemp("browser")
    scores = make_scores_dir(root, n_rows=400, truncated_rows=(1, 2, 3, 50))
    info = root / "dataset_info.json"
    for strategy in ("zpd", "random"):
        run_select(SelectOptions(scores=str(scores), name=f"b_{strategy}", strategy=strategy, n=80, seed=42,
                                 dataset_info=str(info)))
    run_select(SelectOptions(scores=str(scores), name="b_mr", strategy="random", match="b_zpd", n=80, seed=42,
                             match_bins=5, borrow=True, dataset_info=str(info)))
    out = root / "report"  # three selections: the page must still fit a 1,400 px window (issue 28)
    run_report(ReportOptions(names=["b_zpd", "b_random", "b_mr"], out=str(out), dataset_info=str(info),
                             html_tokenizer=str(qwen_tokenizer_dir)))
    return root, scores, out / "report.html"


def _ids_shown(d) -> list[str]:
    return d.execute_script("return [...document.querySelectorAll('#rows tr')].map(r => r.children[1].textContent)")


def _set(d, element_id: str, value: str) -> None:
    d.execute_script("const e = document.getElementById(arguments[0]); e.value = arguments[1];"
                     "e.dispatchEvent(new Event(e.tagName === 'SELECT' ? 'change' : 'input'));", element_id, value)


def test_report_page_in_chromium(driver, page):
    from selenium.webdriver.common.by import By  # lazy: selenium is optional (skips without it)
    from selenium.webdriver.support.ui import WebDriverWait  # lazy: as above

    root, scores, html = page
    d = driver
    t0 = time.perf_counter()
    d.get(html.resolve().as_uri())
    WebDriverWait(d, 20).until(lambda x: x.find_element(By.TAG_NAME, "body").get_attribute("data-ready") == "1")
    opened = time.perf_counter() - t0
    assert severe_console_messages(d) == []
    shots = Path(os.environ.get("REPORT_HTML_SHOTS") or ROOT / "outputs" / "test-artifacts")
    shots.mkdir(parents=True, exist_ok=True)
    d.set_window_size(1400, 1500)
    d.save_screenshot(str(shots / "report_html.png"))

    # the band's cut points drawn on the key histogram are the manifest's thresholds
    th = json.loads((root / "data" / "b_zpd.manifest.json").read_text(encoding="utf-8"))["thresholds"]
    cuts = [float(e.get_attribute("data-value")) for e in d.find_elements(By.CSS_SELECTOR, "line.cut[data-value]")]
    assert cuts == [th["low_value"], th["high_value"]]
    labels = [e.text for e in d.find_elements(By.CSS_SELECTOR, "text.cut-label")]
    assert labels == [f"q0.25 {th['low_value']:.4f}", f"q0.75 {th['high_value']:.4f}"]
    # ... and their labels do not overlap (issue 27.10), nor does any table widen the page (issue 28)
    boxes = d.execute_script("return [...document.querySelectorAll('text.cut-label')].map(e => {"
                             "const b = e.getBoundingClientRect(); return [b.left, b.right]; })")
    assert boxes[0][1] <= boxes[1][0]
    assert d.execute_script("return document.documentElement.scrollWidth") <= d.execute_script(
        "return document.documentElement.clientWidth")

    # every scored row is in the table, and the page says so
    table = pd.read_parquet(scores / "scores.parquet")
    _set(d, "page-size", "all")
    n_rows = len(d.find_elements(By.CSS_SELECTOR, "#rows tr"))
    assert n_rows == int(d.find_element(By.ID, "match-count").text) == int(d.find_element(By.ID, "table-rows").text)
    assert n_rows == len(table)

    # a range on the key narrows the rows to exactly those in range (bounds between shown 4-decimal values)
    shown = table["loss_mean"].round(4)
    lo, hi = shown.quantile(0.3) + 0.00005, shown.quantile(0.6) + 0.00005
    _set(d, "min-loss_mean", f"{lo:.5f}")
    _set(d, "max-loss_mean", f"{hi:.5f}")
    want = set(table.loc[(shown >= lo) & (shown <= hi), "id"])
    assert 0 < len(want) < len(table)
    assert set(_ids_shown(d)) == want and int(d.find_element(By.ID, "match-count").text) == len(want)

    # sorting by the key orders the filtered rows
    d.find_element(By.CSS_SELECTOR, "th[data-key='loss_mean']").click()
    keys = d.execute_script("const i = [...document.querySelectorAll('#example-table th')].findIndex("
                            "th => th.dataset.key === 'loss_mean');"
                            "return [...document.querySelectorAll('#rows tr')].map(r => +r.children[i].textContent)")
    assert keys == sorted(keys) and len(keys) == len(want)

    # text search, then clicking a row shows that row's response
    _set(d, "min-loss_mean", "")
    _set(d, "max-loss_mean", "")
    _set(d, "status-sel:b_zpd", "kept")
    assert len(_ids_shown(d)) == 80
    first = d.find_element(By.CSS_SELECTOR, "#rows tr")
    row_id = first.find_elements(By.TAG_NAME, "td")[1].text
    first.click()
    response = d.execute_script("return document.getElementById('response-text').textContent")
    rows = [json.loads(line) for line in (root / "data" / "b_zpd.jsonl").read_text(encoding="utf-8").splitlines()]
    expected = next(r for r in rows if r["id"] == row_id)["output"]
    assert response == expected + "<|im_end|>\n"  # the qwen template's rendering: the response and its end of turn
    assert row_id in d.find_element(By.CSS_SELECTOR, "#detail h3").text
    d.execute_script("document.getElementById('detail').scrollIntoView()")
    d.save_screenshot(str(shots / "report_html_browser.png"))
    assert severe_console_messages(d) == []
    assert opened < 10, f"the page took {opened:.1f} s to open"
