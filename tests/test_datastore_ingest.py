"""Ingest through the Butler into the file datastore: every transfer mode (copy, move, the
links, direct, auto), given IDs and skip_existing, each file opened once to be checked, and a
failed ingest undoing every file it placed."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from skybutler.errors import DatasetConflictError, DatastoreError, InvalidFileError, SkybutlerError, TransferError
from skybutler.formats import get_formatter
from skybutler.models import DatasetRef
from test_datastore import DATA_ID, assert_no_temporaries, local_only, n_datasets, stored_files


def write_json(path: Path, value) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(value))
    return path


@pytest.fixture
def raws(butler, tmp_path):
    butler.register_dataset_type("raw", ["visit", "detector"], "Dict")
    return [write_json(tmp_path / "incoming" / f"raw_{d}.json", {"det": d}) for d in range(3)]


def ingest_one(butler, source, transfer, detector=0):
    (ref,) = butler.ingest("raw", [(source, {**DATA_ID, "detector": detector})], transfer=transfer)
    return ref


def test_ingest_copy(butler, raws):
    local_only(butler)
    ref = ingest_one(butler, raws[0], "copy")
    assert ref.artifact.path == "run~/a/raw/g/20250101/raw_Cam_1_0.json"
    stored = Path(butler.datastore.full_path(ref.artifact.path))
    assert raws[0].exists() and stored.exists() and not stored.is_symlink()
    assert os.stat(stored).st_ino != os.stat(raws[0]).st_ino
    assert butler.get(ref) == {"det": 0}
    assert ref.artifact.checksum.startswith("xxh3:") and ref.artifact.size == raws[0].stat().st_size
    assert butler.datastore.read(ref.artifact, check=True) == {"det": 0}
    assert_no_temporaries(butler)


def test_ingest_move(butler, raws):
    ref = ingest_one(butler, raws[0], "move")
    assert not raws[0].exists()
    assert butler.get(ref) == {"det": 0}


def test_a_move_of_a_symbolic_link_stores_the_file_it_points_to(butler, raws, tmp_path):
    """The link goes, the file it points to stays where it is, and the repository holds a copy of
    it: renamed into the datastore, the link left the repository's file outside it."""
    local_only(butler)
    link = tmp_path / "incoming" / "link to raw_0.json"
    link.symlink_to(raws[0])
    ref = ingest_one(butler, link, "move")
    stored = Path(butler.datastore.full_path(ref.artifact.path))
    assert not os.path.lexists(link) and raws[0].exists()
    assert not stored.is_symlink() and stored.read_bytes() == raws[0].read_bytes()
    assert butler.get(ref) == {"det": 0}
    assert butler.datastore.read(ref.artifact, check=True) == {"det": 0}


def test_ingest_hardlink(butler, raws):
    local_only(butler)
    ref = ingest_one(butler, raws[0], "hardlink")
    stored = Path(butler.datastore.full_path(ref.artifact.path))
    assert os.stat(stored).st_ino == os.stat(raws[0]).st_ino
    assert butler.get(ref) == {"det": 0}


def test_ingest_symlink(butler, raws):
    local_only(butler)
    ref = ingest_one(butler, raws[0], "symlink")
    stored = Path(butler.datastore.full_path(ref.artifact.path))
    assert stored.is_symlink() and stored.resolve() == raws[0].resolve()
    assert butler.get(ref) == {"det": 0}


def test_ingest_relsymlink_links_by_a_relative_path(butler, raws):
    local_only(butler)
    ref = ingest_one(butler, raws[0], "relsymlink")
    stored = Path(butler.datastore.full_path(ref.artifact.path))
    assert stored.is_symlink() and not os.readlink(stored).startswith("/")
    assert stored.resolve() == raws[0].resolve() and butler.get(ref) == {"det": 0}


def test_ingest_link_is_a_hard_link_on_the_same_device(butler, raws):
    local_only(butler)
    ref = ingest_one(butler, raws[0], "link")
    stored = Path(butler.datastore.full_path(ref.artifact.path))
    assert not stored.is_symlink() and os.stat(stored).st_ino == os.stat(raws[0]).st_ino


def test_ingest_direct_leaves_the_file_in_place(butler, raws):
    ref = ingest_one(butler, raws[0], "direct")
    assert ref.artifact.path == f"file://{raws[0]}"
    assert butler.get_uri(ref) == f"file://{raws[0]}"
    assert stored_files(butler) == set()
    assert butler.get(ref) == {"det": 0}
    assert butler.datastore.read(ref.artifact, check=True) == {"det": 0}
    # removing the dataset does not delete a file the repository does not own
    butler.remove([ref])
    assert raws[0].exists()
    assert butler.find_dataset("raw", {**DATA_ID, "detector": 0}) is None


def test_ingest_auto(butler, raws):
    local_only(butler)
    outside = ingest_one(butler, raws[0], "auto")  # outside the root: copied
    assert raws[0].exists() and outside.artifact.path.startswith("run~/a/raw/")
    inside_file = write_json(Path(butler.datastore.root) / "curated" / "raw_1.json", {"det": 1})
    inside = ingest_one(butler, inside_file, "auto", detector=1)  # already inside: used in place
    assert inside.artifact.path == "curated/raw_1.json"
    assert butler.get(inside) == {"det": 1}
    assert stored_files(butler) == {outside.artifact.path, "curated/raw_1.json"}


def test_ingest_many_and_skip_existing(butler, raws):
    refs = butler.ingest("raw", [(p, {**DATA_ID, "detector": d}) for d, p in enumerate(raws[:2])],
                         transfer="copy", id_mode="deterministic")
    assert [r.id.version for r in refs] == [5, 5]
    again = butler.ingest("raw", [(p, {**DATA_ID, "detector": d}) for d, p in enumerate(raws)],
                          transfer="copy", id_mode="deterministic", skip_existing=True)
    assert [r.data_id["detector"] for r in again] == [2]
    assert n_datasets(butler) == 3
    # skip_existing into a RUN that does not exist yet
    assert len(butler.ingest("raw", [(raws[0], {**DATA_ID, "detector": 0})], run="run/new",
                             skip_existing=True)) == 1


def test_ingest_keeps_given_ids(butler, raws):
    given = [uuid.uuid4(), str(uuid.uuid4())]
    refs = butler.ingest("raw", [(p, {**DATA_ID, "detector": d}) for d, p in enumerate(raws[:2])],
                         transfer="copy", ids=given)
    assert [r.id for r in refs] == [given[0], uuid.UUID(given[1])]
    assert {r.id for r in butler.query_datasets("raw")} == {given[0], uuid.UUID(given[1])}
    assert butler.get(butler.registry.refs_by_id([given[0]])[0]) == {"det": 0}
    with pytest.raises(SkybutlerError, match="2 dataset IDs for 1 files"):
        butler.ingest("raw", [(raws[2], {**DATA_ID, "detector": 2})], ids=given)
    with pytest.raises(DatasetConflictError):  # an ID already in the repository is refused, nothing lands
        butler.ingest("raw", [(raws[2], {**DATA_ID, "detector": 2})], run="run/other", ids=given[:1])
    assert n_datasets(butler) == 2


def test_ingest_of_an_empty_file_and_of_a_directory(butler, raws, tmp_path):
    empty = tmp_path / "incoming" / "empty.json"
    empty.write_bytes(b"")
    before = stored_files(butler)
    # an empty file is no JSON document: refused, named with its reason, and nothing stays placed
    with pytest.raises(InvalidFileError, match=r"empty\.json: not a readable json file: Expecting value"):
        ingest_one(butler, empty, "copy")
    assert stored_files(butler) == before and empty.exists()
    with pytest.raises(TransferError, match="cannot ingest .*incoming"):
        butler.ingest("raw", [(raws[1], {**DATA_ID, "detector": 1}),
                              (tmp_path / "incoming", {**DATA_ID, "detector": 2})], transfer="copy")
    assert stored_files(butler) == before
    assert not butler.collections.exists("run/a")


def test_each_ingested_file_is_opened_once(butler, raws, monkeypatch):
    """The bytes read to copy a file, or for its checksum, are the ones its formatter checks and takes
    facts from: one open per file (the check and the checksum used to open it twice)."""
    opened: list[str] = []
    real_open, real_os_open = open, os.open
    sources = {str(p) for p in raws}

    def counting_open(file, *args, **kwargs):
        if str(file) in sources:
            opened.append(str(file))
        return real_open(file, *args, **kwargs)

    def counting_os_open(path, *args, **kwargs):
        if str(path) in sources:
            opened.append(str(path))
        return real_os_open(path, *args, **kwargs)

    monkeypatch.setattr("builtins.open", counting_open)
    monkeypatch.setattr(os, "open", counting_os_open)
    for n, transfer in enumerate(("direct", "copy")):
        opened.clear()
        refs = butler.ingest("raw", [(p, {**DATA_ID, "detector": d}) for d, p in enumerate(raws)],
                             transfer=transfer, run=f"run/once{n}")
        assert sorted(opened) == sorted(sources), transfer
        assert [butler.get(r) for r in refs] == [{"det": d} for d in range(3)]


def test_a_bad_file_among_many_is_named_and_nothing_lands(butler, tmp_path, monkeypatch):
    """Where files are placed while the rows go in (a big batch), a refused file (and a FIFO, which
    must not hang the read) still undoes the whole batch, every refusal named."""
    monkeypatch.setattr("skybutler.writes.BACKGROUND_MIN_FILES", 4)
    butler.register_dataset_type("raw", ["visit", "detector"], "Dict")
    ids = [{**DATA_ID, "visit": v, "detector": d} for v in (1, 2) for d in range(4)]
    files = [write_json(tmp_path / "many" / f"raw_{n}.json", {"n": n}) for n in range(len(ids))]
    files[2].write_text("{not json")
    files[6].write_text("[1, 2]")
    fifo = tmp_path / "many" / "fifo.json"
    os.mkfifo(fifo)
    before = stored_files(butler)
    for transfer in ("copy", "direct"):
        with pytest.raises(InvalidFileError) as caught:
            butler.ingest("raw", list(zip(files, ids)), transfer=transfer, run="run/many")
        assert sorted(Path(path).name for path, _ in caught.value.failures) == ["raw_2.json", "raw_6.json"]
        with pytest.raises(TransferError, match="fifo.json: not a regular file"):
            butler.ingest("raw", [(files[0], ids[0]), (fifo, ids[1])], transfer=transfer, run="run/many")
        assert stored_files(butler) == before and not butler.collections.exists("run/many")


def test_failed_ingest_undoes_every_file(butler, raws):
    local_only(butler)
    existing = butler.ingest("raw", [(raws[2], {**DATA_ID, "detector": 2})], transfer="copy",
                             id_mode="deterministic")[0]
    # a stranger's file where the raw of detector 2 would go in RUN run/c
    taken = butler.datastore.relative_path(DatasetRef(uuid.uuid4(), existing.dataset_type, existing.data_id, "run/c"),
                                           get_formatter(existing.artifact.formatter).extension)
    os.makedirs(os.path.dirname(butler.datastore.full_path(taken)))
    Path(butler.datastore.full_path(taken)).write_text("a stranger's")
    before = stored_files(butler)
    batch = [(raws[0], {**DATA_ID, "detector": 0}), (raws[2], {**DATA_ID, "detector": 2})]
    for transfer in ("move", "copy", "hardlink", "symlink"):
        # every file is placed, then the registry refuses the batch (the raw of detector 2 is
        # already in the repository): moved files go back, copies and links go away
        with pytest.raises(DatasetConflictError):
            butler.ingest("raw", batch, transfer=transfer, run="run/b", id_mode="deterministic")
        assert raws[0].exists() and raws[2].exists()
        assert stored_files(butler) == before
        assert not butler.collections.exists("run/b")
        # the datastore refuses the second file (its path is taken): the first is taken back out
        with pytest.raises(DatastoreError, match="refusing to overwrite"):
            butler.ingest("raw", batch, transfer=transfer, run="run/c")
        assert raws[0].exists() and raws[2].exists()
        assert stored_files(butler) == before
        # the data ID is in the RUN already: refused before any file is placed
        with pytest.raises(DatasetConflictError, match="already exists in RUN 'run/a'"):
            butler.ingest("raw", batch, transfer=transfer)
        assert raws[0].exists() and raws[2].exists()
        assert stored_files(butler) == before
    # a missing source file: the first file of the batch is taken back out
    with pytest.raises(TransferError, match="no such file"):
        butler.ingest("raw", [(raws[0], {**DATA_ID, "detector": 0}),
                              (raws[0].with_name("absent.json"), {**DATA_ID, "detector": 1})], transfer="move")
    assert raws[0].exists()
    assert stored_files(butler) == before
    with pytest.raises(SkybutlerError, match="unknown transfer mode 'teleport'"):
        butler.ingest("raw", [(raws[0], {**DATA_ID, "detector": 0})], transfer="teleport")
    assert n_datasets(butler) == 1
    assert_no_temporaries(butler)
