"""skybutler: the data butler an imaging survey runs on."""

from .timespan import Timespan

__all__ = ["Timespan"]
__version__ = "0.1.0"
