"""Interchange with the Rubin butler: its exports and zips in, and exports it can import out."""

from .rubin_export import export_rubin
from .rubin_import import import_rubin
from .rubin_read import RubinImportError, is_rubin_export

__all__ = ["RubinImportError", "export_rubin", "import_rubin", "is_rubin_export"]
