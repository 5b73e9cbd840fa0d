"""Kill sweeps over copying out into a person's directory (export, retrieve-artifacts as files or a
zip; local files, an S3 datastore, a server's URL): killed (SIGKILL) at each step of a scratch
file's life -- journaled, made, filled -- the person's files are untouched, no half file stands
under a final name, and after the next copy out into the directory (or ``skybutler
clean-copy-out``) no scratch is left; a person's files named like skybutler's scratch, and
forged journals, are never deleted.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import POSTGRES_URL, S3_ENDPOINT, populate, stack_locations
from server_helpers import running_server
from skybutler import Butler
from skybutler.cli.main import cli
from skybutler.datastore import copy_scratch
from skybutler.retrieve import zip_name as retrieve_zip_name
from test_faults import N_FILES, run_killed

pytestmark = pytest.mark.slow

#: Each step of a scratch file's life, at the first scratch (a retrieve's staging directory, a zip's
#: partial file) and at a later one (a file's copy).
STEPS = ["scratch-journaled:1", "scratch-journaled:4", "scratch-made:1", "scratch-made:4", "scratch-filled:1",
         "scratch-filled:3"]
#: S3 and a server's URL: a representative few (each case costs round trips).
FEW_STEPS = ["scratch-made:3", "scratch-filled:2"]
HEX = "0123456789abcdef" * 2


def _make_repo(path: Path, locations: dict) -> Path:
    with Butler.create(path, **locations) as butler:
        populate(butler)
        butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
        butler.collections.register("r", "run")
        butler.put_many("metrics", [({"n": n}, {"instrument": "Cam", "visit": 1 + n // 4, "detector": n % 4})
                                    for n in range(N_FILES)], run="r")
    return path


def _command(kind: str, source: str, out: Path) -> list[str]:
    if kind == "export":
        return ["export", source, str(out)]
    return ["retrieve-artifacts", source, str(out), "--collections", "r", "--clobber",
            *(["--zip"] if kind == "zip" else [])]


def _run(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output


def _in_child(args: list[str]) -> Callable[[], None]:
    return lambda: cli.main(args, prog_name="skybutler", standalone_mode=True)


def _plant(out: Path, beside: Path) -> dict[Path, bytes]:
    """A person's files in ``out``: an ordinary one, and ones named as skybutler names its scratch
    (beside a final path too), a journal of garbage and a forged journal naming two of them (one
    with another inode, one only as an intent while it holds bytes)."""
    beside.parent.mkdir(parents=True, exist_ok=True)
    files = {out / "notes.txt": b"my notes",
             out / f".notes.txt.{HEX}.download": b"named like a scratch download",
             out / f".empty.{HEX}.download": b"",
             beside.parent / f".{beside.name}.{HEX}.download": b"beside an exported file",
             out / f".x.zip.{HEX}.partial": b"named like a partial zip",
             out / f".skybutler-retrieve-{HEX}" / "kept.json": b"in a directory named like a staging one",
             out / f"{copy_scratch.JOURNAL_PREFIX}{'f' * 32}{copy_scratch.JOURNAL_SUFFIX}": b"not json\n"}
    for path, data in files.items():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
    forged = out / f"{copy_scratch.JOURNAL_PREFIX}{'e' * 32}{copy_scratch.JOURNAL_SUFFIX}"
    lines = [{"skybutler": copy_scratch.MARK, "version": 1, "token": "e" * 32, "pid": 1, "host": "h"},
             {"intent": f".notes.txt.{HEX}.download", "kind": "file"},
             {"made": f".notes.txt.{HEX}.download", "dev": 0, "ino": 1},
             {"intent": f".x.zip.{HEX}.partial", "kind": "file"}]
    forged.write_text("".join(json.dumps(line) + "\n" for line in lines))
    return files


def _scratch(out: Path, planted: dict[Path, bytes]) -> list[Path]:
    """Hidden names under ``out`` that are not the person's (the forged journal aside: it goes)."""
    keep = set(planted) | {p.parent for p in planted}
    return [p for p in out.rglob(".*") if p not in keep and not p.name.startswith(copy_scratch.JOURNAL_PREFIX + "e")]


def _visible(out: Path) -> dict[str, bytes]:
    return {str(p.relative_to(out)): p.read_bytes() for p in sorted(out.rglob("*"))
            if p.is_file() and not any(part.startswith(".") for part in p.relative_to(out).parts)}


def _sweep(tmp_path: Path, kind: str, source: str, steps: list[str], clean: bool = False) -> None:
    """Kill the copy out at each step, check, run it again (or ``clean-copy-out``), check again."""
    reference = tmp_path / f"reference-{kind}"
    _run(_command(kind, source, reference))
    whole = _visible(reference)
    first = next(reference / name for name in whole if not name.startswith("export."))
    killed = 0
    for number, step in enumerate(steps):
        out = tmp_path / f"out-{kind}-{number}"
        out.mkdir()
        planted = _plant(out, out / first.relative_to(reference))
        killed += run_killed(_in_child(_command(kind, source, out)), step)
        after = _visible(out)
        assert all(after[name] == data for name, data in planted_visible(out, planted).items())
        for name, data in after.items():  # no half file under a final name
            if name == "notes.txt":
                continue
            assert _same(data, whole[name]), f"{name} half-written at {step}"
        if clean:
            result = CliRunner().invoke(cli, ["clean-copy-out", str(out)])
            assert result.exit_code == 0, result.output
        else:
            _run(_command(kind, source, out))
            again = _visible(out)
            assert again.pop("notes.txt") == b"my notes" and again.keys() == whole.keys(), step
            assert all(_same(again[name], whole[name]) for name in whole), step
        assert {p: p.read_bytes() for p in planted} == planted, f"a person's file changed at {step}"
        assert _scratch(out, planted) == [], f"scratch left after {step}"
    assert killed == len(steps), "a step was never reached"


def _same(data: bytes, expected: bytes) -> bool:
    """The same bytes; for zips (whose members carry the time they were written), the same members."""
    if not expected.startswith(b"PK"):
        return data == expected
    with zipfile.ZipFile(io.BytesIO(data)) as made, zipfile.ZipFile(io.BytesIO(expected)) as want:
        return made.testzip() is None and {n: made.read(n) for n in made.namelist()} == {
            n: want.read(n) for n in want.namelist()}


def planted_visible(out: Path, planted: dict[Path, bytes]) -> dict[str, bytes]:
    return {str(p.relative_to(out)): data for p, data in planted.items() if not p.name.startswith(".")
            and ".skybutler-retrieve-" not in str(p)}


@pytest.fixture(scope="module")
def local_repo(tmp_path_factory) -> Path:
    return _make_repo(tmp_path_factory.mktemp("local") / "repo", {"registry": None, "datastore": None})


@pytest.mark.parametrize("kind", ["export", "retrieve", "zip"])
def test_a_killed_local_copy_out_is_cleaned_by_the_next(local_repo, tmp_path, kind):
    _sweep(tmp_path, kind, str(local_repo), STEPS)


def test_clean_copy_out_removes_a_killed_copy_outs_scratch(local_repo, tmp_path):
    _sweep(tmp_path, "retrieve", str(local_repo), ["scratch-made:1", "scratch-filled:2"], clean=True)


@pytest.mark.skipif(not (POSTGRES_URL and S3_ENDPOINT), reason="needs the PostgreSQL and S3 test servers")
@pytest.mark.parametrize("kind", ["export", "retrieve"])
def test_a_killed_copy_out_from_s3_is_cleaned_by_the_next(tmp_path, kind):
    repo = _make_repo(tmp_path / "repo", stack_locations("postgres", tmp_path))
    with Butler(repo) as butler:
        assert not butler.datastore.local
    _sweep(tmp_path, kind, str(repo), FEW_STEPS)


@pytest.mark.parametrize("kind", ["export", "retrieve"])
def test_a_killed_copy_out_from_a_server_is_cleaned_by_the_next(local_repo, tmp_path, kind, monkeypatch):
    from skybutler.access import Access

    repo = Path(shutil.copytree(local_repo, tmp_path / "served"))
    with Butler(repo) as butler:
        access = Access(butler.registry.access)
        access.add_user("boss", admin=True)
        monkeypatch.setenv("SKYBUTLER_TOKEN", access.create_token("boss"))
    with running_server(repo) as url:
        _sweep(tmp_path, kind, url, FEW_STEPS)


@pytest.mark.parametrize("name", ["export.datasets.jsonl", "export.records.jsonl"])
def test_an_export_never_replaces_a_persons_file_under_its_own_names(local_repo, tmp_path, name):
    out = tmp_path / "out"
    out.mkdir()
    (out / name).write_bytes(b"a person's own file")
    result = CliRunner().invoke(cli, ["export", str(local_repo), str(out)])
    assert result.exit_code != 0 and f"{out / name} is already there" in result.output, result.output
    assert (out / name).read_bytes() == b"a person's own file" and not (out / "export.json").exists()
    assert [p for p in out.rglob(".*")] == [], "scratch left"


def test_a_running_copy_outs_scratch_is_left_alone(tmp_path):
    """Another copy out into the same directory, still at work (its journal locked), keeps its scratch."""
    with copy_scratch.copy_out_into(tmp_path) as running:
        partial = running.new_file(str(tmp_path / "f.json"))
        assert copy_scratch.remove_abandoned(tmp_path) == []
        with copy_scratch.copy_out_into(tmp_path):
            assert os.path.exists(partial)
    assert os.listdir(tmp_path) == []  # each removed its own scratch and journal when done


def _journal(root: Path, *entries: dict, token: str = "a" * 32) -> Path:
    """A journal of a dead copy out (no process holds it) with these entries after its header."""
    path = root / f"{copy_scratch.JOURNAL_PREFIX}{token}{copy_scratch.JOURNAL_SUFFIX}"
    header = {"skybutler": copy_scratch.MARK, "version": 1, "token": token, "pid": 1, "host": "h"}
    path.write_text("".join(json.dumps(e) + "\n" for e in (header, *entries)))
    return path


def _made(root: Path, relative: str) -> list[dict]:
    info = os.lstat(root / relative)
    return [{"intent": relative, "kind": "file"}, {"made": relative, "dev": info.st_dev, "ino": info.st_ino}]


def test_only_the_proven_scratch_of_a_dead_journal_is_removed(tmp_path):
    root = tmp_path / "out"
    (root / "sub").mkdir(parents=True)
    ours = root / "sub" / f".f.json.{HEX}.download"
    ours.write_bytes(b"half")
    empty = root / f".g.json.{'1' * 32}.download"
    empty.write_bytes(b"")
    outside = tmp_path / ".outside"
    outside.write_bytes(b"a file outside the directory copied into")
    visible = root / "visible.json"
    visible.write_bytes(b"a file under a name skybutler never gives its scratch")
    linked = root / f".l.json.{HEX}.download"
    linked.symlink_to(visible)
    journal = _journal(root, *_made(root, f"sub/{ours.name}"), {"intent": empty.name, "kind": "file"},
                       *_made(root, "../.outside"), *_made(root, str(outside)), *_made(root, visible.name),
                       *_made(root, linked.name), {"made": ["not", "a", "path"]}, "not an entry",
                       {"intent": f".h.{HEX}", "kind": "file"}, {"made": f".h.{HEX}", "dev": "x", "ino": None})
    assert sorted(copy_scratch.remove_abandoned(root)) == sorted([str(ours), str(empty)])
    assert not journal.exists()
    assert outside.read_bytes().startswith(b"a file outside") and visible.exists() and linked.is_symlink()


def test_a_journal_not_skybutlers_is_left_alone(tmp_path):
    mine = tmp_path / f".f.json.{HEX}.download"
    mine.write_bytes(b"")
    token = "b" * 32
    forged = _journal(tmp_path, {"intent": mine.name, "kind": "file"}, token=token)
    forged.write_text(forged.read_text().replace(copy_scratch.MARK, "something else"))
    wrong_token = _journal(tmp_path, {"intent": mine.name, "kind": "file"}, token="c" * 32)
    wrong_token.write_text(wrong_token.read_text().replace("c" * 32, "d" * 32, 1))
    assert copy_scratch.remove_abandoned(tmp_path) == []
    assert mine.exists() and forged.exists() and wrong_token.exists()


@pytest.mark.parametrize("step", ["scratch-journaled:1", "scratch-made:1", "scratch-filled:1"])
def test_a_killed_get_to_a_file_keeps_the_old_file_whole(local_repo, tmp_path, step):
    """``get -o FILE`` replaces FILE (as ``cp`` would) in one rename once the new one is whole."""
    out = tmp_path / "out"
    out.mkdir()
    target = out / "m.json"
    args = ["get", str(local_repo), "metrics", "instrument=Cam", "visit=1", "detector=0", "-c", "r", "-o", str(target)]
    _run(args)
    new = target.read_bytes()
    target.write_bytes(b"the person's older file")
    planted = {out / f".m.json.{HEX}.download": b"named like a scratch download"}
    for path, data in planted.items():
        path.write_bytes(data)
    assert run_killed(_in_child(args), step)
    assert target.read_bytes() == b"the person's older file"
    _run(args)
    assert target.read_bytes() == new
    assert {p: p.read_bytes() for p in planted} == planted and _scratch(out, planted) == []


@pytest.mark.parametrize("writer, removed", [("dead", True), ("alive", False), ("other host", False),
                                             ("rebooted", True)])
def test_without_flock_the_writers_identity_decides(tmp_path, monkeypatch, writer, removed):
    """Where the file system refuses ``flock`` (ENOLCK), a journal's writer is dead if it ran on this
    host and either in an earlier boot or as a process that is gone."""
    import errno
    import socket

    def refused(fd, operation):
        raise OSError(errno.ENOLCK, "no locks here")

    ours = tmp_path / f".f.json.{HEX}.download"
    ours.write_bytes(b"half")
    gone = os.fork()
    if gone == 0:
        os._exit(0)
    os.waitpid(gone, 0)
    journal = _journal(tmp_path, *_made(tmp_path, ours.name))
    header = {"skybutler": copy_scratch.MARK, "version": 1, "token": "a" * 32,
              "pid": os.getpid() if writer == "alive" else gone,
              "host": "elsewhere" if writer == "other host" else socket.gethostname(),
              "boot_id": "an earlier boot" if writer == "rebooted" else copy_scratch._boot_id()}
    lines = journal.read_text().splitlines()
    journal.write_text("\n".join([json.dumps(header), *lines[1:]]) + "\n")
    monkeypatch.setattr(copy_scratch.fcntl, "flock", refused)
    assert copy_scratch.remove_abandoned(tmp_path) == ([str(ours)] if removed else [])
    assert ours.exists() != removed and journal.exists() != removed


def test_a_zip_that_came_meanwhile_is_never_replaced(local_repo, tmp_path, monkeypatch):
    """Without overwrite, a zip put at the zip's name while it was being written is kept, and the
    new one refused by name (it was replaced, in the window between the check and the rename)."""
    from skybutler.errors import SkybutlerError
    from skybutler.interchange import rubin_export

    out = tmp_path / "out"
    written = rubin_export._write_zip_members

    def then_theirs(*args):
        written(*args)
        (out / zip_name).write_bytes(b"a person's zip, put there meanwhile")

    monkeypatch.setattr(rubin_export, "_write_zip_members", then_theirs)
    with Butler(local_repo) as butler:
        refs = list(butler.query_datasets("metrics", collections="r"))
        zip_name = retrieve_zip_name(refs)
        with pytest.raises(SkybutlerError, match="already exists"):
            butler.retrieve_artifacts(refs, out, zip=True)
    assert (out / zip_name).read_bytes() == b"a person's zip, put there meanwhile"
    assert [p.name for p in out.iterdir()] == [zip_name], "scratch left"
