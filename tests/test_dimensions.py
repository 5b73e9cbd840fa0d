"""The dimension data model: universe, groups, data IDs, records, custom universes."""

from __future__ import annotations

import textwrap
from pathlib import Path

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from skybutler import Butler, Timespan
from skybutler.dimensions import DataCoordinate, DimensionRecord, DimensionUniverse, normalize_value, regions
from skybutler.errors import (
    DataIdError,
    DimensionError,
    DimensionRecordError,
    UniverseMismatchError,
    UnknownDimensionError,
)

U = DimensionUniverse.default()

INT64_MAX = 2**63 - 1


# -- the universe ---------------------------------------------------------------


def test_default_universe_loads_with_every_documented_element():
    assert (U.name, U.version) == ("default", 2)
    for name in ("instrument", "band", "physical_filter", "detector", "day_obs", "group", "exposure", "visit",
                 "visit_definition", "visit_detector_region", "skymap", "tract", "patch", "htm7", "healpix8",
                 "visit_system", "visit_system_membership", "subfilter", "htm24", "healpix0"):
        assert name in U
    assert U["visit"].key.name == "id" and U["visit"].key.type == "int"
    assert U["instrument"].key.type == "str"
    assert U["visit"].region and U["visit"].timespan
    assert U["physical_filter"].implies == ("band",)
    assert U["exposure"].implies == ("physical_filter", "day_obs", "group")
    assert not U["visit_definition"].is_dimension
    assert U["htm7"].skypix == ("htm", 7) and U["healpix8"].skypix == ("healpix", 8)
    assert U.spatial_index == "htm7"
    assert DimensionUniverse.default() is U  # loaded once


def test_unknown_element_is_refused_with_the_known_names():
    with pytest.raises(UnknownDimensionError, match="'nope' is not a dimension element; known: instrument"):
        U["nope"]
    # it is also a KeyError, so mapping-style callers can catch it
    with pytest.raises(KeyError):
        U["nope"]


def test_group_required_implied_and_elements():
    g = U.group(["visit", "detector"])
    assert g.required == ("instrument", "visit", "detector")
    assert g.implied == ("band", "physical_filter", "day_obs")
    assert set(g.names) == set(g.required) | set(g.implied)
    assert "visit_detector_region" in g.elements
    assert "visit_definition" not in g.elements  # needs exposure too
    assert "visit_definition" in U.group(["visit", "exposure"]).elements
    assert U.group(["patch"]).required == ("skymap", "tract", "patch")
    assert U.group(["physical_filter"]).implied == ("band",)
    # a group is the closure of its names, whatever order they come in
    assert U.group(["detector", "visit"]) == g
    assert U.group(["instrument", "visit", "detector"]) == g
    assert hash(U.group(["detector", "visit"])) == hash(g)
    assert U.group(["visit", "detector"]) is g  # cached
    assert U.group([]).required == ()


def test_a_named_dimension_implied_by_another_stays_implied():
    g = U.group(["visit", "band"])
    assert g.required == ("instrument", "visit") and "band" in g.implied
    assert U.group(["physical_filter", "band"]).required == ("instrument", "physical_filter")


def test_timespans_are_half_open():
    from skybutler.errors import SkybutlerError

    a = Timespan("2025-01-01T00:00:00", "2025-01-02T00:00:00")
    b = Timespan("2025-01-02T00:00:00", None)
    assert not a.overlaps(b) and not b.overlaps(a)
    assert a.contains(a.begin) and not a.contains(a.end)
    assert Timespan(None, None).overlaps(a) and b.contains("2100-01-01T00:00:00")
    assert Timespan.from_ns(*a.to_ns()) == a and Timespan.from_ns(*b.to_ns()) == b
    with pytest.raises(SkybutlerError, match="before its begin"):
        Timespan(a.end, a.begin)


def test_a_timespan_from_stored_bounds_makes_its_times_when_asked():
    """From integer bounds: the same times, equality, hash, text and pickle as one made from times;
    a reversed or non-integer pair is refused by name."""
    import pickle

    from skybutler.errors import SkybutlerError
    from skybutler.timespan import NS_MAX, NS_MIN

    a = Timespan("2025-01-01T00:00:00", "2025-01-02T00:00:00")
    lazy = Timespan.from_ns(*a.to_ns())
    assert lazy.to_ns() == a.to_ns() and hash(lazy) == hash(a) and repr(lazy) == repr(a)
    assert lazy.begin.tai.isot == a.begin.tai.isot and lazy.end.tai.isot == a.end.tai.isot
    assert pickle.loads(pickle.dumps(lazy)) == a and pickle.loads(pickle.dumps(a)) == a
    half = Timespan.from_ns(a.to_ns()[0], None)
    assert half.end is None and half.to_ns() == (a.to_ns()[0], NS_MAX)
    assert Timespan.from_ns(NS_MIN, NS_MAX).begin is None and Timespan.from_ns(None, None) == Timespan(None, None)
    with pytest.raises(SkybutlerError, match="before its begin"):
        Timespan.from_ns(a.to_ns()[1], a.to_ns()[0])
    with pytest.raises(SkybutlerError, match="integer nanoseconds"):
        Timespan.from_ns("1", 2)
    with pytest.raises(AttributeError, match="immutable"):
        lazy.begin = None


@settings(max_examples=300, deadline=None)
@given(st.integers(-(2**61), 2**61))
def test_time_nanoseconds_round_trip_exactly(ns):
    from skybutler.timespan import ns_to_time, time_to_ns

    assert time_to_ns(ns_to_time(ns)) == ns


def test_time_nanoseconds_agree_with_calendar_arithmetic():
    """TAI has no leap seconds: ISO text -> ns since 1970-01-01 TAI is plain calendar arithmetic,
    an oracle independent of astropy's two-double representation."""
    import datetime

    from astropy.time import Time

    from skybutler.timespan import time_to_ns

    for text in ("2024-01-02T03:00:30.000000000", "2024-01-02T03:00:30.123456789", "1999-12-31T23:59:59.999999999",
                 "2060-06-30T12:00:00.000000001"):
        whole, frac = text.split(".")
        delta = datetime.datetime.fromisoformat(whole) - datetime.datetime(1970, 1, 1)
        expected = (delta.days * 86400 + delta.seconds) * 10**9 + int(frac)
        assert time_to_ns(Time(text, scale="tai", precision=9)) == expected, text


def test_group_refuses_join_elements_and_unknown_names():
    with pytest.raises(UnknownDimensionError, match="join element"):
        U.group(["visit_definition"])
    with pytest.raises(UnknownDimensionError, match="'visitt'"):
        U.group(["visitt"])


# -- data IDs -------------------------------------------------------------------


def test_standardize_orders_and_normalises():
    g = U.group(["visit", "detector"])
    c = DataCoordinate.standardize(g, {"detector": np.int32(3)}, visit=np.int64(42), instrument="Cam")
    assert list(c) == ["instrument", "visit", "detector"]
    assert c.required_values == ("Cam", 42, 3)
    assert all(type(v) is int for v in (c["visit"], c["detector"]))
    assert c == {"instrument": "Cam", "visit": 42, "detector": 3}
    assert not c.has_full


@pytest.mark.parametrize("value", ["42", 42.0, True, False, np.bool_(True), np.float64(42), None, [42], b"42"])
def test_int_dimension_rejects_wrong_types(value):
    with pytest.raises(DataIdError, match="visit must be an integer"):
        DataCoordinate.standardize(U.group(["visit"]), instrument="Cam", visit=value)


@pytest.mark.parametrize("value", [1, 1.5, True, None, b"Cam", ["Cam"]])
def test_str_dimension_rejects_wrong_types(value):
    with pytest.raises(DataIdError, match="instrument must be a string"):
        DataCoordinate.standardize(U.group(["visit"]), instrument=value, visit=1)


def test_too_long_string_and_out_of_range_integers_are_refused():
    with pytest.raises(DataIdError, match="longer than 64"):
        normalize_value(U, "instrument", "x" * 65)
    assert normalize_value(U, "instrument", "x" * 64) == "x" * 64
    assert normalize_value(U, "visit", INT64_MAX) == INT64_MAX
    # keys are 64-bit integer columns: a larger value is a bad data ID, not a database error
    for value in (2**63, -(2**63) - 1, 10**30):
        with pytest.raises(DataIdError, match="visit"):
            normalize_value(U, "visit", value)


def test_missing_and_unknown_keys():
    g = U.group(["visit", "detector"])
    with pytest.raises(DataIdError, match="missing required dimension\\(s\\) detector"):
        DataCoordinate.standardize(g, instrument="Cam", visit=1)
    with pytest.raises(UnknownDimensionError, match="'visitt' is not a dimension"):
        DataCoordinate.standardize(g, instrument="Cam", visit=1, detector=1, visitt=2)
    with pytest.raises(UnknownDimensionError, match="'tract' is not a dimension of"):
        DataCoordinate.standardize(g, instrument="Cam", visit=1, detector=1, tract=2)
    # both are DimensionErrors, so a caller can catch the whole family
    with pytest.raises(DimensionError):
        DataCoordinate.standardize(g, instrument="Cam", visit=1, detector=1, tract=2)


def test_implied_values_are_kept_when_given():
    g = U.group(["visit"])
    c = DataCoordinate.standardize(g, instrument="Cam", visit=1, band="g")
    assert c["band"] == "g"
    assert c.required == {"instrument": "Cam", "visit": 1}
    # identity is the required values only
    assert c == DataCoordinate.standardize(g, instrument="Cam", visit=1)


def test_with_values_refuses_contradictions():
    c = DataCoordinate.standardize(U.group(["visit"]), instrument="Cam", visit=1, band="g")
    assert c.with_values({"band": "g", "day_obs": 20250101}).has_full is False
    with pytest.raises(DataIdError, match="band='r'"):
        c.with_values({"band": "r"})


_INT = st.integers(min_value=-(2**63), max_value=INT64_MAX)
_STR = st.text(max_size=64)


@settings(max_examples=150, deadline=None)
@given(instrument=_STR, visit=_INT, detector=_INT, as_numpy=st.booleans())
def test_property_standardize_is_idempotent(instrument, visit, detector, as_numpy):
    g = U.group(["visit", "detector"])
    given_values = {"instrument": instrument, "visit": np.int64(visit) if as_numpy else visit,
                    "detector": np.int64(detector) if as_numpy else detector}
    first = DataCoordinate.standardize(g, given_values)
    second = DataCoordinate.standardize(g, dict(first))
    assert first == second
    assert hash(first) == hash(second)
    assert first.required_values == (instrument, visit, detector)
    assert all(type(v) is int for v in (first["visit"], first["detector"]))
    assert {first: 1}[second] == 1


_NOT_INT = st.one_of(st.floats(allow_nan=True), st.booleans(), st.text(), st.none(), st.binary(),
                     st.lists(st.integers(), max_size=2), st.integers().map(str),
                     st.integers(min_value=2**63, max_value=2**80), st.sampled_from([np.bool_(True), np.float32(1)]))
_NOT_STR = st.one_of(st.integers(), st.floats(), st.booleans(), st.none(), st.binary(),
                     st.text(min_size=65, max_size=80))


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(bad=_NOT_INT, which=st.sampled_from(["visit", "detector"]))
def test_property_wrong_int_values_raise_data_id_error(bad, which):
    values = {"instrument": "Cam", "visit": 1, "detector": 2, which: bad}
    with pytest.raises(DataIdError):
        DataCoordinate.standardize(U.group(["visit", "detector"]), values)


@settings(max_examples=100, deadline=None)
@given(bad=_NOT_STR)
def test_property_wrong_str_values_raise_data_id_error(bad):
    with pytest.raises(DataIdError):
        DataCoordinate.standardize(U.group(["visit", "detector"]), instrument=bad, visit=1, detector=2)


# -- expansion against records (needs a registry) -------------------------------


def test_expansion_fills_implied_values(butler):
    full = butler.expand_data_id(["visit", "detector"], instrument="Cam", visit=2, detector=1)
    assert full.has_full
    assert dict(full) == {"instrument": "Cam", "band": "r", "physical_filter": "Cam-r", "day_obs": 20250101,
                          "visit": 2, "detector": 1}


def test_expansion_checks_given_implied_values(butler):
    ok = butler.expand_data_id(["visit"], instrument="Cam", visit=2, band="r", physical_filter="Cam-r")
    assert ok["day_obs"] == 20250101
    # visit 2 was taken through Cam-r: band g contradicts it
    with pytest.raises(DataIdError, match="band='g'"):
        butler.expand_data_id(["visit"], instrument="Cam", visit=2, band="g")
    with pytest.raises(DataIdError, match="physical_filter='Cam-g'"):
        butler.expand_data_id(["visit"], instrument="Cam", visit=2, physical_filter="Cam-g")
    with pytest.raises(DataIdError, match="day_obs"):
        butler.expand_data_id(["visit"], instrument="Cam", visit=2, day_obs=20250102)
    # an implied value that has no record at all
    with pytest.raises(DataIdError, match="no band record"):
        butler.expand_data_id(["visit"], instrument="Cam", visit=2, band="z")


def test_expansion_refuses_values_without_records(butler):
    with pytest.raises(DataIdError, match="no visit record"):
        butler.expand_data_id(["visit", "detector"], instrument="Cam", visit=99, detector=1)
    with pytest.raises(DataIdError, match="no detector record"):
        butler.expand_data_id(["visit", "detector"], instrument="Cam", visit=1, detector=99)
    with pytest.raises(DataIdError, match="no instrument record"):
        butler.expand_data_id(["detector"], instrument="Other", detector=1)


def test_batch_expansion_matches_one_at_a_time(butler):
    store = butler.registry.dimensions
    group = butler.universe.group(["visit", "detector"])
    given = [DataCoordinate.standardize(group, instrument="Cam", visit=v, detector=d)
             for v in range(1, 7) for d in range(4)]
    given.append(DataCoordinate.standardize(group, instrument="Cam", visit=4, detector=0, band="g"))
    store.clear_caches()
    batch = store.expand_many(given)
    store.clear_caches()
    assert [dict(b) for b in batch] == [dict(store.expand(d)) for d in given]
    assert all(b.has_full for b in batch)


def test_batch_expansion_explains_the_first_bad_data_id(butler):
    store = butler.registry.dimensions
    group = butler.universe.group(["visit", "detector"])
    good = DataCoordinate.standardize(group, instrument="Cam", visit=1, detector=0)
    with pytest.raises(DataIdError, match="no visit record"):
        store.expand_many([good, DataCoordinate.standardize(group, instrument="Cam", visit=99, detector=0)])
    with pytest.raises(DataIdError, match="band='g'"):  # visit 2 was taken through Cam-r
        store.expand_many([good, DataCoordinate.standardize(group, instrument="Cam", visit=2, detector=0, band="g")])
    assert store.expand_many([]) == []


def test_a_single_instrument_is_filled_in(butler):
    assert butler.expand_data_id(["detector"], detector=1)["instrument"] == "Cam"


# -- records --------------------------------------------------------------------


def test_record_validation_accepts_key_name_or_element_name():
    a = DimensionRecord.validate(U, "detector", {"instrument": "Cam", "id": np.int16(3), "full_name": "S03"})
    b = DimensionRecord.validate(U, "detector", {"instrument": "Cam", "detector": 3, "full_name": "S03"})
    assert a == b
    assert a.identity == ("Cam", 3)
    assert a["purpose"] is None  # unspecified fields are None
    assert type(a["detector"]) is int


def test_record_validation_coerces_numbers_and_timespans():
    t = Timespan("2025-01-01T00:00:00", "2025-01-01T00:00:30")
    rec = DimensionRecord.validate(U, "visit", {"instrument": "Cam", "id": 1, "physical_filter": "Cam-g",
                                                "day_obs": 20250101, "exposure_time": 30,
                                                "timespan": (t.begin, t.end),
                                                "region": regions.circle(10, 10, 1)})
    assert rec["exposure_time"] == 30.0 and type(rec["exposure_time"]) is float
    assert rec["timespan"] == t


@pytest.mark.parametrize("row, message", [
    ({"instrument": "Cam", "full_name": "x"}, "missing 'detector'"),
    ({"instrument": "Cam", "id": "three"}, "detector must be an integer"),
    ({"instrument": "Cam", "id": 3, "colour": "red"}, "no field\\(s\\) colour"),
    ({"instrument": "Cam", "id": 3, "full_name": 5}, "detector.full_name must be str"),
])
def test_record_validation_failures(row, message):
    with pytest.raises((DimensionRecordError, DataIdError), match=message):
        DimensionRecord.validate(U, "detector", row)


def test_record_validation_failures_of_other_elements():
    with pytest.raises(DimensionRecordError, match="missing implied dimension 'band'"):
        DimensionRecord.validate(U, "physical_filter", {"instrument": "Cam", "name": "Cam-g"})
    with pytest.raises(DimensionRecordError, match="region must be an lsst.sphgeom Region"):
        DimensionRecord.validate(U, "tract", {"skymap": "s", "id": 1, "region": [(0, 0), (1, 1)]})
    with pytest.raises(DimensionRecordError, match="timespan must be a Timespan"):
        DimensionRecord.validate(U, "day_obs", {"instrument": "Cam", "id": 20250101, "timespan": "today"})
    with pytest.raises(DimensionRecordError, match="sky-pixel dimension"):
        DimensionRecord.validate(U, "htm7", {"id": 5})
    with pytest.raises(DimensionRecordError, match="instrument.visit_max must be int"):
        DimensionRecord.validate(U, "instrument", {"name": "Cam", "visit_max": 1.5})


# -- custom universes -----------------------------------------------------------

MINI = """\
name: mini
version: {version}
elements:
  telescope:
    key: {{name: name, type: str, length: 16}}
  night:
    key: {{name: id, type: int}}
    requires: [telescope]
    timespan: true
  frame:
    key: {{name: id, type: int}}
    requires: [telescope]
    implies: [night]
    fields: {{seeing: float}}
"""


def write_universe(path: Path, version: int = 1) -> Path:
    path.write_text(MINI.format(version=version))
    return path


def test_custom_universe_from_yaml(tmp_path):
    u = DimensionUniverse.from_yaml(write_universe(tmp_path / "mini.yaml", version=3))
    assert (u.name, u.version) == ("mini", 3)
    assert u.dimensions == ("telescope", "night", "frame")
    g = u.group(["frame"])
    assert g.required == ("telescope", "frame") and g.implied == ("night",)
    with pytest.raises(DataIdError, match="longer than 16"):
        DataCoordinate.standardize(g, telescope="t" * 17, frame=1)
    assert u.skypix_dimensions == ()


def test_custom_universe_with_a_bad_dependency_is_refused(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(textwrap.dedent("""\
        name: bad
        version: 1
        elements:
          frame:
            key: {name: id, type: int}
            requires: [telescope]
        """))
    with pytest.raises(UnknownDimensionError, match="'telescope'"):
        DimensionUniverse.from_yaml(path)


def test_repository_with_a_custom_universe(make_butler, tmp_path):
    path = write_universe(tmp_path / "mini.yaml")
    b = make_butler(universe=str(path), run="r", collections=["r"])
    assert b.universe.name == "mini"
    b.insert_records("telescope", [{"name": "T1"}])
    b.insert_records("night", [{"telescope": "T1", "id": n, "timespan": Timespan(f"2025-01-0{n}", f"2025-01-0{n + 1}")}
                               for n in (1, 2)])
    b.insert_records("frame", [{"telescope": "T1", "id": 7, "night": 1, "seeing": 0.8}])
    b.register_dataset_type("frame_stats", ["frame"], "Dict")
    ref = b.put({"n": 1}, "frame_stats", telescope="T1", frame=7)
    assert ref.data_id["night"] == 1
    assert b.get("frame_stats", frame=7) == {"n": 1}
    with pytest.raises(DataIdError, match="night=1, but night=2 was given"):
        b.put({"n": 2}, "frame_stats", telescope="T1", frame=7, night=2)
    with pytest.raises(UnknownDimensionError):
        b.register_dataset_type("calexp", ["visit"], "Image")


def test_universe_version_mismatch_is_refused_on_open(make_butler, stack, tmp_path):
    path = write_universe(tmp_path / "mini.yaml", version=1)
    b = make_butler("versioned", universe=str(path))
    root = b.root
    b.close()
    with Butler(root) as again:  # unchanged universe: opens
        assert again.universe.version == 1
    write_universe(path, version=2)
    with pytest.raises(UniverseMismatchError, match="version 1; this code has 'mini' version 2"):
        Butler(root)
