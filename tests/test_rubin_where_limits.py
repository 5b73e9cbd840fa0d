"""Long IN lists and nested groups on a repository the Rubin butler made, answered as the
Rubin butler answers them (its SQL for a NOT above AND/OR grows with each NOT, so the
nesting stays moderate here; tests/test_query_limits.py takes 49 levels to a brute-force
reading)."""

from __future__ import annotations

import random

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



def _in_pieces(theirs, pieces, op):
    """The Rubin butler's answer to ``pieces`` joined by ``op``, which it cannot take whole (its
    parser recurses once a term, and its SQLite statement nests as deep): the union (OR) or the
    intersection (AND) of its answers to each piece."""
    answers = []
    for piece in pieces:
        rows, data_id = rubin_data_ids(theirs, ["visit", "detector"], piece, {})
        answers.append(rows)
    return (set.union if op == "OR" else set.intersection)(*answers), data_id


@pytest.mark.slow
def test_long_chains_agree_with_the_rubin_butler_in_pieces(rubin, ours):
    """Chains of 1,200 conditions joined by OR or AND, or of 1,200 ranges in one IN list, which
    SQLite nests past its 1,000 levels when sent as written, are answered on every stack as the
    Rubin butler answers them a hundred at a time."""
    rng = random.Random(1200)
    real = _visits(ours)
    anywhere = [rng.choice((f"visit.zenith_angle > {rng.uniform(25.5, 40):.2f}", f"detector > {rng.randrange(10, 40)}",
                            f"visit.exposure_time < {rng.uniform(-99, 15.5):.2f}")) for _ in range(1198)]
    anywhere += [f"detector {rng.choice(('=', '>'))} {rng.randrange(12)}" for _ in range(2)]
    rng.shuffle(anywhere)
    everywhere = [f"visit.zenith_angle {rng.choice(('<', '!='))} {rng.uniform(27, 99):.3f}" for _ in range(1195)]
    everywhere += [f"detector != {d}" for d in rng.sample(range(12), 5)]
    rng.shuffle(everywhere)
    ranges = [f"{v + rng.randrange(5, 50)}..{v + rng.randrange(50, 90)}:{rng.randrange(1, 4)}"  # no visit
              for v in rng.choices(real, k=1198)] + [f"{real[1] - 2}..{real[1] + 1}:3", f"{real[-1]}..{real[-1]}"]
    rng.shuffle(ranges)
    cases = [(" OR ".join(anywhere), [" OR ".join(anywhere[i:i + 100]) for i in range(0, 1200, 100)], "OR"),
             (" AND ".join(everywhere), [" AND ".join(everywhere[i:i + 100]) for i in range(0, 1200, 100)], "AND"),
             (f"visit IN ({', '.join(ranges)})",
              [f"visit IN ({', '.join(ranges[i:i + 100])})" for i in range(0, 1200, 100)], "OR")]
    for where, pieces, op in cases:
        theirs, data_id = _in_pieces(rubin["butler"], pieces, op)
        assert 0 < len(theirs) < 12 * len(real), "an empty or a full answer proves little"
        for stack, butler in ours:
            assert our_data_ids(butler, ["visit", "detector"], where, {}, data_id) == theirs, (where[:80], stack)
