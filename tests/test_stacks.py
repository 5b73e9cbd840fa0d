"""Behaviour specific to the scale-out stack: PostgreSQL registry, S3 datastore.

The rest of the suite runs unchanged on every configured stack (see conftest); the
tests here check what only the server stack has: schemas as namespaces, credentials
kept out of the config, object-store atomicity, and errors from a server that is
not there.  Tests needing a server skip unless SKYBUTLER_TEST_POSTGRES_URL /
SKYBUTLER_TEST_S3_ENDPOINT are set (``.ci/run`` sets both).
"""

from __future__ import annotations

import socket
import uuid
from pathlib import Path

import pytest
import yaml

from conftest import _MADE_NAMES, POSTGRES_URL, S3_BUCKET, S3_ENDPOINT, populate
from skybutler import Butler
from skybutler.config import RepoConfig
from skybutler.errors import BackendError, ConfigError, DatasetConflictError, DatastoreError

needs_postgres = pytest.mark.skipif(not POSTGRES_URL, reason="needs SKYBUTLER_TEST_POSTGRES_URL")
needs_s3 = pytest.mark.skipif(not (POSTGRES_URL and S3_ENDPOINT),
                              reason="needs SKYBUTLER_TEST_POSTGRES_URL and SKYBUTLER_TEST_S3_ENDPOINT")


def _schema_name() -> str:
    name = f"t_{uuid.uuid4().hex[:12]}"
    _MADE_NAMES.append(name)  # dropped (with its S3 prefix) at the end of the session
    return name


def _closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# -- PostgreSQL: one database, many repositories ------------------------------

@needs_postgres
def test_repositories_in_different_schemas_do_not_see_each_other(tmp_path: Path):
    a_schema, b_schema = _schema_name(), _schema_name()
    with Butler.create(tmp_path / "a", registry=f"{POSTGRES_URL}?schema={a_schema}", run="run/a") as a, \
            Butler.create(tmp_path / "b", registry=f"{POSTGRES_URL}?schema={b_schema}", run="run/b") as b:
        populate(a)
        a.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
        a.put({"x": 1}, "metrics", instrument="Cam", visit=1, detector=0)

        assert b.registry.dimensions.fetch_all("instrument") == []
        assert b.query_dataset_types() == []
        assert [c.name for c in b.collections.query()] == []
        # the same names can be used independently in the other repository
        populate(b)
        b.register_dataset_type("metrics", ["instrument", "visit"], "Dict")
        b.put({"y": 2}, "metrics", instrument="Cam", visit=1)
        assert a.get("metrics", instrument="Cam", visit=1, detector=0, collections="run/a") == {"x": 1}
        assert b.get("metrics", instrument="Cam", visit=1, collections="run/b") == {"y": 2}
        assert [c.name for c in a.collections.query()] == ["run/a"]

    # every table lives in its repository's schema, none in public
    import sqlalchemy as sa

    engine = sa.create_engine(POSTGRES_URL.replace("postgresql://", "postgresql+psycopg://", 1))
    try:
        with engine.connect() as conn:
            counts = dict(conn.execute(sa.text(
                "SELECT table_schema, count(*) FROM information_schema.tables "
                "WHERE table_schema IN (:a, :b, 'public') GROUP BY table_schema"), {"a": a_schema, "b": b_schema}).all())
    finally:
        engine.dispose()
    assert counts.get(a_schema, 0) > 10 and counts.get(b_schema, 0) > 10
    assert "public" not in counts


@needs_postgres
def test_statements_are_planned_for_their_own_parameters(tmp_path: Path):
    """psycopg would prepare a statement run five times, and the server could then switch to a
    generic plan made without the values of a query's data-ID ranges: no query is prepared (the
    one statement prepared on the session is a single put's insert, whose plan has no choice)."""
    with Butler.create(tmp_path / "repo", registry=f"{POSTGRES_URL}?schema={_schema_name()}", run="r") as butler:
        populate(butler)
        butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
        for detector in range(4):  # past psycopg's prepare threshold, reads and writes alike
            butler.put({"d": detector}, "metrics", instrument="Cam", visit=1, detector=detector)
        with butler.registry.db.transaction() as conn:  # the queries' reads join it: one session throughout
            for _ in range(12):
                assert butler.query_datasets("metrics", collections="r",
                                             where="visit = 1 AND detector < 3").count() == 3
            prepared = conn.exec_driver_sql("SELECT name, statement FROM pg_prepared_statements").all()
            assert all(name.startswith("skybutler_put_") and "INSERT" in text for name, text in prepared), prepared


@needs_postgres
def test_a_second_registry_in_the_same_schema_is_refused(tmp_path: Path):
    schema = _schema_name()
    with Butler.create(tmp_path / "a", registry=f"{POSTGRES_URL}?schema={schema}"):
        with pytest.raises(Exception, match="already exists"):
            Butler.create(tmp_path / "b", registry=f"{POSTGRES_URL}?schema={schema}")


# -- credentials stay out of the repository config ----------------------------

@pytest.mark.parametrize("url", [
    "postgresql://butler:s3cret@db.example.org/survey?schema=main",
    "postgresql+psycopg://butler:s3/cret@db.example.org:5432/survey",
    "postgresql://db.example.org/survey?user=butler&password=s3cret",
])
def test_a_password_in_the_config_is_refused(tmp_path: Path, url: str):
    with pytest.raises(ValueError, match="password") as info:  # a SettingsError
        RepoConfig(registry=url)
    assert "s3cret" not in str(info.value)  # the refusal does not echo the secret

    with pytest.raises(ConfigError, match="password"):
        Butler.create(tmp_path / "new", registry=url)
    assert not (tmp_path / "new" / "butler.yaml").exists()

    # a hand-edited butler.yaml with a password is refused on open
    root = tmp_path / "edited"
    root.mkdir()
    (root / "butler.yaml").write_text(yaml.safe_dump({"registry": url}))
    with pytest.raises(ConfigError, match="password") as info:
        Butler(root)
    assert "s3cret" not in str(info.value)


def test_a_url_without_password_is_accepted():
    RepoConfig(registry="postgresql://butler@db.example.org:5432/survey?schema=main")
    RepoConfig(registry="postgresql://${SURVEY_DB_HOST}/survey?schema=main")


# -- an unreachable server ----------------------------------------------------

def test_an_unreachable_postgres_server_gives_a_backend_error(tmp_path: Path):
    pytest.importorskip("psycopg")
    url = f"postgresql://butler@127.0.0.1:{_closed_port()}/survey?schema=main"
    with pytest.raises(BackendError, match=r"postgresql registry write failed.*127\.0\.0\.1"):
        Butler.create(tmp_path / "repo", registry=url)

    # an existing repository whose server has gone away: opening it reads
    root = tmp_path / "existing"
    RepoConfig(registry=url).save(root.mkdir() or root)
    with pytest.raises(BackendError, match=r"postgresql registry read failed.*127\.0\.0\.1"):
        Butler(root)


# -- S3 datastore -------------------------------------------------------------

@pytest.fixture
def s3_butler(tmp_path: Path):
    name = _schema_name()
    butler = Butler.create(tmp_path / "repo", registry=f"{POSTGRES_URL}?schema={name}",
                           datastore=f"s3://{S3_BUCKET}/{name}", run="run/a", collections=["run/a"])
    populate(butler)
    butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    butler.collections.register("run/a", "run")
    yield butler
    butler.close()


@needs_s3
def test_s3_put_get_ingest_remove(s3_butler: Butler, tmp_path: Path):
    b = s3_butler
    ref = b.put({"a": 1}, "metrics", instrument="Cam", visit=1, detector=0)
    uri = b.get_uri(ref)
    assert uri.startswith(f"s3://{S3_BUCKET}/") and uri.endswith("metrics_Cam_1_0.json")
    assert b.get(ref) == {"a": 1} and b.exists(ref)

    source = tmp_path / "in.json"
    source.write_text('{"b": 2}')
    (ingested,) = b.ingest("metrics", [(source, {"instrument": "Cam", "visit": 2, "detector": 0})], transfer="copy")
    assert source.exists() and b.get(ingested) == {"b": 2}
    assert b.get_uri(ingested).startswith(f"s3://{S3_BUCKET}/")
    with pytest.raises(Exception, match="needs a local datastore"):
        b.ingest("metrics", [(source, {"instrument": "Cam", "visit": 3, "detector": 0})], transfer="symlink")

    assert len(list(b.datastore.walk())) == 2
    b.remove([ref, ingested])
    assert not b.exists(ref)
    assert list(b.datastore.walk()) == []


@needs_s3
def test_s3_put_that_fails_leaves_no_object(s3_butler: Butler, monkeypatch):
    b = s3_butler
    fs = b.datastore.fs
    real_pipe = fs.pipe_file
    calls = []

    def fail_one(path, data, **kwargs):  # objects may be published in parallel, in any order
        calls.append(path)
        if path.endswith("metrics_Cam_1_2.json"):
            raise OSError("connection reset by peer")
        return real_pipe(path, data, **kwargs)

    monkeypatch.setattr(fs, "pipe_file", fail_one)
    items = [({"i": i}, {"instrument": "Cam", "visit": 1, "detector": i}) for i in range(4)]
    with pytest.raises(DatastoreError, match="connection reset"):
        b.put_many("metrics", items)
    monkeypatch.undo()
    assert any(c.endswith("metrics_Cam_1_2.json") for c in calls)
    assert list(b.datastore.walk()) == []  # those already published were taken back
    assert b.find_dataset("metrics", instrument="Cam", visit=1, detector=0) is None

    # a registry failure after staging publishes nothing and keeps the existing object
    b.put({"first": True}, "metrics", instrument="Cam", visit=2, detector=0)
    with pytest.raises(DatasetConflictError):
        b.put({"second": True}, "metrics", instrument="Cam", visit=2, detector=0)
    assert b.get("metrics", instrument="Cam", visit=2, detector=0) == {"first": True}
    assert len(list(b.datastore.walk())) == 1


@needs_s3
@pytest.mark.parametrize("transfer", ["copy", "move"])
def test_s3_ingest_that_fails_leaves_no_object_and_keeps_the_source(s3_butler: Butler, tmp_path: Path,
                                                                    transfer: str):
    b = s3_butler
    first = tmp_path / "first.json"
    first.write_text('{"v": 1}')
    b.ingest("metrics", [(first, {"instrument": "Cam", "visit": 1, "detector": 0})], transfer="copy",
             id_mode="deterministic")
    # Same dataset ID into another RUN: the object is uploaded, then the registry refuses it.
    source = tmp_path / "second.json"
    source.write_text('{"v": 2}')
    with pytest.raises(DatasetConflictError):
        b.ingest("metrics", [(source, {"instrument": "Cam", "visit": 1, "detector": 0})], transfer=transfer,
                 id_mode="deterministic", run="run/b")
    assert [p for p in b.datastore.walk() if p.startswith("run/b/")] == []
    assert source.read_text() == '{"v": 2}'


@needs_s3
def test_s3_put_refuses_to_overwrite_an_object(s3_butler: Butler):
    b = s3_butler
    ref = b.put({"a": 1}, "metrics", instrument="Cam", visit=1, detector=0)
    b.remove([ref])
    # an object left at the path by someone else is not clobbered
    b.datastore.fs.pipe_file(f"{b.datastore.root}/{ref.artifact.path}", b"{}")
    with pytest.raises(DatastoreError, match="refusing to overwrite"):
        b.put({"a": 2}, "metrics", instrument="Cam", visit=1, detector=0)
    assert b.find_dataset("metrics", instrument="Cam", visit=1, detector=0) is None


# -- PostgreSQL: concurrent clients -------------------------------------------

@needs_postgres
def test_concurrent_clients_create_the_same_tables(tmp_path: Path):
    """Clients registering dataset types (new tables) and putting at the same time all
    succeed: no failure on a table another client is creating, and no deadlock."""
    import threading

    name = _schema_name()
    with Butler.create(tmp_path / "repo", registry=f"{POSTGRES_URL}?schema={name}") as b:
        populate(b)
    n = 6
    butlers = [Butler(tmp_path / "repo", run=f"run/{i}") for i in range(n)]
    errors: list[BaseException] = []
    for round_ in range(3):
        barrier = threading.Barrier(n)

        def work(i: int, round_: int = round_) -> None:
            try:
                b = butlers[i]
                barrier.wait()
                dims = [["instrument", "visit"], ["instrument", "detector", "band"], ["band"]][round_]
                b.register_dataset_type(f"shared_{round_}", dims, "Dict")
                b.register_dataset_type(f"own_{round_}_{i}", dims, "Dict")
                data_id = {"instrument": "Cam", "visit": 1, "detector": 0, "band": "g"}
                b.put({"i": i}, f"shared_{round_}", {d: data_id[d] for d in dims})
            except BaseException as err:  # reported below
                errors.append(err)

        threads = [threading.Thread(target=work, args=(i,)) for i in range(n)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
    for b in butlers:
        b.close()
    assert errors == []
