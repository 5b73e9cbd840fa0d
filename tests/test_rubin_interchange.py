"""Interchange with the Rubin butler (lsst-daf-butler, the ``rubin-test`` extra): its universe
is held by ours, and its exports and zips come in and go back out without losing anything.

Every test here uses the real Rubin butler as the oracle; without it they are skipped.
"""

from __future__ import annotations

import pytest

daf_butler = pytest.importorskip("lsst.daf.butler", reason="the Rubin butler (pip install 'skybutler[rubin-test]') "
                                 "is the oracle of these tests")

from skybutler.dimensions import DimensionUniverse  # noqa: E402


def test_default_universe_holds_everything_the_rubin_universe_holds():
    rubin = daf_butler.DimensionUniverse()
    assert (rubin.namespace, rubin.version) == ("daf_butler", 8)
    ours = DimensionUniverse.default()
    for element in rubin.getStaticElements():
        name = element.name
        assert name in ours, name
        mine = ours[name]
        if name in rubin.skypix_dimensions.names:
            assert mine.skypix is not None
            continue
        assert set(mine.identity) == set(element.required.names) | set(element.minimal_group.required), name
        if mine.key is not None:
            key = element.primaryKey
            assert (mine.key.name, mine.key.type) == (key.name, "int" if key.getPythonType() is int else "str")
        assert set(mine.implies) == set(element.implied.names), name
        names = {k.name for k in getattr(element, "alternate_keys", ())} | {m.name for m in element.metadata}
        assert names <= set(mine.fields), (name, names - set(mine.fields))
        assert mine.region == (element.spatial is not None), name
        assert mine.timespan == (element.temporal is not None), name
