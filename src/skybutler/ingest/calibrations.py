"""Curated calibrations: human-readable YAML files under version control, ingested and
certified into a CALIBRATION collection in one step.

Layout of a curated-calibration directory (one file per calibration and validity start)::

    DIR/<dataset_type>/<detector>/<valid_start>.yaml   # per detector: dimensions (instrument, detector)
    DIR/<dataset_type>/<valid_start>.yaml              # per camera:   dimensions (instrument)

``<detector>`` is a detector id (``3``) or full name (``R00_S10``).  ``<valid_start>``
is a TAI date or time written ``2026-03-01``, ``20260301``, ``2026-03-01T18:00:00``
or ``20260301T180000`` (an optional trailing ``Z`` is ignored).  Each file holds a
YAML mapping and becomes one dataset of storage class ``Dict``, stored as the very
file (copied, so it stays human-readable) in the RUN
``<collection>/curated/<valid_start as YYYYMMDDTHHMMSSZ>``, and is certified into
``<collection>`` from its ``valid_start`` to the next file's ``valid_start`` for the
same dataset type and detector; the latest one is valid without end.

Running it again after adding a newer file ingests only that file and shortens the
validity of the previous latest one to end where the new one starts.  A file whose
content changed under the same ``valid_start`` is refused (give it a new one); a
validity range that would overlap a calibration certified by other means is
refused for that file only; every other file proceeds.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from astropy.time import Time

from ..errors import SkybutlerError
from ..models import DatasetRef
from ..timespan import Timespan, time_to_ns
from .instruments import instrument_names
from .raws import IngestFailure

__all__ = ["CuratedCalibration", "CuratedResult", "read_curated_directory", "write_curated_calibrations"]

_STAMP = re.compile(r"^(\d{4})-?(\d{2})-?(\d{2})(?:T(\d{2}):?(\d{2}):?(\d{2})(?:\.(\d+))?)?Z?$")
_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class CuratedCalibration:
    """One curated file: what it calibrates and from when."""

    path: Path
    dataset_type: str
    detector: str | None  # as written in the directory name
    valid_start: Time


@dataclass
class CuratedResult:
    """What :func:`write_curated_calibrations` did, file by file."""

    certified: list[tuple[str, DatasetRef, Timespan]] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)
    failures: list[IngestFailure] = field(default_factory=list)

    def summary(self) -> str:
        return (f"{len(self.certified)} calibration(s) certified, {len(self.unchanged)} unchanged, "
                f"{len(self.failures)} failed")


def parse_valid_start(text: str) -> Time:
    """A file stem (``20260301``, ``2026-03-01T18:00:00`` ...) as a TAI time."""
    match = _STAMP.match(text)
    if match is None:
        raise ValueError(f"file name {text!r} is not a validity start (YYYY-MM-DD[THH:MM:SS] or YYYYMMDD[THHMMSS])")
    y, mo, d, h, mi, s, frac = match.groups()
    iso = f"{y}-{mo}-{d}T{h or '00'}:{mi or '00'}:{s or '00'}" + (f".{frac}" if frac else "")
    return Time(iso, scale="tai", format="isot")


def _stamp(t: Time) -> str:
    return t.tai.strftime("%Y%m%dT%H%M%S") + "Z"


def read_curated_directory(directory: str | Path) -> tuple[list[CuratedCalibration], list[IngestFailure]]:
    """The curated files under ``directory`` (see the module doc), and files that do not fit the layout."""
    root = Path(directory)
    if not root.is_dir():
        raise SkybutlerError(f"{root} is not a directory")
    found, failures = [], []
    for path in sorted(root.rglob("*")):
        if not path.is_file() or any(part.startswith(".") for part in path.relative_to(root).parts):
            continue
        parts = path.relative_to(root).parts
        if path.suffix.lower() not in _SUFFIXES:
            if path.name.lower() not in ("readme", "readme.md", "readme.txt"):
                failures.append(IngestFailure(str(path), "not a .yaml file"))
            continue
        if len(parts) not in (2, 3):
            failures.append(IngestFailure(str(path), "expected <dataset_type>/[<detector>/]<valid_start>.yaml"))
            continue
        try:
            start = parse_valid_start(path.stem)
        except ValueError as err:
            failures.append(IngestFailure(str(path), str(err)))
            continue
        found.append(CuratedCalibration(path.absolute(), parts[0], parts[1] if len(parts) == 3 else None, start))
    return found, failures


def _only_instrument(butler) -> str:
    names = sorted(instrument_names(butler))
    if len(names) != 1:
        raise SkybutlerError(f"the repository has {len(names)} instruments ({', '.join(names) or 'none'}): "
                             "say which one the calibrations are for")
    return names[0]


def _detector_id(butler, instrument: str, text: str) -> int:
    for record in butler.query_dimension_records("detector", instrument=instrument):
        if str(record["detector"]) == text or record["full_name"] == text:
            return int(record["detector"])
    raise SkybutlerError(f"instrument {instrument!r} has no detector {text!r} (by id or full name)")


def _ensure_type(butler, name: str, per_detector: bool) -> None:
    dims = ["instrument", "detector"] if per_detector else ["instrument"]
    butler.register_dataset_type(name, dims, "Dict", is_calibration=True)  # an error if it differs


def _load(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise SkybutlerError(f"cannot read YAML: {err}") from None
    except UnicodeDecodeError as err:
        raise SkybutlerError(f"not UTF-8 text (byte {err.object[err.start]:#04x} at offset {err.start})") from None
    if not isinstance(content, dict):
        raise SkybutlerError(f"must hold a YAML mapping, not {type(content).__name__}")
    return content


def write_curated_calibrations(butler, directory: str | Path, *, instrument: str | None = None,
                               collection: str | None = None) -> CuratedResult:
    """Ingest and certify a curated-calibration directory (see the module doc).

    ``instrument`` defaults to the repository's only instrument, ``collection`` to
    ``<instrument>/calib``.
    """
    instrument = instrument or _only_instrument(butler)
    if butler.get_record("instrument", name=instrument) is None:
        raise SkybutlerError(f"no instrument {instrument!r} in the repository; ingest its raws (or register it) first")
    collection = collection or f"{instrument}/calib"
    files, failures = read_curated_directory(directory)
    result = CuratedResult(failures=list(failures))
    # Group by (dataset type, detector) and order by validity start.
    series: dict[tuple[str, str | None], list[CuratedCalibration]] = {}
    for item in files:
        series.setdefault((item.dataset_type, item.detector), []).append(item)
    layouts: dict[str, set[bool]] = {}
    for dtype, det in series:
        layouts.setdefault(dtype, set()).add(det is not None)
    for (dtype, det), items in sorted(series.items(), key=lambda kv: (kv[0][0], kv[0][1] or "")):
        try:
            if len(layouts[dtype]) > 1:
                raise SkybutlerError(f"{dtype} has files both per detector and per camera; use one layout")
            _ensure_type(butler, dtype, det is not None)
            data_id: dict[str, Any] = {"instrument": instrument}
            if det is not None:
                data_id["detector"] = _detector_id(butler, instrument, det)
        except SkybutlerError as err:
            result.failures += [IngestFailure(str(i.path), str(err)) for i in items]
            continue
        items.sort(key=lambda i: time_to_ns(i.valid_start))
        for index, item in enumerate(items):
            if index and time_to_ns(item.valid_start) == time_to_ns(items[index - 1].valid_start):
                result.failures.append(IngestFailure(str(item.path), f"same validity start as {items[index - 1].path}"))
                continue
            end = items[index + 1].valid_start if index + 1 < len(items) else None
            try:
                _one_file(butler, item, data_id, collection, Timespan(item.valid_start, end), result)
            except SkybutlerError as err:
                result.failures.append(IngestFailure(str(item.path), str(err)))
    return result


def _one_file(butler, item: CuratedCalibration, data_id: dict[str, Any], collection: str, span: Timespan,
              result: CuratedResult) -> None:
    content = _load(item.path)
    run = f"{collection}/curated/{_stamp(item.valid_start)}"
    ref = None
    if butler.collections.exists(run):
        ref = butler.find_dataset(item.dataset_type, data_id, collections=run)
    if ref is not None:
        if butler.get(ref) != content:
            raise SkybutlerError(f"differs from the {item.dataset_type} already ingested into RUN {run!r}; "
                                 "a changed calibration needs a new validity start (a new file)")
    else:
        ref = butler.ingest(item.dataset_type, [(item.path, data_id)], run=run, transfer="copy",
                            formatter="yaml")[0]
    _certify(butler, ref, collection, span, str(item.path), result)


def _certify(butler, ref: DatasetRef, collection: str, span: Timespan, path: str, result: CuratedResult) -> None:
    """Certify ``ref`` over ``span``, adjusting its own earlier certification if that differs."""
    mine = []
    if butler.collections.exists(collection):
        mine = [s for r, s in butler.collections.validity(collection, ref.dataset_type.name) if r.id == ref.id]
    if mine == [span]:
        result.unchanged.append(path)
        return
    with butler.transaction():  # through a server: one batch
        for old in mine:  # e.g. it was the latest (unbounded) and a newer file now ends it
            butler.collections.decertify(collection, ref.dataset_type.name, timespan=old, data_ids=[ref.data_id])
        butler.collections.certify(collection, [ref], timespan=span)
    result.certified.append((path, ref, span))
