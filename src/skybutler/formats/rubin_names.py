"""The Rubin butler's names of storage classes that skybutler's own classes hold.

A Rubin dataset type keeps its storage-class name when it comes into skybutler
(``StructuredDataDict``, ``ArrowAstropy``, ``DataFrame``, ``ExposureF``, ...), so a
repository moved back to the Rubin butler has the same dataset types.  Each name
here is one of skybutler's classes under another name: same checker, formatters,
components and read parameters.
"""

from __future__ import annotations

from dataclasses import replace

from .dict_class import DICT
from .image_class import IMAGE
from .storage_class import StorageClass
from .table_class import TABLE

#: Rubin storage-class name -> the skybutler storage class that holds its datasets.
RUBIN_STORAGE_CLASSES: dict[str, StorageClass] = {
    **{name: DICT for name in ("StructuredDataDict", "TaskMetadata")},
    **{name: TABLE for name in ("ArrowAstropy", "ArrowTable", "ArrowNumpy", "ArrowNumpyDict", "DataFrame")},
    **{name: IMAGE for name in ("ImageF", "ImageD", "ImageI", "ImageU", "Exposure", "ExposureF", "ExposureI",
                                "DecoratedImageU")},
}


def rubin_storage_classes() -> tuple[StorageClass, ...]:
    """The storage classes registered under their Rubin names."""
    return tuple(replace(base, name=name) for name, base in RUBIN_STORAGE_CLASSES.items())


def base_storage_class(name: str) -> str:
    """The skybutler storage class a (possibly Rubin) storage-class name is held by."""
    base = RUBIN_STORAGE_CLASSES.get(name)
    return name if base is None else base.name
