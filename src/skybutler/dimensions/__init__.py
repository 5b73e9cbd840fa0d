"""The dimension data model: universe, groups, data IDs, records, regions, timespans.

Pure data model: nothing here knows SQL or files.
"""

from .data_id import DataCoordinate, DataIdValue, normalize_value
from .records import DimensionRecord
from .universe import DimensionElement, DimensionGroup, DimensionUniverse

__all__ = ["DataCoordinate", "DataIdValue", "DimensionElement", "DimensionGroup",
           "DimensionRecord", "DimensionUniverse", "normalize_value"]
