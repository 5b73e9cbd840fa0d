"""Maintained dataset counts (``dataset_count``) against a brute-force count, after every write.

A random sequence of the write paths that change RUN and TAGGED membership (put,
put_many, bulk registration, ingest, import, removal of datasets and of RUNs,
association and disassociation, removal of a TAGGED collection, certification, a
refused conflict and a rolled-back transaction) runs on every stack; after each step
every (dataset type, collection) pair's maintained count must equal the number of its
membership rows, counted by a GROUP BY over the membership tables, and a query's
``count()`` the number of results it lists.  Rows are folded on every write here, so
the folding is exercised as often as the adding.
"""

from __future__ import annotations

import random
from pathlib import Path

import pytest
import sqlalchemy as sa

from conftest import populate
from skybutler import Butler
from skybutler.errors import DatasetConflictError
from skybutler.registry import dataset_counts, migrations
from skybutler.registry.schema import SCHEMA_VERSION

N_VISITS, N_DETECTORS = 4, 20
TYPES = ("ta", "tb")
RUNS = ("r1", "r2")


def maintained(butler: Butler) -> dict[tuple[str, str], int]:
    """Every pair's maintained count (non-zero ones), by name."""
    registry = butler.registry
    t = registry.schema.dataset_count
    with registry.db.reading() as conn:
        rows = conn.execute(sa.select(t.c.collection_id, t.c.dataset_type_id, sa.func.sum(t.c.n))
                            .group_by(t.c.collection_id, t.c.dataset_type_id)).all()
    return {(registry.collections.name_of(c), registry.dataset_types.name_of(d).name): int(n)
            for c, d, n in rows if n}


def brute_force(butler: Butler) -> dict[tuple[str, str], int]:
    """The same from the membership rows (RUN and TAGGED collections only)."""
    kinds = {c.name: c.type.value for c in butler.collections.query("*")}
    return {k: n for k, n in butler.registry.datasets.counts().items() if n and kinds[k[0]] in ("RUN", "TAGGED")}


def check(butler: Butler) -> None:
    assert maintained(butler) == brute_force(butler)
    for dtype in TYPES:
        for coll in [c.name for c in butler.collections.query("*", types=["RUN", "TAGGED"])]:
            results = butler.query_datasets(dtype, collections=coll)
            assert results.count() == len(list(results)), (dtype, coll)


def data_ids(rng: random.Random, n: int) -> list[dict]:
    every = [(v, d) for v in range(1, N_VISITS + 1) for d in range(N_DETECTORS)]
    return [{"instrument": "Cam", "visit": v, "detector": d} for v, d in rng.sample(every, n)]


def free_ids(butler: Butler, rng: random.Random, dtype: str, run: str, n: int) -> list[dict]:
    taken = {(r.data_id["visit"], r.data_id["detector"]) for r in butler.query_datasets(dtype, collections=run)}
    return [d for d in data_ids(rng, N_VISITS * N_DETECTORS) if (d["visit"], d["detector"]) not in taken][:n]


def some_refs(butler: Butler, rng: random.Random, n: int) -> list:
    refs = sorted(butler.query_datasets(rng.choice(TYPES), collections=rng.choice(RUNS)), key=lambda r: str(r.id))
    return rng.sample(refs, min(n, len(refs)))


@pytest.fixture
def counted(make_butler, monkeypatch) -> Butler:
    monkeypatch.setattr(dataset_counts, "FOLD_EVERY", 1)  # fold on every write
    b = make_butler(run="r1", collections=["r1"])
    populate(b, n_visits=N_VISITS, n_detectors=N_DETECTORS)
    for name in TYPES:
        b.register_dataset_type(name, ["instrument", "visit", "detector"], "Dict")
    b.register_dataset_type("flat", ["instrument", "detector"], "Dict", is_calibration=True)
    b.collections.register("r1", "run")
    b.collections.register("r2", "run")
    b.collections.register("calib", "calibration")
    return b


@pytest.mark.parametrize("seed", [1, 2])
def test_maintained_counts_equal_a_brute_force_count_after_every_write(counted: Butler, seed: int,
                                                                        make_butler, tmp_path: Path):
    rng = random.Random(seed)
    butler = counted
    tagged = 0

    def put() -> None:
        dtype, run = rng.choice(TYPES), rng.choice(RUNS)
        for d in free_ids(butler, rng, dtype, run, 1):
            butler.put({"v": 1}, dtype, d, run=run)

    def put_many() -> None:  # 70 items: over PostgreSQL's COPY threshold
        dtype, run = rng.choice(TYPES), rng.choice(RUNS)
        butler.put_many(dtype, [({"v": 2}, d) for d in free_ids(butler, rng, dtype, run, rng.choice([3, 70]))],
                        run=run)

    def bulk() -> None:
        dtype, run = rng.choice(TYPES), rng.choice(RUNS)
        ids = free_ids(butler, rng, dtype, run, 25)
        butler.registry.datasets.insert_bulk(butler.get_dataset_type(dtype), run,
                                             [("Cam", d["visit"], d["detector"]) for d in ids], batch_size=10)

    def ingest() -> None:
        dtype, run = rng.choice(TYPES), rng.choice(RUNS)
        files = []
        for n, d in enumerate(free_ids(butler, rng, dtype, run, 3)):
            path = tmp_path / f"in-{seed}-{rng.random()}-{n}.json"
            path.write_text('{"v": 3}')
            files.append((path, d))
        butler.ingest(dtype, files, run=run, transfer="copy")

    def remove() -> None:
        butler.remove(some_refs(butler, rng, rng.choice([1, 5])))

    def tags() -> list[str]:
        return [c.name for c in butler.collections.query("tag*")]

    def associate() -> None:
        nonlocal tagged
        if rng.random() < 0.3 or not tags():
            tagged += 1
            butler.collections.register(f"tag{tagged}", "tagged")
        try:
            butler.collections.associate(rng.choice(tags()), some_refs(butler, rng, 6))
        except DatasetConflictError:  # another dataset of a data ID is there already: nothing changed
            pass

    def disassociate() -> None:
        if tags():
            name = rng.choice(tags())
            held = sorted(butler.query_datasets(rng.choice(TYPES), collections=name), key=lambda r: str(r.id))
            butler.collections.disassociate(name, rng.sample(held, min(3, len(held))) + some_refs(butler, rng, 2))

    def remove_tagged() -> None:
        if tags():
            butler.collections.remove(rng.choice(tags()))

    def certify() -> None:
        d = rng.randrange(N_DETECTORS)
        ref = butler.put({"v": 4}, "flat", {"instrument": "Cam", "detector": d}, run="r2") \
            if butler.find_dataset("flat", {"instrument": "Cam", "detector": d}, collections="r2") is None \
            else butler.find_dataset("flat", {"instrument": "Cam", "detector": d}, collections="r2")
        butler.collections.certify("calib", [ref], "2024-01-01T00:00:00", "2024-02-01T00:00:00")
        butler.collections.decertify("calib", "flat", "2024-01-01T00:00:00", "2024-02-01T00:00:00")

    def conflict() -> None:
        dtype = rng.choice(TYPES)
        taken = list(butler.query_datasets(dtype, collections="r1"))
        if taken:
            items = [({"v": 5}, d) for d in free_ids(butler, rng, dtype, "r1", 2)] + [({"v": 5}, taken[0].data_id)]
            with pytest.raises(DatasetConflictError):
                butler.put_many(dtype, items, run="r1")

    def rolled_back() -> None:
        dtype, run = rng.choice(TYPES), rng.choice(RUNS)
        with pytest.raises(RuntimeError, match="abandoned"), butler.transaction():
            butler.put_many(dtype, [({"v": 6}, d) for d in free_ids(butler, rng, dtype, run, 4)], run=run)
            butler.remove(some_refs(butler, rng, 2))
            raise RuntimeError("abandoned")

    imports = 0

    def import_() -> None:  # datasets exported from another repository, into a RUN of this one
        nonlocal imports
        from skybutler import repository_transfer as rt

        imports += 1
        source = make_butler(f"source{imports}")
        populate(source, n_visits=N_VISITS, n_detectors=N_DETECTORS)
        source.register_dataset_type("ta", ["instrument", "visit", "detector"], "Dict")
        source.collections.register(f"imp{imports}", "run")
        source.put_many("ta", [({"v": 7}, d) for d in data_ids(rng, 5)], run=f"imp{imports}")
        rt.export_datasets(source, source.query_datasets("ta", collections=f"imp{imports}"),
                           tmp_path / f"export{imports}")
        rt.import_datasets(butler, tmp_path / f"export{imports}")

    steps = [put, put_many, bulk, ingest, remove, associate, disassociate, remove_tagged, certify, conflict,
             rolled_back, import_]
    check(butler)
    for _ in range(40):
        rng.choice(steps + [associate, disassociate])()
        check(butler)
    butler.remove_runs(["r2"])
    check(butler)


def test_q6_count_of_a_chain_comes_from_the_maintained_count(counted: Butler, monkeypatch):
    """A plain count of one type in a chain where one collection holds it reads the
    maintained count; a where-clause, a second holding collection or a data ID counts rows."""
    butler = counted
    butler.put_many("ta", [({"v": 1}, d) for d in data_ids(random.Random(3), 30)], run="r1")
    butler.collections.register("chain", "chained")
    butler.collections.set_chain("chain", ["r2", "r1"])
    calls = []
    real = butler.registry.datasets.totals.total
    monkeypatch.setattr(butler.registry.datasets.totals, "total", lambda *a: calls.append(a) or real(*a))
    assert butler.query_datasets("ta", collections="chain").count() == 30
    assert len(calls) == 1
    assert butler.query_datasets("ta", collections="chain", where="detector < 5").count() == \
        len(list(butler.query_datasets("ta", collections="chain", where="detector < 5")))
    assert butler.query_datasets("ta", collections="chain", visit=1).count() == \
        len(list(butler.query_datasets("ta", collections="chain", visit=1)))
    assert len(calls) == 1
    butler.put_many("ta", [({"v": 1}, d) for d in data_ids(random.Random(4), 10)], run="r2")
    assert butler.query_datasets("ta", collections="chain").count() == \
        len(list(butler.query_datasets("ta", collections="chain")))
    assert len(calls) == 1  # two collections hold it: rows are counted


def test_migrating_a_version_5_repository_counts_its_datasets(counted: Butler):
    """``skybutler migrate`` from version 5 makes the table and counts what is there."""
    butler = counted
    butler.put_many("ta", [({"v": 1}, d) for d in data_ids(random.Random(5), 12)], run="r1")
    butler.collections.register("t", "tagged")
    butler.collections.associate("t", list(butler.query_datasets("ta", collections="r1"))[:4])
    want = brute_force(butler)
    registry = butler.registry
    with registry.db.transaction() as conn:
        registry.schema.dataset_count.drop(conn)
        conn.execute(registry.schema.meta.update().where(registry.schema.meta.c.key == "schema_version")
                     .values(value="5"))
    url = butler.config.registry_url(butler.root)
    butler.close()
    assert migrations.migrate(url, registry.universe) == (5, SCHEMA_VERSION)
    reopened = Butler(butler.root)
    assert maintained(reopened) == want == {("r1", "ta"): 12, ("t", "ta"): 4}
