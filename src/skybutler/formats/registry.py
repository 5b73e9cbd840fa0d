"""Lookup tables of storage classes and formatters by name.

The shipped storage classes and formatters are listed in ``_BUILTIN_*`` below;
adding one means writing its module and appending it there (or calling the
``register_*`` functions at run time, e.g. from a plugin).
"""

from __future__ import annotations

from ..errors import FormatterError, StorageClassError
from .dict_class import DICT
from .fits_formatter import FitsFormatter, MultiExtensionFitsFormatter
from .fits_table import FITS_TABLE, FitsTableFormatter
from .formatter import Formatter
from .image_class import IMAGE, MULTI_EXTENSION_IMAGE
from .parquet_formatter import ParquetFormatter
from .rubin_names import rubin_storage_classes
from .storage_class import StorageClass
from .table_class import TABLE
from .text_formatters import JsonFormatter, YamlFormatter

_BUILTIN_FORMATTERS: tuple[type[Formatter], ...] = (JsonFormatter, YamlFormatter, ParquetFormatter, FitsFormatter,
                                                    MultiExtensionFitsFormatter, FitsTableFormatter)
_BUILTIN_STORAGE_CLASSES: tuple[StorageClass, ...] = (DICT, TABLE, IMAGE, MULTI_EXTENSION_IMAGE, FITS_TABLE,
                                                         *rubin_storage_classes())

_formatters: dict[str, Formatter] = {}
_storage_classes: dict[str, StorageClass] = {}


def register_formatter(formatter: Formatter, *, replace: bool = False) -> None:
    """Make ``formatter`` available by its name; refuses to shadow another one unless ``replace``."""
    if not isinstance(formatter, Formatter):
        raise FormatterError(f"Cannot register {formatter!r}: not a Formatter instance.")
    existing = _formatters.get(formatter.name)
    if existing is not None and not replace and type(existing) is not type(formatter):
        raise FormatterError(f"A different formatter named {formatter.name!r} is already registered.")
    _formatters[formatter.name] = formatter


def register_storage_class(storage_class: StorageClass, *, replace: bool = False) -> None:
    """Make ``storage_class`` available by its name; its formatters must be registered first."""
    missing = [name for name in storage_class.formatters if name not in _formatters]
    if missing:
        raise StorageClassError(
            f"Storage class {storage_class.name!r} uses unregistered formatter(s) {missing}; "
            f"known formatters: {formatter_names()}."
        )
    existing = _storage_classes.get(storage_class.name)
    if existing is not None and not replace and existing is not storage_class:
        raise StorageClassError(f"A different storage class named {storage_class.name!r} is already registered.")
    _storage_classes[storage_class.name] = storage_class


def get_storage_class(name: str) -> StorageClass:
    """The storage class called ``name``; StorageClassError lists the known ones otherwise."""
    try:
        return _storage_classes[name]
    except (KeyError, TypeError):
        raise StorageClassError(
            f"Unknown storage class {name!r}; known storage classes: {list(storage_class_names())}."
        ) from None


def get_formatter(name: str) -> Formatter:
    """The formatter called ``name``; FormatterError lists the known ones otherwise."""
    try:
        return _formatters[name]
    except (KeyError, TypeError):
        raise FormatterError(f"Unknown formatter {name!r}; known formatters: {list(formatter_names())}.") from None


def storage_class_names() -> tuple[str, ...]:
    """Names of all registered storage classes, sorted."""
    return tuple(sorted(_storage_classes))


def formatter_names() -> tuple[str, ...]:
    """Names of all registered formatters, sorted."""
    return tuple(sorted(_formatters))


for _formatter_class in _BUILTIN_FORMATTERS:
    register_formatter(_formatter_class())
for _storage_class in _BUILTIN_STORAGE_CLASSES:
    register_storage_class(_storage_class)
