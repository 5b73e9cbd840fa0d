"""Dataset query results: resolved refs of one or more dataset types, the validity each was
found with in a CALIBRATION collection, ordering by dataset fields, and their Arrow table.

:class:`DatasetQueryResults` is the dataset kind of :class:`~skybutler.query.results.QueryResults`,
which runs the query; this module turns its columns into refs (and runs, IDs and validity
bounds into the text a table shows).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from typing import Any

import pyarrow as pa

from ..dimensions import DataCoordinate
from ..models import ArtifactBatch, DatasetRef
from ..timespan import NS_MAX, NS_MIN, Timespan, ns_to_time
from . import columnar, ordering
from .results import QueryResults, implied_lookup


class DatasetQueryResults(QueryResults):
    """Resolved dataset references of one dataset type."""

    def _converter(self):
        dtypes = self._built.dataset_types
        group = self._built.group
        cols = self._built.columns
        index = [cols.index(d) for d in group.required]
        i_id, i_run = cols.index("dataset_id"), cols.index("run_id")
        i_type = cols.index("dataset_type_index") if "dataset_type_index" in cols else None
        name_of = self._registry.collections.name_of
        runs: dict[int, str] = {}
        names = tuple(group.required)
        registry = self._registry
        lookup = self._registry.datasets.artifact_rows

        def convert(columns: list[Sequence[Any]], n: int) -> list[DatasetRef]:
            run_ids = columns[i_run]
            for rid in set(run_ids).difference(runs):
                runs[rid] = name_of(rid)
            values = [columns[i] for i in index]
            data_ids = columnar.data_ids(group, names, values, n, implied_lookup(registry, group, names, values, n))
            types = itertools.repeat(dtypes[0]) if i_type is None else map(dtypes.__getitem__, columns[i_type])
            # Column by column through C-level map loops: no Python frame per ref.  The
            # batch's artifacts are looked up together when the first is read.
            ids = columnar.uuids(columns[i_id])
            return list(map(DatasetRef, ids, types, data_ids, map(runs.__getitem__, run_ids),
                            itertools.repeat(ArtifactBatch(lookup, ids))))

        return convert

    def order_by(self, *names: str) -> QueryResults:
        """Sort as :meth:`QueryResults.order_by` does, and also by a dataset field as the Rubin
        butler names it, bare or after the dataset type's name: ``ingest_date``, ``run``,
        ``dataset_id``, ``<type>.timespan.begin`` / ``.end`` (the validity range; unbounded,
        so no order, outside CALIBRATION collections)."""
        types = {t.name for t in self._built.dataset_types}
        return super().order_by(*filter(None, (ordering.dataset_field(n, types, self._built.columns)
                                               for n in names)))

    def with_validity(self) -> list[tuple[DatasetRef, Timespan | None]]:
        """Each result with the validity range it was found with in a CALIBRATION collection
        (None when found in a RUN or TAGGED one, or the query searched no CALIBRATION collection)."""
        return [(ref, span) for _, ref, span in self.rows_with_validity()]

    def rows_with_validity(self, group: Any = None) -> list[tuple[DataCoordinate, DatasetRef, Timespan | None]]:
        """(the row's data ID, ref, validity) for every result; the data ID holds the query's
        result dimensions, which may be more than the dataset type's (the exposure a
        calibration was found for)."""
        cols = self._built.columns
        group = group or self._built.group
        dtypes = self._built.dataset_types
        name_of = self._registry.collections.name_of
        out = []
        for row in self._rows():
            m = dict(zip(cols, row))
            dtype = dtypes[m["dataset_type_index"]] if "dataset_type_index" in cols else dtypes[0]
            data_id = DataCoordinate.from_required(group, tuple(m[d] for d in group.required))
            ref = DatasetRef(columnar.uuids([m["dataset_id"]])[0], dtype,
                             data_id.subset(self._registry.dataset_types.group(dtype)), name_of(m["run_id"]))
            span = None
            if "validity_begin" in cols and (m["validity_begin"] > NS_MIN or m["validity_end"] < NS_MAX):
                span = Timespan.from_ns(m["validity_begin"], m["validity_end"])
            out.append((data_id, ref, span))
        return out

    def _decorate_arrow(self, table: pa.Table) -> pa.Table:
        name_of = self._registry.collections.name_of
        ids = table.column("dataset_id")
        first = ids[0].as_py() if table.num_rows else None
        if isinstance(first, str) and len(first) == 32:  # hex digits, as SQLite stores them
            ids = columnar.uuid_text(ids)
        elif first is not None and not isinstance(first, str):
            ids = pa.array([str(u) for u in ids.to_pylist()], pa.string())
        table = table.set_column(table.schema.get_field_index("dataset_id"), "dataset_id", ids)
        fixed = self._built.constants.get("run_id")
        if fixed is not None:  # one RUN searched: no need to look at the column
            run = pa.repeat(pa.scalar(name_of(fixed), pa.string()), table.num_rows)
        else:
            run = columnar.names_of(table.column("run_id"), name_of)
        table = table.set_column(table.schema.get_field_index("run_id"), "run", run)
        for bound in ("validity_begin", "validity_end"):
            if bound in table.column_names:
                values = [None if v is None or not NS_MIN < v < NS_MAX else _exact_iso(v)
                          for v in table.column(bound).to_pylist()]
                table = table.set_column(table.column_names.index(bound), bound, pa.array(values, pa.string()))
        if "dataset_type_index" in table.column_names:
            names = columnar.names_of(table.column("dataset_type_index"), lambda i: self._built.dataset_types[i].name)
            table = table.set_column(table.schema.get_field_index("dataset_type_index"), "dataset_type", names)
        return table


def _exact_iso(ns: int) -> str:
    """TAI nanoseconds as ISO text, to the millisecond unless the value has finer digits: a
    validity bound read from a table is part of a keyset key and must come back exact."""
    time = ns_to_time(ns)
    if ns % 1_000_000:
        time.precision = 9
    return time.isot
