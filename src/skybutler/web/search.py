"""The search page: a where-clause over a dataset type in chosen collections, its results
as a sortable, paged table read a page at a time from the query, an explanation when
nothing matches, the CLI's caret message when the clause is malformed, downloads of the
whole result as CSV or Parquet (streamed), and the same query as Python and as a command.

Pages are read by key, not by offset: the order is the user's column then ``dataset_id``,
and the next page is the rows after the last one's key (``QueryResults.after``), the
previous one the rows before the first one's (the order reversed), so a deep page costs
what the first does and rows written meanwhile neither repeat nor vanish at a boundary.
The total is counted up to :data:`COUNT_LIMIT` rows, read as the user may see them (so an
embargoed dataset is not counted); past that the page says "N+" rather than read them all.

The query runs exactly as the API's does (``server.routes_query.user_query``): only the
collections the user may read, embargoed datasets taken out, within the user's query slots.
"""

from __future__ import annotations

import json
import shlex
import uuid
from dataclasses import dataclass
from typing import Any

import pyarrow as pa
from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ..access import User
from ..errors import SkybutlerError
from ..server.app import status_of
from ..server.routes_query import Chunks, ClosingStream, QueryRequest, stream_batches, user_query
from ..server.state import ServerState
from .session import page_user
from .templating import render, root

router = APIRouter()

NAV = [("Search", "/search")]

#: Rows a page shows unless the request asks for another number (at most MAX_SIZE).
PAGE_SIZE = 50
MAX_SIZE = 1000
#: The most rows the total counts; a larger answer is shown as "10,000+".
COUNT_LIMIT = 10_000


@dataclass
class Search:
    """What the search form asks, read from the request's query string."""

    dataset_type: str = ""
    where: str = ""
    collections: tuple[str, ...] = ()
    find_first: bool = True
    order: str = ""
    after: list[Any] | None = None  # the key of the row this page follows
    before: list[Any] | None = None  # the key of the row this page precedes
    start: int = 1  # the number of this page's first row (for the reader)
    size: int = PAGE_SIZE

    @classmethod
    def of(cls, request: Request) -> Search:
        q = request.query_params
        names = [n.strip() for value in q.getlist("collections") for n in value.split(",") if n.strip()]
        return cls(dataset_type=q.get("dataset_type", "").strip(), where=q.get("where", ""),
                   collections=tuple(dict.fromkeys(names)),
                   find_first=q.get("find_first", "on" if "dataset_type" not in q else "") in ("on", "1", "true"),
                   order=q.get("order", "").strip(), after=_key(q.get("after")), before=_key(q.get("before")),
                   start=max(_int(q.get("start"), 1), 1), size=min(max(_int(q.get("size"), PAGE_SIZE), 1), MAX_SIZE))

    @property
    def ordered(self) -> bool:
        """Whether a find-first search applies: collections named, in the user's order."""
        return self.find_first and bool(self.collections)

    @property
    def keys(self) -> list[str]:
        """The page order: the user's column, then ``dataset_id`` so that a key names one row."""
        return [self.order, "dataset_id"] if self.order and self.order.lstrip("-") != "dataset_id" else \
            [self.order or "dataset_id"]

    def spec(self, search_path: list[str]) -> dict[str, Any]:
        return {"kind": "datasets", "dataset_types": [self.dataset_type], "where": self.where,
                "collections": list(self.collections) or search_path, "find_first": self.ordered}

    def request(self, search_path: list[str], *, paged: bool) -> QueryRequest:
        spec = self.spec(search_path)
        if not paged:
            return QueryRequest(spec=spec, order=[self.order] if self.order else [])
        # one row more than the page: whether another page follows, without counting them all
        if self.before is not None:  # the previous page: the rows before, read in the reverse order
            flipped = [k[1:] if k.startswith("-") else f"-{k}" for k in self.keys]
            return QueryRequest(spec=spec, order=flipped, limit=self.size + 1, after=self.before)
        return QueryRequest(spec=spec, order=self.keys, limit=self.size + 1, after=self.after)

    def key_of(self, row: dict[str, Any]) -> str:
        """A row's key, as the ``after``/``before`` parameter carries it (with the row's
        validity range when the search lists certifications: one dataset may have several)."""
        tie = [row[k] for k in ("validity_begin", "validity_end") if k in row]
        return json.dumps([row[k.lstrip("-")] for k in self.keys] + tie)

    def params(self, **changes: Any) -> str:
        """This search's query string, with ``changes``."""
        from urllib.parse import urlencode

        values = {"dataset_type": self.dataset_type, "where": self.where, "collections": ",".join(self.collections),
                  "find_first": "on" if self.find_first else "", "order": self.order, "size": self.size}
        values.update(changes)
        return urlencode({k: v for k, v in values.items() if v not in ("", None) and not (k == "start" and v == 1)
                          and not (k == "size" and v == PAGE_SIZE)})

    def python(self, url: str) -> str:
        """The same query from Python (the token in ``SKYBUTLER_TOKEN``)."""
        args = [repr(self.dataset_type)]
        if self.where:
            args.append(repr(self.where))
        if self.collections:
            args.append(f"collections={list(self.collections)!r}")
        args.append(f"find_first={self.ordered}")
        lines = ["from skybutler import Butler", "",
                 f"butler = Butler({url!r})  # the token is read from SKYBUTLER_TOKEN",
                 f"results = butler.query_datasets({', '.join(args)})"]
        if self.order:
            lines.append(f"results = results.order_by({self.order!r})")
        lines.append("table = results.to_arrow()  # or: for ref in results: ...")
        return "\n".join(lines)

    def cli(self, url: str) -> str:
        """The same query as a command (the token in ``SKYBUTLER_TOKEN``)."""
        words = ["skybutler", "query-datasets", url, self.dataset_type]
        if self.where:
            words += ["--where", self.where]
        if self.collections:
            words += ["--collections", ",".join(self.collections)]
        words.append("--find-first" if self.ordered else "--no-find-first")
        if self.order:
            words += ["--order-by", self.order]
        return " ".join(shlex.quote(w) for w in words)


def at_hand(universe: Any) -> list[tuple[str, list[str]]]:
    """The names a where-clause may use: each dimension (sky pixelizations left out) with its
    record fields as ``dimension.field``."""
    out = []
    for name in universe.dimensions:
        element = universe[name]
        if element.skypix is None:
            out.append((name, [f"{name}.{f}" for f in element.fields if f != "region"]))
    return out


def _key(text: str | None) -> list[Any] | None:
    """A page key from the query string (a JSON list), or None when absent or malformed."""
    try:
        value = json.loads(text) if text else None
    except ValueError:
        return None
    return value if isinstance(value, list) else None


def _int(text: str | None, default: int) -> int:
    try:
        return int(text) if text is not None else default
    except ValueError:
        return default


def _search_path(request: Request, user: User) -> list[str]:
    """Every RUN the user may read: where a search without named collections looks."""
    state: ServerState = request.app.state.skybutler
    with state.butler() as butler:
        return [c.name for c in butler.collections.query("*", ["run"]) if user.may(c.name, "read")]


def _cell(value: Any) -> str:
    return json.dumps(value) if isinstance(value, (list, dict)) else "" if value is None else str(value)


def _total(request: Request, user: User, search: Search, path: list[str]) -> str:
    """How many rows the whole answer has, as the user may see them: counted up to
    COUNT_LIMIT ("10,000+" past it), so that a huge answer costs a bounded read."""
    body = QueryRequest(spec=search.spec(path), limit=COUNT_LIMIT + 1)
    with user_query(request, body, user) as results:
        n = sum(table.num_rows for table in results.arrow_batches())
    return f"{COUNT_LIMIT:,}+" if n > COUNT_LIMIT else f"{n:,}"


def _page(request: Request, user: User, search: Search) -> dict[str, Any]:
    """The rows of the asked page (keys to the pages beside it) and the total, or the
    explanation of an empty answer."""
    columns: list[str] = []
    rows: list[dict[str, Any]] = []
    path = _search_path(request, user)
    body = search.request(path, paged=True)
    first = search.after is None and search.before is None
    with user_query(request, body, user) as results:
        for table in results.arrow_batches():
            columns = columns or table.column_names
            rows += table.to_pylist()
        explain = [] if rows or not first else results.explain()
    beyond = len(rows) > search.size  # another page lies beyond, in the direction read
    rows = rows[:search.size]
    if search.before is not None:
        rows.reverse()
    start = 1 if first or (search.before is not None and not beyond) else search.start
    older = bool(rows) and (beyond if search.before is not None else not first)
    newer = bool(rows) and (beyond if search.before is None else True)
    pager = {"start": start,
             "prev": search.params(before=search.key_of(rows[0]), start=max(start - search.size, 1)) if older else None,
             "next": search.params(after=search.key_of(rows[-1]), start=start + len(rows)) if newer else None}
    total = _total(request, user, search, path) if rows else "0"
    if rows:
        state: ServerState = request.app.state.skybutler
        with state.butler() as butler:
            states = butler.retention.states([uuid.UUID(r["dataset_id"]) for r in rows])
        for row in rows:
            row["state"] = states.get(uuid.UUID(row["dataset_id"]), "stored")
        columns = columns + ["state"]
    return {"columns": columns, "rows": [{k: _cell(v) for k, v in r.items()} for r in rows], "pager": pager,
            "total": total, "explain": explain}


@router.get("/search", name="web_search")
def search(request: Request, user: User = Depends(page_user)) -> Response:
    state: ServerState = request.app.state.skybutler
    wanted = Search.of(request)
    with state.butler() as butler:
        dataset_types = butler.query_dataset_types("*")
        collections = [c.name for c in butler.collections.query("*") if user.may(c.name, "read")]
    context: dict[str, Any] = {"search": wanted, "dataset_types": dataset_types, "known_collections": collections,
                               "terms": at_hand(state.universe), "error": None, "result": None}
    status = 200
    if wanted.dataset_type:
        try:
            context["result"] = _page(request, user, wanted)
        except SkybutlerError as err:
            context["error"], status = str(err), status_of(err)
        url = str(request.base_url).rstrip("/") + root(request)
        context["python"], context["cli"] = wanted.python(url), wanted.cli(url)
    return render(request, "search.html", status_code=status, user=user, **context)


def _download(request: Request, user: User, fmt: str) -> Response:
    wanted = Search.of(request)
    if not wanted.dataset_type:
        raise SkybutlerError("a download needs a dataset type")
    body = wanted.request(_search_path(request, user), paged=False)
    with user_query(request, body, user) as results:
        results._empty()  # a malformed or impossible query fails here, before anything is sent
    writer = _csv_stream if fmt == "csv" else _parquet_stream
    name = "".join(c if c.isalnum() or c in "-_" else "_" for c in wanted.dataset_type)
    response = ClosingStream(stream_batches(request, body, user, writer),
                             media_type="text/csv" if fmt == "csv" else "application/vnd.apache.parquet")
    response.headers["Content-Disposition"] = f'attachment; filename="{name}.{fmt}"'
    return response


def _flat(table: pa.Table) -> pa.Table:
    """Columns CSV can hold: nested values (region vertices) as JSON text."""
    for index, field in enumerate(table.schema):
        if pa.types.is_nested(field.type):
            text = pa.array([None if v is None else json.dumps(v) for v in table.column(index).to_pylist()], pa.string())
            table = table.set_column(index, field.name, text)
    return table


def _csv_stream(results: Any) -> Any:
    import pyarrow.csv as pcsv

    return _written(results, lambda sink, schema: pcsv.CSVWriter(sink, schema), _flat)


def _parquet_stream(results: Any) -> Any:
    import pyarrow.parquet as pq

    return _written(results, lambda sink, schema: pq.ParquetWriter(sink, schema), lambda table: table)


def _written(results: Any, open_writer: Any, prepare: Any) -> Any:
    """The bytes a pyarrow writer makes of the results, handed out batch by batch."""
    chunks, writer, schema = Chunks(), None, None
    for table in results.arrow_batches():
        table = prepare(table)
        if writer is None:
            schema = table.schema
            writer = open_writer(pa.PythonFile(chunks, mode="w"), schema)
        writer.write_table(table.cast(schema))
        yield chunks.take()
    if writer is not None:
        writer.close()
    yield chunks.take()


@router.get("/search.csv", name="web_search_csv")
def search_csv(request: Request, user: User = Depends(page_user)) -> Response:
    return _download(request, user, "csv")


@router.get("/search.parquet", name="web_search_parquet")
def search_parquet(request: Request, user: User = Depends(page_user)) -> Response:
    return _download(request, user, "parquet")
