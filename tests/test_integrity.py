"""Data integrity at the repository's edges: contents checked on the way in, checksums on the
way out, strict JSON (names that cannot collide or escape: ``test_integrity_names.py``)."""

from __future__ import annotations

import io
import json
import math
import re
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from astropy.io import fits
from click.testing import CliRunner

from conftest import stack_locations
from skybutler import Butler
from skybutler.cli.main import cli
from skybutler.errors import (
    ChecksumMismatchError,
    DatasetConflictError,
    InvalidFileError,
    StorageClassError,
)
from skybutler.ingest import ingest_raws
from skybutler.instruments import simulate_night
from skybutler.repository_transfer import export_datasets, import_datasets
from skybutler.verify import verify

DATA_ID = {"instrument": "Cam", "visit": 1, "detector": 0}


def cli_fails(*args: object, message: str) -> str:
    """Run a command expected to fail with one ``error:`` line (no traceback) holding ``message``."""
    result = CliRunner().invoke(cli, [str(a) for a in args])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    assert result.stderr.startswith("error: "), result.stderr
    assert message in " ".join(result.stderr.split()), result.stderr
    return result.stderr


def stored(butler: Butler) -> set[str]:
    return {p for p in butler.datastore.walk() if not p.startswith("registry.sqlite3") and p != "butler.yaml"}


def image_bytes(shape: tuple[int, int] = (64, 64), extension: bool = False) -> bytes:
    data = np.arange(shape[0] * shape[1], dtype=np.float32).reshape(shape)
    hdus = [fits.PrimaryHDU(), fits.ImageHDU(data)] if extension else [fits.PrimaryHDU(data)]
    buffer = io.BytesIO()
    fits.HDUList(hdus).writeto(buffer)
    return buffer.getvalue()


# -- contents checked on the way in (issue 13, items 3 and 4) -----------------


@pytest.fixture
def typed(butler: Butler) -> Butler:
    butler.register_dataset_type("calexp", ["instrument", "visit", "detector"], "Image")
    butler.register_dataset_type("src", ["instrument", "visit", "detector"], "Table")
    return butler


BROKEN = {
    # (dataset type, file name, content, a part of the reason)
    "garbage fits": ("calexp", "a.fits", b"this is not a FITS file at all" * 200, "primary header does not parse"),
    "truncated fits": ("calexp", "b.fits", image_bytes()[:-5000], "truncated: HDU 0 declares data up to byte"),
    "fits without image": ("calexp", "c.fits", image_bytes()[:2880].replace(b"NAXIS   =                    2",
                                                                            b"NAXIS   =                    0"),
                           "holds no 2-D image HDU"),
    "invalid json": ("metrics", "d.json", b'{"a": 1,', "not a readable json file"),
    "json NaN": ("metrics", "e.json", b'{"a": NaN}', "NaN is not a JSON value"),
    "json huge number": ("metrics", "e2.json", b'{"a": 1e999}', "1e999 is out of range for a JSON number"),
    "json not a mapping": ("metrics", "f.json", b"[1, 2]", "holds a list, not a mapping"),
    "json not utf-8": ("metrics", "g.json", '{"a": "café"}'.encode("latin-1"), "not a readable json file"),
    "garbage parquet": ("src", "h.parquet", b"PAR1" + b"\0" * 100, "not a readable parquet file"),
}


@pytest.mark.parametrize("case", sorted(BROKEN))
def test_a_broken_file_is_refused_by_name_and_reason(typed: Butler, tmp_path: Path, case: str) -> None:
    dataset_type, name, content, reason = BROKEN[case]
    good = tmp_path / "good.fits"
    good.write_bytes(image_bytes())
    bad = tmp_path / name
    bad.write_bytes(content)
    before = stored(typed)
    for transfer in ("copy", "move", "direct"):
        with pytest.raises(InvalidFileError) as caught:
            typed.ingest(dataset_type, [(bad, DATA_ID)], transfer=transfer)
        assert caught.value.failures[0][0] == str(bad) and reason in caught.value.failures[0][1]
        assert str(bad) in str(caught.value) and reason in str(caught.value)
        assert bad.exists() and stored(typed) == before
    assert not typed.collections.exists("run/a") or not list(typed.query_datasets(dataset_type, collections="run/a"))


def test_a_yaml_file_holding_nan_is_refused(typed: Butler, tmp_path: Path) -> None:
    bad = tmp_path / "m.yaml"
    bad.write_text("a: [1, .nan]\n")
    with pytest.raises(InvalidFileError, match=r"m\.yaml: .*value at a\[1\] is nan, which JSON cannot hold"):
        typed.ingest("metrics", [(bad, DATA_ID)], formatter="yaml")
    assert stored(typed) == set()


def test_every_refused_file_of_a_batch_is_named_and_nothing_goes_in(typed: Butler, tmp_path: Path) -> None:
    files = []
    for number in range(4):
        path = tmp_path / f"m{number}.json"
        path.write_text('{"ok": 1}' if number % 2 == 0 else "{oops")
        files.append((path, {**DATA_ID, "detector": number}))
    with pytest.raises(InvalidFileError) as caught:
        typed.ingest("metrics", files, transfer="move")
    assert [f for f, _ in caught.value.failures] == [str(files[1][0]), str(files[3][0])]
    assert all(path.exists() for path, _ in files) and stored(typed) == set()


def test_good_files_of_every_format_still_go_in(typed: Butler, tmp_path: Path) -> None:
    (tmp_path / "i.fits").write_bytes(image_bytes(extension=True))
    (tmp_path / "m.json").write_text('{"a": [1, 2.5, null]}')
    (tmp_path / "m.yaml").write_text("a: 1\nb: [x, y]\n")
    pq.write_table(pa.table({"x": [1, 2]}), tmp_path / "t.parquet")
    typed.ingest("calexp", [(tmp_path / "i.fits", DATA_ID)])
    typed.ingest("metrics", [(tmp_path / "m.json", DATA_ID)])
    typed.ingest("metrics", [(tmp_path / "m.yaml", {**DATA_ID, "detector": 1})], formatter="yaml")
    typed.ingest("src", [(tmp_path / "t.parquet", DATA_ID)])
    assert typed.get("calexp", DATA_ID).data.shape == (64, 64)
    assert typed.get("metrics", DATA_ID) == {"a": [1, 2.5, None]}
    assert typed.get("src", DATA_ID).num_rows == 2


def test_cli_ingest_files_names_the_broken_file(typed: Butler, tmp_path: Path) -> None:
    (tmp_path / "bad.fits").write_bytes(b"SIMPLE  = garbage")
    (tmp_path / "table.csv").write_text("file,instrument,visit,detector\nbad.fits,Cam,1,0\n")
    cli_fails("ingest-files", typed.root, "calexp", tmp_path / "table.csv", "--run", "run/b",
              message=f"{tmp_path / 'bad.fits'}: Formatter 'fits': the primary header does not parse")


@pytest.mark.parametrize("transfer", ["copy", "move"])
def test_ingesting_a_data_id_the_run_already_holds_says_so(typed: Butler, tmp_path: Path, transfer: str) -> None:
    """The refusal names the dataset that exists, not a stranger's file at its path, before any
    file is placed; --skip-existing ingests the new ones only."""
    for name in ("a.json", "b.json"):
        (tmp_path / name).write_text('{"a": 1}')
    typed.ingest("metrics", [(tmp_path / "a.json", DATA_ID)], run="run/a")
    before = stored(typed)
    entries = [(tmp_path / "a.json", DATA_ID), (tmp_path / "b.json", {**DATA_ID, "detector": 1})]
    message = "a metrics dataset with data ID {'instrument': 'Cam', 'visit': 1, 'detector': 0} already exists in RUN 'run/a'"
    with pytest.raises(DatasetConflictError, match=re.escape(message)):
        typed.ingest("metrics", entries, run="run/a", transfer=transfer)
    with pytest.raises(DatasetConflictError, match="the same metrics data ID is given twice"):
        typed.ingest("metrics", [(tmp_path / "b.json", {**DATA_ID, "detector": 3})] * 2, run="run/a", transfer=transfer)
    assert stored(typed) == before and (tmp_path / "a.json").exists() and (tmp_path / "b.json").exists()
    (tmp_path / "table.csv").write_text("file,instrument,visit,detector\na.json,Cam,1,0\nb.json,Cam,1,1\n")
    cli_fails("ingest-files", typed.root, "metrics", tmp_path / "table.csv", "--run", "run/a", "-t", transfer,
              message=message)
    result = CliRunner().invoke(cli, ["ingest-files", str(typed.root), "metrics", str(tmp_path / "table.csv"),
                                      "--run", "run/a", "-t", transfer, "--skip-existing"])
    assert result.exit_code == 0, result.output
    assert typed.get("metrics", {**DATA_ID, "detector": 1}, collections="run/a") == {"a": 1}
    assert verify(typed).consistent


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("night")
    simulate_night(out, day_obs=20260301, n_science=1, n_bias=0, n_flat=0, bands=("g",), size=32)
    return out


@pytest.mark.parametrize("transfer", ["copy", "move", "direct"])
def test_a_truncated_raw_is_refused_and_the_others_go_in(night: Path, tmp_path: Path, transfer: str) -> None:
    raws = sorted(night.glob("*.fits"))
    incoming = tmp_path / "incoming"
    incoming.mkdir()
    for raw in raws:
        (incoming / raw.name).write_bytes(raw.read_bytes())
    victim = incoming / raws[3].name
    with fits.open(victim) as hdus:  # keep the headers whole and 100 bytes of the last HDU's pixels
        keep = hdus[-1].fileinfo()["datLoc"] + 100
    victim.write_bytes(victim.read_bytes()[:keep])
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, incoming, transfer=transfer)
        assert [f.path for f in result.failures] == [str(victim)]
        assert "truncated" in result.failures[0].reason
        assert len(result.refs) == len(raws) - 1
        assert victim.exists()  # a refused file stays where it was, even with --transfer move
        report = verify(butler, check_sizes=True)
        assert report.consistent
        assert butler.query_datasets("raw", collections="SimCam/raw/all").count() == len(raws) - 1
        originals = {}
        for raw in raws:
            with fits.open(raw) as hdus:
                image = next(h for h in hdus if h.header.get("NAXIS") == 2)
                originals[(image.header["EXPID"], image.header["CCDNUM"])] = np.asarray(image.data)
        for ref in result.refs:  # every ingested raw reads back whole
            expected = originals[(ref.data_id["exposure"], ref.data_id["detector"])]
            assert np.array_equal(butler.get(ref).data, expected)


def test_import_refuses_a_broken_export_and_registers_nothing(butler: Butler, make_butler, tmp_path: Path) -> None:
    butler.put({"a": 1}, "metrics", DATA_ID)
    butler.put({"a": 2}, "metrics", {**DATA_ID, "detector": 1})
    refs = list(butler.query_datasets("metrics", collections="run/a"))
    export_datasets(butler, refs, tmp_path / "export")
    victim = next(p for p in (tmp_path / "export").rglob("metrics_*.json"))
    victim.write_text("{truncated")
    target = make_butler("target")
    with pytest.raises(InvalidFileError, match=str(victim.name)):
        import_datasets(target, tmp_path / "export")
    assert not target.collections.exists("run/a")
    assert stored(target) == set()


def test_a_formatter_that_does_not_read_the_storage_class_is_refused(typed: Butler, tmp_path: Path) -> None:
    pq.write_table(pa.table({"x": [1]}), tmp_path / "t.parquet")
    with pytest.raises(StorageClassError, match="formatter 'parquet' does not read Dict datasets"):
        typed.ingest("metrics", [(tmp_path / "t.parquet", DATA_ID)], formatter="parquet")
    assert stored(typed) == set()


# -- strict JSON (issue 13, item 11) --------------------------------------------


@pytest.mark.parametrize("value", [math.nan, math.inf, -math.inf])
def test_a_dict_holding_nan_or_infinity_is_refused(butler: Butler, value: float) -> None:
    with pytest.raises(StorageClassError, match=r"value at b\[1\] is .*, which JSON cannot hold"):
        butler.put({"a": 1, "b": [0.5, value]}, "metrics", DATA_ID)
    assert stored(butler) == set()


def test_every_json_file_written_is_strict_json(butler: Butler) -> None:
    ref = butler.put({"a": 1.5, "b": None, "c": "ü"}, "metrics", DATA_ID)
    text = Path(butler.datastore.full_path(ref.artifact.path)).read_bytes() if butler.datastore.local else None
    if text is not None:
        json.loads(text, parse_constant=lambda name: pytest.fail(f"{name} written"))


# -- checksums on the way out (issue 13, item 8) ------------------------------


def tamper(butler: Butler, ref) -> str:
    """Change one byte of a dataset's file (local or in the object store), keeping its size
    (what a size check cannot see); returns the file's path in its file system."""
    full = butler.datastore.full_path(ref.artifact.path)
    data = bytearray(butler.datastore._read_bytes(ref.artifact.path))
    data[-2] = ord("7") if data[-2] != ord("7") else ord("8")
    if butler.datastore.local:
        Path(full).write_bytes(bytes(data))
    else:
        butler.datastore.fs.pipe_file(full, bytes(data))
    return full


def test_recorded_checksum_is_the_files_hash(make_butler) -> None:
    import hashlib

    import xxhash

    for algorithm in ("xxh3", "blake2b"):
        butler = make_butler(f"repo_{algorithm}", run="run/a", checksum=algorithm)
        butler.insert_records("instrument", [{"name": "Cam"}])
        butler.register_dataset_type("config", ["instrument"], "Dict")
        ref = butler.put({"a": 123}, "config", instrument="Cam")
        data = butler.datastore._read_bytes(ref.artifact.path)
        expected = (xxhash.xxh3_64_hexdigest(data) if algorithm == "xxh3"
                    else hashlib.blake2b(data, digest_size=16).hexdigest())
        assert ref.artifact.checksum == f"{algorithm}:{expected}"
        assert butler.datastore.checksum_matches(ref.artifact)


def test_get_checks_the_checksum_when_asked(butler: Butler) -> None:
    ref = butler.put({"a": 12345}, "metrics", DATA_ID)
    path = tamper(butler, ref)
    assert butler.get("metrics", DATA_ID) == {"a": 12347}  # silently different: the reported failure
    with pytest.raises(ChecksumMismatchError, match=f"{path} does not match its recorded checksum xxh3:"):
        butler.get("metrics", DATA_ID, verify_checksums=True)
    with pytest.raises(ChecksumMismatchError):
        butler.get(ref, verify_checksums=True)
    untouched = butler.put({"b": 1}, "metrics", {**DATA_ID, "detector": 1})
    assert butler.get(untouched, verify_checksums=True) == {"b": 1}


def test_repository_default_checks_every_get(make_butler, tmp_path: Path) -> None:
    butler = make_butler("checked", run="run/a", collections="run/a", verify_checksums=True)
    butler.insert_records("instrument", [{"name": "Cam"}])
    butler.register_dataset_type("image", ["instrument"], "Image")
    ref = butler.put(np.ones((20, 30), dtype=np.float32), "image", instrument="Cam")
    assert butler.get("image", instrument="Cam", parameters={"bbox": (0, 0, 5, 5)}).data.shape == (5, 5)
    tamper(butler, ref)
    again = Butler(butler.root, collections="run/a")
    assert again.config.verify_checksums is True
    for kwargs in ({}, {"component": "header"}, {"parameters": {"bbox": (0, 0, 5, 5)}}):
        with pytest.raises(ChecksumMismatchError):
            again.get("image", instrument="Cam", **kwargs)
    assert again.get("image", instrument="Cam", verify_checksums=False).data.shape == (20, 30)
    again.close()


def test_verify_checksums_names_each_mismatch(butler: Butler, tmp_path: Path) -> None:
    refs = [butler.put({"value": 1000 + d}, "metrics", {**DATA_ID, "detector": d}) for d in range(4)]
    source = tmp_path / "direct.json"
    source.write_text('{"value": 5555}')
    (direct,) = butler.ingest("metrics", [(source, {**DATA_ID, "visit": 2})], transfer="direct")
    assert verify(butler, check_checksums=True).consistent
    tamper(butler, refs[1])
    tamper(butler, refs[3])
    source.write_text('{"value": 5556}')
    seen: list[tuple[int, int]] = []
    report = verify(butler, check_checksums=True, progress=lambda done, total: seen.append((done, total)))
    assert not report.consistent and report.size_mismatches == []
    assert sorted(report.checksum_mismatches) == sorted(
        f"{r.artifact.path} (dataset {r.id})" for r in (refs[1], refs[3], direct))
    assert seen[-1] == (5, 5) and len(seen) == 5
    assert verify(butler, check_sizes=True).consistent  # same sizes: only the checksums tell
    result = CliRunner().invoke(cli, ["verify", str(butler.root), "--checksums", "--json"])
    assert result.exit_code == 1
    assert sorted(json.loads(result.stdout)["checksum_mismatches"]) == sorted(report.checksum_mismatches)
    result = CliRunner().invoke(cli, ["verify", str(butler.root), "--checksums"])
    assert result.exit_code == 1 and result.stdout.count("checksum differs") == 3
    assert "INCONSISTENT" in result.stdout


# -- concurrent identical ingests (issue 13, item 11) ---------------------------


def _cli_process(*args: object):
    import os
    import subprocess
    import sys

    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    return subprocess.Popen([sys.executable, "-m", "skybutler.cli", *map(str, args)], env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
@pytest.mark.parametrize("transfer", ["copy", "direct"])
def test_two_identical_ingests_at_once_both_succeed(stack: str, night: Path, tmp_path: Path, transfer: str) -> None:
    n_files = len(list(night.glob("*.fits")))
    for trial in range(2):
        root = tmp_path / f"repo{trial}"
        Butler.create(root, **stack_locations(stack, tmp_path)).close()
        procs = [_cli_process("ingest-raws", root, night, "--transfer", transfer, "--processes", "1")
                 for _ in range(2)]
        outputs = [p.communicate(timeout=300) for p in procs]
        for proc, (out, err) in zip(procs, outputs):
            assert proc.returncode == 0, f"stdout:\n{out}\nstderr:\n{err}"
            assert "already exist" not in err and "refusing" not in err
        ingested = [int(out.split(" raw(s) ingested")[0].split()[-1]) for out, _ in outputs]
        already = [out.count("already ingested: ") for out, _ in outputs]
        assert [i + a for i, a in zip(ingested, already)] == [n_files, n_files]
        assert sum(ingested) == n_files  # each raw went in exactly once
        with Butler(root) as butler:
            assert verify(butler).consistent
            assert butler.query_datasets("raw", collections="SimCam/raw/all").count() == n_files


# -- input files that are not UTF-8 (issue 13, item 11) -----------------------------


def test_a_non_utf8_input_file_is_named_in_one_line(butler: Butler, tmp_path: Path) -> None:
    records = tmp_path / "records.yaml"
    records.write_bytes("- name: Caméra\n  detector_max: 4\n".encode("latin-1"))
    cli_fails("insert-records", butler.root, "instrument", records,
              message=f"{records} is not UTF-8 text: byte 0xe9 at line 1")
    data = tmp_path / "obj.json"
    data.write_bytes('{"a": "é"}'.encode("latin-1"))
    cli_fails("put", butler.root, "metrics", data, "instrument=Cam", "visit=1", "detector=0", "--run", "run/b",
              message=f"{data} is not UTF-8 text")
    table = tmp_path / "table.csv"
    table.write_bytes("file,instrument,visit,detector\ncafé.json,Cam,1,0\n".encode("latin-1"))
    cli_fails("ingest-files", butler.root, "metrics", table, "--run", "run/b",
              message=f"{table} is not UTF-8 text: byte 0xe9 at line 2")
    assert not butler.collections.exists("run/b")


def test_put_of_a_json_file_holding_nan_is_refused(butler: Butler, tmp_path: Path) -> None:
    data = tmp_path / "obj.json"
    data.write_text('{"a": NaN}')
    cli_fails("put", butler.root, "metrics", data, "instrument=Cam", "visit=1", "detector=0", "--run", "run/b",
              message="value at a is nan, which JSON cannot hold")
