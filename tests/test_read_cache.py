"""Small registry lookups remembered while nothing is committed: a change by another
client, another process, or this thread's own transaction is always seen."""

from __future__ import annotations

import subprocess
import sys

import pytest

from conftest import POSTGRES_URL, in_forked_child, two_clients_on
from skybutler import Butler
from skybutler.registry.collection_store import CollectionStore


@pytest.fixture
def two_clients(request, tmp_path):
    """Two butlers on one repository: metrics in run/a, chain -> [run/a].  SQLite unless a
    test asks for a stack (``on_postgres``, ``on_both``)."""
    stack = getattr(request, "param", "sqlite")
    if stack == "postgres" and not POSTGRES_URL:
        pytest.skip("needs SKYBUTLER_TEST_POSTGRES_URL")
    with two_clients_on(stack, tmp_path, prepare=_metrics_in_a_chain) as clients:
        yield clients


def _metrics_in_a_chain(first: Butler) -> None:
    first.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    first.put({"v": 1}, "metrics", instrument="Cam", visit=1, detector=0, run="run/a")
    first.collections.register("chain", "chained")
    first.collections.set_chain("chain", ["run/a"])


#: The two clients on the stack's PostgreSQL server, or on either stack.
on_postgres = pytest.mark.parametrize("two_clients", ["postgres"], indirect=True)
on_both = pytest.mark.parametrize("two_clients", ["sqlite", "postgres"], indirect=True)


def runs_found(butler: Butler) -> list[str]:
    return sorted(r.run for r in butler.query_datasets("metrics", collections="chain", find_first=False))


def test_answers_are_reused_until_something_is_committed(two_clients, monkeypatch):
    first, second = two_clients
    calls = []
    real = CollectionStore._child_ids
    monkeypatch.setattr(CollectionStore, "_child_ids", lambda self, cid: calls.append(cid) or real(self, cid))
    assert runs_found(first) == runs_found(first) == ["run/a"]
    assert len(calls) == 1  # the chain was read once
    second.put({"v": 2}, "metrics", instrument="Cam", visit=1, detector=0, run="run/b")
    second.collections.set_chain("chain", ["run/b", "run/a"])  # another client's commits
    assert runs_found(first) == ["run/a", "run/b"] and len(calls) == 2


def test_another_process_is_seen(two_clients):
    first, _ = two_clients
    assert runs_found(first) == ["run/a"]
    script = ("import sys; from skybutler import Butler\n"
              "with Butler(sys.argv[1]) as b:\n"
              "    b.put({'v': 3}, 'metrics', instrument='Cam', visit=2, detector=1, run='run/c')\n"
              "    b.collections.set_chain('chain', ['run/c', 'run/a'])\n")
    subprocess.run([sys.executable, "-c", script, str(first.root)], check=True)
    assert runs_found(first) == ["run/a", "run/c"]


def test_a_transaction_sees_its_own_changes_and_a_rollback_leaves_nothing_behind(two_clients):
    first, _ = two_clients
    assert runs_found(first) == ["run/a"]
    with pytest.raises(RuntimeError, match="roll it back"):
        with first.registry.transaction():
            first.put({"v": 4}, "metrics", instrument="Cam", visit=2, detector=0, run="run/d")
            first.collections.set_chain("chain", ["run/d", "run/a"])
            assert runs_found(first) == ["run/a", "run/d"]
            raise RuntimeError("roll it back")
    assert runs_found(first) == ["run/a"]


def test_a_sole_instrument_is_a_constant_until_another_is_added(two_clients):
    first, second = two_clients
    built_before = first.query_data_ids(["detector"])
    assert built_before._built.constants == {"instrument": "Cam"}
    second.insert_records("instrument", [{"name": "Other", "detector_max": 2, "visit_max": 10}])
    second.insert_records("detector", [{"instrument": "Other", "id": 1}])
    # built before the new instrument, run after: the statement reading the columns sees
    # that instrument is no longer alone, and the rows answer (never a mislabelled row)
    expected = [("Cam", 0), ("Cam", 1), ("Other", 1)]
    assert built_before._columns_whole() is None
    assert sorted((d["instrument"], d["detector"]) for d in built_before) == expected
    table = built_before.to_arrow()
    assert sorted(zip(table.column("instrument").to_pylist(), table.column("detector").to_pylist())) == expected
    again = first.query_data_ids(["detector"])
    assert "instrument" not in again._built.constants
    assert sorted((d["instrument"], d["detector"]) for d in again) == expected
    table = again.to_arrow()
    assert sorted(zip(table.column("instrument").to_pylist(), table.column("detector").to_pylist())) == expected


def test_a_forked_child_opens_its_own_watcher_and_forgets_the_parents_answers(two_clients):
    first, second = two_clients
    assert runs_found(first) == ["run/a"]  # remembered in the parent
    second.put({"v": 5}, "metrics", instrument="Cam", visit=2, detector=1, run="run/e")
    second.collections.set_chain("chain", ["run/e", "run/a"])

    def child():
        cache = first.registry.db.read_cache
        inherited = cache.watcher.connection  # the parent's SQLite connection: not to be used here
        answer = runs_found(first)
        own = cache.watcher.connection
        return answer, inherited is not None and own is not None and own is not inherited

    (found, own_watcher), exitcode = in_forked_child(child)
    assert found == ["run/a", "run/e"] and own_watcher and exitcode == 0


def test_a_query_asked_again_is_not_built_again_until_a_commit(two_clients, monkeypatch):
    """A built statement is remembered like the lookups behind it: the same spec is built once
    while nothing is committed; bind values of different types are different queries, and a
    bind that cannot be a key (a list) is built every time."""
    from skybutler.query import builder

    first, second = two_clients
    built = []
    real = builder._build
    monkeypatch.setattr(builder, "_build", lambda registry, spec: built.append(spec.where) or real(registry, spec))
    for _ in range(3):
        assert first.query_datasets("metrics", collections="chain", where="detector = d", bind={"d": 0}).count() == 1
    assert len(built) == 1
    with pytest.raises(Exception, match="bool"):  # not the remembered integer query
        first.query_datasets("metrics", collections="chain", where="detector = d", bind={"d": True}).count()
    for _ in range(2):
        first.query_datasets("metrics", collections="chain", where="detector IN (d)", bind={"d": [0, 1]}).count()
    assert len(built) == 4
    second.put({"v": 2}, "metrics", instrument="Cam", visit=1, detector=1, run="run/a")  # another client commits
    assert first.query_datasets("metrics", collections="chain", where="detector = d", bind={"d": 1}).count() == 1
    assert first.query_datasets("metrics", collections="chain", where="detector = d", bind={"d": 0}).count() == 1
    assert len(built) == 6


def test_a_query_asked_again_reuses_its_sql_text_and_sees_new_records(two_clients):
    """The column-reading statement of a built query is compiled once, per limit and offset,
    and sent again while nothing is committed; a commit (here another client's) builds anew."""
    first, second = two_clients
    ids = [(d["visit"], d["detector"]) for d in first.query_data_ids(["visit", "detector"], where="visit > 0")]
    assert sorted(ids) == [(1, 0), (1, 1), (2, 0), (2, 1)]
    built = first.query_data_ids(["visit", "detector"], where="visit > 0")._built
    assert len(built.compiled) == 1
    again = first.query_data_ids(["visit", "detector"], where="visit > 0")
    assert again._built is built and sorted((d["visit"], d["detector"]) for d in again) == sorted(ids)
    assert len(list(again.limit(1, 1))) == 1 and len(list(again.limit(3))) == 3 and len(built.compiled) == 3
    second.insert_records("visit", [{"instrument": "Cam", "id": 3, "physical_filter": "Cam-r", "day_obs": 20250101}])
    assert sorted(d["visit"] for d in first.query_data_ids(["visit", "detector"], where="visit > 0")) == [
        1, 1, 2, 2, 3, 3]


@on_postgres
def test_postgres_reuses_a_built_query_while_its_lookups_answer_as_before(two_clients, monkeypatch):
    """PostgreSQL cannot say whether anything was committed: a built query is reused while the
    lookups it was built from (the chain's children, which collections hold the type) answer
    the same, run again each time; another client's commits are seen all the same."""
    from skybutler.query import builder

    first, second = two_clients
    first.register_dataset_type("other", ["instrument", "visit", "detector"], "Dict")
    built = []
    real = builder._build
    monkeypatch.setattr(builder, "_build", lambda registry, spec: built.append(spec.where) or real(registry, spec))
    for _ in range(3):
        assert runs_found(first) == ["run/a"]
    assert len(built) == 1
    second.put({"v": 2}, "metrics", instrument="Cam", visit=2, detector=1, run="run/a")  # no lookup changes
    assert runs_found(first) == ["run/a", "run/a"] and len(built) == 1
    second.put({"v": 3}, "metrics", instrument="Cam", visit=1, detector=0, run="run/b")
    second.collections.set_chain("chain", ["run/b", "run/a"])  # the chain's children change
    assert runs_found(first) == ["run/a", "run/a", "run/b"] and len(built) == 2
    # which collections hold a type: none of the chain's held 'other', now run/b does
    assert first.query_datasets("other", collections="chain").count() == 0
    second.put({"v": 4}, "other", instrument="Cam", visit=1, detector=1, run="run/b")
    assert [r.run for r in first.query_datasets("other", collections="chain")] == ["run/b"]
    assert len(built) == 4  # 'other' built while no collection held it, and again once run/b did


@on_postgres
def test_postgres_reuses_data_id_queries_and_sees_new_records(two_clients, monkeypatch):
    from skybutler.query import builder

    first, second = two_clients
    built = []
    real = builder._build
    monkeypatch.setattr(builder, "_build", lambda registry, spec: built.append(spec.where) or real(registry, spec))

    def visits() -> list[int]:
        return sorted(d["visit"] for d in first.query_data_ids(["visit", "detector"], where="visit > 0 AND band = 'g'"))

    assert visits() == [1, 1]
    second.insert_records("visit", [{"instrument": "Cam", "id": 4, "physical_filter": "Cam-g", "day_obs": 20250101}])
    assert visits() == [1, 1, 4, 4] and len(built) == 1  # no lookup behind it: built once
    table = first.query_data_ids(["visit", "detector"], where="visit > 0 AND band = 'g'").to_arrow()
    assert sorted(table.column("visit").to_pylist()) == [1, 1, 4, 4] and len(built) == 1
    # a where-clause naming what the database defines (a dataset's facts) is built every time
    for _ in range(2):
        first.query_datasets("metrics", collections="chain", where="metrics.ingest_date > T'2000-01-01'").count()
    assert len(built) == 3
    # nor inside a transaction
    with first.registry.transaction():
        visits()
    assert len(built) == 4


class _Sent:
    """The statements a butler sends through its pool (but SQLite's BEGIN) and its threads' read
    connections, and the marks its watcher reads."""

    def __init__(self, butler: Butler, monkeypatch):
        import sqlalchemy as sa

        from skybutler.registry.driver_reads import DriverReader

        self.statements: list[str] = []
        self.marks: list[object] = []
        sa.event.listen(butler.registry.db.engine, "before_cursor_execute",
                        lambda conn, cursor, statement, *_: statement == "BEGIN" or self.statements.append(statement))
        execute = DriverReader.execute
        monkeypatch.setattr(DriverReader, "execute",
                            lambda reader, sql, *args: self.statements.append(sql) or execute(reader, sql, *args))
        watcher = butler.registry.db.read_cache.watcher
        real = watcher.mark
        monkeypatch.setattr(watcher, "mark", lambda: self.marks.append(real()) or self.marks[-1])

    def during(self, call) -> tuple[object, list[str], list[object]]:
        self.statements.clear()
        self.marks.clear()
        return call(), list(self.statements), list(self.marks)


@on_both
def test_a_query_asked_again_sends_only_its_own_statement_while_nothing_is_committed(two_clients, monkeypatch):
    """The chain's children and which collections hold the type are not asked again: one
    statement per query, and a maintained count none, while the watcher's mark stays the
    same, and a count reads the mark once (its query checked and its count found together);
another client's commit is seen at once.  (A PostgreSQL mark moves with any
    commit to the shared server: calls that saw it move may ask again, the others may not.)"""
    first, second = two_clients
    sent = _Sent(first, monkeypatch)
    quiet = 0
    previous: set = set()
    for _ in range(300):  # other tests' commits to a shared server move the mark: look for quiet rounds
        runs, statements, marks = sent.during(lambda: runs_found(first))
        assert runs == ["run/a"]
        count, count_statements, count_marks = sent.during(
            lambda: first.query_datasets("metrics", collections="chain").count())
        assert count == 1
        seen = set(marks + count_marks)
        # nothing committed since each query last ran: one mark seen by both rounds' calls
        if marks and previous and len(previous | seen) == 1:
            quiet += 1
            assert len(statements) == 1 and "collection_chain" not in statements[0], statements
            assert count_statements == []
            # the count's query is checked and its count found for one reading of the mark
            assert len(count_marks) == 1, count_marks
            if quiet == 3:
                break
        previous = seen
    assert quiet > 0
    second.put({"v": 2}, "metrics", instrument="Cam", visit=2, detector=1, run="run/b")
    assert first.query_datasets("metrics", collections="chain").count() == 1
    second.collections.set_chain("chain", ["run/b", "run/a"])
    assert runs_found(first) == ["run/a", "run/b"]
    assert first.query_datasets("metrics", collections="chain", find_first=False).count() == 2
    second.put({"v": 3}, "metrics", instrument="Cam", visit=1, detector=1, run="run/b")
    assert first.query_datasets("metrics", collections="chain", find_first=False).count() == 3
    assert runs_found(first) == ["run/a", "run/b", "run/b"]


@on_postgres
def test_postgres_mark_moves_with_another_connections_commit_only(two_clients):
    first, second = two_clients
    watcher = first.registry.db.read_cache.watcher
    before = watcher.mark()
    assert runs_found(first) == ["run/a"]  # reads only
    second.put({"v": 2}, "metrics", instrument="Cam", visit=2, detector=1, run="run/a")
    after = watcher.mark()
    assert after is not None and after != before


@on_postgres
def test_postgres_watcher_that_lost_its_server_connection_answers_nothing_then_connects_again(
        two_clients):
    """A watcher whose server process ended remembers nothing for that call (every lookup
    runs) and connects anew on the next: answers stay right throughout."""
    first, second = two_clients
    assert runs_found(first) == ["run/a"]
    watcher = first.registry.db.read_cache.watcher
    pid = watcher.backend_pid()
    with second.registry.db.reading() as conn:
        conn.exec_driver_sql(f"SELECT pg_terminate_backend({pid})")
    second.put({"v": 2}, "metrics", instrument="Cam", visit=2, detector=1, run="run/b")
    second.collections.set_chain("chain", ["run/b", "run/a"])
    assert runs_found(first) == ["run/a", "run/b"]
    assert watcher.mark() is not None and watcher.backend_pid() not in (None, pid)
    assert runs_found(first) == ["run/a", "run/b"]


def counted(butler: Butler) -> int:
    """``metrics`` in the chain: a maintained count, remembered while nothing is committed."""
    return butler.query_datasets("metrics", collections="chain").count()


@on_both
def test_a_remembered_count_is_never_stale_after_another_connections_commit(two_clients, monkeypatch):
    """Each of many commits by another client is counted by the very next call, while the
    calls between commits are answered from the cache (no statement: the count is remembered)."""
    first, second = two_clients
    sent = _Sent(first, monkeypatch)
    from_cache = 0

    def count_thrice(expected: int) -> None:
        nonlocal from_cache
        for _ in range(3):
            count, statements, _ = sent.during(lambda: counted(first))
            assert count == expected
            from_cache += not statements

    count_thrice(1)
    for i in range(20):  # 40 commits, each followed at once by counts
        ref = second.put({"v": i}, "metrics", instrument="Cam", visit=2, detector=1, run="run/a")
        count_thrice(2)
        second.remove([ref])
        count_thrice(1)
    assert from_cache > 0  # the cache answered (on a shared server, when no other database committed)


@on_postgres
def test_a_postgres_commit_that_leaves_the_running_list_without_moving_xmax_is_seen(two_clients):
    """A transaction older than the latest one to end (still running when the count was
    remembered) commits: the snapshot's xmax stays, its list of running transactions does not."""
    first, second = two_clients
    third = Butler(first.root)
    try:
        for _ in range(3):  # (another database's commit on a shared server may move xmax anyway)
            with second.transaction():
                older = second.put({"v": 2}, "metrics", instrument="Cam", visit=2, detector=1, run="run/a")
                later = third.put({"v": 3}, "metrics", instrument="Cam", visit=1, detector=1, run="run/a")  # ended
                assert counted(first) == counted(first) == 2  # remembered while ``older`` runs
            assert counted(first) == 3
            second.remove([older, later])
            assert counted(first) == 1
    finally:
        third.close()


@on_postgres
def test_postgres_mark_is_a_prepared_statement_run_through_libpq(two_clients, monkeypatch):
    """The watcher's mark skips psycopg's cursors: each read is the Bind, Execute and Sync of
    a statement prepared once on its connection (no Parse, no simple Query), one round trip."""
    import tempfile

    import psycopg

    first, second = two_clients
    watcher = first.registry.db.read_cache.watcher
    assert watcher.mark() is not None
    for cls in (psycopg.Connection, psycopg.Cursor, psycopg.ClientCursor):
        monkeypatch.setattr(cls, "execute", lambda *a, **k: pytest.fail("a mark went through psycopg's execute"))
    pgconn = watcher.connection.pgconn
    with tempfile.TemporaryFile("w+") as out:
        pgconn.trace(out.fileno())
        try:
            marks = [watcher.mark() for _ in range(3)]
        finally:
            pgconn.untrace()
        out.seek(0)
        sent = [f[3] for f in (line.split("\t") for line in out.read().splitlines()) if len(f) > 3 and f[1] == "F"]
    assert all(isinstance(m, bytes) for m in marks)
    assert "Parse" not in sent and "Query" not in sent and sent.count("Sync") == 3 and sent.count("Execute") == 3, sent
    monkeypatch.undo()
    before = watcher.mark()
    second.put({"v": 2}, "metrics", instrument="Cam", visit=2, detector=1, run="run/a")
    assert watcher.mark() != before


@on_postgres
def test_postgres_mark_refused_or_interrupted_drops_its_connection_and_the_next_reads_again(two_clients):
    """The server refusing the mark's statement gives no mark (nothing remembered for that
    call); an interruption while waiting for the answer (Ctrl-C) goes to the caller; either
    way the next call reads the mark on a new connection, and answers stay right."""
    first, second = two_clients
    watcher = first.registry.db.read_cache.watcher
    assert watcher.mark() is not None and runs_found(first) == ["run/a"]
    pid = watcher.backend_pid()
    watcher.connection.execute("DEALLOCATE skybutler_commit_mark")  # as if the server had forgotten it
    assert watcher.mark() is None and watcher.connection is None
    assert watcher.mark() is not None and watcher.backend_pid() != pid

    class Interrupted:
        def poll(self, *_):
            raise KeyboardInterrupt

    watcher._poll = Interrupted()
    with pytest.raises(KeyboardInterrupt):
        watcher.mark()
    assert watcher.connection is None  # its answer still to come: not to be read as the next one's
    second.put({"v": 2}, "metrics", instrument="Cam", visit=2, detector=1, run="run/b")
    second.collections.set_chain("chain", ["run/b", "run/a"])
    assert runs_found(first) == ["run/a", "run/b"] and watcher.mark() is not None
