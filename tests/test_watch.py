"""The watcher: raws ingested as they land (never a partly written one), failing files left in
place, one watcher per repository, and kill -9 at any moment resumed without duplicates or
lost inputs."""

from __future__ import annotations

import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

import pytest

from conftest import _MADE_NAMES, S3_BUCKET, S3_ENDPOINT
from pipeline_helpers import write_pipeline
from skybutler import Butler
from skybutler.errors import SkybutlerError
from skybutler.ingest.watcher import Watcher, WatcherLockedError
from skybutler.instruments import simulate_night
from skybutler.pipeline import Pipeline

TASKS = "skybutler.pipeline.testing"
RAWS = "SimCam/raw/all"


@pytest.fixture(scope="module")
def raws(tmp_path_factory) -> list[Path]:
    """Two science exposures of SimCam's 9 detectors, small."""
    out = tmp_path_factory.mktemp("raws")
    return sorted(simulate_night(out, n_science=2, bands=("r",), n_bias=0, n_flat=0, size=64))


def pipeline_file(tmp_path: Path) -> str:
    return write_pipeline(tmp_path / "watch.yaml", {"stats": f"{TASKS}.RawStatsTask",
                                                    "summary": f"{TASKS}.ExposureStatsTask"})


def wait_for(condition, timeout: float = 30.0, step: float = 0.1) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(step)


def products(root: Path, name: str) -> set[tuple]:
    with Butler(root) as butler:
        if not butler.collections.exists("proc"):
            return set()
        return {r.data_id.required_values for r in butler.query_datasets(name, collections="proc")}


@pytest.fixture
def watching(tmp_path):
    """A watcher over an empty drop directory, running in a thread."""
    root, drop = tmp_path / "repo", tmp_path / "drop"
    drop.mkdir()
    Butler.create(root).close()
    butler = Butler(root)
    lines: list[str] = []
    watcher = Watcher(butler, drop, Pipeline.from_yaml(pipeline_file(tmp_path)), [RAWS], "proc", every=0.2,
                      settle=0.3, say=lines.append)
    thread = threading.Thread(target=watcher.run)
    thread.start()
    wait_for(lambda: any("watching" in line for line in lines))
    yield root, drop, watcher, lines
    watcher.stop_event.set()
    thread.join(30)
    butler.close()


def test_a_partly_written_file_waits_a_bad_file_stays_and_complete_ones_are_processed(watching, raws):
    root, drop, watcher, lines = watching
    half = raws[0].read_bytes()
    target = drop / raws[0].name
    with open(target, "wb") as stream:  # a copy still being written: its writer pauses, file open
        stream.write(half[: len(half) // 2])
        stream.flush()
        time.sleep(1.5)  # several cycles and settle times
        assert target.exists() and products(root, "rawStats") == set()
        stream.write(half[len(half) // 2:])
    (drop / "junk.fits").write_bytes(b"not a FITS file at all" * 10)
    wait_for(lambda: not target.exists() and len(products(root, "rawStats")) == 1)
    wait_for(lambda: any("FAILED" in line and "junk.fits" in line for line in lines))
    assert (drop / "junk.fits").exists()  # left in place, reported once while unchanged
    time.sleep(0.8)
    assert sum("junk.fits" in line for line in lines) == 1
    for path in raws[1:]:  # the rest arrive at once
        shutil.copy(path, drop / path.name)
    wait_for(lambda: len(products(root, "rawStats")) == len(raws) and len(products(root, "exposureStats")) == 2)
    assert sorted(p.name for p in drop.iterdir()) == ["junk.fits"]
    assert any("unchanged quanta kept" in line for line in lines)  # later cycles redo only what is new


def test_a_second_watcher_is_refused_with_a_clear_message(watching, tmp_path):
    root, drop, watcher, _ = watching
    with Butler(root) as other:
        second = Watcher(other, drop, watcher.pipeline, [RAWS], "proc")
        with pytest.raises(WatcherLockedError, match=rf"another watcher already runs on .*pid {os.getpid()} since "
                                                     ".* watching .*drop.*one watcher per repository"):
            second.run()


def test_the_cli_refuses_a_second_watcher_in_one_line(watching, tmp_path):
    from click.testing import CliRunner

    from skybutler.cli.main import cli

    root, drop, _, _ = watching
    result = CliRunner().invoke(cli, ["watch", str(root), str(drop), "--pipeline", pipeline_file(tmp_path), "-i", RAWS,
                                      "-o", "proc"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "error: another watcher already runs on" in result.output and "one watcher per repository" in result.output
    result = CliRunner().invoke(cli, ["watch", str(root), str(drop), "--pipeline", "p.yaml", "-i", RAWS, "-o", "proc",
                                      "--every", "soon"])
    assert result.exit_code == 2 and "'soon' is not a duration" in result.output


def _start(root: Path, drop: Path, pipeline: str, log) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in sys.path if p)}
    return subprocess.Popen([sys.executable, "-m", "skybutler.cli", "watch", str(root), str(drop), "--pipeline",
                             pipeline, "-i", RAWS, "-o", "proc", "--every", "0.3s", "--settle", "0.2s"],
                            stdout=log, stderr=subprocess.STDOUT, env=env)


@pytest.mark.slow
def test_kill_9_at_random_moments_resumes_without_duplicates_or_lost_inputs(tmp_path, raws):
    root, drop = tmp_path / "repo", tmp_path / "drop"
    drop.mkdir()
    Butler.create(root).close()
    pipeline = pipeline_file(tmp_path)
    rng = random.Random(21)
    pending = list(raws)
    rng.shuffle(pending)
    log = open(tmp_path / "watch.log", "ab")
    for _ in range(2):
        proc = _start(root, drop, pipeline, log)
        for path in pending[:7]:  # a few land, some through a rename, some written in place
            if rng.random() < 0.5:
                shutil.copy(path, drop / ("." + path.name))
                os.rename(drop / ("." + path.name), drop / path.name)
            else:
                shutil.copy(path, drop / path.name)
        pending = pending[7:]
        time.sleep(rng.uniform(0.5, 2.5))
        proc.send_signal(signal.SIGKILL)
        proc.wait()
    proc = _start(root, drop, pipeline, log)
    for path in pending:
        shutil.copy(path, drop / path.name)
    wait_for(lambda: len(products(root, "rawStats")) == len(raws) and len(products(root, "exposureStats")) == 2,
             timeout=120, step=0.5)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(30) == 0
    log.close()
    text = (tmp_path / "watch.log").read_text()
    assert "received SIGTERM: stopping after the current step" in text and text.rstrip().endswith("stopped")
    assert list(drop.iterdir()) == []  # every file ingested, none lost
    with Butler(root) as butler:
        assert len(list(butler.query_datasets("raw", collections=RAWS))) == len(raws)
        assert len(list(butler.query_dimension_records("visit"))) == 2  # defined even if a kill came between
        done: dict[tuple, int] = {}
        for q in butler.provenance.quanta(task="stats", status="succeeded"):
            key = (q.data_id["exposure"], q.data_id["detector"])
            done[key] = done.get(key, 0) + 1
        assert len(done) == len(raws) and set(done.values()) == {1}  # each raw processed exactly once
        for ref in butler.query_datasets("exposureStats", collections="proc"):
            assert butler.get(ref)["detectors"] == list(range(9))


@pytest.mark.skipif(not S3_ENDPOINT, reason="needs an S3 endpoint (SKYBUTLER_TEST_S3_ENDPOINT)")
def test_an_s3_prefix_is_polled_and_raws_ingested_moved_out_and_failures_left(tmp_path, raws):
    """Objects appear whole in S3, so each listed raw is fetched, ingested and deleted from the
    prefix; a bad one stays and is reported once while unchanged; other objects are ignored."""
    import fsspec

    name = f"t_{uuid.uuid4().hex[:12]}"
    _MADE_NAMES.append(name)  # removed at the end of the session
    prefix = f"{S3_BUCKET}/{name}/incoming"
    fs = fsspec.filesystem("s3")
    fs.pipe_file(f"{prefix}/README.txt", b"not a raw")
    fs.put_file(str(raws[0]), f"{prefix}/night1/{raws[0].name}")
    fs.pipe_file(f"{prefix}/junk.fits", b"not a FITS file at all" * 10)
    root = tmp_path / "repo"
    Butler.create(root).close()
    butler = Butler(root)
    lines: list[str] = []
    watcher = Watcher(butler, f"s3://{prefix}", Pipeline.from_yaml(pipeline_file(tmp_path)), [RAWS], "proc",
                      every=0.2, say=lines.append)
    thread = threading.Thread(target=watcher.run)
    thread.start()
    try:
        wait_for(lambda: len(products(root, "rawStats")) == 1)
        wait_for(lambda: not fs.exists(f"{prefix}/night1/{raws[0].name}"))
        for path in raws[1:3]:
            fs.put_file(str(path), f"{prefix}/{path.name}")
        wait_for(lambda: len(products(root, "rawStats")) == 3)
        time.sleep(0.6)  # more cycles: the junk is not tried again while unchanged
    finally:
        watcher.stop_event.set()
        thread.join(30)
        butler.close()
    fs.invalidate_cache()
    assert sorted(p.rsplit("/", 1)[1] for p in fs.find(prefix)) == ["README.txt", "junk.fits"]
    assert sum("FAILED" in line and f"s3://{prefix}/junk.fits" in line for line in lines) == 1
    assert not any(watcher.remote.staging.iterdir())  # nothing left in the staging directory
    with pytest.raises(SkybutlerError, match="transfer is move .* or copy .*not symlink"):
        Watcher(Butler(root), f"s3://{prefix}", watcher.pipeline, [RAWS], "proc", transfer="symlink")
    from click.testing import CliRunner

    from skybutler.cli.main import cli

    result = CliRunner().invoke(cli, ["watch", str(root), "s3://no-such-bucket-skybutler/x", "--pipeline",
                                      pipeline_file(tmp_path), "-i", RAWS, "-o", "proc"])
    assert result.exit_code == 1 and "cannot watch s3://no-such-bucket-skybutler/x" in result.output
    assert "Traceback" not in result.output


@pytest.mark.skipif(not S3_ENDPOINT, reason="needs an S3 endpoint (SKYBUTLER_TEST_S3_ENDPOINT)")
def test_s3_objects_copied_in_are_remembered_across_restarts(tmp_path, raws):
    """With transfer copy the objects stay in the store; a restarted watcher neither fetches nor
    ingests them again (a state record in the repository), takes a new object, and forgets
    one deleted from the store."""
    import json

    import fsspec

    name = f"t_{uuid.uuid4().hex[:12]}"
    _MADE_NAMES.append(name)  # removed at the end of the session
    prefix = f"{S3_BUCKET}/{name}/incoming"
    fs = fsspec.filesystem("s3")
    for path in raws[:2]:
        fs.put_file(str(path), f"{prefix}/{path.name}")
    root = tmp_path / "repo"
    Butler.create(root).close()
    pipeline = Pipeline.from_yaml(pipeline_file(tmp_path))

    def start() -> tuple[Watcher, list[str]]:
        watcher = Watcher(Butler(root), f"s3://{prefix}", pipeline, [RAWS], "proc", transfer="copy")
        fetched: list[str] = []
        fetch = watcher.remote.fetch
        watcher.remote.fetch = lambda key: fetched.append(key) or fetch(key)
        return watcher, fetched

    first, fetched = start()
    report = first.cycle()
    assert len(fetched) == 2 and report.ingested == 2 and report.run.ok
    first.butler.close()
    fs.invalidate_cache()
    assert len(fs.find(prefix)) == 2  # copied, not moved
    second, fetched = start()  # a restart: nothing fetched, nothing ingested, nothing run
    report = second.cycle()
    assert fetched == [] and (report.ingested, report.already) == (0, 0) and report.run.total == 0
    fs.put_file(str(raws[2]), f"{prefix}/{raws[2].name}")
    report = second.cycle()
    assert fetched == [f"{prefix}/{raws[2].name}"] and report.ingested == 1
    fs.rm(f"{prefix}/{raws[0].name}")
    second.cycle()
    (record,) = (root / ".skybutler" / "watch-copied").glob("*.json")
    assert sorted(json.loads(record.read_text())["objects"]) == sorted(f"{prefix}/{p.name}" for p in raws[1:3])
    second.butler.close()
    record.write_text("{not json")
    with Butler(root) as butler, pytest.raises(SkybutlerError, match="cannot be read .* delete it"):
        Watcher(butler, f"s3://{prefix}", pipeline, [RAWS], "proc", transfer="copy")
