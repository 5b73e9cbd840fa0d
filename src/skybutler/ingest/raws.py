"""Ingest raw exposure files: read their headers, register their records, store them.

:func:`ingest_raws` is the whole job.  For every raw file it reads the header
(in a process pool for big batches, because header parsing is bound to one CPU by
the GIL; in this process for small ones), translates it into
:class:`~skybutler.instruments.ObservationMetadata`, and then:

0. each file is opened once: one walk of its headers checks it for its formatter,
   gives its facts (the WCS built once) and the cards to translate (:class:`RawFile`);
   ``butler.ingest`` takes those and does not open it again;

1. recognises each file's camera from its header and, the first time the
   repository meets a camera, registers it (its records and description, see
   :mod:`.instruments`) and says so; a camera registered earlier is described by
   the repository's own copy of its description;
2. inserts the ``exposure``, ``day_obs`` and ``group`` records that are new;
3. registers the ``raw`` dataset type (instrument, exposure, detector; ``Image``)
   if it is missing;
4. stores the files with ``butler.ingest`` in batches, one call per batch, with
   deterministic dataset IDs: the same raw has the same ID in every repository.

A whole-exposure file (DECam, MegaPrime: one image extension per detector) is one raw per
detector, all sharing the file, each read from its own HDU (:mod:`.raw_extensions`,
:mod:`skybutler.shared_files`); its detectors always go into one batch, so it is placed once.

Steps 1-4 run chunk by chunk as the headers come in: while a pool reads the next
files, this process registers and stores those read (an exposure's record is its
first file's).

A file that cannot be ingested (unreadable, unknown instrument, missing keys, a
filter or detector the camera does not have, a data ID given by another file of
the same batch) is reported in :attr:`IngestResult.failures` with its reason
and skipped; the others go in.  A file already ingested is reported in
:attr:`IngestResult.already_ingested` and left alone, so running the same
command twice, or over a directory that grows every night, just works.  Each
``butler.ingest`` batch is all or nothing; if one fails as a whole, its files are
retried one by one so a single bad file does not hold the rest back.

On a butler opened on a server URL the headers are read here all the same, and each batch is
uploaded instead (``remote/ingest.py``); the server reads the files again and writes their
records, datasets and files in one transaction (:func:`store_raws`).
"""

from __future__ import annotations

import functools
import itertools
import os
import time
from collections import ChainMap
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import (
    DatasetConflictError,
    DatastoreError,
    FormatterError,
    MissingExtraError,
    SkybutlerError,
    TransferError,
)
from ..extras import require
from ..formats import ExaminedFile, examine_file, get_formatter, get_storage_class
from ..instruments import (
    Instrument,
    ObservationMetadata,
    RawHeaderError,
    day_obs_record,
    exposure_record,
    group_record,
    metadata_from_header,
    offline,
)
from ..instruments import register_instrument as register_in_process
from ..instruments.headers import ReadRecorder, translator_for
from ..models import DatasetRef
from ..process_pools import process_pool
from .instruments import instrument_names, load_repository_instruments, register_instrument
from .raw_extensions import read_detectors

__all__ = ["RAW_DIMENSIONS", "IngestFailure", "IngestResult", "RawFile", "find_raw_files", "ingest_raws",
           "raw_data_id", "raw_run", "read_and_store_raws", "read_raw_metadata",
           "read_raws", "store_raws"]

#: The dimensions of the ``raw`` dataset type.
RAW_DIMENSIONS = ("instrument", "exposure", "detector")
#: File name patterns a directory is searched for.
RAW_SUFFIXES = (".fits", ".fit", ".fits.gz", ".fits.fz")
#: The storage class of the ``raw`` dataset type when ingest registers it.
RAW_STORAGE_CLASS = "Image"
#: Below this many files headers are read in this process (a pool costs ~0.5 s to start).
POOL_THRESHOLD = 200
#: Files per ``butler.ingest`` call (each all or nothing); a pool's reading goes on while a batch is stored.
BATCH_SIZE = 500


@dataclass(frozen=True)
class IngestFailure:
    """A file that was not ingested, and why."""

    path: str
    reason: str

    def __str__(self) -> str:
        return f"{self.path}: {self.reason}"


@dataclass
class IngestResult:
    """What :func:`ingest_raws` did, file by file."""

    refs: list[DatasetRef] = field(default_factory=list)
    already_ingested: list[tuple[str, DatasetRef]] = field(default_factory=list)
    failures: list[IngestFailure] = field(default_factory=list)
    runs: list[str] = field(default_factory=list)
    registered: list[str] = field(default_factory=list)  # one line per camera registered on first use
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.failures

    def summary(self) -> str:
        return (f"{len(self.refs)} raw(s) ingested, {len(self.already_ingested)} already ingested, "
                f"{len(self.failures)} failed")


def raw_run(instrument: str) -> str:
    """The default RUN of an instrument's raws."""
    return f"{instrument}/raw/all"


def find_raw_files(paths_or_dirs: Iterable[str | Path]) -> list[Path]:
    """Files given explicitly, plus raw-looking files (``*.fits`` ...) under given directories,
    in a stable order, without duplicates."""
    found: dict[Path, None] = {}
    for item in paths_or_dirs:
        path = Path(item)
        if path.is_dir():
            for directory, dirs, files in os.walk(path):
                dirs.sort()
                for name in sorted(files):
                    if name.lower().endswith(RAW_SUFFIXES) and not name.startswith("."):
                        found.setdefault(Path(directory, name).absolute())
        else:
            found.setdefault(path.absolute())
    return list(found)


@dataclass(frozen=True)
class RawFile:
    """One raw file, read once: its observation metadata and what its formatter's check made of it
    (the file's facts), handed to ``butler.ingest`` so the file is not opened again."""

    meta: ObservationMetadata
    examined: ExaminedFile
    #: A whole-exposure file (one image extension per detector, as DECam and MegaPrime write):
    #: each detector's own, its ``examined.hdu`` its HDU (:mod:`.raw_extensions`); () for a raw
    #: file of one detector.
    detectors: tuple[RawFile, ...] = ()


def _another_detector(headers: Sequence[Any], detector: int, path: str | Path) -> int | None:
    """For a file whose empty primary HDU is followed by several extensions (a DECam or MegaCam
    exposure in one file): the detector of its last extension if it is not ``detector``
    (extensions of one detector's amplifiers, as LSSTCam writes them, give the same one)."""
    if len(headers) < 3 or headers[0].get("NAXIS", 0) != 0:
        return None
    primary, last = headers[0], ChainMap(headers[0], headers[-1])  # read through, not copied
    try:
        translator = translator_for(last, str(path))
        cards = _DETECTOR_CARDS.get(translator)
        if cards is None:
            probe = ReadRecorder(dict(last))
            translator(probe, filename=str(path)).to_detector_num()
            cards = _DETECTOR_CARDS[translator] = tuple(probe.read)
        if all(card in primary or card not in headers[-1] for card in cards):
            return None  # the detector is the primary's, or the extension adds nothing it is read from
        other = translator(last, filename=str(path)).to_detector_num()
    except Exception:  # the last extension names no detector: nothing to compare
        return None
    return other if other != detector else None


#: The cards each translator reads a detector number from (learnt from its first file).
_DETECTOR_CARDS: dict[type, tuple[str, ...]] = {}


def _translation_header(headers: Sequence[Any]) -> dict[str, Any]:
    """The cards a header translator reads: the primary header's, with the first extension's it
    lacks when the primary holds no data (a raw whose pixels are in HDU 1); commentary cards left out."""
    merged: dict[str, Any] = {}
    chosen = headers[:1]
    if len(headers) > 1 and headers[0].get("EXTEND") and headers[0].get("NAXIS", 0) == 0:
        chosen = headers[:2]
    for header in chosen:
        for card in header.cards:
            if card.keyword not in ("COMMENT", "HISTORY", ""):
                merged.setdefault(card.keyword, card.value)
    return merged


def read_raw_metadata(path: str | Path, storage_class: str = RAW_STORAGE_CLASS,
                      formatter: str | None = None) -> RawFile | IngestFailure:
    """One raw file, read once (see :class:`RawFile`; a whole-exposure file's image extensions are
    checked in a second open, :attr:`RawFile.detectors`), or an :class:`IngestFailure` saying why not.

    Its formatter (``formatter``, default: ``storage_class``'s) checks it and takes its facts while
    walking its headers; the same headers are translated.  Never raises for a bad file, so it can
    run in a worker process over thousands.
    """
    try:
        kind = get_storage_class(storage_class)
        examined = examine_file(path, get_formatter(formatter or kind.default_formatter), kind)
        headers = getattr(examined.checked, "headers", None)
        if not headers:
            return IngestFailure(str(path), f"formatter {formatter or kind.default_formatter!r} gives no FITS "
                                            "headers to translate")
        meta = metadata_from_header(_translation_header(headers), path)
        if _another_detector(headers, meta.detector, path) is not None:  # a whole exposure in one file
            detectors = tuple(RawFile(m, e) for m, e in read_detectors(path, headers, storage_class))
            return RawFile(detectors[0].meta, detectors[0].examined, detectors)
        # Only the facts go on: the headers and WCSs are not needed again (nor pickled back from a worker).
        return RawFile(meta, ExaminedFile(examined.facts))
    except RawHeaderError as err:
        return IngestFailure(str(path), err.reason)
    except MissingExtraError:
        raise  # not the file's fault: the whole ingest needs the extra
    except FormatterError as err:
        return IngestFailure(str(path), f"not a readable FITS file: {err}")
    except TransferError as err:
        return IngestFailure(str(path), str(err))
    except Exception as err:  # a translator bug must not stop the whole batch
        return IngestFailure(str(path), f"cannot read header ({type(err).__name__}: {err})")


def _use_descriptions(instruments: Sequence[Instrument]) -> None:
    """Worker initializer: the repository's camera descriptions, as in the parent."""
    for instrument in instruments:
        register_in_process(instrument)


def _read_all(paths: Sequence[Path], processes: int | None, instruments: Sequence[Instrument],
              storage_class: str, formatter: str | None) -> Iterator[list[RawFile | IngestFailure]]:
    """The files read, chunk by chunk in file order: in this process one chunk of them all, in a pool
    each worker's chunk as soon as it and the chunks before it are read (so the caller stores one
    while the workers read the next)."""
    if processes is None:
        processes = 1 if len(paths) < POOL_THRESHOLD else min(os.cpu_count() or 1, 8)
    read = functools.partial(_read_chunk, storage_class=storage_class, formatter=formatter)
    if processes <= 1 or len(paths) < 2:
        yield read(paths)
        return
    _import_readers()
    # Chunks follow the file order, so a worker meets the files of one exposure together.
    size = max(1, min(256, len(paths) // (processes * 4)))
    chunks = [paths[begin:begin + size] for begin in range(0, len(paths), size)]
    pool = process_pool(processes, initializer=_use_descriptions, initargs=(tuple(instruments),))
    finished = False
    try:
        yield from pool.map(read, chunks)
        finished = True
    finally:  # the caller failed or stopped: the chunks not started are dropped, not read for nothing
        pool.shutdown(wait=True, cancel_futures=not finished)


def _import_readers() -> None:
    """Import here what reading a raw imports (astropy's WCS and frames, the sky geometry, the
    translators), so that forked workers inherit it instead of each importing it (~0.5 s of CPU)."""
    import astropy.coordinates  # noqa: F401
    import astropy.wcs  # noqa: F401
    import lsst.sphgeom  # noqa: F401

    from ..instruments import translators  # noqa: F401


def _read_chunk(paths: Sequence[Path], storage_class: str, formatter: str | None) -> list[RawFile | IngestFailure]:
    """Files read one after the other, offline (entered once for all of them, not once a file)."""
    with offline():
        return [read_raw_metadata(p, storage_class, formatter) for p in paths]


def _register_instruments(butler, names: Iterable[str], result: IngestResult) -> None:
    """Register each camera met for the first time (and say so)."""
    for name in sorted(names):
        instrument, new = register_instrument(butler, name)
        if new:
            result.registered.append(f"registered camera {name} on first use: {len(instrument.detectors)} detectors, "
                f"{len(instrument.filters)} physical filters (skybutler's description; "
                f"stored in {name}/instrument)")


def _register_observations(butler, metas: Sequence[ObservationMetadata]) -> None:
    """Insert the day_obs, group and exposure records that are new (an exposure's record is that of
    the first of its files, however the files are split into chunks)."""
    first: dict[tuple, ObservationMetadata] = {}
    for m in metas:
        first.setdefault((m.instrument, m.exposure_id), m)
    per_exposure = first.values()
    nights = {(m.instrument, m.day_obs): m for m in per_exposure}  # a night's record made once (astropy times)
    groups = {(m.instrument, m.group): group_record(m) for m in per_exposure}
    butler.insert_records("day_obs", [day_obs_record(m) for m in nights.values()], skip_existing=True)
    butler.insert_records("group", groups.values(), skip_existing=True)
    butler.insert_records("exposure", [exposure_record(m) for m in per_exposure], skip_existing=True)


def _raw_storage_class(butler) -> str:
    """The storage class of the repository's ``raw`` dataset type (the one ingest registers if none)."""
    found = [d for d in butler.query_dataset_types("raw") if d.name == "raw"]
    return found[0].storage_class if found else RAW_STORAGE_CLASS


def _ensure_raw_type(butler) -> None:
    names = {d.name for d in butler.query_dataset_types("raw")}
    if "raw" not in names:
        butler.register_dataset_type("raw", RAW_DIMENSIONS, RAW_STORAGE_CLASS)


def raw_data_id(meta: ObservationMetadata) -> dict[str, Any]:
    """The data ID of a raw whose header gave ``meta``."""
    return {"instrument": meta.instrument, "exposure": meta.exposure_id, "detector": meta.detector}


def read_raws(butler, paths: Sequence[Path]) -> list[RawFile | IngestFailure]:
    """Files read here, one after the other, as ingest reads them into ``butler`` (a server reads an
    uploaded batch so: the client's reading is checked, not trusted)."""
    return _read_chunk(paths, _raw_storage_class(butler), None)


def ingest_raws(butler, paths_or_dirs: Iterable[str | Path] | str | Path, *, transfer: str = "auto",
                run: str | None = None, processes: int | None = None, batch_size: int = BATCH_SIZE,
                progress: Callable[[str], None] | None = None) -> IngestResult:
    """Ingest raw files (and raw files under directories) into ``butler``; see the module doc.

    ``transfer`` is one of auto (direct for files already inside the datastore, else
    copy), copy, move, symlink, hardlink, direct.  ``run`` defaults to
    ``<instrument>/raw/all`` per instrument.  ``processes`` sets the header-reading
    pool (None: sequential for small batches, one per CPU for big ones; 1: never a pool).
    ``progress`` receives one line per step, for a CLI.  Through ``Butler.ingest_raws`` (through a
    server, each batch read here is uploaded: :func:`read_and_store_raws` with ``upload``).
    """
    return butler.ingest_raws(paths_or_dirs, transfer=transfer, run=run, processes=processes,
                              batch_size=batch_size, progress=progress)


#: Stores one batch of files read here elsewhere (uploads it): (run, batch, transfer, result).
Upload = Callable[[str, list[tuple[Path, RawFile]], str, IngestResult], None]


def read_and_store_raws(butler, paths_or_dirs: Iterable[str | Path] | str | Path, *, transfer: str = "auto",
                        run: str | None = None, processes: int | None = None, batch_size: int | None = None,
                        progress: Callable[[str], None] | None = None, upload: Upload | None = None) -> IngestResult:
    """:func:`ingest_raws`: the files' headers read here, each batch stored in the repository ``butler``
    opened itself, or handed to ``upload`` (which writes the records each batch needs with it)."""
    start = time.perf_counter()
    require("astro_metadata_translator", "reading raw headers")  # before any file is read
    say = progress or (lambda _msg: None)
    if isinstance(paths_or_dirs, (str, Path)):
        paths_or_dirs = [paths_or_dirs]
    batch_size = batch_size or BATCH_SIZE
    uploading = upload is not None
    result = IngestResult()
    paths = find_raw_files(paths_or_dirs)
    known = load_repository_instruments(butler)
    say(f"reading the headers of {len(paths)} file(s)")
    seen: dict[tuple, Path] = {}
    registered = {i.name for i in known} | (instrument_names(butler) if uploading else set())
    by_run: dict[str, list[tuple[Path, RawFile]]] = {}
    done: dict[str, int] = {}
    begin = 0
    for chunk in _read_all(paths, processes, known, _raw_storage_class(butler), None):
        good = _new_data_ids(paths[begin:begin + len(chunk)], chunk, seen, result, uploading)
        begin += len(chunk)
        if good:
            _register_instruments(butler, {r.meta.instrument for _, r in good} - registered, result)
            registered |= {r.meta.instrument for _, r in good}
            if not uploading:  # a server writes these with each uploaded batch (store_raws)
                _register_observations(butler, [r.meta for _, r in good])
                _ensure_raw_type(butler)
        for path, raws in _by_file(good):  # a file's detectors go in one batch: its file is placed once
            run_name = run or raw_run(raws[0].meta.instrument)
            if run_name not in by_run:
                result.runs.append(run_name)
            pending = by_run.setdefault(run_name, [])
            pending.extend((path, raw) for raw in raws)
            if len(pending) >= batch_size:
                _store(butler, run_name, by_run, done, transfer, result, say, upload)
    for run_name in by_run:
        if by_run[run_name]:
            _store(butler, run_name, by_run, done, transfer, result, say, upload)
    result.seconds = time.perf_counter() - start
    return result


def _new_data_ids(paths: Sequence[Path], chunk: Sequence[RawFile | IngestFailure], seen: dict[tuple, Path],
                  result: IngestResult, uploading: bool = False) -> list[tuple[Path, RawFile]]:
    """The raws of a chunk's files that were read and whose data IDs no earlier file of this ingest
    has (a whole-exposure file gives one per detector, in a row); the others go to the failures."""
    good = []
    for path, raw in zip(paths, chunk):
        if isinstance(raw, IngestFailure):
            result.failures.append(raw)
            continue
        if raw.detectors and uploading:
            result.failures.append(IngestFailure(str(path), f"holds {len(raw.detectors)} detectors (one per image "
                "extension): a whole-exposure file is not ingested through a server; ingest it into the "
                "repository itself, or split it into one file per detector"))
            continue
        members = raw.detectors or (raw,)
        keys = [(m.meta.instrument, m.meta.exposure_id, m.meta.detector) for m in members]
        taken = next((key for key in keys if key in seen), None)
        if taken is not None:
            result.failures.append(IngestFailure(str(path), f"same data ID {dict(zip(RAW_DIMENSIONS, taken))} as "
                                                            f"{seen[taken]}"))
            continue
        for key, member in zip(keys, members):
            seen[key] = path
            good.append((path, member))
    return good


def _by_file(raws: Iterable[tuple[Path, RawFile]]) -> Iterator[tuple[Path, list[RawFile]]]:
    """Raws grouped by their file (a whole-exposure file's detectors come in a row)."""
    for path, group in itertools.groupby(raws, key=lambda item: item[0]):
        yield path, [raw for _, raw in group]


def _store(butler, run: str, by_run: dict[str, list[tuple[Path, RawFile]]], done: dict[str, int],
           transfer: str, result: IngestResult, say: Callable[[str], None], upload: Upload | None) -> None:
    """Store the files of ``run`` read so far, as one batch (or ``upload`` it)."""
    batch, by_run[run] = by_run[run], []
    if upload is not None:
        upload(run, batch, transfer, result)
    else:
        _ingest_batch(butler, run, batch, transfer, result)
    done[run] = done.get(run, 0) + len({path for path, _ in batch})  # a whole exposure is one file
    say(f"{run}: {done[run]} file(s) processed")


def _ingest_batch(butler, run: str, batch: list[tuple[Path, RawFile]], transfer: str,
                  result: IngestResult) -> None:
    """Skip what is already there, then one ``butler.ingest`` call (the files' checks and facts
    come from their one read, :class:`RawFile`); if it fails, the files are tried one by one."""
    todo = _whole_files(batch, _skip_existing(butler, run, batch, result), result)
    if not todo:
        return
    try:
        result.refs += butler.ingest("raw", [(p, raw_data_id(r.meta)) for p, r in todo], run=run, transfer=transfer,
                                     id_mode="deterministic", examined=[r.examined for _, r in todo])
        return
    except SkybutlerError:
        # Another ingest of the same files may have got there first: those are already ingested.
        todo = _whole_files(todo, _skip_existing(butler, run, todo, result), result)
    for path, raws in _by_file(todo):  # isolate the file(s) that broke the batch; the others go in
        try:
            result.refs += butler.ingest("raw", [(path, raw_data_id(raw.meta)) for raw in raws], run=run,
                                         transfer=transfer, id_mode="deterministic",
                                         examined=[raw.examined for raw in raws])
        except SkybutlerError as err:
            if not (isinstance(err, RACE_ERRORS) and _ingested_meanwhile(butler, run, path, raws, result)):
                result.failures.append(IngestFailure(str(path), str(err)))


def _whole_files(batch: list[tuple[Path, RawFile]], todo: list[tuple[Path, RawFile]],
                 result: IngestResult) -> list[tuple[Path, RawFile]]:
    """``todo`` less the detectors of a whole-exposure file some of whose detectors are already
    ingested (its stored file is theirs: another copy of it cannot be placed beside), which fail."""
    left = {(str(p), r.meta.detector) for p, r in todo}
    partial = {str(p) for p, r in batch if r.examined.hdu is not None} & \
        {str(p) for p, r in batch if (str(p), r.meta.detector) not in left} & {str(p) for p, _ in todo}
    for path in sorted(partial):
        missing = sorted(r.meta.detector for p, r in todo if str(p) == path)
        result.failures.append(IngestFailure(path, f"detector(s) {missing} of this whole-exposure file are not "
            "ingested, its other detectors are, and share its stored file: remove those and ingest the file again "
            "to add them"))
    return [(p, r) for p, r in todo if str(p) not in partial]


#: Errors a concurrent ingest of the same raw causes: its file is placed (the path is taken) or
#: its row is in (the dataset exists) before this one's.
RACE_ERRORS = (DatastoreError, DatasetConflictError)
#: How long (seconds) to wait at most for a concurrent ingest of the same raw to commit.
RACE_WAIT = 10.0


def _ingested_meanwhile(butler, run: str, path: Path, raws: list[RawFile], result: IngestResult) -> bool:
    """After a conflict: whether another ingest has committed the raws of this file (then they are
    already ingested).

    The other ingest places its file before it commits its rows, so the rows are waited for a
    little while (up to :data:`RACE_WAIT`)."""
    deadline = time.monotonic() + RACE_WAIT
    delay = 0.05
    while True:
        found = IngestResult()
        if not _skip_existing(butler, run, [(path, raw) for raw in raws], found):
            result.already_ingested += found.already_ingested
            return True
        if time.monotonic() + delay > deadline:
            return False
        time.sleep(delay)
        delay = min(delay * 2, 1.0)


def _skip_existing(butler, run: str, batch: list[tuple[Path, RawFile]],
                   result: IngestResult) -> list[tuple[Path, RawFile]]:
    """Files whose raw is already in ``run`` go to ``already_ingested``; a raw with the
    same (deterministic) ID in another RUN is a failure; the rest are returned."""
    if not butler.collections.exists(run):
        return batch
    dtype = butler.get_dataset_type("raw")
    group = dtype.group(butler.universe)
    coords = butler.registry.dimensions.expand_many([butler._standardize(group, raw_data_id(r.meta), {})
                                                      for _, r in batch])
    found = butler.registry.datasets.find_many(dtype, coords, [run])
    todo = []
    for (path, raw), coord in zip(batch, coords):
        ref = found.get(coord)
        if ref is not None:
            result.already_ingested.append((str(path), ref))
        else:
            todo.append((path, raw))
    return todo


def store_raws(butler, run: str, batch: list[tuple[Path, RawFile]], transfer: str,
               check: Callable[[list[tuple[Path, RawFile]]], None] | None = None) -> IngestResult:
    """One batch of files read on this side as one transaction: the exposure, day_obs and group
    records the files need, then the raws themselves; the files already in ``run`` are skipped
    (:attr:`IngestResult.already_ingested`), and ``check(todo)`` (a quota) may refuse the rest
    before anything is written.  All or nothing: what a server does with an uploaded batch."""
    _ensure_raw_type(butler)  # a new type's tables outside the transaction (see register_instrument)
    result = IngestResult(runs=[run])
    with butler.transaction():
        _register_observations(butler, [r.meta for _, r in batch])  # before the skip: it expands data IDs
        todo = _skip_existing(butler, run, batch, result)
        if check is not None:
            check(todo)
        if todo:
            result.refs += butler.ingest("raw", [(p, raw_data_id(r.meta)) for p, r in todo], run=run, transfer=transfer,
                                         id_mode="deterministic", examined=[r.examined for _, r in todo])
    return result
