"""Calibrations of a Rubin repository, compared with the Rubin butler (lsst-daf-butler) as the
oracle: several certifications overlapping in time across CALIBRATION collections chained as
Rubin's ``Cam/calib``, adjoining and unbounded validity ranges, a range split by decertify, and
calibrations of detector or physical_filter+detector.  After import skybutler finds, queries and
exports them as the Rubin butler does."""

from __future__ import annotations

import itertools
from pathlib import Path

import astropy.units as units
import pytest
from astropy.time import Time

from rubin_repos import T0, RubinButler, daf_butler, new_rubin_cam_repo, write_rubin_export
from skybutler import Butler, Timespan
from skybutler.errors import DatasetTypeError
from skybutler.interchange import export_rubin, import_rubin

DM1, DM2, CHAIN = "Cam/calib/DM-1", "Cam/calib/DM-2", "Cam/calib"
SPLIT = (T0 + 30 * units.min, T0 + 90 * units.min)  # decertified from detector 2's second bias
BOUNDARY = Time("2024-01-02T00:00:00", scale="tai")  # where detector 0..2's first bias ends, the second begins


def _tai(text: str) -> Time:
    return Time(text, scale="tai")


def make_rubin_calib_repo(root: Path):
    """Exposures 1..3 an hour apart from T0; bias (detector) and flat (physical_filter+detector)
    certified in two CALIBRATION collections behind the chain ``Cam/calib``."""
    b = new_rubin_cam_repo(root, max_id=100)
    reg = b.registry
    reg.insertDimensionData("day_obs", {"instrument": "Cam", "id": 20240102})
    for n in (1, 2, 3):
        reg.insertDimensionData("group", {"instrument": "Cam", "name": f"g{n}"})
        begin = T0 + (n - 1) * units.hour
        reg.insertDimensionData("exposure", {
            "instrument": "Cam", "id": n, "obs_id": f"CAM_{n}", "physical_filter": "Cam-r" if n < 3 else "Cam-g",
            "group": f"g{n}", "day_obs": 20240102, "seq_num": n, "exposure_time": 30.0,
            "timespan": daf_butler.Timespan(begin, begin + 30 * units.s), "observation_type": "science"})
    u = b.dimensions
    reg.registerDatasetType(daf_butler.DatasetType("bias", ["instrument", "detector"], "StructuredDataDict",
                                                   universe=u, isCalibration=True))
    reg.registerDatasetType(daf_butler.DatasetType("flat", ["instrument", "detector", "physical_filter"],
                                                   "StructuredDataDict", universe=u, isCalibration=True))
    refs = {}
    for run in ("Cam/calib/run1", "Cam/calib/run2", "Cam/calib/run3"):
        reg.registerRun(run)
        refs[run, "bias"] = [b.put({"bias": d, "run": run}, "bias", instrument="Cam", detector=d, run=run)
                             for d in range(3)]
        refs[run, "flat"] = [b.put({"flat": d, "f": f, "run": run}, "flat", instrument="Cam", detector=d,
                                   physical_filter=f, run=run) for d in range(3) for f in ("Cam-r", "Cam-g")]
    for name in (DM1, DM2):
        reg.registerCollection(name, daf_butler.CollectionType.CALIBRATION)
    # DM-1: adjoining ranges (end == next begin), the second unbounded, then split by decertify.
    reg.certify(DM1, refs["Cam/calib/run1", "bias"], daf_butler.Timespan(_tai("2023-01-01"), BOUNDARY))
    reg.certify(DM1, refs["Cam/calib/run2", "bias"], daf_butler.Timespan(BOUNDARY, None))
    reg.decertify(DM1, "bias", daf_butler.Timespan(*SPLIT), dataIds=[{"instrument": "Cam", "detector": 2}])
    reg.certify(DM1, refs["Cam/calib/run1", "flat"], daf_butler.Timespan(None, None))
    # DM-2: newer biases of detectors 0 and 1 only, from 90 minutes after T0, overlapping DM-1's.
    reg.certify(DM2, refs["Cam/calib/run3", "bias"][:2], daf_butler.Timespan(T0 + 90 * units.min, None))
    reg.certify(DM2, refs["Cam/calib/run3", "flat"][:2], daf_butler.Timespan(None, T0 + 90 * units.min))
    reg.registerCollection(CHAIN, daf_butler.CollectionType.CHAINED)
    reg.setCollectionChain(CHAIN, [DM2, DM1])
    return b


@pytest.fixture(scope="module")
def rubin(tmp_path_factory):
    base = tmp_path_factory.mktemp("rubincal")
    # the exposures too: their times select calibrations
    b, refs = write_rubin_export(make_rubin_calib_repo(base / "repo"), base, (DM1, DM2, CHAIN),
                                 elements=("day_obs", "group", "exposure"))
    return {"butler": b, "export": base / "export", "refs": refs}


@pytest.fixture
def ours(rubin, make_butler) -> Butler:
    b = make_butler("sky")
    import_rubin(b, rubin["export"])
    return b


# Instants probing every boundary: before, at and after each range's ends (half-open).
INSTANTS = [_tai("2022-06-01"), BOUNDARY - 1 * units.ns, BOUNDARY, BOUNDARY + 1 * units.s,
            T0, SPLIT[0] - 1 * units.ns, SPLIT[0], SPLIT[1] - 1 * units.ns, SPLIT[1], T0 + 2 * units.hour]


def _spans():
    for t in INSTANTS:
        yield t, t + 1 * units.ns  # (practically) an instant
    yield SPLIT[0] - 1 * units.s, SPLIT[1] + 1 * units.s  # straddles the gap


def _rubin_find(b, name, data_id, collections, span):
    try:
        return b.find_dataset(name, data_id, collections=collections, timespan=daf_butler.Timespan(*span))
    except Exception as err:  # an ambiguous lookup: several ranges overlap the timespan
        return type(err).__name__


def _our_find(b, name, data_id, collections, span):
    try:
        return b.find_dataset(name, data_id, collections=collections, timespan=Timespan(*span))
    except Exception as err:
        return type(err).__name__


@pytest.mark.parametrize("collections", [DM1, DM2, CHAIN])
def test_find_dataset_by_timespan_answers_as_the_rubin_butler(rubin, ours, collections):
    theirs_b = rubin["butler"]
    data_ids = [{"instrument": "Cam", "detector": d} for d in range(3)]
    data_ids += [{"instrument": "Cam", "detector": d, "physical_filter": f} for d in range(3) for f in ("Cam-r",)]
    for data_id, span in itertools.product(data_ids, _spans()):
        name = "flat" if "physical_filter" in data_id else "bias"
        theirs = _rubin_find(theirs_b, name, data_id, collections, span)
        mine = _our_find(ours, name, data_id, collections, span)
        theirs = getattr(theirs, "id", theirs)
        mine = getattr(mine, "id", mine)
        assert (mine is None) == (theirs is None), (name, data_id, span, mine, theirs)
        if not isinstance(theirs, str) and theirs is not None:
            assert mine == theirs, (name, data_id, span)
        elif isinstance(theirs, str):
            assert isinstance(mine, str), (name, data_id, span, mine, theirs)


@pytest.mark.parametrize("exposure", [1, 2, 3])
def test_get_by_an_exposures_data_id_finds_the_calibration_valid_then(rubin, ours, exposure):
    """The validity is matched against the exposure's timespan; a flat's physical_filter comes
    from the exposure too."""
    theirs_b = rubin["butler"]
    for name, detector in itertools.product(("bias", "flat"), range(3)):
        data_id = {"instrument": "Cam", "exposure": exposure, "detector": detector}
        try:
            theirs = theirs_b.get(name, data_id, collections=CHAIN)
        except Exception as err:
            theirs = type(err).__name__
        try:
            mine = ours.get(name, data_id, collections=CHAIN)
        except Exception as err:
            mine = type(err).__name__
        assert isinstance(mine, str) == isinstance(theirs, str), (name, data_id, mine, theirs)
        if not isinstance(theirs, str):
            assert mine == theirs, (name, data_id)


WINDOWS = [(T0 - 1 * units.hour, T0 + 1 * units.min), (SPLIT[0], SPLIT[1]), (SPLIT[1] - 1 * units.s, None),
           (BOUNDARY - 1 * units.s, BOUNDARY), (BOUNDARY, BOUNDARY + 1 * units.s)]


@pytest.mark.parametrize("window", WINDOWS, ids=range(len(WINDOWS)))
@pytest.mark.parametrize("collections", [DM1, CHAIN])
def test_query_with_a_timespan_overlaps_where_answers_as_the_rubin_butler(rubin, ours, window, collections):
    theirs_b = rubin["butler"]
    begin, end = window
    where = "bias.timespan OVERLAPS :t"
    for find_first in (False, True):
        try:
            theirs = {r.id for r in theirs_b.query_datasets(
                "bias", collections=collections, where=where, bind={"t": daf_butler.Timespan(begin, end)},
                find_first=find_first, explain=False)}
        except Exception as err:
            theirs = type(err).__name__
        try:
            mine = {r.id for r in ours.query_datasets("bias", where, collections=collections,
                                                      bind={"t": Timespan(begin, end)}, find_first=find_first)}
        except Exception as err:
            mine = type(err).__name__
        assert mine == theirs or (isinstance(theirs, str) and isinstance(mine, str)), (find_first, mine, theirs)


def _associations(b, name, collection):
    return {(a.ref.id, (None if a.timespan.begin is None else a.timespan.nsec[0],
                        None if a.timespan.end is None else a.timespan.nsec[1]))
            for a in b.registry.queryDatasetAssociations(name, collections=collection)}


def test_certifications_come_in_and_go_back_out_as_they_were(rubin, ours, tmp_path):
    for collection, name in itertools.product((DM1, DM2), ("bias", "flat")):
        theirs = _associations(rubin["butler"], name, collection)
        mine = {(ref.id, tuple(None if side is None else ns for side, ns in zip((s.begin, s.end), s.to_ns())))
                for ref, s in ours.collections.validity(collection, name)}
        assert mine == theirs and mine, (collection, name)
    assert tuple(ours.collections.get_chain(CHAIN)) == (DM2, DM1)
    runs = ["Cam/calib/run1", "Cam/calib/run2", "Cam/calib/run3"]
    refs = [r for name in ("bias", "flat") for r in ours.query_datasets(name, collections=runs, find_first=False)]
    export_rubin(ours, refs, tmp_path / "out", collections=[DM1, DM2, CHAIN])
    RubinButler.makeRepo(str(tmp_path / "back"))
    back = RubinButler.from_config(str(tmp_path / "back"), writeable=True)
    back.import_(directory=str(tmp_path / "out"), filename=str(tmp_path / "out" / "export.yaml"), transfer="copy")
    for collection, name in itertools.product((DM1, DM2), ("bias", "flat")):
        assert _associations(back, name, collection) == _associations(rubin["butler"], name, collection)
    assert tuple(back.registry.getCollectionChain(CHAIN)) == (DM2, DM1)
    for t in INSTANTS:
        span = daf_butler.Timespan(t, t + 1 * units.ns)
        for d in range(3):
            theirs = _rubin_find(rubin["butler"], "bias", {"instrument": "Cam", "detector": d}, CHAIN, (t, t + 1 * units.ns))
            again = _rubin_find(back, "bias", {"instrument": "Cam", "detector": d}, CHAIN, (t, t + 1 * units.ns))
            assert getattr(again, "id", again) == getattr(theirs, "id", theirs), (t, d, span)


def _compare(theirs_call, mine_call):
    try:
        theirs = {r.id for r in theirs_call()}
    except Exception as err:
        theirs = type(err).__name__
    try:
        mine = {r.id for r in mine_call()}
    except Exception as err:
        mine = f"{type(err).__name__}: {err}"
    assert mine == theirs or (isinstance(theirs, str) and isinstance(mine, str)), (mine, theirs)
    return theirs


@pytest.mark.parametrize("where", ["exposure = 2", "exposure = 1 AND detector = 2", "exposure IN (1, 3)",
                                   "bias.timespan OVERLAPS (T'2024-01-02T03:40:00', T'2024-01-02T04:40:00')",
                                   "bias.timespan OVERLAPS T'2024-01-02T00:00:00'",
                                   "bias.timespan.begin < T'2024-01-02T00:00:00'"])
@pytest.mark.parametrize("find_first", [False, True])
def test_query_of_calibrations_by_exposure_or_time_literal_answers_as_the_rubin_butler(rubin, ours, where,
                                                                                     find_first):
    """Naming an exposure in the where-clause joins the calibrations valid during it.  With
    find-first and two exposures whose calibrations differ, the Rubin butler refuses the query
    as ambiguous; skybutler answers for each exposure (a deliberate difference, in the guide)."""
    theirs_b = rubin["butler"]
    if find_first and where == "exposure IN (1, 3)":
        per_exposure = set().union(*({r.id for r in theirs_b.query_datasets(
            "bias", collections=CHAIN, where=f"exposure = {e}", instrument="Cam", explain=False)} for e in (1, 3)))
        assert {r.id for r in ours.query_datasets("bias", where, collections=CHAIN, instrument="Cam")} == per_exposure
        with pytest.raises(daf_butler.CalibrationLookupError):
            theirs_b.query_datasets("bias", collections=CHAIN, where=where, instrument="Cam")
        return
    if where == "exposure IN (1, 3)":  # detector 2's split bias: a row per range, once in the Rubin butler
        assert len(list(ours.query_datasets("bias", where, collections=CHAIN, instrument="Cam", find_first=False))) \
            == len(list(theirs_b.query_datasets("bias", collections=CHAIN, where=where, instrument="Cam",
                                                find_first=False))) + 1
    _compare(lambda: theirs_b.query_datasets("bias", collections=CHAIN, where=where, instrument="Cam",
                                             find_first=find_first, explain=False),
             lambda: ours.query_datasets("bias", where, collections=CHAIN, instrument="Cam", find_first=find_first))


def test_find_dataset_of_a_calibration_without_a_time(rubin, ours):
    """A calibration looked up in CALIBRATION collections with no time: the Rubin butler skips
    those collections (and finds nothing); skybutler asks for a timespan (a deliberate
    difference, in the guide).  A RUN in the search path is searched as by the Rubin butler."""
    data_id = {"instrument": "Cam", "detector": 2}
    for collections in (DM1, DM2, CHAIN):
        assert rubin["butler"].find_dataset("bias", data_id, collections=collections) is None
        with pytest.raises(DatasetTypeError, match="give a timespan"):
            ours.find_dataset("bias", data_id, collections=collections)
    for collections in (["Cam/calib/run1", DM1], [DM1, "Cam/calib/run1"]):
        theirs = rubin["butler"].find_dataset("bias", data_id, collections=collections)
        assert ours.find_dataset("bias", data_id, collections=collections).id == theirs.id


def test_certify_and_decertify_cut_ranges_as_the_rubin_butler(ours, tmp_path):
    """The same certifications and decertifications in both butlers leave the same ranges:
    half-open ranges that adjoin (end == next begin) are accepted, a decertified middle splits
    a range in two, and an overlapping certification is refused with nothing changed."""
    theirs = make_rubin_calib_repo(tmp_path / "rubin")
    reg, ops = theirs.registry, "Cam/calib/ops"
    reg.registerCollection(ops, daf_butler.CollectionType.CALIBRATION)
    by_run = {run: sorted(reg.queryDatasets("bias", collections=run), key=lambda r: r.dataId["detector"])
              for run in ("Cam/calib/run1", "Cam/calib/run2", "Cam/calib/run3")}
    mine = {run: [ours.find_dataset("bias", instrument="Cam", detector=r.dataId["detector"], collections=run)
                  for r in refs] for run, refs in by_run.items()}
    hour = T0 + 1 * units.hour
    steps = [("certify", "Cam/calib/run1", slice(None), (_tai("2023-01-01"), BOUNDARY)),
             ("certify", "Cam/calib/run2", slice(None), (BOUNDARY, None)),
             ("decertify", 1, None, (T0, hour)),
             ("decertify", None, None, (BOUNDARY - 1 * units.hour, BOUNDARY + 1 * units.hour)),
             ("certify", "Cam/calib/run3", slice(1, 2), (T0, hour)),  # fills the gap, adjoining both sides
             ("certify", "Cam/calib/run3", slice(0, 1), (T0, hour))]  # overlaps detector 0's range: refused
    for kind, what, part, (begin, end) in steps:
        if kind == "certify":
            outcomes = []
            for call in (lambda: reg.certify(ops, by_run[what][part], daf_butler.Timespan(begin, end)),
                         lambda: ours.collections.certify(ops, mine[what][part], timespan=Timespan(begin, end))):
                try:
                    call()
                    outcomes.append("ok")
                except Exception:
                    outcomes.append("refused")
            assert outcomes[0] == outcomes[1], (kind, what, outcomes)
        else:
            ids = None if what is None else [{"instrument": "Cam", "detector": what}]
            reg.decertify(ops, "bias", daf_butler.Timespan(begin, end), dataIds=ids)
            ours.collections.decertify(ops, "bias", timespan=Timespan(begin, end), data_ids=ids)
        rubin_keys = {r.id: (r.run, r.dataId["detector"]) for refs in by_run.values() for r in refs}
        our_keys = {r.id: (r.run, r.data_id["detector"]) for refs in mine.values() for r in refs}
        assert {(our_keys[ref.id], tuple(None if side is None else ns for side, ns in zip((s.begin, s.end), s.to_ns())))
                for ref, s in ours.collections.validity(ops, "bias")} == \
            {(rubin_keys[i], span) for i, span in _associations(theirs, "bias", ops)}, kind


def test_a_whole_rubin_repository_brings_its_calibrations_and_exposures(rubin, make_butler):
    """``skybutler import REPO RUBIN_REPO`` of a repository with calibrations: every range and
    the chain come in, and so do the exposures whose times select a calibration."""
    from click.testing import CliRunner

    from skybutler.cli.main import cli

    ours = make_butler("whole")
    result = CliRunner().invoke(cli, ["import", str(ours.root), str(rubin["export"].parent / "repo")])
    assert result.exit_code == 0, result.output
    for collection, name in itertools.product((DM1, DM2), ("bias", "flat")):
        mine = {(ref.id, tuple(None if side is None else ns for side, ns in zip((s.begin, s.end), s.to_ns())))
                for ref, s in ours.collections.validity(collection, name)}
        assert mine == _associations(rubin["butler"], name, collection)
    assert tuple(ours.collections.get_chain(CHAIN)) == (DM2, DM1)
    for exposure, detector in itertools.product((1, 2, 3), range(3)):
        data_id = {"instrument": "Cam", "exposure": exposure, "detector": detector}
        assert ours.get("flat", data_id, collections=CHAIN) == rubin["butler"].get("flat", data_id, collections=CHAIN)


def test_exporting_the_calib_chain_alone_takes_its_collections_to_the_rubin_butler(rubin, ours, tmp_path):
    """``skybutler export --format rubin -c Cam/calib``, the chain only: its CALIBRATION children
    go too (before it), so the Rubin butler imports the chain with every certification."""
    from click.testing import CliRunner

    from skybutler.cli.main import cli

    result = CliRunner().invoke(cli, ["export", str(ours.root), str(tmp_path / "out"), "--format", "rubin",
                                      "-c", CHAIN])
    assert result.exit_code == 0, result.output
    RubinButler.makeRepo(str(tmp_path / "back"))
    back = RubinButler.from_config(str(tmp_path / "back"), writeable=True)
    back.import_(directory=str(tmp_path / "out"), filename=str(tmp_path / "out" / "export.yaml"), transfer="copy")
    assert tuple(back.registry.getCollectionChain(CHAIN)) == (DM2, DM1)
    for collection, name in itertools.product((DM1, DM2), ("bias", "flat")):
        assert _associations(back, name, collection) == _associations(rubin["butler"], name, collection)
    # skybutler's own format keeps RUNs only, and says which named collections it leaves out
    own = CliRunner().invoke(cli, ["export", str(ours.root), str(tmp_path / "own"), "-c", CHAIN])
    assert own.exit_code == 0, own.output
    said = " ".join(own.stderr.split())
    assert f"{CHAIN} (CHAINED)" in said and "--format rubin writes them too" in said


def test_through_a_server_calibrations_are_found_as_the_rubin_butler_finds_them(rubin, ours):
    """A remote butler's get by an exposure's data ID and find_dataset by time, on the imported repository."""
    pytest.importorskip("fastapi")
    from server_helpers import running_server

    if ours.registry.db.dialect != "sqlite":
        pytest.skip("the server composes the local lookups, themselves tested on every stack")
    from skybutler.access import Access

    access = Access(ours.registry.access)
    access.add_user("boss", admin=True)
    token = access.create_token("boss")
    with running_server(ours.root, access_recheck_seconds=0) as url:
        remote = Butler(url, token=token)
        for exposure, detector in itertools.product((1, 2, 3), range(3)):
            data_id = {"instrument": "Cam", "exposure": exposure, "detector": detector}
            assert remote.get("flat", data_id, collections=CHAIN) == \
                rubin["butler"].get("flat", data_id, collections=CHAIN)
        for t, d in itertools.product(INSTANTS, range(3)):
            span = (t, t + 1 * units.ns)
            theirs = _rubin_find(rubin["butler"], "bias", {"instrument": "Cam", "detector": d}, CHAIN, span)
            mine = _our_find(remote, "bias", {"instrument": "Cam", "detector": d}, CHAIN, span)
            assert getattr(mine, "id", mine) == getattr(theirs, "id", theirs), (t, d)


def test_a_timespan_given_wins_over_the_exposure_of_the_data_id(rubin, ours):
    """get('bias', {exposure, detector}, timespan=...): the Rubin butler looks up the bias valid
    during the timespan given, not the exposure's; so does skybutler (which also takes a flat's
    physical_filter from the exposure, where the Rubin butler fails on it)."""
    answered = 0
    for t, detector in itertools.product(INSTANTS, range(3)):
        data_id = {"instrument": "Cam", "exposure": 3, "detector": detector}
        try:
            theirs = rubin["butler"].get("bias", data_id, collections=CHAIN, timespan=daf_butler.Timespan(t, t + 1 * units.ns))
        except Exception as err:
            theirs = type(err).__name__
        try:
            mine = ours.get("bias", data_id, collections=CHAIN, timespan=Timespan(t, t + 1 * units.ns))
        except Exception as err:
            mine = type(err).__name__
        assert mine == theirs or (isinstance(mine, str) and isinstance(theirs, str)), (t, detector, mine, theirs)
        answered += not isinstance(theirs, str)
        flat = ours.find_dataset("flat", data_id, collections=CHAIN, timespan=Timespan(t, t + 1 * units.ns))
        assert flat is None or flat.data_id["physical_filter"] == "Cam-g"
    assert answered > len(INSTANTS)
