"""Query routes: the three kinds of query, streamed as JSON lines or Arrow IPC, with
their counts and explanations.

The body carries the client's :class:`~skybutler.query.builder.QuerySpec` (its
where-clause already parsed into the expression tree); the server replaces its
collections with the ones the user may read and runs it through the same
``Butler.query`` a local user calls.  Results leave in batches of ~10,000 as they
are read, so neither side holds a large answer whole; a user's queries beyond their
concurrency limit wait in a queue.
"""

from __future__ import annotations

import contextlib
import gc
import io
import json
from collections.abc import Iterator
from typing import Any

import pyarrow as pa
from fastapi import APIRouter, Depends, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from ..access import User
from ..butler import Butler
from ..embargo import EmbargoCheck
from ..errors import SkybutlerError
from ..query.builder import QuerySpec
from ..remote import wire
from . import authz
from .app import TooManyRequests, current_user
from .embargoed import EmbargoedDataIds, EmbargoedDatasets, FallThrough, supported_keys
from .state import ServerState

router = APIRouter()


class QueryRequest(BaseModel):
    spec: dict[str, Any]
    order: list[str] = []
    limit: int | None = None
    offset: int = 0
    after: list[Any] | None = None  # keyset paging: the order columns' values of the row to follow
    records: bool = False  # each data ID (a ref's too) with its records: with_dimension_records()


@contextlib.contextmanager
def user_query(request: Request, body: QueryRequest, user: User) -> Iterator[Any]:
    """The results of the request's query as the user may see them, with a butler and one
    of the user's query slots held until the block ends; its statements are stopped once they
    have run ``query_timeout`` seconds in all, with a QueryTimeoutError."""
    with _user_query(request, body, user) as (_, results):
        yield results


@contextlib.contextmanager
def _user_query(request: Request, body: QueryRequest, user: User) -> Iterator[tuple[Butler, Any]]:
    with query_slot(request, user) as butler:
        yield butler, _results(butler, user, body)


@contextlib.contextmanager
def query_slot(request: Request, user: User) -> Iterator[Butler]:
    """A butler, with one of the user's query slots held and the query time limit running."""
    state: ServerState = request.app.state.skybutler
    slot = state.user_slot(user.name)
    if not slot.acquire(timeout=state.settings.queue_timeout):
        raise TooManyRequests(f"user {user.name!r} has {state.settings.user_concurrency} queries running and "
                              f"this one waited {state.settings.queue_timeout:g} s for a turn")
    try:
        with state.butler() as butler, butler.registry.time_limit(state.settings.query_timeout):
            yield butler
    finally:
        slot.release()


def _results(butler: Butler, user: User, body: QueryRequest) -> Any:
    fields = dict(body.spec)
    fields["bind"] = wire.decode(fields.get("bind") or {})
    fields["data_id"] = wire.decode(fields.get("data_id") or {})
    spec = QuerySpec(**fields)
    if spec.collections:
        spec = spec.model_copy(update={"collections": tuple(authz.readable_path(butler, user, spec.collections))})
    results = butler.query(spec)
    if body.order:
        results = results.order_by(*body.order)
    if body.after is not None:
        results = results.after(body.after)
    if body.records:
        results = results.with_dimension_records()
    results.streaming = True
    check = EmbargoCheck(butler, user)
    if user.embargoes and spec.kind == "datasets" and any(map(check.applies_to, spec.dataset_types)):
        fall = FallThrough(butler, check, spec) if spec.find_first and len(spec.collections) > 1 else None
        return EmbargoedDatasets(results, check, spec.dataset_types, body.limit, body.offset, fall)
    if user.embargoes and spec.kind == "data_ids" and any(map(check.applies_to, spec.datasets)):
        supported = [supported_keys(butler, check, spec, t) for t in spec.datasets if check.applies_to(t)]
        return EmbargoedDataIds(results, supported, body.limit, body.offset)
    if body.limit is not None:
        results = results.limit(body.limit, body.offset)
        results.streaming = True
    return results


def stream_batches(request: Request, body: QueryRequest, user: User, lines: Any) -> Iterator[bytes]:
    """The answer's batches; the query's time limit counts the server's work only, not the time
    a batch waits for the client to take it (a slow reader holds its own slot, not the clock)."""
    with _user_query(request, body, user) as (butler, results):
        for number, batch in enumerate(lines(results), 1):
            with butler.registry.time_limit_paused():
                yield batch
            if number % _COLLECT_EVERY == 0:
                # Each batch of data IDs shares one class (their implied values are looked up
                # together), which only the cyclic collector frees: collect now and then, so
                # that what was sent does not pile up until it would run on its own.
                gc.collect()


#: Batches (of ~10,000 results) sent between two garbage collections.
_COLLECT_EVERY = 5


def _json_lines(results: Any) -> Iterator[bytes]:
    """One JSON object a line (a ref, a data ID or a record), then ``{"$end": N}`` so that the
    client can tell a complete answer from one cut short (or ``{"$error": NAME, "message": ...}``
    if the query fails once its answer has begun, e.g. by running out of time)."""
    from ..dimensions import DimensionRecord
    from ..models import DatasetRef

    def line(item: Any) -> Any:
        if isinstance(item, DatasetRef):
            out = wire.ref_to_json(item)
            if item.data_id.has_records():
                out["records"] = wire.records_to_json(item.data_id)
            return out
        if isinstance(item, DimensionRecord):
            return wire.encode(item)
        out = wire.encode(item.mapping)
        if item.has_records():  # beside the values: no dimension is named so
            out = {**out, "$records": wire.records_to_json(item)}
        return out

    count = 0
    try:
        for batch in results._converted_batches():
            count += len(batch)
            yield "".join(json.dumps(line(item), separators=(",", ":")) + "\n" for item in batch).encode()
    except SkybutlerError as err:  # after the first line the status is sent: the error goes as a line
        yield json.dumps({"$error": type(err).__name__, "message": str(err)}).encode() + b"\n"
        return
    yield json.dumps({"$end": count}).encode() + b"\n"


class Chunks(io.RawIOBase):
    """A write-only stream handing out what was written since the last ``take``."""

    def __init__(self) -> None:
        self.parts: list[bytes] = []

    def writable(self) -> bool:
        return True

    def write(self, data: Any) -> int:
        self.parts.append(bytes(data))
        return len(data)

    def take(self) -> bytes:
        out = b"".join(self.parts)
        self.parts.clear()
        return out


def _arrow_stream(results: Any) -> Iterator[bytes]:
    chunks = Chunks()
    writer = schema = None
    for table in results.arrow_batches():
        if writer is None:
            schema = table.schema
            writer = pa.ipc.new_stream(pa.PythonFile(chunks, mode="w"), schema)
        elif table.schema != schema:
            table = table.cast(schema)
        writer.write_table(table)
        yield chunks.take()
    if writer is not None:
        writer.close()
    yield chunks.take()


class ClosingStream(StreamingResponse):
    """A streamed answer whose source is closed as soon as the response ends, finished or not:
    a client that goes away mid-stream gives back its query slot and butler at once."""

    def __init__(self, source: Iterator[bytes], media_type: str):
        super().__init__(source, media_type=media_type)
        self._source = source

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        from starlette.concurrency import run_in_threadpool

        try:
            await super().__call__(scope, receive, send)
        finally:
            await run_in_threadpool(_close, self._source)


def _close(source: Any) -> None:
    try:
        source.close()
    except ValueError:  # still running in another thread: it finishes, and is closed when collected
        pass


@router.post("/query/rows")
def query_rows(request: Request, body: QueryRequest, user: User = Depends(current_user)) -> StreamingResponse:  # noqa: E501
    """The results as JSON lines (refs, data IDs or records); errors in the query come before
    any line is sent."""
    with user_query(request, body, user) as results:
        results._empty()  # an invalid or ambiguous query fails here, with its status
    return ClosingStream(stream_batches(request, body, user, _json_lines), media_type="application/x-ndjson")


@router.post("/query/arrow")
def query_arrow(request: Request, body: QueryRequest, user: User = Depends(current_user)) -> StreamingResponse:
    """The results as an Arrow IPC stream (the columns of ``to_arrow``)."""
    with user_query(request, body, user) as results:
        results._empty()
    return ClosingStream(stream_batches(request, body, user, _arrow_stream),
                          media_type="application/vnd.apache.arrow.stream")


@router.post("/query/count")
def query_count(request: Request, body: QueryRequest, user: User = Depends(current_user)) -> int:
    with user_query(request, body, user) as results:
        return results.count()


@router.post("/query/any")
def query_any(request: Request, body: QueryRequest, user: User = Depends(current_user)) -> bool:
    with user_query(request, body, user) as results:
        return results.any()


@router.post("/query/explain")
def query_explain(request: Request, body: QueryRequest, user: User = Depends(current_user)) -> list[str]:
    with user_query(request, body, user) as results:
        return results.explain()
