"""Raw ingestion through a server: the files' headers are read here, by the very code a local
ingest runs (``ingest/raws.py``), and each batch of files is uploaded, streamed a chunk at a
time, to ``POST /raws/ingest``, which reads them again and writes their exposure records, the
datasets and the files in one transaction (``server/routes_ingest.py``).

A batch never exceeds the server's request-size limit: the files are split by size (a single
file above the limit is a failure of that file, never sent).  The raws already in the RUN are
found by one query per batch and not uploaded again.  A refusal that would refuse every file
alike (no right to write the RUN, over quota, a camera only an administrator may register, an
unreachable server) stops the ingest at once; any other refusal of a batch has its files sent
one by one, so one bad file does not hold the others back, as locally.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .. import errors
from ..errors import SkybutlerError
from . import wire

if TYPE_CHECKING:
    from ..butler import Butler
    from ..ingest.raws import IngestResult, RawFile

#: the transfers an upload can do: the server keeps its own copy of each file
UPLOADS = ("copy", "move")
#: bytes allowed per file for the framing and the batch's JSON header, when splitting by size
FRAME_BYTES = 4096
#: errors that would refuse any file of the ingest alike: no point in sending the files one by one
FATAL = (errors.AuthenticationError, errors.PermissionDeniedError, errors.QuotaExceededError, errors.ServerError)


def check_transfer(transfer: str) -> str:
    """The transfer an upload does for ``transfer`` (auto: copy), or a clear refusal of one that
    would need the server to reach this machine's files."""
    if transfer == "auto":
        return "copy"
    if transfer not in UPLOADS:
        raise SkybutlerError(f"transfer {transfer!r} would have the server's datastore use a path on this machine; "
                             "through a server raws are uploaded: use --transfer copy or move")
    return transfer


def send_raws(butler: Butler, run: str, batch: list[tuple[Path, RawFile]], transfer: str,
              result: IngestResult) -> None:
    """Upload ``batch`` (files read here) into ``run`` in size-bounded parts; see the module doc."""
    from ..ingest.raws import IngestFailure

    transport = butler._remote
    for part in _parts(_not_ingested(butler, run, batch, result), transport.max_request_bytes, result):
        try:
            _send(butler, run, part, transfer, result)
            continue
        except FATAL:
            raise
        except SkybutlerError:
            pass  # another ingest may have got there first, or one file is bad: each on its own
        for path, raw in part:
            try:
                _send(butler, run, [(path, raw)], transfer, result)
            except FATAL:
                raise
            except SkybutlerError as err:
                result.failures.append(IngestFailure(str(path), str(err)))


def _not_ingested(butler: Butler, run: str, batch: list[tuple[Path, RawFile]],
                  result: IngestResult) -> list[tuple[Path, RawFile]]:
    """The files whose raw is not in ``run`` yet (the others go to ``already_ingested``): one query."""
    if not batch or not butler.collections.exists(run) or not butler.query_dataset_types("raw"):
        return batch
    exposures = sorted({r.meta.exposure_id for _, r in batch})
    found = {}
    for instrument in sorted({r.meta.instrument for _, r in batch}):
        where = f"instrument = camera AND exposure IN ({', '.join(map(str, exposures))})"
        for ref in butler.query_datasets("raw", where, collections=[run], find_first=False,
                                         bind={"camera": instrument}):
            found[(ref.data_id["instrument"], ref.data_id["exposure"], ref.data_id["detector"])] = ref
    todo = []
    for path, raw in batch:
        ref = found.get((raw.meta.instrument, raw.meta.exposure_id, raw.meta.detector))
        if ref is not None:
            result.already_ingested.append((str(path), ref))
        else:
            todo.append((path, raw))
    return todo


def _parts(batch: list[tuple[Path, RawFile]], limit: int,
           result: IngestResult) -> Iterator[list[tuple[Path, RawFile]]]:
    """``batch`` cut into parts whose upload stays under ``limit`` bytes."""
    from ..ingest.raws import IngestFailure

    part: list[tuple[Path, RawFile]] = []
    size = FRAME_BYTES
    for path, raw in batch:
        need = path.stat().st_size + FRAME_BYTES
        if need + FRAME_BYTES > limit:
            result.failures.append(IngestFailure(str(path), f"{need - FRAME_BYTES} bytes: above the server's "
                                                            f"request-size limit of {limit} bytes"))
            continue
        if part and size + need > limit:
            yield part
            part, size = [], FRAME_BYTES
        part.append((path, raw))
        size += need
    if part:
        yield part


def upload_body(run: str, files: Sequence[tuple[str, Path, dict[str, Any]]]) -> Iterator[bytes]:
    """The streamed body of ``POST /raws/ingest``: a ``batch.json`` frame naming each file's upload
    name and the data ID its header gave here, then the files (``wire.frame_files``)."""
    header = json.dumps({"run": run, "files": [{"name": name, "data_id": data_id} for name, _, data_id in files]})
    encoded = header.encode()
    yield len(b"batch.json").to_bytes(4, "big") + b"batch.json" + len(encoded).to_bytes(8, "big") + encoded
    yield from wire.frame_files([(name, path) for name, path, _ in files])


def _send(butler: Butler, run: str, part: list[tuple[Path, RawFile]], transfer: str, result: IngestResult) -> None:
    """Upload one part; what the server stored goes to ``result`` (a moved file is deleted here once
    the server has committed it)."""
    from ..ingest.raws import raw_data_id

    transport = butler._remote
    files = [(f"{number}/{path.name}", path, raw_data_id(raw.meta)) for number, (path, raw) in enumerate(part)]
    answer = transport._send("POST", "raws/ingest", params={"run": run}, content=upload_body(run, files),
                             headers={"Content-Type": "application/octet-stream"}).json()
    by_name = {name: path for name, path, _ in files}
    stored = [(by_name[item["name"]], transport.ref_from_json(item["ref"])) for item in answer["ingested"]]
    result.refs += [ref for _, ref in stored]
    result.already_ingested += [(str(by_name[item["name"]]), transport.ref_from_json(item["ref"]))
                                for item in answer["already_ingested"]]
    if transfer == "move":
        for path, _ in stored:
            path.unlink(missing_ok=True)


# -- the transport's ingest calls: what ``Butler``'s ingest methods send to the server -------------


class IngestCalls:
    """The ingest methods of :class:`~skybutler.remote.client.RemoteTransport` (a base of it): the
    same names and arguments as the ``Butler`` methods marked ``@served`` that send them here."""

    _butler: Butler

    def ingest_raws(self, paths_or_dirs: Any, *, transfer: str = "auto", **options: Any) -> IngestResult:
        """``Butler.ingest_raws``: the headers are read here, by the code a local ingest runs, and each
        batch is uploaded; a transfer the server cannot do is refused before any file is read."""
        from ..ingest.raws import read_and_store_raws

        butler = self._butler
        return read_and_store_raws(butler, paths_or_dirs, transfer=check_transfer(transfer),
                                   upload=lambda run, batch, how, result: send_raws(butler, run, batch, how, result),
                                   **options)

    def _raw_transfer(self, transfer: str) -> str:
        """``Butler._raw_transfer``: the transfer an upload does (see :func:`check_transfer`)."""
        return check_transfer(transfer)

    def _watch_scope(self, directory: str) -> str:
        """``Butler._watch_scope``: one watcher per directory; an object-store prefix is refused (its
        objects are staged in the repository's bookkeeping directory, on the server's machine)."""
        if "://" in directory:
            raise SkybutlerError(f"watching {directory} through a server is not offered: its objects are staged "
                                 "in the repository's bookkeeping directory; run the watcher on the server's "
                                 "machine, or watch a local directory")
        return "directory"

    def _register_camera(self, instrument: Any, update: bool) -> tuple[Any, Any]:
        return register_camera(self._butler, instrument, update)

    def define_visits(self, *, instrument: str | None = None, exposures: Any = None, where: str | None = None,
                      observation_types: Sequence[str] | None = None) -> Any:
        from ..ingest.visits import VISIT_OBSERVATION_TYPES

        return define_visits(self._butler, instrument, exposures, where,
                             VISIT_OBSERVATION_TYPES if observation_types is None else observation_types)

    def register_skymap(self, name: str, kind: str = "rings", *, progress: Any = None,
                        **config: Any) -> tuple[Any, bool]:
        return register_skymap(self._butler, name, kind, progress, config)


# -- cameras, visits, sky maps: run by the server (``server/routes_ingest.py``) ----------------


def register_camera(butler: Butler, instrument: Any, update: bool) -> tuple[Any, Any]:
    """Have the server register (or ``update``) a camera from its description; returns (the
    description the repository keeps, whether it was new -- or, with ``update``, what changed)."""
    from ..instruments import Instrument
    from ..instruments import register_instrument as register_in_process

    answer = butler._remote.post_json("instruments", {"description": instrument.to_dict(), "update": update})
    kept = Instrument.from_dict(answer["description"], source=f"{butler._remote.url}")
    # The same description as the caller's camera: keep the caller's object, which may be a
    # class of its own (SimCam's header checks) that a description alone does not carry.
    if kept.to_dict() == instrument.to_dict():
        kept = instrument
    register_in_process(kept)
    return kept, (answer["changed"] if update else answer["new"])


def define_visits(butler: Butler, instrument: str | None, exposures: Any, where: str | None,
                  observation_types: Sequence[str]) -> Any:
    """Have the server define the visits (the same :class:`~skybutler.ingest.visits.VisitResult`)."""
    from ..ingest.visits import VisitResult

    answer = butler._remote.post_json("visits/define", {
        "instrument": instrument, "exposures": None if exposures is None else [int(e) for e in exposures],
        "where": where, "observation_types": list(observation_types)})
    return VisitResult(defined=[tuple(v) for v in answer["defined"]], existing=[tuple(v) for v in answer["existing"]],
                       skipped=[tuple(v) for v in answer["skipped"]], unplaced=dict(answer["unplaced"]))


def register_skymap(butler: Butler, name: str, kind: str, progress: Any, config: dict[str, Any]) -> tuple[Any, bool]:
    """Have the server register a sky map, its progress told to ``progress`` as it goes."""
    from ..ingest.skymaps import make_skymap

    result = butler._remote.stream_result("skymaps", {"name": name, "kind": kind, "config": wire.encode(config)},
                                          progress, "a sky-map registration")
    settings = dict(result["config"])
    settings.pop("name", None)
    return make_skymap(name, **settings), bool(result["new"])
