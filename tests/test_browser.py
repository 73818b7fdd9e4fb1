"""The static neuron explorer in a real headless Chromium, offline.

Two pages: the explorer block alone in a temporary HTML file (fast), and a small
book holding an executed explorer notebook, built by Jupyter Book as the pipeline
builds it. In both, a class name typed into the filter must leave exactly the
units whose dominant classes or concepts match, with no kernel and no request
leaving the machine.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from urllib.parse import urlparse

import numpy as np
import pytest
import torch

import test_book as kit
from consis_lib import explorer_static

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
DRIVER = shutil.which("chromedriver")
CLASSES = ("dog", "wolf", "fox", "tabby cat", "tiger", "cab", "banana", "pear")

BOOK_CELLS = [
    "import numpy as np\nimport torch\nfrom consis_lib import explorer_static as xs",
    "names = ('dog', 'wolf', 'fox', 'cat')\nrng = np.random.default_rng(0)\ngen = torch.Generator().manual_seed(0)",
    "P, Pa = np.eye(4)[np.arange(6) % 4], np.eye(4)[(np.arange(6) + 1) % 4]",
    "tiles = [[xs.square_tile(torch.rand(3, 16, 24, generator=gen), None, 16) for _ in range(4)] for _ in range(6)]",
    "models = [xs.ModelUnits(m, rng.random(6), rng.random(6), P, Pa, xs.sprite_sheet(tiles, 16), 2, 16) for m in ('normal', 'at', 'adv')]",
    "xs.explorer_html(models, names, layer='layer4')",
]


def _wait(predicate, timeout: float = 30.0):
    end = time.time() + timeout
    while time.time() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    return predicate()


@pytest.fixture(scope="module")
def driver():
    if not CHROMIUM or not DRIVER:
        pytest.skip("headless Chromium and chromedriver are not installed (Debian: chromium chromium-driver)")
    pytest.importorskip("selenium", reason="selenium drives Chromium: pip install selenium")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    opts = Options()
    opts.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--window-size=1000,1000"):
        opts.add_argument(flag)
    opts.set_capability("goog:loggingPrefs", {"performance": "ALL"})
    drv = webdriver.Chrome(service=Service(DRIVER), options=opts)
    yield drv
    drv.quit()


def _external_requests(driver) -> list[str]:
    external = []
    for entry in driver.get_log("performance"):
        msg = json.loads(entry["message"])["message"]
        if msg["method"] != "Network.requestWillBeSent":
            continue
        url = urlparse(msg["params"]["request"]["url"])
        if url.scheme in ("http", "https", "ws", "wss") and url.hostname not in ("localhost", "127.0.0.1"):
            external.append(url.geturl())
    return external


def _rows(driver) -> list[int]:
    from selenium.webdriver.common.by import By

    return [int(tr.get_attribute("data-unit")) for tr in driver.find_elements(By.CSS_SELECTOR, ".consis-explorer .cx-list tbody tr")]


def _type_filter(driver, text: str) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    box = driver.find_element(By.CSS_SELECTOR, ".consis-explorer .cx-filter")
    box.send_keys(Keys.CONTROL, "a")
    box.send_keys(Keys.BACKSPACE)
    if text:
        box.send_keys(text)


def _browser_models(k: int = 12) -> list[explorer_static.ModelUnits]:
    """Three models; unit u's real images are all class u % 8, its adversarial ones (u + 3) % 8 and (u + 5) % 8."""
    rng = np.random.default_rng(0)
    P = np.zeros((k, len(CLASSES)))
    Pa = np.zeros((k, len(CLASSES)))
    for u in range(k):
        P[u, u % 8] = 1.0
        Pa[u, (u + 3) % 8], Pa[u, (u + 5) % 8] = 0.6, 0.4
    gen = torch.Generator().manual_seed(0)
    models = []
    for name in ("normal", "at", "adv"):
        tiles = [[explorer_static.square_tile(torch.rand(3, 12, 16, generator=gen), None, 16) for _ in range(4)] for _ in range(k)]
        concepts = tuple(("grass-s", "scene", 0.1) if (name, u) == ("adv", 7) else None for u in range(k))
        models.append(
            explorer_static.ModelUnits(
                name, rng.random(k), rng.random(k), P, Pa, explorer_static.sprite_sheet(tiles, 16), 2, 16, concepts=concepts
            )
        )
    return models


def _expected(models: list[explorer_static.ModelUnits], query: str, only: int | None = None) -> set[int]:
    """The units whose dominant classes or concepts (in any model, or model ``only``) contain ``query``."""
    data = explorer_static.explorer_data(models, CLASSES)
    hits = set()
    for entry in data["units"]:
        for i, rec in enumerate(entry["m"]):
            words = [c[0] for c in rec["cls"] + rec["cls_adv"]] + [w for c in (rec["concept"], rec["concept_adv"]) if c for w in c[:2]]
            if (only is None or only == i) and any(query in w.lower() for w in words):
                hits.add(entry["u"])
    return hits


def test_explorer_block_filters_sorts_and_compares_offline(driver, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    models = _browser_models()
    page = explorer_static.explorer_html(models, CLASSES, layer="layer4")
    html_file = tmp_path / "explorer.html"
    html_file.write_text(f"<!doctype html><html><head><meta charset='utf-8'></head><body>{page.html}</body></html>", encoding="utf-8")
    driver.get(html_file.as_uri())
    assert _wait(lambda: len(_rows(driver)) == 12), _rows(driver)  # every unit is listed

    _type_filter(driver, "wolf")  # class 1: real images of units 1, 9; adversarial of units 4, 6
    assert _wait(lambda: set(_rows(driver)) == _expected(models, "wolf") == {1, 4, 6, 9}), _rows(driver)
    count = driver.find_element(By.CSS_SELECTOR, ".consis-explorer .cx-count").text
    assert count == "4 of 12 units"

    _type_filter(driver, "grass")  # a dissection concept of one model only
    assert _wait(lambda: _rows(driver) == [7]), _rows(driver)
    Select(driver.find_element(By.CSS_SELECTOR, ".cx-where")).select_by_visible_text("normal")
    assert _wait(lambda: _rows(driver) == []), _rows(driver)
    assert "No unit matches" in driver.find_element(By.CSS_SELECTOR, ".cx-detail").text
    Select(driver.find_element(By.CSS_SELECTOR, ".cx-where")).select_by_visible_text("any model")

    _type_filter(driver, "")
    Select(driver.find_element(By.CSS_SELECTOR, ".cx-sort")).select_by_visible_text("consis_adv")
    Select(driver.find_element(By.CSS_SELECTOR, ".cx-sort-model")).select_by_visible_text("at")
    expected_order = [int(u) for u in np.argsort(-models[1].consis_adv, kind="stable")]
    assert _wait(lambda: _rows(driver) == expected_order), (_rows(driver), expected_order)

    unit = expected_order[3]
    driver.find_elements(By.CSS_SELECTOR, ".cx-list tbody tr")[3].click()
    detail = driver.find_element(By.CSS_SELECTOR, ".consis-explorer .cx-detail")
    assert _wait(lambda: detail.get_attribute("data-unit") == str(unit))
    cards = detail.find_elements(By.CSS_SELECTOR, ".cx-card")
    assert [c.get_attribute("data-model") for c in cards] == ["normal", "at", "adv"]  # the same unit in every model
    for i, card in enumerate(cards):
        tiles = card.find_elements(By.CSS_SELECTOR, ".cx-tile")
        assert len(tiles) == 4
        x, y = explorer_static.tile_origin(unit, 2, 16, 4)  # first adversarial tile
        assert tiles[2].value_of_css_property("background-position") == f"{-x}px {-y}px"
        assert f"cx-sprite-{i}" in tiles[2].get_attribute("class")
        assert tiles[2].size == {"width": 16, "height": 16}
    assert _external_requests(driver) == []


@pytest.fixture(scope="module")
def explorer_book_page(tmp_path_factory: pytest.TempPathFactory) -> Path:
    kit.needs_widget_js()
    root = tmp_path_factory.mktemp("browser")
    book = kit.make_mini_book(root)
    src = kit.write_notebook(root / "src" / "explorer.ipynb", "Explorer", BOOK_CELLS)
    assert kit.execute(src, book / "notebooks" / "runs" / "explorer.ipynb")
    proc = kit.build(book)
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    return book / "_build" / "html" / "notebooks" / "runs" / "explorer.html"


def test_explorer_in_the_built_book_finds_a_unit_by_class(driver, explorer_book_page: Path) -> None:
    from selenium.webdriver.common.by import By

    driver.get(explorer_book_page.as_uri())
    assert _wait(lambda: len(_rows(driver)) == 6), "the explorer did not render in the built page"
    _type_filter(driver, "fox")  # class 2: real images of unit 2, adversarial of units 1 and 5
    assert _wait(lambda: set(_rows(driver)) == {1, 2, 5}), _rows(driver)
    driver.find_elements(By.CSS_SELECTOR, ".cx-list tbody tr")[0].click()
    cards = driver.find_elements(By.CSS_SELECTOR, ".consis-explorer .cx-card")
    assert [c.get_attribute("data-model") for c in cards] == ["normal", "at", "adv"]
    assert _external_requests(driver) == []
