"""Worker processes die with their parent: no orphan is left writing after a kill -9.

Each test runs the parent in a subprocess whose workers write their PIDs to a directory
and then block; the test kills the parent with SIGKILL (reaping it, as a shell would)
and checks, with the operating system as the oracle, that every worker is gone.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from pipeline_helpers import put_metrics

#: A worker task that records its PID and blocks (a long header read, a long quantum).
HANG = textwrap.dedent("""
    import os, time
    def hang(*args, **kwargs):
        with open(os.path.join(os.environ["PID_DIR"], str(os.getpid())), "w"):
            pass
        time.sleep(300)
""")


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _kill_parent_and_check(tmp_path: Path, script: str, workers: int) -> None:
    pids = tmp_path / "pids"
    pids.mkdir()
    (tmp_path / "hang_helpers.py").write_text(HANG)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), *sys.path]), "PID_DIR": str(pids)}
    parent = subprocess.Popen([sys.executable, "-c", textwrap.dedent(script), str(tmp_path)], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 90
        while len(list(pids.iterdir())) < workers:
            if parent.poll() is not None:
                pytest.fail(f"the parent ended early: {parent.stdout.read().decode()}")
            assert time.monotonic() < deadline, "the workers did not start"
            time.sleep(0.05)
    except BaseException:
        parent.kill()
        raise
    started = [int(p.name) for p in pids.iterdir()]
    assert parent.pid not in started
    parent.send_signal(signal.SIGKILL)
    parent.wait()
    deadline = time.monotonic() + 5
    while (alive := [p for p in started if _running(p)]) and time.monotonic() < deadline:
        time.sleep(0.1)
    for pid in alive:  # leave no orphan behind even when the test fails
        os.kill(pid, signal.SIGKILL)
    assert not alive, f"workers {alive} outlived their killed parent"


@pytest.mark.parametrize("method", ["fork", "forkserver", "spawn"])
def test_pool_workers_die_with_their_killed_parent(tmp_path, method):
    _kill_parent_and_check(tmp_path, f"""
        import sys
        from skybutler.process_pools import process_pool
        from hang_helpers import hang
        pool = process_pool(2, {method!r})
        futures = [pool.submit(hang) for _ in range(2)]
        futures[0].result()
    """, workers=2)


def test_ingest_raws_readers_die_with_their_killed_parent(tmp_path):
    _kill_parent_and_check(tmp_path, """
        import pathlib, sys
        from skybutler import Butler
        from skybutler.ingest import raws
        from hang_helpers import hang
        raws.read_raw_metadata = hang  # header reading that blocks
        files = pathlib.Path(sys.argv[1]) / "raws"
        files.mkdir()
        for n in range(8):
            (files / f"raw_{n}.fits").write_bytes(b"")
        raws.ingest_raws(Butler.create(pathlib.Path(sys.argv[1]) / "repo"), [files], processes=2)
    """, workers=2)


SLEEPY_TASK = textwrap.dedent("""
    from skybutler.pipeline.testing import ScaleTask
    from hang_helpers import hang

    class SleepyTask(ScaleTask):
        def run(self, metrics):
            hang()
""")


@pytest.mark.slow
@pytest.mark.parametrize("executor", ["pool", "dask"])
def test_executor_workers_die_with_their_killed_parent(butler, tmp_path, executor):
    if executor == "dask":
        pytest.importorskip("distributed")
    put_metrics(butler)
    (tmp_path / "sleepy_tasks.py").write_text(SLEEPY_TASK)
    _kill_parent_and_check(tmp_path, f"""
        from skybutler import Butler
        from skybutler.execution import run_pipeline
        from skybutler.pipeline import Pipeline
        from sleepy_tasks import SleepyTask
        pipeline = Pipeline()
        pipeline.add_task("a", SleepyTask)
        run_pipeline(Butler({str(butler.root)!r}), pipeline, ["run/a"], "out", executor={executor!r}, jobs=2)
    """, workers=2)
