"""``butler.transaction()`` on a butler opened on a server URL: the writes of the block are
kept here and sent, when the block ends without an error, as one request that the
server applies in one registry transaction -- all of them or none.

Why a batch and not a transaction held open on the server across requests: an open
transaction holds the registry's write lock (all of SQLite; rows of PostgreSQL) for as
long as a client takes between its calls, and ties the client to one server process.
A batch holds nothing until it arrives whole, and then takes as long as a local
``transaction()`` of the same writes.

What this means inside the block: a write answers at once without asking the server.
A ``put``/``put_many``/``ingest`` answers with refs whose IDs the client chose (random
ones as the server would make them, deterministic ones by the same rule; the server
checks both) and whose data IDs are the values given; a call answering a count or a
flag (``collections.register``, ``remove``) answers None.  Dataset reads (queries,
``get``, ``find_dataset``, ``exists``, downloads) are refused with a
:class:`~skybutler.errors.SkybutlerError`: they could not see the block's own writes.  So are
the writes the server applies at once (``IMMEDIATE``: access changes, cameras, visits, ...),
which a local transaction would undo with the block and a batch could not.
Lookups of definitions (dataset types, collections, dimension records) still go to the
server and show the repository as it was before the block.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from ..errors import SkybutlerError
from . import wire

if TYPE_CHECKING:
    from .client import RemoteTransport

#: (method, path or path prefix) of the requests that write: kept for the batch inside a transaction.
WRITES = {("POST", "collections"), ("PUT", "collections/chain"), ("POST", "collections/associate"),
          ("POST", "collections/disassociate"), ("POST", "collections/certify"),
          ("POST", "collections/decertify"), ("DELETE", "collections"), ("POST", "records"),
          ("POST", "records/sync"), ("POST", "dataset_types"), ("DELETE", "dataset_types/"),
          ("POST", "datasets/remove"), ("POST", "runs/remove"), ("POST", "datasets/put"),
          ("POST", "datasets/ingest"), ("POST", "provenance/record")}


#: Writes the server applies at once, which have no place in a batch, by the call that sends
#: them: refused inside a transaction, since the block could not undo them as a local
#: ``transaction()`` undoes them (an access change made in a block that then failed would stay).
IMMEDIATE = {"access/users": "access.add_user", "access/users/ungroup": "access.remove_from_group",
             "access/tokens": "access.create_token", "access/tokens/revoke": "access.revoke_token",
             "access/rules": "access.grant", "access/embargoes": "access.add_embargo",
             "access/embargoes/remove": "access.remove_embargo", "access/quotas": "access.set_quota",
             "instruments": "register_instrument", "visits/define": "define_visits", "skymaps": "register_skymap",
             "raws/ingest": "ingest_raws", "datasets/extract_metadata": "extract_metadata",
             "retention/apply": "retention.apply", "retention/purge": "retention.purge",
             "retention/move_to_cold": "retention.move_to_cold", "retention/stage": "retention.stage",
             "retention/recompute": "retention.recompute", "provenance/recompute": "provenance.recompute",
             "verify/repair": "repair", "catalogs/publish": "publish_catalog"}


def is_write(method: str, path: str) -> bool:
    return (method, path) in WRITES or (method == "DELETE" and path.startswith("dataset_types/"))


def refuse_immediate(transport: RemoteTransport, method: str, path: str) -> None:
    """Inside a remote transaction, refuse a write the server would apply at once (``IMMEDIATE``)."""
    if transport.batch is None or method == "GET":
        return
    name = IMMEDIATE.get(path) or ("declare_catalog_schema" if path.startswith("catalogs/schemas/") else None)
    if name is not None:
        raise SkybutlerError(f"{name} inside a transaction of a butler opened on a server URL: the server applies "
                             "it at once, so it could not be undone with the block's other writes; call it "
                             "before the block or after it")


class Deferred:
    """What a write inside a remote transaction answers at once: a response whose JSON is None."""

    status_code = 200

    def json(self) -> None:
        return None


class RemoteTransaction:
    """The context manager ``Butler.transaction()`` returns on a remote butler (nested blocks
    join the outermost, which alone sends)."""

    def __init__(self, transport: RemoteTransport):
        self._t = transport
        self._outer = False

    def __enter__(self) -> None:
        if self._t.batch is None:
            self._t.batch = Batch()
            self._outer = True

    def __exit__(self, kind: Any, *_: Any) -> None:
        if not self._outer:
            return
        batch, self._t.batch = self._t.batch, None
        if kind is not None:
            for name in batch.new_types:  # never registered: forget what the block assumed
                self._t._types.pop(name, None)
            return
        if batch.operations:
            try:
                self._t._send("POST", "batch", content=wire.pack({"operations": batch.operations}, batch.payloads),
                              headers={"Content-Type": "application/octet-stream"})
            except BaseException:
                for name in batch.new_types:
                    self._t._types.pop(name, None)
                raise
        for action in batch.after_commit:
            action()


class Batch:
    """The writes of one remote transaction, in order, with their binary payloads."""

    def __init__(self) -> None:
        self.operations: list[dict[str, Any]] = []
        self.payloads: list[bytes] = []
        self.new_types: list[str] = []
        self.after_commit: list[Any] = []

    def add(self, method: str, path: str, kwargs: dict[str, Any]) -> Deferred:
        """Keep one write request (its JSON body or query parameters, or a packed body)."""
        op: dict[str, Any] = {"method": method, "path": path}
        if "json" in kwargs:
            op["json"] = kwargs["json"]
        if "params" in kwargs:
            op["params"] = kwargs["params"]
        if "content" in kwargs:
            header, payloads = wire.unpack(kwargs["content"])
            op["header"] = header
            op["payloads"] = len(payloads)
            self.payloads.extend(payloads)
        self.operations.append(op)
        return Deferred()


def chunks(items: list[Any], size: int) -> list[list[Any]]:
    """``items`` in consecutive lists of at most ``size`` (one, empty, for no items)."""
    return [items[i:i + size] for i in range(0, len(items), size)] or [[]]


def write_in_chunks(transport: RemoteTransport, path: str, bodies: list[dict[str, Any]]) -> list[Any]:
    """A write too long for one request (more IDs than the server's ``max_ids``), as one request
    per body applied in one transaction -- all or none, as one request would be: sent as a batch,
    or joining the block's batch inside a transaction.  Each body's answer (None inside a block)."""
    if len(bodies) == 1 or transport.batch is not None:
        return [transport.post_json(path, body) for body in bodies]
    operations = [{"method": "POST", "path": path, "json": body} for body in bodies]
    return transport._send("POST", "batch", content=wire.pack({"operations": operations}, []),
                           headers={"Content-Type": "application/octet-stream"}).json()


def call_in_parts(transport: RemoteTransport, path: str, body: dict[str, Any], ids: list[str]) -> Any:
    """The answer of a call naming ``ids`` (a retention call): one request, or, past the server's
    ``max_ids``, its parts (``body`` with one chunk of IDs each) in one ``POST /batch`` that the
    server joins back into the one call -- one plan and one transaction, as atomic as the local
    call, where separate requests would leave the first parts done when a later one failed."""
    refuse_immediate(transport, "POST", path)
    if len(ids) <= transport.max_ids:
        return transport.post_json(path, {**body, "ids": ids})
    operations = [{"method": "POST", "path": path, "json": {**body, "ids": part}}
                  for part in chunks(ids, transport.max_ids)]
    return transport._send("POST", "batch", content=wire.pack({"operations": operations}, []),
                           headers={"Content-Type": "application/octet-stream"}).json()[0]


def refuse_read(transport: RemoteTransport, name: str) -> None:
    """Refuse a dataset read inside a remote transaction, saying why."""
    if transport.batch is not None:
        raise SkybutlerError(f"{name} inside a transaction of a butler opened on a server URL: the block's "
                             "writes are sent together when it ends, so a read now could not see them; "
                             "read before the block or after it")
