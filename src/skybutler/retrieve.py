"""Copying datasets' files out of a repository into a directory a person can read, or a zip.

``Butler.retrieve_artifacts`` (``skybutler retrieve-artifacts``), as the Rubin butler's
command of that name does: the files keep the datastore's readable layout
(``<run>/<dataset type>/.../<dataset type>_<data ID>.<ext>``), or are put side by side, or
go into one zip that both skybutler's and the Rubin butler's importers read.  Nothing is
written until every dataset is known to have a stored file and every destination path is
known to be free (or ``overwrite`` is given).
"""

from __future__ import annotations

import posixpath
import tempfile
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .errors import DatasetNotFoundError, SkybutlerError

if TYPE_CHECKING:
    from .butler import Butler
    from .models import DatasetRef


def zip_name(refs: Iterable[DatasetRef]) -> str:
    """The zip's file name: a UUID made from the datasets' IDs, so the same selection always
    gives the same name (as the Rubin butler names its zips)."""
    ids = ",".join(sorted(str(r.id) for r in refs))
    return f"{uuid.uuid5(uuid.NAMESPACE_URL, 'skybutler-zip:' + ids)}.zip"


def retrieve_artifacts(butler: Butler, refs: Iterable[DatasetRef], destination: str | Path, *,
                       preserve_path: bool = True, overwrite: bool = False, zip: bool = False) -> list[Path]:
    """Copy the files of ``refs`` under the directory ``destination``; returns the paths written.

    ``preserve_path`` keeps the datastore's layout below ``destination``; without it the
    files are put side by side, by file name (two datasets with one file name are refused).
    ``zip`` writes one zip into ``destination`` instead, named by :func:`zip_name`, holding the
    files and an index (the Rubin butler's zip format, which ``skybutler import`` reads too).
    A dataset without a stored file (cold or purged) is refused, naming it, before anything is
    written; so is a file already at a destination path, unless ``overwrite``.
    """
    refs = list({r.id: r for r in refs}.values())
    destination = Path(destination)
    if destination.exists() and not destination.is_dir():
        raise SkybutlerError(f"{destination} is not a directory")
    artifacts = butler.registry.datasets.artifacts(r.id for r in refs)
    missing = [r for r in refs if r.id not in artifacts]
    if missing:
        states = butler.retention.states(r.id for r in missing)
        first = missing[0]
        raise DatasetNotFoundError(
            f"{len(missing)} dataset(s) have no stored file to retrieve, e.g. {_name(first)} "
            f"({states.get(first.id, '?')}); "
            "stage cold ones or recompute purged ones first (skybutler get, skybutler recompute), or leave them "
            "out with a where-clause or --states stored")
    if zip:
        from .interchange.rubin_export import export_rubin

        target = destination / zip_name(refs)
        if target.exists():
            if not overwrite:
                raise SkybutlerError(f"{target} already exists; replace it with overwrite=True (--clobber on the "
                                     "command line)")
            target.unlink()
        export_rubin(butler, refs, target)
        return [target]
    places = {r.id: _place(artifacts[r.id].path, preserve_path) for r in refs}
    taken: dict[str, DatasetRef] = {}
    for ref in refs:
        other = taken.setdefault(places[ref.id], ref)
        if other is not ref:
            raise SkybutlerError(f"{_name(other)} and {_name(ref)} would both be written to {places[ref.id]}; "
                                 "keep the datastore's layout (preserve_path=True; without --no-preserve-path "
                                 "on the command line)")
    if not overwrite:
        present = [p for p in places.values() if (destination / p).exists()]
        if present:
            raise SkybutlerError(f"{destination / present[0]} already exists ({len(present)} file(s) in the way); "
                                 "replace them with overwrite=True (--clobber on the command line)")
    written = []
    destination.mkdir(parents=True, exist_ok=True)
    # Copied into a hidden directory first, then renamed: a copy cut short leaves no half-written
    # file under a final name.
    with tempfile.TemporaryDirectory(prefix=".skybutler-retrieve-", dir=destination) as tmp:
        staging = Path(tmp)
        for ref in refs:
            relative = butler.datastore.export_artifact(artifacts[ref.id], staging)
            target = destination / places[ref.id]
            target.parent.mkdir(parents=True, exist_ok=True)
            (staging / relative).replace(target)
            written.append(target)
    return written


def _name(ref: DatasetRef) -> str:
    """A dataset as a user names it: type, data ID and RUN."""
    data_id = " ".join(f"{k}={v}" for k, v in ref.data_id.required.items())
    return f"{ref.dataset_type.name} {data_id} of RUN {ref.run}"


def _place(path: str, preserve_path: bool) -> str:
    """Where a stored file goes below the destination: its datastore path, or its file name; a
    file ingested from outside the datastore (an absolute path or URL) under ``external/``."""
    name = posixpath.basename(path.rstrip("/"))
    if "://" in path or path.startswith("/"):
        return f"external/{uuid.uuid5(uuid.NAMESPACE_URL, path).hex[:12]}/{name}" if preserve_path else name
    return path if preserve_path else name

