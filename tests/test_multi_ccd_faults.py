"""Kill -9 on the paths that delete or place a file several raws share (one detector each of a
whole-exposure DECam file): removing one detector, the last one, all at once, and the recovery of
a killed removal itself; ingesting the file (by move, the user's only copy).  Whatever the instant:
the repository opens, ``verify --fix`` then ``verify`` are clean, no file of skybutler's is left
for the quarantine, the shared file is there (and every raw still recorded reads its own pixels)
while any raw holds it, and it is gone once none does."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits

pytest.importorskip("astro_metadata_translator")

from conftest import POSTGRES_URL, stack_locations  # noqa: E402
from multi_ccd_files import decam_exposure  # noqa: E402
from skybutler import Butler  # noqa: E402
from skybutler.ingest import ingest_raws  # noqa: E402
from test_faults import assert_recovered, run_killed  # noqa: E402

pytestmark = pytest.mark.slow

RUN = "DECam/raw/all"
#: Where a removal can die: its intents journaled; its rows' commit; after the commit, before the files.
REMOVE_STEPS = ["journal-written", "sql-committed", "registry-committed", None]
STACKS = ["sqlite"] + (["postgres"] if POSTGRES_URL else [])


@pytest.fixture(scope="module")
def exposure(tmp_path_factory) -> Path:
    return decam_exposure(tmp_path_factory.mktemp("raws") / "DECam_00177764.fits.fz")


def _repository(tmp_path: Path, stack: str, exposure: Path, transfer: str = "copy") -> Path:
    locations = stack_locations(stack, tmp_path)
    with Butler.create(tmp_path / "repo", **locations) as butler:
        result = ingest_raws(butler, [exposure], transfer=transfer, processes=1)
        assert result.failures == [] and len(result.refs) == 4
        return butler.root


def _remove(root: Path, detectors: list[int]):
    def work() -> None:
        with Butler(root, collections=[RUN]) as butler:
            butler.remove([r for r in butler.query_datasets("raw") if r.data_id["detector"] in detectors])
    return work


def assert_shared_file_safe(root: Path, exposure: Path) -> int:
    """The shared file is there, and each raw recorded reads its HDU's pixels, while any raw is
    recorded; it is gone when none is.  Returns how many raws are left."""
    with Butler(root, collections=[RUN]) as butler, fits.open(exposure) as hdus:
        left = list(butler.query_datasets("raw")) if butler.collections.exists(RUN) else []
        files = [p for p in butler.datastore.walk((".skybutler", "butler.yaml", "registry.sqlite3"))
                 if "/raw" in p and ".tmp-" not in p]
        assert len(files) == (1 if left else 0), (len(left), files)
        for ref in left:
            index = next(i for i, h in enumerate(hdus) if h.header.get("CCDNUM") == ref.data_id["detector"])
            np.testing.assert_array_equal(butler.get(ref).data, hdus[index].data)
        return len(left)


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("step", REMOVE_STEPS)
def test_removing_one_detector_killed_keeps_the_shared_file(tmp_path, exposure, stack, step):
    root = _repository(tmp_path, stack, exposure)
    assert run_killed(_remove(root, [25]), step) or step is None
    assert_recovered(root, {exposure: exposure.read_bytes()})
    assert assert_shared_file_safe(root, exposure) in (3, 4)


@pytest.mark.parametrize("stack", STACKS)
@pytest.mark.parametrize("step", REMOVE_STEPS)
def test_removing_the_last_detector_killed_deletes_the_file_or_keeps_it_with_its_raw(tmp_path, exposure, stack,
                                                                                      step):
    root = _repository(tmp_path, stack, exposure)
    _remove(root, [1, 25, 32])()
    assert run_killed(_remove(root, [62]), step) or step is None
    assert_recovered(root, {exposure: exposure.read_bytes()})
    assert assert_shared_file_safe(root, exposure) in (0, 1)


@pytest.mark.parametrize("step", REMOVE_STEPS)
def test_removing_every_detector_at_once_killed(tmp_path, exposure, step):
    root = _repository(tmp_path, "sqlite", exposure)
    assert run_killed(_remove(root, [1, 25, 32, 62]), step) or step is None
    assert_recovered(root, {exposure: exposure.read_bytes()})
    assert assert_shared_file_safe(root, exposure) in (0, 4)


@pytest.mark.parametrize("settled", [1, 2])
def test_the_recovery_of_a_killed_removal_killed_too(tmp_path, exposure, settled):
    """A removal of two detectors dies after its commit (its files' intents in the journal); the next
    open, settling them, dies after ``settled`` intents: the file, still held by two raws, stays."""
    root = _repository(tmp_path, "sqlite", exposure)
    assert run_killed(_remove(root, [1, 25]), "registry-committed")

    def reopen() -> None:
        with Butler(root):
            pass

    assert run_killed(reopen, f"intent-settled:{settled}")
    assert_recovered(root, {exposure: exposure.read_bytes()})
    assert assert_shared_file_safe(root, exposure) == 2


@pytest.mark.parametrize("step", ["journal-written", "file-placed", "registry-committed", None])
def test_ingesting_a_whole_exposure_by_move_killed(tmp_path, exposure, step):
    """All four raws or none, the user's file in its place or in the repository (never lost)."""
    source = tmp_path / "incoming" / exposure.name
    source.parent.mkdir()
    shutil.copyfile(exposure, source)
    data = source.read_bytes()
    with Butler.create(tmp_path / "repo") as butler:
        root = butler.root

    def ingest() -> None:
        with Butler(root) as butler:
            ingest_raws(butler, [source], transfer="move", processes=1)

    assert run_killed(ingest, step) or step is None
    assert_recovered(root, {source: data})
    left = assert_shared_file_safe(root, exposure)
    assert left in (0, 4) and (left == 4 or (source.exists() and source.read_bytes() == data))
    assert os.path.exists(source) == (left == 0)
