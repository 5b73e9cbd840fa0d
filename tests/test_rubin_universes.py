"""The Rubin butler's dimension universes (lsst-daf-butler, the ``rubin-test`` extra): ours holds the
current one, and exports and zips of older ones come in migrated.

Every test here uses the real Rubin butler as the oracle; without it they are skipped.
"""

from __future__ import annotations

import pytest

daf_butler = pytest.importorskip("lsst.daf.butler", reason="the Rubin butler (pip install 'skybutler[rubin-test]') "
                                 "is the oracle of these tests")

from pathlib import Path  # noqa: E402

import astropy.units as units  # noqa: E402

from rubin_repos import T0, timespan_of  # noqa: E402
from skybutler.dimensions import DimensionUniverse  # noqa: E402
from skybutler.interchange import import_rubin  # noqa: E402
from test_rubin_interchange import _ids  # noqa: E402

RubinButler = daf_butler.Butler


def test_default_universe_holds_everything_the_rubin_universe_holds():
    rubin = daf_butler.DimensionUniverse()
    assert (rubin.namespace, rubin.version) == ("daf_butler", 8)
    ours = DimensionUniverse.default()
    for element in rubin.getStaticElements():
        name = element.name
        assert name in ours, name
        mine = ours[name]
        if name in rubin.skypix_dimensions.names:
            assert mine.skypix is not None
            continue
        assert set(mine.identity) == set(element.required.names) | set(element.minimal_group.required), name
        if mine.key is not None:
            key = element.primaryKey
            assert (mine.key.name, mine.key.type) == (key.name, "int" if key.getPythonType() is int else "str")
        assert set(mine.implies) == set(element.implied.names), name
        names = {k.name for k in getattr(element, "alternate_keys", ())} | {m.name for m in element.metadata}
        assert names <= set(mine.fields), (name, names - set(mine.fields))
        assert mine.region == (element.spatial is not None), name
        assert mine.timespan == (element.temporal is not None), name


# -- older Rubin universes ------------------------------------------------------------


def make_old_universe_repo(root: Path, version: int):
    """A Rubin repository of universe ``version``, made by the Rubin butler itself: exposures of
    three observation types, each with a dataset."""
    from lsst.daf.butler import DimensionConfig

    config = Path(daf_butler.__file__).parent / "configs" / "old_dimensions" / f"daf_butler_universe{version}.yaml"
    RubinButler.makeRepo(str(root), dimensionConfig=DimensionConfig(str(config)))
    b = RubinButler.from_config(str(root), writeable=True)
    assert b.dimensions.version == version
    reg = b.registry
    reg.insertDimensionData("instrument", {"name": "Cam", "visit_max": 1000, "exposure_max": 1000, "detector_max": 4,
                                           "class_name": "x.Cam", "visit_system": 0})
    reg.insertDimensionData("physical_filter", {"instrument": "Cam", "name": "Cam-r", "band": "r"})
    reg.insertDimensionData("detector", {"instrument": "Cam", "id": 0, "full_name": "R0_S0", "name_in_raft": "S0",
                                         "raft": "R0", "purpose": "SCIENCE"})
    reg.insertDimensionData("day_obs", {"instrument": "Cam", "id": 20240101})
    reg.insertDimensionData("group", {"instrument": "Cam", "name": "g"})
    reg.registerDatasetType(daf_butler.DatasetType("summary", ["instrument", "exposure", "detector"],
                                                   "StructuredDataDict", universe=b.dimensions))
    reg.registerRun("Cam/run")
    refs = []
    for n, kind in enumerate(("science", "dark", "cbp"), start=1):
        exposure = {"instrument": "Cam", "id": n, "obs_id": f"C{n}", "physical_filter": "Cam-r", "group": "g",
                    "day_obs": 20240101, "timespan": timespan_of(T0 + n * units.minute, 30.0), "exposure_time": 30.0,
                    "observation_type": kind, "seq_num": n}
        if version >= 7:
            exposure["can_see_sky"] = kind == "cbp"  # its own value, unlike any the migration would give
        reg.insertDimensionData("exposure", exposure)
        refs.append(b.put({"n": n}, "summary", instrument="Cam", exposure=n, detector=0, run="Cam/run"))
    return b, refs


@pytest.mark.parametrize("version", [6, 7])
def test_exports_and_zips_of_older_rubin_universes_come_in_migrated(tmp_path, make_butler, version):
    """Universe 6 and 7 exports and zips written by the Rubin butler come in; version 6's exposures
    gain can_see_sky as the Rubin butler's 6-to-7 migration sets it (sky types True, dark/bias
    types False, others NULL), version 7's keep their own."""
    b, refs = make_old_universe_repo(tmp_path / "rubin", version)
    (tmp_path / "export").mkdir()
    with b.export(directory=str(tmp_path / "export"), format="yaml", transfer="copy") as export:
        export.saveDatasets(refs)
    assert f"universe_version: {version}" in (tmp_path / "export" / "export.yaml").read_text()
    (tmp_path / "zip").mkdir()
    b.retrieve_artifacts_zip([r.expanded(b.registry.expandDataId(r.dataId)) for r in refs], str(tmp_path / "zip"))
    (zipped,) = (tmp_path / "zip").glob("*.zip")
    expected = {1: True, 2: False, 3: None} if version == 6 else {1: False, 2: False, 3: True}
    for source in (tmp_path / "export", zipped):
        ours = make_butler(f"sky-{source.name}")
        assert import_rubin(ours, source) == 3
        got = {r["exposure"]: r["can_see_sky"] for r in ours.query_dimension_records("exposure")}
        assert got == expected, source.name
        assert _ids(ours.query_datasets("summary", collections="Cam/run")) == _ids(refs)
        assert {r["exposure"]: r["observation_type"] for r in ours.query_dimension_records("exposure")} == \
            {1: "science", 2: "dark", 3: "cbp"}
        assert ours.get("summary", instrument="Cam", exposure=2, detector=0, collections="Cam/run") == {"n": 2}
