"""The small real repository most query tests read (``tests/test_queries.py``'s ``repo``), what it
holds, and helpers that turn query results into plain sorted lists to compare.
"""

from __future__ import annotations

import math

import lsst.sphgeom as sphgeom
import pyarrow as pa
import sqlalchemy as sa
from astropy.time import Time

from conftest import populate, stack_locations, visit_pointing
from skybutler import Butler
from skybutler.dimensions import regions

N_VISITS, N_DETECTORS = 12, 4
T0 = Time("2025-01-01T00:00:00", scale="tai")
T1 = Time("2025-01-02T00:05:00", scale="tai")
T2 = Time("2025-01-03T00:00:00", scale="tai")


def detector_region(visit: int, detector: int) -> sphgeom.Region:
    """Detectors tile the 3.5 deg field of a visit on a 2x2 grid of 1.75 deg squares."""
    ra, dec = visit_pointing(visit)
    dx, dy = (detector % 2 - 0.5) * 1.75, (detector // 2 - 0.5) * 1.75
    return regions.rectangle(ra + dx / math.cos(math.radians(dec + dy)), dec + dy, 1.75, 1.75)


def patch_region(patch: int) -> sphgeom.Region:
    """Patches tile tract 0 (centred on visit 3) on a 3x3 grid of 3.3 deg squares."""
    ra, dec = visit_pointing(3)
    px, py = (patch % 3 - 1) * 3.3, (patch // 3 - 1) * 3.3
    return regions.rectangle(ra + px / math.cos(math.radians(dec + py)), dec + py, 3.3, 3.3)


def snapshot(butler: Butler) -> dict[str, list[tuple]]:
    """Every row of every table of the registry, for checking that nothing changed."""
    db = butler.registry.db
    out = {}
    with db.reading() as conn:
        for name in sa.inspect(conn).get_table_names(schema=db.schema):
            table = sa.Table(name, sa.MetaData(schema=db.schema), autoload_with=conn)
            out[name] = sorted(tuple(map(repr, row)) for row in conn.execute(sa.select(table)))
    return out


def query_repository(request, tmp_path_factory):
    """Cam with 12 visits x 4 detectors (visit and visit-detector regions), a sky map whose
    tract 0 surrounds visit 3, ``metrics`` (Dict) in run/a and run/b, ``src`` (Table), a
    ``bias`` calibration certified by time, and the chain ``chain`` = [run/b, run/a].

    A module-scoped fixture once per stack, made in each test module that reads it:
    ``repo = pytest.fixture(scope="module", params=STACKS, name="repo")(query_repository)``."""
    tmp = tmp_path_factory.mktemp(f"queries_{request.param}")
    butler = Butler.create(tmp / "repo", **stack_locations(request.param, tmp))
    populate(butler, N_VISITS, N_DETECTORS)
    butler.insert_records("visit_detector_region", [
        {"instrument": "Cam", "visit": v, "detector": d, "region": detector_region(v, d)}
        for v in range(1, N_VISITS + 1) for d in range(N_DETECTORS)])
    butler.insert_records("skymap", [{"name": "sm"}])
    ra, dec = visit_pointing(3)
    butler.insert_records("tract", [{"skymap": "sm", "id": 0, "region": regions.rectangle(ra, dec, 10, 10)},
                                    {"skymap": "sm", "id": 1, "region": regions.rectangle(ra + 180, -dec, 10, 10)}])
    butler.insert_records("patch", [{"skymap": "sm", "tract": 0, "id": p, "region": patch_region(p)}
                                    for p in range(9)])
    butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    butler.register_dataset_type("src", ["instrument", "visit", "detector"], "Table")
    butler.register_dataset_type("empty", ["instrument", "visit", "detector"], "Dict")
    butler.register_dataset_type("bias", ["instrument", "detector"], "Dict", is_calibration=True)
    butler.put_many("metrics", [({f"k{i}": i for i in range(v + d)}, {"instrument": "Cam", "visit": v, "detector": d})
                                for v in (1, 2, 3) for d in range(N_DETECTORS)], run="run/a")
    butler.put_many("metrics", [({"only": 1}, {"instrument": "Cam", "visit": v, "detector": 0}) for v in (2, 3)],
                    run="run/b")
    butler.put(pa.table({"x": list(range(200))}), "src", instrument="Cam", visit=1, detector=2, run="run/a")
    for v in (2, 3):
        butler.put(pa.table({"x": list(range(500 * v))}), "src", instrument="Cam", visit=v, detector=1, run="run/b")
    butler.collections.register("chain", "chained")
    butler.collections.set_chain("chain", ["run/b", "run/a"])
    first = [butler.put({"d": d}, "bias", instrument="Cam", detector=d, run="calib/run") for d in (0, 1)]
    second = butler.put({"d": 0, "v": 2}, "bias", instrument="Cam", detector=0, run="calib/run2")
    butler.collections.register("calib", "calibration")
    butler.collections.certify("calib", first, begin=T0, end=T1)
    butler.collections.certify("calib", [second], begin=T1, end=T2)
    yield butler
    butler.close()


def visits(results) -> list[int]:
    return sorted(d["visit"] for d in results)


def pairs(results) -> list[tuple[int, int]]:
    return sorted((d["visit"], d["detector"]) for d in results)


def refs_of(results) -> list[tuple[int, int, str]]:
    return sorted((r.data_id["visit"], r.data_id["detector"], r.run) for r in results)
