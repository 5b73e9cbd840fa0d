"""Shared pieces of the web view's tests: a small repository made for them, a real uvicorn
server over it, and a real headless Chromium (Debian's chromium + chromium-driver) driven
by Selenium.  Test modules import the fixtures they use::

    from web_browser import browser, web_site, sign_in, screenshot  # noqa: F401 (fixtures)

``web_site`` (module scope) yields a :class:`Site`: the server's URL, the repository's
root, a token per user and the IDs of the datasets made; ``browser`` (module scope) is one
Chromium session per test module; ``sign_in(browser, site, user)`` signs it in through the
login page; ``screenshot(browser, name)`` saves a PNG under ``test-artifacts/web/`` (or
``$SKYBUTLER_TEST_ARTIFACTS``); ``wait_for(browser, css)`` waits for an element after a
click that navigates.  Tests needing Chromium skip, saying why, when it is absent;
``.ci/run`` installs it.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from server_helpers import running_server

CHROMIUM = os.environ.get("SKYBUTLER_CHROMIUM", "/usr/bin/chromium")
CHROMEDRIVER = os.environ.get("SKYBUTLER_CHROMEDRIVER", "/usr/bin/chromedriver")
ARTIFACTS = Path(os.environ.get("SKYBUTLER_TEST_ARTIFACTS", Path(__file__).parent.parent / "test-artifacts")) / "web"

#: Text that would run if a page did not escape it, put into names, metadata and headers.
HOSTILE = "<script>window.__pwned=1</script><img src=x onerror=\"window.__pwned=2\">"


@dataclass
class Site:
    url: str
    root: Path
    tokens: dict[str, str]
    ids: dict[str, str] = field(default_factory=dict)


def _image(visit: int, detector: int, hostile: bool = False) -> Any:
    """A small calexp-like image with a TAN WCS near the visit's pointing."""
    from astropy.io import fits

    from conftest import visit_pointing

    ra, dec = visit_pointing(visit)
    rng = np.random.default_rng(visit * 100 + detector)
    pixels = rng.normal(100, 5, (64, 64)).astype(np.float32)
    pixels[30:34, :] += 400  # a glint-like streak
    header = fits.Header()
    for key, value in {"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": ra, "CRVAL2": dec,
                       "CRPIX1": 32.5, "CRPIX2": 32.5, "CD1_1": -0.2 / 3600, "CD1_2": 0.0, "CD2_1": 0.0,
                       "CD2_2": 0.2 / 3600, "EXPTIME": 30.0, "FILTER": "r"}.items():
        header[key] = value
    if hostile:
        header["OBJECT"] = HOSTILE
        header["FILTER"] = HOSTILE
    return fits.ImageHDU(pixels, header)


def build_repository(root: Path) -> Site:
    """The web tests' repository: the small camera of ``conftest.populate``; RUNs with calexps
    (images with a WCS), src catalogs and metrics; a chain, a TAGGED and a CALIBRATION
    collection; a private RUN, an embargoed one, and hostile text in a collection's doc, a
    header and a catalog's column names.  Users: ``alice`` (group team: reads everything),
    ``bob`` (reads demo/*, Cam/*, night2/*; the calexps of night2/* are embargoed from him)."""
    import pyarrow as pa
    from astropy.time import Time

    from conftest import populate
    from skybutler import Butler
    from skybutler.access import Access

    ids: dict[str, str] = {}
    with Butler.create(root) as butler:
        populate(butler)
        butler.register_dataset_type("calexp", ["instrument", "visit", "detector"], "Image")
        butler.register_dataset_type("src", ["instrument", "visit", "detector"], "Table")
        butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
        butler.register_dataset_type("bias", ["instrument", "detector"], "Image", is_calibration=True)
        for visit in (1, 2, 3):
            for detector in (0, 1):
                data_id = {"instrument": "Cam", "visit": visit, "detector": detector}
                ref = butler.put(_image(visit, detector), "calexp", data_id, run="demo/run1")
                butler.set_metrics(ref, seeing=1.0 + 0.1 * visit, zero_point=27.0 + detector)
                ids[f"calexp-{visit}-{detector}"] = str(ref.id)
                n = 3 + visit + detector
                src = pa.table({"id": np.arange(n), "ra": np.linspace(0, 1, n), "flux": np.full(n, 10.5 * visit)})
                ids[f"src-{visit}-{detector}"] = str(butler.put(src, "src", data_id, run="demo/run1").id)
                butler.put({"n_sources": n}, "metrics", data_id, run="demo/run1")
        butler.retention.purge([butler.registry.refs_by_id([uuid.UUID(ids["src-3-1"])])[0]], force=True)
        ids["purged"] = ids.pop("src-3-1")
        hostile = pa.table({HOSTILE: [1, 2], "x": [HOSTILE, "b"]})
        ids["hostile-src"] = str(butler.put(hostile, "src", instrument="Cam", visit=4, detector=0, run="demo/run1").id)
        ids["hostile-calexp"] = str(butler.put(_image(4, 0, hostile=True), "calexp", instrument="Cam", visit=4,
                                               detector=0, run="demo/run1").id)
        ids["secret"] = str(butler.put(_image(5, 0), "calexp", instrument="Cam", visit=5, detector=0,
                                       run="team/secret").id)
        ids["embargoed"] = str(butler.put(_image(6, 0), "calexp", instrument="Cam", visit=6, detector=0,
                                          run="night2/run").id)
        ids["night2-src"] = str(butler.put(pa.table({"id": [1]}), "src", instrument="Cam", visit=6, detector=0,
                                           run="night2/run").id)
        for detector in (0, 1):
            bias = butler.put(np.zeros((8, 8), np.float32), "bias", instrument="Cam", detector=detector,
                              run="Cam/calib/run")
            ids[f"bias-{detector}"] = str(bias.id)
            butler.collections.certify("Cam/calib", [bias], Time("2025-01-01T00:00:00", scale="tai"),
                                       Time("2025-02-01T00:00:00", scale="tai"))
        butler.collections.register("demo/good", "TAGGED", doc=HOSTILE)
        butler.collections.associate("demo/good", butler.registry.refs_by_id(
            [uuid.UUID(ids["calexp-1-0"])]))
        butler.collections.set_chain("demo/best", ["demo/run1", "Cam/calib"])
        access = Access(butler.registry.access)
        access.add_user("alice", groups=["team"])
        access.add_user("bob")
        access.grant("group", "team", "*", "read")
        for pattern in ("demo/*", "Cam/*", "night2/*"):
            access.grant("user", "bob", pattern, "read")
        access.add_embargo("calexp", "night2/*", 1e5, ["team"])
        tokens = {name: access.create_token(name) for name in ("alice", "bob")}
    return Site("", root, tokens, ids)


@pytest.fixture(scope="module")
def web_site(tmp_path_factory) -> Iterator[Site]:
    """A real server on loopback over :func:`build_repository`'s repository."""
    pytest.importorskip("jinja2")
    site = build_repository(tmp_path_factory.mktemp("web") / "repo")
    with running_server(site.root) as url:
        site.url = url
        yield site


@pytest.fixture(scope="module")
def browser(tmp_path_factory) -> Iterator[Any]:
    """One headless Chromium session for the module (skipped, saying why, without Chromium)."""
    webdriver = pytest.importorskip("selenium.webdriver")
    for path in (CHROMIUM, CHROMEDRIVER):
        if not os.access(path, os.X_OK):
            pytest.skip(f"{path} is missing: install Debian's chromium and chromium-driver "
                        "(.ci/run does) to run the browser tests")
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="skybutler-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage", "--window-size=1280,900", f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def sign_in(driver: Any, site: Site, user: str) -> None:
    """Sign the browser in as ``user`` through the login page."""
    from selenium.webdriver.common.by import By

    driver.delete_all_cookies()
    driver.get(f"{site.url}/login")
    driver.find_element(By.ID, "token").send_keys(site.tokens[user])
    driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
    assert wait_for(driver, "#user-name").text == user


def screenshot(driver: Any, name: str) -> Path:
    """Save the page as ``ARTIFACTS/<name>.png`` (a test artefact) and return its path."""
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / f"{name}.png"
    driver.save_screenshot(str(path))
    return path


def wait_for(driver: Any, css: str, timeout: float = 20) -> Any:
    """The element matching ``css`` once the page shows it (after a click that navigates, the
    old page may still be there for a moment)."""
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support import expected_conditions
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout).until(expected_conditions.presence_of_element_located((By.CSS_SELECTOR, css)))
