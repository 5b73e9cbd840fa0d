"""Data IDs as the Rubin butler takes them: a dimension given by its alternate key
(``detector="R01"``, ``visit="CAM_2"``, ``exposure="CAM_1"``, its ``obs_id``) or by fields of
its record (``day_obs=20240101, seq_num=2`` for an exposure or a visit), looked up in the
records to the one data ID they name."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .errors import DataIdError

if TYPE_CHECKING:
    from .butler import Butler
    from .dimensions import DimensionGroup

#: The field of a dimension's record that the Rubin butler takes in place of its integer key.
ALTERNATE_KEYS = {"detector": "full_name", "exposure": "obs_id", "visit": "name", "visit_system": "name"}


def look_up(butler: Butler, group: DimensionGroup, given: Mapping[str, Any]) -> dict[str, Any] | None:
    """``given`` with its alternate keys and record fields replaced by the values of the one data
    ID of ``group`` they name, or None when it holds neither (or a field that no element of the
    group has, or several have: the caller's own error then says what is wrong)."""
    universe = butler.universe
    terms: list[str] = []
    bind: dict[str, Any] = {}
    plain: dict[str, Any] = {}
    for name, value in given.items():
        key = universe[name].key if name in universe.elements else None
        if key is not None and key.type == "int" and isinstance(value, str) and name in ALTERNATE_KEYS:
            terms.append(f"{name}.{ALTERNATE_KEYS[name]} = :{name}_key")
            bind[f"{name}_key"] = value
        elif name in universe.elements:
            plain[name] = value
        else:
            owners = [e for e in group.elements if name in universe[e].fields]
            if len(owners) != 1:
                return None
            terms.append(f"{owners[0]}.{name} = :field_{name}")
            bind[f"field_{name}"] = value
    if not terms:
        return None
    found = list(butler.query_data_ids(group.required, " AND ".join(terms), bind=bind, data_id=plain).limit(2))
    if len(found) != 1:
        raise DataIdError(f"data ID {dict(given)} names {'no' if not found else 'more than one'} "
                          f"{' and '.join(group.required)} (looked up by {' AND '.join(terms)})")
    return {**{k: v for k, v in plain.items() if k in group.names}, **found[0].required}
