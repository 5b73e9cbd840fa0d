"""A repository never loses or harms what it was given: create beside foreign files, the
datastore's own tree, verify and its repair (quarantine, never deletion of what is not ours)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from skybutler import Butler
from skybutler.cli.main import cli
from skybutler.errors import SkybutlerError
from skybutler.verify import verify

from conftest import populate

DATA_ID = {"instrument": "Cam", "visit": 1, "detector": 2}


def _cli(*args: object, code: int = 0, input: str | None = None):
    result = CliRunner().invoke(cli, [str(a) for a in args], input=input)
    assert result.exit_code == code, f"exit {result.exit_code}\n{result.stdout}\n{result.stderr}"
    assert "Traceback" not in result.output
    return result


def _foreign(root: Path) -> dict[str, bytes]:
    """Files of the user's own in ``root``; returns their contents by name."""
    root.mkdir(parents=True, exist_ok=True)
    files = {"notes.txt": b"my notes", "image.fits": b"SIMPLE  =                    T" + b" " * 50}
    for name, data in files.items():
        (root / name).write_bytes(data)
    return files


def _ready(butler: Butler) -> Butler:
    populate(butler)
    butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    return butler


# -- create -------------------------------------------------------------------


def test_create_refuses_a_non_empty_directory(tmp_path):
    root = tmp_path / "repo"
    files = _foreign(root)
    with pytest.raises(SkybutlerError, match="is not empty .*existing_ok=True"):
        Butler.create(root)
    assert {p.name: p.read_bytes() for p in root.iterdir()} == files  # nothing was made there
    result = _cli("create", root, code=1)
    assert result.stderr.startswith("error: ") and "--existing-ok" in result.stderr
    assert {p.name for p in root.iterdir()} == set(files)


def test_create_existing_ok_never_counts_or_touches_foreign_files(tmp_path):
    root = tmp_path / "repo"
    files = _foreign(root)
    _cli("create", root, "--existing-ok")
    with _ready(Butler(root, run="r")) as butler:
        butler.put({"a": 1}, "metrics", DATA_ID)
        report = verify(butler)
        assert report.consistent and report.files == 1, report.summary()
    _cli("verify", root, "--fix")
    assert {name: (root / name).read_bytes() for name in files} == files


def test_create_existing_ok_refuses_names_it_would_make(tmp_path):
    root = tmp_path / "repo"
    _foreign(root)
    (root / "datastore").mkdir()
    with pytest.raises(SkybutlerError, match="already holds datastore"):
        Butler.create(root, existing_ok=True)
    assert not (root / "butler.yaml").exists() and not (root / "registry.sqlite3").exists()


def test_a_new_repository_keeps_dataset_files_apart_from_the_registry(tmp_path):
    with _ready(Butler.create(tmp_path / "repo", run="r")) as butler:
        ref = butler.put({"a": 1}, "metrics", DATA_ID)
        assert Path(butler.datastore.root) == tmp_path / "repo" / "datastore"
        assert butler.get_uri(ref).startswith(f"file://{tmp_path / 'repo' / 'datastore'}/")
        assert yaml.safe_load((tmp_path / "repo" / "butler.yaml").read_text())["datastore"] == "datastore"


def test_a_repository_with_files_at_its_root_keeps_opening(tmp_path):
    """Repositories made before the datastore had a tree of its own keep their layout."""
    root = tmp_path / "old"
    Butler.create(root).close()
    config = yaml.safe_load((root / "butler.yaml").read_text())
    del config["datastore"]
    (root / "butler.yaml").write_text(yaml.safe_dump(config))
    os.rmdir(root / "datastore")
    with _ready(Butler(root, run="r", collections="r")) as butler:
        ref = butler.put({"a": 1}, "metrics", DATA_ID)
        assert (root / ref.artifact.path).exists()
        assert butler.get("metrics", DATA_ID) == {"a": 1}
        report = verify(butler)
        # butler.yaml and the SQLite files are the registry's, never dataset files
        assert report.consistent and report.files == 1, report.summary()
