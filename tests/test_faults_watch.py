"""Fault injection on ``watch`` of an object-store prefix: each raw object is fetched, ingested
(moved in from the staging directory) and deleted from the prefix only after the ingest commits.

One watch cycle is killed with SIGKILL while it places the raws and between its commit and its
deletions of the objects.  Then the repository opens, ``verify`` is clean after ``verify --fix``
with nothing for the quarantine, and every object is in the prefix or ingested with its bytes;
a watcher started again ingests what is left, each raw exactly once, and empties the prefix.
"""

from __future__ import annotations

import uuid
from pathlib import Path

import pytest
import xxhash

from conftest import _MADE_NAMES, POSTGRES_URL, S3_BUCKET, S3_ENDPOINT, stack_locations
from skybutler import Butler
from skybutler.ingest.watcher import Watcher
from skybutler.pipeline import Pipeline
from test_faults import assert_recovered, run_killed
from test_watch import RAWS, pipeline_file, raws  # noqa: F401 - raws is a fixture

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not S3_ENDPOINT, reason="needs an S3 endpoint (SKYBUTLER_TEST_S3_ENDPOINT)")]


def _cycle(root: Path, prefix: str, pipeline: str) -> None:
    with Butler(root) as butler:
        Watcher(butler, f"s3://{prefix}", Pipeline.from_yaml(pipeline), [RAWS], "proc", every=0.2).cycle()


#: Killed between the ingest's commit and the deletions of the objects (the state a loss or a duplicate would come
#: from); a kill while placing the files is the ingest-raws move sweep of test_faults.py (~20 s more here).
@pytest.mark.parametrize("step", ["registry-committed"])
@pytest.mark.parametrize("stack", ["sqlite"] + (["postgres"] if POSTGRES_URL else []))
def test_a_watch_cycle_killed_loses_no_object_and_ingests_each_once(tmp_path, raws, stack, step):  # noqa: F811
    import fsspec

    name = f"t_{uuid.uuid4().hex[:12]}"
    _MADE_NAMES.append(name)  # removed at the end of the session
    prefix = f"{S3_BUCKET}/{name}/incoming"
    fs = fsspec.filesystem("s3")
    objects = {}
    for path in raws[:3]:
        fs.put_file(str(path), f"{prefix}/{path.name}")
        objects[f"{prefix}/{path.name}"] = xxhash.xxh3_64_hexdigest(path.read_bytes())
    root = tmp_path / "repo"
    Butler.create(root, **stack_locations(stack, tmp_path)).close()  # on PostgreSQL + S3: into the object store
    pipeline = pipeline_file(tmp_path)
    assert run_killed(lambda: _cycle(root, prefix, pipeline), step)
    assert_recovered(root, {})
    fs.invalidate_cache()
    with Butler(root) as butler:
        refs = list(butler.query_datasets("raw", collections=RAWS)) if butler.collections.exists(RAWS) else []
        artifacts = butler.registry.datasets.artifacts([r.id for r in refs])
        ingested = {xxhash.xxh3_64_hexdigest(butler.datastore._read_bytes(a.path)) for a in artifacts.values()}
    for key, digest in objects.items():  # each object still there, whole, or ingested with its bytes
        there = fs.exists(key) and xxhash.xxh3_64_hexdigest(fs.cat_file(key)) == digest
        assert there or digest in ingested, f"{key} was lost"
    _cycle(root, prefix, pipeline)  # a watcher again: the rest comes in, each raw once
    fs.invalidate_cache()
    assert not [k for k in objects if fs.exists(k)]
    with Butler(root) as butler:
        assert len(list(butler.query_datasets("raw", collections=RAWS))) == len(objects)
    assert_recovered(root, {})
