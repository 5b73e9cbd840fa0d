"""Rubin formatter classes and storage classes, and the skybutler formatters they map to.

A Rubin export names, for every file, the Python class that wrote it.  Files that
skybutler's formatters read byte for byte (YAML, JSON, Parquet, single-image and
exposure FITS, raw FITS) map to those formatters; a pickled dataset is refused,
never unpickled (unpickling runs arbitrary code); any other class has no mapping
and is refused by name.
"""

from __future__ import annotations

import re

from ..errors import SkybutlerError
from ..formats import get_storage_class
from ..formats.rubin_names import RUBIN_STORAGE_CLASSES, base_storage_class

PICKLE_FORMATTERS = frozenset({"lsst.daf.butler.formatters.pickle.PickleFormatter"})

#: Rubin formatter class -> skybutler formatter name.
IMPORT_FORMATTERS: dict[str, str] = {
    "lsst.daf.butler.formatters.yaml.YamlFormatter": "yaml",
    "lsst.daf.butler.formatters.json.JsonFormatter": "json",
    "lsst.daf.butler.formatters.parquet.ParquetFormatter": "parquet",
    "lsst.obs.base.formatters.fitsExposure.FitsImageFormatter": "fits",
    "lsst.obs.base.formatters.fitsExposure.FitsExposureFormatter": "fits",
    "lsst.obs.base.formatters.fitsExposure.FitsMaskedImageFormatter": "fits",
}
#: The raw formatters of the Rubin obs packages (``lsst.obs.subaru.rawFormatter.HyperSuprimeCamRawFormatter``)
#: all write or read plain FITS raws.
_RAW_FORMATTER = re.compile(r"^lsst\.obs\.[\w.]+\.\w*RawFormatter$")

#: skybutler formatter -> the skybutler storage class a dataset type gets when its Rubin one is unknown here.
_DEFAULT_CLASS = {"yaml": "Dict", "json": "Dict", "parquet": "Table", "fits": "Image"}

#: skybutler storage class -> the Rubin storage class a dataset type gets on export.
_EXPORT_CLASS = {"Dict": "StructuredDataDict", "Table": "ArrowAstropy", "Image": "ImageF"}

_EXPORT_FORMATTERS = {
    "yaml": "lsst.daf.butler.formatters.yaml.YamlFormatter",
    "json": "lsst.daf.butler.formatters.json.JsonFormatter",
    "parquet": "lsst.daf.butler.formatters.parquet.ParquetFormatter",
}


class UnmappedFormatError(SkybutlerError):
    """A Rubin dataset whose file skybutler cannot read (no mapping, or pickled)."""


def import_formatter(rubin_formatter: str) -> str:
    """The skybutler formatter for files written by ``rubin_formatter``; UnmappedFormatError otherwise."""
    if rubin_formatter in PICKLE_FORMATTERS or rubin_formatter.endswith(".PickleFormatter"):
        raise UnmappedFormatError("a pickled dataset is refused (reading a pickle runs arbitrary code); "
                                  "convert it to another format with the Rubin butler first")
    mapped = IMPORT_FORMATTERS.get(rubin_formatter)
    if mapped is None and _RAW_FORMATTER.match(rubin_formatter):
        mapped = "fits"
    if mapped is None:
        raise UnmappedFormatError(f"formatter {rubin_formatter} has no skybutler mapping (mapped: "
                                  f"{', '.join(sorted(IMPORT_FORMATTERS))} and lsst.obs.*RawFormatter)")
    return mapped


def import_storage_class(rubin_class: str, formatter: str) -> str:
    """The storage class a Rubin dataset type gets here: its own name when skybutler knows it
    (directly or as a Rubin name) and it can hold files of ``formatter``, else the default class
    for ``formatter``."""
    try:
        if formatter in get_storage_class(rubin_class).formatters:
            return rubin_class
    except SkybutlerError:
        pass
    return _DEFAULT_CLASS[formatter]


def export_storage_class(storage_class: str) -> str:
    """The Rubin storage class of a skybutler dataset type (a Rubin name is kept)."""
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
    """The Rubin formatter class for a file skybutler wrote with ``formatter``."""
    if formatter == "fits":
        rubin_class = export_storage_class(storage_class)
        kind = "FitsExposureFormatter" if rubin_class.startswith("Exposure") else "FitsImageFormatter"
        return f"lsst.obs.base.formatters.fitsExposure.{kind}"
    try:
        return _EXPORT_FORMATTERS[formatter]
    except KeyError:
        raise UnmappedFormatError(f"formatter {formatter!r} has no Rubin counterpart") from None
