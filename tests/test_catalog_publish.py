"""HATS publication of catalog datasets and searches over it.

Oracles: ``hats``'s own strict validation, ``lsdb`` reading the publication, and brute-force
answers in plain numpy (haversine distances, RA/Dec comparisons, the signs of great-circle
edge normals) for every search.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from click.testing import CliRunner

from skybutler import Butler
from skybutler.catalogs.search import box_search, cone_search, polygon_search
from skybutler.cli.main import cli
from skybutler.errors import PublicationError, SearchError

hats = pytest.importorskip("hats")
from hats.io.validation import is_valid_catalog  # noqa: E402

lsdb = pytest.importorskip("lsdb")

N_DATASETS = 12
ROWS = 1500
MARGIN = 1800.0  # arcsec: a wide margin, so that a small catalog has margin rows


def _positions(rng: np.random.Generator, i: int, n: int) -> tuple[np.ndarray, np.ndarray]:
    """All-sky rows, with crowds at both poles and across RA 0 (dataset-dependent)."""
    ra = rng.uniform(0, 360, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1, 1, n)))
    crowd = n // 3
    if i % 3 == 0:
        ra[:crowd], dec[:crowd] = rng.uniform(0, 360, crowd), rng.uniform(86, 90, crowd)
    elif i % 3 == 1:
        ra[:crowd], dec[:crowd] = rng.uniform(0, 360, crowd), rng.uniform(-90, -86, crowd)
    else:
        ra[:crowd], dec[:crowd] = rng.uniform(-3, 3, crowd) % 360, rng.uniform(-3, 3, crowd)
    return ra, dec


def _table(rng: np.random.Generator, i: int, n: int = ROWS) -> pa.Table:
    ra, dec = _positions(rng, i, n)
    flux = pa.field("flux", pa.float64(), metadata={b"description": b"PSF flux", b"unit": b"nJy"})
    return pa.Table.from_arrays([pa.array(np.arange(n, dtype=np.int64) + i * 100_000), pa.array(ra),
                                 pa.array(dec), pa.array(rng.normal(size=n)),
                                 pa.array([f"s{i}-{k}" for k in range(n)])],
                                schema=pa.schema([pa.field("id", pa.int64()), pa.field("ra", pa.float64()),
                                                  pa.field("dec", pa.float64()), flux,
                                                  pa.field("name", pa.string())]))


def _make_repo(root: Path, n: int = N_DATASETS, seed: int = 5) -> Butler:
    butler = Butler.create(root, run="r1")
    butler.insert_records("instrument", [{"name": "Cam", "detector_max": 1000}])
    butler.insert_records("detector", [{"instrument": "Cam", "id": i} for i in range(n)])
    butler.register_dataset_type("src", ["instrument", "detector"], "Table")
    rng = np.random.default_rng(seed)
    for i in range(n):
        butler.put(_table(rng, i), "src", instrument="Cam", detector=i)
    return butler


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    root = tmp_path_factory.mktemp("catalogs")
    butler = _make_repo(root / "repo")
    report = butler.publish_catalog("src", root / "pub", collections="r1", max_rows=1000,
                                    margin_arcsec=MARGIN)
    rows = pa.concat_tables([butler.get(r) for r in butler.query_datasets("src", collections="r1")])
    yield butler, root / "pub", report, rows
    butler.close()


def _haversine(ra0: float, dec0: float, ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    r0, d0, r, d = (np.radians(x) for x in (ra0, dec0, ra, dec))
    h = np.sin((d - d0) / 2) ** 2 + np.cos(d) * np.cos(d0) * np.sin((r - r0) / 2) ** 2
    return np.degrees(2 * np.arcsin(np.sqrt(np.clip(h, 0, 1))))


def _unit(ra: np.ndarray, dec: np.ndarray) -> np.ndarray:
    r, d = np.radians(ra), np.radians(dec)
    return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)


def _ids(table) -> list[int]:
    return sorted(int(x) for x in table["id"])


# -- the publication --------------------------------------------------------------


def test_hats_validation_and_lsdb_read_identical_rows(published):
    butler, pub, report, rows = published
    assert is_valid_catalog(pub, strict=True)
    assert report.total_rows == rows.num_rows and report.partitions > 12  # split below order 0
    catalog = lsdb.open_catalog(pub)
    frame = catalog.compute().reset_index()
    assert len(frame) == rows.num_rows
    ours = rows.to_pandas().sort_values("id").reset_index(drop=True)
    theirs = frame.sort_values("id").reset_index(drop=True)
    for column in ("id", "ra", "dec", "flux", "name"):
        assert list(theirs[column]) == list(ours[column])
    from skybutler.catalogs.healpix import healpix_index
    assert np.array_equal(theirs["_healpix_29"].to_numpy(), healpix_index(ours["ra"], ours["dec"]))
    assert catalog.margin is not None and len(catalog.margin.compute()) > 0
    # the field descriptions travel with the columns
    schema = pq.read_schema(pub / "pub" / "dataset" / "_common_metadata")
    assert schema.field("flux").metadata[b"description"] == b"PSF flux"


def test_partitions_respect_rows_and_bytes(tmp_path):
    butler = _make_repo(tmp_path / "repo", n=4)
    report = butler.publish_catalog("src", tmp_path / "pub", collections="r1", max_bytes=60_000)
    sizes = [pq.ParquetFile(p).metadata.num_rows for p in (tmp_path / "pub" / "pub" / "dataset").rglob("*.parquet")]
    bytes_per_row = pa.concat_tables([butler.get(r) for r in butler.query_datasets("src", collections="r1")]).nbytes
    bytes_per_row /= 4 * ROWS
    assert sum(sizes) == 4 * ROWS and report.partitions == len(sizes)
    # a partition at order 10 (the histogram's) may not be split further; the others fit
    assert all(n * bytes_per_row <= 60_000 * 1.01 for n in sizes if n > 50)


def test_margin_holds_the_rows_near_each_partition(published):
    butler, pub, report, rows = published
    margin_dir = pub / f"pub_{MARGIN:g}arcs"
    import cdshealpix

    from skybutler.catalogs.healpix import healpix_index
    ra, dec = rows["ra"].to_numpy(), rows["dec"].to_numpy()
    index = healpix_index(ra, dec)
    checked = 0
    for path in sorted((pub / "pub" / "dataset").rglob("*.parquet"))[:40]:
        order = int(path.parent.parent.name.split("=")[1])
        pixel = int(path.stem.split("=")[1])
        inside = (index >> (2 * (29 - order))) == pixel
        # boundary of the pixel, sampled densely, as the oracle's polygon
        lon, lat = cdshealpix.nested.vertices(np.array([pixel], np.uint64), order, step=50)
        blon, blat = lon.to_value("deg").ravel(), lat.to_value("deg").ravel()
        cosine = _unit(ra, dec) @ _unit(blon, blat).T  # rows x boundary points
        near = np.degrees(np.arccos(np.clip(cosine.max(axis=1), -1, 1))) < MARGIN / 3600 * 0.98
        expected = set(rows["id"].to_numpy()[near & ~inside].tolist())
        margin_file = margin_dir / path.relative_to(pub / "pub")
        got = set(pq.read_table(margin_file)["id"].to_numpy().tolist()) if margin_file.exists() else set()
        assert expected <= got  # every row within the width is there
        assert not got & set(rows["id"].to_numpy()[inside].tolist())  # none of the partition's own
        checked += len(expected)
    assert checked > 0


def test_registered_with_provenance(published):
    butler, pub, report, rows = published
    ref = report.ref
    manifest = butler.get(ref)
    assert manifest["path"] == str(pub) and manifest["rows"] == rows.num_rows
    quantum = butler.provenance.producer(ref)
    catalogs = {r.id for r in butler.query_datasets("src", collections="r1")}
    assert {link.dataset_id for link in quantum.inputs} == catalogs


# -- searches against brute force ---------------------------------------------------


CONES = [(10, 20, 5), (0, 0, 2), (359.8, 1, 1.5), (0.1, -1, 3), (123, 89.5, 2), (0, 90, 3), (250, -90, 4),
         (45, -88, 1), (200, 10, 60), (0, 0, 180)]


@pytest.mark.parametrize("ra,dec,radius", CONES)
def test_cone_search_matches_brute_force(published, ra, dec, radius):
    _, pub, _, rows = published
    got = cone_search(pub, ra, dec, radius)
    distance = _haversine(ra, dec, rows["ra"].to_numpy(), rows["dec"].to_numpy())
    assert _ids(got) == sorted(rows["id"].to_numpy()[distance <= radius].tolist())


def test_random_cones_match_brute_force(published):
    _, pub, _, rows = published
    rng = np.random.default_rng(11)
    ra, dec = rows["ra"].to_numpy(), rows["dec"].to_numpy()
    for _ in range(15):
        c_ra, c_dec, radius = rng.uniform(-10, 370), rng.uniform(-90, 90), rng.uniform(0.05, 20)
        got = cone_search(pub, c_ra, c_dec, radius, columns=["id"])
        assert got.column_names == ["id"]
        assert _ids(got) == sorted(rows["id"].to_numpy()[_haversine(c_ra, c_dec, ra, dec) <= radius].tolist())


@pytest.mark.parametrize("ra_range,dec_range", [((350, 10), (-5, 5)), ((10, 40), (-30, 30)), ((0, 360), (85, 90)),
                                                ((100, 99), (-90, -87)), ((-20, 5), (-2, 2))])
def test_box_search_matches_brute_force(published, ra_range, dec_range):
    _, pub, _, rows = published
    ra, dec = rows["ra"].to_numpy(), rows["dec"].to_numpy()
    start, span = ra_range[0] % 360, (ra_range[1] - ra_range[0]) % 360 or 360
    in_ra = (ra - start) % 360 <= span
    expected = rows["id"].to_numpy()[in_ra & (dec >= dec_range[0]) & (dec <= dec_range[1])]
    got = box_search(pub, ra_range, dec_range, as_="pandas")
    assert sorted(got["id"].tolist()) == sorted(expected.tolist())


def _inside_convex(vertices, ra, dec) -> np.ndarray:
    def vec(r, d):
        r, d = np.radians(r), np.radians(d)
        return np.stack([np.cos(d) * np.cos(r), np.cos(d) * np.sin(r), np.sin(d)], axis=-1)
    corners = [vec(*v) for v in vertices]
    points = vec(ra, dec)
    normals = [np.cross(corners[i], corners[(i + 1) % len(corners)]) for i in range(len(corners))]
    centre = sum(corners)  # inside a convex polygon smaller than a hemisphere: gives the winding
    return np.all(np.stack([(points @ n) * np.sign(centre @ n) >= 0 for n in normals]), axis=0)


@pytest.mark.parametrize("vertices", [[(10, 0), (20, 0), (15, 10)], [(355, -3), (5, -3), (5, 3), (355, 3)],
                                      [(0, 80), (90, 80), (180, 80), (270, 80)],
                                      [(40, -60), (30, -50), (50, -40), (60, -55)][::-1]])
def test_polygon_search_matches_brute_force(published, vertices):
    _, pub, _, rows = published
    expected = rows["id"].to_numpy()[_inside_convex(vertices, rows["ra"].to_numpy(), rows["dec"].to_numpy())]
    got = polygon_search(pub, vertices, as_="astropy")
    assert sorted(got["id"].tolist()) == sorted(expected.tolist()) and len(expected) > 0


@pytest.mark.parametrize("call,message", [
    (lambda p: cone_search(p, 10, 10, 0), "radius 0 must be greater than 0"),
    (lambda p: cone_search(p, 10, 10, -1), "radius -1 must be greater than 0"),
    (lambda p: cone_search(p, 10, 90.5, 1), "dec 90.5 is outside [-90, 90]"),
    (lambda p: cone_search(p, float("nan"), 0, 1), "ra must be a finite number"),
    (lambda p: box_search(p, (10, 10), (0, 1)), "RA range 10 to 10 is empty"),
    (lambda p: box_search(p, (10, 20), (5, 1)), "dec min 5 must be below dec max 1"),
    (lambda p: polygon_search(p, [(0, 0), (1, 1)]), "at least 3 vertices, not 2"),
    (lambda p: polygon_search(p, [(0, 0), (0, 0), (1, 1)]), "vertices 0 and 1 are the same point"),
    (lambda p: polygon_search(p, [(0, 0), (10, 0), (5, 1), (10, 10), (0, 10)]), "not convex"),
    (lambda p: polygon_search(p, [(0, 0), (10, 0), (20, 0)]), "lie on one great circle"),
    (lambda p: polygon_search(p, [(0, 0), (10, 10), (10, 0), (0, 10)]), "not convex"),
    (lambda p: polygon_search(p, [(0, 0), (10, 0), (0, 95)]), "vertex 2 dec 95 is outside"),
])
def test_bad_search_regions_are_refused_precisely(published, call, message):
    with pytest.raises(SearchError) as info:
        call(published[1])
    assert message in str(info.value)


def test_search_of_a_directory_that_is_not_a_catalog(tmp_path):
    with pytest.raises(SearchError, match="is not a HATS catalog"):
        cone_search(tmp_path, 0, 0, 1)


# -- incremental publication ------------------------------------------------------------


def _contents(pub: Path) -> dict[str, pa.Table]:
    return {str(p.relative_to(pub)): pq.read_table(p) for p in sorted(pub.rglob("Npix=*.parquet"))}


def test_incremental_equals_rebuild_and_keeps_untouched_partitions(tmp_path):
    butler = _make_repo(tmp_path / "repo", n=5)
    options = {"collections": "r1", "max_rows": 1000, "margin_arcsec": MARGIN}
    first = butler.publish_catalog("src", tmp_path / "inc", **options)
    before = {p: os.stat(p).st_ino for p in (tmp_path / "inc").rglob("Npix=*.parquet")}
    # new visits' catalogs near RA 0, Dec 0 (plus a pole's crowd): most partitions gain nothing
    butler.insert_records("detector", [{"instrument": "Cam", "id": i} for i in range(5, 8)])
    rng = np.random.default_rng(9)
    for i in range(5, 8):
        table = _table(rng, i, 600)
        local = rng.uniform(-4, 4, (2, 600))
        table = table.set_column(1, "ra", pa.array(local[0] % 360)).set_column(2, "dec", pa.array(local[1]))
        butler.put(table, "src", instrument="Cam", detector=i)
    second = butler.publish_catalog("src", tmp_path / "inc", collections="r1")
    assert (first.datasets_added, second.datasets_added) == (5, 3)
    assert 0 < second.partitions_written < second.partitions  # some partitions untouched...
    kept = [p for p, ino in before.items() if p.exists() and os.stat(p).st_ino == ino]
    assert len(kept) >= second.partitions - second.partitions_written  # ... carried over, not rewritten
    butler.publish_catalog("src", tmp_path / "full", name="inc", **options)
    inc, full = _contents(tmp_path / "inc"), _contents(tmp_path / "full")
    assert inc.keys() == full.keys()
    for key in inc:
        assert inc[key].equals(full[key]), key
    assert (tmp_path / "inc" / "inc" / "partition_info.csv").read_text() == \
        (tmp_path / "full" / "inc" / "partition_info.csv").read_text()
    assert is_valid_catalog(tmp_path / "inc", strict=True)
    again = butler.publish_catalog("src", tmp_path / "inc", collections="r1")
    assert again.datasets_added == 0 and again.notes == ["nothing new to publish"]
    # each publication act is registered; the latest names every catalog gathered
    assert butler.provenance.producer(second.ref).inputs.__len__() == 8


def test_destination_holding_something_else_is_refused(tmp_path, published):
    butler = published[0]
    other = tmp_path / "other"
    other.mkdir()
    (other / "notes.txt").write_text("mine")
    with pytest.raises(PublicationError, match="not a skybutler publication"):
        butler.publish_catalog("src", other, collections="r1")
    assert os.listdir(other) == ["notes.txt"]
    with pytest.raises(PublicationError, match="other settings"):
        butler.publish_catalog("src", published[1], collections="r1", margin_arcsec=5)
    with pytest.raises(PublicationError, match="nothing to publish"):
        butler.publish_catalog("src", tmp_path / "none", collections="r1", where="detector > 500")
    assert not (tmp_path / "none").exists()


# -- atomic visibility: kill -9 at a few points ---------------------------------------------


@pytest.mark.parametrize("step", ["publication-partition:3", "publication-staged", "publication-swapped"])
def test_killed_publisher_leaves_old_or_new_publication_whole(tmp_path, step):
    butler = _make_repo(tmp_path / "repo", n=6)
    options = {"collections": "r1", "max_rows": 2500, "margin_arcsec": MARGIN}
    butler.publish_catalog("src", tmp_path / "pub", where="detector < 3", **options)
    old = _contents(tmp_path / "pub")
    butler.close()
    script = textwrap.dedent(f"""
        from skybutler import Butler
        Butler({str(tmp_path / 'repo')!r}).publish_catalog("src", {str(tmp_path / 'pub')!r}, collections="r1")
    """)
    env = {**os.environ, "SKYBUTLER_CRASH_AT": step}
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, timeout=120)
    assert done.returncode == -9, done.stderr.decode()[-2000:]
    now = _contents(tmp_path / "pub")
    if step == "publication-swapped":
        assert sum(t.num_rows for k, t in now.items() if k.startswith("pub/")) == 6 * ROWS  # the new one, whole
        assert is_valid_catalog(tmp_path / "pub", strict=True)
    else:
        assert now.keys() == old.keys() and all(now[k].equals(old[k]) for k in old)
    assert is_valid_catalog(tmp_path / "pub", strict=True)
    butler = Butler(tmp_path / "repo")
    report = butler.publish_catalog("src", tmp_path / "pub", collections="r1")
    assert report.total_rows == 6 * ROWS
    # the visible version is registered: at once, or by the next publication after a kill
    runs = [c.name for c in butler.collections.query() if c.name.startswith("publications/")]
    manifests = [butler.get(r) for r in butler.query_datasets("src_hats", collections=runs, find_first=False)]
    assert max(m["rows"] for m in manifests) == 6 * ROWS
    assert not list(tmp_path.glob(".pub.publishing-*"))  # the killed publisher's leftovers are gone
    butler.close()


# -- command line ------------------------------------------------------------------------------


def test_cli_publish_and_search(tmp_path):
    _make_repo(tmp_path / "repo", n=3).close()
    runner = CliRunner()
    result = runner.invoke(cli, ["publish-catalog", str(tmp_path / "repo"), "src", str(tmp_path / "pub"),
                                 "-c", "r1", "--margin", "60", "--no-progress"])
    assert result.exit_code == 0, result.output
    assert "published 3 datasets (4500 rows)" in result.output
    result = runner.invoke(cli, ["cone-search", str(tmp_path / "pub"), "--ra", "0", "--dec", "-90", "--radius",
                                 "5", "--columns", "id", "--json"])
    assert result.exit_code == 0, result.output
    expected = cone_search(tmp_path / "pub", 0, -90, 5)
    import json
    assert sorted(r["id"] for r in json.loads(result.output)) == _ids(expected)
    result = runner.invoke(cli, ["box-search", str(tmp_path / "pub"), "--ra", "350,10", "--dec", "-3,3",
                                 "-o", str(tmp_path / "box.parquet")])
    assert result.exit_code == 0 and pq.read_table(tmp_path / "box.parquet").num_rows > 0
    result = runner.invoke(cli, ["cone-search", str(tmp_path / "pub"), "--ra", "0", "--dec", "-95", "--radius",
                                 "1"])
    assert result.exit_code == 1 and result.output.strip().splitlines() == \
        ["error: dec -95 is outside [-90, 90] degrees"]
    result = runner.invoke(cli, ["polygon-search", str(tmp_path / "pub"), "--vertex", "0,0", "--vertex", "1,x"])
    assert result.exit_code == 1 and "--vertex needs two numbers" in result.output


def test_declared_schema_descriptions_are_published(tmp_path):
    pytest.importorskip("felis")
    (tmp_path / "survey.yaml").write_text(textwrap.dedent("""\
        name: survey
        "@id": "#survey"
        tables:
        - name: src
          "@id": "#src"
          primaryKey: "#src.id"
          columns:
          - {name: id, "@id": "#src.id", datatype: long, nullable: false}
          - {name: ra, "@id": "#src.ra", datatype: double, nullable: false, "ivoa:unit": deg,
             "ivoa:ucd": "pos.eq.ra;meta.main"}
          - {name: dec, "@id": "#src.dec", datatype: double, nullable: false, "ivoa:unit": deg,
             "ivoa:ucd": "pos.eq.dec;meta.main"}
          - {name: flux, "@id": "#src.flux", datatype: double, "ivoa:unit": nJy, description: PSF flux.}
        """))
    butler = Butler.create(tmp_path / "repo", run="r1")
    butler.insert_records("instrument", [{"name": "Cam", "detector_max": 10}])
    butler.insert_records("detector", [{"instrument": "Cam", "id": 1}])
    butler.register_dataset_type("src", ["instrument", "detector"], "Table", schema=tmp_path / "survey.yaml")
    rng = np.random.default_rng(3)
    butler.put(_table(rng, 1, 200).drop_columns(["name"]), "src", instrument="Cam", detector=1)
    butler.publish_catalog("src", tmp_path / "pub", collections="r1")
    schema = pq.read_schema(tmp_path / "pub" / "pub" / "dataset" / "_common_metadata")
    assert b"PSF flux" in schema.field("flux").metadata[b"description"]
    assert b"deg" in b"".join(schema.field("ra").metadata.values())
    assert is_valid_catalog(tmp_path / "pub", strict=True)
