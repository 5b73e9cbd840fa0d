"""The garbage-collector pause around batches: restored as it was, and what a batch made
is moved to the oldest generation without undoing an application's own freeze."""

from __future__ import annotations

import gc

import pytest

from skybutler.batching import gc_paused


@pytest.fixture(autouse=True)
def collector_enabled():
    was = gc.isenabled()
    gc.enable()
    yield
    gc.unfreeze()
    gc.enable() if was else gc.disable()


def test_the_collector_is_paused_inside_and_restored_after():
    with gc_paused():
        assert not gc.isenabled()
        with gc_paused():
            assert not gc.isenabled()
        assert not gc.isenabled()  # the outer block's pause holds
    assert gc.isenabled()
    gc.disable()
    with gc_paused():
        pass
    assert not gc.isenabled()  # disabled before: left disabled


def test_a_large_batch_goes_to_the_oldest_generation_untraversed():
    with gc_paused():
        kept = [[i] for i in range(50_000)]
    oldest = {id(o) for o in gc.get_objects(generation=2)}
    assert id(kept[0]) in oldest and id(kept[-1]) in oldest and gc.get_freeze_count() == 0


def test_an_application_freeze_is_kept():
    gc.freeze()
    frozen = gc.get_freeze_count()
    with gc_paused():
        kept = [[i] for i in range(50_000)]
    assert gc.get_freeze_count() == frozen and len(kept) == 50_000


def test_cyclic_garbage_made_in_a_batch_is_still_collected():
    class Node:
        pass

    with gc_paused():
        for _ in range(20_000):
            a, b = Node(), Node()
            a.other, b.other = b, a
    assert gc.collect() >= 40_000
