"""Queries against small real repositories: data IDs, datasets and records under where-clauses,
find-first through chains, calibrations by time, spatial overlaps checked against a
brute-force lsst.sphgeom test, dataset metadata, result forms,
explanations and errors with their column (the join rule is in test_query_joins.py, metrics
and user tables in test_query_user_columns.py, seek hints and keyset pages in test_query_seek.py,
the query commands in test_cli_queries.py).

Most tests read one module-scoped repository (``repo``, :mod:`query_repository`'s), built once per
stack; the last test checks that none of the queries changed a row of it.
"""

from __future__ import annotations

import math
import random

import lsst.sphgeom as sphgeom
import pytest
import sqlalchemy as sa
from astropy.time import Time, TimeDelta

from conftest import STACKS, populate, visit_pointing
from query_repository import (
    N_DETECTORS,
    N_VISITS,
    T0,
    T1,
    T2,
    detector_region,
    pairs,
    patch_region,
    query_repository,
    refs_of,
    snapshot,
    visits,
)
from skybutler import Timespan
from skybutler.dimensions import regions
from skybutler.errors import MissingCollectionError, QueryError
from skybutler.models import DatasetRef

repo = pytest.fixture(scope="module", params=STACKS, name="repo")(query_repository)


@pytest.fixture(scope="module")
def before(repo):
    return snapshot(repo)


# -- data IDs under where-clauses ------------------------------------------------------


def test_where_on_dimensions_and_implied_dimensions(repo, before):
    assert visits(repo.query_data_ids(["visit"], where="visit > 3 AND visit <= 6")) == [4, 5, 6]
    # band comes through visit -> physical_filter; visits 2, 5, 8, 11 are r
    assert visits(repo.query_data_ids(["visit"], where="band = 'r'")) == [2, 5, 8, 11]
    assert repo.query_data_ids(["visit", "detector"], where="band = 'r'").count() == 4 * N_DETECTORS
    assert visits(repo.query_data_ids(["visit"], where="physical_filter = 'Cam-g' AND instrument = 'Cam'")) == [
        1, 4, 7, 10]
    with_band = list(repo.query_data_ids(["visit"], where="visit = 2", with_implied=True))
    assert with_band[0]["band"] == "r" and with_band[0]["physical_filter"] == "Cam-r"


def test_element_fields_ranges_in_not_null_glob(repo):
    assert visits(repo.query_data_ids(["visit"], where="visit.exposure_time < 20")) == [10]
    assert visits(repo.query_data_ids(["visit"], where="visit IN (1..12:5)")) == [1, 6, 11]
    assert visits(repo.query_data_ids(["visit"], where="visit IN (2, 4, 9..10)")) == [2, 4, 9, 10]
    assert visits(repo.query_data_ids(["visit"], where="visit NOT IN (1..10)")) == [11, 12]
    detectors = sorted(d["detector"] for d in repo.query_data_ids(["detector"], where="NOT (detector = 1 OR detector = 2)"))
    assert detectors == [0, 3]
    assert repo.query_data_ids(["visit"], where="visit.target_name = NULL").count() == N_VISITS
    assert repo.query_data_ids(["visit"], where="visit.target_name != NULL").count() == 0
    names = sorted(d["detector"] for d in repo.query_data_ids(["detector"], where="GLOB(detector.full_name, '*S01')"))
    assert names == [1]
    assert sorted(d["detector"] for d in repo.query_data_ids(["detector"], where="GLOB(detector.full_name, 'R00_S0?')")) \
        == [0, 1, 2, 3]


def test_bind_parameters(repo):
    assert visits(repo.query_data_ids(["visit"], where="visit = v", bind={"v": 5})) == [5]
    assert visits(repo.query_data_ids(["visit"], where="visit IN (vs)", bind={"vs": [1, 3, 5]})) == [1, 3, 5]
    assert visits(repo.query_data_ids(["visit"], where="visit IN (vs)", bind={"vs": range(2, 12, 4)})) == [2, 6, 10]
    assert visits(repo.query_data_ids(["visit"], where="visit IN (vs)", bind={"vs": []})) == []
    ra, dec = visit_pointing(7)
    found = repo.query_data_ids(["visit"], where="visit.region OVERLAPS r", bind={"r": regions.circle(ra, dec, 0.2)})
    assert visits(found) == [7]
    assert visits(repo.query_data_ids(["visit"], where="band = b AND visit < n", bind={"b": "i", "n": 7})) == [3, 6]


def test_time_comparisons_and_timespan_overlaps(repo):
    # visit v is [2025-01-02T00:00 + (v-1)*120 s, + 30 s) TAI (15 s for visit 10)
    instant = "visit.timespan OVERLAPS T'2025-01-02T00:02:10/tai'"
    assert visits(repo.query_data_ids(["visit"], where=instant)) == [2]
    # an ISO time without a scale is UTC: 00:01:33 UTC is 00:02:10 TAI (TAI - UTC = 37 s)
    assert visits(repo.query_data_ids(["visit"], where="visit.timespan OVERLAPS T'2025-01-02T00:01:33'")) == [2]
    assert visits(repo.query_data_ids(["visit"], where="visit.timespan OVERLAPS T'2025-01-02T00:02:10'")) == []
    interval = "visit.timespan OVERLAPS (T'2025-01-02T00:02:10/tai', T'2025-01-02T00:06:10/tai')"
    assert visits(repo.query_data_ids(["visit"], where=interval)) == [2, 3, 4]
    # half-open: a visit ending exactly at the interval's start does not overlap it
    assert visits(repo.query_data_ids(["visit"], where="visit.timespan OVERLAPS (T'2025-01-02T00:00:30/tai', "
                                                         "T'2025-01-02T00:02:00/tai')")) == []
    assert visits(repo.query_data_ids(["visit"], where="visit.timespan < T'2025-01-02T00:04:30/tai'")) == [1, 2, 3]
    assert visits(repo.query_data_ids(["visit"], where="visit.timespan > T'2025-01-02T00:18:00/tai'")) == [11, 12]
    span = Timespan(Time("2025-01-02T00:21:00", scale="tai"), Time("2025-01-02T01:00:00", scale="tai"))
    assert visits(repo.query_data_ids(["visit"], where="visit.timespan OVERLAPS s", bind={"s": span})) == [12]
    assert visits(repo.query_data_ids(["visit"], where="day_obs.timespan OVERLAPS T'2025-01-01T13:00:00/tai' "
                                                         "AND visit < 3")) == [1, 2]


# -- datasets, chains, calibrations ------------------------------------------------------


def test_find_first_through_a_chain(repo):
    first = refs_of(repo.query_datasets("metrics", collections="chain"))
    assert len(first) == 3 * N_DETECTORS
    assert (2, 0, "run/b") in first and (2, 0, "run/a") not in first
    assert (1, 0, "run/a") in first
    every = refs_of(repo.query_datasets("metrics", collections="chain", find_first=False))
    assert len(every) == 3 * N_DETECTORS + 2
    assert (2, 0, "run/a") in every and (2, 0, "run/b") in every
    # the order of the search path decides
    reversed_chain = refs_of(repo.query_datasets("metrics", collections=["run/a", "run/b"]))
    assert all(run == "run/a" for _, _, run in reversed_chain)
    assert refs_of(repo.query_datasets("metrics", collections="chain", where="visit = 3 AND detector = 0")) == [
        (3, 0, "run/b")]


def typed_refs(results) -> list[tuple[str, str, int, int, str]]:
    return sorted((r.dataset_type.name, str(r.id), r.data_id["visit"], r.data_id["detector"], r.run) for r in results)


@pytest.mark.parametrize("where, find_first", [
    ("", True), ("", False), ("visit > 1 AND detector IN (0..1)", True), ("metrics.n_keys > 3 OR visit = 3", True),
])
def test_several_dataset_types_in_one_query(repo, where, find_first):
    """One statement for several types: each type searched as if queried alone."""
    both = repo.query_datasets(["metrics", "src", "empty"], where, collections="chain", find_first=find_first)
    alone = [r for name in ("metrics", "src", "empty")
             for r in repo.query_datasets(name, where, collections="chain", find_first=find_first)]
    assert typed_refs(both) == typed_refs(alone) and both.count() == len(alone) > 0
    table = both.to_arrow()
    assert table.column_names == ["dataset_type", "dataset_id", "run", "instrument", "visit", "detector"]
    assert sorted(zip(table.column("dataset_type").to_pylist(), table.column("dataset_id").to_pylist())) == sorted(
        (r.dataset_type.name, str(r.id)) for r in alone)
    ordered = [(r.data_id["visit"], r.data_id["detector"]) for r in both.order_by("-visit", "detector").limit(3)]
    assert ordered == sorted(((r.data_id["visit"], r.data_id["detector"]) for r in alone),
                             key=lambda vd: (-vd[0], vd[1]))[:3]


def test_several_dataset_types_with_a_region_and_nothing_found(repo):
    ra, dec = visit_pointing(2)
    where = f"visit_detector_region.region OVERLAPS POINT({ra!r}, {dec!r})"
    both = repo.query_datasets(["src", "metrics", "src"], where, collections="chain")
    alone = [r for name in ("src", "metrics") for r in repo.query_datasets(name, where, collections="chain")]
    assert typed_refs(both) == typed_refs(alone) and alone
    nothing = repo.query_datasets(["empty", "metrics"], collections="run/b", where="visit > 100")
    assert list(nothing) == [] and nothing.to_arrow().num_rows == 0
    assert any("visit > 100" in reason for reason in nothing.explain())
    none_at_all = repo.query_datasets(["empty", "metrics"], collections="calib/run")
    assert list(none_at_all) == [] and none_at_all.count() == 0
    assert none_at_all.explain()[:2] == ["no empty datasets in collections ['calib/run']",
                                         "no metrics datasets in collections ['calib/run']"]


def test_several_dataset_types_must_share_dimensions(repo):
    with pytest.raises(QueryError, match=r"same dimensions; metrics: .*bias: .*one at a time"):
        repo.query_datasets(["metrics", "bias"], collections="chain")
    with pytest.raises(QueryError, match="at least one dataset type"):
        repo.query_datasets([], collections="chain")


def test_data_ids_constrained_by_datasets(repo):
    assert pairs(repo.query_data_ids(["visit", "detector"], datasets="src", collections="chain")) == [
        (1, 2), (2, 1), (3, 1)]
    assert pairs(repo.query_data_ids(["visit", "detector"], datasets=["src", "metrics"], collections="run/b")) == []


def test_calibration_lookup_by_time_at_range_boundaries(repo):
    def bias(detector, begin, end):
        ref = repo.find_dataset("bias", instrument="Cam", detector=detector, collections="calib",
                                timespan=Timespan(begin, end))
        return None if ref is None else repo.get(ref)

    second = TimeDelta(1, format="sec")
    assert bias(0, T0, T0 + second) == {"d": 0}
    assert bias(0, T1 - second, T1) == {"d": 0}           # ends exactly where the first range ends
    assert bias(0, T1, T1 + second) == {"d": 0, "v": 2}   # begins where the second begins
    assert bias(0, T0 - second, T0) is None               # ends where validity begins: half-open
    assert bias(0, T2, T2 + second) is None
    assert bias(1, T1, T1 + second) is None               # detector 1 has no second range
    listed = repo.query_datasets("bias", collections="calib", find_first=False)
    assert listed.explain() == [] and listed.count() == 3
    assert sorted((r.data_id["detector"], s.begin.isot) for r, s in listed.with_validity()) == [
        (0, T0.isot), (0, T1.isot), (1, T0.isot)]
    with pytest.raises(QueryError, match="give a timespan"):
        repo.query_datasets("bias", collections="calib")


# -- spatial ---------------------------------------------------------------------------------


def random_points(n: int, seed: int) -> list[tuple[float, float]]:
    """Points scattered around the visits' pointings (most fall in one or two regions)."""
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        ra, dec = visit_pointing(rng.randint(1, N_VISITS))
        out.append((ra + rng.uniform(-3, 3) / math.cos(math.radians(dec)), dec + rng.uniform(-2.5, 2.5)))
    return out


def contains(region: sphgeom.Region, ra: float, dec: float) -> bool:
    return region.contains(sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(ra, dec)))


def test_point_overlaps_match_a_brute_force_test(repo):
    visit_regions = {v: regions.rectangle(*visit_pointing(v), 3.5, 3.5) for v in range(1, N_VISITS + 1)}
    hits = 0
    for ra, dec in random_points(25, seed=7):
        want = sorted(v for v, r in visit_regions.items() if contains(r, ra, dec))
        assert visits(repo.query_data_ids(["visit"], where=f"visit.region OVERLAPS POINT({ra!r}, {dec!r})")) == want
        want_vd = sorted((v, d) for v in visit_regions for d in range(N_DETECTORS)
                         if contains(detector_region(v, d), ra, dec))
        where = f"visit_detector_region.region OVERLAPS POINT({ra!r}, {dec!r})"
        assert pairs(repo.query_data_ids(["visit", "detector"], where=where)) == want_vd
        hits += len(want_vd)
    assert hits > 10  # the points did land on detectors


def test_circle_overlaps_visit_detector_regions(repo):
    for ra, dec in random_points(10, seed=3):
        circle = regions.circle(ra, dec, 0.4)
        want = sorted((v, d) for v in range(1, N_VISITS + 1) for d in range(N_DETECTORS)
                      if not detector_region(v, d).relate(circle) & sphgeom.DISJOINT)
        where = f"visit_detector_region.region OVERLAPS CIRCLE({ra!r}, {dec!r}, 0.4)"
        assert pairs(repo.query_data_ids(["visit", "detector"], where=where)) == want


@pytest.mark.parametrize("extra, keep", [
    ("visit <= 3 AND detector IN (0, 1)", lambda v, d: v <= 3 and d in (0, 1)),
    ("band = 'g'", lambda v, d: "gri"[(v - 1) % 3] == "g"),
    ("visit.exposure_time > 20 OR detector = 0", lambda v, d: v % 10 != 0 or d == 0),
])
def test_a_region_query_reads_the_regions_table_for_its_keys(repo, extra, keep):
    """Visits and detectors by their regions take their keys from the regions' table (the
    records exist: foreign keys), joining the visit or detector table only for what it
    alone holds (a band, an exposure time): the same answer as a brute-force test."""
    hits = 0
    for ra, dec in [visit_pointing(v) for v in (1, 4, 8, 11)]:
        circle = regions.circle(ra, dec, 1.0)
        want = sorted((v, d) for v in range(1, N_VISITS + 1) for d in range(N_DETECTORS)
                      if not detector_region(v, d).relate(circle) & sphgeom.DISJOINT and keep(v, d))
        results = repo.query_data_ids(["visit", "detector"],
                                      where=f"visit_detector_region.region OVERLAPS CIRCLE({ra!r}, {dec!r}, 1.0) "
                                            f"AND ({extra})")
        assert pairs(results) == want and results.count() == len(want)
        statement = str(results._built.statement)
        assert " e_detector" not in statement and (" e_visit " in statement) == ("visit <=" not in extra)
        hits += len(want)
    assert hits > 1


def test_patches_overlapping_a_visit(repo):
    for visit in (3, 4):
        visit_region = regions.rectangle(*visit_pointing(visit), 3.5, 3.5)
        want = sorted(p for p in range(9) if not patch_region(p).relate(visit_region) & sphgeom.DISJOINT)
        for dims in (["patch"], ["visit", "patch"]):
            found = sorted(d["patch"] for d in repo.query_data_ids(dims, where=f"visit = {visit}"))
            assert found == want, (visit, dims)
    assert sorted(d["patch"] for d in repo.query_data_ids(["patch"], where="visit = 4")) == []
    # the visit/detector x tract join: only visit 3's detectors are in tract 0
    vd = repo.query_data_ids(["visit", "detector", "tract"], where="visit IN (3, 4)")
    assert sorted((d["visit"], d["detector"], d["tract"]) for d in vd) == [(3, d, 0) for d in range(N_DETECTORS)]
    # a multiplied spatial join still yields each patch once
    assert repo.query_data_ids(["patch"], where="visit IN (2, 3, 4)").count() == 9
    assert [d["visit"] for d in repo.query_data_ids(["visit"], where="visit_detector_region.region OVERLAPS "
                                                    f"CIRCLE({visit_pointing(3)[0]}, {visit_pointing(3)[1]}, 0.3)")] == [3]


# -- dataset metadata, metrics, user tables ----------------------------------------------------


def test_metadata_queries(repo):
    # metrics has v + d keys in run/a and 1 key in run/b (which comes first in the chain)
    found = refs_of(repo.query_datasets("metrics", where="metrics.n_keys > 3", collections="chain"))
    assert found == [(1, 3, "run/a"), (2, 2, "run/a"), (2, 3, "run/a"), (3, 1, "run/a"), (3, 2, "run/a"),
                     (3, 3, "run/a")]
    # without find-first, each dataset is judged by its own facts
    every = refs_of(repo.query_datasets("metrics", where="metrics.n_keys > 1 AND detector = 0", collections="chain",
                                        find_first=False))
    assert every == [(2, 0, "run/a"), (3, 0, "run/a")]
    # with find-first, the first-found dataset is judged (a later one never wins instead)
    assert refs_of(repo.query_datasets("metrics", where="metrics.n_keys > 1 AND detector = 0",
                                       collections="chain")) == []
    assert pairs(repo.query_data_ids(["visit", "detector"], where="src.n_rows > 100", collections="chain")) == [
        (1, 2), (2, 1), (3, 1)]
    # the walkthrough's "detectors of visits with many detections"
    assert pairs(repo.query_data_ids(["visit", "detector"], where="src.n_rows > 1000", collections="chain")) == [
        (3, 1)]
    assert repo.get_metadata(next(iter(repo.query_datasets("src", collections="chain", where="visit = 3"))))[
        "n_rows"] == 1500


def test_bulk_registered_datasets_are_queryable(make_butler):
    butler = make_butler()
    populate(butler)
    butler.register_dataset_type("m", ["instrument", "visit", "detector"], "Dict")
    butler.collections.register("bulk", "run")
    dtype = butler.get_dataset_type("m")
    values = [("Cam", v, d) for v in range(1, 7) for d in range(4)]
    assert butler.registry.datasets.insert_bulk(dtype, "bulk", iter(values), batch_size=7) == 24
    refs = list(butler.query_datasets("m", collections="bulk", where="visit < 3"))
    assert len(refs) == 8 and len({r.id for r in refs}) == 8 and all(r.id.version == 7 for r in refs)
    assert butler.registry.datasets.artifacts(r.id for r in refs) == {}
    with pytest.raises(sa.exc.IntegrityError):  # one dataset per type and data ID in a RUN: the database checks
        butler.registry.datasets.insert_bulk(dtype, "bulk", [("Cam", 1, 0)])
    assert butler.query_datasets("m", collections="bulk").count() == 24


# -- result forms -------------------------------------------------------------------------------


def test_order_limit_offset_count_any(repo):
    ordered = repo.query_data_ids(["visit", "detector"]).order_by("-visit", "detector")
    assert [(d["visit"], d["detector"]) for d in ordered.limit(3, 2)] == [(12, 2), (12, 3), (11, 0)]
    assert ordered.count() == N_VISITS * N_DETECTORS
    assert ordered.limit(5).count() == 5
    assert repo.query_data_ids(["visit"], where="visit > 100").any() is False
    assert repo.query_data_ids(["visit"], where="visit > 10").any() is True
    refs = repo.query_datasets("metrics", collections="chain").order_by("-visit", "detector").limit(3, 1)
    assert [(r.data_id["visit"], r.data_id["detector"]) for r in refs] == [(3, 1), (3, 2), (3, 3)]
    assert repo.query_datasets("metrics", collections="chain").count() == 12
    assert repo.query_datasets("metrics", collections="chain", find_first=False).count() == 14
    # limit and offset also apply after an exact region test
    spatial = repo.query_data_ids(["visit", "patch"], where="visit = 3").order_by("patch")
    assert [d["patch"] for d in spatial.limit(2, 1)] == [1, 2]
    with pytest.raises(QueryError, match="cannot order by"):
        repo.query_data_ids(["visit"]).order_by("band")


def test_tables(repo):
    table = repo.query_datasets("metrics", collections="chain").to_arrow()
    assert table.column_names == ["dataset_id", "run", "instrument", "visit", "detector"]
    refs = {str(r.id): r for r in repo.query_datasets("metrics", collections="chain")}
    for row in table.to_pylist():
        ref = refs[row["dataset_id"]]
        assert (row["run"], row["visit"], row["detector"]) == (ref.run, ref.data_id["visit"], ref.data_id["detector"])
    ids = repo.query_data_ids(["visit", "detector"], where="visit < 3").to_arrow()
    assert ids.column_names == ["instrument", "visit", "detector"] and ids.num_rows == 2 * N_DETECTORS
    records = repo.query_dimension_records("visit", where="visit < 3").to_arrow()
    assert records.num_rows == 2 and records.column("timespan_begin")[0].as_py().startswith("2025-01-02T00:0")
    assert len(records.column("region")[0].as_py()) == 4
    astropy_table = repo.query_datasets("metrics", collections="chain").to_astropy()
    assert len(astropy_table) == 12 and "dataset_id" in astropy_table.colnames
    frame = repo.query_data_ids(["visit"], where="band = 'g'").to_pandas()
    assert sorted(frame["visit"]) == [1, 4, 7, 10]
    empty = repo.query_datasets("metrics", collections="chain", where="visit > 100").to_arrow()
    assert empty.num_rows == 0 and "dataset_id" in empty.column_names


def test_refs_from_queries_are_ordinary_refs(repo):
    ref = next(iter(repo.query_datasets("metrics", collections="chain", where="visit = 1 AND detector = 2")))
    made = DatasetRef(ref.id, ref.dataset_type, ref.data_id, ref.run)
    assert ref == made and hash(ref) == hash(made) and repr(ref) == repr(made) and str(ref) == str(made)
    assert repo.get(ref) == {f"k{i}": i for i in range(3)}
    assert ref.with_artifact(None).run == "run/a"
    records = list(repo.query_dimension_records("visit", where="visit = 2"))
    assert records[0]["physical_filter"] == "Cam-r" and isinstance(records[0]["timespan"], Timespan)


def test_explain_names_the_reason(repo):
    with pytest.raises(MissingCollectionError):
        repo.query_datasets("metrics", collections="nope")
    assert repo.query_datasets("metrics", collections="chain").explain() == []
    reasons = repo.query_datasets("empty", collections="chain").explain()
    assert any("no empty datasets" in r for r in reasons)
    reasons = repo.query_datasets("metrics", collections="chain", where="visit = 1 AND detector = 9").explain()
    assert reasons == ["the where-clause term 'detector = 9' excludes every row"]
    reasons = repo.query_data_ids(["visit"], where="visit > 2 AND visit < 2").explain()
    assert reasons == ["the where-clause terms together exclude every row (each alone matches some)"]


# -- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize("where, bind, message, column", [
    ("vist = 3", {}, "unknown name 'vist'", 1),
    ("visit > 1 AND visit = 'abc'", {}, "cannot compare int with str", 23),
    ("visit = my_visit", {"other": 1}, "unknown name 'my_visit'", 9),
    ("visit = vs", {"vs": [1, 2]}, "holds several values", 9),
    ("visit.exposure_time OVERLAPS POINT(1, 2)", {}, "OVERLAPS needs two regions", None),
    ("visit.region OVERLAPS T'2025-01-01'", {}, "OVERLAPS needs two regions", None),
    ("visit.nope > 1", {}, "visit has no field 'nope'", 1),
    ("visit > ", {}, "ends too early", 8),
    ("visit.timespan = T'2025-01-01'", {}, "compared with < or >", None),
    ("visit = 1..3", {}, "only appear inside IN", 9),
    ("visit = 1 AND frobnicate(visit)", {}, "unknown function 'frobnicate'", 15),
    ("1 < visit < 3", {}, "chained comparison '1 < visit < 3'", 11),
    ("visit = :v", {}, r"bind parameter :v is not given", 9),
])
def test_errors_point_at_their_column(repo, where, bind, message, column):
    with pytest.raises(QueryError, match=message) as caught:
        repo.query_data_ids(["visit"], where=where, bind=bind)
    err = caught.value
    assert err.column is not None and err.expression == where
    if column is not None:
        assert err.column == column
    caret_line = str(err).splitlines()[-1]
    assert caret_line.index("^") - 2 == err.column - 1


def test_binds_given_but_not_used_are_named(repo):
    with pytest.raises(QueryError, match=r"bind parameters 'v', 'w' given but not named in the expression 'visit = 1'"):
        repo.query_data_ids(["visit"], where="visit = 1", bind={"v": 1, "w": 2})
    with pytest.raises(QueryError, match=r"bind parameter 'v' given but not named in the expression ''"):
        repo.query_datasets("metrics", collections="chain", bind={"v": 1})
    # an unknown name is reported first, at its column: it is likely the misspelled bind
    with pytest.raises(QueryError, match="unknown name 'vv'") as caught:
        repo.query_data_ids(["visit"], where="visit = vv", bind={"v": 1})
    assert caught.value.column == 9


# -- last: nothing above changed the shared repository --------------------------------------------


def test_queries_never_mutate_the_repository(repo, before):
    list(repo.query_datasets("metrics", collections="chain", where="metrics.n_keys > 1"))
    repo.query_data_ids(["visit", "patch"], where="visit = 3").count()
    repo.query_datasets("empty", collections="chain").explain()
    assert snapshot(repo) == before


def test_query_results_are_freed_by_reference_counting_alone(repo):
    """Data IDs and refs of a query, their implied values looked up, are freed as soon as
    they are dropped: nothing of a batch refers back to it, so no cycle waits for a full
    collection of the cyclic garbage collector (which a session of queries rarely makes,
    and which let the query benchmark's memory grow by 140 MiB)."""
    import gc
    import sys

    group = repo.query_data_ids(["visit", "detector"])._built.group

    def round_trip() -> None:
        ids = list(repo.query_data_ids(["visit", "detector"], where="visit > 1"))
        refs = list(repo.query_datasets("metrics", collections="run/a", where="visit > 1"))
        assert ids and refs and ids[0]["band"] in "gri" and refs[-1].data_id["band"] in "gri"

    gc.collect()
    gc.disable()
    try:
        round_trip()
        before = sys.getrefcount(group)
        for _ in range(3):
            round_trip()
        assert sys.getrefcount(group) == before
    finally:
        gc.enable()
