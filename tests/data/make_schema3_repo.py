"""Make ``schema3_repo.tar.gz``: a small repository written by skybutler 0.1.0 (schema version 3,
default universe version 1), the input of the migration test.

Run it with that release's code first on the path, e.g. from a checkout of it:
``PYTHONPATH=<release>/src python tests/data/make_schema3_repo.py OUT.tar.gz``.
"""

import sys
import tarfile
import tempfile
from pathlib import Path

from skybutler import Butler, Timespan
from skybutler.dimensions import regions

out = Path(sys.argv[1]).absolute()
with tempfile.TemporaryDirectory() as tmp:
    root = Path(tmp) / "repo"
    with Butler.create(root, run="r", collections=["r"], checksum=None) as b:
        b.insert_records("instrument", [{"name": "Cam", "detector_max": 4, "visit_max": 100, "class_name": "x.Cam"}])
        b.insert_records("band", [{"name": "r"}])
        b.insert_records("physical_filter", [{"instrument": "Cam", "name": "Cam-r", "band": "r"}])
        b.insert_records("detector", [{"instrument": "Cam", "id": i, "full_name": f"S{i}", "raft": "R0"} for i in (0, 1)])
        b.insert_records("day_obs", [{"instrument": "Cam", "id": 20250101,
                                      "timespan": Timespan("2025-01-01T12:00:00", "2025-01-02T12:00:00")}])
        b.insert_records("group", [{"instrument": "Cam", "name": "g7"}])
        span = Timespan("2025-01-02T03:00:00", "2025-01-02T03:00:30")
        b.insert_records("exposure", [{"instrument": "Cam", "id": 7, "physical_filter": "Cam-r", "day_obs": 20250101,
                                       "group": "g7", "obs_id": "CAM_7", "seq_num": 7, "exposure_time": 30.0,
                                       "azimuth": 12.5, "timespan": span}])
        region = regions.rectangle(10.5, 0.0, 1.0, 2.0)
        b.insert_records("visit", [{"instrument": "Cam", "id": 7, "physical_filter": "Cam-r", "day_obs": 20250101,
                                    "exposure_time": 30.0, "timespan": span, "region": region}])
        b.insert_records("visit_definition", [{"instrument": "Cam", "exposure": 7, "visit": 7}])
        b.register_dataset_type("summary", ["instrument", "visit", "detector"], "Dict")
        for i in (0, 1):
            b.put({"detector": i, "n": 10 + i}, "summary", instrument="Cam", visit=7, detector=i)
    with tarfile.open(out, "w:gz") as tar:
        tar.add(root, arcname="repo")
