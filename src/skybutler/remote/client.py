"""The transport of a butler opened on a server URL.

``Butler("http://host:port/repo", token=...)`` is the same :class:`~skybutler.Butler`
as a local one; its public methods hand their arguments to this transport, which
sends them to the server and turns the answers back into the objects a local butler
returns (refs, data IDs, records, tables, images), and the server's errors back
into the same skybutler exceptions.  Nothing is decided here that the server decides:
the query spec (its where-clause parsed into the expression tree) travels as is.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import tempfile
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import errors
from ..errors import DatasetNotFoundError, SkybutlerError
from ..models import DatasetRef, DatasetType, split_component
from ..timespan import as_timespan
from . import wire
from .batch import Batch, RemoteTransaction, is_write, refuse_immediate, refuse_read
from .ingest import IngestCalls
from .results import RemoteQueryResults, results_for

if TYPE_CHECKING:
    import pyarrow as pa

    from ..butler import Butler
    from ..query.builder import QuerySpec

#: seconds to wait for a server to answer (streams wait this long between chunks)
TIMEOUT = float(os.environ.get("SKYBUTLER_HTTP_TIMEOUT", "300"))


def open_remote(butler: Butler, url: str, collections: str | Sequence[str] | None, run: str | None,
                data_id: Mapping[str, Any] | None, token: str | None) -> None:
    """Make ``butler`` a remote one: its defaults kept here, its calls sent to the server at ``url``."""
    from .collections import RemoteCollections

    butler.root = url
    butler.config = butler.registry = butler.datastore = None
    butler.default_collections = [collections] if isinstance(collections, str) else list(collections or [])
    butler.run = run
    butler.default_data_id = dict(data_id or {})
    butler.recompute, butler.on_wait, butler._tracks_access = False, None, False
    butler._remote = RemoteTransport(butler, url, token)
    butler.token = butler._remote.token
    butler.universe = butler._remote.universe
    butler.collections = RemoteCollections(butler._remote)
    butler.collections.owner = butler
    butler.recovered = []


def _raise_for(response: Any) -> None:
    """The skybutler exception a server's error answer describes."""
    if response.status_code < 400:
        return
    try:
        body = json.loads(response.read() if not response.is_closed else response.content)
        name, message = body.get("error"), body.get("message") or body.get("detail")
    except (ValueError, AttributeError):
        name, message = None, response.text[:500] if response.is_closed else ""
    if not isinstance(message, str):
        message = json.dumps(message)[:2000]
    if response.status_code == 401:
        name = "AuthenticationError"
    wire.raise_error(name, message, response.status_code)


class RemoteTransport(IngestCalls):
    """HTTP calls to one served repository for one butler."""

    def __init__(self, butler: Butler, url: str, token: str | None):
        import httpx

        from ..dimensions import DimensionUniverse

        self._butler = butler
        self.url = url.rstrip("/")
        #: the writes of the ``transaction()`` block under way (None outside one)
        self.batch: Batch | None = None
        self.token = token = token if token is not None else os.environ.get("SKYBUTLER_TOKEN")
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        # Without TCP_NODELAY a request's body waits for the server to acknowledge its headers,
        # which loopback TCP delays by 40 ms: every call would cost that.
        transport = httpx.HTTPTransport(socket_options=[(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)])
        self.http = httpx.Client(base_url=f"{self.url}/api/v1/", headers=headers, transport=transport,
                                 timeout=httpx.Timeout(TIMEOUT, connect=30.0))
        try:  # a refused token (or any failure to open) leaves no connection behind
            info = self.get_json("info")
            if info["universe"] == "default":
                self.universe = DimensionUniverse.default()
            else:  # the repository's own universe, as the server describes it
                try:
                    self.universe = DimensionUniverse.from_config(info["universe_config"])
                except (KeyError, TypeError, ValueError) as err:
                    if isinstance(err, SkybutlerError):
                        raise
                    raise errors.ServerError(f"{url} described its dimension universe "
                                             f"{info.get('universe_name')!r} in a way this client cannot read: "
                                             f"{err}") from None
        except BaseException:
            self.http.close()
            raise
        self.user = info["user"]
        #: the largest request body the server takes (uploads are split to stay under it)
        self.max_request_bytes = int(info.get("max_request_bytes") or 256 * 1024 * 1024)
        #: the most dataset IDs one request may list (longer calls are split to stay under it)
        self.max_ids = int(info.get("max_ids") or wire.MAX_IDS)
        self._types: dict[str, DatasetType] = {}

    # -- HTTP -----------------------------------------------------------------

    def _send(self, method: str, path: str, **kwargs: Any) -> Any:
        import httpx

        if self.batch is not None and is_write(method, path):
            return self.batch.add(method, path, kwargs)
        refuse_immediate(self, method, path)
        try:
            response = self.http.request(method, path, **kwargs)
        except httpx.HTTPError as err:
            raise errors.ServerError(f"{self.url}: {err}") from None
        _raise_for(response)
        return response

    def get_json(self, path: str, **params: Any) -> Any:
        return self._send("GET", path, params=params).json()

    def post_json(self, path: str, body: Any = None, **kwargs: Any) -> Any:
        return self._send("POST", path, json=body, **kwargs).json()

    @contextlib.contextmanager
    def _stream(self, path: str, body: Any) -> Iterator[Any]:
        import httpx

        refuse_immediate(self, "POST", path)
        try:
            with self.http.stream("POST", path, json=body) as response:
                _raise_for(response)
                yield response
        except httpx.HTTPError as err:
            raise errors.ServerError(f"{self.url}: {err}") from None

    def stream_bytes(self, path: str, body: Any) -> Iterator[bytes]:
        with self._stream(path, body) as response:
            yield from response.iter_bytes(1 << 20)

    def stream_lines(self, path: str, body: Any) -> Iterator[str]:
        with self._stream(path, body) as response:
            yield from response.iter_lines()

    def stream_result(self, path: str, body: Any, progress: Callable[[int, int], None] | None, what: str) -> Any:
        """The result of a long call whose answer streams as JSON lines (``routes_ingest.streamed``:
        progress lines, then the result or an error): the progress is told to ``progress``, an error
        is raised as the server named it, and an answer cut short is a ServerError naming ``what``."""
        for line in self.stream_lines(path, body):
            item = json.loads(line)
            if "progress" in item:
                if progress is not None:
                    progress(*item["progress"])
            elif "error" in item:
                wire.raise_error(item["error"], item["message"])
            elif "result" in item:
                return item["result"]
        raise errors.ServerError(f"{self.url}: the server's answer to {what} was cut short")

    def arrow(self, path: str, body: Any) -> pa.Table:
        import pyarrow as pa

        with self._stream(path, body) as response:
            stream = _ResponseReader(response.iter_bytes())
            with pa.ipc.open_stream(pa.PythonFile(stream, mode="r")) as reader:
                table = reader.read_all()
            if stream.read(1) or stream.tail != _END_OF_STREAM:
                raise errors.ServerError(f"{self.url}: the server's table was cut short")
            return table

    def close(self) -> None:
        self.http.close()

    # -- refs and dataset types -------------------------------------------------

    def get_dataset_type(self, name: str) -> DatasetType:
        found = self._types.get(name)
        if found is None:
            found = self._types[name] = DatasetType(**self.get_json(f"dataset_types/{name}"))
        return found

    def ref_from_json(self, item: Mapping[str, Any]) -> DatasetRef:
        return wire.ref_from_json(item, self.get_dataset_type(item["dataset_type"]), self.universe)

    def query_dataset_types(self, pattern: str = "*") -> list[DatasetType]:
        return [DatasetType(**d) for d in self.get_json("dataset_types", pattern=pattern)]

    def register_dataset_type(self, name: str, dimensions: Iterable[str], storage_class: str, *,
                              is_calibration: bool = False, schema: Any = None, schema_table: str | None = None) -> bool:
        from ..formats import get_storage_class

        if schema is not None:
            raise SkybutlerError("through a server, register the type first, then declare its schema "
                                 "(declare_catalog_schema; CLI: declare-catalog-schema)")

        get_storage_class(storage_class)
        if self.batch is not None and name not in self._types:  # later writes of the block may use it
            self._types[name] = DatasetType(name=name, dimensions=tuple(dimensions), storage_class=storage_class,
                                            is_calibration=is_calibration)
            self.batch.new_types.append(name)
        return self.post_json("dataset_types", {"name": name, "dimensions": list(dimensions),
                                           "storage_class": storage_class, "is_calibration": is_calibration})

    def remove_dataset_type(self, name: str) -> None:
        self._send("DELETE", f"dataset_types/{name}")
        self._types.pop(name, None)

    # -- records ----------------------------------------------------------------

    def insert_records(self, element: str, records: Iterable[Mapping[str, Any]], *,
                       skip_existing: bool = False) -> int:
        return self.post_json("records", {"element": element, "records": wire.encode(list(records)),
                                     "skip_existing": skip_existing})

    def sync_record(self, element: str, record: Mapping[str, Any], *, update: bool = False) -> bool:
        return self.post_json("records/sync", {"element": element, "records": [wire.encode(record)], "update": update})

    def get_record(self, element: str, **identity: Any) -> Any:
        from ..dimensions import DimensionRecord

        el = self.universe[element]
        if el.key is not None and el.key.name in identity:
            identity[element] = identity.pop(el.key.name)
        values = {**{k: v for k, v in self._butler.default_data_id.items() if k in el.identity}, **identity}
        found = self.post_json("records/get", {"element": element, "identity": wire.encode(values)})
        return None if found is None else DimensionRecord(el, wire.decode(found))

    def expand_data_id(self, dimensions: Iterable[str], data_id: Mapping[str, Any] | None = None,
                       **kwargs: Any) -> Any:
        from ..dimensions import DataCoordinate

        group = self.universe.group(dimensions)
        given = {**{k: v for k, v in self._butler.default_data_id.items() if k in group.names}, **(data_id or {}),
                 **kwargs}
        values = self.post_json("data_ids/expand", {"dimensions": list(group.names), "data_id": wire.encode(given)})
        return DataCoordinate(group, {n: values[n] for n in group.names if n in values})

    # -- queries ------------------------------------------------------------------

    def query(self, spec: QuerySpec) -> RemoteQueryResults:
        from ..query import node_to_json, parse_expression

        refuse_read(self, "a query")
        if spec.where and spec.tree is None:
            tree = parse_expression(spec.where)  # syntax errors are the user's, found here
            spec = spec.model_copy(update={"tree": None if tree is None else node_to_json(tree)})
        return results_for(self, spec)

    def query_calibrations(self, dataset_types: str | Sequence[str], dimensions: Iterable[str], where: str = "", *,
                           datasets: Iterable[str] | str | None = None,
                           collections: str | Sequence[str] | None = None, bind: Mapping[str, Any] | None = None,
                           data_id: Mapping[str, Any] | None = None, **kwargs: Any) -> Any:
        from .results import calibration_results

        refuse_read(self, "a query")
        names = (dataset_types,) if isinstance(dataset_types, str) else tuple(dataset_types)
        dims = tuple(dimensions)
        body = {"dataset_types": list(names), "dimensions": list(dims), "where": where,
                "datasets": [datasets] if isinstance(datasets, str) else list(datasets or ()),
                "collections": self._butler._search_path(collections), "bind": wire.encode(dict(bind or {})),
                "data_id": wire.encode({**self._butler.default_data_id, **(data_id or {}), **kwargs})}
        return calibration_results(self, names, dims, self.post_json("query/calibrations", body))

    def search_catalog(self, dataset_type: str, shape: dict[str, Any], *,
                       collections: str | Sequence[str] | None = None,
                       columns: Sequence[str] | None = None) -> pa.Table:
        refuse_read(self, "a catalog search")
        return self.arrow("catalogs/search", {"dataset_type": dataset_type, "shape": shape, "columns": columns,
                                              "collections": self._butler._search_path(collections)})

    # -- datasets -------------------------------------------------------------------

    def _lookup(self, target: str | DatasetRef, data_id: Mapping[str, Any] | None,
                collections: str | Sequence[str] | None, timespan: Any, kwargs: Mapping[str, Any]) -> dict[str, Any]:
        if isinstance(target, DatasetRef):
            return {"id": str(target.id)}
        group = self.get_dataset_type(target).group(self.universe)
        defaults = {k: v for k, v in self._butler.default_data_id.items() if k in group.names}
        given = {**defaults, **(data_id or {}), **kwargs}
        return {"dataset_type": target, "data_id": wire.encode(given),
                "collections": self._butler._search_path(collections), "timespan": wire.encode(as_timespan(timespan))}

    def find_dataset(self, dataset_type: str, data_id: Mapping[str, Any] | None = None, *,
                     collections: str | Sequence[str] | None = None, timespan: Any = None,
                     **kwargs: Any) -> DatasetRef | None:
        refuse_read(self, "find_dataset")
        found = self.post_json("datasets/find", self._lookup(dataset_type, data_id, collections, timespan, kwargs))
        return None if found is None else self.ref_from_json(found)

    def get_dataset(self, id: uuid.UUID | str) -> DatasetRef | None:
        refuse_read(self, "get_dataset")
        try:
            found = self.post_json("datasets/find", {"id": str(id)})
        except DatasetNotFoundError:  # an ID the repository lacks (or hides from this user), or not an ID
            return None
        return None if found is None else self.ref_from_json(found)

    def _find_many(self, dataset_type: str, data_ids: Sequence[Any], collections: Sequence[str]) -> dict[Any, DatasetRef]:
        """``Butler._find_many``: the datasets of many data IDs (coordinates) of one type, found
        first in ``collections``: one request per ``max_ids``, where ``find_dataset`` takes one each."""
        refuse_read(self, "find_many")
        out: dict[Any, DatasetRef] = {}
        for begin in range(0, len(data_ids), self.max_ids):
            chunk = data_ids[begin:begin + self.max_ids]
            answer = self.post_json("datasets/find_many", {
                "dataset_type": dataset_type, "data_ids": [wire.encode(dict(d.required)) for d in chunk],
                "collections": list(collections)})
            out.update((d, self.ref_from_json(found)) for d, found in zip(chunk, answer) if found is not None)
        return out

    def get(self, dataset_type: str | DatasetRef, data_id: Mapping[str, Any] | None = None, *,
            collections: str | Sequence[str] | None = None, timespan: Any = None,
            parameters: Mapping[str, Any] | None = None, component: str | None = None, **kwargs: Any) -> Any:
        from ..formats.wire_objects import decode_object

        refuse_read(self, "get")
        dataset_type, component = split_component(dataset_type, component)
        kwargs.pop("recompute", None)
        kwargs.pop("verify_checksums", None)
        body = {**self._lookup(dataset_type, data_id, collections, timespan, kwargs),
                "parameters": wire.encode(dict(parameters)) if parameters else None, "component": component}
        response = self._send("POST", "datasets/get", json=body)
        return decode_object(response.headers["X-Skybutler-Object"], response.content)

    def exists(self, dataset_type: str | DatasetRef, data_id: Mapping[str, Any] | None = None, *,
               collections: str | Sequence[str] | None = None, full_check: bool = True, **kwargs: Any) -> bool:
        refuse_read(self, "exists")
        return self.post_json("datasets/exists", self._lookup(dataset_type, data_id, collections, None, kwargs))

    def get_uri(self, dataset_type: str | DatasetRef, data_id: Mapping[str, Any] | None = None, *,
                collections: str | Sequence[str] | None = None, **kwargs: Any) -> str:
        refuse_read(self, "get_uri")
        ref = dataset_type
        if not isinstance(ref, DatasetRef):
            ref = self.find_dataset(dataset_type, data_id, collections=collections, **kwargs)
            if ref is None:
                raise DatasetNotFoundError(f"no {dataset_type} dataset with data ID {({**(data_id or {}), **kwargs})}")
        return self.get_json(f"datasets/{ref.id}/url")["url"]

    def get_metadata(self, ref: DatasetRef) -> dict[str, Any]:
        refuse_read(self, "get_metadata")
        return wire.decode(self.post_json("datasets/metadata", {"id": str(ref.id)}))

    def download(self, ref: DatasetRef, start: int = 0, end: int | None = None) -> bytes:
        """Bytes ``[start, end)`` of a dataset's file (all of it by default)."""
        refuse_read(self, "a download")
        headers = {} if start == 0 and end is None else {"Range": f"bytes={start}-{'' if end is None else end - 1}"}
        return self._send("GET", f"datasets/{ref.id}/file", headers=headers).content

    def download_chunks(self, ref: DatasetRef, url: str | None = None) -> Iterator[bytes]:
        """A dataset's file in chunks, from the server's download route or from the pre-signed
        ``url`` it handed out (which needs no token: the bearer is never sent elsewhere)."""
        import httpx

        refuse_read(self, "a download")
        try:
            if url is None:
                stream = self.http.stream("GET", f"datasets/{ref.id}/file")
            else:
                stream = httpx.stream("GET", url, timeout=httpx.Timeout(TIMEOUT, connect=30.0))
            with stream as response:
                _raise_for(response)
                yield from response.iter_bytes(1 << 20)
        except httpx.HTTPError as err:
            raise errors.ServerError(f"{self.url}: {err}") from None

    # -- writes -----------------------------------------------------------------------

    def _run(self, run: str | None) -> str:
        run = run or self._butler.run
        if not run:
            raise SkybutlerError("no RUN to write to: pass run= here or when opening the Butler")
        return run

    def put_many(self, dataset_type: str, items: Iterable[tuple[Any, Mapping[str, Any]]], *,
                 run: str | None = None, id_mode: str = "random", ids: Sequence[uuid.UUID] | None = None,
                 adopt_leftovers: bool = False) -> list[DatasetRef]:
        from ..formats.wire_objects import encode_object

        if ids is not None or adopt_leftovers:
            raise SkybutlerError("ids and adopt_leftovers are for recompute and recovery, which run on the "
                                 "server's side, not through a remote butler")
        group = self.get_dataset_type(dataset_type).group(self.universe)
        defaults = {k: v for k, v in self._butler.default_data_id.items() if k in group.names}
        described, payloads = [], []
        for obj, data_id in items:
            kind, data = encode_object(obj)
            described.append({"kind": kind, "data_id": wire.encode({**defaults, **data_id})})
            payloads.append(data)
        header = {"dataset_type": dataset_type, "run": self._run(run), "id_mode": id_mode, "items": described}
        pending = self._pending_refs(dataset_type, [wire.decode(d["data_id"]) for d in described], header)
        refs = self._send("POST", "datasets/put", content=wire.pack(header, payloads),
                          headers={"Content-Type": "application/octet-stream"}).json()
        return pending if pending is not None else [self.ref_from_json(r) for r in refs]

    def _pending_refs(self, dataset_type: str, data_ids: list[dict[str, Any]],
                      header: dict[str, Any]) -> list[DatasetRef] | None:
        """Inside a transaction, the refs of a write that the server has not seen yet: their IDs
        chosen here (recorded in ``header`` for the server, which checks them), their data IDs the
        given values.  None outside a transaction."""
        if self.batch is None:
            return None
        from ..dimensions import DataCoordinate
        from ..models import REPRODUCIBLE_ID_MODES, reproducible_dataset_id, uuid7_batch

        dtype = self.get_dataset_type(dataset_type)
        group = dtype.group(self.universe)
        coords = [DataCoordinate.standardize(group, {k: v for k, v in d.items() if k in group.names})
                  for d in data_ids]
        if header["id_mode"] in REPRODUCIBLE_ID_MODES:
            ids = [reproducible_dataset_id(header["id_mode"], dataset_type, c, header["run"]) for c in coords]
        elif header["id_mode"] == "random":
            ids = uuid7_batch(len(coords))
        else:
            raise SkybutlerError(f"unknown id_mode {header['id_mode']!r}; use 'random' or one of "
                                 f"{', '.join(REPRODUCIBLE_ID_MODES)}")
        header["ids"] = [str(i) for i in ids]
        return [DatasetRef(i, dtype, c, header["run"]) for i, c in zip(ids, coords)]

    def ingest(self, dataset_type: str, files: Iterable[tuple[str | Path, Mapping[str, Any]]], *,
               run: str | None = None, transfer: str = "copy", formatter: str | None = None,
               id_mode: str = "random", ids: Sequence[Any] | None = None,
               skip_existing: bool = False) -> list[DatasetRef]:
        """Upload local files and ingest them on the server (the local files stay where they are)."""
        if ids is not None:
            raise SkybutlerError("ingest with explicit ids is not available through a remote butler")
        if transfer == "auto":  # nothing of the client's is inside the server's datastore: a copy
            transfer = "copy"
        if transfer not in ("copy", "move"):
            raise SkybutlerError(f"transfer {transfer!r} needs the server's file system; a remote butler "
                                 "uploads files (copy or move)")
        described, payloads, sources = [], [], []
        files_given = list(files)
        for path, data_id in files_given:
            path = Path(path)
            try:
                payloads.append(path.read_bytes())
            except OSError as err:
                raise errors.TransferError(f"cannot read {path}: {err.strerror or err}") from None
            described.append({"name": path.name, "data_id": wire.encode(dict(data_id))})
            sources.append(path)
        header = {"dataset_type": dataset_type, "run": self._run(run), "formatter": formatter,
                  "id_mode": id_mode, "skip_existing": skip_existing, "files": described}
        if self.batch is not None and skip_existing:
            raise SkybutlerError("ingest with skip_existing inside a transaction of a butler opened on a server "
                                 "URL: which files it skips is known only when the block is applied")
        pending = self._pending_refs(dataset_type, [dict(d) for _, d in files_given], header) \
            if self.batch is not None else None
        answer = self._send("POST", "datasets/ingest", content=wire.pack(header, payloads),
                            headers={"Content-Type": "application/octet-stream"}).json()
        refs = pending if pending is not None else [self.ref_from_json(r) for r in answer]
        if transfer == "move":
            def unlink() -> None:
                for path in sources:
                    path.unlink()

            if self.batch is not None:
                self.batch.after_commit.append(unlink)
            else:
                unlink()
        return refs

    def import_datasets(self, directory: str | Path, transfer: str = "copy", skip_existing: bool = True,
                        progress: Any = None) -> int:
        """Upload an export directory for the server to import, in batches each under its
        request-size limit and each imported in one transaction (``remote/imports.py``); returns
        the datasets imported."""
        from ..interchange import is_rubin_export
        from ..interchange.rubin_repository import export_rubin_repository, is_rubin_repository
        from .imports import send_import
        from .rubin_imports import send_rubin_import

        directory = Path(directory)
        if transfer not in ("copy", "auto"):
            raise SkybutlerError(f"transfer {transfer!r} needs the server's file system; an import into a server "
                                 "uploads the files (copy)")
        refuse_read(self, "an import")  # a transaction's batch could not hold a streamed upload
        if is_rubin_export(directory):  # read here, sent as a skybutler export's batches (remote/rubin_imports.py)
            return send_rubin_import(self._butler, directory, skip_existing, progress)
        if is_rubin_repository(directory):  # exported here by the Rubin butler, then sent as that export
            with tempfile.TemporaryDirectory(prefix=".rubin-repository-") as tmp:
                export = export_rubin_repository(directory, Path(tmp))
                return send_rubin_import(self._butler, export, skip_existing, progress)
        return send_import(self._butler, directory, skip_existing, progress)

    def extract_metadata(self, dataset_types: str | Sequence[str], *, collections: str | Sequence[str] | None = None,
                         where: str = "", replace: bool = False) -> int:
        """Have the server extract the facts of matching datasets, all in RUNs the caller may write
        (no collections and no defaults: every RUN the caller may write)."""
        names = [dataset_types] if isinstance(dataset_types, str) else list(dataset_types)
        searched = None if collections is None and not self._butler.default_collections else \
            self._butler._search_path(collections)
        return self.post_json("datasets/extract_metadata", {"dataset_types": names, "collections": searched,
                                                            "where": where, "replace": replace})

    def remove(self, refs: Iterable[DatasetRef]) -> int:
        from .batch import chunks, write_in_chunks

        parts = chunks([str(r.id) for r in refs], self.max_ids)
        counts = write_in_chunks(self, "datasets/remove", [{"ids": part} for part in parts])
        return None if self.batch is not None else sum(counts)

    def remove_runs(self, names: Iterable[str]) -> int:
        return self.post_json("runs/remove", {"runs": list(names)})

    def transaction(self) -> RemoteTransaction:
        """Keep the block's writes and send them as one batch when it ends (see ``remote/batch.py``)."""
        return RemoteTransaction(self)

    def recover(self) -> list[str]:
        return []  # the server settles its own journals

    def __getattr__(self, name: str) -> Any:
        raise SkybutlerError(f"Butler.{name} is not available through a server ({self.url})")


#: How an Arrow IPC stream ends (a continuation marker and a zero length).
_END_OF_STREAM = b"\xff\xff\xff\xff\x00\x00\x00\x00"


class _ResponseReader:
    """A read-only file over an HTTP response's byte chunks (for Arrow's stream reader); ``tail``
    keeps the last bytes read, to tell a complete stream from one cut short."""

    def __init__(self, chunks: Iterator[bytes]):
        self._chunks = chunks
        self._buffer = b""
        self.closed = False
        self.tail = b""

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        if size < 0:
            out, self._buffer = self._buffer, b""
        else:
            out, self._buffer = self._buffer[:size], self._buffer[size:]
        self.tail = (self.tail + out)[-8:]
        return out

    def close(self) -> None:
        self.closed = True
