"""astro-metadata-translator, loaded on first use and run offline.

The library is an optional dependency (the ``instruments`` extra): :func:`_library` imports
it when a header is first translated, with skybutler's own translators registered in it.
Translation never touches the network: :func:`offline` switches astropy's remote data and
IERS downloads off, and :func:`_offline_translator` gives a translator that would look its
site up in astropy's online registry the site of the camera's description instead.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Iterator
from typing import Any

import astropy.units as u

from ..extras import require
from .instrument import get_instrument, instruments_with_header_rules

__all__ = ["offline"]


@functools.cache
def _library() -> Any:
    """astro-metadata-translator, with skybutler's own translators registered in it."""
    amt = require("astro_metadata_translator", "reading raw headers")
    from . import translators  # noqa: F401  (importing registers them with the library)

    return amt


def _described_translators() -> None:
    """Make a translator for every known description that carries header rules."""
    from .translators.described import translator_from_rules

    for instrument in instruments_with_header_rules():
        translator_from_rules(instrument)


@contextlib.contextmanager
def offline() -> Iterator[None]:
    """No download while translating: no site registry, no IERS tables (nested uses are free)."""
    global _OFFLINE_DEPTH
    if _OFFLINE_DEPTH:
        yield
        return
    from astropy.utils import iers
    from astropy.utils.data import conf as data_conf

    _OFFLINE_DEPTH += 1
    try:
        with data_conf.set_temp("allow_internet", False), iers.conf.set_temp("auto_download", False):
            yield
    finally:
        _OFFLINE_DEPTH -= 1


_OFFLINE_DEPTH = 0


@functools.cache
def _offline_translator(translator_class: type) -> type:
    """``translator_class`` whose site comes from the camera description if its own lookup fails,
    and whose file name becomes the library's URI only when it is read (to name the file in a
    warning: most raws never need it, and the library makes it in every constructor, ~40 us each).

    Some translators look the observatory up in astropy's site registry, which is
    downloaded on first use; offline that raises, and the camera's description (or,
    failing that, the error) answers instead.  The subclass has no ``name``, so it
    is not registered as a translator of its own.
    """

    def to_location(self: Any) -> Any:
        try:
            return translator_class.to_location(self)
        except Exception as exc:
            site = _described_site(self)
            if site is None:
                raise KeyError(f"no site in the header, and astropy's site registry is offline ({exc})") from exc
            return site

    def __init__(self: Any, header: Any, filename: Any = None) -> None:
        translator_class.__init__(self, header)
        self.filename = filename

    def uri(self: Any) -> str | None:
        name = self.__dict__.get("_file_name")
        return None if name is None else _file_uri(name)

    def set_name(self: Any, name: Any) -> None:
        self.__dict__["_file_name"] = name

    members: dict[str, Any] = {"name": None, "to_location": to_location}
    if translator_class.__init__ is _library().MetadataTranslator.__init__:  # a constructor of its own is kept
        members["__init__"] = __init__
        members["filename"] = property(uri, set_name)  # made when read (to name the file in a warning)
    return type(f"Offline{translator_class.__name__}", (translator_class,), members)


def _file_uri(filename: Any) -> str:
    """The file name a translator keeps (the library's absolute URI of it), made once per file.
    A relative name depends on the working directory, so only absolute ones are remembered."""
    name = str(filename)
    return _absolute_uri(name) if os.path.isabs(name) else _absolute_uri.__wrapped__(name)


@functools.lru_cache(maxsize=64)
def _absolute_uri(name: str) -> str:
    from lsst.resources import ResourcePath

    return str(ResourcePath(name, forceAbsolute=True))


def _described_site(translator: Any) -> Any:
    from astropy.coordinates import EarthLocation

    try:
        site = get_instrument(translator.to_instrument()).location
    except Exception:
        return None
    if site is None:
        return None
    return EarthLocation.from_geodetic(site.longitude * u.deg, site.latitude * u.deg, site.height * u.m)
