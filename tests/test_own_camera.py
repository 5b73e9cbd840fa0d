"""A camera of one's own: described in a YAML file with its header rules, registered in a repository
(the command and the Python API, a conflicting description refused), and its raws then ingested
once the process has forgotten it, as a new process would: the repository remembers it.
"""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from skybutler import Butler
from skybutler.cli.main import cli
from skybutler.errors import ConflictingDefinitionError
from skybutler.instruments import instrument as instrument_module
from test_cameras import write_raw

TINYCAM = """\
name: TinyCam
pixel_scale: 0.4
location: {longitude: -17.8792, latitude: 28.7606, height: 2396.0}
detector_defaults: {nx: 1024, ny: 1024, pixel_size: 13.5}
detectors:
  - {id: 1, full_name: A, offset_x: -0.06}
  - {id: 2, full_name: B, offset_x: 0.06}
filters: {TC-g: g, TC-r: r}
headers:
  match: {INSTRUME: TinyCam}
  observing_day_offset: 12
  cards:
    exposure_id: EXPNUM
    detector_num: CHIP
    physical_filter: FILTER
    exposure_time: EXPTIME
    observation_id: OBSID
    observation_type: IMAGETYP
    object: OBJECT
    ra: RA
    dec: DEC
    altitude: ALT
    azimuth: AZ
    rotation_angle: ROTANG
    airmass: AIRMASS
  observation_types: {light: science, zero: bias}
"""


def tinycam_header(utc: str = "2026-01-10T22:00:00", chip: int = 1, filt: str = "TC-r", expnum: int = 77) -> dict:
    return {"INSTRUME": "TinyCam", "DATE-OBS": utc, "TIMESYS": "UTC", "EXPNUM": expnum, "CHIP": chip,
            "FILTER": filt, "EXPTIME": 60.0, "OBSID": f"tc{expnum}", "IMAGETYP": "light", "OBJECT": "M42",
            "RA": 83.82, "DEC": -5.39, "ALT": 50.0, "AZ": 180.0, "ROTANG": 0.0, "AIRMASS": 1.3}


@pytest.fixture
def forget_tinycam():
    """The process-wide registry forgets TinyCam before and after: the repository must remember it."""
    instrument_module._INSTANCES.pop("TinyCam", None)
    yield
    instrument_module._INSTANCES.pop("TinyCam", None)


def test_register_instrument_from_yaml_then_ingest(tmp_path, forget_tinycam) -> None:
    yaml_path = tmp_path / "tinycam.yaml"
    yaml_path.write_text(TINYCAM)
    repo = tmp_path / "repo"
    runner = CliRunner()
    assert runner.invoke(cli, ["create", str(repo)]).exit_code == 0
    result = runner.invoke(cli, ["register-instrument", str(repo), str(yaml_path)])
    assert result.exit_code == 0, result.output
    assert "registered camera TinyCam (2 detectors, 2 physical filters, bands g, r)" in result.stdout
    with Butler(repo) as butler:
        assert butler.register_instrument(yaml_path) is False  # the same description again: a no-op
        assert [r["detector"] for r in butler.registry.dimensions.fetch_all("detector")] == [1, 2]

    instrument_module._INSTANCES.pop("TinyCam")  # a new process would not know it either
    raws = tmp_path / "raws"
    raws.mkdir()
    write_raw(raws / "tc-1.fits", tinycam_header(chip=1))
    write_raw(raws / "tc-2.fits", tinycam_header(chip=2, utc="2026-01-11T11:59:00"))  # same night
    write_raw(raws / "tc-3.fits", tinycam_header(chip=1, expnum=78, utc="2026-01-11T12:00:30"))  # next day
    result = runner.invoke(cli, ["ingest-raws", str(repo), str(raws), "-j", "1"])
    assert result.exit_code == 0, result.output
    assert "3 raw(s) ingested" in result.stdout and "registered camera" not in result.stdout
    with Butler(repo) as butler:
        days = {r["exposure"]: r["day_obs"] for r in butler.registry.dimensions.fetch_all("exposure")}
        assert days == {77: 20260110, 78: 20260111}
        exposure = butler.get_record("exposure", instrument="TinyCam", id=77)
        assert exposure["observation_type"] == "science" and exposure["target_name"] == "M42"
        assert exposure["tracking_ra"] == pytest.approx(83.82)


def test_register_instrument_conflict_and_python_api(tmp_path, forget_tinycam) -> None:
    yaml_path = tmp_path / "tinycam.yaml"
    yaml_path.write_text(TINYCAM)
    with Butler.create(tmp_path / "repo") as butler:
        assert butler.register_instrument(yaml_path) is True
        assert butler.register_instrument("HSC") is True
        changed = tmp_path / "tinycam2.yaml"
        changed.write_text(TINYCAM.replace("TC-r: r", "TC-r: r, TC-i: i"))
        with pytest.raises(ConflictingDefinitionError, match="TinyCam.*different description.*filters"):
            butler.register_instrument(changed)
        assert {r["physical_filter"] for r in butler.registry.dimensions.fetch_all("physical_filter")
                if r["instrument"] == "TinyCam"} == {"TC-g", "TC-r"}
    result = CliRunner().invoke(cli, ["register-instrument", str(tmp_path / "repo"), str(changed)])
    assert result.exit_code == 1 and result.stderr.count("\n") == 1 and "Traceback" not in result.output
    for wrong, reason in (("NoSuchCam", "unknown instrument 'NoSuchCam'"),
                          (str(tmp_path / "missing.yaml"), "cannot read instrument YAML")):
        result = CliRunner().invoke(cli, ["register-instrument", str(tmp_path / "repo"), wrong])
        assert result.exit_code == 1 and reason in result.stderr and "Traceback" not in result.output
    broken = tmp_path / "broken.yaml"
    broken.write_text("name: Broken\npixel_scale: 0.2\ndetectors: [{id: 0, full_name: A}]\nfilters: {}\n"
                      "headers: {match: {INSTRUME: Broken}, cards: {exposure_id: E}}\n")
    result = CliRunner().invoke(cli, ["register-instrument", str(tmp_path / "repo"), str(broken)])
    assert result.exit_code == 1 and "broken.yaml" in result.stderr and "detector_num" in result.stderr
