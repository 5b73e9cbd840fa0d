"""Files several datasets share: one detector each of a whole-exposure multi-extension raw.

A DECam or MegaPrime exposure is one FITS file holding every detector's image in its own HDU.
Ingest makes one dataset per detector, all recorded at the same path, each with the
formatter of its own HDU (``fits-hdu:<n>``, :mod:`skybutler.formats.fits_hdu`); the file is
placed once.  Two rules keep the file safe:

* ingest places each source file once, for the first of its datasets (whose data ID names its
  path), and records the same path for the others (:func:`plan_shared_ingest`);
* a removal deletes a shared file only once no dataset's record holds its path any more, asked of
  the registry after the removal's rows are committed (:func:`unshared`); a removal killed in
  between is finished by the next open, whose replay keeps a file a record still holds.

What cannot keep the file whole (a purge or cold move of one detector, an export) refuses such
datasets by name (:func:`refuse_shared`).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from .errors import SkybutlerError
from .models import DatasetRef, StoredArtifact


def plan_shared_ingest(entries: Sequence[tuple[str | Path, DatasetRef]], hdus: Sequence[int | None],
                       formatter: str) -> tuple[list[tuple[str | Path, DatasetRef]], list[int], list[str]]:
    """For an ingest whose datasets may be HDUs of shared files: the entries to place (each source
    file once, with its first dataset), for each entry the index of its placed file, and each
    entry's formatter (``fits-hdu:<n>`` for an HDU, else ``formatter``).  Entries without an HDU are
    placed each on its own, as by any ingest.  Raises :class:`SkybutlerError` for a shared file
    given twice for one HDU, or also without one."""
    placed: list[tuple[str | Path, DatasetRef]] = []
    where: dict[str, int] = {}
    owner: list[int] = []
    names: list[str] = []
    seen: dict[str, set[int | None]] = {}
    for (source, ref), hdu in zip(entries, hdus):
        key = os.path.abspath(source)
        if hdu is None and not any(h is not None for h in seen.get(key, ())):
            seen.setdefault(key, set()).add(None)
            owner.append(len(placed))  # a file of its own, as any ingest places it
            placed.append((source, ref))
            names.append(formatter)
            continue
        taken = seen.setdefault(key, set())
        if taken and (hdu is None or None in taken or hdu in taken):
            what = "the same HDU" if hdu in taken else "not one image HDU each"
            raise SkybutlerError(f"{source} is given for several datasets, {what}: a file shared by datasets "
                                 "holds one detector's image per HDU; nothing was ingested")
        taken.add(hdu)
        if key not in where:
            where[key] = len(placed)
            placed.append((source, ref))
        owner.append(where[key])
        names.append(formatter if hdu is None else _hdu_formatter(formatter, hdu, source))
    return placed, owner, names


def _hdu_formatter(formatter: str, hdu: int, source: str | Path) -> str:
    from .formats.fits_hdu import hdu_formatter_name

    if formatter != "fits":
        raise SkybutlerError(f"{source}: HDU {hdu} of a shared file is read as an image (formatter 'fits'), "
                             f"not with {formatter!r}")
    if hdu < 1:
        raise SkybutlerError(f"{source}: a shared file's detector is in an extension (HDU >= 1), not HDU {hdu}")
    return hdu_formatter_name(hdu)


def shared_artifacts(placed: Sequence[StoredArtifact], owner: Sequence[int],
                     names: Sequence[str]) -> list[StoredArtifact]:
    """Each entry's artifact: its placed file's, with its own formatter."""
    return [placed[i] if placed[i].formatter == name else dataclasses.replace(placed[i], formatter=name)
            for i, name in zip(owner, names)]


def unshared(registry: Any, artifacts: Iterable[StoredArtifact]) -> list[StoredArtifact]:
    """The artifacts whose files may go after their datasets' rows are committed deleted: all but
    those of shared files whose path a dataset's record still holds (asked of the registry now)."""
    artifacts = list(artifacts)
    shared = {a.path for a in artifacts if a.shared_hdu is not None}
    if not shared:
        return artifacts
    held = registry.datasets.paths_in_use(shared)
    return [a for a in artifacts if a.path not in held]


def refuse_shared(artifacts: Mapping[Any, StoredArtifact], what: str) -> None:
    """Refuse ``what`` (an operation that moves or copies each dataset's file on its own) for
    datasets that are one HDU of a shared file, naming the first of them."""
    shared = [(key, a) for key, a in artifacts.items() if a.shared_hdu is not None]
    if shared:
        key, artifact = shared[0]
        more = f" (and {len(shared) - 1} more)" if len(shared) > 1 else ""
        raise SkybutlerError(
            f"{what} is not supported for datasets that are one detector (HDU {artifact.shared_hdu}) of a "
            f"multi-extension file other datasets share: {key} at {artifact.path}{more}; nothing was done")
