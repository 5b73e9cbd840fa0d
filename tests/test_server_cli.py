"""Commands given a server URL where they take a repository path work through the server as
on the path (maintenance commands: tests/test_server_maintenance.py, test_server_pipelines.py)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from conftest import populate
from server_helpers import running_server
from skybutler.access import Access
from skybutler.cli.main import cli

pytest.importorskip("fastapi")


@pytest.fixture
def served(butler, tmp_path, monkeypatch):
    if butler.registry.db.dialect != "sqlite":
        pytest.skip("the commands compose the remote butler's calls, tested on every stack")
    butler.register_dataset_type("bias", ["instrument", "detector"], "Dict", is_calibration=True)
    butler.put({"b": 0}, "bias", instrument="Cam", detector=0, run="calib/run")
    butler.put({"v": 1}, "metrics", instrument="Cam", visit=1, detector=0, run="run/a")
    access = Access(butler.registry.access)
    access.add_user("boss", admin=True)
    monkeypatch.setenv("SKYBUTLER_TOKEN", access.create_token("boss"))
    with running_server(butler.root) as url:
        yield butler, url


def _run(*args: str) -> str:
    result = CliRunner().invoke(cli, list(args))
    assert result.exit_code == 0, result.output
    return result.stdout


def test_commands_on_a_url(served, tmp_path):
    local, url = served
    assert json.loads(_run("get", url, "metrics", "instrument=Cam", "visit=1", "detector=0", "-c", "run/a")) == {"v": 1}
    (tmp_path / "m.json").write_text('{"x": 2}')
    (tmp_path / "files.csv").write_text("file,instrument,visit,detector\nm.json,Cam,2,0\n")
    _run("ingest-files", url, "metrics", str(tmp_path / "files.csv"), "--run", "u/boss/in")  # transfer auto: a copy
    assert local.get("metrics", instrument="Cam", visit=2, detector=0, collections="u/boss/in") == {"x": 2}
    assert (tmp_path / "m.json").exists()
    _run("certify-calibrations", url, "calib/run", "calib", "bias")
    assert [ref.run for ref, _ in local.collections.validity("calib", "bias")] == ["calib/run"]
    _run("register-collection", url, "tag", "--type", "tagged")
    _run("collection-chain", url, "chain", "run/a", "tag")
    removed = CliRunner().invoke(cli, ["remove-collections", url, "tag", "--yes"])
    assert removed.exit_code == 1 and "is in chain(s) chain" in removed.stderr
    _run("remove-collections", url, "chain", "tag", "--yes")
    _run("remove-runs", url, "u/boss/in", "--yes")
    assert {c.name for c in local.collections.query("*")} == {"run/a", "calib/run", "calib"}


#: Reading commands whose output on a URL must be their output on the repository's path.
READS = [["query-collections", "{repo}"], ["query-dataset-types", "{repo}"],
         ["query-data-ids", "{repo}", "visit", "detector", "-w", "visit = 1"],
         ["query-dimension-records", "{repo}", "detector"],
         ["query-datasets", "{repo}", "metrics", "-c", "run/a"]]


def test_reading_commands_on_a_url_print_what_they_print_on_the_path(served):
    local, url = served
    for command in READS:
        here = _run(*[part.format(repo=str(local.root)) for part in command])
        there = _run(*[part.format(repo=url) for part in command])
        assert there == here and here.strip(), command


def test_writing_commands_on_a_url_change_the_repository_as_on_the_path(served, tmp_path, make_butler):
    """put, register-/remove-dataset-type, insert-records, associate, disassociate and
    prune-datasets given a URL: the served repository ends as a twin given its path does."""
    local, url = served
    twin = make_butler("twin")
    populate(twin)
    twin.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    twin.register_dataset_type("bias", ["instrument", "detector"], "Dict", is_calibration=True)
    (tmp_path / "obj.json").write_text('{"w": 7}')
    (tmp_path / "detectors.yaml").write_text("- {instrument: Cam, id: 40, full_name: D40}\n")
    steps = [["put", "{repo}", "metrics", str(tmp_path / "obj.json"), "instrument=Cam", "visit=3", "detector=1",
              "--run", "u/boss/w", "--id-mode", "deterministic"],
             ["register-dataset-type", "{repo}", "notes", "instrument", "-s", "Dict"],
             ["remove-dataset-type", "{repo}", "notes"],
             ["insert-records", "{repo}", "detector", str(tmp_path / "detectors.yaml")],
             ["associate", "{repo}", "u/boss/tag", "--dataset-type", "metrics", "-c", "run/a,u/boss/w"],
             ["disassociate", "{repo}", "u/boss/tag", "--dataset-type", "metrics", "-c", "run/a"],
             ["prune-datasets", "{repo}", "u/boss/w", "--datasets", "metrics", "--yes"]]
    twin.put({"v": 1}, "metrics", instrument="Cam", visit=1, detector=0, run="run/a")
    for step in steps:
        _run(*[part.format(repo=url) for part in step])
        _run(*[part.format(repo=str(twin.root)) for part in step])

    def state(butler):
        collections = sorted((c.name, c.type.value) for c in butler.collections.query("u/boss/*"))
        tagged = sorted(str(r.data_id.required) for r in butler.query_datasets("metrics", collections="u/boss/tag"))
        return (collections, tagged, sorted(t.name for t in butler.query_dataset_types()),
                sorted(r["full_name"] or "" for r in butler.query_dimension_records("detector")),
                butler.query_datasets("metrics", collections="u/boss/w", find_first=False).count())

    assert state(local) == state(twin)
    assert state(local)[1] == [] and "D40" in state(local)[3]


#: Commands that stay on the server's machine, each with what its one-line refusal says.
LOCAL_ONLY = [
    (["config-dump", "{url}"], "config-dump prints butler.yaml, which names the server's own database and storage, "
                               "so it runs on the server's machine with the repository's path"),
    (["config-validate", "{url}"], "config-validate checks butler.yaml against the server's own database and "
                                   "storage, so it runs on the server's machine with the repository's path"),
    (["migrate", "{url}"], "migrate upgrades the registry's schema in place, so it runs on the server's machine "
                           "with the repository's path (stop the server first)"),
    (["serve", "{url}"], "serve opens repositories by their path on this machine; {url} is a server already"),
]


@pytest.mark.parametrize(("command", "says"), LOCAL_ONLY, ids=lambda c: c[0] if isinstance(c, list) else "")
def test_what_stays_on_the_server_machine_refuses_a_url_in_one_line(command, says):
    """The configuration, the schema and serving itself are the server machine's: given a URL, each command says why in one line, before any
    request is made (no server runs).  The administration of users, rules, embargoes, quotas and
    the audit log goes through a server: tests/test_server_admin.py."""
    url = "http://127.0.0.1:9/repo"  # the discard port: nothing answers there
    result = CliRunner().invoke(cli, [part.format(url=url) for part in command])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and says.format(url=url) in lines[0], result.output
    assert "bug in skybutler" not in result.output and result.exception is None or isinstance(result.exception,
                                                                                             SystemExit)


def test_serve_with_several_workers_as_a_user_starts_it(butler, tmp_path):
    """``skybutler serve REPO --port P --workers 2`` as a person runs it (uvicorn's own worker
    processes on loopback): both workers start, every fresh client sees a write made through
    another at once (no restart: the registry is the one state), and SIGTERM stops it cleanly."""
    import os
    import signal
    import socket
    import subprocess
    import sys
    import time

    import httpx

    from skybutler import Butler

    access = Access(butler.registry.access)
    access.add_user("boss", admin=True)
    token = access.create_token("boss")
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log = open(tmp_path / "serve.log", "ab")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    proc = subprocess.Popen([sys.executable, "-m", "skybutler.cli", "serve", str(butler.root), "--port", str(port),
                             "--workers", "2"], stdout=log, stderr=subprocess.STDOUT, env=env)
    url = f"http://127.0.0.1:{port}/{butler.root.name}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/api/v1/info", headers={"Authorization": f"Bearer {token}"}).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline and proc.poll() is None, (tmp_path / "serve.log").read_text()
            time.sleep(0.3)
        children = {int(p) for p in open(f"/proc/{proc.pid}/task/{proc.pid}/children").read().split()}
        assert len(children) >= 2  # the workers, each a process of its own
        writer = Butler(url, token=token)
        for n in range(6):
            writer.collections.register(f"seen/{n}", "tagged")
            for _ in range(3):  # fresh connections, answered by whichever worker accepts them
                with Butler(url, token=token) as reader:
                    assert reader.collections.exists(f"seen/{n}")
        assert httpx.get(f"{url}/api/v1/info").status_code == 401  # no token, no answer
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    assert code == 0, (tmp_path / "serve.log").read_text()
