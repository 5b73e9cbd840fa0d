"""The repository of the Rubin where-clause comparisons, made with the Rubin butler (see
``test_rubin_where_random.py``), and the judge of each question: the Rubin butler's answer and
skybutler's on every stack of its import must agree, or both refuse, but for the documented
differences.
"""


from __future__ import annotations

import pytest

daf_butler = pytest.importorskip("lsst.daf.butler", reason="the Rubin butler is the oracle of these tests")

from astropy import units  # noqa: E402
from astropy.time import Time  # noqa: E402
from hypothesis import event  # noqa: E402
from hypothesis.control import currently_in_test_context  # noqa: E402

from rubin_repos import RubinButler, region_at  # noqa: E402
from skybutler.errors import QueryError  # noqa: E402

INST, SKYMAP = "LSSTCam", "lsst_cells_v1"
DAYS = (20250101, 20250102)
FILTERS = {"r_57": "r", "g_6": "g", "i_39": "i", "empty~holo4_003": "white"}
SCIENCE_FILTERS = ["r_57", "g_6", "i_39", "r_57"]
TARGETS = ["ECDFS", "LVK_S250830bp", None, "ECDFS"]
PROGRAMS = ["BLOCK-102", "13162", "BLOCK-102", None]
REASONS = ["survey", "sitcom-1043", None, "survey"]


def _day_start(day: int) -> Time:
    """Midnight TAI of the calendar day a day_obs names."""
    return Time(f"{str(day)[:4]}-{str(day)[4:6]}-{str(day)[6:]}T00:00:00", scale="tai")


def _exposure_span(day: int, seq: int):
    begin = _day_start(day) + (2 + seq * 0.25) * units.hour
    return daf_butler.Timespan(begin, begin + 30 * units.s)


def make_field_repo(root):
    """The Rubin repository of the module docstring; returns its butler."""
    RubinButler.makeRepo(str(root))
    b = RubinButler.from_config(str(root), writeable=True)
    reg = b.registry
    reg.insertDimensionData("instrument", {"name": INST, "visit_max": 10**14, "exposure_max": 10**14,
                                           "detector_max": 12, "class_name": "x.LsstCam", "visit_system": 0})
    reg.insertDimensionData("physical_filter", *[{"instrument": INST, "name": f, "band": band}
                                                 for f, band in FILTERS.items()])
    reg.insertDimensionData("detector", *[{
        "instrument": INST, "id": d, "full_name": f"R0{d // 4}_S{d % 4}", "name_in_raft": f"S{d % 4}",
        "raft": f"R0{d // 4}", "purpose": ["SCIENCE", "SCIENCE", "WAVEFRONT", "GUIDER"][d % 4] if d >= 8 else "SCIENCE",
    } for d in range(12)])
    reg.insertDimensionData("visit_system", {"instrument": INST, "id": 0, "name": "one-to-one"})
    for day in DAYS:
        begin = _day_start(day) - 12 * units.hour
        reg.insertDimensionData("day_obs", {"instrument": INST, "id": day,
                                            "timespan": daf_butler.Timespan(begin, begin + 1 * units.day)})
        for seq in range(1, 7):
            exp_id = day * 100000 + seq
            kind = ["bias", "dark", "science", "science", "science", "science"][seq - 1]
            k = seq - 3
            science = kind == "science"
            ra, dec = 10.0 + 5 * k + (day - DAYS[0]) * 0.5, -30.5 + k
            span = _exposure_span(day, seq)
            reg.insertDimensionData("group", {"instrument": INST, "name": f"g{exp_id}"})
            reg.insertDimensionData("exposure", {
                "instrument": INST, "id": exp_id, "obs_id": f"MC_O_{day}_{seq:06d}", "group": f"g{exp_id}",
                "physical_filter": SCIENCE_FILTERS[k] if science else "empty~holo4_003", "day_obs": day,
                "timespan": span, "exposure_time": [0.0, 30.0, 15.0, 30.0, 29.5, 30.0][seq - 1],
                "dark_time": 31.0, "observation_type": kind, "can_see_sky": science and seq != 6,
                "seq_num": seq, "seq_start": seq, "seq_end": seq, "has_simulated": False,
                "observation_reason": REASONS[k] if science else "calib",
                "science_program": PROGRAMS[k] if science else None, "target_name": TARGETS[k] if science else None,
                "tracking_ra": ra if science else None, "tracking_dec": dec if science else None,
                "azimuth": -12.5 + 10 * seq, "zenith_angle": 20.0 + seq})
            if not science:
                continue
            reg.insertDimensionData("visit", {
                "instrument": INST, "id": exp_id, "name": f"MC_O_{day}_{seq:06d}",
                "physical_filter": SCIENCE_FILTERS[k], "day_obs": day, "timespan": span, "region": region_at(ra, dec),
                "seq_num": seq, "exposure_time": [15.0, 30.0, 29.5, 30.0][k], "target_name": TARGETS[k],
                "observation_reason": REASONS[k], "science_program": PROGRAMS[k], "azimuth": -12.5 + 10 * seq,
                "zenith_angle": 20.0 + seq})
            reg.insertDimensionData("visit_definition", {"instrument": INST, "exposure": exp_id, "visit": exp_id})
            reg.insertDimensionData("visit_system_membership", {"instrument": INST, "visit": exp_id,
                                                                "visit_system": 0})
            reg.insertDimensionData("visit_detector_region", *[{
                "instrument": INST, "visit": exp_id, "detector": d,
                "region": region_at(ra + 0.25 * (d % 4), dec + 0.25 * (d // 4), 0.25)} for d in range(12)])
    reg.insertDimensionData("skymap", {"name": SKYMAP, "hash": b"\x03\x04" * 20, "tract_max": 20000,
                                       "patch_nx_max": 2, "patch_ny_max": 2})
    reg.insertDimensionData("tract", {"skymap": SKYMAP, "id": 10321, "region": region_at(9.0, -31.0, 11.0)},
                            {"skymap": SKYMAP, "id": 10322, "region": region_at(20.5, -31.0, 10.0)})
    reg.insertDimensionData("patch", *[{
        "skymap": SKYMAP, "tract": t, "id": p, "cell_x": p % 2, "cell_y": p // 2,
        "region": region_at(x0 + 5.5 * (p % 2), -31.0 + 5.5 * (p // 2), 5.5)}
        for t, x0 in ((10321, 9.0), (10322, 20.5)) for p in range(4)])
    u = b.dimensions
    reg.registerDatasetType(daf_butler.DatasetType("raw", ["instrument", "exposure", "detector"],
                                                   "StructuredDataDict", universe=u))
    reg.registerDatasetType(daf_butler.DatasetType("summary", ["instrument", "visit", "detector"],
                                                   "StructuredDataDict", universe=u))
    reg.registerDatasetType(daf_butler.DatasetType("deep", ["skymap", "tract", "patch", "band"],
                                                   "StructuredDataDict", universe=u))
    for run in ("LSSTCam/raw/all", "u/a/run1", "u/a/run2"):
        reg.registerRun(run)
    exposures = [day * 100000 + seq for day in DAYS for seq in range(1, 7)]
    visits = [e for e in exposures if e % 100000 >= 3]
    for e in exposures:
        for d in range(3):
            b.put({"e": e, "d": d}, "raw", instrument=INST, exposure=e, detector=d, run="LSSTCam/raw/all")
    first = [b.put({"v": v, "d": d}, "summary", instrument=INST, visit=v, detector=d, run="u/a/run1")
             for v in visits for d in range(4)]
    for v in visits[1:6:2]:
        for d in (0, 2):
            b.put({"v": v, "d": d, "again": True}, "summary", instrument=INST, visit=v, detector=d, run="u/a/run2")
    for t in (10321, 10322):
        for p in range(4):
            for band in ("r", "g") if p != 3 else ("r",):
                b.put({"p": p}, "deep", skymap=SKYMAP, tract=t, patch=p, band=band, run="u/a/run1")
    reg.registerCollection("u/a/best", daf_butler.CollectionType.TAGGED)
    reg.associate("u/a/best", first[::5])
    reg.registerCollection("u/a/chain", daf_butler.CollectionType.CHAINED)
    reg.setCollectionChain("u/a/chain", ["u/a/run2", "u/a/run1"])
    reg.registerCollection("u/a/chain2", daf_butler.CollectionType.CHAINED)
    reg.setCollectionChain("u/a/chain2", ["u/a/best", "u/a/chain"])
    return b


def _rubin_with_data_id(call, dims_or_element, universe):
    """The Rubin butler wants an instrument (or sky map) named when a where-clause compares a
    dimension that depends on it; it is then given as the data ID, to both butlers."""
    try:
        return call({}), {}
    except daf_butler.InvalidQueryError as err:
        if "without constraining it directly" not in str(err):
            raise
    names = universe.conform(dims_or_element).names if not isinstance(dims_or_element, str) else \
        universe[dims_or_element].minimal_group.names
    data_id = {k: v for k, v in (("instrument", INST), ("skymap", SKYMAP)) if k in names}
    return call(data_id), data_id


def rubin_data_ids(theirs, dims, where, bind):
    def call(data_id):
        with theirs.query() as query:
            return {tuple(sorted(d.required.items())) for d in query.data_ids(dims).where(where, bind=bind,
                                                                                         **data_id)}
    return _rubin_with_data_id(call, dims, theirs.dimensions)


def our_data_ids(ours, dims, where, bind, data_id):
    return {tuple(sorted(dict(d).items())) for d in ours.query_data_ids(dims, where, bind=bind, **data_id)}


def rubin_records(theirs, element, where, bind):
    def call(data_id):
        return {tuple(sorted(r.dataId.required.items())) for r in theirs.query_dimension_records(
            element, where=where, bind=bind, explain=False, **data_id)}
    return _rubin_with_data_id(call, element, theirs.dimensions)


def our_records(ours, element, where, bind, data_id):
    return {tuple(sorted((k, r[k]) for k in r.element.identity))
            for r in ours.query_dimension_records(element, where, bind=bind, **data_id)}


#: What skybutler refuses by name where the Rubin butler answers, as the user guide's differences
#: list says: a timespan literal that ends before it begins, and a sky-region OVERLAPS inside OR or NOT.
DOCUMENTED_REFUSALS = ("this timespan ends before it begins", "may only be combined with the rest of the expression")
#: What the Rubin butler refuses and skybutler answers, as the user guide's differences list says
#: (by the Rubin butler's message): arithmetic mixing integers and floats.
DOCUMENTED_ANSWERS = ("do not agree",)
#: Where the Rubin butler fails rather than refuses: its SQLite statement for some nested NOTs is
#: too deep for SQLite, which says nothing of the expression.
RUBIN_LIMITS = ("Expression tree is too large",)


def _event(text: str) -> None:
    """Counted in hypothesis's statistics (--hypothesis-show-statistics): how many expressions
    the Rubin butler answered, so that a strategy drifting into refusals shows."""
    if currently_in_test_context():
        event(text)


def _judge(theirs_call, ours_call, where, ours):
    """On every stack of ``ours``, both answer alike, or both refuse (skybutler with a QueryError,
    never an internal error), but for the documented differences; ``ours_call(butler, data_id)``
    asks one stack.  Returns whether the Rubin butler answered."""
    try:
        theirs, data_id = theirs_call()
    except Exception as err:  # noqa: BLE001 -- the Rubin butler refuses with several exception types
        _event(f"refused by the Rubin butler: {type(err).__name__}")
        for stack, butler in ours:
            if any(m in str(err) for m in DOCUMENTED_ANSWERS + RUBIN_LIMITS):
                try:
                    ours_call(butler, {})
                except QueryError:
                    pass
                continue
            with pytest.raises(QueryError):
                ours_call(butler, {})
                pytest.fail(f"the Rubin butler refuses {where!r} ({err}); skybutler answers it on {stack}")
        return False
    _event("answered by the Rubin butler" + (" (empty)" if not theirs else ""))
    for stack, butler in ours:
        try:
            mine = ours_call(butler, data_id)
        except QueryError as err:
            if any(m in str(err) for m in DOCUMENTED_REFUSALS):
                continue
            raise
        assert mine == theirs, f"{where} (on {stack})"
    return True
