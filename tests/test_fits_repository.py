"""Real FITS images in a repository: ingest, put, their facts and footprints, sky queries, cut-outs.

Oracles are astropy itself (``world_to_pixel`` of each image) and brute force in plain Python;
the images are built with astropy (:mod:`fits_images`).
"""

from __future__ import annotations

import gzip
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.coordinates import SkyCoord
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from fits_images import (
    N_X,
    N_Y,
    _wcs_header,
    astropy_wcs,
    helioprojective,
    make_image,
    make_raw,
    write_file,
)
from skybutler import Butler
from skybutler.errors import FormatterError, InvalidFileError
from skybutler.formats import get_storage_class

# -- the repository: ingest, put, facts, sky queries -------------------------------------


def _pointed(ra: float, dec: float, frame: str = "icrs", size: tuple[int, int] = (N_X, N_Y)) -> fits.PrimaryHDU:
    """A small TAN image centred on (ra, dec) of ``frame``, 0.2 arcmin pixels, slightly rotated."""
    if frame == "galactic":
        header = _wcs_header(("GLON-TAN", "GLAT-TAN"), (ra, dec), cdelt=3e-3)
    else:
        header = _wcs_header(("RA---TAN", "DEC--TAN"), (ra, dec), cdelt=3e-3, RADESYS="ICRS")
    header["CRPIX1"], header["CRPIX2"] = (size[0] + 1) / 2, (size[1] + 1) / 2
    return make_image(header, *size)


def _covers(hdu: fits.PrimaryHDU, ra: float, dec: float) -> bool:
    """Brute force: does the image hold a pixel at ICRS (ra, dec)?  (astropy's world_to_pixel)."""
    wcs = _WCS_OF.get(id(hdu)) or _WCS_OF.setdefault(id(hdu), astropy_wcs(hdu.header))
    if not wcs.has_celestial or wcs.wcs.ctype[0].startswith("HPLN"):
        return False
    x, y = wcs.world_to_pixel(SkyCoord(ra * u.deg, dec * u.deg, frame="icrs"))
    n_y, n_x = hdu.data.shape
    return bool(-0.5 <= x < n_x - 0.5 and -0.5 <= y < n_y - 0.5)


_WCS_OF: dict[int, WCS] = {}


@pytest.fixture
def images(butler, tmp_path):
    """Images of visit 1, detectors 0..3 and visit 2, detectors 0..3: five ingested (plain, gzip,
    bzip2, tile-compressed, gzip named .fits), three put; one galactic, one helioprojective."""
    butler.register_dataset_type("calexp", ["instrument", "visit", "detector"], "Image")
    rng = np.random.default_rng(7)
    made: dict[tuple[int, int], fits.PrimaryHDU] = {}
    ingested = []
    ways = {0: None, 2: "gzip", 4: "bzip2", 6: "tile", 7: "gzip-as-fits"}
    for n, (visit, detector) in enumerate([(v, d) for v in (1, 2) for d in range(4)]):
        if n == 6:
            hdu = make_image(helioprojective())
        elif n == 5:
            hdu = _pointed(0.1, 0.2, "galactic")
        else:
            hdu = _pointed(150.0 + rng.uniform(-0.3, 0.3), 2.0 + rng.uniform(-0.3, 0.3))
        made[(visit, detector)] = hdu
        data_id = {"instrument": "Cam", "visit": visit, "detector": detector}
        if n not in ways:
            butler.put(hdu, "calexp", data_id)
            continue
        way = ways[n]
        if way == "tile":
            path = tmp_path / f"in{n}.fits.fz"
            fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(hdu.data, header=hdu.header)]).writeto(path)
        else:
            suffix = {None: ".fits", "gzip": ".fits.gz", "bzip2": ".fits.bz2", "gzip-as-fits": ".fits"}[way]
            path = write_file(tmp_path / f"in{n}{suffix}", hdu, "gzip" if way == "gzip-as-fits" else way)
        ingested.append((path, data_id))
    refs = butler.ingest("calexp", ingested, run="run/a")
    _WCS_OF.clear()  # cached by object id: only while these images are alive
    yield butler, made, refs
    _WCS_OF.clear()


def test_ingested_files_keep_their_full_suffix_and_read_back(images):
    butler, made, refs = images
    suffixes = sorted(Path(r.artifact.path).name.split(".", 1)[1] for r in refs)
    assert suffixes == ["fits", "fits", "fits.bz2", "fits.fz", "fits.gz"]
    for ref in refs:
        key = (ref.data_id["visit"], ref.data_id["detector"])
        np.testing.assert_array_equal(butler.get(ref, component="data"), made[key].data)
        cut = butler.get(ref, parameters={"bbox": (3, 4, 50, 40)})
        np.testing.assert_array_equal(cut.data, made[key].data[4:40, 3:50])


def test_ingested_and_put_images_have_the_same_facts(images):
    butler, made, refs = images
    sc = get_storage_class("Image")
    for ref in butler.query_datasets("calexp", collections="run/a"):
        facts = butler.get_metadata(ref)
        expected = sc.extract_metadata(made[(ref.data_id["visit"], ref.data_id["detector"])])
        assert facts.keys() == expected.keys()
        for key, value in expected.items():
            if key == "region":
                assert (value is None) == (facts[key] is None)
                if value is not None:
                    assert facts[key].encode() == value.encode()
            elif isinstance(value, float):
                assert facts[key] == pytest.approx(value, abs=1e-12)
            else:
                assert facts[key] == value, key
    assert butler.query_datasets("calexp", where="calexp.n_x > 0", collections="run/a").count() == 8


def test_which_images_cover_a_position_matches_brute_force(images):
    butler, made, _ = images
    rng = np.random.default_rng(3)
    galactic_centre = SkyCoord(0.1 * u.deg, 0.2 * u.deg, frame="galactic").icrs
    points = [(150.0 + rng.uniform(-0.6, 0.6), 2.0 + rng.uniform(-0.6, 0.6)) for _ in range(40)]
    points += [(galactic_centre.ra.deg, galactic_centre.dec.deg), (0.0, 0.0), (0.1, 0.2)]
    for ra, dec in points:
        where = f"calexp.region OVERLAPS POINT({float(ra)!r}, {float(dec)!r})"
        found = {(r.data_id["visit"], r.data_id["detector"])
                 for r in butler.query_datasets("calexp", where=where, collections="run/a")}
        expected = {key for key, hdu in made.items() if _covers(hdu, ra, dec)}
        assert found == expected, (ra, dec)
        # The same question about data IDs, through the first-found dataset of each.
        ids = {(d["visit"], d["detector"]) for d in butler.query_data_ids(["visit", "detector"], where=where,
                                                                          collections="run/a")}
        assert ids == expected


def test_region_fact_needs_a_constant_region(images):
    from skybutler.errors import QueryError

    butler, _, _ = images
    with pytest.raises(QueryError, match="constant region"):
        list(butler.query_datasets("calexp", where="calexp.region OVERLAPS visit.region", collections="run/a"))


def test_bad_files_are_refused_at_ingest_and_nothing_changes(butler, tmp_path):
    butler.register_dataset_type("calexp", ["instrument", "visit", "detector"], "Image")
    good = write_file(tmp_path / "good.fits", _pointed(150.0, 2.0))
    text = tmp_path / "notes.fits"
    text.write_text("not FITS at all\n" * 300)
    corrupt = tmp_path / "corrupt.fits.gz"
    packed = bytearray(gzip.compress(good.read_bytes()))
    packed[len(packed) // 2] ^= 0xFF
    corrupt.write_bytes(bytes(packed))
    table = write_file(tmp_path / "table.fits", fits.HDUList([fits.PrimaryHDU(), fits.BinTableHDU(Table({"a": [1]}))]))
    before = set(butler.datastore.walk())
    for bad, pattern in [(text, r"notes\.fits: Formatter 'fits': the primary header does not parse"),
                         (corrupt, r"corrupt\.fits\.gz: Formatter 'fits': the gzip stream is corrupt"),
                         (table, r"table\.fits: Formatter 'fits': the file holds no 2-D image HDU")]:
        with pytest.raises(InvalidFileError, match=pattern):
            butler.ingest("calexp", [(good, {"instrument": "Cam", "visit": 1, "detector": 0}),
                                     (bad, {"instrument": "Cam", "visit": 1, "detector": 1})], run="run/a")
    assert set(butler.datastore.walk()) == before
    assert not butler.collections.exists("run/a") or \
        butler.query_datasets("calexp", collections="run/a").count() == 0


def test_extract_metadata_backfills_stored_datasets(images, tmp_path):
    from click.testing import CliRunner

    from skybutler.cli.main import cli

    butler, made, _ = images
    refs = list(butler.query_datasets("calexp", collections="run/a"))
    expected = {r.id: butler.get_metadata(r) for r in refs}
    table = butler.registry.metadata.table("Image")
    with butler.registry.db.transaction() as conn:  # as if stored before facts were extracted
        conn.execute(table.delete())
    assert butler.query_datasets("calexp", where="calexp.n_x > 0", collections="run/a").count() == 0
    assert butler.extract_metadata("calexp", collections="run/a") == 8
    assert butler.extract_metadata("calexp", collections="run/a") == 0  # nothing left without facts
    assert {r.id: butler.get_metadata(r)["ra_center"] for r in refs} == \
        {i: f["ra_center"] for i, f in expected.items()}
    centre = made[(1, 0)].header["CRVAL1"], made[(1, 0)].header["CRVAL2"]
    where = f"calexp.region OVERLAPS POINT({centre[0]!r}, {centre[1]!r})"
    assert (1, 0) in {(r.data_id["visit"], r.data_id["detector"])
                      for r in butler.query_datasets("calexp", where=where, collections="run/a")}
    with butler.registry.db.transaction() as conn:
        conn.execute(table.delete().where(table.c.n_x.isnot(None)))
    butler.close()
    result = CliRunner().invoke(cli, ["extract-metadata", str(tmp_path / "repo"), "calexp", "-c", "run/a",
                                      "--where", "visit = 1"])
    assert result.exit_code == 0, result.output
    assert "4 dataset(s)" in result.output
    again = Butler(tmp_path / "repo", collections=["run/a"])
    assert again.query_datasets("calexp", where="calexp.n_x > 0").count() == 4
    again.close()


def test_import_extracts_facts(images, tmp_path, make_butler):
    from skybutler.repository_transfer import export_datasets, import_datasets

    butler, _, _ = images
    refs = list(butler.query_datasets("calexp", collections="run/a"))
    export_datasets(butler, refs, tmp_path / "export")
    target = make_butler("target")
    assert import_datasets(target, tmp_path / "export") == 8
    for ref in refs:
        assert target.get_metadata(ref)["n_x"] == butler.get_metadata(ref)["n_x"]
        assert target.get_metadata(ref)["ra_center"] == butler.get_metadata(ref)["ra_center"]


def test_multi_extension_raw_in_the_repository(butler, tmp_path):
    butler.register_dataset_type("mef", ["instrument", "visit", "detector"], "MultiExtensionImage")
    path = write_file(tmp_path / "raw.fits.gz", make_raw(), "gzip")
    ref = butler.ingest("mef", [(path, {"instrument": "Cam", "visit": 1, "detector": 0})], run="run/a")[0]
    assert ref.artifact.path.endswith(".fits.gz")
    amp = butler.get(ref, parameters={"hdu": "AMP03"})
    assert np.all(amp.data == 3) and amp.header["FILTER"] == "g"
    assert len(butler.get(ref)) == 6
    with pytest.raises(FormatterError, match=r"mef_Cam_1_0\.fits\.gz: no HDU 'AMP07' in the file \(HDUs: 0:PRIMARY"):
        butler.get(ref, parameters={"hdu": "AMP07"})
    facts = butler.get_metadata(ref)
    assert facts["n_images"] == 4 and facts["filter"] == "g" and facts["region"] is not None
    put = butler.put(make_raw(), "mef", {"instrument": "Cam", "visit": 1, "detector": 1})
    assert butler.get_metadata(put)["ra_center"] == pytest.approx(facts["ra_center"], abs=1e-9)


def test_ingested_raws_have_facts_and_footprints(tmp_path):
    from skybutler.ingest import ingest_raws
    from skybutler.instruments import simulate_night

    night = tmp_path / "night"
    night.mkdir()
    simulate_night(night, day_obs=20260301, n_science=1, n_bias=1, n_flat=0, bands=("g",), size=32)
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, night)
        assert result.ok and result.refs
        science = 0
        for ref in result.refs:
            facts = butler.get_metadata(ref)
            assert facts["n_x"] > 0 and facts["dtype"]
            with fits.open(butler.get_uri(ref).removeprefix("file://")) as hdus:
                image = next(h for h in hdus if h.is_image and h.header.get("NAXIS") == 2)
                has_wcs = "CTYPE1" in image.header
            assert (facts["region"] is not None) == has_wcs
            if has_wcs:
                science += 1
                where = f"raw.region OVERLAPS POINT({facts['ra_center']!r}, {facts['dec_center']!r})"
                found = {r.id for r in butler.query_datasets("raw", where=where, collections="SimCam/raw/all")}
                assert ref.id in found
        assert science > 0  # the science raws carry a WCS
        assert butler.query_datasets("raw", where="raw.n_x > 0", collections="SimCam/raw/all").count() == \
            len(result.refs)


def test_cutouts_around_a_position_from_every_covering_image(images, tmp_path):
    from click.testing import CliRunner

    from skybutler.cli.main import cli

    butler, made, _ = images
    grid = [(150.0 + i * 0.1, 2.0 + j * 0.1) for i in range(-3, 4) for j in range(-3, 4)]
    ra, dec = max(grid, key=lambda p: sum(_covers(hdu, *p) for hdu in made.values()))
    expected = {key for key, hdu in made.items() if _covers(hdu, ra, dec)}
    assert len(expected) >= 2
    cutouts = butler.get_cutouts("calexp", ra, dec, 21, collections="run/a")
    assert {(r.data_id["visit"], r.data_id["detector"]) for r, _ in cutouts} == expected
    target = SkyCoord(ra * u.deg, dec * u.deg)
    for ref, cut in cutouts:
        full = made[(ref.data_id["visit"], ref.data_id["detector"])]
        x, y = astropy_wcs(full.header).world_to_pixel(target)
        x0, y0 = round(float(x)) - 10, round(float(y)) - 10   # 21 pixels centred on the position's pixel
        x1, y1 = min(x0 + 21, N_X), min(y0 + 21, N_Y)
        x0, y0 = max(x0, 0), max(y0, 0)                       # clipped at the edges
        np.testing.assert_array_equal(cut.data, full.data[y0:y1, x0:x1])
        cx, cy = astropy_wcs(cut.header).world_to_pixel(target)
        assert abs(cx - (x - x0)) < 1e-6 and abs(cy - (y - y0)) < 1e-6
    pytest.importorskip("fastapi")
    from server_helpers import running_server
    from skybutler.access import Access

    access = Access(butler.registry.access)
    access.grant("*", "*", "*", "read")
    with running_server(butler.root) as url:  # the same cut-outs through a server
        remote = Butler(url, token=access.create_token("ana")).get_cutouts("calexp", ra, dec, 21, collections="run/a")
    assert [r.id for r, _ in remote] == [r.id for r, _ in cutouts]
    for (_, there), (_, here) in zip(remote, cutouts):
        np.testing.assert_array_equal(there.data, here.data)
        assert there.header["CRPIX1"] == here.header["CRPIX1"]
    butler.close()
    result = CliRunner().invoke(cli, ["cutouts", str(tmp_path / "repo"), "calexp", str(ra), str(dec), "--size", "21",
                                      "-c", "run/a", "-o", str(tmp_path / "cut"), "--json"])
    assert result.exit_code == 0, result.output
    written = sorted((tmp_path / "cut").glob("*.fits"))
    assert len(written) == len(expected)
    with fits.open(written[0]) as hdus:
        assert hdus[0].data.shape == cutouts[0][1].data.shape and "CRPIX1" in hdus[0].header


def test_an_older_image_facts_table_gains_the_new_columns(butler):
    """A repository whose Image facts table predates footprints: the first put adds the columns."""
    old = {"n_x": int, "n_y": int, "dtype": str, "ra_center": float, "dec_center": float}
    butler.registry.metadata.table("Image", old)
    butler.registry.metadata.refresh()
    butler.register_dataset_type("calexp", ["instrument", "visit", "detector"], "Image")
    ref = butler.put(_pointed(150.0, 2.0), "calexp", {"instrument": "Cam", "visit": 1, "detector": 0})
    facts = butler.get_metadata(ref)
    assert facts["region"] is not None and facts["filter"] is None and facts["n_x"] == N_X
    where = "calexp.region OVERLAPS POINT(150.0, 2.0)"
    assert butler.query_datasets("calexp", where=where, collections="run/a").count() == 1


def test_cli_get_image_writes_a_cutout_and_prints_headers(butler, tmp_path):
    from click.testing import CliRunner

    from skybutler.cli.main import cli

    butler.register_dataset_type("mef", ["instrument", "visit", "detector"], "MultiExtensionImage")
    butler.put(make_raw(), "mef", {"instrument": "Cam", "visit": 1, "detector": 0})
    butler.close()
    repo, runner = str(tmp_path / "repo"), CliRunner()
    args = ["get-image", repo, "mef", "instrument=Cam", "visit=1", "detector=0", "-c", "run/a"]
    result = runner.invoke(cli, [*args, "--hdu", "AMP02", "--bbox", "1,2,11,7", "-o", str(tmp_path / "c.fits")])
    assert result.exit_code == 0, result.output
    with fits.open(tmp_path / "c.fits") as hdus:
        assert hdus[0].data.shape == (5, 10) and np.all(hdus[0].data == 2)
        assert hdus[0].header["CRPIX1"] == pytest.approx(60.5 - 80 - 1) and hdus[0].header["FILTER"] == "g"
    result = runner.invoke(cli, [*args, "--hdu", "AMP01", "--header"])
    assert result.exit_code == 0 and "EXTNAME = 'AMP01" in result.output and "DATE-OBS" in result.output
    result = runner.invoke(cli, [*args, "--hdu", "AMP09", "--header"])
    assert result.exit_code == 1 and "no HDU 'AMP09'" in result.output
    result = runner.invoke(cli, [*args, "--bbox", "1,2,3", "--header"])
    assert result.exit_code == 1 and "four integers" in result.output
