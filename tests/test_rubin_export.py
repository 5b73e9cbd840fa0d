"""From skybutler to the Rubin butler (lsst-daf-butler, the ``rubin-test`` extra): our exports and zips
go into it, with the camera records its universe defines, and its dataset IDs round-trip.

Every test here uses the real Rubin butler as the oracle; without it they are skipped.
"""

from __future__ import annotations

import pytest

daf_butler = pytest.importorskip("lsst.daf.butler", reason="the Rubin butler (pip install 'skybutler[rubin-test]') "
                                 "is the oracle of these tests")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from astropy.table import Table  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from skybutler import Butler  # noqa: E402
from skybutler.cli.main import cli  # noqa: E402
from skybutler.interchange import export_rubin, import_rubin  # noqa: E402
from test_rubin_interchange import _ids, assert_same_repository, rubin  # noqa: E402,F401 - the module's fixture

RubinButler = daf_butler.Butler


# -- and back out: skybutler -> the Rubin butler ----------------------------------


def make_skybutler_repo(root: Path) -> Butler:
    """A skybutler repository made with skybutler alone: Dict, Table and Image datasets and a
    calibration, in RUN, TAGGED, CALIBRATION and CHAINED collections."""
    from conftest import populate
    from skybutler import Timespan

    b = Butler.create(root, run="u/ana/run", collections=["u/ana/run"])
    populate(b, n_visits=3, n_detectors=2)
    b.insert_records("group", [{"instrument": "Cam", "name": f"g{v}"} for v in (1, 2, 3)])
    b.insert_records("exposure", [{**{k: v for k, v in b.get_record("visit", instrument="Cam", visit=n).items()
                                      if k in ("instrument", "physical_filter", "day_obs", "timespan", "exposure_time")},
                                   "id": n, "group": f"g{n}", "obs_id": f"CAM_{n}", "can_see_sky": True, "seq_num": n}
                                  for n in (1, 2, 3)])
    b.insert_records("visit_definition", [{"instrument": "Cam", "exposure": n, "visit": n} for n in (1, 2, 3)])
    b.insert_records("visit_system", [{"instrument": "Cam", "id": 0, "name": "one-to-one"}])
    b.insert_records("visit_system_membership", [{"instrument": "Cam", "visit": v, "visit_system": 0}
                                                 for v in (1, 2, 3)])
    b.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    b.register_dataset_type("src", ["instrument", "visit"], "Table")
    b.register_dataset_type("calexp", ["instrument", "visit", "detector"], "Image")
    b.register_dataset_type("flat", ["instrument", "detector", "physical_filter"], "StructuredDataDict",
                            is_calibration=True)
    metrics = b.put_many("metrics", [({"scatter": 0.01 * v, "n": d}, {"instrument": "Cam", "visit": v, "detector": d})
                                     for v in (1, 2, 3) for d in (0, 1)])
    b.put_many("src", [(Table({"ra": np.linspace(0, 1, 5) + v, "flux": np.arange(5.0)}),
                        {"instrument": "Cam", "visit": v}) for v in (1, 2, 3)])
    b.put_many("calexp", [(np.full((8, 6), v * 10 + d, dtype=np.float32), {"instrument": "Cam", "visit": v,
                                                                          "detector": d})
                          for v in (1, 2) for d in (0, 1)])
    flats = b.put_many("flat", [({"flat": d}, {"instrument": "Cam", "detector": d, "physical_filter": "Cam-g"})
                                for d in (0, 1)], run="Cam/calib/run")
    b.collections.certify("Cam/calib", flats, timespan=Timespan("2025-01-01T00:00:00", None))
    b.collections.associate("best", metrics[:3])
    b.collections.set_chain("Cam/defaults", ["best", "u/ana/run", "Cam/calib"])
    return b


@pytest.fixture
def rubin_image_formatter(monkeypatch):
    """The Rubin butler imports a dataset only if its formatter class imports.  Its FITS image
    formatters live in lsst.obs.base, part of the Rubin science stack and not on PyPI; a stand-in
    class of that name lets the import proceed (image files are then compared byte for byte)."""
    import sys
    import types

    try:
        import lsst.obs.base.formatters.fitsExposure  # noqa: F401
        return
    except ImportError:
        pass

    class FitsImageFormatter(daf_butler.FormatterV2):
        default_extension = ".fits"
        supported_extensions = frozenset({".fits"})

    names = ["lsst.obs", "lsst.obs.base", "lsst.obs.base.formatters", "lsst.obs.base.formatters.fitsExposure"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    sys.modules[names[-1]].FitsImageFormatter = FitsImageFormatter
    FitsImageFormatter.__module__ = names[-1]
    for parent, child in zip(names, names[1:]):
        setattr(sys.modules[parent], child.rsplit(".", 1)[1], sys.modules[child])
    import lsst

    monkeypatch.setattr(lsst, "obs", sys.modules["lsst.obs"], raising=False)


def test_skybutler_export_goes_into_the_rubin_butler(tmp_path, rubin_image_formatter):
    ours = make_skybutler_repo(tmp_path / "sky")
    result = CliRunner().invoke(cli, ["export", str(tmp_path / "sky"), str(tmp_path / "out"), "--format", "rubin",
                                      "-c", "u/ana/run,Cam/calib/run,best,Cam/calib,Cam/defaults"])
    assert result.exit_code == 0, result.output
    assert "exported 15 datasets" in result.output
    RubinButler.makeRepo(str(tmp_path / "rubin"))
    theirs = RubinButler.from_config(str(tmp_path / "rubin"), writeable=True)
    theirs.import_(directory=str(tmp_path / "out"), filename=str(tmp_path / "out" / "export.yaml"), transfer="copy")
    reg = theirs.registry
    # Same datasets under the same IDs, and the Rubin butler reads them back.
    for name in ("metrics", "src", "calexp", "flat"):
        mine = list(ours.query_datasets(name, collections=["u/ana/run", "Cam/calib/run"], find_first=False))
        assert _ids(reg.queryDatasets(name, collections=..., findFirst=False)) == _ids(mine), name
    assert theirs.get("metrics", instrument="Cam", visit=2, detector=1, collections="Cam/defaults") == \
        ours.get("metrics", instrument="Cam", visit=2, detector=1)
    table = theirs.get("src", instrument="Cam", visit=3, collections="u/ana/run")
    assert list(table["ra"]) == list(ours.get("src", instrument="Cam", visit=3, parameters={"as": "astropy"})["ra"])
    assert reg.getDatasetType("src").storageClass_name == "ArrowAstropy"
    # Images: the Rubin butler's image classes need its C++ stack; the file is compared byte for byte.
    (image,) = reg.queryDatasets("calexp", collections="u/ana/run", instrument="Cam", visit=2, detector=0)
    mine = ours.find_dataset("calexp", instrument="Cam", visit=2, detector=0)
    assert theirs.getURI(image).read() == Path(ours.get_uri(mine).removeprefix("file://")).read_bytes()
    # Records, with their timespans and regions, and collections of every kind.
    assert_same_repository(theirs, ours, types=("metrics", "src", "calexp", "flat"),
                           elements=("instrument", "physical_filter", "detector", "day_obs", "group", "exposure",
                                     "visit", "visit_definition", "visit_system", "visit_system_membership"),
                           where="band = 'g' AND detector IN (0..1)", tagged="best",
                           calib=("Cam/calib", "flat", 2))
    # Queries in the Rubin butler's own where-language give the same answers.
    where = "visit.exposure_time > 20 AND band IN ('g', 'r')"
    assert _ids(reg.queryDatasets("metrics", collections="u/ana/run", where=where)) == \
        _ids(ours.query_datasets("metrics", where, collections="u/ana/run"))


def test_skybutler_zip_goes_into_the_rubin_butler_and_rubin_ids_round_trip(rubin, tmp_path):  # noqa: F811
    # Rubin -> skybutler -> Rubin: a zip of the imported datasets ingests into the Rubin butler
    # with the IDs the Rubin butler gave them first.
    ours = Butler.create(tmp_path / "sky")
    import_rubin(ours, rubin["export"])
    refs = list(ours.query_datasets("summary", collections="Cam/run1"))
    assert export_rubin(ours, refs, tmp_path / "out.zip") == len(refs)
    RubinButler.makeRepo(str(tmp_path / "rubin"))
    theirs = RubinButler.from_config(str(tmp_path / "rubin"), writeable=True)
    with rubin["butler"].export(filename=str(tmp_path / "records.yaml"), format="yaml") as export:
        for element in ("instrument", "physical_filter", "detector", "day_obs", "group", "visit_system", "exposure",
                        "visit"):
            export.saveDimensionData(element, rubin["butler"].registry.queryDimensionRecords(element))
    theirs.import_(filename=str(tmp_path / "records.yaml"))
    theirs.ingest_zip(str(tmp_path / "out.zip"))
    back = list(theirs.registry.queryDatasets("summary", collections="Cam/run1"))
    assert _ids(back) == _ids(r for r in rubin["refs"] if r.datasetType.name == "summary")
    for ref in back:
        assert theirs.get(ref) == rubin["butler"].get(ref)


# -- cameras: the Rubin universe's instrument and detector fields ----------------------


def test_camera_records_go_into_the_rubin_butler_as_its_universe_defines_them(tmp_path, rubin_image_formatter):
    """Raws of real cameras ingested by skybutler go into the Rubin butler with the instrument's
    visit_max/exposure_max and each detector's raft/name_in_raft filled: what
    astro-metadata-translator makes of the raw's header (its detector group and name)."""
    import astro_metadata_translator as amt
    from astropy.io import fits

    import camera_headers as ch
    from skybutler.ingest import ingest_raws

    headers = {"hsc-50": ch.hsc(detector=50), "hsc-104": ch.hsc(detector=104), "decam-1": ch.decam(detector=1),
               "decam-62": ch.decam(detector=62), "megaprime-9": ch.megaprime(detector=9)}
    (tmp_path / "raws").mkdir()
    for name, header in headers.items():
        hdu = fits.PrimaryHDU(np.zeros((4, 4), dtype=np.int16))
        hdu.header.update({k: v for k, v in header.items() if k not in ("SIMPLE", "BITPIX", "NAXIS")})
        hdu.writeto(tmp_path / "raws" / f"{name}.fits")
    with Butler.create(tmp_path / "sky") as ours:
        assert ingest_raws(ours, tmp_path / "raws", processes=1).ok
        refs = list(ours.query_datasets("raw", collections=["HSC/raw/all", "DECam/raw/all", "MegaPrime/raw/all"]))
        assert export_rubin(ours, refs, tmp_path / "out") == 5
    RubinButler.makeRepo(str(tmp_path / "rubin"))
    theirs = RubinButler.from_config(str(tmp_path / "rubin"), writeable=True)
    theirs.import_(directory=str(tmp_path / "out"), filename=str(tmp_path / "out" / "export.yaml"), transfer="copy")
    reg = theirs.registry
    maxima = {r.name: (r.visit_max, r.exposure_max, r.detector_max) for r in reg.queryDimensionRecords("instrument")}
    assert maxima == {"HSC": (21474800, 21474800, 112), "DECam": (10**7, 10**7, 63),
                      "MegaPrime": (2**31, 2**31, 40)}
    for name, header in headers.items():
        info = amt.ObservationInfo(header, filename=name)
        (record,) = reg.queryDimensionRecords("detector", instrument=info.instrument, detector=info.detector_num)
        assert (record.full_name, record.raft, record.name_in_raft) == (
            info.detector_unique_name, info.detector_group, info.detector_name), name
        assert record.purpose == ("FOCUS" if name == "hsc-104" else "SCIENCE")
        # Every exposure and visit ID the camera makes is below the maxima.
        assert info.exposure_id < maxima[info.instrument][1] and info.visit_id < maxima[info.instrument][0]
    # The Rubin butler's own where-language finds a detector by its raft and name in the raft.
    found = {(d["instrument"], d["detector"]) for d in reg.queryDataIds(
        ["detector"], where="detector.raft = 'S' AND detector.name_in_raft = '29'")}
    assert found == {("DECam", 1)}
