"""``verify --fix`` racing a retention writer over a hot file a killed retention write left.

Such a file (at the recorded path of a cold dataset, with the recorded checksum) is one repair
deletes, and one a staging adopts as the dataset's restored file: the two must not both take it
-- a staging that adopted it, then the repair deleting it, leaves a hot dataset without its file.
"""

from __future__ import annotations

import os
import threading

from conftest import populate
from skybutler import Butler
from skybutler.retention import ColdTierConfig
from skybutler.verify import plan_repair, repair, verify


def _one_dataset_and_a_cold_tier(make_butler, tmp_path):
    """A repository of one metrics dataset ({"n": 1}) in RUN r with a cold tier at tmp_path/tape
    (no staging latency): its root and the dataset's ref."""
    butler = make_butler(run="r", collections=["r"])
    populate(butler, n_visits=1, n_detectors=2)
    butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    ref = butler.put({"n": 1}, "metrics", instrument="Cam", visit=1, detector=1)
    butler.config.retention.cold_tier = ColdTierConfig(uri=str(tmp_path / "tape"), staging_latency=0.0)
    butler.config.save(butler.root)
    return butler.root, ref


def test_repair_never_deletes_a_leftover_that_a_staging_adopts_meanwhile(make_butler, tmp_path):
    root, ref = _one_dataset_and_a_cold_tier(make_butler, tmp_path)
    fixer, stager = Butler(root, collections=["r"]), Butler(root, collections=["r"])
    try:
        path = fixer.registry.datasets.artifacts([ref.id])[ref.id].path
        data = fixer.datastore._read_bytes(path)
        fixer.retention.move_to_cold([ref])
        full = fixer.datastore.full_path(path)  # a killed cold move's leftover: the very bytes, hot
        fixer.datastore.fs.makedirs(os.path.dirname(full), exist_ok=True)
        fixer.datastore.fs.pipe_file(full, data)
        plan = plan_repair(verify(fixer))
        assert [(s.action, s.path) for s in plan] == [("delete-leftover", path)]

        paused, release = threading.Event(), threading.Event()
        remove_paths = fixer.datastore.remove_paths

        def stalled(paths):  # the repair stops just before it deletes, its proof taken
            paused.set()
            release.wait(30)
            return remove_paths(paths)

        fixer.datastore.remove_paths = stalled
        results: list[object] = []
        repairing = threading.Thread(target=lambda: results.append(repair(fixer, plan)))
        repairing.start()
        staging = threading.Thread(target=lambda: stager.retention.stage([ref]))
        try:
            assert paused.wait(30)
            staging.start()
            staging.join(2.0)  # a staging adopting the file finishes now; one waiting for the repair does not
        finally:
            release.set()
            repairing.join(30)
            if staging.is_alive() or not staging.ident:
                staging.join(30)
        assert stager.retention.state(ref).state == "stored"
        assert stager.get(ref) == {"n": 1}  # the dataset is hot with its file
        assert verify(stager).consistent
    finally:
        stager.close()
        fixer.close()


def test_a_cold_copy_planned_for_deletion_is_kept_once_its_dataset_moved_to_the_cold_tier(make_butler, tmp_path):
    """A copy in the cold tier of a hot dataset (a killed cold move's) is one repair deletes; if the
    dataset moves to the cold tier after the plan was shown (and the move takes that copy as its
    own, deleting the hot file), the copy is the dataset's only one: the repair must keep it."""
    root, ref = _one_dataset_and_a_cold_tier(make_butler, tmp_path)
    with Butler(root, collections=["r"]) as fixer:
        path = fixer.registry.datasets.artifacts([ref.id])[ref.id].path
        tape = tmp_path / "tape" / path  # a killed cold move's copy: the very bytes, in the cold tier
        tape.parent.mkdir(parents=True, exist_ok=True)
        tape.write_bytes(fixer.datastore._read_bytes(path))
        plan = plan_repair(verify(fixer))
        assert [(s.action, s.path) for s in plan] == [("delete-cold", path)]
        fixer.retention.move_to_cold([ref])  # meanwhile (the plan waits for a person's yes)
        repair(fixer, plan)
        assert fixer.retention.state(ref).state == "cold"
        assert fixer.get(ref) == {"n": 1}  # staged back from its cold copy
        assert verify(fixer).consistent
