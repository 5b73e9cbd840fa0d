"""Calibrations: curated YAML files ingested and certified, pipeline-made ones certified,
and both found by observation time."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.time import Time, TimeDelta
from click.testing import CliRunner

from skybutler import Butler, Timespan
from skybutler.cli.main import cli
from skybutler.errors import RegistryError
from skybutler.ingest import ingest_raws, write_curated_calibrations
from skybutler.ingest.calibrations import parse_valid_start
from skybutler.instruments import SimCam, simulate_night

T1, T2, T3 = (Time(t, scale="tai") for t in ("2026-01-01T00:00:00", "2026-02-15T12:00:00", "2026-04-01T00:00:00"))
SECOND = TimeDelta(1.0, format="sec", scale="tai")


@pytest.fixture
def butler(tmp_path):
    with Butler.create(tmp_path / "repo") as b:
        for element, records in SimCam().dimension_records().items():
            b.insert_records(element, records)
        yield b


def write_curated(root: Path) -> Path:
    """bias for detectors 0 (three epochs, names in three spellings) and R00_S01 (= 1); a camera-wide 'crosstalk'."""
    files = {
        "bias/0/2026-01-01.yaml": "level: 1000.0\nnoise: 6.1\n",
        "bias/0/20260215T120000.yaml": "level: 1004.0\nnoise: 6.0\n",
        "bias/0/2026-04-01T00:00:00.yaml": "level: 998.5\nnoise: 5.9\n",
        "bias/R00_S01/2026-01-01.yaml": "level: 1011.0\nnoise: 6.3\n",
        "crosstalk/2026-01-01.yaml": "matrix: [[1.0, 0.001], [0.002, 1.0]]\n",
        "README.md": "Curated SimCam calibrations.\n",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


def at(t: Time) -> Timespan:
    """A one-second observation starting at ``t``."""
    return Timespan(t, t + SECOND)


def test_parse_valid_start():
    assert parse_valid_start("2026-02-15T12:00:00") == parse_valid_start("20260215T120000Z") == T2
    assert parse_valid_start("20260101") == T1
    with pytest.raises(ValueError, match="not a validity start"):
        parse_valid_start("latest")


def test_curated_calibrations_are_certified_between_files(butler, tmp_path):
    curated = write_curated(tmp_path / "curated")
    result = write_curated_calibrations(butler, curated)
    assert not result.failures and len(result.certified) == 5
    spans = {(Path(p).parent.name, Path(p).stem): s for p, _, s in result.certified}
    assert spans[("0", "2026-01-01")] == Timespan(T1, T2)
    assert spans[("0", "20260215T120000")] == Timespan(T2, T3)
    assert spans[("0", "2026-04-01T00:00:00")] == Timespan(T3, None)
    assert spans[("R00_S01", "2026-01-01")] == Timespan(T1, None)

    def level(t: Time, detector: int = 0) -> float:
        ref = butler.find_dataset("bias", instrument="SimCam", detector=detector, collections="SimCam/calib",
                                  timespan=at(t))
        return butler.get(ref)["level"]

    assert level(T1) == 1000.0
    assert level(T2 - SECOND) == 1000.0  # the last second of the first range
    assert level(T2) == 1004.0  # half-open: a range's end belongs to the next one
    assert level(T3) == 998.5 and level(Time("2030-01-01", scale="tai")) == 998.5
    assert level(T3, detector=1) == 1011.0
    assert butler.find_dataset("bias", instrument="SimCam", detector=0, collections="SimCam/calib",
                               timespan=at(T1 - SECOND)) is None
    with pytest.raises(RegistryError, match="give a narrower timespan"):
        butler.find_dataset("bias", instrument="SimCam", detector=0, collections="SimCam/calib",
                            timespan=Timespan(T2 - SECOND, T2 + SECOND))
    crosstalk = butler.find_dataset("crosstalk", instrument="SimCam", collections="SimCam/calib", timespan=at(T3))
    assert butler.get(crosstalk) == {"matrix": [[1.0, 0.001], [0.002, 1.0]]}
    # The stored file is the curated one, byte for byte (still human-readable).
    stored = Path(butler.get_uri(crosstalk).removeprefix("file://"))
    assert stored.read_text() == (curated / "crosstalk/2026-01-01.yaml").read_text()


def test_rerun_and_a_new_file(butler, tmp_path):
    curated = write_curated(tmp_path / "curated")
    write_curated_calibrations(butler, curated)
    again = write_curated_calibrations(butler, curated)
    assert not again.failures and not again.certified and len(again.unchanged) == 5
    t4 = Time("2026-06-01", scale="tai")
    (curated / "bias/0/2026-06-01.yaml").write_text("level: 990.0\n")
    newer = write_curated_calibrations(butler, curated)
    assert not newer.failures and len(newer.certified) == 2  # the new file, and the previous latest one ended
    validity = {(r.run, s) for r, s in butler.collections.validity("SimCam/calib", "bias")
                if r.data_id["detector"] == 0}
    assert ("SimCam/calib/curated/20260401T000000Z", Timespan(T3, t4)) in validity
    assert ("SimCam/calib/curated/20260601T000000Z", Timespan(t4, None)) in validity


def test_per_file_errors(butler, tmp_path):
    curated = write_curated(tmp_path / "curated")
    write_curated_calibrations(butler, curated)
    (curated / "bias/0/2026-01-01.yaml").write_text("level: 1234.0\n")  # changed in place: refused
    (curated / "bias/7/notadate.yaml").parent.mkdir()
    (curated / "bias/7/notadate.yaml").write_text("level: 1.0\n")
    (curated / "bias/99/2026-01-01.yaml").parent.mkdir()
    (curated / "bias/99/2026-01-01.yaml").write_text("level: 1.0\n")
    (curated / "bias/2/2026-01-01.yaml").parent.mkdir()
    (curated / "bias/2/2026-01-01.yaml").write_text("- not\n- a mapping\n")
    # Detector 3 has a calibration certified by other means; a curated one overlapping it is refused.
    manual = butler.put({"level": 1.0}, "bias", instrument="SimCam", detector=3, run="manual")
    butler.collections.certify("SimCam/calib", [manual], T2, T3)
    (curated / "bias/3/2026-03-01.yaml").parent.mkdir()
    (curated / "bias/3/2026-03-01.yaml").write_text("level: 1003.0\n")
    (curated / "bias/4/2026-03-01.yaml").parent.mkdir()
    (curated / "bias/4/2026-03-01.yaml").write_text("level: 1004.0\n")  # fine: it goes in
    result = write_curated_calibrations(butler, curated)
    reasons = {str(Path(f.path).relative_to(curated)): f.reason for f in result.failures}
    assert set(reasons) == {"bias/0/2026-01-01.yaml", "bias/7/notadate.yaml", "bias/99/2026-01-01.yaml",
                            "bias/2/2026-01-01.yaml", "bias/3/2026-03-01.yaml"}
    assert "new validity start" in reasons["bias/0/2026-01-01.yaml"]
    assert "not a validity start" in reasons["bias/7/notadate.yaml"]
    assert "no detector '99'" in reasons["bias/99/2026-01-01.yaml"]
    assert "mapping" in reasons["bias/2/2026-01-01.yaml"]
    assert "overlap" in reasons["bias/3/2026-03-01.yaml"]
    assert [Path(p).relative_to(curated).as_posix() for p, _, _ in result.certified] == ["bias/4/2026-03-01.yaml"]
    ref = butler.find_dataset("bias", instrument="SimCam", detector=0, collections="SimCam/calib", timespan=at(T1))
    assert butler.get(ref)["level"] == 1000.0  # the original, not the edited file


def test_cli_write_curated_calibrations(butler, tmp_path):
    curated = write_curated(tmp_path / "curated")
    (curated / "bias/0/garbage.yaml").write_text("level: 1\n")
    runner = CliRunner()
    result = runner.invoke(cli, ["write-curated-calibrations", str(butler.root), str(curated),
                                 "--collection", "SimCam/calib"])
    assert result.exit_code == 1, result.output
    assert "5 calibration(s) certified" in result.stdout and "garbage.yaml" in result.stdout
    assert "could not be ingested" in result.stderr


def test_pipeline_made_calibration_found_by_exposure_time(tmp_path):
    """A bias made by a pipeline (an Image in a RUN) is certified over a range and then found by
    the observation time of an exposure, at the boundary between two ranges."""
    raws = tmp_path / "raws"
    simulate_night(raws, day_obs=20260301, n_science=2, n_bias=0, n_flat=0, bands=("r",), size=32)
    with Butler.create(tmp_path / "repo") as butler:
        ingest_raws(butler, raws)
        first, second = sorted(butler.registry.dimensions.fetch_all("exposure"), key=lambda r: r["exposure"])
        boundary = second["timespan"].begin
        butler.register_dataset_type("bias", ["instrument", "detector"], "Image", is_calibration=True)
        old = butler.put(np.full((8, 8), 1000.0, dtype=np.float32), "bias", instrument="SimCam", detector=4,
                         run="SimCam/calib/pipe/1")
        new = butler.put(np.full((8, 8), 1010.0, dtype=np.float32), "bias", instrument="SimCam", detector=4,
                         run="SimCam/calib/pipe/2")
        butler.collections.certify("SimCam/calib", [old], begin=first["timespan"].begin - SECOND, end=boundary)
        butler.collections.certify("SimCam/calib", [new], begin=boundary)
        butler.collections.set_chain("SimCam/defaults", ["SimCam/raw/all", "SimCam/calib"])
        for exposure, expected in ((first, old), (second, new)):
            ref = butler.find_dataset("bias", instrument="SimCam", detector=4, collections="SimCam/defaults",
                                      timespan=exposure["timespan"])
            assert ref == expected
        image = butler.get("bias", instrument="SimCam", detector=4, collections="SimCam/defaults",
                           timespan=second["timespan"])
        assert float(np.asarray(getattr(image, "data", image)).mean()) == 1010.0
