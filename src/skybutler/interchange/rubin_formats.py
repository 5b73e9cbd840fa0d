"""Rubin formatter classes and storage classes, and the skybutler formatters they map to.

A Rubin export names, for every file, the Python class that wrote it.  Files that
skybutler's formatters read byte for byte (YAML and JSON mappings, JSON scalars, Parquet,
ECSV, task logs, single-image and exposure FITS, raw FITS) map to those formatters; any
other file (a pex_config ``Config``, ``Packages``, a pickle, ...) is *kept*: it comes in
byte for byte under a ``rubin:`` formatter that never parses it (a pickle is never
unpickled), and reading it says which Rubin formatter wrote it.
"""

from __future__ import annotations

import io
import re
from collections.abc import Callable

from ..errors import SkybutlerError
from ..formats import get_formatter, get_storage_class
from ..formats.rubin_names import RUBIN_STORAGE_CLASSES, base_storage_class
from ..formats.rubin_outputs import KEPT_PREFIX, kept_formatter_name

#: Rubin formatter class -> skybutler formatter name.
IMPORT_FORMATTERS: dict[str, str] = {
    "lsst.daf.butler.formatters.yaml.YamlFormatter": "yaml",
    "lsst.daf.butler.formatters.json.JsonFormatter": "json",
    "lsst.daf.butler.formatters.parquet.ParquetFormatter": "parquet",
    "lsst.obs.base.formatters.fitsExposure.FitsImageFormatter": "fits",
    "lsst.obs.base.formatters.fitsExposure.FitsExposureFormatter": "fits",
    "lsst.obs.base.formatters.fitsExposure.FitsMaskedImageFormatter": "fits",
    "lsst.daf.butler.formatters.astropyTable.AstropyTableFormatter": "ecsv",
    "lsst.daf.butler.formatters.logs.ButlerLogRecordsFormatter": "rubin-log",
}
#: Formatters whose files are read only as the storage classes that hold them: a JSON or YAML
#: file holds a mapping only when its Rubin storage class is one (``StructuredDataDict``,
#: ``TaskMetadata``), and a JSON scalar (``int``) has classes of its own.
_DOCUMENT_FORMATTERS = frozenset({"json", "yaml"})
#: The raw formatters of the Rubin obs packages (``lsst.obs.subaru.rawFormatter.HyperSuprimeCamRawFormatter``)
#: all write or read plain FITS raws.
_RAW_FORMATTER = re.compile(r"^lsst\.obs\.[\w.]+\.\w*RawFormatter$")

#: skybutler formatter -> the skybutler storage class a dataset type gets when its Rubin one is unknown here.
_DEFAULT_CLASS = {"json": "Dict", "yaml": "Dict", "parquet": "Table", "fits": "Image", "ecsv": "AstropyTable", "rubin-log": "ButlerLogRecords"}

#: skybutler storage class -> the Rubin storage class a dataset type gets on export.
_EXPORT_CLASS = {"Dict": "StructuredDataDict", "Table": "ArrowAstropy", "Image": "ImageF"}

#: Rubin formatter classes whose files skybutler keeps unread: a kept file records its class's
#: name only (``rubin:PackagesFormatter``), and goes back under the class's full name.
_KEPT_FORMATTERS = (
    "lsst.pipe.base.formatters.pexConfig.PexConfigFormatter",
    "lsst.daf.butler.formatters.packages.PackagesFormatter",
    "lsst.daf.butler.formatters.pickle.PickleFormatter",
    "lsst.daf.butler.formatters.matplotlib.MatplotlibFormatter",
    "lsst.obs.base.formatters.fitsGeneric.FitsGenericFormatter",
    *IMPORT_FORMATTERS,
)
_KEPT_FULL_NAMES = {kept_formatter_name(name): name for name in _KEPT_FORMATTERS}

_EXPORT_FORMATTERS = {
    "yaml": "lsst.daf.butler.formatters.yaml.YamlFormatter",
    "json": "lsst.daf.butler.formatters.json.JsonFormatter",
    "parquet": "lsst.daf.butler.formatters.parquet.ParquetFormatter",
}


class UnmappedFormatError(SkybutlerError):
    """A skybutler dataset with no Rubin counterpart to export it as."""


def import_formatter(rubin_formatter: str, rubin_class: str, contents: Callable[[], bytes] | None = None) -> str:
    """The skybutler formatter for files of storage class ``rubin_class`` written by
    ``rubin_formatter``: a reading one, else (``is_kept``) the one that keeps the file unread.  A JSON
    or YAML file of a class unknown here is read as a ``Dict`` when it holds a mapping (its
    ``contents`` are checked), and kept otherwise."""
    mapped = IMPORT_FORMATTERS.get(rubin_formatter)
    if mapped is None and _RAW_FORMATTER.match(rubin_formatter):
        mapped = "fits"
    if mapped in _DOCUMENT_FORMATTERS:
        held = _known_class(rubin_class)
        if held is not None and mapped not in held.formatters:
            mapped = "json-value" if mapped == "json" and "json-value" in held.formatters else None
        elif held is None and not _holds_mapping(mapped, contents):
            mapped = None
    return kept_formatter_name(rubin_formatter or "unknown") if mapped is None else mapped


def _holds_mapping(formatter: str, contents: Callable[[], bytes] | None) -> bool:
    """Whether the file (its ``contents``) is a document ``formatter`` reads as a ``Dict``."""
    if contents is None:
        return False
    try:
        get_formatter(formatter).validate(io.BytesIO(contents()))
    except (SkybutlerError, OSError, KeyError):
        return False
    return True


def is_kept(formatter: str) -> bool:
    """Whether ``formatter`` (from :func:`import_formatter`) keeps its files without reading them."""
    return formatter.startswith(KEPT_PREFIX)


def _known_class(name: str):
    try:
        return None if name.startswith(KEPT_PREFIX) else get_storage_class(name)
    except SkybutlerError:
        return None


def import_storage_class(rubin_class: str, formatter: str) -> str:
    """The storage class a Rubin dataset type gets here: its own name when skybutler knows it
    (directly or as a Rubin name) and it can hold files of ``formatter``, else the default class
    for ``formatter``; a kept file's type is ``rubin:<its Rubin class>``."""
    if is_kept(formatter):
        return KEPT_PREFIX + rubin_class
    held = _known_class(rubin_class)
    if held is not None and formatter in held.formatters:
        return rubin_class
    return _DEFAULT_CLASS[formatter]


def export_storage_class(storage_class: str) -> str:
    """The Rubin storage class of a skybutler dataset type (a Rubin name is kept, and so is
    the class of a kept file: ``rubin:Packages`` is ``Packages``)."""
    if storage_class.startswith(KEPT_PREFIX):
        return storage_class[len(KEPT_PREFIX):]
    if storage_class in RUBIN_STORAGE_CLASSES:
        return storage_class
    base = base_storage_class(storage_class)
    if base not in _EXPORT_CLASS:
        raise UnmappedFormatError(f"storage class {storage_class} has no Rubin counterpart")
    return _EXPORT_CLASS[base]


#: File extensions the Rubin butler's formatters insist on (its ParquetFormatter reads only ``.parq``).
_EXPORT_SUFFIX = {"parquet": ".parq"}


def export_suffix(formatter: str) -> str | None:
    """The extension a file of ``formatter`` must have for the Rubin butler (None: keep its own)."""
    return _EXPORT_SUFFIX.get(formatter)


def export_formatter(formatter: str, storage_class: str) -> str:
    """The Rubin formatter class for a file skybutler wrote with ``formatter``, or kept from a
    Rubin repository (the class that wrote it, when its module is known here)."""
    if is_kept(formatter):
        try:
            return _KEPT_FULL_NAMES[formatter]
        except KeyError:
            raise UnmappedFormatError(f"a file kept under {formatter!r} cannot go back to the Rubin butler: "
                                      "its formatter's module was not recorded (only "
                                      f"{', '.join(sorted(_KEPT_FULL_NAMES))} are known)") from None
    if formatter == "fits":
        rubin_class = export_storage_class(storage_class)
        kind = "FitsExposureFormatter" if rubin_class.startswith("Exposure") else "FitsImageFormatter"
        return f"lsst.obs.base.formatters.fitsExposure.{kind}"
    try:
        return _EXPORT_FORMATTERS[formatter]
    except KeyError:
        raise UnmappedFormatError(f"formatter {formatter!r} has no Rubin counterpart") from None
