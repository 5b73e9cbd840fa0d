"""The registry through the Butler's Python API: dimension records, dataset types,
dataset IDs, and finding datasets through a search path; failed operations change nothing.
Collections (chains, TAGGED, CALIBRATION) are in test_collections.py."""

from __future__ import annotations

import pickle
import uuid

import pytest
from pydantic import TypeAdapter

from skybutler.errors import (
    ConflictingDefinitionError,
    DataIdError,
    DatasetConflictError,
    DimensionRecordError,
    MissingCollectionError,
    MissingDatasetTypeError,
    StorageClassError,
    UnknownDimensionError,
)
from skybutler.models import DatasetRef, deterministic_dataset_id, uuid7, uuid7_batch, uuid7_hex_batch

# -- dimension records ------------------------------------------------------------


def test_insert_records_and_read_them_back(butler):
    rec = butler.get_record("visit", instrument="Cam", visit=2)
    assert rec["physical_filter"] == "Cam-r" and rec["exposure_time"] == 30.0
    assert rec["timespan"].begin.tai.isot.startswith("2025-01-02T00:02:00")
    assert rec["region"] is not None
    assert butler.get_record("detector", instrument="Cam", id=3)["full_name"] == "R00_S03"
    assert butler.get_record("visit", instrument="Cam", visit=99) is None
    assert len(butler.registry.dimensions.fetch_all("visit")) == 6


def test_duplicate_records_are_refused_unless_skipped(butler):
    with pytest.raises(DimensionRecordError, match="already exist.*'detector': 1"):
        butler.insert_records("detector", [{"instrument": "Cam", "id": 9}, {"instrument": "Cam", "id": 1}])
    # the batch is all or nothing: detector 9 was not inserted either
    assert butler.get_record("detector", instrument="Cam", detector=9) is None
    assert butler.insert_records("detector", [{"instrument": "Cam", "id": 9}, {"instrument": "Cam", "id": 1}],
                                 skip_existing=True) == 1
    assert butler.get_record("detector", instrument="Cam", detector=9) is not None
    assert butler.insert_records("detector", [], skip_existing=True) == 0


def test_records_need_their_dependencies(butler):
    with pytest.raises(DimensionRecordError, match="no record for instrument {'instrument': 'Nope'}"):
        butler.insert_records("detector", [{"instrument": "Nope", "id": 1}])
    with pytest.raises(DimensionRecordError, match="physical_filter"):
        butler.insert_records("visit", [{"instrument": "Cam", "id": 50, "physical_filter": "Cam-z",
                                         "day_obs": 20250101}])
    assert butler.get_record("visit", instrument="Cam", visit=50) is None


def test_sync_is_idempotent_and_names_conflicting_fields(butler):
    rec = {"instrument": "Cam", "id": 7, "full_name": "R01_S07", "purpose": "SCIENCE"}
    assert butler.sync_record("detector", rec) is True
    assert butler.sync_record("detector", rec) is False
    assert butler.sync_record("detector", {**rec, "detector": rec["id"]} | {}) is False
    with pytest.raises(DimensionRecordError, match="different full_name, purpose.*'R01_S07'.*'R09_S07'"):
        butler.sync_record("detector", {**rec, "full_name": "R09_S07", "purpose": "WAVEFRONT"})
    assert butler.get_record("detector", instrument="Cam", detector=7)["full_name"] == "R01_S07"
    assert butler.sync_record("detector", {**rec, "full_name": "R09_S07"}, update=True) is True
    assert butler.get_record("detector", instrument="Cam", detector=7)["full_name"] == "R09_S07"


def test_sync_of_a_spatial_record_with_a_float_field(butler):
    rec = dict(butler.get_record("visit", instrument="Cam", visit=1))
    assert butler.sync_record("visit", rec) is False
    with pytest.raises(DimensionRecordError, match="exposure_time"):
        butler.sync_record("visit", {**rec, "exposure_time": 31.0})


def _overlap_pixels(butler, element):
    """Sky pixels stored for each record of ``element``: identity tuple -> set of pixel indices."""
    import sqlalchemy as sa

    table = butler.registry.schema.skypix_overlaps[element]
    identity = [c for c in table.columns.keys() if not c.startswith("skypix_")]
    out: dict[tuple, set[int]] = {}
    with butler.registry.db.transaction() as conn:
        for row in conn.execute(sa.select(table)).mappings():
            out.setdefault(tuple(row[c] for c in identity), set()).add(row["skypix_index"])
    return out


def _detector_regions(n_visits=6, n_detectors=4, size=0.6):
    from conftest import visit_pointing
    from skybutler.dimensions import regions

    return [{"instrument": "Cam", "visit": v, "detector": d,
             "region": regions.rectangle(visit_pointing(v)[0] + (d - 1.5) * size, visit_pointing(v)[1], size, size)}
            for v in range(1, n_visits + 1) for d in range(n_detectors)]


def test_spatial_records_index_the_sky_pixels_they_touch(butler):
    """Each region's stored HTM pixels (the coarse spatial index) hold every pixel of a grid of
    points inside it (located one by one, not through an envelope), and only pixels that touch it."""
    import lsst.sphgeom as sphgeom

    rows = _detector_regions()
    assert butler.insert_records("visit_detector_region", rows) == len(rows)
    stored = _overlap_pixels(butler, "visit_detector_region")
    assert len(stored) == len(rows)
    pixelization = sphgeom.HtmPixelization(7)
    for row in rows:
        pixels = stored[("Cam", row["visit"], row["detector"])]
        region = row["region"]
        corners = [sphgeom.LonLat(v) for v in region.getVertices()]
        lons = [c.getLon().asDegrees() for c in corners]
        lats = [c.getLat().asDegrees() for c in corners]
        inside = [sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(lon, lat))
                  for i in range(1, 20) for j in range(1, 20)
                  for lon in [min(lons) + (max(lons) - min(lons)) * i / 20]
                  for lat in [min(lats) + (max(lats) - min(lats)) * j / 20]]
        inside = [p for p in inside if region.contains(p)]
        assert len(inside) > 100
        assert {pixelization.index(p) for p in inside} <= pixels
        assert all(not pixelization.pixel(p).relate(region) & sphgeom.DISJOINT for p in pixels)


@pytest.mark.parametrize("bad", [{"region": "not a region"}, {"detector": "3"}, {"nope": 1}])
def test_a_bad_spatial_record_refuses_the_whole_call(butler, bad):
    rows = _detector_regions()
    rows[-2] = {**rows[-2], **bad}
    with pytest.raises((DimensionRecordError, DataIdError)):
        butler.insert_records("visit_detector_region", rows)
    assert butler.registry.dimensions.fetch_all("visit_detector_region") == []
    assert _overlap_pixels(butler, "visit_detector_region") == {}


def test_a_duplicate_spatial_record_leaves_no_sky_pixels_behind(butler):
    rows = _detector_regions()
    butler.insert_records("visit_detector_region", rows[:3])
    before = _overlap_pixels(butler, "visit_detector_region")
    with pytest.raises(DimensionRecordError, match="already exist"):
        butler.insert_records("visit_detector_region", rows)
    assert len(butler.registry.dimensions.fetch_all("visit_detector_region")) == 3
    assert _overlap_pixels(butler, "visit_detector_region") == before


# -- dataset types ----------------------------------------------------------------


def test_dataset_type_registration(butler):
    assert butler.register_dataset_type("src", ["visit", "detector"], "Table") is True
    # dimensions are normalised to the group's required ones: the same definition
    assert butler.register_dataset_type("src", ["instrument", "detector", "visit"], "Table") is False
    assert butler.get_dataset_type("src").dimensions == ("instrument", "visit", "detector")
    with pytest.raises(ConflictingDefinitionError, match="'src' is registered as \\(instrument, visit, detector\\) "
                                                         "Table; cannot register it again as .*Dict"):
        butler.register_dataset_type("src", ["visit", "detector"], "Dict")
    with pytest.raises(ConflictingDefinitionError, match="calibration"):
        butler.register_dataset_type("src", ["visit", "detector"], "Table", is_calibration=True)
    with pytest.raises(ConflictingDefinitionError):
        butler.register_dataset_type("src", ["visit"], "Table")
    assert butler.get_dataset_type("src").storage_class == "Table"
    assert [d.name for d in butler.query_dataset_types()] == ["metrics", "src"]
    assert [d.name for d in butler.query_dataset_types("s*")] == ["src"]


def test_dataset_type_failures_register_nothing(butler):
    before = butler.query_dataset_types()
    with pytest.raises(StorageClassError, match="Unknown storage class 'Nope'"):
        butler.register_dataset_type("x", ["visit"], "Nope")
    with pytest.raises(UnknownDimensionError, match="visitt"):
        butler.register_dataset_type("x", ["visitt"], "Dict")
    with pytest.raises(MissingDatasetTypeError, match="'x' is not registered \\(known: metrics\\)"):
        butler.get_dataset_type("x")
    assert butler.query_dataset_types() == before


def test_dataset_types_are_seen_by_another_client(butler):
    from skybutler import Butler

    butler.register_dataset_type("bias", ["detector"], "Dict", is_calibration=True)
    with Butler(butler.root) as other:
        assert other.get_dataset_type("bias").is_calibration
        assert other.get_dataset_type("bias").dimensions == ("instrument", "detector")


# -- dataset IDs ------------------------------------------------------------------


def test_random_ids_are_uuid7(butler):
    refs = butler.put_many("metrics", [({"i": d}, {"instrument": "Cam", "visit": 1, "detector": d})
                                       for d in range(4)])
    assert all(r.id.version == 7 and r.id.variant == uuid.RFC_4122 for r in refs)
    assert len({r.id for r in refs}) == 4
    # time-ordered: the first 48 bits are the creation time in ms
    import time

    now_ms = time.time_ns() // 1_000_000
    assert all(abs((r.id.int >> 80) - now_ms) < 60_000 for r in refs)


def test_uuid7_batches_are_distinct_and_never_older_than_earlier_ones():
    batch = uuid7_batch(2000)
    assert len(set(batch)) == 2000
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 for u in batch)
    later = uuid7()
    assert all(later.int >> 80 >= u.int >> 80 for u in batch)
    assert batch == sorted(batch)  # in order: a bulk insert appends each index entry


def test_uuid7_hex_batches_come_in_increasing_order():
    hexes = uuid7_hex_batch(3000)
    assert hexes == sorted(hexes) and len(set(hexes)) == 3000


def test_uuid7_hex_batches_are_version_7_uuids_of_this_millisecond():
    import time

    before = time.time_ns() // 1_000_000
    batch = [uuid.UUID(h) for h in uuid7_hex_batch(5000)]
    after = time.time_ns() // 1_000_000
    assert len(set(batch)) == 5000 and all(len(h) == 32 for h in uuid7_hex_batch(3))
    assert all(u.version == 7 and u.variant == uuid.RFC_4122 and before <= u.int >> 80 <= after for u in batch)
    assert len({u.int & ((1 << 62) - 1) for u in batch}) == 5000  # the random bits differ


def test_refs_cross_a_pydantic_boundary_and_stay_immutable(butler):
    ref = butler.put({"a": 1}, "metrics", instrument="Cam", visit=1, detector=0)
    assert ref.artifact is not None
    adapter = TypeAdapter(DatasetRef)
    dumped = adapter.dump_python(ref, mode="json")
    assert dumped == {"id": str(ref.id), "dataset_type": ref.dataset_type.to_dict(),
                      "data_id": ref.data_id.as_dict(), "run": ref.run}  # the artifact stays behind
    again = adapter.validate_json(adapter.dump_json(ref))
    assert again == ref and hash(again) == hash(ref) and again.data_id == ref.data_id and again.run == ref.run
    assert again.artifact is None and adapter.validate_python(ref) is ref
    assert pickle.loads(pickle.dumps(ref)).artifact == ref.artifact
    moved = ref.with_artifact(None)
    assert moved.artifact is None and moved == ref and ref.artifact is not None
    with pytest.raises(AttributeError):
        ref.run = "elsewhere"
    with pytest.raises(Exception, match="run"):
        adapter.validate_python({"id": str(ref.id), "dataset_type": dumped["dataset_type"], "data_id": {}})


def test_deterministic_ids_are_the_same_across_runs_and_repositories(make_butler):
    from conftest import populate

    ids = []
    for name, run in (("site1", "raw/a"), ("site2", "raw/b")):
        b = make_butler(name)
        populate(b)
        b.register_dataset_type("raw", ["visit", "detector"], "Dict")
        ref = b.put({"x": 1}, "raw", instrument="Cam", visit=3, detector=1, run=run, id_mode="deterministic")
        assert ref.id.version == 5
        ids.append(ref.id)
        other = b.put({"x": 1}, "raw", instrument="Cam", visit=3, detector=2, run=run, id_mode="deterministic")
        assert other.id != ref.id
    assert ids[0] == ids[1]
    # the ID depends on the type and the required data-ID values only, not on the RUN
    assert ids[0] == deterministic_dataset_id("raw", ref.data_id)
    # in one repository, the same raw cannot be registered again in another RUN
    with pytest.raises(DatasetConflictError, match=str(ids[1])):
        b.put({"x": 1}, "raw", instrument="Cam", visit=3, detector=1, run="raw/c", id_mode="deterministic")
    assert not b.collections.exists("raw/c")


def test_unknown_id_mode_is_refused(butler):
    from skybutler.errors import SkybutlerError

    with pytest.raises(SkybutlerError, match="unknown id_mode 'sequential'"):
        butler.put({}, "metrics", instrument="Cam", visit=1, detector=1, id_mode="sequential")
    assert butler.collections.query() == []


# -- finding through a search path -------------------------------------------------


def put_metric(butler, value, run, visit=1, detector=1):
    return butler.put({"v": value}, "metrics", instrument="Cam", visit=visit, detector=detector, run=run)


def test_find_through_an_ordered_search_path(butler):
    a = put_metric(butler, "a", "run/a")
    b = put_metric(butler, "b", "run/b")
    only_a = put_metric(butler, "a2", "run/a", detector=2)
    find = butler.find_dataset
    assert find("metrics", instrument="Cam", visit=1, detector=1, collections=["run/b", "run/a"]) == b
    assert find("metrics", instrument="Cam", visit=1, detector=1, collections=["run/a", "run/b"]) == a
    assert find("metrics", instrument="Cam", visit=1, detector=2, collections=["run/b", "run/a"]) == only_a
    assert find("metrics", instrument="Cam", visit=1, detector=3, collections=["run/b", "run/a"]) is None
    butler.collections.set_chain("best", ["run/b", "run/a"])
    found = find("metrics", instrument="Cam", visit=1, detector=1, collections="best")
    assert found == b and found.run == "run/b" and found.artifact is not None
    assert butler.get("metrics", instrument="Cam", visit=1, detector=1, collections="best") == {"v": "b"}
    butler.collections.set_chain("best", ["run/a", "run/b"])
    assert butler.get("metrics", instrument="Cam", visit=1, detector=1, collections="best") == {"v": "a"}
    # an implied value given in the data ID is checked
    assert find("metrics", instrument="Cam", visit=1, detector=1, band="g", collections="best") == a
    with pytest.raises(MissingCollectionError):
        find("metrics", instrument="Cam", visit=1, detector=1, collections=["nope"])




def test_planner_statistics_follow_the_growth_of_queried_tables(make_butler, stack):
    """The planner's statistics are made once a client has inserted STATS_MIN_ROWS rows into a
    queried table, and refreshed each time the table doubles, so a small repository gets the
    plans a large analysed one gets (a join through visits, not a scan of datasets).  On
    PostgreSQL too: its autovacuum analyses a loaded table only up to a minute later (switched
    off here for the tables watched, so that only the client analyses them)."""
    from conftest import populate
    from skybutler.registry.database import STATS_MIN_ROWS

    butler = make_butler(run="run/a", collections=["run/a"])
    populate(butler, n_visits=40, n_detectors=30)
    butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    dtype = butler.get_dataset_type("metrics")
    tags = butler.registry.schema.tags_table(butler.universe.group(dtype.dimensions)).name

    def described() -> dict[str, int]:
        with butler.registry.db.reading() as conn:
            if stack != "sqlite":  # reltuples: -1 for a table never analysed
                return {t: int(n) for t, n in conn.exec_driver_sql(
                    "SELECT relname, reltuples FROM pg_class WHERE relnamespace = "
                    "(SELECT oid FROM pg_namespace WHERE nspname = current_schema()) AND reltuples >= 0")}
            if conn.exec_driver_sql("SELECT 1 FROM sqlite_master WHERE name = 'sqlite_stat1'").first() is None:
                return {}
            return {t: int(s.split()[0]) for t, s in conn.exec_driver_sql("SELECT tbl, stat FROM sqlite_stat1")}

    def insert(run: str, visits: range) -> None:
        butler.collections.register(run, "run")
        butler.registry.datasets.insert_bulk(dtype, run, [("Cam", v, d) for v in visits for d in range(30)])

    if stack != "sqlite":
        with butler.registry.db.transaction() as conn:
            for table in (tags, "visit"):
                conn.exec_driver_sql(f'ALTER TABLE "{table}" SET (autovacuum_enabled = false)')
    insert("run/small", range(1, 11))  # 300 rows: too few to analyse
    assert tags not in described()
    insert("run/b", range(1, 41))  # 1,500 inserted by this client
    assert 300 + 1200 >= STATS_MIN_ROWS
    stats = described()
    assert stats[tags] == 1500 and stats["visit"] == 40  # the visits grew as much: analysed with it
    insert("run/c", range(1, 31))  # 900 more: not yet double
    assert described()[tags] == 1500
    insert("run/d", range(1, 21))  # 1,500 since: doubled
    assert described()[tags] == 3000
    refs = butler.query_datasets("metrics", collections="run/b", where="band = 'r'")
    assert refs.count() == len(list(refs)) == 30 * len([v for v in range(1, 41) if (v - 1) % 3 == 1])


def test_the_implied_values_cache_stays_bounded(butler, monkeypatch):
    """A long-running process expands data IDs of ever more records: the cache of their implied
    values is emptied past its limit (and refilled), and every expansion stays right."""
    from skybutler.dimensions import DataCoordinate
    from skybutler.registry import dimension_store

    monkeypatch.setattr(dimension_store, "_IMPLIED_LIMIT", 4, raising=False)
    visits = range(100, 140)
    butler.insert_records("visit", [{"instrument": "Cam", "id": v, "physical_filter": f"Cam-{'gri'[v % 3]}",
                                     "day_obs": 20250101} for v in visits])
    store = butler.registry.dimensions
    group = butler.universe.group(["visit", "detector"])

    def data_id(visit: int, detector: int) -> DataCoordinate:
        values = {"instrument": "Cam", "visit": visit, "detector": detector}
        return DataCoordinate.from_required(group, tuple(values[d] for d in group.required))

    def cached() -> int:
        return sum(map(len, store._implied_cache.values()))

    for v in visits:
        assert store.expand(data_id(v, 0))["band"] == "gri"[v % 3]
        assert cached() <= 4 + 3  # the limit, and one data ID's records
    batch = [data_id(v, d) for v in visits for d in range(2)]
    assert [d["band"] for d in store.expand_many(batch)] == ["gri"[v % 3] for v in visits for _ in range(2)]
    store.expand_many(batch[:2])  # the next batch starts by emptying what the last one left
    assert cached() <= 4 + 3


# -- stores made on first use -------------------------------------------------


def test_stores_a_command_may_not_use_are_made_on_first_use_and_once(make_butler, monkeypatch):
    """Opening a repository makes no store of dataset states, extracted facts, user tables,
    catalog schemas or access rights, nor declares their tables (a command listing collections
    does not pay for them); the first use makes each one once, even when threads ask at once;
    a failed transaction resets the caches of those made."""
    from concurrent.futures import ThreadPoolExecutor

    from skybutler import Butler

    root = make_butler().root
    with Butler(root) as butler:
        registry = butler.registry
        on_demand = {"metadata", "states", "user_tables", "catalog_schemas", "access"}
        assert not on_demand & set(vars(registry))
        declared = {t.name for t in registry.schema.metadata.tables.values()}
        assert not {"dataset_state", "dataset_metric", "catalog_schema"} & declared
        with ThreadPoolExecutor(8) as pool:
            made = list(pool.map(lambda _: registry.states, range(64)))
        assert all(store is made[0] for store in made) and "dataset_state" in {
            t.name for t in registry.schema.metadata.tables.values()}
        refreshed = []
        monkeypatch.setattr(registry.user_tables, "refresh", lambda: refreshed.append("user_tables"))
        with pytest.raises(RuntimeError), registry.transaction():
            raise RuntimeError("rolled back")
        assert refreshed == ["user_tables"] and "metadata" not in vars(registry)
