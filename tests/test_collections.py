"""Collections through ``butler.collections``: the four types, chains (flattening, cycles),
TAGGED membership and CALIBRATION validity ranges, and that every refused operation
leaves the repository as it was."""

from __future__ import annotations

import pytest
from astropy.time import Time

from skybutler import Butler, Timespan
from skybutler.errors import (
    CalibrationConflictError,
    CollectionCycleError,
    CollectionError,
    DatasetConflictError,
    DatasetTypeError,
    MissingCollectionError,
)
from skybutler.models import CollectionType

T0, T1, T2, T3, T4 = (Time(f"2025-0{m}-01T00:00:00", scale="tai") for m in range(1, 6))


def n_in(butler, collection: str) -> int:
    """How many datasets a collection holds (RUN, TAGGED) or certifies (CALIBRATION)."""
    return len(butler.registry.datasets.ids_in_collection(collection))


def collection_names(butler) -> list[str]:
    return [c.name for c in butler.collections.query()]


def snapshot(butler) -> tuple:
    """A summary of everything a failed operation must not change."""
    return (tuple((c.name, c.type, c.children) for c in butler.collections.query()),
            tuple(sorted((c.name, n_in(butler, c.name)) for c in butler.collections.query()
                         if c.type is not CollectionType.CHAINED)),
            tuple(butler.query_dataset_types()))


def put_metric(butler, value, run, visit=1, detector=1):
    return butler.put({"v": value}, "metrics", instrument="Cam", visit=visit, detector=detector, run=run)


# -- collections -------------------------------------------------------------------


def test_collections_of_all_four_types(butler):
    assert butler.collections.register("r1") is True
    assert butler.collections.register("t1", "tagged") is True
    assert butler.collections.register("c1", CollectionType.CALIBRATION) is True
    assert butler.collections.register("ch1", "Chained") is True
    assert butler.collections.register("t1", "tagged") is False  # idempotent
    info = {c.name: c.type for c in butler.collections.query()}
    assert info == {"r1": CollectionType.RUN, "t1": CollectionType.TAGGED, "c1": CollectionType.CALIBRATION,
                    "ch1": CollectionType.CHAINED}
    assert [c.name for c in butler.collections.query("c*")] == ["c1", "ch1"]
    assert [c.name for c in butler.collections.query(types=["tagged", "run"])] == ["r1", "t1"]
    assert butler.collections.info("ch1").children == ()
    assert butler.collections.exists("r1") and not butler.collections.exists("r2")


def test_dataset_types_lists_the_types_each_collection_holds_now(butler):
    butler.register_dataset_type("nightly", ["instrument", "visit"], "Dict")
    first = put_metric(butler, 1, "r1")
    butler.put({"n": 1}, "nightly", instrument="Cam", visit=1, run="r2")
    butler.collections.associate("t1", [first])
    butler.collections.set_chain("ch1", ["t1", "r2"])
    butler.collections.register("empty")
    assert butler.collections.dataset_types(["r1", "r2", "t1", "ch1", "empty"]) == {
        "r1": ["metrics"], "r2": ["nightly"], "t1": ["metrics"], "ch1": ["metrics", "nightly"], "empty": []}
    butler.collections.disassociate("t1", [first])
    assert butler.collections.dataset_types("ch1") == {"ch1": ["nightly"]}
    with pytest.raises(MissingCollectionError):
        butler.collections.dataset_types("nosuch")


def test_a_collections_doc_is_kept_and_shown_by_info_and_query(butler):
    butler.collections.register("r1", doc="raw night 1")
    butler.collections.register("ch1", "chained", doc="the defaults")
    butler.collections.set_chain("ch1", ["r1"])
    assert butler.collections.register("r1", doc="another") is False  # an existing collection keeps its doc
    assert (butler.collections.info("r1").doc, butler.collections.info("ch1").doc) == ("raw night 1", "the defaults")
    flattened = {c.name: c.doc for c in butler.collections.query("ch1", flatten_chains=True)}
    assert flattened == {"ch1": "the defaults", "r1": "raw night 1"}


def test_collection_registration_failures(butler):
    butler.collections.register("t1", "tagged")
    with pytest.raises(CollectionError, match="'t1' exists with type TAGGED, not RUN"):
        butler.collections.register("t1", "run")
    with pytest.raises(CollectionError, match="unknown collection type 'bag'"):
        butler.collections.register("t2", "bag")
    for bad in ("", " padded", "padded "):
        with pytest.raises(CollectionError, match="invalid collection name"):
            butler.collections.register(bad)
    with pytest.raises(MissingCollectionError, match="no collection named 'nope'"):
        butler.collections.info("nope")
    assert collection_names(butler) == ["t1"]


def test_chains_are_flattened_depth_first_without_duplicates(butler):
    for name in ("r1", "r2", "r3"):
        butler.collections.register(name)
    butler.collections.register("tag", "tagged")
    butler.collections.set_chain("inner", ["tag", "r2"])
    butler.collections.set_chain("outer", ["r1", "inner", "r2", "r3"])
    assert butler.collections.get_chain("outer") == ("r1", "inner", "r2", "r3")
    assert butler.collections.flatten("outer") == ["r1", "tag", "r2", "r3"]
    assert butler.collections.flatten(["r3", "outer"]) == ["r3", "r1", "tag", "r2"]
    butler.collections.extend_chain("outer", ["r3"], prepend=True)  # prepend moves it to the front
    assert butler.collections.get_chain("outer") == ("r3", "r1", "inner", "r2")
    butler.collections.extend_chain("outer", ["tag"], prepend=False)
    assert butler.collections.get_chain("outer") == ("r3", "r1", "inner", "r2", "tag")
    butler.collections.set_chain("outer", [])
    assert butler.collections.flatten("outer") == []
    q = butler.collections.query("inner", flatten_chains=True)
    assert [c.name for c in q] == ["inner", "tag", "r2"]
    # a chain's members that also match the pattern are listed once, under the chain
    q = butler.collections.query("*", flatten_chains=True)
    names = [c.name for c in q]
    assert len(names) == len(set(names)) and names.index("tag") == names.index("inner") + 1


def test_chain_cycles_are_refused_and_leave_chains_unchanged(butler):
    butler.collections.register("r1")
    butler.collections.set_chain("a", ["r1"])
    butler.collections.set_chain("b", ["a"])
    butler.collections.set_chain("c", ["b"])
    before = snapshot(butler)
    with pytest.raises(CollectionCycleError, match="'a' -> 'c'"):
        butler.collections.set_chain("a", ["r1", "c"])
    with pytest.raises(CollectionCycleError):
        butler.collections.set_chain("a", ["a"])
    assert snapshot(butler) == before
    assert butler.collections.flatten("c") == ["r1"]


def test_failed_set_chain_creates_no_collection(butler):
    butler.collections.register("r1")
    before = snapshot(butler)
    with pytest.raises(MissingCollectionError, match="'missing'"):
        butler.collections.set_chain("new", ["r1", "missing"])
    with pytest.raises(CollectionCycleError):
        butler.collections.set_chain("self", ["self"])
    with pytest.raises(CollectionError, match="RUN, not CHAINED"):
        butler.collections.set_chain("r1", [])
    assert snapshot(butler) == before


def test_removing_collections(butler):
    butler.collections.register("t", "tagged")
    butler.collections.set_chain("ch", ["t"])
    with pytest.raises(CollectionError, match="in chain\\(s\\) ch"):
        butler.collections.remove("t")
    butler.collections.remove("ch")
    butler.collections.remove("t")
    butler.collections.register("r")
    with pytest.raises(CollectionError, match="is a RUN"):
        butler.collections.remove("r")
    assert collection_names(butler) == ["r"]


# -- TAGGED ---------------------------------------------------------------------------


def test_tagged_associate_disassociate_and_conflict(butler):
    a1 = put_metric(butler, "a1", "run/a", detector=1)
    a2 = put_metric(butler, "a2", "run/a", detector=2)
    b1 = put_metric(butler, "b1", "run/b", detector=1)
    butler.collections.associate("best", [a1, a2])
    assert butler.collections.info("best").type is CollectionType.TAGGED
    assert n_in(butler, "best") == 2
    butler.collections.associate("best", [a1])  # the same dataset again: nothing to do
    assert n_in(butler, "best") == 2
    found = butler.find_dataset("metrics", instrument="Cam", visit=1, detector=1, collections="best")
    assert found == a1 and found.run == "run/a"
    assert butler.get("metrics", instrument="Cam", visit=1, detector=1, collections="best") == {"v": "a1"}
    with pytest.raises(DatasetConflictError, match="already holds a different metrics"):
        butler.collections.associate("best", [b1])
    assert n_in(butler, "best") == 2
    butler.collections.disassociate("best", [a1])
    assert butler.find_dataset("metrics", instrument="Cam", visit=1, detector=1, collections="best") is None
    butler.collections.associate("best", [b1])
    assert butler.find_dataset("metrics", instrument="Cam", visit=1, detector=1, collections="best") == b1
    butler.collections.associate("twice", [a2, a2])  # a dataset given twice is tagged once
    assert n_in(butler, "twice") == 1
    # the datasets themselves stay in their RUNs
    assert n_in(butler, "run/a") == 2 and n_in(butler, "run/b") == 1


def test_tagged_failures_leave_the_collection_unchanged(butler):
    butler.register_dataset_type("other", ["visit"], "Dict")
    a1 = put_metric(butler, "a1", "run/a", detector=1)
    b1 = put_metric(butler, "b1", "run/b", detector=1)
    o1 = butler.put({}, "other", instrument="Cam", visit=1, run="run/a")
    butler.collections.associate("best", [a1])
    before = snapshot(butler)
    # a batch whose second type conflicts: the first type's rows are not kept either
    with pytest.raises(DatasetConflictError):
        butler.collections.associate("best", [o1, b1])
    # two different datasets for one data ID in one batch
    with pytest.raises(DatasetConflictError):
        butler.collections.associate("new-tag", [a1, b1])
    with pytest.raises(CollectionError, match="'run/a' exists with type RUN, not TAGGED"):
        butler.collections.associate("run/a", [b1])
    with pytest.raises(CollectionError, match="TAGGED"):
        butler.collections.disassociate("run/a", [a1])
    assert snapshot(butler) == before


# -- CALIBRATION ----------------------------------------------------------------------


@pytest.fixture
def calib(butler):
    """Two biases for detector 1 and one for detector 2, in RUN calib/run."""
    butler.register_dataset_type("bias", ["instrument", "detector"], "Dict", is_calibration=True)
    refs = {}
    for key, det in (("old", 1), ("new", 1), ("d2", 2)):
        butler.collections.register(f"calib/run/{key}")
        refs[key] = butler.put({"b": key}, "bias", instrument="Cam", detector=det, run=f"calib/run/{key}")
    return butler, refs


def find_bias(butler, t_begin, t_end=None, detector=1, collections="calib"):
    span = Timespan(t_begin, t_begin if t_end is None else t_end)
    return butler.find_dataset("bias", instrument="Cam", detector=detector, collections=collections, timespan=span)


def test_certify_and_lookup_at_validity_boundaries(calib):
    butler, refs = calib
    butler.collections.certify("calib", [refs["old"], refs["d2"]], T0, T2)
    butler.collections.certify("calib", [refs["new"]], timespan=Timespan(T2, T4))
    assert butler.collections.info("calib").type is CollectionType.CALIBRATION
    # begin inclusive, end exclusive
    assert find_bias(butler, T0) == refs["old"]
    assert find_bias(butler, T1) == refs["old"]
    assert find_bias(butler, T2) == refs["new"]
    assert find_bias(butler, T4) is None
    assert find_bias(butler, Time("2024-12-31T23:59:59.999", scale="tai")) is None
    assert find_bias(butler, T2, detector=2) is None
    assert find_bias(butler, T0, detector=2) == refs["d2"]
    # an interval spanning both ranges is ambiguous; one inside a range is not
    with pytest.raises(Exception, match="2 calibrations are valid"):
        find_bias(butler, T1, T3)
    assert find_bias(butler, T2, T3) == refs["new"]
    found = find_bias(butler, T3)
    assert found.run == "calib/run/new" and found.artifact is not None
    assert butler.get("bias", instrument="Cam", detector=1, collections="calib",
                      timespan=Timespan(T3, T3)) == {"b": "new"}
    # a calibration collection without a timespan is an error, not a guess
    with pytest.raises(DatasetTypeError, match="give a timespan"):
        butler.find_dataset("bias", instrument="Cam", detector=1, collections="calib")
    validity = butler.collections.validity("calib", "bias")
    assert [(r.id, s) for r, s in validity if r.data_id["detector"] == 1] == [
        (refs["old"].id, Timespan(T0, T2)), (refs["new"].id, Timespan(T2, T4))]


def test_calibration_search_path_order(calib):
    butler, refs = calib
    butler.collections.certify("calib/a", [refs["old"]], T0, T4)
    butler.collections.certify("calib/b", [refs["new"]], None, None)  # unbounded both sides
    butler.collections.set_chain("Cam/defaults", ["calib/b", "calib/a"])
    assert find_bias(butler, T1, collections="Cam/defaults") == refs["new"]
    butler.collections.set_chain("Cam/defaults", ["calib/a", "calib/b"])
    assert find_bias(butler, T1, collections="Cam/defaults") == refs["old"]
    assert find_bias(butler, T4, collections="Cam/defaults") == refs["new"]
    # a RUN earlier in the path wins over a CALIBRATION later in it
    assert find_bias(butler, T1, collections=["calib/run/d2", "calib/run/new", "calib/a"]) == refs["new"]


def test_overlapping_certification_is_refused_and_changes_nothing(calib):
    butler, refs = calib
    butler.collections.certify("calib", [refs["old"]], T0, T2)
    before = butler.collections.validity("calib", "bias")
    with pytest.raises(CalibrationConflictError, match="would overlap the validity"):
        butler.collections.certify("calib", [refs["new"]], T1, T3)
    # a batch with one good and one conflicting ref: neither is certified
    with pytest.raises(CalibrationConflictError):
        butler.collections.certify("calib", [refs["d2"], refs["new"]], T1, T3)
    # two refs for one data ID in one batch
    with pytest.raises(CalibrationConflictError, match="same range"):
        butler.collections.certify("calib", [refs["old"], refs["new"]], T3, T4)
    assert butler.collections.validity("calib", "bias") == before
    # adjacent half-open ranges do not overlap
    butler.collections.certify("calib", [refs["new"]], T2, T3)
    assert find_bias(butler, T2) == refs["new"]


def test_certify_failures_create_no_collection(calib):
    butler, refs = calib
    metric = put_metric(butler, 1, "run/a")
    butler.collections.register("tagged", "tagged")
    before = snapshot(butler)
    with pytest.raises(DatasetTypeError, match="not a calibration type"):
        butler.collections.certify("calib/new", [metric], T0, T1)
    with pytest.raises(CollectionError, match="TAGGED, not CALIBRATION"):
        butler.collections.certify("tagged", [refs["old"]], T0, T1)
    assert snapshot(butler) == before


def test_decertify_splits_and_truncates_ranges(calib):
    butler, refs = calib
    butler.collections.certify("calib", [refs["old"], refs["d2"]], T0, T4)
    assert butler.collections.decertify("calib", "bias", T1, T2) == 2
    validity = sorted((r.data_id["detector"], s.begin.tai.isot, s.end.tai.isot)
                      for r, s in butler.collections.validity("calib", "bias"))
    assert validity == [(1, T0.isot, T1.isot), (1, T2.isot, T4.isot), (2, T0.isot, T1.isot), (2, T2.isot, T4.isot)]
    assert find_bias(butler, T0) == refs["old"]
    assert find_bias(butler, Time("2025-02-15", scale="tai")) is None
    assert find_bias(butler, T2) == refs["old"]
    # the gap can now take another calibration
    butler.collections.certify("calib", [refs["new"]], T1, T2)
    assert find_bias(butler, T1) == refs["new"]
    # truncate the end of the last range, then remove everything
    assert butler.collections.decertify("calib", "bias", T3, None) == 2
    assert find_bias(butler, T3) is None and find_bias(butler, T2) == refs["old"]
    butler.collections.decertify("calib", "bias", None, None)
    assert butler.collections.validity("calib", "bias") == []
    # the datasets are untouched in their RUN
    assert n_in(butler, "calib/run/old") == 1


def test_a_new_chain_whose_children_fail_to_go_in_is_not_left_empty(butler, monkeypatch):
    """A chain is created with its children in one transaction: a failure (or a kill) in between
    leaves no empty CHAINED collection behind, in this butler or in the next."""
    butler.collections.register("run/a", "run")
    store = butler.registry.collections
    lookup = store.lookup

    def failing(name):
        if name == "best":
            raise RuntimeError("the process dies here")
        return lookup(name)

    monkeypatch.setattr(store, "lookup", failing)
    with pytest.raises(RuntimeError, match="dies here"):
        butler.collections.set_chain("best", ["run/a"])
    monkeypatch.setattr(store, "lookup", lookup)
    assert not butler.collections.exists("best")
    with Butler(butler.root) as again:
        assert not again.collections.exists("best")
    butler.collections.set_chain("best", ["run/a"])
    assert butler.collections.get_chain("best") == ("run/a",)


def test_a_collections_datasets_and_counts_agree_with_queries(calib):
    """What the CLI and the web view list a collection's contents by (``refs_in_collection``,
    ``dataset_counts`` of the registry) against a query of each type in each collection, for
    RUN, TAGGED and CALIBRATION collections; a bias certified over two ranges counts once."""
    butler, refs = calib
    metrics = [put_metric(butler, d, "r1", detector=d) for d in range(3)]
    butler.collections.associate("t1", metrics[:2] + [refs["old"]])
    butler.collections.certify("calib", [refs["old"], refs["d2"]], T0, T1)
    butler.collections.certify("calib", [refs["old"]], T2, T3)
    butler.collections.register("empty")
    counts = butler.registry.dataset_counts()
    for info in butler.collections.query("*"):
        listed = butler.registry.refs_in_collection(info.name)
        assert all(ref.artifact is not None for ref in listed)
        for dtype in ("metrics", "bias"):
            queried = {r.id for r in butler.query_datasets(dtype, collections=[info.name], find_first=False)}
            of_type = [r.id for r in butler.registry.refs_in_collection(info.name, dtype)]
            assert sorted(of_type) == sorted(queried) == sorted(r.id for r in listed if r.dataset_type.name == dtype)
            assert counts.get((info.name, dtype), 0) == len(queried), (info.name, dtype)
    assert counts[("calib", "bias")] == 2 and counts[("t1", "metrics")] == 2
    with pytest.raises(MissingCollectionError):
        butler.registry.refs_in_collection("nosuch")


def test_facts_of_many_are_each_datasets_own(butler):
    """``facts_of_many`` (the web view's footprints) against each dataset's own facts; a field
    the storage class does not extract, or a storage class with no datasets, gives none."""
    refs = butler.put_many("metrics", [({f"k{i}": i for i in range(d + 1)}, {"instrument": "Cam", "visit": 1,
                                                                            "detector": d}) for d in range(3)])
    ids = [r.id for r in refs]
    found = butler.registry.facts_of_many(ids, "Dict", "n_keys")
    assert found == {r.id: butler.get_metadata(r)["n_keys"] for r in refs} and sorted(found.values()) == [1, 2, 3]
    assert butler.registry.facts_of_many(ids, "Dict", "no_such_fact") == {}
    assert butler.registry.facts_of_many(ids, "Image", "region") == {}
