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
from skybutler.errors import CalibrationLookupError, DataIdError, QueryError, RegistryError
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


# -- calibration collections in queries ----------------------------------------------------------

NIGHT = Time("2026-03-01T00:00:00", scale="tai")


def hour(h: float) -> Time:
    return NIGHT + TimeDelta(3600 * h, format="sec", scale="tai")


@pytest.fixture
def calib_repo(make_butler):
    """Cam, detectors 0 and 1, exposures 1-3 at hours 1-3 of a night (30 s each; visit 1 is
    exposure 1) and exposure 4 without a timespan; a raw per exposure and detector.
    Cam/calib/a: bias d0 'a1' [-inf, 2h), 'a2' [2h, +inf); bias d1 'a3' [0h, 3h); flat d0 and d1 [0h, 10h).
    Cam/calib/b: bias d0 'b1' [0h, 10h), d1 'b2' [3h, +inf).  Cam/calib = [a, b]."""
    from skybutler.dimensions import regions

    b = make_butler()
    b.insert_records("instrument", [{"name": "Cam", "detector_max": 2, "visit_max": 100}])
    b.insert_records("band", [{"name": "r"}])
    b.insert_records("physical_filter", [{"instrument": "Cam", "name": "Cam-r", "band": "r"}])
    b.insert_records("detector", [{"instrument": "Cam", "id": d} for d in (0, 1)])
    b.insert_records("day_obs", [{"instrument": "Cam", "id": 20260301, "timespan": Timespan(NIGHT, hour(24))}])
    b.insert_records("group", [{"instrument": "Cam", "name": "g"}])
    b.insert_records("exposure", [
        {"instrument": "Cam", "id": e, "physical_filter": "Cam-r", "day_obs": 20260301, "group": "g",
         "timespan": Timespan(hour(e), hour(e) + 30 * SECOND) if e < 4 else None} for e in (1, 2, 3, 4)])
    b.insert_records("visit", [{"instrument": "Cam", "id": 1, "physical_filter": "Cam-r", "day_obs": 20260301,
                                "region": regions.rectangle(10, 10, 1, 1),
                                "timespan": Timespan(hour(1), hour(1) + 30 * SECOND)}])
    b.insert_records("visit_definition", [{"instrument": "Cam", "exposure": 1, "visit": 1}])
    b.register_dataset_type("raw", ["instrument", "exposure", "detector"], "Dict")
    b.register_dataset_type("bias", ["instrument", "detector"], "Dict", is_calibration=True)
    b.register_dataset_type("flat", ["instrument", "detector", "physical_filter"], "Dict", is_calibration=True)
    b.put_many("raw", [({"e": e}, {"instrument": "Cam", "exposure": e, "detector": d})
                       for e in (1, 2, 3, 4) for d in (0, 1)], run="Cam/raw")
    b.collections.register("Cam/calib/a", "calibration")
    b.collections.register("Cam/calib/b", "calibration")
    refs = {}
    for name, d, coll, begin, end in (("a1", 0, "a", None, hour(2)), ("a2", 0, "a", hour(2), None),
                                      ("a3", 1, "a", hour(0), hour(3)), ("b1", 0, "b", hour(0), hour(10)),
                                      ("b2", 1, "b", hour(3), None)):
        refs[name] = b.put({"name": name}, "bias", instrument="Cam", detector=d, run=f"Cam/calib/run/{name}")
        b.collections.certify(f"Cam/calib/{coll}", [refs[name]], begin=begin, end=end)
    flats = [b.put({"name": f"f{d}"}, "flat", instrument="Cam", detector=d, physical_filter="Cam-r",
                   run="Cam/calib/run/flats") for d in (0, 1)]
    b.collections.certify("Cam/calib/a", flats, begin=hour(0), end=hour(10))
    b.collections.register("Cam/calib", "chained")
    b.collections.set_chain("Cam/calib", ["Cam/calib/a", "Cam/calib/b"])
    b.collections.register("Cam/defaults", "chained")
    b.collections.set_chain("Cam/defaults", ["Cam/raw", "Cam/calib"])
    return b


def names(refs) -> list[str]:
    return sorted(r.run.rsplit("/", 1)[-1] for r in refs)


def test_query_datasets_lists_each_certification_with_its_validity(calib_repo):
    listed = calib_repo.query_datasets("bias", collections="Cam/calib/a", find_first=False)
    assert listed.explain() == [] and listed.count() == 3
    spans = {r.run.rsplit("/", 1)[-1]: s for r, s in listed.with_validity()}
    assert spans == {"a1": Timespan(None, hour(2)), "a2": Timespan(hour(2), None), "a3": Timespan(hour(0), hour(3))}
    table = listed.to_arrow()
    assert {"validity_begin", "validity_end"} <= set(table.column_names)
    by_run = {row["run"].rsplit("/", 1)[-1]: row for row in table.to_pylist()}
    assert by_run["a1"]["validity_begin"] is None and by_run["a1"]["validity_end"] == hour(2).isot
    # overlapping ranges in two collections of a chain: every certification, both collections
    assert names(calib_repo.query_datasets("bias", collections="Cam/calib", find_first=False)) == [
        "a1", "a2", "a3", "b1", "b2"]
    assert names(calib_repo.query_datasets("bias", collections="Cam/calib", find_first=False,
                                           where="detector = 1")) == ["a3", "b2"]
    # ... and in query_data_ids: the detectors with a bias certified at all
    assert calib_repo.query_data_ids(["detector"], datasets="bias", collections="Cam/calib/b").count() == 2


@pytest.mark.parametrize("at, expected", [
    (hour(1), ["a1", "a3"]),
    (hour(2) - SECOND / 1000, ["a1", "a3"]),     # just before a1 ends
    (hour(2), ["a2", "a3"]),                      # half-open: at 2h a2 begins and a1 is over
    (hour(3), ["a2", "b2"]),                      # a3 is over at 3h: detector 1 falls through to b
    (hour(-5), ["a1"]),                           # open-ended on the left; detector 1 has nothing
    (hour(50), ["a2", "b2"]),                     # open-ended on the right
])
def test_find_first_gives_the_one_valid_at_a_time_through_a_chain(calib_repo, at, expected):
    found = calib_repo.query_datasets("bias", collections="Cam/calib", timespan=at)
    assert names(found) == expected
    for ref in found:  # the same answer as a lookup of one data ID
        assert calib_repo.find_dataset("bias", ref.data_id, collections="Cam/calib",
                                       timespan=Timespan(at, at + SECOND / 1000)) == ref


def test_find_first_needs_a_time(calib_repo):
    with pytest.raises(QueryError, match="give a timespan"):
        calib_repo.query_datasets("bias", collections="Cam/calib")


def test_calibrations_of_several_types_in_one_query(calib_repo):
    b = calib_repo
    b.register_dataset_type("dark", ["instrument", "detector"], "Dict", is_calibration=True)
    dark = b.put({"name": "d0"}, "dark", instrument="Cam", detector=0, run="Cam/calib/run/dark")
    b.collections.certify("Cam/calib/b", [dark], begin=hour(0), end=None)
    found = b.query_datasets(["bias", "dark"], collections="Cam/calib", timespan=hour(3))
    assert sorted((r.dataset_type.name, r.run.rsplit("/", 1)[-1]) for r in found) == [
        ("bias", "a2"), ("bias", "b2"), ("dark", "dark")]
    with pytest.raises(CalibrationLookupError, match="bias"):  # each type's lookups are checked
        list(b.query_datasets(["dark", "bias"], collections="Cam/calib", timespan=Timespan(hour(1), hour(3))))
    b.register_dataset_type("notes", ["instrument", "detector"], "Dict")
    b.put({"n": 1}, "notes", instrument="Cam", detector=0, run="Cam/notes")
    with pytest.raises(QueryError, match="cannot share one query"):
        b.query_datasets(["bias", "notes"], collections=["Cam/notes", "Cam/calib"], find_first=False)


def test_calibrations_valid_during_an_exposure_or_visit(calib_repo):
    b = calib_repo
    assert names(b.query_datasets("bias", collections="Cam/calib", where="exposure = 2")) == ["a2", "a3"]
    assert names(b.query_datasets("bias", collections="Cam/calib", where="exposure IN (1, 3)")) == [
        "a1", "a2", "a3", "b2"]
    assert names(b.query_datasets("bias", collections="Cam/calib", where="visit = 1")) == ["a1", "a3"]
    assert names(b.query_datasets("bias", collections="Cam/calib", exposure=4)) == []  # no timespan
    # data IDs: the raws that have a bias and a flat valid during their exposure
    ids = b.query_data_ids(["exposure", "detector"], datasets=["raw", "bias", "flat"], collections="Cam/defaults")
    assert sorted((d["exposure"], d["detector"]) for d in ids) == [(e, d) for e in (1, 2, 3) for d in (0, 1)]
    # each raw with its bias and flat
    matches = {(m.data_id["exposure"], m.data_id["detector"]): m
               for m in b.query_calibrations(["bias", "flat"], ["exposure", "detector"], datasets="raw",
                                             collections="Cam/defaults")}
    assert len(matches) == 8
    bias = {k: m.refs["bias"] and m.refs["bias"].run.rsplit("/", 1)[-1] for k, m in matches.items()}
    assert bias == {(1, 0): "a1", (2, 0): "a2", (3, 0): "a2", (4, 0): None,
                    (1, 1): "a3", (2, 1): "a3", (3, 1): "b2", (4, 1): None}
    assert all(m.refs["flat"] is not None for k, m in matches.items() if k[0] != 4)
    assert matches[(3, 1)].validity["bias"] == Timespan(hour(3), None)
    table = b.query_calibrations("bias", ["exposure", "detector"], where="exposure = 3",
                                 collections="Cam/calib").to_arrow()
    assert table.num_rows == 2 and table.column("bias_valid_from").to_pylist() == [hour(2).isot, hour(3).isot]


def test_find_dataset_and_get_take_the_time_of_the_data_ids_exposure_or_visit(calib_repo):
    b = calib_repo
    assert b.get("bias", instrument="Cam", detector=0, exposure=1, collections="Cam/defaults") == {"name": "a1"}
    assert b.get("bias", {"instrument": "Cam", "detector": 0, "exposure": 2}, collections="Cam/calib") == {
        "name": "a2"}
    assert b.get("bias", instrument="Cam", detector=1, visit=1, collections="Cam/calib") == {"name": "a3"}
    assert b.find_dataset("bias", instrument="Cam", detector=1, exposure=3, collections="Cam/calib").run.endswith("b2")
    assert b.get("flat", instrument="Cam", detector=1, physical_filter="Cam-r", exposure=2,
                 collections="Cam/calib") == {"name": "f1"}
    with pytest.raises(DataIdError, match="no timespan"):
        b.find_dataset("bias", instrument="Cam", detector=0, exposure=4, collections="Cam/calib")
    with pytest.raises(DataIdError, match="no exposure 99"):
        b.find_dataset("bias", instrument="Cam", detector=0, exposure=99, collections="Cam/calib")


def test_an_ambiguous_lookup_names_its_candidates(calib_repo):
    b = calib_repo
    a1, a2 = (next(r for r in b.query_datasets("bias", collections="Cam/calib/a", find_first=False)
                   if r.run.endswith(n)) for n in ("a1", "a2"))
    with pytest.raises(CalibrationLookupError, match="2 calibrations") as caught:
        b.find_dataset("bias", instrument="Cam", detector=0, collections="Cam/calib",
                       timespan=Timespan(hour(1), hour(3)))
    assert str(a1.id) in str(caught.value) and str(a2.id) in str(caught.value)
    with pytest.raises(CalibrationLookupError, match="2 calibrations") as caught:
        list(b.query_datasets("bias", collections="Cam/calib", timespan=Timespan(hour(1), hour(3))))
    assert str(a1.id) in str(caught.value) and str(a2.id) in str(caught.value)
    assert isinstance(caught.value, RegistryError)


def test_cli_calibration_queries(calib_repo):
    import json

    runner = CliRunner()
    root = str(calib_repo.root)
    listed = runner.invoke(cli, ["query-datasets", root, "bias", "-c", "Cam/calib/a", "--no-find-first", "--json"])
    assert listed.exit_code == 0, listed.output
    rows = json.loads(listed.stdout)
    assert len(rows) == 3 and {r["validity_end"] for r in rows} == {hour(2).isot, None, hour(3).isot}
    at = runner.invoke(cli, ["query-datasets", root, "bias", "-c", "Cam/calib", "--valid-at", hour(3).isot,
                             "--json"])
    assert at.exit_code == 0, at.output
    assert sorted(r["run"].rsplit("/", 1)[-1] for r in json.loads(at.stdout)) == ["a2", "b2"]
    joined = runner.invoke(cli, ["query-calibrations", root, "bias,flat", "exposure", "detector", "--datasets", "raw",
                                 "-c", "Cam/defaults", "--where", "exposure < 3", "--json"])
    assert joined.exit_code == 0, joined.output
    rows = json.loads(joined.stdout)
    assert len(rows) == 4 and all(r["bias_id"] and r["flat_id"] for r in rows)
    refused = runner.invoke(cli, ["query-datasets", root, "bias", "-c", "Cam/calib", "--find-first"])
    assert refused.exit_code == 1 and "give a timespan" in refused.stderr and "Traceback" not in refused.output
    # find-first by default, no time: every certification, as with --no-find-first (the Rubin command's default)
    listed = runner.invoke(cli, ["query-datasets", root, "bias", "-c", "Cam/calib", "--json"])
    assert listed.exit_code == 0 and "every certification is listed" in " ".join(listed.stderr.split())
    every = runner.invoke(cli, ["query-datasets", root, "bias", "-c", "Cam/calib", "--no-find-first", "--json"])
    assert json.loads(listed.stdout) == json.loads(every.stdout) != []
    said = " ".join(refused.stderr.split())  # the command's own spellings of the ways out
    assert "--valid-at" in said and "--no-find-first, the Rubin command's default" in said


def test_the_validity_range_as_a_where_clause_field(calib_repo):
    """``bias.timespan`` (the Rubin spelling) is each certification's validity range: listed,
    compared and OVERLAPS-tested; a find-first search judges candidates by it before ranking,
    like a ``timespan`` given with the query; unbounded for a bias found in its RUN (as the
    Rubin butler has it: such a search finds it whatever the time)."""
    b = calib_repo

    def listed(where: str, **bind) -> list[str]:
        return names(b.query_datasets("bias", collections="Cam/calib", find_first=False, where=where, bind=bind))

    assert listed("bias.timespan OVERLAPS t", t=hour(1)) == ["a1", "a3", "b1"]
    assert listed("bias.timespan OVERLAPS :t", t=Timespan(hour(2.5), hour(3.5))) == ["a2", "a3", "b1", "b2"]
    assert listed("bias.timespan OVERLAPS t", t=hour(3)) == ["a2", "b1", "b2"]  # half-open: a3 ended at 3h
    assert listed("bias.timespan.begin > t", t=hour(2.5)) == ["b2"]  # an unbounded begin is not after anything
    assert listed("bias.timespan.end < t", t=hour(2.5)) == ["a1"]
    assert listed("NOT bias.timespan OVERLAPS t AND detector = 1", t=hour(1)) == ["b2"]
    # find-first with the time in the where-clause: the same answer as timespan=
    found = b.query_datasets("bias", collections="Cam/calib", where="bias.timespan OVERLAPS t", bind={"t": hour(1)})
    assert names(found) == names(b.query_datasets("bias", collections="Cam/calib", timespan=hour(1))) == ["a1", "a3"]
    # found in its RUN, a bias is valid always: every time overlaps it, and it is never NULL
    run = "Cam/calib/run/a1"
    for where, n in (("bias.timespan OVERLAPS t", 1), ("NOT bias.timespan OVERLAPS t", 0),
                     ("bias.timespan = NULL OR t = NULL", 0), ("bias.timespan.end > t", 1)):
        assert b.query_datasets("bias", collections=run, where=where, bind={"t": hour(1)}).count() == n, where
    assert names(b.query_datasets("bias", collections=[run, "Cam/calib/b"], find_first=False,
                                  where="bias.timespan OVERLAPS t", bind={"t": hour(1)})) == ["a1", "b1"]
    with pytest.raises(QueryError, match=r"bias.timespan is the validity range .* query_datasets\('bias'"):
        b.query_data_ids(["detector"], where="bias.timespan OVERLAPS t", bind={"t": hour(1)}, datasets="bias",
                         collections="Cam/calib")
