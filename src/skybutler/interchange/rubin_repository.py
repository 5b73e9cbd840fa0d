"""A whole Rubin butler repository (its butler.yaml, registry and datastore) comes in as its
export would: the Rubin butler, when installed, exports every dataset and collection into a
held scratch directory of the repository (``datastore/uploads.py``: a process killed meanwhile
leaves it to the next open) with symbolic links to the files, and that export is imported (the
files copied in, as from any export).  Without the Rubin butler the repository's registry cannot be
read, and the message says what to run instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml

from ..config import BOOKKEEPING_DIR
from ..datastore.uploads import scratch_directory
from ..errors import SkybutlerError

__all__ = ["export_rubin_repository", "import_rubin_repository", "is_rubin_repository"]


def is_rubin_repository(path: str | Path) -> bool:
    """Whether ``path`` is a Rubin butler repository: a directory whose butler.yaml configures
    the Rubin butler's datastore or registry classes."""
    config = Path(path) / "butler.yaml"
    if not config.is_file():
        return False
    try:
        data = yaml.safe_load(config.read_text())
    except (yaml.YAMLError, OSError, UnicodeDecodeError):
        return False
    return isinstance(data, dict) and "lsst.daf.butler" in yaml.safe_dump(
        {k: data.get(k) for k in ("datastore", "registry")})


def export_rubin_repository(path: str | Path, scratch: Path) -> Path:
    """Export every dimension record, dataset and collection of the Rubin repository at ``path`` into
    ``scratch`` (files as symbolic links) with the Rubin butler; returns the export directory."""
    try:
        from lsst.daf.butler import Butler as RubinButler
        from lsst.daf.butler import CollectionType
    except ImportError:
        raise SkybutlerError(f"{path} is a Rubin butler repository; reading its registry needs the Rubin butler "
                             "(pip install lsst-daf-butler), or export it there first: butler export-datasets "
                             "or Butler.export, then import that export") from None
    rubin: Any = RubinButler.from_config(str(path))
    try:
        # Expanded (with their records): a file outside the datastore (ingested with transfer
        # "direct") gets its path in the export from the file template, which may name records.
        refs = list({r.id: r for r in rubin.registry.queryDatasets(..., collections=...).expanded()}.values())
        collections = list(rubin.registry.queryCollections(...))
        # A RUN with datasets comes with them; an empty one (a chain may name it) only by itself.
        runs = {r.run for r in refs}
        kept = [c for c in collections if c not in runs or rubin.registry.getCollectionType(c) is not CollectionType.RUN]
        with rubin.export(directory=str(scratch), format="yaml", transfer="symlink") as export:
            # Every record, not only those of the datasets' data IDs: an exposure with no dataset
            # still selects, by its time, the calibration valid during it.
            for element in rubin.dimensions.getStaticElements():
                if element.has_own_table:
                    export.saveDimensionData(element, rubin.registry.queryDimensionRecords(element.name))
            export.saveDatasets(refs)
            for name in kept:
                export.saveCollection(name)
    finally:
        rubin.close()
    return scratch


def import_rubin_repository(butler: Any, path: str | Path, transfer: str, skip_existing: bool) -> int:
    """Import the whole Rubin repository at ``path`` (see the module docstring)."""
    from .rubin_import import import_rubin
    from .rubin_read import RubinImportError

    if transfer not in ("copy", "auto"):
        raise SkybutlerError(f"files of a Rubin repository are copied in (transfer {transfer!r} was asked): its "
                             "datastore stays the Rubin butler's")
    with scratch_directory(butler.root / BOOKKEEPING_DIR / "uploads", "rubin-repository-") as tmp:
        export = export_rubin_repository(path, tmp)
        try:
            return import_rubin(butler, export, "copy", skip_existing)
        except RubinImportError as err:  # named as the user named it, not by the scratch export
            raise RubinImportError(f"the Rubin repository {path}", err.problems) from None
