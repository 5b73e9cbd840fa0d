"""Fault injection on copying datasets out into a person's directory (``retrieve-artifacts``, as
files or one zip, replacing what is there with ``--clobber``; ``export``): killed after a few
files, every file at the destination is the person's old one or the new one, whole -- none
deleted, none half-written under its final name, no file of theirs under a name skybutler uses
for its temporary copy overwritten -- and an export killed so is finished by running it again.
"""

from __future__ import annotations

import glob
import os
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from skybutler import retrieve
from skybutler.cli.main import cli
from test_faults import _put_many, template  # noqa: F401 -- template, the fixture, shared

pytestmark = pytest.mark.slow


@pytest.fixture
def repo(template, tmp_path) -> Path:  # noqa: F811
    import shutil

    root = Path(shutil.copytree(template, tmp_path / "repo"))
    _put_many(root)
    return root


def _killed(repo: Path, out: Path, owner: type | object, name: str, *extra: str,
            args: list[str] | None = None) -> bool:
    """The retrieve (or ``args``) in a forked child that SIGKILLs itself at the 3rd call of
    ``owner.name`` (before it acts); True if it was killed there."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        original, calls = getattr(owner, name), [0]

        def hooked(*args, **kwargs):
            calls[0] += 1
            if calls[0] == 3:
                os.kill(os.getpid(), signal.SIGKILL)
            return original(*args, **kwargs)

        setattr(owner, name, hooked)
        try:
            cli.main(args or _args(repo, out, *extra), prog_name="skybutler", standalone_mode=True)
        finally:
            os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL


def _args(repo: Path, out: Path, *extra: str) -> list[str]:
    return ["retrieve-artifacts", str(repo), str(out), "--collections", "r", "--clobber", *extra]


def _retrieve(repo: Path, out: Path, *extra: str) -> None:
    result = CliRunner().invoke(cli, _args(repo, out, *extra))
    assert result.exit_code == 0, result.output


def test_a_killed_zip_retrieve_keeps_the_old_zip_or_writes_the_new_one(repo, tmp_path):
    import zipfile

    out = tmp_path / "out"
    _retrieve(repo, out, "--zip")
    (made,) = glob.glob(str(out / "*.zip"))
    made = Path(made)
    new = made.read_bytes()
    made.write_bytes(b"the person's own older zip")
    mine = made.parent / (made.name[:-len(".zip")] + ".zip.tmp")
    mine.write_bytes(b"a file of the person's, named as skybutler might name a temporary copy")
    mine_bytes = mine.read_bytes()

    assert _killed(repo, out, zipfile.ZipFile, "write", "--zip")
    assert made.read_bytes() == b"the person's own older zip", "a killed retrieve deleted the zip it was to replace"
    assert mine.read_bytes() == mine_bytes, "a killed retrieve overwrote a person's file"
    _retrieve(repo, out, "--zip")  # again, uninterrupted: the new zip, whole
    with zipfile.ZipFile(made) as archive:
        assert archive.testzip() is None and len(archive.namelist()) == len(zipfile.ZipFile(
            __import__("io").BytesIO(new)).namelist())
    assert mine.read_bytes() == mine_bytes


def test_a_killed_retrieve_leaves_each_file_old_or_new_and_whole(repo, tmp_path):
    out = tmp_path / "out"
    _retrieve(repo, out)
    new = {p: p.read_bytes() for p in out.rglob("*.json")}
    for p in new:
        p.write_bytes(b"old")
    assert _killed(repo, out, retrieve, "replace_file")
    after = {p: p.read_bytes() for p in out.rglob("*.json") if ".skybutler-retrieve-" not in str(p)}
    assert set(after) == set(new)
    assert all(after[p] in (b"old", new[p]) for p in new), "a file half-written or lost"
    assert sum(after[p] == new[p] for p in new) == 2  # killed before its 3rd replacement


def test_a_killed_export_is_finished_by_exporting_again(repo, tmp_path):
    from skybutler import Butler
    from skybutler.datastore import reading

    out = tmp_path / "out"
    assert _killed(repo, out, reading, "copy_file", args=["export", str(repo), str(out)])
    assert not (out / "export.json").exists()
    again = CliRunner().invoke(cli, ["export", str(repo), str(out)])  # the files of the first run are taken
    assert again.exit_code == 0, again.output
    target = tmp_path / "target"
    Butler.create(target).close()
    assert CliRunner().invoke(cli, ["import", str(target), str(out)]).exit_code == 0
    with Butler(target, collections="r") as butler:
        assert sorted(butler.get(r)["n"] for r in butler.query_datasets("metrics")) == list(range(6))


def test_an_export_never_replaces_a_persons_file(repo, tmp_path):
    out = tmp_path / "out"
    assert CliRunner().invoke(cli, ["export", str(repo), str(out)]).exit_code == 0
    (exported,) = [p for p in out.rglob("*_1_2.json")]
    fresh = tmp_path / "fresh"
    mine = fresh / exported.relative_to(out)
    mine.parent.mkdir(parents=True)
    mine.write_bytes(b"a person's own file")
    result = CliRunner().invoke(cli, ["export", str(repo), str(fresh)])
    assert result.exit_code != 0 and f"{mine} is already there" in result.output, result.output
    assert mine.read_bytes() == b"a person's own file"
