"""Commands given a server URL where they take a repository path work through the server as
on the path (maintenance commands: tests/test_server_maintenance.py, test_server_pipelines.py)."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

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


ADMINISTRATION = [
    ["token", "create", "{url}", "bob"], ["token", "list", "{url}"], ["token", "revoke", "{url}", "abc"],
    ["add-user", "{url}", "bob"], ["grant", "{url}", "read", "x/*", "--user", "bob"],
    ["embargo", "list", "{url}"], ["embargo", "remove", "{url}", "1"], ["quota", "{url}"], ["audit", "{url}"],
    ["config-dump", "{url}"], ["config-validate", "{url}"], ["migrate", "{url}"],
    # not offered through a server yet: said so in one line, not an internal error
    ["ingest-raws", "{url}", "{dir}", "--run", "u/bob/raw"], ["define-visits", "{url}"],
    ["register-skymap", "{url}", "tiny"], ["write-curated-calibrations", "{url}", "{dir}"],
    ["watch", "{url}", "{dir}", "--pipeline", "p.yaml", "-i", "raw", "-o", "u/bob/out"],
    ["qgraph", "p.yaml", "-b", "{url}", "-i", "raw"], ["run", "p.yaml", "-b", "{url}", "-i", "raw", "-o", "u/bob/out"],
]


@pytest.mark.parametrize("command", ADMINISTRATION, ids=lambda c: c[0] if c[1].startswith("{") or c[0] in ("qgraph", "run") else " ".join(c[:2]))
def test_administration_of_the_repository_itself_refuses_a_url_in_one_line(command, tmp_path):
    """Users, rules, the configuration and the schema are administered with the path on the server's
    machine (raws, visits, sky maps and pipeline runs too, for now): given a URL, each command says so
    in one line, before any request is made (no server runs)."""
    url = "http://127.0.0.1:9/repo"  # the discard port: nothing answers there
    result = CliRunner().invoke(cli, [part.format(url=url, dir=tmp_path) for part in command])
    assert result.exit_code != 0
    lines = result.output.strip().splitlines()
    assert len(lines) == 1 and "on the server's machine, with the repository's path" in lines[0], result.output
    assert "bug in skybutler" not in result.output and result.exception is None or isinstance(result.exception,
                                                                                             SystemExit)
