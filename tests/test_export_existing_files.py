"""An export (any copy out) never replaces a file already at an export path, on every stack: on an
object store the file is downloaded under a hidden scratch name and moved into place only if
nothing is there.  A person's file there is refused by name, byte for byte as it was; the very
file the export would place (an export run again) is taken."""

from __future__ import annotations

import os
from pathlib import Path

import fsspec
import pytest
from click.testing import CliRunner

from conftest import S3_ENDPOINT
from skybutler.cli.main import cli
from skybutler.datastore.copy_scratch import copy_out_into
from skybutler.datastore.local_files import download_new_file


@pytest.fixture
def repo(butler, stack, tmp_path) -> Path:
    """A repository with a few metrics files (its datastore on S3 on the postgres stack)."""
    butler.put_many("metrics", [({"n": n}, {"instrument": "Cam", "visit": 1, "detector": n}) for n in range(3)])
    assert butler.datastore.local == (stack == "sqlite" or not S3_ENDPOINT)
    butler.close()
    return tmp_path / "repo"  # where make_butler made it


def _export(repo: Path, out: Path):
    return CliRunner().invoke(cli, ["export", str(repo), str(out)])


def _files(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in out.rglob("*") if p.is_file()}


def test_an_export_never_replaces_a_persons_file(repo, tmp_path, stack):
    out = tmp_path / "out"
    assert _export(repo, out).exit_code == 0
    (exported,) = [p for p in out.rglob("*_1_2.json")]
    fresh = tmp_path / "fresh"
    mine = fresh / exported.relative_to(out)
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"a person's own file")
    result = _export(repo, fresh)
    assert result.exit_code != 0 and f"{mine} is already there" in result.output, result.output
    assert mine.read_bytes() == b"a person's own file"
    assert not [p for p in fresh.rglob(".*") if p.is_file()], "a scratch download left behind"


def test_an_export_killed_is_finished_by_running_it_again(repo, tmp_path, stack):
    out = tmp_path / "out"
    assert _export(repo, out).exit_code == 0
    whole = _files(out)
    (out / "export.json").unlink()  # as a killed export leaves it: some files placed, no manifest
    next(out.rglob("*_1_2.json")).unlink()
    again = _export(repo, out)  # the files already there are its own: taken
    assert again.exit_code == 0, again.output
    assert _files(out) == whole


class _Fetching:
    """An fsspec file system whose download writes half the bytes, then runs ``meanwhile``."""

    def __init__(self, meanwhile):
        self.meanwhile = meanwhile

    def get_file(self, source: str, destination: str) -> None:
        Path(destination).write_bytes(b"half")
        self.meanwhile()


def test_a_download_cut_short_leaves_nothing_under_the_final_name(tmp_path):
    def cut() -> None:
        raise ConnectionError("the connection dropped")

    with pytest.raises(ConnectionError), copy_out_into(tmp_path) as journal:
        download_new_file(_Fetching(cut), "bucket/key", str(tmp_path / "f.json"), journal)
    assert os.listdir(tmp_path) == []


def test_a_file_placed_during_the_download_is_kept(tmp_path):
    target = tmp_path / "f.json"
    with pytest.raises(FileExistsError), copy_out_into(tmp_path) as journal:
        download_new_file(_Fetching(lambda: target.write_bytes(b"theirs")), "bucket/key", str(target), journal)
    assert target.read_bytes() == b"theirs" and os.listdir(tmp_path) == ["f.json"]


def test_a_downloaded_file_already_there_is_taken(tmp_path):
    fs = fsspec.filesystem("memory")
    fs.pipe_file("/bucket/key", b"the bytes")
    target = tmp_path / "f.json"
    target.write_bytes(b"the bytes")
    with copy_out_into(tmp_path) as journal:
        download_new_file(fs, "/bucket/key", str(target), journal)
    assert target.read_bytes() == b"the bytes" and os.listdir(tmp_path) == ["f.json"]
