"""Errors raised while describing instruments and reading raw files.

They live here (not in :mod:`skybutler.errors`) because only this package raises
them; each still derives from :class:`skybutler.errors.SkybutlerError` so a
caller catching every skybutler error catches these too.
"""

from __future__ import annotations

from pathlib import Path

from skybutler.errors import SkybutlerError


class InstrumentError(SkybutlerError):
    """An instrument description is invalid or an instrument is used wrongly."""


class UnknownInstrumentError(InstrumentError, LookupError):
    """No instrument (or no header translator) of that name is known."""

    def __str__(self) -> str:  # LookupError would quote the message
        return str(self.args[0]) if self.args else ""


class RawHeaderError(InstrumentError, ValueError):
    """A raw file cannot be turned into observation metadata.

    The message always names the file and the reason (corrupt file, unknown
    instrument, missing or contradictory header keys), because ingest reports
    these for thousands of files at once and the user must find the bad one.
    """

    def __init__(self, path: str | Path, reason: str):
        self.path = str(path)
        self.reason = reason
        super().__init__(f"{self.path}: {reason}")


class UnknownRawInstrumentError(RawHeaderError):
    """A raw file's header belongs to no instrument with a header translator."""
