"""Lookup tables of storage classes and formatters by name.

The shipped storage classes and formatters are listed in ``_BUILTIN_*`` below;
adding one means writing its module and appending it there (or calling the
``register_*`` functions at run time, e.g. from a plugin).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import FormatterError, StorageClassError
from ..models import SHARED_HDU_PREFIX
from .formatter import Formatter

if TYPE_CHECKING:
    from .storage_class import StorageClass

_formatters: dict[str, Formatter] = {}
_storage_classes: dict[str, StorageClass] = {}
_builtins_loaded = False
#: The prefix of formatters and storage classes made on lookup for files kept from a Rubin repository
#: (``rubin_outputs.KEPT_PREFIX``, named here so a lookup does not import that module).
_KEPT_PREFIX = "rubin:"
#: The prefix of the formatters of one HDU of a shared multi-extension file (``fits_hdu.FitsHduFormatter``).
_HDU_PREFIX = SHARED_HDU_PREFIX


def _load_builtins() -> None:
    """Register the shipped formatters and storage classes, on the first lookup rather than on
    import: their modules bring astropy, numpy and pyarrow, which a command that reads and
    writes no dataset (``query-collections``) should not pay for."""
    global _builtins_loaded
    if _builtins_loaded:
        return
    _builtins_loaded = True
    from .dict_class import DICT
    from .fits_formatter import FitsFormatter, MultiExtensionFitsFormatter
    from .fits_table import FITS_TABLE, FitsTableFormatter
    from .image_class import IMAGE, MULTI_EXTENSION_IMAGE
    from .parquet_formatter import ParquetFormatter
    from .rubin_names import rubin_storage_classes
    from .rubin_outputs import (
        ASTROPY_TABLE,
        KEPT_FILE,
        LOG_RECORDS,
        SCALARS,
        EcsvFormatter,
        JsonValueFormatter,
        KeptFormatter,
        LogRecordsFormatter,
    )
    from .table_class import TABLE
    from .text_formatters import JsonFormatter, YamlFormatter

    for formatter_class in (JsonFormatter, YamlFormatter, ParquetFormatter, FitsFormatter,
                            MultiExtensionFitsFormatter, FitsTableFormatter):
        register_formatter(formatter_class())
    for formatter in (EcsvFormatter(), JsonValueFormatter(), LogRecordsFormatter(), KeptFormatter(KEPT_FILE)):
        register_formatter(formatter)
    for storage_class in (DICT, TABLE, IMAGE, MULTI_EXTENSION_IMAGE, FITS_TABLE, *rubin_storage_classes(),
                          ASTROPY_TABLE, LOG_RECORDS, *SCALARS):
        register_storage_class(storage_class)


def register_formatter(formatter: Formatter, *, replace: bool = False) -> None:
    """Make ``formatter`` available by its name; refuses to shadow another one unless ``replace``."""
    _load_builtins()
    if not isinstance(formatter, Formatter):
        raise FormatterError(f"Cannot register {formatter!r}: not a Formatter instance.")
    existing = _formatters.get(formatter.name)
    if existing is not None and not replace and type(existing) is not type(formatter):
        raise FormatterError(f"A different formatter named {formatter.name!r} is already registered.")
    _formatters[formatter.name] = formatter


def register_storage_class(storage_class: StorageClass, *, replace: bool = False) -> None:
    """Make ``storage_class`` available by its name; its formatters must be registered first."""
    _load_builtins()
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
    _load_builtins()
    try:
        return _storage_classes[name]
    except (KeyError, TypeError):
        if isinstance(name, str) and name.startswith(_KEPT_PREFIX):  # kept from a Rubin repository
            from .rubin_outputs import kept_storage_class

            return _storage_classes.setdefault(name, kept_storage_class(name))
        raise StorageClassError(
            f"Unknown storage class {name!r}; known storage classes: {list(storage_class_names())}."
        ) from None


def get_formatter(name: str) -> Formatter:
    """The formatter called ``name``; FormatterError lists the known ones otherwise."""
    _load_builtins()
    try:
        return _formatters[name]
    except (KeyError, TypeError):
        if isinstance(name, str) and name.startswith(_KEPT_PREFIX):  # a file kept from a Rubin repository
            from .rubin_outputs import KEPT_READERS, KeptFormatter

            return _formatters.setdefault(name, KEPT_READERS.get(name, KeptFormatter)(name))
        if isinstance(name, str) and name.startswith(_HDU_PREFIX) and name[len(_HDU_PREFIX):].isdigit():
            from .fits_hdu import FitsHduFormatter

            return _formatters.setdefault(name, FitsHduFormatter(int(name[len(_HDU_PREFIX):])))
        raise FormatterError(f"Unknown formatter {name!r}; known formatters: {list(formatter_names())}.") from None


def storage_class_names() -> tuple[str, ...]:
    """Names of all registered storage classes, sorted."""
    _load_builtins()
    return tuple(sorted(_storage_classes))


def formatter_names() -> tuple[str, ...]:
    """Names of all registered formatters, sorted."""
    _load_builtins()
    return tuple(sorted(_formatters))

