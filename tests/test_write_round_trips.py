"""What a put sends to PostgreSQL: its rows in one statement (a big batch by ``COPY``), and a single put
as one round trip -- its BEGIN, rows and COMMIT in one query -- read from libpq's own protocol trace,
with a conflict rolled back and a put inside ``butler.transaction()`` committing nothing.
"""

from __future__ import annotations

import pytest

from skybutler import Butler
from skybutler.errors import DatasetConflictError
from test_bulk_writes import (
    N_DETECTORS,
    big,  # noqa: F401 - the module's fixture
    data_ids,
    payload,
    snapshot,
)


def test_a_put_sends_its_rows_in_one_statement_and_a_big_batch_by_copy(big: Butler, monkeypatch, stack):  # noqa: F811
    if stack != "postgres":
        pytest.skip("statement batches are PostgreSQL's")
    import psycopg

    sent: list[tuple[str, bool]] = []
    for cls, name in ((psycopg.Cursor, "execute"), (psycopg.Cursor, "executemany"), (psycopg.Cursor, "copy")):
        original = getattr(cls, name)

        def spy(self, query, *args, _original=original, **kwargs):
            on = self.connection.info.pipeline_status != psycopg.pq.PipelineStatus.OFF
            sent.append((str(query), on))
            return _original(self, query, *args, **kwargs)

        monkeypatch.setattr(cls, name, spy)
    warm = [data_ids()[0], data_ids()[1], data_ids()[N_DETECTORS]]
    big.put_many("metrics", [(payload(d), d) for d in warm])  # the RUN registered, records cached
    sent.clear()
    last = data_ids()[N_DETECTORS + 1]
    big.put(payload(last), "metrics", **last)
    # the transaction's BEGIN, the rows of the five tables (dataset, membership, its count, location,
    # facts) in one statement, the COMMIT: sent as one query (one round trip), no savepoint; the
    # statement prepared on the session by the first single put, and run by name
    assert len(sent) == 1, sent
    assert [q.split()[0].upper() for q in sent[0][0].split("; ")] == ["BEGIN", "PREPARE", "EXECUTE", "COMMIT"], sent
    assert sent[0][0].split("; ")[1].count("INSERT INTO") == 5, sent
    got = big.find_dataset("metrics", last)
    assert got is not None and big.get(got) == payload(last)
    sent.clear()
    again = data_ids()[N_DETECTORS + 2]
    big.put(payload(again), "metrics", **again)  # prepared already: the rows alone, by the statement's name
    writes = [q for q, _ in sent if not q.startswith("SELECT")]  # (its detector's record looked up first)
    assert len(writes) == 1 and [q.split()[0].upper() for q in writes[0].split("; ")] == ["BEGIN", "EXECUTE", "COMMIT"]
    assert "INSERT" not in writes[0], writes
    assert big.get("metrics", again) == payload(again)
    big.collections.register("other", "run")
    sent.clear()
    big.put_many("metrics", [(payload(d), d) for d in data_ids()], run="other")
    assert [q.split()[0].upper() for q, _ in sent if q.split()[0].upper() in ("INSERT", "WITH", "COPY")] == \
        ["COPY", "COPY", "INSERT", "COPY", "COPY"], sent  # the membership's count: one row


def round_trips(butler: Butler, action) -> list[str]:
    """The statements the client sent before each wait for the server while ``action`` ran
    (first words, joined by +), read from libpq's own protocol trace: a ``Sync`` (the end of a
    pipeline, or of one extended-protocol statement) or a simple ``Query`` ends a round trip.
    Only the first line of a statement's text is looked at (the trace does not escape newlines)."""
    import tempfile

    import sqlalchemy as sa

    traced = []

    def trace(dbapi, *_):
        if dbapi not in traced:  # a second trace() would drop what the first one buffered
            dbapi.pgconn.trace(out.fileno())
            traced.append(dbapi)

    with tempfile.TemporaryFile("w+") as out:
        sa.event.listen(butler.registry.db.engine, "checkout", trace)
        try:
            action()
        finally:
            sa.event.remove(butler.registry.db.engine, "checkout", trace)
            for dbapi in traced:
                dbapi.pgconn.untrace()
        out.seek(0)
        sent = [line.split("\t") for line in out.read().splitlines()]
    ends, statements = [], []
    for fields in sent:  # timestamp, F (from the client) or B, length, message, its fields
        if len(fields) > 3 and fields[1] == "F":
            if fields[3] in ("Parse", "Query"):  # Parse: "" "text..." (unnamed); Query: "text..."
                text = fields[4].strip().removeprefix('"" ' if fields[3] == "Parse" else "")
                # a Query may hold several statements (none of the texts here has "; " in a value)
                statements.extend(part.lstrip('"').split()[0].rstrip('";').upper() for part in text.split("; "))
            if fields[3] in ("Sync", "Query"):
                ends.append("+".join(statements))
                statements = []
    return ends


def test_a_single_put_is_one_round_trip_its_begin_rows_and_commit(big: Butler, stack):  # noqa: F811
    if stack != "postgres":
        pytest.skip("round trips are PostgreSQL's")
    warm = [data_ids()[0], data_ids()[1], data_ids()[N_DETECTORS]]
    big.put_many("metrics", [(payload(d), d) for d in warm])  # the RUN registered, records cached
    last = data_ids()[N_DETECTORS + 1]
    # the file placed first, then one query: BEGIN, the rows, COMMIT (psycopg's own BEGIN would be a
    # round trip of its own before the rows, and a COMMIT after them another); the rows' statement is
    # prepared on the session with the first single put and run by name (see the test above)
    assert round_trips(big, lambda: big.put(payload(last), "metrics", **last)) == ["BEGIN+PREPARE+EXECUTE+COMMIT"]
    assert big.get("metrics", last) == payload(last)
    before = snapshot(big)
    with pytest.raises(DatasetConflictError, match="already exists in RUN 'r'"):  # its file is in the way
        big.put(payload(last), "metrics", **last)
    assert snapshot(big) == before
    # the rows conflict after the file is placed (the same deterministic ID in another RUN, at
    # another path): the transaction is rolled back and the file taken back out
    big.put(payload(last), "metrics", **last, run="fixed", id_mode="deterministic")
    big.put(payload(warm[0]), "metrics", **warm[0], run="fixed-too")  # a RUN this butler has written to
    before = snapshot(big)

    def conflicting():
        with pytest.raises(DatasetConflictError, match="already exists .in another RUN"):
            big.put(payload(last), "metrics", **last, run="fixed-too", id_mode="deterministic")

    # the explanation reads the database once the transaction is rolled back
    # (the statement prepared with this put if the connection is new to the pool: the read cache's
    # watcher keeps for itself a pooled connection it finds idle)
    trips = round_trips(big, conflicting)
    assert trips[0] in ("BEGIN+EXECUTE+COMMIT", "BEGIN+PREPARE+EXECUTE+COMMIT"), trips
    assert trips[1] == "ROLLBACK" and set(trips[2:]) == {"SELECT"}, trips
    assert snapshot(big) == before
    # a new connection's first single put fails after its PREPARE ran (a PREPARE is not rolled back):
    # the next put asks the server once whether the statement is there, and runs it by name
    big.registry.db.engine.dispose()
    trips = [t for t in round_trips(big, conflicting) if t != "SELECT"]  # (caches read again after the last failure)
    assert trips == ["BEGIN+PREPARE+EXECUTE+COMMIT", "ROLLBACK"], trips
    assert snapshot(big) == before
    trips = round_trips(big, lambda: big.put(payload(warm[1]), "metrics", **warm[1], run="fixed-too"))
    assert trips[-1] == "BEGIN+EXECUTE+COMMIT" and set(trips[:-1]) == {"SELECT"}, trips  # (caches read again)
    assert big.get("metrics", warm[1], collections="fixed-too") == payload(warm[1])
    # the connection went back to the pool out of autocommit mode (a next transaction not starting
    # with a pipeline is one transaction); inside butler.transaction() a put commits nothing, and a
    # conflict there leaves the transaction usable
    pooled = big.registry.db.engine.raw_connection()
    try:
        assert pooled.driver_connection.autocommit is False
    finally:
        pooled.close()

    def block():
        with big.transaction():
            big.put(payload(data_ids()[2]), "metrics", **data_ids()[2])
            with pytest.raises(DatasetConflictError):
                big.put(payload(last), "metrics", **last)
            big.put(payload(data_ids()[3]), "metrics", **data_ids()[3])

    trips = round_trips(big, block)
    assert trips[-1] == "COMMIT" and "COMMIT" not in "+".join(trips[:-1]), trips
    assert "BEGIN" not in "+".join(round_trips(big, lambda: big.query_datasets("metrics").count()))
    assert {(r.data_id["visit"], r.data_id["detector"]) for r in big.query_datasets("metrics", collections="r")} \
        == {(d["visit"], d["detector"]) for d in [*warm, last, data_ids()[2], data_ids()[3]]}
