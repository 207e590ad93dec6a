"""The snakemake HTML report of a finished run opens in a real headless browser (chromium via
selenium, tests/browser.py) and every entry in it loads: each figure decodes to an image with
a width, shown through the report's own navigation (category, instance, eye button), and no
caption carries a docutils system message (an rst error shown to the reader)."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from browser import artifact_dir, chromium
from conftest import snakemake

# waits on the report app (a React page built from the embedded data: no network)
TIMEOUT = 60
CAPTIONS = Path(__file__).resolve().parents[1] / "workflow" / "report"
# what docutils puts in the HTML where the rst has an error or warning
DOCUTILS_MESSAGE = ("system-message", "Docutils System Messages", "problematic")


def _docutils_messages(html: str) -> list[str]:
    return [m for m in DOCUTILS_MESSAGE if m in (html or "")]


@pytest.mark.parametrize("caption", sorted(CAPTIONS.rglob("*.rst")), ids=lambda p: p.name)
def test_every_caption_renders_with_no_docutils_message(caption):
    """As snakemake --report renders it (jinja, then docutils to HTML): an rst error (e.g. an
    undefined |substitution|) would show as "Docutils System Messages" in the report."""
    from docutils.core import publish_parts
    from jinja2 import Template

    text = Template(caption.read_text()).render(snakemake=None, categories={}, files={})
    body = publish_parts(text, writer="html")
    assert not _docutils_messages(body["body"]), body["body"]


def _click_text(driver, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions as EC
    from selenium.webdriver.support.ui import WebDriverWait

    xpath = f"//*[normalize-space(text())={_xpath_literal(text)}]"
    WebDriverWait(driver, TIMEOUT).until(EC.element_to_be_clickable((By.XPATH, xpath))).click()


def _xpath_literal(s: str) -> str:
    return f"'{s}'" if "'" not in s else 'concat("' + s.replace('"', '", \'"\', "') + '")'


def _loaded_image(driver, src: str) -> int:
    """naturalWidth of the shown <img> with this data URI once it has loaded (0 if broken)."""
    end = time.monotonic() + TIMEOUT
    while time.monotonic() < end:
        width = driver.execute_script(
            "const i = Array.from(document.images).find(i => i.src === arguments[0]);"
            "return i && i.complete ? i.naturalWidth : null;",
            src,
        )
        if width is not None:
            return width
        time.sleep(0.3)
    raise AssertionError("the image was never shown")


def _decodes(driver, data_uri: str) -> int:
    """Width of ``data_uri`` decoded as an image by the browser (0: it does not decode)."""
    return driver.execute_async_script(
        "const done = arguments[arguments.length - 1]; const i = new Image();"
        "i.onload = () => done(i.naturalWidth); i.onerror = () => done(0); i.src = arguments[0];",
        data_uri,
    )


def check_report(driver, report) -> tuple[dict, dict, set]:
    """Open ``report`` (a path) and check every entry; returns (results, categories, figures)."""
    from selenium.webdriver.common.by import By

    driver.set_script_timeout(TIMEOUT)
    driver.get(report.as_uri())
    _click_text(driver, "Results")  # the app has rendered
    results = driver.execute_script("return results")
    categories = driver.execute_script("return categories")
    listed = [
        (cat, sub, path)
        for cat, subs in sorted(categories.items())
        for sub, paths in sorted(subs.items())
        for path in paths
    ]
    assert listed, "the report lists no result"
    assert {p for *_, p in listed} == set(results), "a result outside every category"
    images = {p for *_, p in listed if results[p]["mime_type"].startswith("image/")}
    assert images, "the report has no figure"
    for path in results:  # no broken entry: each has content, each figure decodes
        uri = results[path]["data_uri"]
        assert uri and uri.split(",", 1)[1], f"{path}: empty entry"
        found = _docutils_messages(results[path]["caption"])
        assert not found, f"{path}: its caption shows docutils messages ({', '.join(found)})"
        if path in images:
            assert _decodes(driver, uri) > 0, f"{path}: does not decode as an image"
            assert (results[path]["caption"] or "").strip(), f"{path}: no caption"

    # every figure through the report's own navigation: category, instance, the eye button
    for cat, sub, path in listed:
        if path not in images:
            continue
        driver.get(report.as_uri())
        _click_text(driver, "Results")
        _click_text(driver, cat)
        if len(categories[cat]) > 1:
            _click_text(driver, sub)
        row = driver.find_element(
            By.XPATH, f"//tr[td[normalize-space(text())={_xpath_literal(path)}]]"
        )
        row.find_element(By.CSS_SELECTOR, "a[iconname='eye']").click()
        assert _loaded_image(driver, results[path]["data_uri"]) > 0, f"{path}: broken"
        shown = driver.find_element(By.TAG_NAME, "body").text
        assert "System Message" not in shown, f"{path}: the page shows a docutils message"
    return results, categories, images


@pytest.mark.e2e
def test_report_opens_and_every_figure_loads(all_run, tmp_path):
    driver = chromium()  # skips (fails in CI) without chromium + chromium-driver
    work, _ = all_run
    report = tmp_path / "report.html"
    t0 = time.perf_counter()
    snakemake(work, "--report", str(report))
    seconds = time.perf_counter() - t0
    try:
        results, categories, images = check_report(driver, report)
        shot = artifact_dir(tmp_path) / "report.png"
        driver.save_screenshot(str(shot))
        print(
            f"\nreport: {len(results)} entries, {len(images)} figures in {len(categories)} "
            f"categories; snakemake --report {seconds:.0f} s; screenshot {shot}"
        )
    finally:
        driver.quit()
