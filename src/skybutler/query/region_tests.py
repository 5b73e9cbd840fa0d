"""The exact sky-region tests a query runs on its rows: the SQL narrows rows by sky pixels
(a coarse index), and these keep those whose regions really overlap."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import lsst.sphgeom as sphgeom

from ..dimensions import regions as sky


@dataclass
class RegionFilter:
    """An exact overlap test run on result rows: region columns by label, or a constant
    (a row with no region fails it)."""

    left: str
    right: str | sphgeom.Region

    def on_rows(self, position: Mapping[str, int]) -> Callable[[Sequence[Any]], bool]:
        """The test of a row given as a sequence, its columns at ``position`` by label."""
        left = position[self.left]
        right = self.right if isinstance(self.right, sphgeom.Region) else position[self.right]

        def test(row: Sequence[Any]) -> bool:
            a = sky.decode(row[left])
            b = right if isinstance(right, sphgeom.Region) else sky.decode(row[right])
            return a is not None and b is not None and sky.overlaps(a, b)

        return test


def passing(rows: Iterable[Sequence[Any]], filters: list[RegionFilter], columns: list[str],
            unique_by: list[str] | None, offset: int, limit: int | None) -> Iterator[Sequence[Any]]:
    """The ``rows`` (of ``columns``) passing every exact region test, de-duplicated by the
    ``unique_by`` columns, after ``offset``, up to ``limit``."""
    position = {name: i for i, name in enumerate(columns)}
    tests = [f.on_rows(position) for f in filters]
    skipped = taken = 0
    key_index = [position[k] for k in unique_by] if unique_by else None
    seen: set[tuple] = set()
    for row in rows:
        if all(test(row) for test in tests):
            if key_index is not None:
                key = tuple(row[i] for i in key_index)
                if key in seen:
                    continue
                seen.add(key)
            if skipped < offset:
                skipped += 1
                continue
            yield row
            taken += 1
            if limit is not None and taken >= limit:
                return
