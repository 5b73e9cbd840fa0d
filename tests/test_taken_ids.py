"""An export's memory of the dataset IDs it has taken: exact (a dataset named twice is written
once) whether the IDs are held in memory or merged into its file on disk, and bounded in memory."""

from __future__ import annotations

import itertools
import json
import random
import uuid
from types import SimpleNamespace

import pytest

import skybutler.repository_transfer as transfer
import skybutler.taken_ids as taken_ids
from skybutler.repository_transfer import export_datasets, import_datasets
from skybutler.taken_ids import TakenIds


@pytest.mark.parametrize("limit,block", [(1 << 18, 1 << 18), (7, 5), (1, 1), (40, 3)])
def test_new_gives_the_first_of_each_id_never_taken_before(tmp_path, monkeypatch, limit, block):
    """Oracle: a Python set of every ID given so far, chunk by chunk, IDs repeated within a chunk,
    across chunks and across the spill to disk; memory never holds more than its limit and a chunk."""
    monkeypatch.setattr(taken_ids, "MEMORY_LIMIT", limit)
    monkeypatch.setattr(taken_ids, "BLOCK", block)
    rng = random.Random(limit * 31 + block)
    pool = [uuid.UUID(int=rng.getrandbits(128)) for _ in range(300)]
    pool += [uuid.UUID(int=0), uuid.UUID(int=1 << 120), uuid.UUID(bytes=b"\xff" * 15 + b"\x00")]  # edge bytes
    seen: set[uuid.UUID] = set()
    with TakenIds(tmp_path) as taken:
        for n in range(60):
            chunk = [SimpleNamespace(id=rng.choice(pool), n=(n, i)) for i in range(rng.randrange(0, 25))]
            expected, firsts = [], set()
            for item in chunk:
                if item.id not in seen and item.id not in firsts:
                    firsts.add(item.id)
                    expected.append(item)
            assert taken.new(chunk) == expected
            seen |= firsts
            assert len(taken) == len(seen)
            assert len(taken._memory) <= max(limit, 25)
        assert taken.new([SimpleNamespace(id=i) for i in pool]) == \
            [SimpleNamespace(id=i) for i in pool if i not in seen]
    assert list(tmp_path.iterdir()) == []  # the file on disk has no name


@pytest.mark.parametrize("limit", [1 << 18, 3])
def test_export_writes_once_a_dataset_two_queries_name(butler, make_butler, tmp_path, monkeypatch, limit):
    """Datasets named by a query of their RUN and again by queries of a TAGGED collection and a
    CHAINED one holding both (later, in other chunks, and with the IDs taken so far in memory or
    on disk) are written once each; the import gives back exactly the source's datasets and files."""
    monkeypatch.setattr(transfer, "CHUNK", 4)
    monkeypatch.setattr(taken_ids, "MEMORY_LIMIT", limit)
    monkeypatch.setattr(taken_ids, "BLOCK", 2)
    refs = butler.put_many("metrics", [({"v": v, "d": d}, {"instrument": "Cam", "visit": v, "detector": d})
                                       for v in range(1, 6) for d in range(4)])
    butler.collections.register("tag", "tagged")
    butler.collections.associate("tag", refs[3:17])
    butler.collections.register("best", "chained")
    butler.collections.set_chain("best", ["tag", "run/a"])
    queries = [butler.query_datasets("metrics", collections=[c], find_first=False) for c in ("run/a", "tag", "best")]
    assert sum(q.count() for q in queries) == 20 + 14 + 20
    assert export_datasets(butler, itertools.chain.from_iterable(queries), tmp_path / "e") == len(refs)
    lines = [json.loads(line) for line in (tmp_path / "e" / "export.datasets.jsonl").read_text().splitlines()]
    assert sorted(d["id"] for d in lines) == sorted(str(r.id) for r in refs)
    assert sorted(p.name for p in (tmp_path / "e").iterdir() if p.is_file()) == \
        ["export.datasets.jsonl", "export.json", "export.records.jsonl"]
    target = make_butler("target", collections=["run/a"])
    assert import_datasets(target, tmp_path / "e") == len(refs)
    assert {r.id for r in target.query_datasets("metrics")} == {r.id for r in refs}
    assert target.get("metrics", visit=5, detector=3) == {"v": 5, "d": 3}
