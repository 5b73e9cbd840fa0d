"""skybutler: the data butler an imaging survey runs on."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .butler import Butler
    from .timespan import Timespan

__all__ = ["Butler", "Timespan"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    """``Butler`` and ``Timespan``, imported on first use, so that ``skybutler --help`` and
    light modules do not pay for astropy, pyarrow and SQLAlchemy."""
    if name == "Butler":
        from .butler import Butler

        return Butler
    if name == "Timespan":
        from .timespan import Timespan

        return Timespan
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
