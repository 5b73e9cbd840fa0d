"""Long IN lists and nested groups on a repository the Rubin butler made, answered as the
Rubin butler answers them (its SQL for a NOT above AND/OR grows with each NOT, so the
nesting stays moderate here; tests/test_query_limits.py takes 49 levels to a brute-force
reading)."""

from __future__ import annotations

import pytest

import test_rubin_where_random as field
from rubin_field import _judge, our_data_ids, rubin_data_ids

#: The Rubin-made repository of the random comparison, and its import on every stack.
rubin, ours = field.rubin, field.ours


def _visits(butlers):
    _, butler = butlers[0]
    return sorted({d["visit"] for d in butler.query_data_ids(["visit"], "")})


def test_long_bind_lists_agree_with_the_rubin_butler(rubin, ours):
    real = _visits(ours)
    assert real, "a comparison of empty answers proves nothing"
    values = sorted(set(real[::2]) | set(range(max(real) + 1, max(real) + 3000)))
    for where in ("visit IN (:v)", "visit NOT IN (:v)", "NOT (visit IN (:v) AND detector < 3)"):
        _judge(lambda: rubin_data_ids(rubin["butler"], ["visit", "detector"], where, {"v": values}),
               lambda b, data_id: our_data_ids(b, ["visit", "detector"], where, {"v": values}, data_id), where, ours)


@pytest.mark.parametrize("depth", [3, 6])
def test_nested_groups_agree_with_the_rubin_butler(rubin, ours, depth):
    real = _visits(ours)
    where = "detector > 0"
    for level in range(depth):
        op = "AND" if level % 2 else "OR"
        negation = "NOT " if level % 3 == 1 else ""
        where = f"(visit = {real[level % len(real)]} {op} {negation}{where})"
    _judge(lambda: rubin_data_ids(rubin["butler"], ["visit", "detector"], where, {}),
           lambda b, data_id: our_data_ids(b, ["visit", "detector"], where, {}, data_id), where, ours)
