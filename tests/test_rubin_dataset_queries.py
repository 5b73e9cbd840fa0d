"""Dataset queries as Rubin butler users write them: ``order_by=`` a dataset field (its ingest
date, its RUN, its validity range) and ``with_dimension_records=True``, answered by the real
Rubin butler (lsst-daf-butler) on a repository it made and by skybutler on that repository's
import: the answers must be the same.

Ingest dates are not part of a Rubin export, so both butlers write the ``scrambled`` datasets
themselves, one put at a time in the same scrambled order; everything else is imported.
"""

from __future__ import annotations

import pytest

daf_butler = pytest.importorskip("lsst.daf.butler", reason="the Rubin butler is the oracle of these tests")

from conftest import STACKS  # noqa: E402
from rubin_repos import imported, make_rubin_export  # noqa: E402
from skybutler.errors import QueryError  # noqa: E402
from test_rubin_interchange import _our_record, _rubin_record  # noqa: E402

#: (visit, detector, run) of the ``scrambled`` datasets, in the order both butlers put them.
PUTS = [(2, 1, "Cam/late"), (1, 2, "Cam/early"), (2, 0, "Cam/early"), (1, 0, "Cam/late"), (1, 1, "Cam/early"),
        (2, 2, "Cam/late")]
RUNS = ["Cam/early", "Cam/late"]


@pytest.fixture(scope="module")
def rubin(tmp_path_factory):
    base = tmp_path_factory.mktemp("rubin_dsq")
    theirs, _ = make_rubin_export(base)
    theirs.registry.registerDatasetType(daf_butler.DatasetType(
        "scrambled", ["instrument", "visit", "detector"], "StructuredDataDict", universe=theirs.dimensions))
    for run in RUNS:
        theirs.registry.registerRun(run)
    for visit, detector, run in PUTS:
        theirs.put({"v": visit}, "scrambled", instrument="Cam", visit=visit, detector=detector, run=run)
    return {"butler": theirs, "export": base / "export"}


@pytest.fixture(scope="module", params=STACKS)
def ours(request, rubin, tmp_path_factory):
    butler = imported(rubin["export"], request.param, tmp_path_factory.mktemp(f"rubin_dsq_{request.param}"))
    butler.register_dataset_type("scrambled", ["instrument", "visit", "detector"], "Dict")
    for visit, detector, run in PUTS:
        butler.put({"v": visit}, "scrambled", instrument="Cam", visit=visit, detector=detector, run=run)
    yield butler
    butler.close()


ORDERS = [
    "ingest_date", "-ingest_date", "scrambled.ingest_date", "-scrambled.ingest_date",
    ["run", "scrambled.ingest_date"], ["-scrambled.run", "-ingest_date"], ["scrambled.run", "visit", "-detector"],
    ["band", "-scrambled.ingest_date"], ["-visit.timespan.begin", "ingest_date"],
    ["scrambled.timespan.begin", "-ingest_date"],  # every range unbounded outside CALIBRATION collections
]


@pytest.mark.parametrize("order_by", ORDERS, ids=str)
@pytest.mark.parametrize("limit", [None, 4])
def test_datasets_order_by_a_dataset_field_as_the_rubin_butler(rubin, ours, order_by, limit):
    theirs = [(r.dataId["visit"], r.dataId["detector"], r.run) for r in rubin["butler"].query_datasets(
        "scrambled", collections=RUNS, find_first=False, order_by=order_by, limit=limit)]
    mine = [(r.data_id["visit"], r.data_id["detector"], r.run) for r in ours.query_datasets(
        "scrambled", collections=RUNS, find_first=False, order_by=order_by, limit=limit)]
    assert mine == theirs and len(mine) == (limit or len(PUTS))


@pytest.mark.parametrize("order_by", [["bias.timespan.begin", "detector"], ["-bias.timespan.begin", "-detector"],
                                      ["bias.timespan.end", "-detector"], ["-bias.timespan.end", "detector"]], ids=str)
def test_certifications_order_by_their_validity_as_the_rubin_butler(rubin, ours, order_by):
    theirs = [r.id for r in rubin["butler"].query_datasets("bias", collections="Cam/calib", find_first=False,
                                                           order_by=order_by)]
    mine = [r.id for r in ours.query_datasets("bias", collections="Cam/calib", find_first=False, order_by=order_by)]
    assert mine == theirs and len(mine) == 3


def test_paging_after_an_ingest_date_is_refused_by_name(ours):
    results = ours.query_datasets("scrambled", collections=RUNS, find_first=False).order_by("-ingest_date",
                                                                                            "dataset_id")
    last = list(results.limit(2))[-1]
    with pytest.raises(QueryError, match="paging after a row is not offered in an order by ingest_date"):
        results.after([0, str(last.id)])


def test_ordering_by_the_collection_is_refused_by_name(ours):
    with pytest.raises(QueryError, match="cannot be ordered by 'scrambled.collection'.*order them by run"):
        ours.query_datasets("scrambled", collections=RUNS, find_first=False, order_by="scrambled.collection")


def _same_records(mine, theirs) -> None:
    """The same elements' records, field by field (skybutler's own fields, such as
    ``visit.observation_type``, left aside: the Rubin universe lacks them)."""
    assert set(mine.records) == {str(e) for e in theirs.records}
    for element, record in theirs.records.items():
        expected = _rubin_record(record)
        got = _our_record(str(element), mine.records[str(element)])
        assert {k: v for k, v in got.items() if k in expected} == expected, element


@pytest.mark.parametrize("dataset_type,collections,where", [
    ("summary", "Cam/run1", "instrument = 'Cam' AND detector < 2"),
    ("deepSummary", "Cam/run1", ""),
    ("bias", "Cam/defaults", "instrument = 'Cam'"),
    ("scrambled", RUNS, "instrument = 'Cam' AND band = 'g'"),
])
def test_with_dimension_records_gives_the_rubin_butlers_records(rubin, ours, dataset_type, collections, where):
    theirs = {(r.run, *sorted(r.dataId.required.items())): r.dataId for r in rubin["butler"].query_datasets(
        dataset_type, collections=collections, where=where, with_dimension_records=True, find_first=False)}
    mine = {(r.run, *sorted(r.data_id.required.items())): r.data_id for r in ours.query_datasets(
        dataset_type, collections=collections, where=where, with_dimension_records=True, find_first=False)}
    assert theirs and set(mine) == set(theirs)
    for key, data_id in mine.items():
        assert data_id.has_records() and theirs[key].hasRecords()
        _same_records(data_id, theirs[key])


def test_data_ids_with_dimension_records_and_rubin_attribute_access(rubin, ours):
    theirs = rubin["butler"].query_data_ids(["exposure", "detector"], where="instrument = 'Cam' AND detector = 1",
                                            with_dimension_records=True, order_by="exposure")
    mine = list(ours.query_data_ids(["exposure", "detector"], "instrument = 'Cam' AND detector = 1",
                                    with_dimension_records=True, order_by="exposure"))
    assert len(mine) == len(theirs) == 2
    for m, t in zip(mine, theirs):
        _same_records(m, t)
        for element, field in [("exposure", "obs_id"), ("exposure", "id"), ("exposure", "can_see_sky"),
                               ("detector", "full_name"), ("physical_filter", "band"), ("group", "name"),
                               ("instrument", "name"), ("exposure", "target_name")]:
            assert getattr(m.records[element], field) == getattr(t.records[element], field), (element, field)
        assert m.records["exposure"].timespan.to_ns() == t.records["exposure"].timespan.nsec
    with pytest.raises(AttributeError, match="a detector record has no field 'nope'"):
        mine[0].records["detector"].nope
    plain = next(iter(ours.query_data_ids(["exposure", "detector"], "detector = 1")))
    assert not plain.has_records()


# -- Rubin users' habits in a session: collections second, data IDs by alternate keys ---------------

@pytest.mark.parametrize("collections,kwargs", [
    ("Cam/run1", {"where": "instrument = 'Cam' AND visit = 2"}),
    (["Cam/best", "Cam/run1"], {}),
    ("Cam/r*", {"find_first": False, "where": "detector = 1", "instrument": "Cam"}),
    ("Cam/run1", {"data_id": {"instrument": "Cam", "visit": 1}}),
], ids=str)
def test_query_datasets_takes_the_collections_second_as_the_rubin_butler(rubin, ours, collections, kwargs):
    theirs = sorted(r.id for r in rubin["butler"].query_datasets("summary", collections, **kwargs))
    mine = sorted(r.id for r in ours.query_datasets("summary", collections, **kwargs))
    assert mine == theirs and mine


def test_query_datasets_second_argument_is_still_a_where_clause(rubin, ours):
    theirs = sorted(r.id for r in rubin["butler"].query_datasets("summary", "Cam/run1",
                                                                 where="instrument = 'Cam' AND visit = 2"))
    assert sorted(r.id for r in ours.query_datasets("summary", "visit = 2", collections="Cam/run1")) == theirs
    with pytest.raises(QueryError, match="collections given twice"):
        ours.query_datasets("summary", "Cam/run1", where="visit = 2", collections="Cam/run1")


@pytest.mark.parametrize("data_id", [
    {"instrument": "Cam", "visit": "CAM_2", "detector": "R01"},
    {"instrument": "Cam", "visit": 1, "detector": "R02"},
    {"instrument": "Cam", "day_obs": 20240101, "seq_num": 2, "detector": 1},
    {"dataId": {"instrument": "Cam", "visit": 1}, "detector": 2},
    {"dataId": {"instrument": "Cam", "visit": "CAM_1", "detector": 0}},
], ids=str)
def test_get_takes_data_ids_as_the_rubin_butler(rubin, ours, data_id):
    theirs = rubin["butler"].get("summary", collections="Cam/run1", **data_id)
    assert ours.get("summary", collections="Cam/run1", **data_id) == theirs
    spelled = {"data_id" if k == "dataId" else k: v for k, v in data_id.items()}  # its find_dataset's spelling
    assert ours.find_dataset("summary", collections="Cam/run1", **data_id).id == \
        rubin["butler"].find_dataset("summary", collections="Cam/run1", **spelled).id


@pytest.mark.parametrize("data_id", [
    {"instrument": "Cam", "detector": 0, "exposure": "CAM_1"},
    {"instrument": "Cam", "detector": "R02", "exposure": "CAM_2"},
    {"instrument": "Cam", "detector": "R01", "visit": "CAM_2"},
], ids=str)
def test_a_calibration_is_found_for_an_exposure_named_as_the_rubin_butler_names_it(rubin, ours, data_id):
    theirs = rubin["butler"].get("bias", collections="Cam/calib", **data_id)
    assert ours.get("bias", collections="Cam/calib", **data_id) == theirs


def test_a_data_id_naming_no_record_says_so(rubin, ours):
    from skybutler.errors import DataIdError

    with pytest.raises(Exception):  # noqa: B017 -- the Rubin butler refuses it too, with its own error
        rubin["butler"].get("summary", collections="Cam/run1", instrument="Cam", day_obs=20240101, seq_num=7,
                            detector=1)
    with pytest.raises(DataIdError, match=r"names no instrument and visit and detector \(looked up by "
                                          r"visit.seq_num = :field_seq_num\)"):
        ours.get("summary", collections="Cam/run1", instrument="Cam", day_obs=20240101, seq_num=7, detector=1)
    with pytest.raises(DataIdError, match="detector must be an integer"):  # no such field: the first error
        ours.get("summary", collections="Cam/run1", instrument="Cam", visit=1, detector=1.5)
