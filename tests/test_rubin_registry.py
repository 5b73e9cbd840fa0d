"""``butler.registry``, the Rubin registry's calls, compared with the Rubin butler (the oracle)
on the same Rubin-made repository imported into skybutler: queries, look-ups, collections and
writes give the same IDs, data IDs, collection types, chains and records, on a local repository
and through a server; what is not offered is refused by name."""

from __future__ import annotations

import re
import uuid

import pytest
from astropy.time import Time

from rubin_repos import daf_butler, pair, repos  # noqa: F401 (fixtures)
from skybutler import Butler
from skybutler.errors import DatasetTypeError, MissingCollectionError, NotOfferedError, QueryError
from skybutler.models import CollectionType
from skybutler.rubin_registry import _INSTEAD, _PROPERTIES
from skybutler.timespan import as_timespan

pytest.importorskip("fastapi")


def _refs(results) -> list[tuple]:
    """Each dataset once, as (ID, type, RUN, required data ID): the Rubin registry lists a dataset
    once per collection searched that holds it without find-first, skybutler once."""
    found = {(str(r.id), r.datasetType.name, r.run, tuple(sorted(dict(r.dataId.required).items())))
             for r in results}
    assert found, "a comparison of empty answers proves nothing"
    return sorted(found)


def _ids(data_ids) -> list[tuple]:
    return sorted(tuple(sorted(dict(d.required).items())) for d in data_ids)


DATASET_QUERIES = [
    (("summary",), {"collections": "Cam/run1", "where": "instrument = 'Cam' AND visit = 1"}),
    (("summary",), {"collections": ["Cam/defaults"], "findFirst": True, "where": "detector IN (0..1)",
                    "instrument": "Cam"}),
    (("summary",), {"collections": "Cam/defaults", "where": "visit = :v", "bind": {"v": 2}, "instrument": "Cam"}),
    ((...,), {"collections": ...}),
    (("bias",), {"collections": "Cam/calib"}),
    (("cat",), {"collections": "Cam/*", "instrument": "Cam", "visit": 2}),
    (("summary",), {"collections": "Cam/run1", "dataId": {"instrument": "Cam", "visit": 1}, "where": "band = 'r'"}),
    (("s*y",), {"collections": ["Cam/best", "Cam/run1"]}),
    ((["cat", "deep*"],), {"collections": "Cam/run1"}),
    (("deepSummary",), {"collections": "Cam/run1", "skymap": "sky", "where": "patch = 1"}),
]


@pytest.mark.parametrize("args,kwargs", DATASET_QUERIES)
def test_query_datasets_finds_what_the_rubin_registry_finds(pair, args, kwargs):
    rubin, ours, _ = pair
    assert _refs(ours.registry.queryDatasets(*args, **kwargs)) == _refs(rubin.registry.queryDatasets(*args, **kwargs))


def test_dataset_query_results_count_expand_and_split_by_type(pair):
    rubin, ours, _ = pair
    args, kwargs = (["summary", "cat"],), {"collections": "Cam/run1", "where": "visit = 2", "instrument": "Cam"}
    mine, theirs = ours.registry.queryDatasets(*args, **kwargs), rubin.registry.queryDatasets(*args, **kwargs)
    assert mine.count() == theirs.count() == 4 and mine.any()
    assert [(next(iter(p)).datasetType.name, p.count()) for p in mine.byParentDatasetType()] == [
        (p.parentDatasetType.name, p.count()) for p in theirs.byParentDatasetType()]
    expanded = {str(r.id): (r.dataId.records["visit"].name, r.dataId.records["physical_filter"].band,
                            r.dataId.records["visit"].timespan.to_ns()) for r in mine.expanded()}
    assert expanded == {str(r.id): (r.dataId.records["visit"].name, r.dataId.records["physical_filter"].band,
                                    as_timespan(r.dataId.records["visit"].timespan).to_ns())
                        for r in theirs.expanded()}
    with mine.materialize() as again:
        assert _refs(again) == _refs(theirs)
    assert not ours.registry.queryDatasets("summary", collections="Cam/run1", where="visit = 3",
                                           instrument="Cam").any()


DATA_ID_QUERIES = [
    ((["visit", "detector"],), {"where": "band = 'r'", "instrument": "Cam"}),
    (("exposure",), {"instrument": "Cam"}),
    ((["visit", "detector"],), {"datasets": "summary", "collections": "Cam/best"}),
    ((["detector"],), {"dataId": {"instrument": "Cam"}, "where": "detector > :d", "bind": {"d": 0}}),
    ((["tract", "patch"],), {"skymap": "sky"}),
]


@pytest.mark.parametrize("args,kwargs", DATA_ID_QUERIES)
def test_query_data_ids_gives_the_rubin_registrys_data_ids(pair, args, kwargs):
    rubin, ours, _ = pair
    mine, theirs = ours.registry.queryDataIds(*args, **kwargs), rubin.registry.queryDataIds(*args, **kwargs)
    assert _ids(mine) == _ids(theirs)
    assert mine.count() == theirs.count(exact=True)


def test_data_ids_expanded_and_subset_as_the_rubin_registrys(pair):
    rubin, ours, _ = pair
    mine = ours.registry.queryDataIds(["visit", "detector"], instrument="Cam")
    theirs = rubin.registry.queryDataIds(["visit", "detector"], instrument="Cam")

    def facts(data_ids):
        return sorted((d["visit"], d["detector"], d["band"], d.records["visit"].name,
                       d.records["detector"].full_name, d.records["physical_filter"].band) for d in data_ids)

    assert facts(mine.expanded()) == facts(theirs.expanded())
    assert facts(mine.expanded().order_by("visit").limit(2)) == facts(theirs.expanded().order_by("visit").limit(2))
    assert _ids(mine.subset(["visit"], unique=True)) == _ids(theirs.subset(["visit"], unique=True)) == [
        (("instrument", "Cam"), ("visit", 1)), (("instrument", "Cam"), ("visit", 2))]
    assert mine.subset("visit", unique=True).count() == 2
    ordered = ours.registry.queryDataIds(["visit"], instrument="Cam").order_by("-visit").limit(1)
    assert [d["visit"] for d in ordered] == [d["visit"] for d in rubin.registry.queryDataIds(
        ["visit"], instrument="Cam").order_by("-visit").limit(1)] == [2]


@pytest.mark.parametrize("element,kwargs,fields", [
    ("detector", {"where": "instrument = 'Cam' AND detector < 2"}, ("id", "full_name", "raft")),
    ("exposure", {"instrument": "Cam"}, ("id", "obs_id", "physical_filter", "exposure_time")),
    ("visit", {"where": "band = 'g'", "instrument": "Cam"}, ("id", "name", "day_obs")),
    ("physical_filter", {}, ("name", "band")),
])
def test_query_dimension_records_gives_the_rubin_registrys_records(pair, element, kwargs, fields):
    rubin, ours, _ = pair

    def facts(records):
        out = sorted(tuple(getattr(r, f) for f in fields) for r in records)
        assert out
        return out

    assert facts(ours.registry.queryDimensionRecords(element, **kwargs)) == facts(
        rubin.registry.queryDimensionRecords(element, **kwargs))


@pytest.mark.parametrize("kwargs", [
    {}, {"expression": "Cam/*"}, {"expression": re.compile("Cam/c.*")}, {"collectionTypes": "CALIBRATION"},
    {"expression": "Cam/defaults", "flattenChains": True},
    {"expression": "Cam/defaults", "flattenChains": True, "includeChains": True},
    {"expression": ["Cam/defaults", "Cam/best"], "flattenChains": True, "collectionTypes": ["RUN", "TAGGED"]},
    {"collectionTypes": ["CHAINED", "TAGGED"]},
])
def test_query_collections_lists_what_the_rubin_registry_lists(pair, kwargs):
    rubin, ours, _ = pair
    types = kwargs.get("collectionTypes")
    theirs = dict(kwargs)
    if types is not None:
        theirs["collectionTypes"] = ({daf_butler.CollectionType[types]} if isinstance(types, str)
                                     else {daf_butler.CollectionType[t] for t in types})
    mine = ours.registry.queryCollections(**kwargs)
    assert sorted(mine) == sorted(rubin.registry.queryCollections(**theirs)) and len(mine) == len(set(mine))


def test_collections_dataset_types_and_look_ups_as_the_rubin_registrys(pair):
    rubin, ours, _ = pair
    mine, theirs = ours.registry, rubin.registry
    for name in theirs.queryCollections():
        assert mine.getCollectionType(name).name == theirs.getCollectionType(name).name, name
        assert mine.getCollectionParentChains(name) == theirs.getCollectionParentChains(name), name
    assert list(mine.getCollectionChain("Cam/defaults")) == list(theirs.getCollectionChain("Cam/defaults"))
    assert [(d.name, sorted(d.dimensions), d.is_calibration) for d in mine.queryDatasetTypes()] == [
        (d.name, sorted(d.dimensions.required), d.isCalibration()) for d in
        sorted(theirs.queryDatasetTypes(), key=lambda d: d.name)]
    assert [d.name for d in mine.queryDatasetTypes(["b*", "cat"])] == ["bias", "cat"]
    assert mine.getDatasetType("bias").is_calibration
    for ref in theirs.queryDatasets(..., collections=...):
        got = mine.getDataset(ref.id)
        assert (got.id, got.run, dict(got.dataId.required)) == (ref.id, ref.run, dict(ref.dataId.required))
        assert ours.get_dataset(str(ref.id)) == got
    assert mine.getDataset(uuid.uuid4()) is None and theirs.getDataset(uuid.uuid4()) is None
    found = mine.findDataset("summary", {"visit": 2}, collections="Cam/defaults", instrument="Cam", detector=1)
    assert found.id == theirs.findDataset("summary", {"visit": 2}, collections="Cam/defaults", instrument="Cam",
                                          detector=1).id
    assert found.dataId["band"] == "g"
    assert mine.findDataset("summary", visit=2, detector=1, instrument="Cam", collections="Cam/best") is None
    assert theirs.findDataset("summary", visit=2, detector=1, instrument="Cam", collections="Cam/best") is None
    fields = {"physical_filter": "band", "visit": "name", "exposure": "obs_id", "detector": "full_name",
              "day_obs": "id", "instrument": "visit_max"}
    for data_id, elements in (({"instrument": "Cam", "visit": 1}, ("physical_filter", "visit", "day_obs", "instrument")),
                              ({"instrument": "Cam", "exposure": 2, "detector": 1},
                               ("physical_filter", "exposure", "detector", "day_obs"))):
        expanded, oracle = mine.expandDataId(data_id), theirs.expandDataId(data_id)
        assert (expanded["band"], expanded["physical_filter"]) == (oracle["band"], oracle["physical_filter"])
        for element in elements:
            field = fields[element]
            assert getattr(expanded.records[element], field) == getattr(oracle.records[element], field)
        span = expanded.records["visit" if "visit" in data_id else "exposure"].timespan
        assert span.to_ns() == as_timespan(oracle.records["visit" if "visit" in data_id else "exposure"].timespan
                                           ).to_ns()


def test_dataset_associations_and_calibration_ranges_as_the_rubin_registrys(pair):
    rubin, ours, _ = pair

    def facts(associations):
        return sorted((str(a.ref.id), a.collection, None if a.timespan is None else as_timespan(a.timespan).to_ns())
                      for a in associations)

    for kwargs in ({"collections": "Cam/calib"}, {"collections": ["Cam/defaults"], "flattenChains": True},
                   {"collections": ...}):
        for name in ("bias", "summary"):
            theirs = facts(rubin.registry.queryDatasetAssociations(name, **kwargs))
            assert facts(ours.registry.queryDatasetAssociations(name, **kwargs)) == theirs, (name, kwargs)


def test_registry_writes_leave_both_repositories_alike(pair):
    """The same calls on both (under names of this client's own), then both read back alike."""
    rubin, ours, kind = pair
    run, tagged, calib, chain, dtype = (f"w{kind}/run", f"w{kind}/tag", f"w{kind}/calib", f"w{kind}/chain",
                                        f"w{kind}_type")
    refs = {}
    for who, reg in (("rubin", rubin.registry), ("ours", ours.registry)):
        assert reg.registerRun(run) is True and reg.registerRun(run) is False
        assert reg.registerCollection(tagged) is True
        assert reg.registerCollection(calib, daf_butler.CollectionType.CALIBRATION) is True
        assert reg.registerCollection(chain, daf_butler.CollectionType.CHAINED, doc="a chain") is True
        reg.setCollectionChain(chain, [tagged, "Cam/defaults"], flatten=True)
        summaries = sorted(reg.queryDatasets("summary", collections="Cam/run1", where="detector = 0",
                                             instrument="Cam"),
                           key=lambda r: r.dataId["visit"])
        reg.associate(tagged, summaries)
        reg.disassociate(tagged, summaries[1:])
        bias = sorted(reg.queryDatasets("bias", collections="Cam/calib/run"), key=lambda r: r.dataId["detector"])
        reg.certify(calib, bias, daf_butler.Timespan(Time("2024-01-01", scale="tai"), None))
        reg.decertify(calib, "bias", daf_butler.Timespan(Time("2024-03-01", scale="tai"),
                                                         Time("2024-04-01", scale="tai")),
                      dataIds=[{"instrument": "Cam", "detector": 0}])
        assert reg.registerDatasetType(daf_butler.DatasetType(dtype, ["instrument", "detector"], "StructuredDataDict",
                                                              universe=rubin.dimensions)) is True
        reg.removeDatasetType(dtype)
        refs[who] = summaries
    assert ([r.id for r in refs["ours"]] == [r.id for r in refs["rubin"]])
    for name in (run, tagged, calib, chain):
        assert ours.registry.getCollectionType(name).name == rubin.registry.getCollectionType(name).name
    assert list(ours.registry.getCollectionChain(chain)) == list(rubin.registry.getCollectionChain(chain))
    assert ours.registry.getCollectionDocumentation(chain) == rubin.registry.getCollectionDocumentation(chain)
    assert _refs(ours.registry.queryDatasets("summary", collections=tagged)) == _refs(
        rubin.registry.queryDatasets("summary", collections=tagged))

    def ranges(reg):
        return sorted((str(a.ref.id), as_timespan(a.timespan).to_ns())
                      for a in reg.queryDatasetAssociations("bias", calib))

    assert ranges(ours.registry) == ranges(rubin.registry) and len(ranges(ours.registry)) == 4
    with pytest.raises(DatasetTypeError):
        ours.registry.getDatasetType(dtype)
    with pytest.raises(MissingCollectionError):
        ours.registry.associate(f"w{kind}/missing", refs["ours"])
    assert not ours.collections.exists(f"w{kind}/missing")


def test_dimension_data_written_through_the_registry(pair):
    rubin, ours, kind = pair
    name = f"w{kind}-filter"
    for reg in (rubin.registry, ours.registry):
        reg.insertDimensionData("physical_filter", {"instrument": "Cam", "name": name, "band": "r"})
        assert reg.syncDimensionData("physical_filter", {"instrument": "Cam", "name": name, "band": "r"}) is False
        reg.insertDimensionData("physical_filter", {"instrument": "Cam", "name": name, "band": "r"},
                                skip_existing=True)

    def bands(reg):
        return sorted((r.name, r.band) for r in reg.queryDimensionRecords("physical_filter", instrument="Cam"))

    assert bands(ours.registry) == bands(rubin.registry)


def test_what_is_not_offered_is_refused_by_name(pair):
    rubin, ours, kind = pair
    reg = ours.registry
    refusals = [
        (lambda: reg.queryDatasets("summary", collections="Cam/run1", components=True), "butler.get(ref, component"),
        (lambda: reg.queryDatasets("summary", collections="Cam/run1", dimensions=["visit"]), "a where-clause"),
        (lambda: reg.queryDimensionRecords("visit", datasets="summary", collections="Cam/run1"),
         "with_dimension_records=True"),
        (lambda: reg.queryDataIds(["visit"], instrument="Cam").findDatasets("summary", "Cam/run1"),
         "butler.query_datasets"),
        (lambda: reg.queryCollections(datasetType="summary"), "find_first=False).any()"),
        (lambda: reg.insertDimensionData("physical_filter", {}, replace=True), "update=True"),
        (lambda: reg.queryDataIds(["visit"], instrument="Cam").subset(["visit"]).expanded(), "expanded() before"),
    ]
    for call, instead in refusals:
        with pytest.raises(NotOfferedError, match="not offered") as refused:
            call()
        assert instead in str(refused.value)
    with pytest.raises(QueryError, match="regular expressions are not taken for dataset types"):
        reg.queryDatasets(re.compile("s.*"), collections="Cam/run1")
    with pytest.raises(daf_butler.registry.DatasetTypeExpressionError, match="Regular expressions"):
        rubin.registry.queryDatasets(re.compile("s.*"), collections="Cam/run1")
    for name, instead in _INSTEAD.items():
        if name == "dimensions":  # a local butler's is its SQL registry's store
            continue
        assert hasattr(type(reg), name), name
        with pytest.raises(NotOfferedError, match=f"butler.registry.{name} is not offered by skybutler; use ") as no:
            getattr(reg, name)("Cam/run1") if name not in _PROPERTIES else getattr(reg, name)
        assert instead in str(no.value)
    if kind == "served":
        with pytest.raises(NotOfferedError, match="use butler.universe"):
            reg.dimensions
    with reg.caching_context(), rubin.registry.caching_context():
        assert reg.getCollectionType("Cam/run1").name == rubin.registry.getCollectionType("Cam/run1").name
    with pytest.raises(AttributeError, match="no 'queryEverything'"):
        reg.queryEverything
    if kind == "served":  # a server's client has no SQL registry behind the adapter
        with pytest.raises(AttributeError, match="no 'datasets'"):
            reg.datasets
    assert reg.defaults.collections == tuple(ours.default_collections)
    assert CollectionType.parse("run") is reg.getCollectionType("Cam/run1")


@pytest.mark.parametrize("args,kwargs", [
    ((...,), {}), (("Cam/*",), {"include_parents": True}), (("Cam/defaults",), {"flatten_chains": True}),
    (("Cam/defaults",), {"flatten_chains": True, "include_chains": True, "include_parents": True}),
    ((["Cam/c*", "Cam/best"],), {"collection_types": ["RUN", "CALIBRATION"]}),
])
def test_collections_query_info_and_get_info_as_the_rubin_butlers(pair, args, kwargs):
    rubin, ours, _ = pair
    theirs_kwargs = dict(kwargs, include_doc=True)
    if "collection_types" in kwargs:
        theirs_kwargs["collection_types"] = {daf_butler.CollectionType[t] for t in kwargs["collection_types"]}

    def facts(infos):
        out = sorted((i.name, i.type.name, tuple(i.children), i.doc or "",
                      None if i.parents is None else sorted(i.parents)) for i in infos)
        assert out
        return out

    assert facts(ours.collections.query_info(*args, **kwargs)) == facts(
        rubin.collections.query_info(*args, **theirs_kwargs))
    for name in ("Cam/defaults", "Cam/run1", "Cam/calib"):
        assert facts([ours.collections.get_info(name, include_parents=True)]) == facts(
            [rubin.collections.get_info(name, include_parents=True)])
    with pytest.raises(MissingCollectionError):
        ours.collections.get_info("Cam/none")
    with pytest.raises(NotOfferedError, match="butler.query_datasets"):
        ours.collections.query_info("Cam/*", include_summary=True)


def test_refused_registry_writes_leave_the_repository_as_it_was(pair):
    """Each refusal is the Rubin butler's kind of error, and nothing is created or removed."""
    rubin, ours, kind = pair
    reg = ours.registry
    before = sorted(reg.queryCollections()), [d.name for d in reg.queryDatasetTypes()]
    refusals = [
        (lambda r: r.setCollectionChain(f"w{kind}/none", ["Cam/run1"]), MissingCollectionError, "MissingCollectionError"),
        (lambda r: r.certify(f"w{kind}/none", [], daf_butler.Timespan(None, None)), MissingCollectionError,
         "MissingCollectionError"),
        (lambda r: r.setCollectionChain("Cam/defaults", ["Cam/none"]), MissingCollectionError,
         "MissingCollectionError"),
        (lambda r: r.getCollectionType("Cam/none"), MissingCollectionError, "MissingCollectionError"),
    ]
    for call, ours_error, rubin_error in refusals:
        with pytest.raises(ours_error):
            call(reg)
        try:
            list(call(rubin.registry) or ())
        except Exception as theirs:
            assert type(theirs).__name__ == rubin_error
        else:
            raise AssertionError(f"the Rubin butler took {rubin_error}'s call")
    unknown = reg.queryDatasets("nothing", collections="Cam/run1")
    assert not unknown.any() and list(unknown) == list(rubin.registry.queryDatasets("nothing", collections="Cam/run1"))
    assert "'nothing' is not registered" in " ".join(unknown.explain_no_results())
    with pytest.raises(DatasetTypeError, match="still has"):
        reg.removeDatasetType("summary")
    with pytest.raises(Exception, match="remove_runs"):
        reg.removeCollection("Cam/run1")
    assert (sorted(reg.queryCollections()), [d.name for d in reg.queryDatasetTypes()]) == before
    assert list(reg.getCollectionChain("Cam/defaults")) == list(rubin.registry.getCollectionChain("Cam/defaults"))


def test_records_of_query_results_through_a_server_are_the_local_ones(repos):
    """``with_dimension_records=True`` through a server: every record of every element, sent with
    each data ID (a ref's too), equal to a local butler's."""
    _, local, url, token = repos
    remote = Butler(url, token=token)

    def records(results):
        out = sorted((tuple(sorted(d.mapping.items())), name, None if r is None else tuple(sorted(dict(r).items(),
                                                                                                   key=str)))
                     for d in (getattr(x, "data_id", x) for x in results) for name, r in d.records.items())
        assert out and any(r is not None for *_, r in out)
        return out

    for kind in ("query_data_ids", "query_datasets"):
        args = (["visit", "detector"],) if kind == "query_data_ids" else ("summary", "Cam/defaults")
        mine = getattr(local, kind)(*args, instrument="Cam", with_dimension_records=True)
        theirs = getattr(remote, kind)(*args, instrument="Cam", with_dimension_records=True)
        assert records(theirs) == records(mine), kind
