"""Fault injection on copying datasets out into a person's directory (``retrieve-artifacts``, as
files or one zip, replacing what is there with ``--clobber``): killed after a few files, every
file at the destination is the person's old one or the new one, whole -- none deleted, none
half-written under its final name, no file of theirs under a name skybutler uses for its
temporary copy overwritten.
"""

from __future__ import annotations

import glob
import os
import signal
from pathlib import Path

import pytest
from click.testing import CliRunner

from skybutler.cli.main import cli
from test_faults import _put_many, template  # noqa: F401 -- template, the fixture, shared

pytestmark = pytest.mark.slow


@pytest.fixture
def repo(template, tmp_path) -> Path:  # noqa: F811
    import shutil

    root = Path(shutil.copytree(template, tmp_path / "repo"))
    _put_many(root)
    return root


def _killed(repo: Path, out: Path, owner: type, name: str, *extra: str) -> bool:
    """The retrieve in a forked child that SIGKILLs itself at the 3rd call of ``owner.name``
    (before it acts); True if it was killed there."""
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
            cli.main(_args(repo, out, *extra), prog_name="skybutler", standalone_mode=True)
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
    assert _killed(repo, out, Path, "replace")
    after = {p: p.read_bytes() for p in out.rglob("*.json") if ".skybutler-retrieve-" not in str(p)}
    assert set(after) == set(new)
    assert all(after[p] in (b"old", new[p]) for p in new), "a file half-written or lost"
    assert sum(after[p] == new[p] for p in new) == 2  # killed before its 3rd replacement
