"""Query commands: query-data-ids, query-datasets, query-dimension-records, query-calibrations.

Each runs one butler query and prints its results as a table (default), as JSON
(``--json``) or CSV (``--csv``) on stdout, or writes them to a Parquet file
(``--parquet FILE``).  All four outputs come from the results' ``to_arrow()``, so
they hold the same columns.  ``--bind NAME=VALUE`` gives a where-clause bind
parameter: an int or float when the text is one, a list (for ``x IN (NAME)``) when
it has commas, text otherwise.
"""

from __future__ import annotations

import csv
import json
import sys
import uuid
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any, TypeVar

import click
import pyarrow as pa

from ..errors import CalibrationTimeError
from .helpers import (
    TimeParam,
    dataset_type_names,
    expand_collections,
    fail,
    info,
    open_butler,
    print_json,
    print_rows,
    repo_argument,
    report_warning,
    split_csv_option,
    split_pairs,
)

F = TypeVar("F", bound=Callable[..., Any])


# -- options ------------------------------------------------------------------


def _where_options(func: F) -> F:
    func = click.option("--bind", "binds", multiple=True, metavar="NAME=VALUE",
                        help="A bind parameter of the where-clause (repeatable); commas make a list.")(func)
    return click.option("--where", "-w", default="", help="A where-clause, e.g. \"visit > 100 AND band = 'r'\".")(func)


def _output_options(func: F) -> F:
    func = click.option("--offset", type=click.IntRange(min=0), default=0,
                        help="Skip this many results first (with --limit).")(func)
    func = click.option("--limit", type=int,
                        help="At most this many results; 0 means no limit, and -N (the Rubin butler's cap) at most "
                             "N with a warning when there were more.")(func)
    func = click.option("--after", metavar="VALUE,...", default=None,
                        help="Only the results after the row with these --order-by values (comma-separated; "
                             "the order ends with dataset_id): the next page after that row.")(func)
    func = click.option("--order-by", "order_by", multiple=True, metavar="COLUMN",
                        help="Sort by result columns (repeatable or comma-separated; a leading '-' sorts "
                             "descending).")(func)
    func = click.option("--parquet", type=click.Path(dir_okay=False, path_type=Path),
                        help="Write the results to this Parquet file instead of printing them.")(func)
    func = click.option("--csv", "as_csv", is_flag=True, help="Print CSV (a header line, then one row each).")(func)
    return click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")(func)


def _scalar(text: str) -> int | float | str:
    for kind in (int, float):
        try:
            return kind(text)
        except ValueError:
            pass
    return text


def parse_binds(pairs: Iterable[str]) -> dict[str, Any]:
    """``NAME=VALUE`` texts as bind values: numbers typed, comma-separated values as lists."""
    out: dict[str, Any] = {}
    for name, text in split_pairs(pairs, "NAME=VALUE", "--bind"):
        out[name] = [_scalar(p.strip()) for p in text.split(",") if p.strip()] if "," in text else _scalar(text)
    return out


# -- output -------------------------------------------------------------------


def _cell_text(value: Any) -> Any:
    """A value for a table cell, CSV field or JSON: lists (region vertices) as JSON text."""
    if isinstance(value, (list, dict)):
        return json.dumps(value)
    return value


def emit(results: Any, *, as_json: bool, as_csv: bool, parquet: Path | None, order_by: tuple[str, ...],
         limit: int | None, empty: str, after: str | None = None, uri_butler: Any = None,
         state_butler: Any = None, offset: int = 0) -> None:
    """Print (or write) a query's results in the chosen format; with ``uri_butler``, a
    dataset query's rows get a ``uri`` column (each file's URI, from that butler), with
    ``state_butler`` a ``state`` column (stored, cold, purged-recomputable, purged-lost).

    ``limit`` as the Rubin butler's: 0 or None is no limit, -N at most N with a warning on
    stderr when there were more."""
    if sum((as_json, as_csv, parquet is not None)) > 1:
        fail("choose one of --json, --csv and --parquet")
    if offset and not limit:
        fail("--offset skips results before a --limit: give --limit too")
    order_by = tuple(split_csv_option(order_by))
    if order_by:
        results = results.order_by(*order_by)
    if after is not None:
        results = results.after([_scalar(v.strip()) for v in after.split(",")])
    cap = -limit if limit is not None and limit < 0 else None
    if limit:
        results = results.limit(cap + 1 if cap is not None else limit, offset)
    table: pa.Table = results.to_arrow()
    if cap is not None and table.num_rows > cap:
        table = table.slice(0, cap)
        report_warning(f"more than {cap} results: showing the first {cap} (--limit 0 shows them all)")
    if state_butler is not None:
        ids = [uuid.UUID(str(i)) for i in table.column("dataset_id").to_pylist()]
        states = state_butler.retention.states(set(ids))
        table = table.append_column("state", pa.array([states.get(i, "stored") for i in ids], pa.string()))
    if uri_butler is not None:
        ids = [str(i) for i in table.column("dataset_id").to_pylist()]
        refs = ({str(ref.id): ref for ref in uri_butler.registry.refs_by_id([uuid.UUID(i) for i in set(ids)])}
                if uri_butler.served_by is None else {str(ref.id): ref for ref in results})  # a server's
        uris = [uri_butler.get_uri(refs[i]) for i in ids]
        table = table.append_column("uri", pa.array(uris, pa.string()))
    if parquet is not None:
        import pyarrow.parquet as pq

        pq.write_table(table, parquet)
        info(f"wrote {table.num_rows} row(s) to {parquet}")
        return
    rows = table.to_pylist()
    if as_csv:
        writer = csv.writer(sys.stdout, lineterminator="\n")
        writer.writerow(table.column_names)
        for row in rows:
            writer.writerow(["" if v is None else _cell_text(v) for v in row.values()])
        return
    if as_json:
        print_json(rows)
        return
    rows = [{k: (f"region ({len(v)} vertices)" if isinstance(v, list) else v) for k, v in row.items()} for row in rows]
    if not rows and not offset:  # why, as the Rubin command says it ("Possible reasons for empty result")
        empty = "; ".join([empty, *results.explain()])
    print_rows(rows, as_json=False, columns=table.column_names, empty=empty)


# -- commands -----------------------------------------------------------------


@click.command("query-data-ids")
@repo_argument
@click.argument("dimensions", nargs=-1, required=True)
@_where_options
@click.option("--collections", "-c", multiple=True,
              help="Collections to search for --datasets (repeatable or comma-separated, globs allowed; default: "
                   "every RUN).")
@click.option("--datasets", multiple=True,
              help="Only data IDs with a dataset of this type in the collections (repeatable or comma-separated; "
                   "globs allowed).")
@_output_options
def query_data_ids(repo: Path, dimensions: tuple[str, ...], where: str, binds: tuple[str, ...],
                   collections: tuple[str, ...], datasets: tuple[str, ...], **output: Any) -> None:
    """List the data IDs of DIMENSIONS (e.g. visit detector) that match a where-clause."""
    with open_butler(repo) as butler:
        types = [t for group in dataset_type_groups(butler, split_csv_option(datasets)) for t in group] \
            if datasets else []
        # Having a dataset anywhere needs no search order: no -c means every RUN, and globs are fine.
        search = expand_collections(butler, split_csv_option(collections))[0] if types else None
        found = butler.query_data_ids(list(dimensions), where, bind=parse_binds(binds), datasets=types or None,
                                      collections=search)
        emit(found, empty="no data IDs match", **output)


@click.command("query-datasets")
@repo_argument
@click.argument("dataset_types", nargs=-1)
@_where_options
@click.option("--collections", "-c", multiple=True,
              help="Collections to search, in order (repeatable or comma-separated); default: every RUN "
                   "collection, every match.")
@click.option("--find-first/--no-find-first", default=None,
              help="Only the first collection's dataset per data ID (the default with --collections), or every "
                   "match.")
@click.option("--valid-at", type=TimeParam(), metavar="TIME",
              help="A calibration in CALIBRATION collections: the one valid at this ISO time (TAI).")
@click.option("--show-uri", is_flag=True, help="Add a uri column: where each dataset's file is.")
@click.option("--states", "states", multiple=True, metavar="STATE",
              help="Only datasets in these retention states (repeatable or comma-separated): stored, cold, "
                   "purged-recomputable, purged-lost, or purged (both purged states).")
@_output_options
def query_datasets(repo: Path, dataset_types: tuple[str, ...], where: str, binds: tuple[str, ...],
                   collections: tuple[str, ...], find_first: bool, valid_at: Any, show_uri: bool,
                   states: tuple[str, ...], **output: Any) -> None:
    """List the datasets of DATASET_TYPES in the collections that match a where-clause, with
    each one's state (stored, cold, purged-recomputable, purged-lost).  Calibrations found in
    CALIBRATION collections come with their validity range.

    DATASET_TYPES are names or globs ('calexp*'), several or comma-separated; none means every
    registered type.  Types of the same dimensions share one table; types of different
    dimensions get a table each (--json, --csv and --parquet need types of one dimension set).

    A collection given with -c may be a glob ('u/ana/*'); the collections it matches are
    searched in name order, every match of each (a glob gives no order to find first in).
    """
    wanted = parse_states(states)
    with open_butler(repo) as butler:
        groups = dataset_type_groups(butler, split_csv_option(dataset_types))
        if not groups:
            info("no dataset types are registered")
            return
        if len(groups) > 1 and (output["as_json"] or output["as_csv"] or output["parquet"] is not None):
            fail(f"the dataset types {', '.join(t for g in groups for t in g)} have different dimensions: "
                 "--json, --csv and --parquet take types of one dimension set (query them one at a time)")
        search, ordered = expand_collections(butler, split_csv_option(collections))
        if find_first and not ordered:
            raise click.BadParameter("needs --collections naming each collection, in the order to search them "
                                     "(a glob or none gives no order)", param_hint="--find-first")
        for types in groups:
            if len(groups) > 1:
                info(", ".join(types), style="bold")
            def show(first: bool, types: list[str] = types) -> None:
                emit(butler.query_datasets(types, where, bind=parse_binds(binds), find_first=first,
                                           collections=search, timespan=valid_at, states=wanted),
                     empty=f"no {' or '.join(types)} datasets match", uri_butler=butler if show_uri else None,
                     state_butler=butler, **output)

            try:
                show(find_first is not False and ordered)
            except CalibrationTimeError:
                if find_first is not None:  # asked for: the error says what to give
                    raise
                # find-first by default, with no time to find the calibration valid then: every
                # certification, as the Rubin command lists them by default
                report_warning(f"{', '.join(types)}: no time given (--valid-at, or an exposure or visit in "
                               "--where) to find the calibration valid then: every certification is listed")
                show(False)


def dataset_type_groups(butler: Any, given: list[str]) -> list[list[str]]:
    """Dataset type names from the command line (see :func:`~.helpers.dataset_type_names`),
    grouped by dimensions in the order given."""
    groups: dict[Any, list[str]] = {}
    for name in dataset_type_names(butler, given):
        try:
            key: Any = tuple(butler.get_dataset_type(name).dimensions)
        except Exception:  # unregistered: its own group, refused with the query's message
            key = name
        groups.setdefault(key, []).append(name)
    return list(groups.values())


def parse_states(values: tuple[str, ...]) -> list[str] | None:
    """``--states`` values (``purged`` meaning both purged states), checked; None when none is given."""
    from ..registry.dataset_state_store import PURGED, STATES

    wanted: list[str] = []
    for value in split_csv_option(values):
        value = value.lower()
        if value == "purged":
            wanted += PURGED
        elif value in STATES:
            wanted.append(value)
        else:
            raise click.BadParameter(f"{value!r} is not a state; use {', '.join(STATES)} or purged",
                                     param_hint="--states")
    return list(dict.fromkeys(wanted)) or None


@click.command("query-dimension-records")
@repo_argument
@click.argument("element")
@_where_options
@_output_options
@click.option("--collections", "-c", multiple=True,
              help="Collections to search for --datasets (repeatable or comma-separated, globs allowed; default: "
                   "every RUN).")
@click.option("--datasets", multiple=True,
              help="Only records related to a dataset of this type in the collections (repeatable or "
                   "comma-separated; globs allowed), as in query-data-ids.")
@click.option("--no-check", "no_check", is_flag=True, hidden=True,
              help="The Rubin butler's; it has no effect there either.")
def query_dimension_records(repo: Path, element: str, where: str, binds: tuple[str, ...],
                            collections: tuple[str, ...], datasets: tuple[str, ...], no_check: bool,
                            **output: Any) -> None:
    """List the records of a dimension ELEMENT (e.g. visit) that match a where-clause."""
    with open_butler(repo) as butler:
        types = [t for group in dataset_type_groups(butler, split_csv_option(datasets)) for t in group] \
            if datasets else []
        search = expand_collections(butler, split_csv_option(collections))[0] if types else None
        found = butler.query_dimension_records(element, where, bind=parse_binds(binds), datasets=types or None,
                                               collections=search)
        emit(found, empty=f"no {element} records match", **output)


@click.command("query-calibrations")
@repo_argument
@click.argument("dataset_types")
@click.argument("dimensions", nargs=-1, required=True)
@_where_options
@click.option("--collections", "-c", multiple=True, required=True,
              help="Collections to search, in order (repeatable or comma-separated).")
@click.option("--datasets", multiple=True,
              help="Only data IDs with a dataset of this type in the collections (repeatable), e.g. raw.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of objects.")
@click.option("--csv", "as_csv", is_flag=True, help="Print CSV (a header line, then one row each).")
@click.option("--parquet", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the results to this Parquet file instead of printing them.")
def query_calibrations(repo: Path, dataset_types: str, dimensions: tuple[str, ...], where: str,
                       binds: tuple[str, ...], collections: tuple[str, ...], datasets: tuple[str, ...],
                       **output: Any) -> None:
    """For each data ID of DIMENSIONS (e.g. exposure detector), the calibrations of
    DATASET_TYPES (comma-separated, e.g. bias,flat) valid during its exposure or visit."""
    with open_butler(repo) as butler:
        found = butler.query_calibrations(split_csv_option((dataset_types,)), list(dimensions), where,
                                          bind=parse_binds(binds), datasets=split_csv_option(datasets) or None,
                                          collections=split_csv_option(collections))
        emit(found, empty="no data IDs match", order_by=(), limit=None, after=None, **output)


COMMANDS = (query_data_ids, query_datasets, query_dimension_records, query_calibrations)
