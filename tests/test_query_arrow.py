"""Data-ID and dataset results read as whole columns (the database concatenates each column,
numpy cuts it up) against the same results read row by row: the same refs, data IDs and tables
(schema included), with the row path wherever the values are not as expected."""

from __future__ import annotations

import uuid

import pyarrow as pa
import pytest
import sqlalchemy as sa
from hypothesis import given, settings
from hypothesis import strategies as st

from conftest import STACKS, populate, stack_locations
from skybutler import Butler
from skybutler.models import DatasetRef
from skybutler.query import columnar
from skybutler.query.results import QueryResults

N_VISITS, N_DETECTORS = 9, 4


@pytest.fixture(scope="module", params=STACKS)
def repo(request, tmp_path_factory):
    """Cam with 9 visits x 4 detectors; ``metrics`` in run/a (every data ID) and run/b (detector
    0 only), chained as ``chain`` = [run/b, run/a]; ``other`` only in run/a."""
    tmp = tmp_path_factory.mktemp(f"arrow_{request.param}")
    butler = Butler.create(tmp / "repo", **stack_locations(request.param, tmp))
    populate(butler, N_VISITS, N_DETECTORS)
    for name in ("metrics", "other"):
        butler.register_dataset_type(name, ["instrument", "visit", "detector"], "Dict")
    everything = [{"instrument": "Cam", "visit": v, "detector": d}
                  for v in range(1, N_VISITS + 1) for d in range(N_DETECTORS)]
    butler.put_many("metrics", [({"v": 1}, d) for d in everything], run="run/a")
    butler.put_many("metrics", [({"v": 2}, d) for d in everything if d["detector"] == 0], run="run/b")
    butler.put_many("other", [({"v": 3}, d) for d in everything], run="run/a")
    butler.collections.register("chain", "chained")
    butler.collections.set_chain("chain", ["run/b", "run/a"])
    yield butler
    butler.close()


QUERIES = {
    "find-first in a chain": lambda b: b.query_datasets("metrics", "visit > 2 AND detector IN (0..2)",
                                                        collections="chain"),
    "every dataset in a chain": lambda b: b.query_datasets("metrics", collections="chain", find_first=False),
    "one RUN": lambda b: b.query_datasets("other", "band = 'r'", collections="chain"),
    "several dataset types": lambda b: b.query_datasets(["metrics", "other"], "visit > 2", collections="chain"),
    "ordered and limited": lambda b: b.query_datasets("metrics", collections="chain").order_by("-visit", "detector")
    .limit(5, 2),
    "empty": lambda b: b.query_datasets("metrics", "visit > 100", collections="chain"),
    "doomed": lambda b: b.query_datasets("other", collections="run/b"),
    "data IDs": lambda b: b.query_data_ids(["visit", "detector"], "visit.exposure_time > 20 AND band IN ('g', 'i')"),
    "data IDs with implied values": lambda b: b.query_data_ids(["visit"], "visit < 5", with_implied=True),
    "data IDs with datasets": lambda b: b.query_data_ids(["visit", "detector"], "detector = 0", datasets="metrics",
                                                         collections="run/b"),
    "no data IDs": lambda b: b.query_data_ids(["visit"], "visit > 100"),
    "one dimension": lambda b: b.query_data_ids("detector"),
    "a string with a quote": lambda b: b.query_data_ids(["visit"], "band = :b", bind={"b": "r's"}),
    "records": lambda b: b.query_dimension_records("visit", "visit < 4"),
}


def both_ways(butler: Butler, make, monkeypatch) -> tuple:
    """(refs or data IDs, table) read as columns where that applies, then row by row."""
    out = [(list(make(butler)), make(butler).to_arrow())]
    monkeypatch.setattr(QueryResults, "_columns_whole", lambda self: None)
    out.append((list(make(butler)), make(butler).to_arrow()))
    monkeypatch.undo()
    return out[0], out[1]


@pytest.mark.parametrize("name", list(QUERIES))
def test_columns_and_rows_agree(repo, name, monkeypatch):
    (objects, table), (objects_sa, table_sa) = both_ways(repo, QUERIES[name], monkeypatch)
    assert objects and table.num_rows or name in ("empty", "doomed", "no data IDs", "a string with a quote")
    key = (lambda o: str(o.id)) if objects and isinstance(objects[0], DatasetRef) else repr
    assert sorted(objects, key=key) == sorted(objects_sa, key=key)
    if objects and isinstance(objects[0], DatasetRef):  # refs compare by ID: check every field
        assert sorted((r.id, r.run, r.data_id.required, r.dataset_type.name) for r in objects) == sorted(
            (r.id, r.run, r.data_id.required, r.dataset_type.name) for r in objects_sa)
        assert all(type(r.id) is uuid.UUID for r in objects)
    assert table.schema == table_sa.schema
    order = [(c, "ascending") for c in table.column_names if c not in ("region",)]
    if name == "ordered and limited":  # SQL ordered it: the same rows in the same order
        assert table.equals(table_sa)
    else:
        assert table.sort_by(order).equals(table_sa.sort_by(order))
    assert table.num_rows == len(objects)


def test_tables_have_their_types_even_when_empty(repo):
    empty = repo.query_datasets("metrics", "visit > 100", collections="chain").to_arrow()
    full = repo.query_datasets("metrics", collections="chain").to_arrow()
    assert empty.num_rows == 0 and empty.schema == full.schema
    assert full.schema == pa.schema([("dataset_id", pa.string()), ("run", pa.string()), ("instrument", pa.string()),
                                     ("visit", pa.int64()), ("detector", pa.int64())])
    refs = {str(r.id): r for r in repo.query_datasets("metrics", collections="chain")}
    for row in full.to_pylist():
        assert str(uuid.UUID(row["dataset_id"])) == row["dataset_id"]  # standard text, dashes and all
        assert refs[row["dataset_id"]].run == row["run"]
    ids = repo.query_data_ids(["visit"], "visit > 100").to_arrow()
    assert ids.schema == pa.schema([("instrument", pa.string()), ("visit", pa.int64())])


def test_whole_columns_are_read(repo, monkeypatch):
    """On SQLite and on PostgreSQL alike: one statement of concatenated columns, no rows."""
    statements = []
    real = QueryResults._columns_whole
    monkeypatch.setattr(QueryResults, "_columns_whole",
                        lambda self: statements.append(1) or real(self))
    rows = []
    real_batches = QueryResults._batches
    monkeypatch.setattr(QueryResults, "_batches", lambda self: rows.append(1) or real_batches(self))
    assert len(list(repo.query_datasets("metrics", collections="chain"))) == N_VISITS * N_DETECTORS
    assert repo.query_data_ids(["visit"]).to_arrow().num_rows == N_VISITS
    assert len(statements) == 2 and not rows
    # An order is SQL's to keep (concatenation need not keep it): rows.
    ordered = [d["visit"] for d in repo.query_data_ids(["visit"]).order_by("-visit")]
    assert ordered == list(range(N_VISITS, 0, -1)) and rows
    # Records need SQLAlchemy's conversions (regions, timespans, booleans): rows.
    assert len(list(repo.query_dimension_records("visit"))) == N_VISITS


def test_a_write_transaction_reads_its_own_rows(tmp_path):
    butler = Butler.create(tmp_path / "repo")
    populate(butler, 2, 2)
    butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    with butler.registry.transaction():
        ref = butler.put({"a": 1}, "metrics", instrument="Cam", visit=1, detector=0, run="run/a")
        assert [r.id for r in butler.query_datasets("metrics", collections="run/a")] == [ref.id]
        assert butler.query_datasets("metrics", collections="run/a").to_arrow().column("dataset_id").to_pylist() \
            == [str(ref.id)]
    butler.close()


def test_unexpected_values_fall_back_to_rows(tmp_path):
    """A NULL (skipped by group_concat) or a value that is not what the column should hold
    makes the column path give up, and the rows path answers."""
    butler = Butler.create(tmp_path / "repo")
    populate(butler, 3, 2)
    db = butler.registry.db
    with db.transaction() as conn:  # a detector key SQLite's type affinity keeps as text
        conn.execute(sa.text("PRAGMA foreign_keys=OFF"))
        conn.execute(sa.text("INSERT INTO detector (instrument, id, full_name, purpose) "
                             "VALUES ('Cam', 'x,1', 'odd', 'SCIENCE')"))
    results = butler.query_data_ids(["detector"])
    assert results._columns_whole() is None
    assert sorted(str(d["detector"]) for d in results) == ["0", "1", "x,1"]
    butler.close()


@pytest.mark.parametrize("names, as_columns", [
    (["Cam", "Ça,m", "日本", ""], True),
    (["Cam", "a\x1fb"], False),  # holds the separator of the column path: rows answer
])
def test_string_columns_keep_any_text(tmp_path, names, as_columns):
    butler = Butler.create(tmp_path / "repo")
    butler.insert_records("instrument", [{"name": n, "detector_max": 2, "visit_max": 10} for n in names])
    butler.insert_records("detector", [{"instrument": n, "id": d} for n in names for d in (1, 2)])
    results = butler.query_data_ids(["detector"])
    found = results._columns_whole()
    assert (found is not None and found[1] == 2 * len(names)) if as_columns else found is None
    table = results.to_arrow()
    expected = sorted((n, d) for n in names for d in (1, 2))
    assert sorted(zip(table.column("instrument").to_pylist(), table.column("detector").to_pylist())) == expected
    assert sorted((d["instrument"], d["detector"]) for d in results) == expected
    butler.close()


@given(st.lists(st.text(st.characters(blacklist_characters="\x1f", blacklist_categories=("Cs",))), min_size=1))
def test_string_columns_decode_what_sqlite_joined(values):
    """Whatever the strings (one width or many, empty, non-ASCII), cutting SQLite's joined
    text gives them back; a blob with a separator too many or too few is refused."""
    data = "\x1f".join(values).encode()
    column = columnar.string_column(data, len(values))
    assert column.type == pa.string() and column.to_pylist() == values
    for wrong in (len(values) + 1, len(values) - 1):
        if wrong > 0:
            with pytest.raises(ValueError):
                columnar.string_column(data, wrong)
    with pytest.raises(ValueError):  # every value NULL: group_concat gives NULL
        columnar.string_column(None, len(values))


@settings(deadline=None)  # a loaded machine may be slow at the first example
@given(st.lists(st.integers(-2**63, 2**63 - 1)))
def test_integer_columns_decode_what_postgresql_joined(values):
    """PostgreSQL's joined 8-byte big-endian integers (int8send) give back the integers,
    checked here with Python's own encoding; a length that is not 8 bytes a row is refused."""
    data = b"".join(v.to_bytes(8, "big", signed=True) for v in values)
    assert columnar.binary_int_column(data or None, len(values)).to_pylist() == values
    for wrong in (len(values) + 1, len(values) - 1):
        if wrong >= 0:
            with pytest.raises(ValueError):
                columnar.binary_int_column(data, wrong)
    with pytest.raises(ValueError):
        columnar.binary_int_column(data + b"\0", len(values))


def test_uuid_text_from_hex_digits():
    ids = [uuid.uuid4() for _ in range(9)]
    chunked = pa.chunked_array([pa.array([u.hex for u in ids[:4]]), pa.array([u.hex for u in ids[4:]])])
    assert columnar.uuid_text(chunked).to_pylist() == [str(u) for u in ids]
    sliced = pa.array([u.hex for u in ids]).slice(3, 4)
    assert columnar.uuid_text(sliced).to_pylist() == [str(u) for u in ids[3:7]]


def test_fast_uuids_are_the_public_constructors_uuids():
    ids = [uuid.uuid4() for _ in range(5)]
    made = columnar.uuids([u.hex for u in ids])
    assert made == ids and [hash(m) for m in made] == [hash(u) for u in ids]
    assert all(type(m) is uuid.UUID and str(m) == str(u) and m.is_safe == u.is_safe for m, u in zip(made, ids))
    assert columnar.uuids([str(u) for u in ids]) == ids  # other spellings go through uuid.UUID
    assert columnar.uuids(ids) == ids and columnar.uuids([]) == []
    with pytest.raises(ValueError):
        columnar.uuids(["not a uuid"])
    with pytest.raises(ValueError):
        columnar.uuids(["z" * 32])
