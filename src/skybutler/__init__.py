"""skybutler: the data butler an imaging survey runs on."""

from .butler import Butler
from .timespan import Timespan

__all__ = ["Butler", "Timespan"]
__version__ = "0.1.0"
