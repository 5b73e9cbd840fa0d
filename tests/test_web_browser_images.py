"""The web view's walkthrough in a real headless Chromium against a real server on the demo
repository (the demo's smallest night, its first half processed): the glint query on the search page finds the glint
detectors, a calexp page's quicklook renders, the provenance graph leads back to the raw,
and a cut-out around the calexp's centre shows every covering image (a position outside
every image says so).  Each page's server time: benchmarks/bench_web.py.  Screenshots are
saved under test-artifacts/web/ (the user guide's come from here)."""

from __future__ import annotations

import io
import time
from urllib.parse import urlencode

import pytest
from rich.console import Console

from server_helpers import running_server
from web_browser import HOSTILE, Site, browser, screenshot, sign_in, wait_for, web_site  # noqa: F401 (fixtures)

pytest.importorskip("selenium")


@pytest.fixture(scope="module")
def demo_site(tmp_path_factory):
    """The demo's repository (smallest night), served, with a reader who may read everything."""
    from skybutler import Butler, demo
    from skybutler.access import Access

    root = tmp_path_factory.mktemp("demo") / "repo"
    steps = [demo.create_repository, demo.simulate_night, demo.ingest, demo.make_calibrations, demo.process]
    state = demo.run(root, Console(file=io.StringIO(), width=120), steps, science=3, jobs=2)
    with Butler(root) as butler:
        access = Access(butler.registry.access)
        access.add_user("ana")
        access.grant("user", "ana", "*", "read")
        token = access.create_token("ana")
    truth = {(visit, det) for visit, dets in state.glints.items() for det in dets if visit not in state.later}
    with running_server(root) as url:
        yield Site(url, root, {"ana": token}), truth


def _loaded(driver, element) -> bool:
    return driver.execute_script("return arguments[0].complete && arguments[0].naturalWidth > 0", element)


@pytest.mark.slow
def test_glint_to_quicklook_to_raw_and_a_cutout(browser, demo_site):  # noqa: F811
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    site, truth = demo_site
    sign_in(browser, site, "ana")
    # the glint query, on the search page
    query = urlencode({"dataset_type": "calexp", "collections": "demo/best", "where": "src.n_rows > 25",
                       "find_first": "on"})
    browser.get(f"{site.url}/search?{query}")
    rows = browser.find_elements(By.CSS_SELECTOR, "#results tbody tr")
    assert len(rows) == len(truth) > 0
    screenshot(browser, "glint-search")
    rows[0].find_element(By.CSS_SELECTOR, "a[href*='/datasets/']").click()

    # the calexp page: its quicklook renders
    assert browser.find_element(By.ID, "storage-class").text == "Image"
    image = browser.find_element(By.ID, "quicklook")
    assert _loaded(browser, image) and "Quicklook of calexp" in image.get_attribute("alt")
    assert browser.execute_script("return arguments[0].naturalWidth", image) == 256  # a 256-pixel detector
    visit = int(browser.find_element(By.CSS_SELECTOR, "h1").text.split("visit=")[1].split(",")[0])
    assert visit in {v for v, _ in truth}
    assert browser.find_element(By.CSS_SELECTOR, "#footprint svg.skyzoom path.region")
    screenshot(browser, "calexp-quicklook")
    calexp_url = browser.current_url

    # the provenance graph, followed to the raw
    browser.find_element(By.ID, "provenance-link").click()
    graph = wait_for(browser, "#provenance-graph")
    tasks = {e.get_attribute("aria-label").split(",")[0] for e in graph.find_elements(By.CSS_SELECTOR, "g.quantum")}
    assert {"task calibrate", "task isr"} <= tasks
    screenshot(browser, "provenance-graph")
    raws = graph.find_elements(By.CSS_SELECTOR, "a.dataset[data-dataset-type='raw']")
    science = [a for a in raws if f"exposure={visit}" in a.get_attribute("aria-label")]
    assert len(science) == 1
    browser.execute_script("arguments[0].scrollIntoView({block: 'center', inline: 'center'})", science[0])
    science[0].click()
    WebDriverWait(browser, 20).until(lambda d: "Provenance of raw" in d.find_element(By.CSS_SELECTOR, "h1").text)
    browser.find_element(By.LINK_TEXT, "dataset page").click()
    assert wait_for(browser, "h1 .name").text == "raw"
    assert _loaded(browser, browser.find_element(By.ID, "quicklook"))
    screenshot(browser, "raw-quicklook")

    # a cut-out at the calexp's centre: every image covering it, each picture loaded
    browser.get(calexp_url)
    browser.find_element(By.ID, "cutout-link").click()
    count = wait_for(browser, "#cutout-count").text
    pictures = browser.find_elements(By.CSS_SELECTOR, "img.cutout")
    assert pictures and count.startswith(f"{len(pictures)} image(s)")
    deadline = time.monotonic() + 30
    while not all(_loaded(browser, p) for p in pictures) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert all(_loaded(browser, p) for p in pictures)
    kinds = {p.get_attribute("alt").split()[2] for p in pictures}  # "Cut-out of <type> ..."
    assert {"calexp", "raw"} <= kinds
    screenshot(browser, "cutouts")
    box = browser.find_element(By.ID, "cut-dec")
    box.clear()
    box.send_keys("45")
    browser.find_element(By.CSS_SELECTOR, "#cutout-form button[type=submit]").click()
    assert "No stored image you may see covers" in wait_for(browser, "#cutout-none").text

    # where the night's detectors lie
    browser.get(f"{site.url}/sky?what=visit_detector_region")
    assert browser.find_elements(By.CSS_SELECTOR, "svg.skyzoom path.region")
    screenshot(browser, "sky-coverage")


def test_keyboard_cutouts_and_hostile_headers(browser, web_site):  # noqa: F811
    """On the small web repository: a cut-out search typed and submitted from the keyboard, its
    pictures loaded; the image pages of a calexp with hostile header text run no script."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys

    from conftest import visit_pointing

    sign_in(browser, web_site, "bob")
    browser.get(f"{web_site.url}/cutouts")
    ra, dec = visit_pointing(2)
    field = browser.find_element(By.ID, "cut-ra")
    field.send_keys(f"{ra + 0.001}")
    field.send_keys(Keys.TAB)
    browser.switch_to.active_element.send_keys(f"{dec}")
    assert browser.switch_to.active_element.get_attribute("id") == "cut-dec"
    browser.switch_to.active_element.send_keys(Keys.ENTER)
    pictures = browser.find_elements(By.CSS_SELECTOR, "img.cutout")
    assert len(pictures) == 2 and all(p.get_attribute("alt").startswith("Cut-out of calexp") for p in pictures)
    deadline = time.monotonic() + 20
    while not all(_loaded(browser, p) for p in pictures) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert all(_loaded(browser, p) for p in pictures)
    hostile = web_site.ids["hostile-calexp"]
    for path in (f"/datasets/{hostile}", f"/datasets/{hostile}/provenance", "/sky?what=dataset&dataset_type=calexp"):
        browser.get(web_site.url + path)
        assert browser.execute_script("return window.__pwned === undefined"), path
    browser.get(f"{web_site.url}/datasets/{hostile}")
    assert _loaded(browser, browser.find_element(By.ID, "quicklook"))
    assert HOSTILE not in browser.page_source
