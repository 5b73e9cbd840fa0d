"""Optional dependencies, imported only by the features that need them.

``pip install skybutler`` installs no extra, so every module that the command line
and the Python API import at start-up must import without them; a feature that
needs one calls :func:`require` when it is used, and the user reads one line
naming the extra to install.
"""

from __future__ import annotations

import importlib
from types import ModuleType

from .errors import MissingExtraError

__all__ = ["EXTRAS", "require"]

#: Module -> (distribution, extra of skybutler that installs it).
EXTRAS: dict[str, tuple[str, str]] = {
    "astro_metadata_translator": ("astro-metadata-translator", "instruments"),
    "sep": ("sep", "pipelines"),
    "reproject": ("reproject", "pipelines"),
    "dask": ("dask", "dask"),
    "distributed": ("distributed", "dask"),
    "psycopg": ("psycopg", "postgres"),
    "s3fs": ("s3fs", "s3"),
    "fastapi": ("fastapi", "server"),
    "uvicorn": ("uvicorn", "server"),
    "httpx": ("httpx", "server"),
    "watchdog": ("watchdog", "watch"),
    "hats": ("hats", "catalogs"),
    "lsdb": ("lsdb", "catalogs"),
    "felis": ("lsst-felis", "catalogs"),
    "duckdb": ("duckdb", "catalogs"),
    "PIL": ("pillow", "server"),
}


def require(module: str, purpose: str) -> ModuleType:
    """Import ``module``, or raise :class:`MissingExtraError` saying which extra installs it.

    ``purpose`` completes the sentence "<purpose> needs ..." (e.g. "reading raw headers").
    """
    try:
        return importlib.import_module(module)
    except ImportError as exc:
        top = module.split(".")[0]
        if exc.name is not None and exc.name.split(".")[0] != top:
            raise  # the package is there but one of its own imports is broken: show that
        distribution, extra = EXTRAS.get(top, (top, None))
        how = f"pip install 'skybutler[{extra}]'" if extra else f"pip install {distribution}"
        raise MissingExtraError(f"{purpose} needs {distribution}, which is not installed: {how}") from None
