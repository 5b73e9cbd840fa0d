"""The file datastore through the Butler: path templates, checksums, atomic writes, removal,
and no stray files after any failure (ingest in every transfer mode: ``test_datastore_ingest.py``)."""

from __future__ import annotations

import json
import os
import uuid
from pathlib import Path

import pytest

from skybutler import Butler
from skybutler.datastore.templates import DEFAULT_TEMPLATE, PathTemplate
from skybutler.errors import (
    ChecksumMismatchError,
    CollectionError,
    DatasetConflictError,
    DatastoreError,
    FileNotStoredError,
    FormatterError,
    SkybutlerError,
)
from skybutler.formats import get_formatter

DATA_ID = {"instrument": "Cam", "visit": 1, "detector": 2}
REGISTRY_FILES = ("butler.yaml", "registry.sqlite3")


def stored_files(butler) -> set[str]:
    """Every file under the datastore root except the repository's own config and database."""
    return {p for p in butler.datastore.walk() if not p.startswith(REGISTRY_FILES)}


def assert_no_temporaries(butler) -> None:
    stray = [p for p in butler.datastore.walk() if ".tmp-" in p]
    assert stray == []


def local_only(butler) -> None:
    if not butler.datastore.local:
        pytest.skip("needs a datastore on local disk")


def n_datasets(butler, run: str = "run/a") -> int:
    if not butler.collections.exists(run):
        return 0
    return len(butler.registry.datasets.ids_in_collection(run))


# -- path templates -----------------------------------------------------------------


def test_default_template_groups_by_run_type_band_and_night(butler):
    ref = butler.put({"a": 1}, "metrics", DATA_ID)
    assert ref.artifact.path == "run~/a/metrics/g/20250101/metrics_Cam_1_2.json"
    assert butler.get_uri(ref).endswith("run~/a/metrics/g/20250101/metrics_Cam_1_2.json")
    if butler.datastore.local:
        # a new repository keeps its dataset files in a tree of their own, apart from butler.yaml
        assert butler.get_uri(ref) == f"file://{butler.root}/datastore/run~/a/metrics/g/20250101/metrics_Cam_1_2.json"
    assert stored_files(butler) == {ref.artifact.path}
    assert_no_temporaries(butler)


def test_default_template_drops_missing_optional_fields(butler):
    butler.register_dataset_type("detector_config", ["detector"], "Dict")
    ref = butler.put({"gain": 1.2}, "detector_config", instrument="Cam", detector=3)
    assert ref.artifact.path == "run~/a/detector_config/detector_config_Cam_3.json"


def test_path_template_formatting():
    t = PathTemplate(DEFAULT_TEMPLATE)
    fields = {"run": "u/ana/run 1", "dataset_type": "calexp", "band": "r", "day_obs": 20250101,
              "data_id": ("Cam", 1, 2)}
    assert t.format(fields) == "u~/ana~/run%201/calexp/r/20250101/calexp_Cam_1_2"
    assert t.format({**fields, "band": None}) == "u~/ana~/run%201/calexp/20250101/calexp_Cam_1_2"
    # an optional field drops its whole segment, literal text included
    assert PathTemplate("{run}/v{visit?}x/{data_id}").format({"run": "r", "data_id": ("d",)}) == "r/d"
    assert PathTemplate("{run}/v{visit?}x/{data_id}").format({"run": "r", "visit": 5, "data_id": ("d",)}) == "r/v5x/d"
    # other characters are escaped, never interpreted
    assert PathTemplate("{run}/{name}").format({"run": "r", "name": "a b*?"}) == "r/a%20b%2A%3F"
    # no value can climb out of the datastore root or make the path absolute
    assert PathTemplate("{run}/{name}").format({"run": "/abs//r", "name": "../../etc"}) == "%2Fabs%2F%2Fr/..%2F..%2Fetc"
    assert PathTemplate("{run}/{name}").format({"run": "./r", "name": "..."}) == "%2E~/r/%2E%2E%2E"
    with pytest.raises(DatastoreError, match="needs 'visit'"):
        PathTemplate("{run}/{visit}").format({"run": "r", "visit": None})
    with pytest.raises(DatastoreError, match="has no fields"):
        PathTemplate("fixed/path")


def test_run_names_cannot_place_files_outside_the_root(butler, tmp_path):
    local_only(butler)
    outside = tmp_path / "outside"
    for run in ("../escape", f"/{outside}", "a/../../../escape"):
        ref = butler.put({"run": run}, "metrics", DATA_ID, run=run)
        full = Path(butler.datastore.full_path(ref.artifact.path)).resolve()
        assert full.is_relative_to(butler.root) and full.exists()
        assert butler.get(ref) == {"run": run}
    assert not outside.exists() and not (tmp_path / "escape").exists()


def test_custom_templates_per_dataset_type(make_butler):
    from conftest import populate

    b = make_butler(run="run/a", templates={"metrics": "by_visit/{instrument}/{visit}/{detector}/{band?}/{run}",
                                            "default": "{dataset_type}/{run}/{data_id}"})
    populate(b)
    b.register_dataset_type("metrics", ["visit", "detector"], "Dict")
    b.register_dataset_type("detector_config", ["detector"], "Dict")
    m = b.put({"a": 1}, "metrics", DATA_ID)
    d = b.put({"a": 2}, "detector_config", instrument="Cam", detector=2)
    assert m.artifact.path == "by_visit/Cam/1/2/g/run~/a.json"
    assert d.artifact.path == "detector_config/run~/a/Cam_2.json"
    assert b.get(m) == {"a": 1} and b.get(d) == {"a": 2}
    # the templates are part of the repository: a new client uses them too
    from skybutler import Butler

    with Butler(b.root, collections="run/a") as again:
        assert again.find_dataset("metrics", DATA_ID).artifact.path == m.artifact.path


def test_a_template_field_the_dataset_lacks_fails_cleanly(make_butler):
    from conftest import populate

    b = make_butler(run="run/a", templates={"metrics": "{run}/{exposure}/{data_id}"})
    populate(b)
    b.register_dataset_type("metrics", ["visit", "detector"], "Dict")
    with pytest.raises(DatastoreError, match="needs 'exposure'"):
        b.put({"a": 1}, "metrics", DATA_ID)
    assert stored_files(b) == set()
    assert n_datasets(b) == 0


def test_a_direct_ingest_asks_no_template(make_butler, tmp_path):
    """A file ingested with transfer direct stays where it is, so the dataset type's template is
    not asked for a path: one naming a field the dataset lacks stops a copy, not a direct ingest."""
    from conftest import populate

    b = make_butler(run="run/a", templates={"metrics": "{run}/{exposure}/{data_id}"})
    populate(b)
    b.register_dataset_type("metrics", ["visit", "detector"], "Dict")
    sources = []
    for detector in (1, 2):
        sources.append(tmp_path / f"m{detector}.json")
        sources[-1].write_text(json.dumps({"d": detector}))
    with pytest.raises(DatastoreError, match="needs 'exposure'"):
        b.ingest("metrics", [(sources[0], {**DATA_ID, "detector": 1})], transfer="copy")
    assert n_datasets(b) == 0 and stored_files(b) == set()
    refs = b.ingest("metrics", [(s, {**DATA_ID, "detector": d}) for s, d in zip(sources, (1, 2))], transfer="direct")
    assert [r.artifact.path for r in refs] == [f"file://{s}" for s in sources]
    assert [b.get(r) for r in refs] == [{"d": 1}, {"d": 2}] and stored_files(b) == set()


# -- checksums -----------------------------------------------------------------------


def test_checksums_are_recorded_and_verified(butler):
    local_only(butler)
    ref = butler.put({"a": 1}, "metrics", DATA_ID)
    art = butler.find_dataset("metrics", DATA_ID).artifact
    assert art.checksum.startswith("xxh3:") and art.checksum == ref.artifact.checksum
    path = Path(butler.datastore.full_path(art.path))
    assert art.size == path.stat().st_size
    assert butler.datastore.read(art, check=True) == {"a": 1}
    # tamper with the file, keeping its size
    path.write_text(path.read_text().replace("1", "2"))
    assert path.stat().st_size == art.size
    with pytest.raises(ChecksumMismatchError, match="does not match its recorded checksum"):
        butler.datastore.read(art, check=True)
    assert butler.get(ref) == {"a": 2}  # an unchecked read trusts the file


def test_files_around_the_small_file_bound_read_back_whole(butler):
    """Small local files are read whole into memory, larger ones as streams: around the bound,
    each reads back exactly what the file holds (the oracle: json of the file's own bytes)."""
    from skybutler.datastore.reading import SMALL_FILE

    pads = [0, SMALL_FILE - 12, SMALL_FILE - 11, SMALL_FILE - 10, 3 * SMALL_FILE]
    refs = [butler.put({"pad": "x" * pad}, "metrics", instrument="Cam", visit=1 + n // 4, detector=n % 4)
            for n, pad in enumerate(pads)]
    sizes = [butler.datastore.size(r.artifact) for r in refs]
    assert sizes[1:4] == [SMALL_FILE - 1, SMALL_FILE, SMALL_FILE + 1]
    for ref in refs:
        expected = json.loads(butler.datastore._read_bytes(ref.artifact.path))
        assert butler.get(ref) == expected
        assert butler.datastore.read(ref.artifact, check=True) == expected
        assert butler.get("metrics", ref.data_id) == expected


@pytest.mark.parametrize("algorithm, prefix", [("blake2b", "blake2b:"), (None, None)])
def test_checksum_algorithm_is_configurable(make_butler, algorithm, prefix):
    from conftest import populate

    b = make_butler(run="run/a", checksum=algorithm)
    populate(b)
    b.register_dataset_type("metrics", ["visit", "detector"], "Dict")
    ref = b.put({"a": 1}, "metrics", DATA_ID)
    if prefix is None:
        assert ref.artifact.checksum is None
    else:
        assert ref.artifact.checksum.startswith(prefix)
    assert b.datastore.read(ref.artifact, check=True) == {"a": 1}


def test_an_unknown_checksum_algorithm_makes_no_repository(make_butler, tmp_path):
    """The repository settings are checked when it is made: nothing is left behind."""
    from skybutler.errors import ConfigError

    with pytest.raises(ConfigError, match="unknown checksum algorithm 'md5'"):
        make_butler("md5", run="run/a", checksum="md5")
    assert not (tmp_path / "md5").exists()


# -- atomic writes --------------------------------------------------------------------


def test_a_formatter_failing_midway_leaves_no_file(butler, monkeypatch):
    json_formatter = get_formatter("json")

    def half_write(obj, stream):
        stream.write(b'{"a": ')
        raise RuntimeError("disk on fire")

    butler.put({"ok": 1}, "metrics", {**DATA_ID, "detector": 1})
    before = stored_files(butler)
    monkeypatch.setattr(json_formatter, "_write", half_write)
    with pytest.raises(FormatterError, match="disk on fire"):
        butler.put({"a": 1}, "metrics", DATA_ID)
    with pytest.raises(FormatterError):
        butler.put_many("metrics", [({"a": d}, {**DATA_ID, "detector": d}) for d in (2, 3)])
    assert stored_files(butler) == before
    assert n_datasets(butler) == 1
    assert butler.find_dataset("metrics", DATA_ID) is None


def test_a_clash_at_publish_rolls_back_the_registry(butler):
    """A file is already where a put's file must go (not written by skybutler): the put's file
    cannot be published, so its registry rows are rolled back and the file there stays intact."""
    local_only(butler)
    first = butler.put({"first": 1}, "metrics", DATA_ID)
    second = {**DATA_ID, "detector": 3}
    path = Path(butler.datastore.full_path(first.artifact.path.replace("_2.json", "_3.json")))
    path.write_text('{"someone": "else"}')
    with pytest.raises(DatastoreError, match="refusing to overwrite"):
        butler.put({"second": 2}, "metrics", second)
    assert butler.find_dataset("metrics", second) is None
    assert n_datasets(butler) == 1
    assert butler.get(first) == {"first": 1}
    assert path.read_text() == '{"someone": "else"}'


def test_a_template_that_does_not_tell_data_ids_apart_is_refused(make_butler):
    """Two data IDs mapped to one path would clash at the second put: the template is refused
    at the first, before anything is written."""
    from conftest import populate

    b = make_butler(run="run/a", collections="run/a", templates={"metrics": "{run}/{dataset_type}/{visit}"})
    populate(b)
    b.register_dataset_type("metrics", ["visit", "detector"], "Dict")
    with pytest.raises(DatastoreError, match=r"does not name instrument, detector: two metrics datasets would "
                                             r"share one file; add \{data_id\}"):
        b.put({"first": 1}, "metrics", DATA_ID)
    assert n_datasets(b) == 0 and stored_files(b) == set()


def test_a_batch_fails_as_a_whole(butler):
    """put_many: the third item's data ID is bad, so nothing of the batch is stored."""
    items = [({"a": d}, {**DATA_ID, "detector": d}) for d in (0, 1)] + [({"a": 9}, {**DATA_ID, "detector": 99})]
    with pytest.raises(SkybutlerError, match="no detector record"):
        butler.put_many("metrics", items)
    # and one whose registry insert fails after every file is staged
    butler.put({"a": 1}, "metrics", {**DATA_ID, "detector": 1})
    before = stored_files(butler)
    with pytest.raises(DatasetConflictError):
        butler.put_many("metrics", [({"a": d}, {**DATA_ID, "detector": d}) for d in (0, 1, 2)])
    assert stored_files(butler) == before
    assert n_datasets(butler) == 1
    assert_no_temporaries(butler)


# -- removal --------------------------------------------------------------------------


def test_remove_deletes_rows_and_files(butler):
    keep = butler.put({"k": 1}, "metrics", {**DATA_ID, "detector": 1})
    gone = butler.put({"g": 1}, "metrics", DATA_ID)
    assert butler.exists(gone)
    assert butler.remove([gone, gone]) == 1
    assert not butler.exists(gone)
    assert butler.find_dataset("metrics", DATA_ID) is None
    assert stored_files(butler) == {keep.artifact.path}
    assert butler.get(keep) == {"k": 1}
    # the data ID can be used again
    again = butler.put({"g": 2}, "metrics", DATA_ID)
    assert butler.get("metrics", DATA_ID) == {"g": 2} and again.id != gone.id


def test_a_file_deleted_behind_the_butlers_back(butler):
    ref = butler.put({"a": 1}, "metrics", DATA_ID)
    butler.datastore.remove([ref.artifact])
    assert not butler.exists(ref)
    assert not butler.exists("metrics", DATA_ID)
    with pytest.raises(FileNotStoredError, match="missing from the datastore"):
        butler.get(ref)
    # removing the dataset still works and cleans the registry
    assert butler.remove([ref]) == 1
    assert butler.find_dataset("metrics", DATA_ID) is None


def test_a_write_the_file_system_refuses_is_a_datastore_error_and_leaves_nothing(butler):
    local_only(butler)
    # A regular file where the RUN's directory should be: the file system refuses the
    # write (as a full or read-only disk would), even for root.
    blocker = Path(butler.datastore.root) / "blocked"
    blocker.write_text("not a directory")
    with pytest.raises(DatastoreError, match="local datastore write of .* failed"):
        butler.put({"a": 1}, "metrics", DATA_ID, run="blocked")
    assert not butler.collections.exists("blocked")
    assert blocker.read_text() == "not a directory"
    assert_no_temporaries(butler)


def test_rename_no_replace_refuses_an_existing_destination(tmp_path):
    from skybutler.datastore.local_files import rename_no_replace

    (tmp_path / "a").write_text("new")
    (tmp_path / "b").write_text("old")
    with pytest.raises(FileExistsError):
        rename_no_replace(str(tmp_path / "a"), str(tmp_path / "b"))
    assert (tmp_path / "b").read_text() == "old" and (tmp_path / "a").exists()
    rename_no_replace(str(tmp_path / "a"), str(tmp_path / "c"))
    assert (tmp_path / "c").read_text() == "new" and not (tmp_path / "a").exists()
    with pytest.raises(FileNotFoundError):
        rename_no_replace(str(tmp_path / "a"), str(tmp_path / "d"))


def test_removals_prune_empty_directories_and_writers_make_them_again(butler):
    local_only(butler)
    other = Butler(butler.root, run="run/a", collections=["run/a"])  # a second client of the repository
    other.put({"x": 1}, "metrics", {**DATA_ID, "detector": 1})  # it now knows the RUN's directories
    kept = butler.put({"k": 1}, "metrics", DATA_ID, run="run/kept")
    butler.remove_runs(["run/a"])
    assert not os.path.exists(os.path.join(butler.datastore.root, "run~", "a"))
    assert os.path.exists(os.path.join(butler.datastore.root, "run~", "kept"))
    assert os.path.isdir(butler.datastore.root)
    with pytest.raises(CollectionError, match="removed by another client"):  # the RUN it knew is gone
        other.put({"x": 2}, "metrics", {**DATA_ID, "detector": 1})
    assert_no_temporaries(butler)
    ref = other.put({"x": 2}, "metrics", {**DATA_ID, "detector": 1})  # made anew, in pruned directories
    assert other.get(ref) == {"x": 2} and butler.get(kept) == {"k": 1}
    other.close()


def test_a_writer_makes_its_journal_directory_again_if_it_went(butler):
    """The journal directory is made once per client, not per write: a client whose directory was
    removed meanwhile (by hand, say) makes it again, and its journal is named and locked as before."""
    local_only(butler)
    import shutil
    import socket

    from skybutler.datastore.journal import Intent, WriteJournal

    writer = butler.datastore.journal
    butler.put({"x": 1}, "metrics", DATA_ID)  # made by the first write
    shutil.rmtree(writer.directory)
    journal = writer.begin([Intent(str(uuid.uuid4()), "a/path.json", "put")])
    try:
        other = WriteJournal(writer.directory)  # another client sees it named, with its writer's header
        (live,) = other.live()
        assert live.path == journal.path and live.header["host"] == socket.gethostname()
    finally:
        writer.end(journal)
    assert not writer.has_entries()
    ref = butler.put({"x": 2}, "metrics", {**DATA_ID, "detector": 1})
    assert butler.get(ref) == {"x": 2}
