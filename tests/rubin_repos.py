"""Small Rubin repositories and exports, written by the Rubin butler itself (lsst-daf-butler,
the ``rubin-test`` extra): the oracle side of the interchange tests.  Importing this
module skips the importing test where the Rubin butler is not installed."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import astropy.units as units
import numpy as np
import pytest
from astropy.table import Table
from astropy.time import Time

daf_butler = pytest.importorskip("lsst.daf.butler", reason="the Rubin butler (pip install 'skybutler[rubin-test]') "
                                 "is the oracle of these tests")

from lsst.sphgeom import ConvexPolygon, LonLat, UnitVector3d  # noqa: E402

from conftest import stack_locations  # noqa: E402
from skybutler import Butler  # noqa: E402
from skybutler.interchange import import_rubin  # noqa: E402

RubinButler = daf_butler.Butler
T0 = Time("2024-01-02T03:00:00.123456789", scale="tai", precision=9)


def region_at(ra: float, dec: float = 0.0, size: float = 1.0) -> ConvexPolygon:
    """A square of ``size`` degrees with its corner at (``ra``, ``dec``)."""
    return ConvexPolygon([UnitVector3d(LonLat.fromDegrees(ra + a, dec + d))
                          for a, d in ((0, 0), (size, 0), (size, size), (0, size))])


def timespan_of(begin: Time, seconds: float):
    """The Rubin butler's timespan of ``seconds`` from ``begin``."""
    return daf_butler.Timespan(begin, begin + seconds * units.s)


def new_rubin_cam_repo(root: Path, max_id: int = 1000):
    """A new Rubin repository at ``root`` (its writeable butler) holding the instrument Cam (visit
    and exposure IDs below ``max_id``), its filters Cam-r and Cam-g and its detectors 0..2."""
    RubinButler.makeRepo(str(root))
    b = RubinButler.from_config(str(root), writeable=True)
    reg = b.registry
    reg.insertDimensionData("instrument", {"name": "Cam", "visit_max": max_id, "exposure_max": max_id,
                                           "detector_max": 4, "class_name": "x.Cam", "visit_system": 0})
    reg.insertDimensionData("physical_filter", {"instrument": "Cam", "name": "Cam-r", "band": "r"},
                            {"instrument": "Cam", "name": "Cam-g", "band": "g"})
    reg.insertDimensionData("detector", *[{"instrument": "Cam", "id": i, "full_name": f"R0{i}", "name_in_raft": f"S{i}",
                                           "raft": "R0", "purpose": "SCIENCE"} for i in range(3)])
    return b


def make_rubin_repo(root: Path):
    """A small Rubin repository: an instrument with detectors, exposures, visits in a visit
    system, a sky map, and datasets of three storage classes in RUN, TAGGED, CALIBRATION and
    CHAINED collections."""
    b = new_rubin_cam_repo(root)
    reg = b.registry
    reg.insertDimensionData("day_obs", {"instrument": "Cam", "id": 20240101,
                                        "timespan": timespan_of(Time("2024-01-01T12:00", scale="tai"), 86400)})
    reg.insertDimensionData("group", {"instrument": "Cam", "name": "g1"}, {"instrument": "Cam", "name": "g2"})
    reg.insertDimensionData("visit_system", {"instrument": "Cam", "id": 0, "name": "one-to-one"})
    for n, (band, ra) in enumerate((("r", 10.0), ("g", 20.0)), start=1):
        span = timespan_of(T0 + n * units.hour, 30.0)
        reg.insertDimensionData("exposure", {
            "instrument": "Cam", "id": n, "obs_id": f"CAM_{n}", "physical_filter": f"Cam-{band}", "group": f"g{n}",
            "day_obs": 20240101, "timespan": span, "exposure_time": 30.0, "can_see_sky": n == 1, "seq_num": n,
            "seq_start": n, "seq_end": n, "has_simulated": False, "observation_type": "science", "azimuth": 12.5 * n,
            "observation_reason": "survey", "tracking_ra": ra, "tracking_dec": 0.5})
        reg.insertDimensionData("visit", {"instrument": "Cam", "id": n, "name": f"CAM_{n}",
                                          "physical_filter": f"Cam-{band}", "day_obs": 20240101, "timespan": span,
                                          "region": region_at(ra), "seq_num": n, "exposure_time": 30.0, "azimuth": 1.5})
        reg.insertDimensionData("visit_definition", {"instrument": "Cam", "exposure": n, "visit": n})
        reg.insertDimensionData("visit_system_membership", {"instrument": "Cam", "visit": n, "visit_system": 0})
        reg.insertDimensionData("visit_detector_region", *[{"instrument": "Cam", "visit": n, "detector": i,
                                                            "region": region_at(ra + 0.2 * i)} for i in range(3)])
    reg.insertDimensionData("skymap", {"name": "sky", "hash": b"\x01\x02" * 20, "tract_max": 10,
                                       "patch_nx_max": 3, "patch_ny_max": 3})
    reg.insertDimensionData("tract", {"skymap": "sky", "id": 7, "region": region_at(10.0)})
    reg.insertDimensionData("patch", *[{"skymap": "sky", "tract": 7, "id": p, "cell_x": p, "cell_y": 0,
                                        "region": region_at(10.0 + 0.3 * p)} for p in range(2)])
    u = b.dimensions
    reg.registerDatasetType(daf_butler.DatasetType("summary", ["instrument", "visit", "detector"],
                                                   "StructuredDataDict", universe=u))
    reg.registerDatasetType(daf_butler.DatasetType("cat", ["instrument", "visit"], "ArrowAstropy", universe=u))
    reg.registerDatasetType(daf_butler.DatasetType("bias", ["instrument", "detector"], "StructuredDataDict",
                                                   universe=u, isCalibration=True))
    reg.registerDatasetType(daf_butler.DatasetType("deepSummary", ["skymap", "tract", "patch", "band"],
                                                   "StructuredDataDict", universe=u))
    for run in ("Cam/run1", "Cam/calib/run"):
        reg.registerRun(run)
    refs = [b.put({"visit": v, "detector": d, "values": [v * 0.5, d]}, "summary", instrument="Cam", visit=v,
                  detector=d, run="Cam/run1") for v in (1, 2) for d in range(3)]
    refs += [b.put(Table({"x": np.arange(4.0) + v, "id": np.arange(4)}), "cat", instrument="Cam", visit=v,
                   run="Cam/run1") for v in (1, 2)]
    refs += [b.put({"patch": p}, "deepSummary", skymap="sky", tract=7, patch=p, band="r", run="Cam/run1")
             for p in range(2)]
    bias = [b.put({"bias": d}, "bias", instrument="Cam", detector=d, run="Cam/calib/run") for d in range(3)]
    reg.registerCollection("Cam/calib", daf_butler.CollectionType.CALIBRATION)
    reg.certify("Cam/calib", bias[:2], daf_butler.Timespan(Time("2024-01-01", scale="tai"), None))
    reg.certify("Cam/calib", bias[2:], daf_butler.Timespan(Time("2023-01-01", scale="tai"),
                                                           Time("2024-06-01", scale="tai")))
    reg.registerCollection("Cam/best", daf_butler.CollectionType.TAGGED)
    reg.associate("Cam/best", refs[:2])
    reg.registerCollection("Cam/defaults", daf_butler.CollectionType.CHAINED)
    reg.setCollectionChain("Cam/defaults", ["Cam/best", "Cam/run1", "Cam/calib"])
    return b


def make_rubin_export(base: Path):
    """The Rubin repository of :func:`make_rubin_repo` in ``base/repo`` and its export.yaml
    directory ``base/export`` (every dataset, and the collections a user searches); returns
    the Rubin butler and the exported refs."""
    return write_rubin_export(make_rubin_repo(base / "repo"), base, ("Cam/best", "Cam/calib", "Cam/defaults"))


def write_rubin_export(b, base: Path, collections: tuple[str, ...] = (), elements: tuple[str, ...] = ()):
    """Export every dataset of the Rubin butler ``b`` (each once, whatever collections hold
    it), the ``collections`` named, and every record of the dimension ``elements`` named (beyond
    those the datasets' data IDs bring), to the export.yaml directory ``base/export`` with the
    Rubin butler's own export; returns ``b`` and the exported refs."""
    refs = list({r.id: r for r in b.registry.queryDatasets(..., collections=...)}.values())
    (base / "export").mkdir()
    with b.export(directory=str(base / "export"), format="yaml", transfer="copy") as export:
        export.saveDatasets(refs)
        for element in elements:
            export.saveDimensionData(element, b.registry.queryDimensionRecords(element))
        for name in collections:
            export.saveCollection(name)
    return b, refs


def imported(export: Path, stack: str, tmp: Path) -> Butler:
    """A new skybutler repository in ``tmp`` on ``stack`` holding the Rubin export ``export``
    (imported with :func:`skybutler.interchange.import_rubin`); the caller closes it."""
    butler = Butler.create(tmp / "repo", **stack_locations(stack, tmp))
    import_rubin(butler, export)
    return butler


# The fixtures of the Rubin butler, registry and query comparisons (a test module imports them).


@pytest.fixture(scope="module")
def repos(tmp_path_factory) -> Iterator[tuple]:
    """The Rubin butler on a repository ``make_rubin_repo`` makes, skybutler's import of it (SQLite)
    and that served on loopback: (the Rubin butler, ours, the URL, an admin's token)."""
    from server_helpers import running_server
    from skybutler.access import Access
    from skybutler.repository_transfer import import_datasets

    base = tmp_path_factory.mktemp("rubin_served")
    rubin = make_rubin_repo(base / "repo")
    ours = Butler.create(base / "ours")
    try:
        import_datasets(ours, base / "repo")
        access = Access(ours.registry.access)
        access.add_user("boss", admin=True)
        token = access.create_token("boss")
        with running_server(ours.root) as url:
            yield rubin, ours, url, token
    finally:
        ours.close()


@pytest.fixture(params=["local", "served"])
def pair(request, repos):
    """(the Rubin butler, skybutler's butler: local or through the server, its kind)."""
    rubin, ours, url, token = repos
    yield rubin, ours if request.param == "local" else Butler(url, token=token), request.param
