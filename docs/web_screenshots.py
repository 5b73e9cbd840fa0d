"""Write the user guide's screenshots of the web view (docs/images/web-*.png).

    python docs/web_screenshots.py DEMO_REPO      # a repository made by python -m skybutler.demo --dir

Serves the repository on loopback, signs a headless Chromium (Debian's chromium and
chromium-driver) in as a user made for it, and saves the collections tree, the glint
search, a calexp's page (quicklook and footprint), its provenance graph, the cut-outs at
its centre and the sky coverage of the night's detectors.  Re-run it when the pages change.
"""

from __future__ import annotations

import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

OUT = Path(__file__).parent / "images"


def main(root: Path) -> None:
    import uvicorn
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By

    from skybutler import Butler
    from skybutler.access import Access
    from skybutler.server.app import create_app

    with Butler(root) as butler:
        access = Access(butler.registry.access)
        access.add_user("ana", admin=True)
        token = access.create_token("ana", expires_in=600, note="docs screenshots")
        calexp = next(iter(butler.query_datasets("calexp", "visit.id > 0", collections="demo/best",
                                                 find_first=True).order_by("-detector")))
        facts = butler.get_metadata(calexp)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(create_app(root), log_level="error", lifespan="off"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    options = webdriver.ChromeOptions()
    options.binary_location = "/usr/bin/chromium"
    for flag in ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--window-size=1100,1000", f"--user-data-dir={tempfile.mkdtemp()}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service("/usr/bin/chromedriver"), options=options)
    try:
        driver.get(f"{url}/login")
        driver.find_element(By.ID, "token").send_keys(token)
        driver.find_element(By.CSS_SELECTOR, "form.login button").click()
        OUT.mkdir(exist_ok=True)
        for name, path in (("collections", "/collections"),
                           ("search", "/search?dataset_type=src&collections=demo/best&find_first=on"
                                      "&where=src.n_rows+%3E+25&order=visit"),
                           ("dataset", f"/datasets/{calexp.id}"),
                           ("provenance", f"/datasets/{calexp.id}/provenance"),
                           ("cutouts", f"/cutouts?ra={facts['ra_center']:.5f}&dec={facts['dec_center']:.5f}"
                                       "&size=64"),
                           ("sky", "/sky?what=visit_detector_region")):
            driver.get(url + path)
            if name == "dataset":  # down to the quicklook and footprint
                driver.execute_script("document.getElementById('h-image').scrollIntoView()")
            time.sleep(0.5)  # pictures load after the page
            driver.save_screenshot(str(OUT / f"web-{name}.png"))
    finally:
        driver.quit()
        server.should_exit = True


if __name__ == "__main__":
    main(Path(sys.argv[1]))
