"""The web view's pictures and graphs: quicklooks binned while read (checked against numpy block
means, astropy's intervals and a recorded read pattern), cut-outs (against astropy's WCS and
the pixels of the stored file), the provenance graph (against the recorded quanta), the sky
map's projections (against astropy's MOL and TAN WCS), under the same rights as the API:
invisible and embargoed datasets are missing, hostile text is escaped.  Browser tests of
these pages are in test_web_browser_images.py."""

from __future__ import annotations

import io
import math
import uuid

import numpy as np
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("jinja2")
pytest.importorskip("PIL")

import httpx  # noqa: E402
from astropy.io import fits  # noqa: E402
from astropy.wcs import WCS  # noqa: E402
from PIL import Image  # noqa: E402

from conftest import visit_pointing  # noqa: E402
from skybutler.cutouts import check_position  # noqa: E402
from skybutler.datastore.render_cache import RenderCache  # noqa: E402
from skybutler.errors import FormatterError, SkybutlerError  # noqa: E402
from skybutler.formats.quicklook import bin_factor, binned_pixels, png_bytes, stretched  # noqa: E402
from web_browser import HOSTILE, Site, web_site  # noqa: E402,F401 (fixture)


def client(site: Site, user: str) -> httpx.Client:
    return httpx.Client(base_url=site.url, timeout=60, headers={"Authorization": f"Bearer {site.tokens[user]}"})


def block_means(data: np.ndarray, factor: int) -> np.ndarray:
    """Brute force: the mean of each factor x factor block (partial at the far edges), NaN left out."""
    n_y, n_x = data.shape
    out = np.full((-(-n_y // factor), -(-n_x // factor)), np.nan)
    for j in range(out.shape[0]):
        for i in range(out.shape[1]):
            block = [v for v in data[j * factor:(j + 1) * factor, i * factor:(i + 1) * factor].ravel()
                     if not math.isnan(v)]
            if block:
                out[j, i] = sum(block) / len(block)
    return out


class RecordingSection:
    """An array that records the rows each read asks for (what HDU.section would read)."""

    def __init__(self, data: np.ndarray):
        self.data, self.rows = data, []

    def __getitem__(self, key):
        rows, _ = key
        self.rows.append(len(range(*rows.indices(self.data.shape[0]))))
        return self.data[key]


@pytest.mark.parametrize("factor", [1, 3, 4, 7])
def test_binning_is_the_block_mean_read_a_band_at_a_time(factor):
    rng = np.random.default_rng(factor)
    data = rng.normal(10, 3, (23, 30)).astype(np.float32)
    data[5, 7] = np.nan
    data[0:factor, 0:factor] = np.nan  # a block with nothing in it stays blank
    section = RecordingSection(data)
    got = binned_pixels(section, (0, 0, 30, 23), factor)
    assert np.allclose(got, block_means(data, factor), equal_nan=True, atol=1e-5)
    assert max(section.rows) <= factor and sum(section.rows) == 23  # never more than one band in memory
    box = binned_pixels(data, (4, 2, 29, 20), factor)
    assert np.allclose(box, block_means(data[2:20, 4:29], factor), equal_nan=True, atol=1e-5)


def test_bin_factor_keeps_the_longest_side_within_the_size():
    for n_x, n_y, size in [(256, 256, 512), (4096, 2048, 512), (513, 10, 512), (10000, 9000, 128)]:
        factor = bin_factor(n_x, n_y, size)
        assert -(-max(n_x, n_y) // factor) <= size and (factor == 1 or -(-max(n_x, n_y) // (factor - 1)) > size)


def test_bin_read_parameter_through_the_butler(butler):
    butler.register_dataset_type("img", ["instrument", "detector"], "Image")
    data = np.arange(70 * 50, dtype=np.float32).reshape(50, 70)
    ref = butler.put(data, "img", instrument="Cam", detector=1, run="r")
    assert np.allclose(butler.get(ref, component="data", parameters={"bin": 8}), block_means(data, 8))
    boxed = butler.get(ref, component="data", parameters={"bin": 4, "bbox": (10, 5, 50, 45)})
    assert np.allclose(boxed, block_means(data[5:45, 10:50], 4))
    with pytest.raises(FormatterError, match="component='data'"):
        butler.get(ref, parameters={"bin": 2})
    for bad in (0, -1, 2.5, "2", True):
        with pytest.raises(FormatterError, match="bin must be a positive integer"):
            butler.get(ref, component="data", parameters={"bin": bad})


def test_stretches_follow_astropy_intervals_and_png_rows_are_north_up():
    from astropy.visualization import PercentileInterval, ZScaleInterval

    rng = np.random.default_rng(1)
    data = rng.normal(100, 5, (40, 60)).astype(np.float32)
    data[0, 0] = 1e5  # a hot pixel in FITS row 0: the bottom row of the picture
    data[10, 10] = np.nan
    low, high = ZScaleInterval().get_limits(data[np.isfinite(data)])
    expected = np.round(np.clip((data - low) / (high - low), 0, 1) * 255)
    got = stretched(data, "zscale")
    finite = np.isfinite(data)
    assert np.abs(got[finite].astype(int) - expected[finite]).max() <= 1 and got[10, 10] == 0
    low, high = PercentileInterval(99.5).get_limits(data[finite])
    x = np.clip((data - low) / (high - low), 0, 1)
    asinh = np.round(np.arcsinh(x / 0.1) / np.arcsinh(1 / 0.1) * 255)  # astropy's AsinhStretch(a=0.1)
    assert np.abs(stretched(data, "asinh")[finite].astype(int) - asinh[finite]).max() <= 1
    picture = np.asarray(Image.open(io.BytesIO(png_bytes(data, "zscale"))))
    assert picture.shape == (40, 60) and picture[-1, 0] == 255 and picture[0, 0] < 255
    assert (stretched(np.full((3, 3), np.nan), "zscale") == 0).all()
    with pytest.raises(FormatterError, match="unknown stretch"):
        stretched(data, "log")


def test_render_cache_keeps_bytes_and_trims_the_oldest(tmp_path):
    import os
    import time

    cache = RenderCache(tmp_path / "cache", max_bytes=1000)
    ids = [uuid.uuid4() for _ in range(5)]
    for n, dataset_id in enumerate(ids):
        cache.put(dataset_id, "quicklook-zscale-512", bytes([n]) * 300)
        path = next((tmp_path / "cache" / str(dataset_id)).glob("*.png"))
        os.utime(path, (time.time() - 100 + n, time.time() - 100 + n))
    assert cache.get(ids[-1], "quicklook-zscale-512") == bytes([4]) * 300
    assert cache.get(ids[-1], "quicklook-asinh-512") is None
    kept = [i for i in ids if cache.get(i, "quicklook-zscale-512") is not None]
    assert kept == ids[-len(kept):] and 300 * len(kept) <= 1000  # the oldest went first
    assert not list((tmp_path / "cache").glob("*/*.tmp-*"))


@pytest.mark.parametrize("ra, dec, size, message", [
    (400, 0, 10, "RA must be between 0 and 360"), (-1, 0, 10, "RA must be between"),
    (10, 91, 10, "Dec must be between -90 and 90"), ("nan", 0, 10, "RA must be between"),
    ("abc", 0, 10, "RA must be a number"), (10, None, 10, "Dec must be a number"),
    (10, 0, 0, "cut-out size must be a whole number of pixels from 1 to"), (10, 0, 5000, "from 1 to 4096"),
    (10, 0, 2.5, "whole number"), (10, 0, True, "whole number"), (True, 0, 10, "RA must be between")])
def test_bad_positions_give_precise_errors(ra, dec, size, message):
    with pytest.raises(SkybutlerError, match=message):
        check_position(ra, dec, size)


def test_quicklook_served_cached_and_under_the_rules(web_site):
    alice, bob = client(web_site, "alice"), client(web_site, "bob")
    calexp = web_site.ids["calexp-1-0"]
    answer = alice.get(f"/datasets/{calexp}/quicklook.png?stretch=asinh&size=128")
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    picture = Image.open(io.BytesIO(answer.content))
    assert picture.size == (64, 64) and picture.mode == "L"
    cached = list((web_site.root / ".skybutler" / "cache" / "render" / calexp).glob("*.png"))
    assert len(cached) == 1 and cached[0].read_bytes() == answer.content
    assert bob.get(f"/datasets/{calexp}/quicklook.png").status_code == 200
    for hidden in ("secret", "embargoed"):  # missing for bob, exactly like a dataset that does not exist
        assert bob.get(f"/datasets/{web_site.ids[hidden]}/quicklook.png").status_code == 404
        assert bob.get(f"/api/v1/datasets/{web_site.ids[hidden]}/quicklook.png").status_code == 404
    assert bob.get(f"/datasets/{uuid.uuid4()}/quicklook.png").status_code == 404
    bad = alice.get(f"/api/v1/datasets/{calexp}/quicklook.png?stretch=<b>log</b>")
    assert bad.status_code == 422 and "unknown stretch" in bad.json()["message"]
    assert alice.get(f"/api/v1/datasets/{calexp}/quicklook.png?size=100").json()["message"].startswith(
        "quicklook size must be one of 128, 256, 512, 1024")
    catalog = alice.get(f"/api/v1/datasets/{web_site.ids['src-1-0']}/quicklook.png")
    assert catalog.status_code == 422 and "not an image" in catalog.json()["message"]


def test_dataset_page_shows_quicklook_and_footprint(web_site):
    page = client(web_site, "alice").get(f"/datasets/{web_site.ids['calexp-2-1']}")
    assert page.status_code == 200
    text = page.text
    assert 'id="quicklook"' in text and "quicklook.png?stretch=zscale" in text and 'alt="Quicklook of calexp' in text
    assert 'id="footprint"' in text and 'id="provenance-link"' in text
    ra, dec = visit_pointing(2)
    assert f"centre RA {ra % 360:.5f}" in text or f"centre RA {ra:.5f}" in text
    catalog = client(web_site, "alice").get(f"/datasets/{web_site.ids['src-1-0']}").text
    assert 'id="quicklook"' not in catalog and 'id="provenance-link"' in catalog
    hostile = client(web_site, "alice").get(f"/datasets/{web_site.ids['hostile-calexp']}").text
    assert HOSTILE not in hostile


def test_cutouts_of_every_covering_image_against_astropy(web_site):
    alice, bob = client(web_site, "alice"), client(web_site, "bob")
    ra, dec = visit_pointing(5)  # the secret RUN's image; visit 5 only
    ra, dec = ra + 0.001, dec - 0.0005
    listing = alice.get("/api/v1/cutouts", params={"ra": ra, "dec": dec, "size": 21}).json()
    assert [i["id"] for i in listing["images"]] == [web_site.ids["secret"]]
    assert bob.get("/api/v1/cutouts", params={"ra": ra, "dec": dec, "size": 21}).json()["images"] == []
    assert bob.get(f"/cutouts/{web_site.ids['secret']}.fits", params={"ra": ra, "dec": dec}).status_code == 404
    nothing = bob.get("/cutouts", params={"ra": ra, "dec": dec, "size": 21})
    assert nothing.status_code == 200 and 'id="cutout-none"' in nothing.text and "No stored image" in nothing.text

    ra, dec = visit_pointing(1)
    ra, dec = ra + 0.0012, dec + 0.0007
    listing = bob.get("/api/v1/cutouts", params={"ra": ra, "dec": dec, "size": 21}).json()
    found = {i["id"] for i in listing["images"]}
    assert {web_site.ids["calexp-1-0"], web_site.ids["calexp-1-1"]} <= found
    from skybutler import Butler

    with Butler(web_site.root) as butler:
        for image in listing["images"]:
            answer = bob.get(image["fits"])
            assert answer.status_code == 200 and answer.headers["content-type"] == "application/fits"
            cut = fits.open(io.BytesIO(answer.content))[0]
            whole = butler.get(butler.registry.refs_by_id([uuid.UUID(image["id"])])[0])
            x, y = WCS(whole.header).world_to_pixel_values(ra, dec)
            x0, y0 = int(np.floor(x + 0.5)) - 10, int(np.floor(y + 0.5)) - 10
            assert np.array_equal(cut.data, whole.data[max(y0, 0):y0 + 21, max(x0, 0):x0 + 21])
            cx, cy = WCS(cut.header).world_to_pixel_values(ra, dec)
            assert abs(cx - (x - max(x0, 0))) < 1e-6 and abs(cy - (y - max(y0, 0))) < 1e-6
            png = bob.get(image["png"])
            assert png.status_code == 200 and Image.open(io.BytesIO(png.content)).size == cut.data.shape[::-1]
    page = bob.get("/cutouts", params={"ra": ra, "dec": dec, "size": 21, "dataset_type": "calexp"})
    assert page.status_code == 200 and page.text.count('<li class="cutout">') == len(found)
    assert f'/cutouts/{web_site.ids["calexp-1-0"]}.fits?ra=' in page.text


@pytest.mark.parametrize("query, message", [
    ({"ra": "x", "dec": 1}, "RA must be a number of degrees"), ({"ra": 10, "dec": -95}, "Dec must be between"),
    ({"ra": 10, "dec": 5, "size": "0"}, "cut-out size must be"),
    ({"ra": 10, "dec": 5, "dataset_type": "<i>nope</i>"}, "no image dataset type")])
def test_bad_cutout_requests_say_what_is_wrong(web_site, query, message):
    alice = client(web_site, "alice")
    api = alice.get("/api/v1/cutouts", params=query)
    assert api.status_code == 422 and message in api.json()["message"]
    page = alice.get("/cutouts", params=query)
    assert page.status_code == 422 and 'id="cutout-error"' in page.text
    assert "<i>nope</i>" not in page.text
    outside = alice.get(f"/api/v1/cutouts/{web_site.ids['calexp-1-0']}.fits", params={"ra": 200, "dec": 80})
    assert outside.status_code == 422 and "is outside calexp" in outside.json()["message"]


def test_projections_match_astropy_wcs():
    from skybutler.web.sky_map import gnomonic, mollweide

    rng = np.random.default_rng(3)
    ra, dec = rng.uniform(0, 360, 200), rng.uniform(-89.9, 89.9, 200)
    mol = WCS(naxis=2)
    mol.wcs.ctype, mol.wcs.crval, mol.wcs.cdelt = ["RA---MOL", "DEC--MOL"], [180, 0], [-1, 1]
    mol.wcs.crpix = [1, 1]  # pixel 0 (origin 0) at the reference point: pixels are plane degrees
    x_ref, y_ref = mol.wcs_world2pix(ra, dec, 0)  # degrees on the projection plane (RA to the left)
    lam = np.radians(((ra - 180) + 180) % 360 - 180)
    x, y = mollweide(lam, np.radians(dec))
    scale = 180 / math.pi  # astropy's plane is in degrees
    assert np.allclose(x * scale, x_ref, atol=1e-6) and np.allclose(y * scale, y_ref, atol=1e-6)
    tan = WCS(naxis=2)
    tan.wcs.ctype, tan.wcs.crval, tan.wcs.cdelt, tan.wcs.crpix = ["RA---TAN", "DEC--TAN"], [150.0, -30.0], [1, 1], [1, 1]
    ra, dec = 150 + rng.uniform(-20, 20, 100), -30 + rng.uniform(-20, 20, 100)
    xi_ref, eta_ref = tan.wcs_world2pix(ra, dec, 0)
    xi, eta = gnomonic(ra, dec, 150.0, -30.0)
    assert np.allclose(xi, xi_ref, atol=1e-6) and np.allclose(eta, eta_ref, atol=1e-6)


def test_a_region_across_the_edge_of_the_map_is_drawn_on_both_sides():
    from skybutler.dimensions import regions
    from skybutler.web.sky_map import SKY_W, border, sky_paths

    ra, dec = border(regions.rectangle(0.0, 10.0, 4.0, 4.0))
    paths = sky_paths(ra, dec)
    assert len(paths) == 2  # centred on RA 180: RA 0 is both edges
    xs = [float(p.split(",")[0].lstrip("M")) for p in paths]
    assert min(xs) < 10 and max(xs) > SKY_W - 10


def test_sky_map_pages_under_the_rules(web_site):
    alice, bob = client(web_site, "alice"), client(web_site, "bob")
    page = alice.get("/sky", params={"what": "dataset", "dataset_type": "calexp"})
    assert page.status_code == 200 and f'/datasets/{web_site.ids["secret"]}' in page.text
    assert 'class="skymap"' in page.text and 'class="skyzoom"' in page.text
    page = bob.get("/sky", params={"what": "dataset", "dataset_type": "calexp"})
    assert f'/datasets/{web_site.ids["secret"]}' not in page.text
    assert f'/datasets/{web_site.ids["embargoed"]}' not in page.text
    assert f'/datasets/{web_site.ids["calexp-1-0"]}' in page.text
    hidden = bob.get("/sky", params={"what": "dataset", "dataset_type": "calexp", "collection": "team/secret"})
    assert hidden.status_code == 422 and "no collection named" in hidden.text
    visits = bob.get("/sky", params={"what": "visit", "where": "visit <= 3"})
    assert visits.status_code == 200 and 'id="sky-count">3 region(s)' in visits.text
    bad = bob.get("/sky", params={"what": "visit", "where": "visit >>> 3"})
    assert bad.status_code == 422 and 'class="error"' in bad.text
    evil = bob.get("/sky", params={"what": HOSTILE})
    assert evil.status_code == 422 and HOSTILE not in evil.text


@pytest.fixture
def provenance_repo(tmp_path):
    """A pipeline run on SQLite (the graph is the provenance API's answer on every stack)."""
    from conftest import populate
    from pipeline_helpers import put_metrics
    from skybutler import Butler
    from skybutler.access import Access
    from skybutler.execution import run_pipeline
    from skybutler.pipeline import Pipeline
    from skybutler.pipeline.testing import ScaleTask, VisitSummaryTask

    butler = Butler.create(tmp_path / "repo")
    populate(butler)
    butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    put_metrics(butler, visits=[1])
    p = Pipeline()
    p.add_task("a", ScaleTask)
    p.add_task("b", VisitSummaryTask)
    report = run_pipeline(butler, p, ["run/a"], "out", where="visit = 1")
    access = Access(butler.registry.access)
    access.add_user("carol")
    access.grant("user", "carol", "out*", "read")
    yield butler, report, access
    butler.close()


def test_provenance_graph_against_the_recorded_quanta(provenance_repo):
    from skybutler.access import User
    from skybutler.web.provenance_graph import build_graph

    butler, report, access = provenance_repo
    ref = next(iter(butler.query_datasets("metricsA", collections=report.run, where="detector = 2")))
    graph = build_graph(butler, User("boss", admin=True), ref)
    made = butler.provenance.producer(ref)
    [used] = butler.provenance.consumers(ref)
    expected = ({f"d:{i.dataset_id}" for i in made.inputs} | {f"d:{o.dataset_id}" for o in used.outputs}
                | {f"q:{made.quantum_id}", f"q:{used.quantum_id}", f"d:{ref.id}",
                   f"d:{made.config_dataset_id}", f"d:{used.config_dataset_id}"})
    assert set(graph.nodes) == expected
    assert (f"q:{made.quantum_id}", f"d:{ref.id}", "data") in graph.edges
    assert (f"d:{made.config_dataset_id}", f"q:{made.quantum_id}", "config") in graph.edges
    for source, target, _ in graph.edges:  # data flows left to right
        assert graph.nodes[source].layer < graph.nodes[target].layer
        assert graph.nodes[source].x + 200 <= graph.nodes[target].x
    assert graph.environments and dict(next(iter(graph.environments.values())))["skybutler"]
    # carol may read the outputs but not run/a: its metrics are left out, and nothing above them
    carol = access.user("carol")
    limited = build_graph(butler, carol, ref)
    assert not {f"d:{i.dataset_id}" for i in made.inputs} & set(limited.nodes)
    assert f"q:{made.quantum_id}" in limited.nodes


def test_provenance_page_links_every_node(provenance_repo):
    from server_helpers import running_server

    butler, report, access = provenance_repo
    token = access.create_token("carol")
    ref = next(iter(butler.query_datasets("metricsA", collections=report.run, where="detector = 2")))
    summary = next(iter(butler.query_datasets("visitSummary", collections=report.run)))
    hidden = next(iter(butler.query_datasets("metrics", collections="run/a")))
    with running_server(butler.root) as url:
        c = httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=60)
        page = c.get(f"/datasets/{ref.id}/provenance")
        assert page.status_code == 200
        assert f'href="/datasets/{summary.id}/provenance"' in page.text
        assert str(hidden.id) not in page.text
        assert 'id="provenance-graph"' in page.text and "<details" in page.text
        assert c.get(f"/datasets/{hidden.id}/provenance").status_code == 404


def test_get_image_bin_on_the_command_line(butler, tmp_path):
    from click.testing import CliRunner

    from skybutler.cli.main import cli

    butler.register_dataset_type("img", ["instrument", "detector"], "Image")
    data = np.arange(40 * 30, dtype=np.float32).reshape(30, 40)
    butler.put(data, "img", instrument="Cam", detector=2, run="r")
    out = tmp_path / "small.fits"
    result = CliRunner().invoke(cli, ["get-image", str(butler.root), "img", "instrument=Cam", "detector=2", "-c", "r",
                                      "--bin", "4", "-o", str(out)])
    assert result.exit_code == 0, result.output
    assert np.allclose(fits.getdata(out), block_means(data, 4)) and "wrote 10x8 pixels" in result.output
    bad = CliRunner().invoke(cli, ["get-image", str(butler.root), "img", "instrument=Cam", "detector=2", "-c", "r",
                                   "--bin", "0", "-o", str(out)])
    assert bad.exit_code != 0 and "bin must be a positive integer" in bad.output and "Traceback" not in bad.output


def test_quicklook_of_a_multi_extension_image_is_its_first_image(tmp_path):
    from conftest import populate
    from skybutler import Butler
    from skybutler.web.images import quicklook_png

    with Butler.create(tmp_path / "repo") as butler:
        populate(butler)
        butler.register_dataset_type("mef", ["instrument", "detector"], "MultiExtensionImage")
        first = np.zeros((20, 600), np.float32)
        first[:, :300] = 1000.0  # left half bright
        hdus = fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(first, name="AMP1"),
                             fits.ImageHDU(np.ones((5, 5), np.float32), name="AMP2")])
        ref = butler.put(hdus, "mef", instrument="Cam", detector=0, run="r")
        picture = np.asarray(Image.open(io.BytesIO(quicklook_png(butler, ref, "zscale", 128, None))))
    assert picture.shape == (4, 120)  # 600 / 5 = 120 columns: bin 5
    assert picture[:, :60].min() == 255 and picture[:, 60:].max() == 0


def test_regions_of_many_datasets_at_once_are_their_facts(butler):
    from astropy.io import fits as afits

    butler.register_dataset_type("img", ["instrument", "detector"], "Image")
    refs = []
    for detector in range(3):
        header = afits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": 10.0 + detector, "CRVAL2": -5.0,
                               "CRPIX1": 5.5, "CRPIX2": 5.5, "CDELT1": -1e-3, "CDELT2": 1e-3})
        refs.append(butler.put(afits.ImageHDU(np.zeros((10, 10), np.float32), header), "img", instrument="Cam",
                               detector=detector, run="r"))
    refs.append(butler.put(np.zeros((4, 4), np.float32), "img", instrument="Cam", detector=3, run="r"))  # no WCS
    found = butler.registry.metadata.field_of_many([r.id for r in refs], "Image", "region")
    assert set(found) == {r.id for r in refs[:3]}
    for ref in refs[:3]:
        assert found[ref.id] == butler.get_metadata(ref)["region"]
    assert butler.registry.metadata.field_of_many([refs[0].id], "Image", "no_such_fact") == {}
