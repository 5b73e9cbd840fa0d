"""The Butler facade end to end on real repositories: every storage class in and out,
lookups, removal and failure paths (the atomicity of puts and transactions:
``test_butler_atomicity.py``)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from astropy.io import fits
from astropy.table import Table
from astropy.wcs import WCS

from skybutler import Butler, Timespan
from skybutler.datastore import reading as reading_module
from skybutler.errors import (
    CollectionError,
    DataIdError,
    DatasetConflictError,
    DatasetNotFoundError,
    FormatterError,
    MissingDatasetTypeError,
    SkybutlerError,
    StorageClassError,
    UnknownDimensionError,
)

DATA_ID = {"instrument": "Cam", "visit": 1, "detector": 2}
REGISTRY_FILES = ("butler.yaml", "registry.sqlite3")


def stored_files(butler) -> set[str]:
    """Every file under the datastore root except the repository's own config and database."""
    return {p for p in butler.datastore.walk() if not p.startswith(REGISTRY_FILES)}


def n_datasets(butler, run: str = "run/a") -> int:
    if not butler.collections.exists(run):
        return 0
    return len(butler.registry.datasets.ids_in_collection(run))


def assert_consistent(butler) -> None:
    """Every stored file belongs to a registered dataset and vice versa; no temporaries."""
    runs = [c.name for c in butler.collections.query(types=["run"])]
    ids = [i for run in runs for i in butler.registry.datasets.ids_in_collection(run)]
    artifacts = butler.registry.datasets.artifacts(ids)
    inside = {a.path for a in artifacts.values() if "://" not in a.path}
    assert stored_files(butler) == inside
    assert all(butler.datastore.exists(a) for a in artifacts.values())


# -- storage classes in and out -------------------------------------------------------


def test_dict(butler):
    obj = {"name": "é ✓", "n": 3, "x": 1.5, "ok": True, "none": None, "nested": {"list": [1, [2, "3"]]}}
    ref = butler.put(obj, "metrics", DATA_ID)
    assert butler.get(ref) == obj
    assert butler.get("metrics", DATA_ID) == obj
    assert ref.artifact.path.endswith(".json")


@pytest.fixture
def tables(butler):
    butler.register_dataset_type("src", ["visit", "detector"], "Table")
    return butler


def sample_frame(n: int = 5) -> pd.DataFrame:
    return pd.DataFrame({"ra": np.linspace(10, 11, n), "dec": np.linspace(-5, -4, n), "flux": np.arange(n) * 1.0,
                         "id": np.arange(n, dtype=np.int64)})


@pytest.mark.parametrize("kind", ["pandas", "astropy", "arrow"])
def test_table_roundtrip_from_every_table_type(tables, kind):
    frame = sample_frame()
    obj = {"pandas": frame, "astropy": Table.from_pandas(frame), "arrow": pa.Table.from_pandas(frame,
                                                                                                 preserve_index=False)}[kind]
    ref = tables.put(obj, "src", DATA_ID)
    assert ref.artifact.path.endswith(".parquet")
    default = tables.get(ref)
    assert isinstance(default, pa.Table)
    assert default.column_names == ["ra", "dec", "flux", "id"]
    np.testing.assert_allclose(default.column("flux").to_numpy(), frame["flux"])
    as_pandas = tables.get("src", DATA_ID, parameters={"as": "pandas"})
    pd.testing.assert_frame_equal(as_pandas.reset_index(drop=True), frame)
    as_astropy = tables.get(ref, parameters={"as": "astropy"})
    assert isinstance(as_astropy, Table) and list(as_astropy.colnames) == ["ra", "dec", "flux", "id"]


def test_table_column_subset(tables):
    ref = tables.put(sample_frame(), "src", DATA_ID)
    sub = tables.get(ref, parameters={"columns": ["dec", "ra"]})
    assert sub.column_names == ["dec", "ra"] and sub.num_rows == 5
    sub = tables.get(ref, parameters={"columns": ["flux"], "as": "pandas"})
    assert list(sub.columns) == ["flux"]
    assert tables.get(ref, component="schema").names == ["ra", "dec", "flux", "id"]
    with pytest.raises(FormatterError, match="unknown column\\(s\\) \\['mag'\\]"):
        tables.get(ref, parameters={"columns": ["mag"]})
    with pytest.raises(FormatterError, match="'as' is 'numpy'"):
        tables.get(ref, parameters={"as": "numpy"})
    with pytest.raises(StorageClassError, match="Table does not accept parameter\\(s\\) bbox"):
        tables.get(ref, parameters={"bbox": (0, 0, 1, 1)})


def make_image_hdu(n_x: int = 40, n_y: int = 30) -> fits.PrimaryHDU:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.0, 2.0]
    wcs.wcs.crpix = [n_x / 2, n_y / 2]
    wcs.wcs.cdelt = [-0.2 / 3600, 0.2 / 3600]
    header = wcs.to_header()
    header["EXPTIME"] = 30.0
    header["FILTER"] = "r"
    data = np.arange(n_x * n_y, dtype=np.float32).reshape(n_y, n_x)
    return fits.PrimaryHDU(data=data, header=header)


@pytest.fixture
def images(butler):
    butler.register_dataset_type("calexp", ["visit", "detector"], "Image")
    return butler


def test_image_with_header_and_wcs(images):
    hdu = make_image_hdu()
    ref = images.put(hdu, "calexp", DATA_ID)
    assert ref.artifact.path.endswith(".fits")
    whole = images.get(ref)
    np.testing.assert_array_equal(whole.data, hdu.data)
    assert whole.header["EXPTIME"] == 30.0
    header = images.get("calexp", DATA_ID, component="header")
    assert header["FILTER"] == "r" and header["NAXIS1"] == 40
    wcs = images.get(ref, component="wcs")
    assert np.allclose(wcs.wcs.crval, [150.0, 2.0])
    np.testing.assert_array_equal(images.get(ref, component="data"), hdu.data)


def test_image_pixel_box(images):
    hdu = make_image_hdu()
    ref = images.put(hdu, "calexp", DATA_ID)
    box = images.get(ref, parameters={"bbox": (5, 10, 25, 20)})  # x_min, y_min, x_max, y_max; half-open
    assert box.data.shape == (10, 20)
    np.testing.assert_array_equal(box.data, hdu.data[10:20, 5:25])
    # the cut-out's WCS still maps its pixels to the same sky positions
    full_wcs = images.get(ref, component="wcs")
    box_wcs = images.get(ref, component="wcs", parameters={"bbox": (5, 10, 25, 20)})
    np.testing.assert_allclose(box_wcs.pixel_to_world_values(0, 0), full_wcs.pixel_to_world_values(5, 10))
    with pytest.raises(FormatterError, match="outside the 40x30 image"):
        images.get(ref, parameters={"bbox": (0, 0, 41, 10)})
    with pytest.raises(StorageClassError, match="Image has no component 'schema'"):
        images.get(ref, component="schema")


def test_image_from_a_bare_array(images):
    data = np.ones((8, 6), dtype=np.int16)
    ref = images.put(data, "calexp", DATA_ID)
    back = images.get(ref)
    np.testing.assert_array_equal(back.data, data)
    assert back.data.dtype == np.int16
    with pytest.raises(StorageClassError, match="need 2"):
        images.put(np.ones((2, 2, 2)), "calexp", {**DATA_ID, "detector": 3})


# -- writing many, reading by ref and by data ID ------------------------------------


def test_put_many_and_get_by_ref_and_by_data_id(butler):
    refs = butler.put_many("metrics", [({"d": d}, {**DATA_ID, "detector": d}) for d in range(4)])
    assert [r.data_id["detector"] for r in refs] == [0, 1, 2, 3]
    assert all(r.run == "run/a" and r.data_id.has_full for r in refs)
    assert butler.put_many("metrics", []) == []
    for ref in refs:
        d = ref.data_id["detector"]
        assert butler.get(ref) == {"d": d}
        assert butler.get("metrics", instrument="Cam", visit=1, detector=d) == {"d": d}
        assert butler.get("metrics", {"instrument": "Cam", "visit": 1}, detector=np.int64(d)) == {"d": d}
    # a ref without its artifact record (e.g. from another client) is resolved
    bare = refs[0].with_artifact(None)
    assert butler.get(bare) == {"d": 0} and butler.exists(bare)
    # the single-instrument default and a butler-level default data ID
    assert butler.get("metrics", visit=1, detector=3) == {"d": 3}
    with Butler(butler.root, collections="run/a", data_id={"instrument": "Cam", "visit": 1}) as b2:
        assert b2.get("metrics", detector=2) == {"d": 2}
        assert b2.find_dataset("metrics", detector=2) == refs[2]


def test_refs_from_a_query_are_read_without_a_lookup_each_nor_retention(butler, monkeypatch):
    """A query's refs carry what a read needs: their batch's artifact records are looked up in
    one statement when the first is read, and an ordinary stored dataset never reaches the
    retention machinery."""
    import pickle

    from skybutler import Butler as ButlerClass

    refs = butler.put_many("metrics", [({"d": d}, {**DATA_ID, "detector": d}) for d in range(4)])
    lookups = []
    rows = butler.registry.datasets.artifact_rows
    monkeypatch.setattr(butler.registry.datasets, "artifact_rows", lambda ids: lookups.append(len(ids)) or rows(ids))
    queried = list(butler.query_datasets("metrics", collections="run/a"))
    pickled = pickle.loads(pickle.dumps(queried[1]))  # before any look-up: no artifact, still readable
    assert lookups == []

    def no_single_lookups(ids):
        raise AssertionError("a query's ref was looked up on its own")

    if butler.datastore.local:
        # Files written before the query: taken as the records' own without asking the registry
        # (the margin for coarse file clocks is what makes fresh files ask; see the stale-ref test).
        monkeypatch.setattr(reading_module, "RECORD_CLOCK_MARGIN_NS", 0)
        monkeypatch.setattr(butler.registry.datasets, "artifacts", no_single_lookups)
    monkeypatch.setattr(ButlerClass, "retention", property(lambda self: pytest.fail("a get reached retention")))
    assert {r.data_id["detector"]: butler.get(r) for r in queried} == {d: {"d": d} for d in range(4)}
    # An object store's file times are not trusted: each read there confirms its record by ID.
    assert lookups == [4] if butler.datastore.local else lookups == [4, 1, 1, 1, 1]
    assert [r.artifact for r in sorted(queried, key=lambda r: r.data_id["detector"])] == [r.artifact for r in refs]
    assert pickle.loads(pickle.dumps(queried[1])).artifact == queried[1].artifact  # known now: it travels
    monkeypatch.undo()
    assert pickled.artifact is None and butler.get(pickled) == butler.get(queried[1])


@pytest.mark.parametrize("how", ["find_dataset", "put", "query"])
def test_a_ref_held_across_a_removal_never_reads_the_file_written_there_since(butler, how):
    """A ref keeps the location it was given; once its dataset is removed and another one takes
    the same path, a get of the old ref must not return the newcomer's content."""
    put = butler.put({"old": 1}, "metrics", DATA_ID)
    ref = {"put": put, "find_dataset": butler.find_dataset("metrics", DATA_ID, collections="run/a"),
           "query": next(iter(butler.query_datasets("metrics", collections="run/a")))}[how]
    assert ref.artifact is not None and ref.id == put.id
    butler.remove([ref])
    newer = butler.put({"new": 2}, "metrics", DATA_ID)
    assert newer.artifact.path == put.artifact.path and newer.id != ref.id
    with pytest.raises(DatasetNotFoundError):
        butler.get(ref)
    assert not butler.exists(ref)
    with pytest.raises(DatasetNotFoundError):
        butler.get_uri(ref)
    assert butler.get(newer) == {"new": 2}


def test_find_exists_and_get_uri(butler):
    ref = butler.put({"a": 1}, "metrics", DATA_ID)
    assert butler.find_dataset("metrics", DATA_ID) == ref
    assert butler.find_dataset("metrics", {**DATA_ID, "detector": 3}) is None
    assert butler.exists(ref) and butler.exists("metrics", DATA_ID)
    assert not butler.exists("metrics", {**DATA_ID, "detector": 3})
    uri = butler.get_uri("metrics", DATA_ID)
    assert uri == butler.get_uri(ref) and uri.startswith(("file://", "s3://"))
    assert uri.endswith("metrics_Cam_1_2.json")
    with pytest.raises(DatasetNotFoundError, match="no metrics dataset with data ID .*'detector': 3"):
        butler.get("metrics", {**DATA_ID, "detector": 3})
    with pytest.raises(DatasetNotFoundError):
        butler.get_uri("metrics", {**DATA_ID, "detector": 3})


def test_find_a_calibration_by_observation_time(butler):
    butler.register_dataset_type("bias", ["detector"], "Dict", is_calibration=True)
    visit = butler.get_record("visit", instrument="Cam", visit=3)
    night = butler.get_record("day_obs", instrument="Cam", day_obs=20250101)["timespan"]
    old = butler.put({"v": "old"}, "bias", instrument="Cam", detector=1, run="calib/1")
    new = butler.put({"v": "new"}, "bias", instrument="Cam", detector=1, run="calib/2")
    butler.collections.certify("Cam/calib", [old], None, visit["timespan"].begin)
    butler.collections.certify("Cam/calib", [new], visit["timespan"].begin, None)
    butler.collections.register("run/a")
    butler.collections.set_chain("Cam/defaults", ["run/a", "Cam/calib"])
    found = butler.find_dataset("bias", instrument="Cam", detector=1, collections="Cam/defaults",
                                timespan=visit["timespan"])
    assert found == new
    assert butler.get("bias", instrument="Cam", detector=1, collections="Cam/defaults",
                      timespan=visit["timespan"]) == {"v": "new"}
    early = Timespan(night.begin, night.begin)
    assert butler.get("bias", detector=1, collections="Cam/defaults", timespan=early) == {"v": "old"}


# -- removal --------------------------------------------------------------------------


def test_remove_and_remove_runs(butler):
    a = butler.put_many("metrics", [({"d": d}, {**DATA_ID, "detector": d}) for d in range(3)])
    b = butler.put({"b": 1}, "metrics", DATA_ID, run="run/b")
    assert butler.remove([a[0]]) == 1
    assert not butler.exists(a[0]) and butler.exists(a[1])
    with pytest.raises(DatasetNotFoundError):
        butler.get(a[0].with_artifact(None))
    with pytest.raises(LookupError):  # a ref still carrying its artifact record finds no file
        butler.get(a[0])
    assert_consistent(butler)
    assert butler.remove_runs(["run/a"]) == 2
    assert not butler.collections.exists("run/a")
    assert stored_files(butler) == {b.artifact.path}
    assert butler.get(b) == {"b": 1}
    # the RUN can be made again by a put
    butler.put({"again": 1}, "metrics", DATA_ID)
    assert butler.get("metrics", DATA_ID) == {"again": 1}
    assert_consistent(butler)


def test_remove_runs_refusals_change_nothing(butler):
    butler.put({"a": 1}, "metrics", DATA_ID)
    butler.collections.register("tag", "tagged")
    with pytest.raises(SkybutlerError, match="'tag' is a TAGGED collection, not a RUN"):
        butler.remove_runs(["tag"])
    butler.collections.set_chain("chain", ["run/a"])
    before = stored_files(butler)
    with pytest.raises(CollectionError, match="in chain\\(s\\) chain"):
        butler.remove_runs(["run/a"])
    assert stored_files(butler) == before
    assert butler.get("metrics", DATA_ID) == {"a": 1}
    assert n_datasets(butler) == 1


# -- failure paths --------------------------------------------------------------------


@pytest.mark.parametrize("data_id, error, message", [
    ({**DATA_ID, "filter": "r"}, UnknownDimensionError, "'filter' is not a dimension"),
    ({**DATA_ID, "tract": 1}, UnknownDimensionError, "'tract' is not a dimension of"),
    ({**DATA_ID, "visit": "1"}, DataIdError, "visit must be an integer"),
    ({**DATA_ID, "detector": 2.0}, DataIdError, "detector must be an integer"),
    ({"instrument": "Cam", "visit": 1}, DataIdError, "missing required dimension\\(s\\) detector"),
    ({**DATA_ID, "visit": 99}, DataIdError, "no visit record"),
    ({**DATA_ID, "band": "r"}, DataIdError, "band='r' was given"),
])
def test_bad_data_ids_are_refused_and_store_nothing(butler, data_id, error, message):
    with pytest.raises(error, match=message):
        butler.put({"a": 1}, "metrics", data_id)
    assert stored_files(butler) == set()
    assert butler.collections.query() == []  # not even the RUN was created
    butler.collections.register("run/a")
    if "no visit record" in message:  # a well-formed data ID that matches nothing
        assert butler.find_dataset("metrics", data_id) is None
    else:
        with pytest.raises(error):
            butler.find_dataset("metrics", data_id)


def test_unknown_dataset_type(butler):
    with pytest.raises(MissingDatasetTypeError, match="'calexp' is not registered"):
        butler.put({"a": 1}, "calexp", DATA_ID)
    with pytest.raises(MissingDatasetTypeError):
        butler.get("calexp", DATA_ID)
    assert stored_files(butler) == set()


@pytest.mark.parametrize("obj, message", [
    (sample_frame(), "cannot hold an object of type pandas.*DataFrame"),
    ({1: "a"}, "key 1 at top level is not a string"),
    ({"a": object()}, "value at a has type object"),
    ({"a": np.float64(1.0), "b": np.arange(3)}, "value at b has type ndarray"),
])
def test_storage_class_mismatch(butler, obj, message):
    with pytest.raises(StorageClassError, match=message):
        butler.put(obj, "metrics", DATA_ID)
    assert stored_files(butler) == set()
    assert butler.collections.query() == []


def test_duplicate_dataset_in_a_run(butler):
    first = butler.put({"first": 1}, "metrics", DATA_ID)
    with pytest.raises(DatasetConflictError, match="already exists in RUN 'run/a'"):
        butler.put({"second": 2}, "metrics", DATA_ID)
    with pytest.raises(DatasetConflictError, match="twice"):
        butler.put_many("metrics", [({"x": 1}, {**DATA_ID, "detector": 3}), ({"x": 2}, {**DATA_ID, "detector": 3})])
    assert butler.get("metrics", DATA_ID) == {"first": 1}
    assert butler.datastore.read(first.artifact, check=True) == {"first": 1}
    assert stored_files(butler) == {first.artifact.path}
    assert n_datasets(butler) == 1
    # the same data ID in another RUN is fine
    butler.put({"other": 1}, "metrics", DATA_ID, run="run/b")
    assert_consistent(butler)


def test_writing_and_reading_need_a_run_and_collections(make_butler):
    from conftest import populate

    b = make_butler()
    populate(b)
    b.register_dataset_type("metrics", ["visit", "detector"], "Dict")
    with pytest.raises(SkybutlerError, match="no RUN collection given"):
        b.put({"a": 1}, "metrics", DATA_ID)
    ref = b.put({"a": 1}, "metrics", DATA_ID, run="r")
    with pytest.raises(SkybutlerError, match="no collections to search"):
        b.get("metrics", DATA_ID)
    assert b.get("metrics", DATA_ID, collections="r") == {"a": 1} == b.get(ref)
    b.collections.register("tag", "tagged")
    with pytest.raises(CollectionError, match="'tag' exists with type TAGGED, not RUN"):
        b.put({"a": 1}, "metrics", DATA_ID, run="tag")
    with pytest.raises(SkybutlerError, match="already exists"):
        Butler.create(b.root)
    with pytest.raises(SkybutlerError, match="not a skybutler repository"):
        Butler(b.root / "nowhere")
