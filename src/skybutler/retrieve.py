"""Copying datasets' files out of a repository into a directory a person can read, or a zip.

``Butler.retrieve_artifacts`` (``skybutler retrieve-artifacts``), as the Rubin butler's
command of that name does: the files go into a layout a person reads --
``<run>/<dataset type>/<dataset type>_<key>=<value>_....<ext>``, a RUN's ``/`` making
directories -- or side by side, or into one zip that both skybutler's and the Rubin
butler's importers read.  The layout is not the datastore's (whose escaping marks nested
RUNs with ``~`` and escapes all but a few characters): names keep spaces and non-ASCII
letters; only what a file system (POSIX or Windows) cannot hold in a name, ``%`` and
``~`` are written as ``%XX`` (and in data-ID values ``_`` and ``=``, which separate
them); a name made only of dots is escaped, and a RUN with an empty part (``a//b``) is
one directory.  So the layout is injective.  A file whose path another file or
directory of the same copy also takes -- where only the case differs, for
case-insensitive file systems, or a RUN's file where a nested RUN needs a directory --
gets its dataset ID's first 12 hex digits (``..._~1a2b3c4d5e6f.json``: ``~`` never
comes out of the escaping), so nothing is ever overwritten or merged.  Nothing is
written until every dataset is known to have a stored file and every destination path
is known to be free (or ``overwrite`` is given).
"""

from __future__ import annotations

import posixpath
import re
import uuid
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING

from .datastore.copy_scratch import copy_out_into
from .datastore.local_files import replace_file
from .errors import DatasetNotFoundError, SkybutlerError
from .formats import get_formatter
from .repository_transfer import CHUNK
from .shared_files import refuse_shared

if TYPE_CHECKING:
    from .butler import Butler
    from .models import DatasetRef, StoredArtifact


def zip_name(refs: Iterable[DatasetRef]) -> str:
    """The zip's file name: a UUID made from the datasets' IDs, so the same selection always
    gives the same name (as the Rubin butler names its zips)."""
    ids = ",".join(sorted(str(r.id) for r in refs))
    return f"{uuid.uuid5(uuid.NAMESPACE_URL, 'skybutler-zip:' + ids)}.zip"


def retrieve_artifacts(butler: Butler, refs: Iterable[DatasetRef], destination: str | Path, *,
                       preserve_path: bool = True, overwrite: bool = False, zip: bool = False) -> list[Path]:
    """Copy the files of ``refs`` under the directory ``destination``; returns the paths written.

    ``preserve_path`` puts each file at ``<run>/<dataset type>/<dataset type>_<data ID>.<ext>``
    below ``destination`` (see the module doc); without it the files are put side by side, by
    that file name (two datasets with one file name, from two RUNs, are refused).
    ``zip`` writes one zip into ``destination`` instead, named by :func:`zip_name`, holding the
    files and an index (the Rubin butler's zip format, which ``skybutler import`` reads too).
    A dataset without a stored file (cold or purged) is refused, naming it, before anything is
    written; so is a file already at a destination path, unless ``overwrite``.
    """
    from .copy_out import source

    files = source(butler)
    refs = list({r.id: r for r in refs}.values())
    destination = Path(destination)
    if destination.exists() and not destination.is_dir():
        raise SkybutlerError(f"{destination} is not a directory")
    artifacts = {}
    for begin in range(0, len(refs), CHUNK):
        artifacts.update(files.artifacts(refs[begin:begin + CHUNK]))
    missing = [r for r in refs if r.id not in artifacts]
    if missing:
        states = butler.retention.states(r.id for r in missing)
        first = missing[0]
        raise DatasetNotFoundError(
            f"{len(missing)} dataset(s) have no stored file to retrieve, e.g. {_name(first)} "
            f"({states.get(first.id, '?')}); "
            "stage cold ones or recompute purged ones first (skybutler get, skybutler recompute), or leave them "
            "out with a where-clause or --states stored")
    refuse_shared({r: artifacts[r.id] for r in refs}, "retrieving artifacts")
    if zip:
        from .interchange.rubin_export import export_rubin

        target = destination / zip_name(refs)
        if target.exists() and not overwrite:
            raise SkybutlerError(f"{target} already exists; replace it with overwrite=True (--clobber on the "
                                 "command line)")
        export_rubin(butler, refs, target, overwrite=overwrite)  # the old zip replaced once the new one is whole
        return [target]
    placed = {r.id: _place(r, artifacts[r.id], preserve_path) for r in refs}
    if preserve_path:
        places = _without_collisions(refs, placed)
    else:
        places = {i: stem + ext for i, (stem, ext) in placed.items()}
        taken: dict[str, DatasetRef] = {}
        for ref in refs:
            other = taken.setdefault(places[ref.id].casefold(), ref)
            if other is not ref:
                raise SkybutlerError(f"{_name(other)} and {_name(ref)} would both be written to {places[ref.id]}; "
                                     "keep the layout by RUN (preserve_path=True; without --no-preserve-path "
                                     "on the command line)")
    blocked = [p for p in places.values() for parent in Path(p).parents
               if parent.parts and (destination / parent).exists() and not (destination / parent).is_dir()]
    if blocked:
        raise SkybutlerError(f"{destination / blocked[0]} needs a directory where a file already is: choose "
                             "another destination")
    if not overwrite:
        present = [p for p in places.values() if (destination / p).exists()]
        if present:
            raise SkybutlerError(f"{destination / present[0]} already exists ({len(present)} file(s) in the way); "
                                 "replace them with overwrite=True (--clobber on the command line)")
    written = []
    # Copied into a hidden directory first, then renamed: a copy cut short leaves no half-written
    # file under a final name, and the journal of the copy out proves the directory its own (the next
    # copy out into ``destination`` removes it if this one is killed).
    with copy_out_into(destination) as journal:
        staging = journal.new_directory(destination, ".skybutler-retrieve-")
        placed = files.place_many([(ref, artifacts[ref.id]) for ref in refs], staging, journal)
        for number, ref in enumerate(refs):  # (``zip`` is an argument here)
            target = destination / places[ref.id]
            replace_file(staging / placed[number], target)
            written.append(target)
    return written


def _name(ref: DatasetRef) -> str:
    """A dataset as a user names it: type, data ID and RUN."""
    data_id = " ".join(f"{k}={v}" for k, v in ref.data_id.required.items())
    return f"{ref.dataset_type.name} {data_id} of RUN {ref.run}"


#: Compression suffixes a stored file keeps after its format's extension (``.fits.fz``).
_COMPRESSED = (".gz", ".fz", ".bz2", ".xz", ".zst")
#: Characters escaped in a name: what POSIX or Windows file names cannot hold, ``%`` and ``~``.
_UNSAFE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|%~]')
#: In the data-ID part ``_`` separates ``key=value`` pairs: both are escaped inside values.
_UNSAFE_IN_VALUE = re.compile(r'[\x00-\x1f\x7f/\\:*?"<>|%~_=]')


def _escaped(text: str, unsafe: re.Pattern = _UNSAFE) -> str:
    """``text`` as one file-name segment: unsafe characters as ``%XX`` of their UTF-8 bytes,
    and a name of dots only (``.``, ``..``) escaped whole."""
    if not text or text.strip(".") == "":
        return "%2E" * len(text) or "%00"
    return unsafe.sub(lambda m: "".join(f"%{b:02X}" for b in m.group().encode("utf-8")), text)


def _extension(path: str, formatter: str) -> str:
    """The file's extension as stored: its format's, with a compression suffix it kept."""
    name = posixpath.basename(path.rstrip("/"))
    ext = get_formatter(formatter).extension
    for suffix in (ext + c for c in _COMPRESSED):
        if name.endswith(suffix):
            return suffix
    return ext


def _place(ref: DatasetRef, artifact: StoredArtifact, preserve_path: bool) -> tuple[str, str]:
    """Where a dataset's file goes below the destination, as (path without extension, extension):
    ``<run>/<type>/<type>_<data ID>``, or only the file name."""
    data_id = "_".join(f"{_escaped(str(k))}={_escaped(str(v), _UNSAFE_IN_VALUE)}"
                       for k, v in ref.data_id.required.items())
    dataset_type = _escaped(ref.dataset_type.name)
    name = f"{dataset_type}_{data_id}" if data_id else dataset_type
    ext = _extension(artifact.path, artifact.formatter)
    if not preserve_path:
        return name, ext
    parts = ref.run.split("/")
    run = "/".join(_escaped(p) for p in parts) if all(parts) else _escaped(ref.run)
    return f"{run}/{dataset_type}/{name}", ext


def _without_collisions(refs: list[DatasetRef], places: dict[uuid.UUID, tuple[str, str]]) -> dict[uuid.UUID, str]:
    """Each file's path, with a dataset-ID mark on every file whose path (case aside) another file
    of the copy also has, or that a directory of the copy needs (RUN ``a`` with a type ``b``
    beside RUN ``a/b``)."""
    paths = {i: stem + ext for i, (stem, ext) in places.items()}
    count: dict[str, int] = {}
    directories: set[str] = set()
    for path in paths.values():
        folded = path.casefold()
        count[folded] = count.get(folded, 0) + 1
        parts = folded.split("/")
        directories.update("/".join(parts[:n]) for n in range(1, len(parts)))
    out = {}
    for ref in refs:
        folded = paths[ref.id].casefold()
        if count[folded] > 1 or folded in directories:
            stem, ext = places[ref.id]
            out[ref.id] = f"{stem}_~{ref.id.hex[:12]}{ext}"
        else:
            out[ref.id] = paths[ref.id]
    return out
