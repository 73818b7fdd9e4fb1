"""The static neuron explorer in a real headless Chromium, offline.

A small book holds an executed explorer notebook (papermill stores the widget
state, as in the pipeline); the page is opened from file://, a control is moved,
another unit's panel must appear, and no request may leave the machine.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

import pytest

import test_book as kit

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")

EXPLORER_CELLS = [
    "import torch\nfrom consis_lib import explorer, viz",
    "gen = torch.Generator().manual_seed(0)",
    "views = {m: [explorer.UnitView(unit=10 * k + u, consis=0.1 * u, consis_adv=0.05 * u, "
    "montage_jpeg=viz.jpeg_bytes(viz.montage([[torch.rand(3, 16, 16, generator=gen) for _ in range(4)]] * 2, thumb=32)), "
    "label_names=('dog', 'wolf'), label_probs=(0.7, 0.3), label_probs_adv=(0.4, 0.6), concept='dog', category='object', iou=0.1) "
    "for u in range(6)] for k, m in enumerate(('normal', 'adv'))}",
    "explorer.static_explorer(views)",
]


def _visible_units(driver) -> list[str]:
    from selenium.webdriver.common.by import By

    return [e.get_attribute("data-unit") for e in driver.find_elements(By.CSS_SELECTOR, ".consis-unit") if e.is_displayed()]


def _wait(predicate, timeout: float = 30.0):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.25)
    return predicate()


@pytest.fixture(scope="module")
def explorer_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    kit.needs_widget_js()
    root = tmp_path_factory.mktemp("browser")
    book = kit.make_mini_book(root)
    src = kit.write_notebook(root / "src" / "explorer.ipynb", "Explorer", EXPLORER_CELLS)
    assert kit.execute(src, book / "notebooks" / "runs" / "explorer.ipynb")
    proc = kit.build(book)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return book / "_build" / "html" / "notebooks" / "runs" / "explorer.html"


def test_static_explorer_responds_offline(explorer_page: Path) -> None:
    if not CHROMIUM or not DRIVER:
        pytest.skip("headless Chromium and chromedriver are not installed (Debian: chromium chromium-driver)")
    selenium = pytest.importorskip("selenium", reason="selenium drives Chromium: pip install selenium")
    del selenium
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import Select

    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    driver = webdriver.Chrome(service=Service(DRIVER), options=opts)
    try:
        driver.get(explorer_page.as_uri())
        selects = _wait(lambda: driver.find_elements(By.CSS_SELECTOR, ".widget-dropdown select"))
        assert selects, "the widgets did not render (widget JavaScript missing from _static?)"
        assert _visible_units(driver) == ["0"]

        Select(selects[0]).select_by_index(3)  # the menu of the first tab
        assert _wait(lambda: _visible_units(driver) == ["3"], 10), _visible_units(driver)

        handle = driver.find_elements(By.CSS_SELECTOR, ".widget-slider .noUi-handle")[0]
        handle.click()
        handle.send_keys(Keys.ARROW_RIGHT)  # the slider is linked to the same panel stack
        assert _wait(lambda: _visible_units(driver) == ["4"], 10), _visible_units(driver)

        external = []
        for entry in driver.get_log("performance"):
            msg = json.loads(entry["message"])["message"]
            if msg["method"] != "Network.requestWillBeSent":
                continue
            url = urlparse(msg["params"]["request"]["url"])
            if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in ("localhost", "127.0.0.1"):
                external.append(url.geturl())
        assert external == []
    finally:
        driver.quit()
