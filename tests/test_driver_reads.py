"""Queries read through each thread's own PostgreSQL connection (``registry/driver_reads.py``):
another client's commits are seen at once, a transaction sees its own rows, a connection the
server ended is replaced, threads never share one, and a forked child leaves its parent's alone."""

from __future__ import annotations

import gc
import threading
import time

import pytest

from conftest import STACKS, in_forked_child, two_clients_on, visit_pointing
from skybutler import Butler
from skybutler.dimensions import regions

#: Visit 1's pointing: the where-clause of a query whose rows pass an exact region test (read as rows).
POINT = "visit.region OVERLAPS POINT({}, {})".format(*visit_pointing(1))


@pytest.fixture(params=STACKS)
def two_clients(request, tmp_path):
    """Two butlers on one repository of each stack, with the small camera's records."""
    with two_clients_on(request.param, tmp_path) as clients:
        yield clients


@pytest.fixture
def two_postgres_clients(two_clients):
    if two_clients[0].registry.db.dialect != "postgresql":
        pytest.skip("PostgreSQL's read connections")
    return two_clients


def visits_at_point(butler: Butler) -> list[int]:
    return sorted({d["visit"] for d in butler.query_data_ids(["visit"], where=POINT)})


def visits(butler: Butler) -> list[int]:
    return sorted(d["visit"] for d in butler.query_data_ids(["visit"], where="visit > 0"))


def read_twice(butler: Butler) -> None:
    """Run both queries twice: a statement's kept text is sent by the driver from its second run on."""
    for _ in range(2):
        assert visits_at_point(butler) == [1] and visits(butler) == [1, 2]


def new_visit(visit: int) -> dict:
    """A visit record pointing where visit 1 points."""
    return {"instrument": "Cam", "id": visit, "physical_filter": "Cam-g", "day_obs": 20250101,
            "region": regions.rectangle(*visit_pointing(1), 3.5, 3.5)}


def reader_pid(butler: Butler) -> int:
    """The server process of this thread's read connection."""
    return butler.registry.db._local.reader.connection.info.backend_pid


def test_another_clients_records_are_seen_at_once(two_clients):
    first, second = two_clients
    read_twice(first)
    second.insert_records("visit", [new_visit(5)])
    assert visits_at_point(first) == [1, 5] and visits(first) == [1, 2, 5]


def test_a_transaction_reads_its_own_rows_and_a_rollback_leaves_nothing(two_clients):
    first, second = two_clients
    read_twice(first)
    # results made before the transaction and run before it: run again inside, their kept
    # text goes to the transaction's connection, which sees its uncommitted rows
    at_point = first.query_data_ids(["visit"], where=POINT)
    every = first.query_data_ids(["visit"], where="visit > 0")
    assert sorted(d["visit"] for d in at_point) == [1] and sorted(d["visit"] for d in every) == [1, 2]
    with pytest.raises(RuntimeError, match="roll it back"):
        with first.registry.transaction():
            first.insert_records("visit", [new_visit(6)])
            assert sorted(d["visit"] for d in at_point) == [1, 6]
            assert sorted(d["visit"] for d in every) == [1, 2, 6]
            assert visits_at_point(first) == [1, 6] and visits(first) == [1, 2, 6]
            assert visits_at_point(second) == [1]  # not committed: nobody else sees it
            raise RuntimeError("roll it back")
    assert visits_at_point(first) == [1] and visits(first) == [1, 2]
    assert sorted(d["visit"] for d in at_point) == [1]


def test_postgres_read_connection_ended_by_the_server_is_replaced(two_postgres_clients):
    first, second = two_postgres_clients
    read_twice(first)
    pid = reader_pid(first)
    with second.registry.db.reading() as conn:
        conn.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
    second.insert_records("visit", [new_visit(7)])
    assert visits_at_point(first) == [1, 7] and visits(first) == [1, 2, 7]
    assert reader_pid(first) != pid


def test_postgres_threads_read_on_connections_of_their_own_closed_when_they_end(two_postgres_clients):
    first, second = two_postgres_clients
    pids: list[int] = []
    answers: list[list[int]] = []
    failures: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(20):
                answers.append(visits_at_point(first))
            pids.append(reader_pid(first))
        except BaseException as err:  # reported by the main thread
            failures.append(err)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert not failures and len(answers) == 80 and all(a == [1] for a in answers)
    assert len(set(pids)) == 4 and reader_pid_or_none(first) not in pids
    del threads
    gc.collect()
    with second.registry.db.reading() as conn:  # each ended thread's connection was closed
        deadline = time.monotonic() + 10
        while conn.exec_driver_sql(
                "SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%(p)s)", {"p": pids}).scalar() and \
                time.monotonic() < deadline:
            time.sleep(0.05)
        assert conn.exec_driver_sql("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(%(p)s)",
                                    {"p": pids}).scalar() == 0


def reader_pid_or_none(butler: Butler) -> int | None:
    reader = getattr(butler.registry.db._local, "reader", None)
    return None if reader is None or reader.connection is None else reader.connection.info.backend_pid


def test_postgres_forked_child_reads_on_its_own_connection_and_leaves_the_parents(two_postgres_clients):
    first, second = two_postgres_clients
    read_twice(first)
    pid = reader_pid(first)
    second.insert_records("visit", [new_visit(8)])

    def child():
        answer = visits_at_point(first), reader_pid(first)
        first.close()  # closing the registry in the child must not end the parent's session
        return answer

    (found, child_pid), exitcode = in_forked_child(child)
    assert found == [1, 8] and child_pid != pid and exitcode == 0
    assert visits_at_point(first) == [1, 8] and reader_pid(first) == pid  # still the parent's own session


def test_postgres_read_past_its_time_limit_is_stopped_and_the_next_one_runs(two_postgres_clients):
    from skybutler.errors import QueryTimeoutError

    first, _ = two_postgres_clients
    db = first.registry.db
    with pytest.raises(QueryTimeoutError, match=r"longer than this server allows \(0.2 s\)"):
        with db.time_limit(0.2), db.driver_read("SELECT pg_sleep(2)", {}) as result:
            result.fetchall()
    with db.driver_read("SELECT pg_sleep(0.5), 1", {}) as result:  # the limit is lifted again
        assert result.fetchall() == [("", 1)]


def prepared_statements(butler: Butler) -> list[tuple[str, list[str], int, int]]:
    """The statements this thread's read connection holds prepared: text, parameter types, generic
    and custom plans (a statement without parameters runs on its one plan, counted as generic)."""
    reader = getattr(butler.registry.db._local, "reader", None)
    if reader is None or reader.connection is None:
        return []
    return reader.connection.execute(
        "SELECT statement, parameter_types::text[], generic_plans, custom_plans FROM pg_prepared_statements",
        prepare=False).fetchall()


def test_a_query_asked_again_sends_what_sqlalchemy_sent_the_first_time_and_compiles_nothing(two_clients,
                                                                                             monkeypatch):
    import sqlalchemy as sa

    first, _ = two_clients
    db = first.registry.db
    sent: list[tuple] = []

    def record(conn, cursor, statement, parameters, *_):
        sent.append((statement, parameters))

    sa.event.listen(db.engine, "before_cursor_execute", record)
    asked = [first.query_data_ids(["visit"], where=POINT), first.query_data_ids(["visit"], where="visit > 0")]
    assert [sorted(d["visit"] for d in result) for result in asked] == [[1], [1, 2]]
    sa.event.remove(db.engine, "before_cursor_execute", record)
    # rows (the region test) and whole columns: each keeps the text and values it was run with
    kept = [text for result in asked for text in result._built.compiled.values()]
    assert len(kept) == 2 and all(text is not None and text in sent for text in kept)
    compiles, reads = [], []
    compile, driver_read = sa.sql.elements.CompilerElement.compile, type(db).driver_read
    monkeypatch.setattr(sa.sql.elements.CompilerElement, "compile",
                        lambda *a, **k: compiles.append(a) or compile(*a, **k))
    monkeypatch.setattr(type(db), "driver_read", lambda self, sql, params, binary=False:
                        reads.append((sql, params)) or driver_read(self, sql, params, binary))
    assert [sorted(d["visit"] for d in result) for result in asked] == [[1], [1, 2]]
    assert reads == kept and not compiles


def test_postgres_query_asked_again_is_prepared_at_its_second_ask_with_its_values_and_planned_once(
        two_postgres_clients):
    first, second = two_postgres_clients
    spatial = lambda: [entry for entry in prepared_statements(first) if "skypix" in entry[0]]  # noqa: E731
    assert visits_at_point(first) == [1]  # asked once: run by SQLAlchemy
    assert visits(first) == [1, 2] and visits(first) == [1, 2]  # another query, asked again
    for visit in range(2, 6):  # queries asked once each
        assert [d["visit"] for d in first.query_data_ids(["visit"], where=f"visit = {visit}")] == [2][:visit == 2]
    assert len(prepared_statements(first)) == 1 and spatial() == []  # only the one asked again is prepared
    assert visits_at_point(first) == [1]  # asked again: prepared by the driver at this run
    # its values are in its text (no parameter): planned once, when prepared, for those values,
    # and run on that plan (with a parameter, the server plans each run anew)
    assert len(spatial()) == 1 and spatial()[0][1] == [] and "$1" not in spatial()[0][0]
    assert spatial()[0][2:] == (1, 0)
    for _ in range(10):
        assert visits_at_point(first) == [1]
    assert spatial()[0][2:] == (11, 0)
    second.insert_records("visit", [new_visit(9)])
    assert visits_at_point(first) == [1, 9]  # a statement kept prepared sees another client's commit


def test_postgres_read_values_are_written_into_its_text_once_as_psycopg_quotes_them(two_postgres_clients,
                                                                                     monkeypatch):
    import psycopg

    db = two_postgres_clients[0].registry.db
    sql = "SELECT %(s)s::TEXT, %(b)s::BYTEA, %(f)s::FLOAT, %(n)s::INTEGER, %(i)s::BIGINT, '100%%', 7 %% 4"
    params = {"s": "it's a \\ 100% 'quote'", "b": b"\x00'\\", "f": 0.1 + 0.2, "n": None, "i": -2**40}
    merged = []
    mogrify = psycopg.ClientCursor.mogrify
    monkeypatch.setattr(psycopg.ClientCursor, "mogrify", lambda cur, *a: merged.append(a) or mogrify(cur, *a))
    for _ in range(4):  # prepared at its first run
        with db.driver_read(sql, params) as result:
            assert result.fetchall() == [(params["s"], params["b"], 0.1 + 0.2, None, -2**40, "100%", 3)]
    assert len(merged) == 1  # merged once for the kept parameters
    with db.driver_read(sql, dict(params)) as result:  # other parameters, though equal: merged again
        assert result.fetchone()[0] == params["s"]
    assert len(merged) == 2
    # the same text: one statement prepared at the first of its five runs, without parameters
    assert [entry[1:] for entry in prepared_statements(two_postgres_clients[0]) if "100%" in entry[0]] == [([], 5, 0)]


def test_postgres_prepared_read_whose_columns_another_client_altered_is_sent_again(two_postgres_clients):
    first, second = two_postgres_clients
    with second.registry.db.transaction() as conn:
        conn.exec_driver_sql("CREATE TABLE reads_altered (x integer)")
        conn.exec_driver_sql("INSERT INTO reads_altered VALUES (1)")
    db = first.registry.db

    def read() -> list:
        with db.driver_read("SELECT x FROM reads_altered", {}) as result:
            return result.fetchall()

    for _ in range(4):  # prepared at its first run
        assert read() == [(1,)]
    assert any("reads_altered" in text for text, *_ in prepared_statements(first))
    with second.registry.db.transaction() as conn:
        conn.exec_driver_sql("ALTER TABLE reads_altered ALTER COLUMN x TYPE text")
    assert read() == [("1",)]
    assert read() == [("1",)]


def test_postgres_statement_is_prepared_in_the_round_trip_of_its_first_run(two_postgres_clients, tmp_path):
    """Its Parse goes with the run's Bind and Execute (a pipeline): its answer is not waited for first."""
    import psycopg

    first, _ = two_postgres_clients
    assert visits(first) == [1, 2] and visits(first) == [1, 2]  # (this thread's read connection opened)
    assert visits_at_point(first) == [1]  # asked once: run by SQLAlchemy
    pgconn = first.registry.db._local.reader.connection.pgconn
    with open(tmp_path / "trace", "w") as trace:
        pgconn.trace(trace.fileno())
        pgconn.set_trace_flags(psycopg.pq.Trace.SUPPRESS_TIMESTAMPS)
        try:
            assert visits_at_point(first) == [1]  # asked again: prepared at this run
            assert visits_at_point(first) == [1]  # run on that statement
        finally:
            pgconn.untrace()
    trips: list[list[str]] = []  # the messages sent before each answer
    sending = False
    lines = (tmp_path / "trace").read_text().splitlines()
    for direction, _, kind, *_ in (line.split("\t") for line in lines if line[:2] in ("F\t", "B\t")):
        if direction == "F" and kind != "Flush":
            if not sending:
                trips.append([])
            trips[-1].append(kind)
        sending = direction == "F"
    assert trips == [["Parse", "Bind", "Describe", "Execute", "Sync"], ["Bind", "Describe", "Execute", "Sync"]]
