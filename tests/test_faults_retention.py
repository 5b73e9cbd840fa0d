"""Fault injection on the retention write paths: purge, cold move, staging, recompute write-back.

Each case runs the operation in a child process and kills it with SIGKILL at a step
boundary (a hook wrapped around one call: before it, after it, or part-way through a
removal) or at a random instant, then checks what a user relies on: the repository
opens, no dataset row lacks its file, every dataset reads back with its original value
(staged or recomputed as needed), and ``verify`` is clean after ``verify --fix``.
Concurrent readers of one cold or purged dataset both get it, and it is made once.
"""

from __future__ import annotations

import io
import json
import os
import random
import subprocess
import sys
import textwrap
import threading
import time
import traceback

import pytest
from click.testing import CliRunner

from conftest import built_repository, template_repository
from pipeline_helpers import run_noisy_scale, run_scale_and_summary
from skybutler import Butler
from skybutler.cli.main import cli
from skybutler.cli.maintenance_commands import verify_command
from skybutler.errors import SkybutlerError
from skybutler.formats import get_formatter
from skybutler.retention import ColdTierConfig
from skybutler.retention.cold_tier import cold_tier
from skybutler.verify import plan_repair, repair, verify

COLLECTIONS = ["out", "run/a"]

#: The child: install the kill hook named by argv[2], then run the operation argv[3] on argv[4:] (dataset IDs).
CHILD = textwrap.dedent("""
    import os, signal, sys, threading, uuid
    from skybutler import Butler
    from skybutler.datastore.datastore import FileDatastore
    from skybutler.registry.dataset_state_store import DatasetStateStore
    from skybutler.retention.cold_tier import ColdTier

    root, hook, operation, ids = sys.argv[1], sys.argv[2], sys.argv[3], [uuid.UUID(i) for i in sys.argv[4:]]

    def die():
        os.kill(os.getpid(), signal.SIGKILL)

    def wrap(cls, name, when, nth=1):
        original, calls = getattr(cls, name), [0]
        def hooked(*args, **kwargs):
            calls[0] += 1
            if when == "part" and calls[0] == nth:  # part of a removal done, then killed
                items = list(args[1])
                original(args[0], items[:len(items) // 2])
                die()
            if when == "before" and calls[0] == nth:
                die()
            result = original(*args, **kwargs)
            if when == "after" and calls[0] == nth:
                die()
            return result
        setattr(cls, name, hooked)

    classes = {"datastore": FileDatastore, "states": DatasetStateStore, "tier": ColdTier}
    if hook.startswith("random:"):
        threading.Timer(float(hook.split(":")[1]), die).start()
    elif hook.startswith("crash:"):  # a named step boundary (skybutler.faults)
        os.environ["SKYBUTLER_CRASH_AT"] = hook[len("crash:"):]
    else:
        when, owner, name, nth = hook.split(":")
        wrap(classes[owner], name, when, int(nth))
    butler = Butler(root, collections=["out", "run/a"])
    if operation == "purge":
        butler.retention.purge(ids)
    elif operation == "cold":
        butler.retention.move_to_cold(ids)
    elif operation == "stage":
        butler.retention.stage(ids)
    elif operation == "recompute":
        butler.retention.recompute(ids)
    elif operation == "recompute-pool":
        butler.retention.recompute(ids, executor="pool", jobs=2)
    elif operation == "get":
        for i in ids:
            butler.get(butler.registry.refs_by_id([i])[0], recompute=True)
""")


@pytest.fixture(scope="module")
def sqlite_template(tmp_path_factory):
    """``repo``'s repository on SQLite before its cold tier, made once per module."""
    return template_repository(tmp_path_factory, run_scale_and_summary)


@pytest.fixture
def repo(request, stack, tmp_path):
    """scale (a) -> visit summary (b) over visits 1 and 2, with a cold tier; the originals by ID."""
    butler, _ = built_repository(request, stack, "sqlite_template", run_scale_and_summary)
    butler.config.retention.cold_tier = ColdTierConfig(uri=str(tmp_path / "tape"), staging_latency=0.2)
    butler.config.save(butler.root)
    butler.close()
    butler = Butler(butler.root, collections=COLLECTIONS)
    refs = [*butler.query_datasets("metricsA", collections="out"), *butler.query_datasets("visitSummary",
                                                                                           collections="out")]
    butler.originals = {r.id: butler.get(r) for r in refs}
    butler.targets = refs
    return butler


def _inputs(butler: Butler) -> list:
    """The pipeline's inputs: the metrics of RUN run/a."""
    return butler.registry.refs_by_id([r.id for r in butler.query_datasets("metrics", collections="run/a")])


def _watched_inputs(repo: Butler) -> list:
    """The pipeline's inputs, added to what ``_check`` reads back (``repo.targets``) with their values."""
    raws = _inputs(repo)
    repo.originals.update({r.id: repo.get(r) for r in raws})
    repo.targets += raws
    return raws


#: On PostgreSQL + S3 each retention write path runs at a representative few kill points (every one
#: runs on SQLite: the write paths are the same code, and each case there costs a schema, a pipeline
#: run and S3 round trips).  By test: which parameters run there.
OTHER_STACK_CASES = {
    "test_purge_killed": lambda p: p["hook"] == "after:states:set_purged:1",
    "test_cold_move_killed": lambda p: p["hook"] in ("after:tier:write:1", "after:states:set_cold:1"),
    "test_staging_killed": lambda p: p["hook"] == "after:datastore:write_or_adopt:1",
    "test_recompute_write_back_killed": lambda p: (p["hook"], p["operation"]) == ("after:datastore:write_or_adopt:1",
                                                                                 "get"),
    "test_recompute_through_cold_inputs_killed_at_random": lambda p: p["seed"] == 0,
    "test_pool_recompute_killed_at_random": lambda p: p["seed"] == 0,
    "test_a_killed_staging_is_settled_by_the_next_open": lambda p: p["hook"] == "crash:registry-committed",
    "test_a_killed_write_back_is_settled_by_the_next_open": lambda p: p["hook"] == "crash:file-placed:2",
}


@pytest.fixture(autouse=True)
def _few_kill_points_on_other_stacks(request):
    """Skip (before any repository is made) the cases ``OTHER_STACK_CASES`` leaves to SQLite."""
    callspec = getattr(request.node, "callspec", None)
    wanted = OTHER_STACK_CASES.get(request.node.originalname)
    if callspec is None or wanted is None or callspec.params.get("stack", "sqlite") == "sqlite":
        return
    if not wanted(callspec.params):
        pytest.skip("a representative few kill points on this stack; this one runs on SQLite")


def _forked(code: str, *args: object) -> int:
    """Run the script ``code`` with ``args`` in a forked child (skybutler already imported: no
    interpreter start-up, a second of CPU a case); its exit status, or minus the signal that
    ended it.  A failing child's traceback is in the test's captured stderr."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        status = 0
        try:
            sys.argv = ["-c", *map(str, args)]
            exec(code, {"__name__": "__main__"})
        except SystemExit as err:
            status = err.code if isinstance(err.code, int) else 1
        except BaseException:
            traceback.print_exc()
            status = 3
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(status)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _spawned(code: str, *args: object) -> int:
    """Run the script ``code`` with ``args`` in a new interpreter; its exit status, or minus the
    signal that ended it (a failing child's traceback is in the test's captured stderr)."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    child = subprocess.run([sys.executable, "-c", code, *map(str, args)], env=env, timeout=300, check=False)
    return child.returncode


def _run_child(butler: Butler, hook: str, operation: str, ids) -> int:
    # A process pool's child starts in a new interpreter: forked, it would inherit the test
    # process's multiprocessing forkserver, which it cannot wait for (ECHILD when the pool starts).
    run = _spawned if operation == "recompute-pool" else _forked
    code = run(CHILD, butler.root, hook, operation, *ids)
    assert code in (0, -9), f"the child failed on its own (exit {code}): see its traceback in the captured stderr"
    return code


def _repair(root) -> None:
    args = ["verify", str(root), "--fix"] + (["--yes"] if any(p.name == "yes" for p in verify_command.params)
                                            else [])
    CliRunner().invoke(cli, args)
    result = CliRunner().invoke(cli, ["verify", str(root), "--json"])
    assert result.exit_code == 0, result.output


def _check(butler: Butler, fix_first: bool = False) -> None:
    """Opens; no row lacks its file; every dataset reads back as it was (before ``verify --fix``,
    adopting what a killed writer left, or after it); verify clean after --fix, and nothing went
    to the quarantine (everything a killed retention write leaves is skybutler's own)."""
    root, originals, targets = butler.root, butler.originals, butler.targets
    butler.close()
    with Butler(root, collections=COLLECTIONS) as reopened:
        report = verify(reopened)
        assert not report.missing_files, report.missing_files
        assert not report.orphan_files, report.orphan_files  # none a stranger to skybutler
    if fix_first:
        _repair(root)
    with Butler(root, collections=COLLECTIONS) as reopened:
        for ref in targets:
            assert reopened.get(reopened.registry.refs_by_id([ref.id])[0], recompute=True) == originals[ref.id]
    _repair(root)
    with Butler(root, collections=COLLECTIONS) as reopened:
        for ref in targets:
            assert reopened.get(reopened.registry.refs_by_id([ref.id])[0], recompute=True) == originals[ref.id]
        assert verify(reopened).consistent
    quarantine = root / ".skybutler" / "quarantine"
    assert not quarantine.exists() or not any(quarantine.rglob("*")), list(quarantine.rglob("*"))


PURGE_HOOKS = ["before:states:set_purged:1", "after:states:set_purged:1", "part:datastore:remove:1",
               "before:datastore:remove:1"]


@pytest.mark.slow
@pytest.mark.parametrize("hook", PURGE_HOOKS)
def test_purge_killed(repo, hook):
    assert _run_child(repo, hook, "purge", [r.id for r in repo.targets]) == -9
    _check(repo, fix_first=True)


COLD_HOOKS = ["after:tier:write:1", "after:tier:write:3", "before:states:set_cold:1", "after:states:set_cold:1",
              "part:datastore:remove:1"]


@pytest.mark.slow
@pytest.mark.parametrize("hook", COLD_HOOKS)
def test_cold_move_killed(repo, hook):
    raws = _watched_inputs(repo)
    assert _run_child(repo, hook, "cold", [r.id for r in raws]) == -9
    _check(repo, fix_first=True)


def _kill_a_staging(repo: Butler, hook: str) -> None:
    """The pipeline's inputs (watched) moved to the cold tier, then their staging killed at ``hook``."""
    raws = _watched_inputs(repo)
    repo.retention.move_to_cold(raws)
    assert _run_child(repo, hook, "stage", [r.id for r in raws]) == -9


STAGE_HOOKS = ["after:datastore:write_or_adopt:1", "after:datastore:write_or_adopt:2",
               "before:states:set_stored:1", "after:states:set_stored:1", "part:tier:remove:1"]


@pytest.mark.slow
@pytest.mark.parametrize("hook", STAGE_HOOKS)
def test_staging_killed(repo, hook):
    _kill_a_staging(repo, hook)
    _check(repo, fix_first=True)


RECOMPUTE_HOOKS = ["after:datastore:write_or_adopt:1", "after:datastore:write_or_adopt:5",
                   "before:states:set_stored:1", "after:states:set_stored:1"]


@pytest.mark.slow
@pytest.mark.parametrize("hook", RECOMPUTE_HOOKS)
@pytest.mark.parametrize("operation", ["recompute", "get"])
def test_recompute_write_back_killed(repo, hook, operation):
    repo.retention.purge(repo.targets)
    assert _run_child(repo, hook, operation, [r.id for r in repo.targets]) == -9
    _check(repo)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(4))
def test_recompute_through_cold_inputs_killed_at_random(repo, seed):
    raws = _watched_inputs(repo)
    repo.retention.purge(repo.targets[:len(repo.targets) - len(raws)])
    repo.retention.move_to_cold(raws)
    delay = random.Random(seed).uniform(0.05, 1.5)  # staging takes 0.2 s, the replays about as long
    _run_child(repo, f"random:{delay}", "recompute", [r.id for r in repo.targets])
    _check(repo)


def _place(butler: Butler, path: str, data: bytes) -> None:
    full = butler.datastore.full_path(path)
    butler.datastore.fs.makedirs(os.path.dirname(full), exist_ok=True)
    butler.datastore.fs.pipe_file(full, data)


@pytest.mark.slow
@pytest.mark.parametrize("seed", range(3))
def test_pool_recompute_killed_at_random(repo, seed):
    """The parent of a pool recompute killed: its workers die with it, mid-write or not."""
    repo.retention.purge(repo.targets)
    delay = random.Random(seed).uniform(0.5, 6.0)  # the pool starts, then workers replay and write back
    _run_child(repo, f"random:{delay}", "recompute-pool", [r.id for r in repo.targets])
    _check(repo)


def test_a_file_left_by_a_killed_write_back_is_adopted(repo):
    """The file is in place, its row is not: the next get completes instead of refusing."""
    summary = next(r for r in repo.targets if r.dataset_type.name == "visitSummary")
    repo.retention.purge([summary])
    recorded = repo.retention.state(summary).artifact
    buffer = io.BytesIO()
    get_formatter(recorded.formatter).write(repo.originals[summary.id], buffer)
    _place(repo, recorded.path, buffer.getvalue())  # what the killed writer published
    assert repo.get(summary, recompute=True) == repo.originals[summary.id]
    assert repo.retention.state(summary).state == "stored" and verify(repo).consistent


def test_a_foreign_file_at_the_path_is_never_overwritten(repo):
    summary = next(r for r in repo.targets if r.dataset_type.name == "visitSummary")
    repo.retention.purge([summary])
    path = repo.datastore.full_path(repo.retention.state(summary).artifact.path)
    _place(repo, repo.retention.state(summary).artifact.path, b'{"not": "this dataset"}')
    with pytest.raises(SkybutlerError, match="refusing to overwrite existing file .* not this dataset's content"):
        repo.get(summary, recompute=True)
    assert repo.datastore.fs.cat_file(path) == b'{"not": "this dataset"}'
    assert repo.retention.state(summary).state == "purged-recomputable"


@pytest.mark.parametrize("kind", ["cold", "purged"])
def test_two_readers_of_one_dataset_both_get_it_and_it_is_made_once(repo, kind):
    summaries = [r for r in repo.targets if r.dataset_type.name == "visitSummary"]
    if kind == "cold":
        repo.retention.move_to_cold(summaries)
    else:
        repo.retention.purge(summaries)
    root, told, results, errors = repo.root, [], [], []
    barrier, other_waits = threading.Barrier(2), threading.Event()
    work = "staging 1 dataset" if kind == "cold" else "recomputing 1 dataset"

    def on_wait(message: str, seconds: float) -> None:
        told.append(message)
        if message.startswith("another writer is"):
            other_waits.set()
        elif message.startswith(work):  # the one doing the work holds its lock until the other waits for it
            other_waits.wait(30)

    def reader() -> None:
        try:
            with Butler(root, collections=COLLECTIONS, recompute=True, on_wait=on_wait) as b:
                barrier.wait()
                results.append(b.get("visitSummary", instrument="Cam", visit=1))
        except Exception as err:  # noqa: BLE001 - reported below
            errors.append(err)

    threads = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    assert results == [repo.originals[summaries[0].id]] * 2
    assert sum(m.startswith(work) for m in told) == 1, told  # one did the work
    assert sum(m.startswith("another writer is") for m in told) == 1, told  # the other waited for it
    assert verify(repo).consistent


def test_verify_covers_the_cold_tier(repo):
    raws = _inputs(repo)
    repo.retention.move_to_cold(raws)
    report = verify(repo)
    assert report.consistent and report.cold.copies == len(raws)
    tier = cold_tier(repo)
    gone, damaged = (repo.retention.state(r).artifact for r in raws[:2])
    tier.fs.rm_file(tier.full_path(gone.path))  # deleted behind the butler's back
    data = tier.read(damaged.path)
    tier.write(damaged.path, data[:-2] + (b"0}" if data[-2:] != b"0}" else b"1}"))  # same size, other bytes
    report = verify(repo, check_sizes=True)
    assert report.cold.missing == [f"{tier.full_path(gone.path)} (dataset {raws[0].id})"] and not report.consistent
    assert not report.cold.mismatches  # the size is the same...
    assert verify(repo, check_checksums=True).cold.mismatches == [f"{tier.full_path(damaged.path)} (checksum)"]
    result = CliRunner().invoke(cli, ["verify", str(repo.root)])
    assert result.exit_code == 1 and "cold copy missing" in result.output


def test_verify_fix_removes_only_cold_files_skybutler_abandoned(repo):
    raws = _inputs(repo)
    repo.retention.move_to_cold(raws[:1])
    tier = cold_tier(repo)
    hot = raws[1].artifact  # a killed move copied it, then died before recording the copy
    tier.write(hot.path, repo.datastore.fs.cat_file(repo.datastore.full_path(hot.path)))
    tier.write("notes/mine.txt", b"a user's file")
    tier.write(hot.path + ".tmp-" + "ab" * 16, b"half a cop")  # a copy killed mid-write, two hours ago
    os.utime(tier.full_path(hot.path + ".tmp-" + "ab" * 16), (time.time() - 7200,) * 2)
    tier.write(hot.path + ".tmp-" + "cd" * 16, b"half a co")  # a copy being written now: left alone
    report = verify(repo)
    assert sorted(report.cold.orphans) == sorted([hot.path, "notes/mine.txt", hot.path + ".tmp-" + "ab" * 16])
    assert sorted(report.cold.leftovers) == sorted([hot.path, hot.path + ".tmp-" + "ab" * 16])
    repair(repo, plan_repair(report))
    after = verify(repo)
    assert after.cold.orphans == ["notes/mine.txt"] and tier.read("notes/mine.txt") == b"a user's file"
    assert tier.exists(hot.path + ".tmp-" + "cd" * 16)
    assert after.cold.copies == 1 and not after.cold.missing


def test_a_nondeterministic_leftover_is_adopted_only_within_the_tolerance(butler):
    run_noisy_scale(butler)
    first, second = (butler.find_dataset("metricsA", instrument="Cam", visit=1, detector=d, collections="out")
                     for d in (0, 1))
    butler.retention.purge([first, second])
    fresh = {r.id: r for r in butler.registry.refs_by_id([first.id, second.id])}  # without the purged locations
    first, second = fresh[first.id], fresh[second.id]
    like = {"visit": 1, "detector": 0, "x": 2.0000001}  # another run's result: other bytes, the same facts
    _place(butler, butler.retention.state(first).artifact.path, json.dumps(like).encode())
    assert butler.get(first, recompute=True) == like  # the killed writer's file, kept
    unlike = b'{"only": 1}'  # not a result of this task: its facts (n_keys) differ
    _place(butler, butler.retention.state(second).artifact.path, unlike)
    with pytest.raises(SkybutlerError, match="refusing to overwrite existing file"):
        butler.get(second, recompute=True)
    assert butler.datastore.fs.cat_file(butler.datastore.full_path(butler.retention.state(second).artifact.path)) \
        == unlike


READER = textwrap.dedent("""
    import json, sys, uuid
    from skybutler import Butler
    butler = Butler(sys.argv[1], recompute=True)
    for i in sys.argv[2:]:
        print(json.dumps(butler.get(butler.registry.refs_by_id([uuid.UUID(i)])[0]), sort_keys=True))
""")


@pytest.mark.slow
def test_readers_in_several_processes_all_get_cold_and_purged_datasets(repo):
    summaries = [r for r in repo.targets if r.dataset_type.name == "visitSummary"]
    scaled = [r for r in repo.targets if r.dataset_type.name == "metricsA"]
    repo.retention.purge(scaled + summaries[:1])  # the first summary needs four purged inputs
    repo.retention.move_to_cold(summaries[1:])
    ids = [str(r.id) for r in summaries]
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    readers = [subprocess.Popen([sys.executable, "-c", READER, str(repo.root), *ids], env=env, text=True,
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE) for _ in range(3)]
    outputs = [r.communicate(timeout=300) for r in readers]
    assert [r.returncode for r in readers] == [0, 0, 0], [err for _, err in outputs]
    expected = "".join(json.dumps(repo.originals[r.id], sort_keys=True) + "\n" for r in summaries)
    assert [out for out, _ in outputs] == [expected] * 3
    assert verify(repo).consistent and set(repo.retention.states(summaries).values()) == {"stored"}


def test_verify_fix_deletes_a_purged_datasets_own_file_and_quarantines_a_stranger(repo):
    summaries = [r for r in repo.targets if r.dataset_type.name == "visitSummary"]
    repo.retention.purge(summaries)
    own, stranger = (repo.retention.state(r).artifact for r in summaries)
    buffer = io.BytesIO()
    get_formatter(own.formatter).write(repo.originals[summaries[0].id], buffer)
    _place(repo, own.path, buffer.getvalue())  # a killed purge (or write-back) left it
    _place(repo, stranger.path, b'{"n": 0}')  # not the dataset's content
    report = verify(repo)
    assert report.retention_leftovers == [own.path] and report.orphan_files == [stranger.path]
    result = repair(repo, plan_repair(report))
    assert (result.deleted, result.quarantined) == (1, 1)
    assert verify(repo).consistent and not repo.datastore.fs.exists(repo.datastore.full_path(own.path))


def _settled_by_the_open(butler: Butler) -> None:
    """What a killed retention write left is settled by the next open, as for every other write:
    ``verify`` is consistent before any ``--fix``, and no staging file stays, hot or cold."""
    with Butler(butler.root, collections=COLLECTIONS) as reopened:
        report = verify(reopened)
        assert report.consistent and not report.in_flight, report.summary()
        tier = cold_tier(reopened)
        assert not [p for p in reopened.datastore.walk() if ".tmp-" in p]
        assert not [p for p in tier.walk() if ".tmp-" in p]


#: Hooks at each step of a staging or a write-back: old hook spellings (they also ran before the
#: write journal covered these writes) and the named crash points.
RESTORE_HOOKS = ["before:datastore:_publish:1", "after:datastore:write_or_adopt:1", "crash:file-placed:2",
                 "crash:journal-written", "crash:registry-committed"]


@pytest.mark.slow
@pytest.mark.parametrize("hook", RESTORE_HOOKS)
def test_a_killed_staging_is_settled_by_the_next_open(repo, hook):
    _kill_a_staging(repo, hook)
    _settled_by_the_open(repo)
    _check(repo)


@pytest.mark.slow
@pytest.mark.parametrize("hook", RESTORE_HOOKS)
def test_a_killed_write_back_is_settled_by_the_next_open(repo, hook):
    repo.retention.purge(repo.targets)
    assert _run_child(repo, hook, "get", [r.id for r in repo.targets]) == -9
    _settled_by_the_open(repo)
    _check(repo)


@pytest.mark.slow
def test_a_killed_nondeterministic_write_back_leaves_nothing_for_the_quarantine(butler):
    """A non-deterministic task's result has other bytes than the purged file: only the journal
    can tell that a file left at its path is skybutler's."""
    run_noisy_scale(butler)
    refs = list(butler.query_datasets("metricsA", collections="out"))
    butler.retention.purge(refs)
    root = butler.root
    butler.close()
    noisy = textwrap.dedent("""
        import os, signal, sys, uuid
        import skybutler.retention.ondemand as ondemand
        from skybutler import Butler
        from skybutler.datastore.datastore import FileDatastore

        fmt, publish = ondemand._format, FileDatastore.write_or_adopt
        # the replay gives other bytes than the purged file (within the task's tolerance) ...
        ondemand._format = lambda obj, name: fmt({**obj, "x": obj["x"] + 1e-9}, name)

        def publish_then_die(*args, **kwargs):  # ... and the writer dies once one file is published
            publish(*args, **kwargs)
            os.kill(os.getpid(), signal.SIGKILL)

        FileDatastore.write_or_adopt = publish_then_die
        butler = Butler(sys.argv[1], collections=["out"], recompute=True)
        for i in sys.argv[2:]:
            butler.get(butler.registry.refs_by_id([uuid.UUID(i)])[0])
    """)
    assert _forked(noisy, root, *(r.id for r in refs)) == -9
    with Butler(root, collections=["out"]) as reopened:
        assert verify(reopened).consistent
    _repair(root)
    quarantine = root / ".skybutler" / "quarantine"
    assert not quarantine.exists() or not any(quarantine.rglob("*")), list(quarantine.rglob("*"))
    with Butler(root, collections=["out"], recompute=True) as reopened:
        assert all(reopened.get(r) is not None for r in refs)
