"""Web view benchmark: each page's server time on the demo repository.

Serves a repository made by ``python -m skybutler.demo --dir DIR`` (``--repo DIR``; without
it a new demo repository of 3 science exposures is made first, which takes minutes) with a
real uvicorn server on loopback, signs in through the login page, and requests each page
``--repeat`` times after one warm-up request.  The server's time is the ``Server-Timing``
header every web response carries (from the request's arrival to the response's start,
authentication included); the client's wall time is shown beside it.  The issue's target
is under 200 ms per page.

    python benchmarks/bench_web.py --repo DIR [--repeat N] [--json FILE]

Pages: the overview, the collections tree, the search form, the glint search (``src``
datasets with ``src.n_rows > 25`` in ``demo/best``), a search page sorted by visit,
the dataset pages of a calexp, a src catalog and a raw, the calexp's quicklook (cached
after the warm-up), the provenance graphs of the calexp and of a coadd, the cut-outs
page at the calexp's centre with one cut-out as PNG (cached) and FITS, and sky maps of
the detectors and of a RUN's calexps.
"""

from __future__ import annotations

import argparse
import json
import re
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path


def _serve(root: Path) -> tuple[str, object]:
    import uvicorn

    from skybutler.server.app import create_app

    app = create_app(root)
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    server = uvicorn.Server(uvicorn.Config(app, log_level="error", lifespan="off"))
    threading.Thread(target=server.run, kwargs={"sockets": [sock]}, daemon=True).start()
    while not server.started:
        time.sleep(0.02)
    return f"http://127.0.0.1:{sock.getsockname()[1]}", server


def _pages(client, root: Path) -> dict[str, str]:
    from skybutler import Butler

    with Butler(root) as butler:
        def first(dataset_type: str, collections: str) -> str:
            return str(next(iter(butler.query_datasets(dataset_type, collections=collections, find_first=False))).id)

        calexp, src, raw = first("calexp", "demo/best"), first("src", "demo/best"), first("raw", "SimCam/raw/all")
        coadd = first("deepCoadd", "demo/best")
        facts = butler.get_metadata(butler.registry.refs_by_id([__import__("uuid").UUID(calexp)])[0])
    at = f"ra={facts['ra_center']:.6f}&dec={facts['dec_center']:.6f}&size=64"
    return {
        "overview": "/",
        "collections": "/collections",
        "search form": "/search",
        "glint search": "/search?dataset_type=src&collections=demo/best&find_first=on&where=src.n_rows+%3E+25",
        "search sorted": "/search?dataset_type=calexp&collections=demo/best&find_first=on&order=-visit",
        "calexp page": f"/datasets/{calexp}",
        "src page": f"/datasets/{src}",
        "raw page": f"/datasets/{raw}",
        "quicklook": f"/datasets/{calexp}/quicklook.png",
        "calexp graph": f"/datasets/{calexp}/provenance",
        "coadd graph": f"/datasets/{coadd}/provenance",
        "cutouts": f"/cutouts?{at}",
        "cutout PNG": f"/cutouts/{calexp}.png?{at}",
        "cutout FITS": f"/cutouts/{calexp}.fits?{at}",
        "sky detectors": "/sky?what=visit_detector_region",
        "sky calexps": "/sky?what=dataset&dataset_type=calexp&collection=demo/run1",
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repo", type=Path, help="a demo repository (default: make one)")
    parser.add_argument("--repeat", type=int, default=10)
    parser.add_argument("--json", type=Path)
    args = parser.parse_args()
    import httpx

    from skybutler import Butler
    from skybutler.access import Access

    root = args.repo
    if root is None:
        root = Path(tempfile.mkdtemp(prefix="skybutler-bench-web-")) / "repo"
        subprocess.run([sys.executable, "-m", "skybutler.demo", "--dir", str(root), "--science", "3"], check=True,
                       stdout=subprocess.DEVNULL)
    with Butler(root) as butler:
        access = Access(butler.registry.access)
        access.add_user("bench", admin=True)
        access.grant("user", "bench", "*", "read")
        token = access.create_token("bench", expires_in=3600, note="bench_web")
    url, server = _serve(root)
    client = httpx.Client(base_url=url, timeout=60)
    client.post("/login", data={"token": token, "next": "/"})
    results = {}
    print(f"{'page':<16} {'server median':>14} {'server max':>11} {'client median':>14}  (ms, {args.repeat} requests)")
    for name, path in _pages(client, root).items():
        client.get(path)  # warm-up: first imports, caches
        server_ms, client_ms = [], []
        for _ in range(args.repeat):
            start = time.perf_counter()
            answer = client.get(path)
            client_ms.append((time.perf_counter() - start) * 1000)
            assert answer.status_code == 200, (name, answer.status_code)
            server_ms.append(float(re.search(r"dur=([\d.]+)", answer.headers["server-timing"]).group(1)))
        results[name] = {"server_median_ms": statistics.median(server_ms), "server_max_ms": max(server_ms),
                         "client_median_ms": statistics.median(client_ms)}
        r = results[name]
        print(f"{name:<16} {r['server_median_ms']:>14.1f} {r['server_max_ms']:>11.1f} {r['client_median_ms']:>14.1f}")
    server.should_exit = True
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
