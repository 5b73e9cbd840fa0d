"""``skybutler watch URL DIR``: raws landing in a directory on the client are uploaded to a server
(a real uvicorn on loopback), the server defines the visits, and the pipeline runs on the client
through the remote butler.  The oracle is a local watcher over the same raws on a twin
repository: the same raws (down to their dataset IDs), visits and products."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from server_helpers import running_server
from skybutler import Butler
from skybutler.access import Access
from skybutler.cli.main import cli
from skybutler.errors import SkybutlerError
from skybutler.ingest import register_instrument
from skybutler.ingest.watcher import Watcher
from skybutler.pipeline import Pipeline
from test_watch import RAWS, pipeline_file, wait_for

pytest.importorskip("fastapi")
pytest.importorskip("watchdog")


@pytest.fixture(scope="module")
def raws(tmp_path_factory) -> list[Path]:
    from skybutler.instruments import simulate_night

    out = tmp_path_factory.mktemp("raws")
    return sorted(simulate_night(out, n_science=2, bands=("r",), n_bias=0, n_flat=0, size=32))


@pytest.fixture
def served(make_butler):
    """A served repository with SimCam registered, an observer who may write the raw RUN and their
    own area, and an empty twin with SimCam registered."""
    served_butler, twin = make_butler("served"), make_butler("twin")
    for b in (served_butler, twin):
        register_instrument(b, "SimCam")
    access = Access(served_butler.registry.access)
    access.add_user("obs")
    access.grant("user", "obs", "SimCam/raw/*", "write")
    access.grant("user", "obs", "*", "read")
    token = access.create_token("obs")
    with running_server(served_butler.root, access_recheck_seconds=0) as url:
        yield served_butler, url, token, twin


def _outcome(butler: Butler, output: str) -> dict:
    """What a watcher leaves: the raws (ID and data ID), the visits, and the products' values."""
    out = {"raws": sorted((str(r.id), str(sorted(r.data_id.required.items())))
                          for r in butler.query_datasets("raw", collections=[RAWS], find_first=False)),
           "visits": sorted(r["visit"] for r in butler.registry.dimensions.fetch_all("visit"))}
    for name in ("rawStats", "exposureStats"):
        out[name] = sorted((str(sorted(r.data_id.required.items())), str(butler.get(r)))
                           for r in butler.query_datasets(name, collections=[output]))
    return out


def _finished(butler: Butler, n_raws: int) -> bool:
    """Whether the output chain holds a product of every raw and of both exposures."""
    try:
        return len(list(butler.query_datasets("rawStats", collections=["u/obs/proc"]))) == n_raws \
            and len(list(butler.query_datasets("exposureStats", collections=["u/obs/proc"]))) == 2
    except SkybutlerError:  # no output chain yet, or an empty one
        return False


def test_watch_on_a_url_matches_a_local_watch(served, raws, tmp_path):
    served_butler, url, token, twin = served
    pipeline = pipeline_file(tmp_path)
    drop, local_drop = tmp_path / "drop", tmp_path / "local_drop"
    drop.mkdir()
    local_drop.mkdir()
    log = open(tmp_path / "watch.log", "ab")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p), "SKYBUTLER_TOKEN": token}
    proc = subprocess.Popen([sys.executable, "-m", "skybutler.cli", "watch", url, str(drop), "--pipeline", pipeline,
                             "-i", RAWS, "-o", "u/obs/proc", "--every", "0.3s", "--settle", "0.2s"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)
    try:
        for path in raws:
            shutil.copy(path, drop / path.name)

        wait_for(lambda: _finished(served_butler, len(raws)), timeout=120, step=0.5)
    finally:
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(30)
        log.close()
    text = (tmp_path / "watch.log").read_text()
    assert code == 0, text
    assert "received SIGTERM" in text and text.rstrip().endswith("stopped") and "Traceback" not in text
    assert [p.name for p in drop.iterdir()] == [".skybutler"]  # every raw moved up; only the watch lock stays

    lines: list[str] = []
    watcher = Watcher(twin, local_drop, Pipeline.from_yaml(pipeline), [RAWS], "u/obs/proc", every=0.2,
                      settle=0.2, say=lines.append)
    thread = threading.Thread(target=watcher.run)
    thread.start()
    try:
        for path in raws:
            shutil.copy(path, local_drop / path.name)
        wait_for(lambda: _finished(twin, len(raws)), timeout=120)
    finally:
        watcher.stop_event.set()
        thread.join(30)
    assert _outcome(served_butler, "u/obs/proc") == _outcome(twin, "u/obs/proc")


def test_what_a_watch_through_a_server_cannot_do_is_refused_in_one_line(served, tmp_path, monkeypatch):
    _, url, token, _ = served
    monkeypatch.setenv("SKYBUTLER_TOKEN", token)
    pipeline = pipeline_file(tmp_path)
    for place, transfer, says in ((str(tmp_path), "symlink", "through a server raws are uploaded"),
                                  ("s3://bucket/incoming", "move", "is not offered: its objects are staged")):
        result = CliRunner().invoke(cli, ["watch", url, place, "--pipeline", pipeline, "-i", RAWS, "-o", "u/obs/p",
                                          "--transfer", transfer])
        lines = result.output.strip().splitlines()
        assert result.exit_code == 1 and len(lines) == 1 and says in lines[0], result.output
    assert not (tmp_path / ".skybutler").exists()
