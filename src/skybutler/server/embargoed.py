"""Query results with the datasets under embargo for the caller taken out.

Used only when an embargo rule hiding something from the caller names a dataset type
the query involves; otherwise results go out as the registry gives them.  Limits and
offsets then apply after the hidden datasets are taken out, counts count what is
left, and an explanation of an empty answer says one thing whatever was hidden, so
that nothing can be learnt of what the caller may not see.
"""

from __future__ import annotations

import functools
import itertools
from collections.abc import Iterator
from typing import Any

import pyarrow as pa

from ..embargo import EmbargoCheck

#: What ``explain`` says of an empty answer when an embargo applies to the query.
NOTHING_VISIBLE = "no dataset you may see matches the query"


class _Filtered:
    """The shared part: limit/offset after filtering, count, any, explain."""

    def __init__(self, results: Any, limit: int | None, offset: int):
        self._inner = results
        self._limit = limit
        self._offset = offset

    def _keep(self, item: Any) -> bool:
        raise NotImplementedError

    def _window(self, items: Iterator[Any]) -> Iterator[Any]:
        stop = None if self._limit is None else self._offset + self._limit
        return itertools.islice(items, self._offset, stop)

    def _items(self) -> Iterator[Any]:
        return self._window(item for batch in self._inner._converted_batches() for item in batch
                            if self._keep(item))

    def _converted_batches(self) -> Iterator[list[Any]]:
        items = self._items()
        while batch := list(itertools.islice(items, 10_000)):
            yield batch

    def _empty(self) -> bool:
        return self._inner._empty()

    def count(self) -> int:
        return sum(1 for _ in self._items())

    def any(self) -> bool:
        return next(self._items(), None) is not None

    def explain(self) -> list[str]:
        return [] if self.any() else [NOTHING_VISIBLE]

    def arrow_batches(self) -> Iterator[pa.Table]:
        skipped, taken = 0, 0
        for table in self._inner.arrow_batches():
            rows = table.to_pylist()
            keep = [self._keep_row(row) for row in rows]
            for index, kept in enumerate(keep):
                if not kept:
                    continue
                if skipped < self._offset:
                    keep[index] = False
                    skipped += 1
                elif self._limit is not None and taken >= self._limit:
                    keep[index] = False
                else:
                    taken += 1
            yield table.filter(pa.array(keep, pa.bool_()))

    def _keep_row(self, row: dict[str, Any]) -> bool:
        raise NotImplementedError


class EmbargoedDatasets(_Filtered):
    """Dataset results without the datasets hidden from the caller; with ``fall_through`` (a
    find-first search over several collections) a hidden first match gives way to the
    dataset of the same data ID that the rest of the path holds, as if it did not exist."""

    def __init__(self, results: Any, check: EmbargoCheck, dataset_types: tuple[str, ...], limit: int | None,
                 offset: int, fall_through: FallThrough | None = None):
        super().__init__(results, limit, offset)
        self._check = check
        self._single = dataset_types[0] if len(dataset_types) == 1 else None
        self._fall = fall_through

    def _keep(self, ref: Any) -> bool:
        return not self._check.hidden_ref(ref)

    def _keep_row(self, row: dict[str, Any]) -> bool:
        return not self._check.hidden(row.get("dataset_type", self._single), row["run"], row)

    def _items(self) -> Iterator[Any]:
        if self._resorted():
            everything = [ref for batch in self._unkeyed()._converted_batches() for ref in self._replaced(batch)]
            return self._window(iter(self._in_order(everything, self._ref_value)))
        return self._window(ref for batch in self._inner._converted_batches() for ref in self._replaced(batch))

    def _resorted(self) -> bool:
        """Whether the answer must be put in order here: an ordered find-first search with a
        fall-through, whose replacements (other dataset IDs) do not stand where the hidden
        rows stood.  Such an answer is read whole, sorted, and cut after the key (if any)."""
        return self._fall is not None and bool(self._inner._order)

    def _unkeyed(self) -> Any:
        """The inner results without the key: a replacement may follow the key although the
        hidden row it stands for came before it."""
        inner = self._inner._copy(after=None)
        inner.streaming = True
        return inner

    def _in_order(self, items: list[Any], value: Any) -> list[Any]:
        """``items`` sorted by the order's columns (``value(item, column)``), those after the key only."""
        order = self._inner._order
        names = [n.lstrip("-") for n in order]
        signs = [-1 if n.startswith("-") else 1 for n in order]

        def compare(a: tuple, b: tuple) -> int:
            for x, y, sign in zip(a, b, signs):
                if x != y:
                    return sign if x > y else -sign
            return 0

        keyed = [(tuple(value(item, n) for n in names), item) for item in items]
        keyed.sort(key=functools.cmp_to_key(lambda a, b: compare(a[0], b[0])))
        after = self._inner._after
        if after is not None:
            bound = tuple(self._key_value(n, v) for n, v in zip(names, after))
            keyed = [(k, item) for k, item in keyed if compare(k, bound) > 0]
        return [item for _, item in keyed]

    def _key_value(self, column: str, value: Any) -> Any:
        """A key's value as the sorted items hold it (a dataset ID as text, a RUN by name)."""
        if column == "dataset_id":
            return str(value)
        if column == "run_id":
            return self._fall.run_name(value)
        return value

    def _ref_value(self, ref: Any, column: str) -> Any:
        if column == "dataset_id":
            return str(ref.id)
        if column in ("run_id", "run"):
            return ref.run
        if column == "dataset_type_index":
            return self._fall.type_index(ref.dataset_type.name)
        return ref.data_id[column]

    def _row_value(self, row: dict[str, Any], column: str) -> Any:
        if column == "run_id":
            return row["run"]
        if column == "dataset_type_index":
            return self._fall.type_index(row.get("dataset_type", self._single))
        return row[column]

    def _replaced(self, batch: list[Any]) -> Iterator[Any]:
        """The batch's refs, each hidden one replaced by its fall-through (or dropped)."""
        for ref in batch:
            if not self._check.hidden_ref(ref):
                yield ref
            elif self._fall is not None:
                found = self._fall.next_visible(ref.dataset_type.name, ref.data_id.mapping)
                if found is not None:
                    yield next(iter(found))

    def arrow_batches(self) -> Iterator[pa.Table]:
        if self._fall is None:
            yield from super().arrow_batches()
            return
        if self._resorted():
            tables = [self._replaced_rows(table) for table in self._unkeyed().arrow_batches()]
            table = pa.concat_tables(tables)
            rows = self._in_order(table.to_pylist(), self._row_value)
            stop = None if self._limit is None else self._offset + self._limit
            yield pa.Table.from_pylist(rows[self._offset:stop], schema=table.schema)
            return
        skipped, taken = 0, 0
        for table in self._inner.arrow_batches():
            table = self._replaced_rows(table)
            start = min(self._offset - skipped, table.num_rows)
            skipped += start
            stop = table.num_rows if self._limit is None else min(table.num_rows, start + self._limit - taken)
            taken += stop - start
            yield table.slice(start, stop - start)

    def _replaced_rows(self, table: pa.Table) -> pa.Table:
        """The table with each hidden row replaced by its fall-through's row (or dropped)."""
        pieces, start = [], 0
        for index, row in enumerate(table.to_pylist()):
            if self._keep_row(row):
                continue
            pieces.append(table.slice(start, index - start))
            start = index + 1
            dataset_type = row.get("dataset_type", self._single)
            found = self._fall.next_visible(dataset_type, row) if self._fall is not None else None
            if found is not None:
                other = found.to_arrow()
                if "dataset_type" in table.column_names and "dataset_type" not in other.column_names:
                    other = other.append_column("dataset_type", pa.array([dataset_type] * other.num_rows))
                pieces.append(other.select(table.column_names).cast(table.schema))
        if not pieces:
            return table
        pieces.append(table.slice(start))
        return pa.concat_tables(pieces)


class FallThrough:
    """The find-first search of one data ID along a query's path with hidden datasets skipped:
    one collection at a time, the query's where-clause and states kept (what ``find_dataset``
    does for a single lookup)."""

    def __init__(self, butler: Any, check: EmbargoCheck, spec: Any):
        self._butler = butler
        self._check = check
        self._spec = spec

    def next_visible(self, dataset_type: str, values: Any) -> Any:
        """The results (one dataset) of the first collection of the path whose match of
        ``dataset_type`` at this data ID the caller may see; None if no collection has one."""
        group = self._butler.get_dataset_type(dataset_type).group(self._butler.universe)
        data_id = {**self._spec.data_id, **{d: values[d] for d in group.required}}
        for collection in self._spec.collections:
            one = self._butler.query(self._spec.model_copy(update={
                "collections": (collection,), "dataset_types": (dataset_type,), "data_id": data_id}))
            ref = next(iter(one), None)
            if ref is not None and not self._check.hidden_ref(ref):
                return one
        return None

    def run_name(self, run_id: int) -> str:
        return self._butler.registry.collection_name(run_id)

    def type_index(self, dataset_type: str) -> int:
        """A dataset type's place among the query's (its ``dataset_type_index``)."""
        return list(dict.fromkeys(self._spec.dataset_types)).index(dataset_type)


class EmbargoedDataIds(_Filtered):
    """Data-ID results constrained by datasets, keeping the data IDs that some dataset the
    caller may see supports (the join of the data IDs with the visible datasets)."""

    def __init__(self, results: Any, supported: list[tuple[tuple[str, ...], set[tuple]]], limit: int | None,
                 offset: int):
        super().__init__(results, limit, offset)
        self._supported = supported

    def _keep(self, data_id: Any) -> bool:
        return self._keep_row(data_id)

    def _keep_row(self, row: Any) -> bool:
        return all(tuple(row[d] for d in dims) in keys for dims, keys in self._supported)


def supported_keys(butler: Any, check: EmbargoCheck, spec: Any, dataset_type: str) -> tuple[tuple[str, ...], set]:
    """The values, on the dimensions shared with the data-ID query, of every visible dataset of
    ``dataset_type`` that the query's collections and where-clause find."""
    found = butler.query_datasets(dataset_type, spec.where, collections=list(spec.collections), find_first=False,
                                  bind=spec.bind, data_id=spec.data_id)
    dims = tuple(d for d in butler.universe.group(spec.dimensions).required
                 if d in butler.get_dataset_type(dataset_type).group(butler.universe).names)
    keys = {tuple(ref.data_id[d] for d in dims) for ref in found if not check.hidden_ref(ref)}
    return dims, keys
