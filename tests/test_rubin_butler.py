"""The Rubin Butler's own calls (``getURI``, ``getDeferred``, ``stored``, ``pruneDatasets``,
``removeRuns``, ``clone``, ...) compared with the Rubin butler (the oracle) on the same
Rubin-made repository imported into skybutler, locally and through a server; what is not
offered is refused by name with what to use instead."""

from __future__ import annotations

import json
import os
import uuid

import pytest
import yaml

from rubin_repos import daf_butler, pair, repos  # noqa: F401 (fixtures)
from skybutler import Butler
from skybutler.butler_rubin import _INSTEAD
from skybutler.errors import (
    ConfigError,
    DataIdError,
    DatasetTypeError,
    MissingCollectionError,
    NotOfferedError,
    SkybutlerError,
    StorageClassError,
)

pytest.importorskip("fastapi")


def _ids(refs) -> list[str]:
    found = sorted(str(r.id) for r in refs)
    assert found, "a comparison of empty answers proves nothing"
    return found


LOOK_UPS = [("summary", {"instrument": "Cam", "visit": 2, "detector": 1}, "Cam/defaults"),
            ("cat", {"instrument": "Cam", "visit": 1}, ["Cam/run1"]),
            ("deepSummary", {"skymap": "sky", "tract": 7, "patch": 1, "band": "r"}, "Cam/run1")]


@pytest.mark.parametrize("dataset_type,data_id,collections", LOOK_UPS)
def test_uris_of_the_same_datasets_as_the_rubin_butlers(pair, dataset_type, data_id, collections):
    rubin, ours, kind = pair
    theirs = rubin.getURI(dataset_type, data_id, collections=collections)
    mine = ours.getURI(dataset_type, data_id, collections=collections)
    assert mine.geturl() == str(mine) and mine.basename() == mine.path.rsplit("/", 1)[-1]
    if kind == "local":
        assert mine.scheme == theirs.scheme == "file" and os.path.isfile(mine.ospath)
    else:  # the server's URL of the file, as the Rubin butler's client gives one
        assert mine.scheme == "http"
        with pytest.raises(ValueError, match="not a local file"):
            mine.ospath
    primary, components = ours.getURIs(dataset_type, dataId=data_id, collections=collections)
    assert (primary, components) == (mine, dict(rubin.getURIs(dataset_type, data_id, collections=collections)[1]))
    ref = ours.find_dataset(dataset_type, data_id, collections=collections)
    assert ref.id == rubin.find_dataset(dataset_type, data_id, collections=collections).id
    assert ours.getURI(ref) == mine == ours.get_uri(ref)


def test_many_uris_and_missing_datasets_as_the_rubin_butlers(pair):
    rubin, ours, kind = pair
    theirs = list(rubin.registry.queryDatasets(..., collections="Cam/run1"))
    mine = list(ours.registry.queryDatasets(..., collections="Cam/run1"))
    uris = ours.get_many_uris(mine)
    assert _ids(uris) == _ids(rubin.get_many_uris(theirs)) and all(u.componentURIs == {} for u in uris.values())
    assert {u.primaryURI.scheme for u in uris.values()} == {"file" if kind == "local" else "http"}
    assert all(os.path.isfile(u.primaryURI.ospath) for u in uris.values() if kind == "local")
    for butler in (rubin, ours):
        with pytest.raises(LookupError):
            butler.getURI("summary", instrument="Cam", visit=9, detector=0, collections="Cam/run1")
    with pytest.raises(NotOfferedError, match="skybutler names a file when it writes it"):
        ours.getURI("summary", instrument="Cam", visit=9, detector=0, collections="Cam/run1", predict=True)


@pytest.mark.parametrize("dataset_type,data_id,collections", LOOK_UPS)
def test_deferred_reads_give_what_the_rubin_butler_gives(pair, dataset_type, data_id, collections):
    rubin, ours, _ = pair
    mine, theirs = (b.getDeferred(dataset_type, data_id, collections=collections) for b in (ours, rubin))
    assert mine.ref.id == theirs.ref.id and dict(mine.dataId.required) == dict(theirs.dataId.required)
    got, expected = mine.get(), theirs.get()
    if dataset_type == "cat":  # a pyarrow table here, an astropy one there
        assert got.to_pydict() == {c: list(expected[c]) for c in expected.colnames}
        assert mine.get(parameters={"columns": ["x"]}).to_pydict() == {
            "x": list(theirs.get(parameters={"columns": ["x"]})["x"])}
    else:
        assert got == expected == ours.getDeferred(mine.ref).get()
    for butler in (rubin, ours):
        with pytest.raises(LookupError):
            butler.getDeferred("summary", instrument="Cam", visit=9, detector=0, collections="Cam/run1")


def test_existence_checks_as_the_rubin_butlers(pair):
    rubin, ours, _ = pair
    theirs = list(rubin.registry.queryDatasets(..., collections=...))
    mine = {r.id: r for r in ours.registry.queryDatasets(..., collections=...)}
    assert _ids(mine.values()) == sorted(set(_ids(theirs)))  # there once per collection holding it
    for ref in theirs:
        assert ours.stored(mine[ref.id]) is rubin.stored(ref) is True
        assert ours.exists(mine[ref.id], full_check=False) is bool(rubin.exists(ref, full_check=False)) is True
    assert {r.id: v for r, v in ours.stored_many(mine.values()).items()} == {
        r.id: v for r, v in rubin.stored_many(theirs).items()}
    for butler in (rubin, ours):
        assert not butler.exists("summary", instrument="Cam", visit=9, detector=0, collections="Cam/run1")


@pytest.mark.parametrize("collections,kwargs", [
    ("Cam/run1", {}), ("Cam/run1", {"name": ["s*", "cat"]}), (["Cam/best", "Cam/run1"], {"find_first": False}),
    ("Cam/run1", {"where": "visit = 2", "instrument": "Cam", "name": "s*"}), ("Cam/run1", {"limit": 3}),
])
def test_query_all_datasets_and_datasets_by_id_as_the_rubin_butlers(pair, collections, kwargs):
    rubin, ours, _ = pair
    theirs = rubin.query_all_datasets(collections, **kwargs)
    mine = ours.query_all_datasets(collections, **kwargs)
    # without find-first the Rubin butler lists a dataset once per collection holding it, skybutler once
    assert len(mine) == (len(theirs) if kwargs.get("find_first", True) else len({r.id for r in theirs}))
    if "limit" not in kwargs:  # which three the Rubin butler gives is its own order
        assert _ids(mine) == sorted(set(_ids(theirs)))
    wanted = [r.id for r in theirs] + [uuid.uuid4()]
    assert _ids(ours.get_many_datasets(wanted)) == _ids(rubin.get_many_datasets(wanted))


def test_defaults_clone_and_configuration_as_the_rubin_butlers(pair):
    rubin, ours, kind = pair
    assert ours.collections.defaults == tuple(rubin.collections.defaults) == ()
    assert ours.run is rubin.run is None
    theirs, mine = (b.clone(collections=["Cam/defaults"], run="Cam/run1") for b in (rubin, ours))
    assert mine.collections.defaults == tuple(theirs.collections.defaults) == ("Cam/defaults",)
    assert mine.run == theirs.run == "Cam/run1"
    assert mine.get("summary", instrument="Cam", visit=1, detector=2) == theirs.get(
        "summary", instrument="Cam", visit=1, detector=2)
    assert ours.clone().collections.defaults == ()
    mine.close()
    # a RUN and no collections: the RUN is searched, and a clone's new RUN too, as the Rubin butler's
    theirs, mine = (b.clone(run="Cam/run1") for b in (rubin, ours))
    assert mine.collections.defaults == tuple(theirs.collections.defaults) == ("Cam/run1",)
    assert mine.get("summary", instrument="Cam", visit=1, detector=2) == theirs.get(
        "summary", instrument="Cam", visit=1, detector=2)
    assert mine.clone(run="u/other").collections.defaults == tuple(
        theirs.clone(run="u/other").collections.defaults) == ("u/other",)
    assert mine.clone(collections=["Cam/defaults"]).collections.defaults == ("Cam/defaults",)
    mine.close()
    assert ours.dimensions is ours.universe
    assert set(rubin.dimensions.getStaticElements().names) <= set(ours.dimensions.elements)
    if kind == "served":  # the configuration is the server's to check
        with pytest.raises(SkybutlerError, match="validate_config is not available through a server"):
            ours.validateConfiguration()
        return
    assert ours.validateConfiguration() is rubin.validateConfiguration() is None
    assert ours.validateConfiguration(datasetTypeNames=["summary"], ignore=["cat"]) is None


def test_prune_and_remove_runs_leave_both_repositories_alike(pair):
    """The same writes and removals on both (under names of this client's own), then both read alike."""
    rubin, ours, kind = pair
    run, other, tag, chain = f"p{kind}/run", f"p{kind}/other", f"p{kind}/tag", f"p{kind}/chain"
    for butler in (rubin, ours):
        reg = butler.registry
        for name in (run, other):
            reg.registerRun(name)
        refs = [butler.put({"d": d}, "summary", instrument="Cam", visit=1, detector=d, run=run) for d in range(3)]
        butler.put({"d": 0}, "summary", instrument="Cam", visit=2, detector=0, run=other)
        reg.registerCollection(tag)
        reg.associate(tag, refs)
        reg.registerCollection(chain, daf_butler.CollectionType.CHAINED)
        reg.setCollectionChain(chain, [run, other, tag])
        for bad in ({"purge": True}, {"purge": True, "unstore": True, "disassociate": False}, {"tags": [run]}):
            with pytest.raises(TypeError):
                butler.pruneDatasets(refs, **bad)
        butler.pruneDatasets(refs[:1], tags=[tag])
        butler.pruneDatasets(refs[1:2], purge=True, unstore=True)
        with pytest.raises(TypeError, match="not RUN"):
            butler.removeRuns([tag])
        butler.removeRuns([other], unlink_from_chains=True)

    def state(butler):
        return (sorted(r.dataId["detector"] for r in butler.registry.queryDatasets("summary", collections=tag)),
                sorted(r.dataId["detector"] for r in butler.registry.queryDatasets("summary", collections=run)),
                list(butler.registry.getCollectionChain(chain)))

    assert state(ours) == state(rubin) == ([2], [0, 2], [run, tag])
    for butler in (rubin, ours):
        with pytest.raises(MissingCollectionError if butler is ours else daf_butler.MissingCollectionError):
            butler.registry.getCollectionType(other)


def test_what_is_not_offered_is_refused_by_name(pair):
    _, ours, _ = pair
    for name, instead in _INSTEAD.items():
        assert hasattr(ours, name) and hasattr(Butler, name)
        with pytest.raises(NotOfferedError, match=f"Butler.{name} is not offered by skybutler; use ") as refused:
            getattr(ours, name)("anything")
        assert instead in str(refused.value)
    ref = next(iter(ours.registry.queryDatasets("summary", collections="Cam/run1")))
    with pytest.raises(NotOfferedError, match="retention.purge"):
        ours.pruneDatasets([ref], unstore=True)
    with pytest.raises(NotOfferedError, match="storageClass"):
        ours.getDeferred(ref, storageClass="dict")
    assert ours.stored(ref)


def test_validate_configuration_raises_on_problems_of_the_types_named(tmp_path):
    """A template two datasets would share a file under: an error naming the type, unless it is
    not among ``datasetTypeNames`` or is ignored."""
    with Butler.create(tmp_path / "repo", templates={"vague": "{run}/{dataset_type}"}) as butler:
        butler.register_dataset_type("vague", ["instrument", "visit"], "Dict")
        butler.register_dataset_type("fine", ["instrument", "visit"], "Dict")
        with pytest.raises(ConfigError, match="not valid: path template .* of vague does not name"):
            butler.validateConfiguration()
        assert butler.validateConfiguration(datasetTypeNames=["fine"]) is None
        assert butler.validateConfiguration(ignore=["vague"]) is None


def test_chain_edits_and_default_collections_as_the_rubin_butlers(pair):
    """extend_chain appends, prepend_chain puts first, remove_from_chain takes out, and
    redefine_chain replaces, on both; the same refusals; ``butler.collections`` is the sequence of
    the default collections."""
    rubin, ours, kind = pair
    runs, chain = [f"c{kind}/{n}" for n in "abc"], f"c{kind}/chain"
    steps = [("redefine_chain", runs[:1]), ("extend_chain", runs[1:]), ("extend_chain", runs[0]),
             ("prepend_chain", [runs[2]]), ("remove_from_chain", [runs[1]])]
    seen: dict[str, list] = {"rubin": [], "ours": []}
    for who, butler in (("rubin", rubin), ("ours", ours)):
        for run in runs:
            assert butler.collections.register(run, doc=None) is True  # None: the Rubin butler's default
        butler.collections.register(chain, daf_butler.CollectionType.CHAINED)
        assert butler.collections.get_info(runs[0]).doc in ("", None)
        for method, children in steps:
            getattr(butler.collections, method)(chain, children)
            seen[who].append(tuple(butler.collections.get_info(chain).children))
        for call in (lambda c: c.remove_from_chain(chain, [f"c{kind}/none"]),
                     lambda c: c.prepend_chain(f"c{kind}/none", [runs[0]]),
                     lambda c: c.redefine_chain(chain, [f"c{kind}/none"])):
            with pytest.raises(MissingCollectionError if butler is ours else daf_butler.MissingCollectionError):
                call(butler.collections)
        with pytest.raises(Exception, match="not (a )?CHAINED|not a chained"):
            butler.collections.prepend_chain(runs[0], [runs[1]])
        assert butler.collections.get_info(chain).children == seen[who][-1]
    assert seen["ours"] == seen["rubin"] and seen["ours"][-1] == (runs[2], runs[0])
    with pytest.raises(NotOfferedError, match=r"use butler.collections.remove\(name\)"):
        ours.collections.x_remove(chain)
    assert ours.collections.get_info(chain).children == seen["ours"][-1]
    theirs, mine = (b.clone(collections=[chain, "Cam/run1"]) for b in (rubin, ours))
    assert (len(mine.collections), list(mine.collections), mine.collections[0]) == (
        len(theirs.collections), list(theirs.collections), theirs.collections[0])
    assert len(ours.collections) == len(rubin.collections) == 0
    mine.close()


def test_components_by_dataset_type_name_and_component_ref_as_the_rubin_butlers(pair):
    """``get("cat.schema", ...)``, ``get(ref.makeComponentRef("schema"))`` and a deferred
    component read the parent's file; a component the storage class lacks is refused by both."""
    rubin, ours, _ = pair
    data_id = {"instrument": "Cam", "visit": 1}
    theirs = list(rubin.get("cat.schema", data_id, collections="Cam/run1").schema.colnames)
    assert ours.get("cat.schema", data_id, collections="Cam/run1").names == theirs == ["x", "id"]
    ref = ours.find_dataset("cat", data_id, collections="Cam/run1")
    part = ref.makeComponentRef("schema")
    rubin_part = rubin.find_dataset("cat", data_id, collections="Cam/run1").makeComponentRef("schema")
    assert (part.id, part.datasetType.name, part.datasetType.component()) == (
        rubin_part.id, rubin_part.datasetType.name, rubin_part.datasetType.component())
    assert part.makeCompositeRef().datasetType == ref.datasetType and part.datasetType.isComponent()
    assert ours.get(part).names == ours.getDeferred(part).get().names == theirs
    with pytest.raises(StorageClassError, match="has no component 'wcs'; components: none"):
        ours.get("summary.wcs", instrument="Cam", visit=1, detector=0, collections="Cam/run1")
    with pytest.raises(daf_butler.UnknownComponentError):
        rubin.get("summary.wcs", instrument="Cam", visit=1, detector=0, collections="Cam/run1")
    with pytest.raises(StorageClassError, match="no component 'wcs'; components: schema"):
        ref.makeComponentRef("wcs")
    with pytest.raises(DatasetTypeError, match="a component's type is not registered"):
        ours.register_dataset_type("cat.extra", ["instrument", "visit"], "Dict")


def test_butler_keywords_dataset_type_objects_and_put_of_a_ref_as_the_rubin_butlers(repos, tmp_path):
    """``Butler(repo, writeable=True, instrument=...)``, a dataset type object for ``get`` and
    ``put``, and ``put(obj, ref)`` re-storing a removed dataset under its own ID, on both."""
    rubin, local, url, token = repos
    for ours in (Butler(local.root, writeable=True, instrument="Cam"), Butler(url, token=token, instrument="Cam")):
        assert ours.default_data_id == {"instrument": "Cam"}
        kind = "local" if ours.served_by is None else "served"
        run = f"r{kind}/put"
        done = {}
        for who, butler, dtype in (("rubin", rubin, rubin.get_dataset_type("summary")),
                                   ("ours", ours, ours.get_dataset_type("summary"))):
            butler.collections.register(run)
            ref = butler.put({"v": 1}, dtype, visit=1, detector=0, run=run, instrument="Cam")
            butler.pruneDatasets([ref], purge=True, unstore=True)
            assert not butler.exists(ref)
            if who == "ours" and kind == "served":  # the server makes the IDs of what its clients write
                with pytest.raises(NotOfferedError, match="through a server"):
                    butler.put({"v": 2}, ref)
                again = butler.put({"v": 2}, ref.dataset_type, ref.data_id, run=ref.run)
                done[who] = (True, again.run, butler.get(again), butler.get(dtype, visit=1, detector=0,
                                                                            instrument="Cam", collections=run))
                continue
            again = butler.put({"v": 2}, ref)
            done[who] = (again.id == ref.id, again.run, butler.get(again), butler.get(dtype, visit=1, detector=0,
                                                                                         instrument="Cam",
                                                                                         collections=run))
        assert done["ours"] == done["rubin"] == (True, run, {"v": 2}, {"v": 2})
        with pytest.raises(SkybutlerError, match="its data ID and RUN are the ref's"):
            ours.put({"v": 3}, again, run="elsewhere")
        ours.close()
    with pytest.raises(DataIdError, match="'colections' is not a dimension"):
        Butler(local.root, colections=["Cam/run1"])


def test_retrieve_artifacts_copies_what_the_rubin_butler_copies(pair, tmp_path):
    """The same datasets' files land in the destination (named in each butler's own layout) and
    read back as the datasets."""
    rubin, ours, kind = pair
    theirs = rubin.retrieveArtifacts(list(rubin.registry.queryDatasets("summary", collections="Cam/run1")),
                                     str(tmp_path / "theirs") + "/", preserve_path=False)
    mine = ours.retrieveArtifacts(list(ours.registry.queryDatasets("summary", collections="Cam/run1")),
                                  tmp_path / "mine", transfer="copy", preserve_path=False)
    assert len(mine) == len(theirs) == 6 and {u.scheme for u in mine} == {"file"}
    assert all(u.ospath.startswith(str(tmp_path / "mine")) and os.path.isfile(u.ospath) for u in mine)

    def contents(paths):
        return sorted(json.dumps(yaml.safe_load(open(p)), sort_keys=True) for p in paths)

    assert contents(u.ospath for u in mine) == contents(u.ospath for u in theirs)


def test_ingest_of_rubin_file_datasets_is_refused_by_name(pair, tmp_path):
    rubin, ours, _ = pair
    ref = next(iter(rubin.registry.queryDatasets("summary", collections="Cam/run1")))
    path = tmp_path / "file.yaml"
    path.write_text("a: 1\n")
    for call in (lambda: ours.ingest(daf_butler.FileDataset(str(path), [ref]), transfer="copy"),
                 lambda: ours.ingest(daf_butler.FileDataset(str(path), [ref]), daf_butler.FileDataset(str(path), [ref]))):
        with pytest.raises(NotOfferedError, match=r"ingest\(FileDataset, ...\) is not offered by skybutler; use "
                                                  r"butler.ingest\(dataset_type_name, \[\(path, data_id\)"):
            call()


@pytest.mark.parametrize("where", ["visit = 2", "visit = 3", "visit IN (1..3)"])
def test_a_query_answer_has_the_rubin_butlers_list_habits(pair, where):
    """The Rubin butler's query methods give lists; skybutler's results are read as iterated,
    and ``if refs:``, ``len()`` and indexing answer as that list does (then the results hold
    the rows read, so iterating again gives the same list)."""
    rubin, ours, _ = pair
    calls = [("query_datasets", ("summary",), {"collections": "Cam/run1"}, lambda x: (x.id, x.run)),
             ("query_data_ids", (["visit"],), {}, lambda x: dict(x.required)),
             ("query_dimension_records", ("visit",), {}, lambda x: x.id)]
    for method, args, kwargs, key in calls:
        theirs = getattr(rubin, method)(*args, where=where, instrument="Cam", explain=False, order_by=["visit"],
                                        **kwargs)
        found = getattr(ours, method)(*args, where=where, instrument="Cam", **kwargs)
        assert bool(found) is bool(theirs)
        mine = found.order_by("visit")
        assert len(mine) == mine.count() == len(theirs)
        assert [key(x) for x in mine] == [key(x) for x in theirs]
        for index in (0, -1, slice(1, None), slice(None, None, -1)):
            if theirs:
                picked, wanted = mine[index], theirs[index]
                assert ([key(x) for x in picked] == [key(x) for x in wanted] if isinstance(index, slice)
                        else key(picked) == key(wanted))
        with pytest.raises(IndexError):
            mine[len(theirs)]
        assert [key(x) for x in list(mine)] == [key(x) for x in theirs]


@pytest.mark.parametrize("element", ["visit", "detector", "visit_detector_region", "day_obs"])
def test_a_records_data_id_definition_and_dict_as_the_rubin_butlers(pair, element):
    rubin, ours, _ = pair
    theirs = {frozenset(r.dataId.required.items()): r for r in rubin.query_dimension_records(element, instrument="Cam")}
    mine = {frozenset(r.dataId.items()): r for r in ours.query_dimension_records(element, instrument="Cam")}
    assert mine.keys() == theirs.keys() and mine
    for key, record in mine.items():
        rubin_record = theirs[key]
        assert record.dataId == dict(rubin_record.dataId.required)
        assert record.definition.name == rubin_record.definition.name == element
        for split in (False, True):
            ours_dict, their_dict = record.toDict(splitTimespan=split), rubin_record.toDict(splitTimespan=split)
            assert set(ours_dict) - set(their_dict) <= {"observation_type"}  # skybutler's own visit field
            for name, value in their_dict.items():
                if name.startswith("datetime_"):
                    assert (value is None and ours_dict[name] is None) or abs((value - ours_dict[name]).sec) < 1e-6
                elif name == "timespan":
                    assert (value.begin, value.end) == (ours_dict[name].begin, ours_dict[name].end)
                elif name != "region":
                    assert ours_dict[name] == value, name
        assert ours.get_record(element, **record.dataId) == record
