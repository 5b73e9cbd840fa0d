"""The dimension universe: the configured set of dimension elements.

A universe is loaded from YAML (``default_universe.yaml`` ships with the package).
It is pure data model: it knows nothing of SQL or files.  Everything that needs to
know "which dimensions identify a visit" or "what does a detector imply" asks here.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from importlib import resources
from pathlib import Path
from typing import Any, Literal, NoReturn

import yaml

from ..errors import UnknownDimensionError

FieldType = Literal["int", "float", "str", "bool"]
PYTHON_TYPES: dict[str, type] = {"int": int, "float": float, "str": str, "bool": bool}


@dataclass(frozen=True, slots=True)
class KeySpec:
    """The key column of an element: the value users type in a data ID."""

    name: str
    type: Literal["int", "str"]
    length: int = 64

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or self.type not in ("int", "str") or type(self.length) is not int:
            raise ValueError(f"key {self.name!r}: a key needs a name, a type (int or str) and an integer length, "
                             f"not type={self.type!r}, length={self.length!r}")


@dataclass(frozen=True, slots=True)
class DimensionElement:
    """One element of the universe: a dimension (with a key) or a join element (without).
    Built from the universe YAML: each field is checked, and ``key`` may be given as a
    mapping, the name lists and ``skypix`` as any sequences."""

    name: str
    key: KeySpec | None = None
    requires: tuple[str, ...] = ()
    implies: tuple[str, ...] = ()
    fields: dict[str, FieldType] = field(default_factory=dict)
    region: bool = False
    timespan: bool = False
    #: Sky-pixel dimensions are derived: their values are computed, never inserted.
    skypix: tuple[str, int] | None = None

    def __post_init__(self) -> None:
        def fail(what: str) -> NoReturn:
            raise ValueError(f"element {self.name!r}: {what}")

        if not isinstance(self.name, str):
            fail("its name must be a string")
        if isinstance(self.key, Mapping):
            object.__setattr__(self, "key", KeySpec(**self.key))
        elif self.key is not None and not isinstance(self.key, KeySpec):
            fail(f"key must be a mapping (name, type, length), not {self.key!r}")
        for name in ("requires", "implies"):
            names = getattr(self, name)
            if isinstance(names, str) or not isinstance(names, Sequence) or not all(isinstance(n, str) for n in names):
                fail(f"{name} must be a list of dimension names, not {names!r}")
            object.__setattr__(self, name, tuple(names))
        if not isinstance(self.fields, Mapping) or not all(
                isinstance(k, str) and v in PYTHON_TYPES for k, v in self.fields.items()):
            fail(f"fields must map names to one of {', '.join(PYTHON_TYPES)}, not {self.fields!r}")
        if not isinstance(self.region, bool) or not isinstance(self.timespan, bool):
            fail("region and timespan must be true or false")
        if self.skypix is not None:
            if not (isinstance(self.skypix, Sequence) and len(self.skypix) == 2 and isinstance(self.skypix[0], str)
                    and type(self.skypix[1]) is int):
                fail(f"skypix must be (system, level), not {self.skypix!r}")
            object.__setattr__(self, "skypix", tuple(self.skypix))

    @property
    def is_dimension(self) -> bool:
        """Whether the element has its own key (and so can appear in a data ID)."""
        return self.key is not None

    @property
    def identity(self) -> tuple[str, ...]:
        """The dimension names whose values identify one record of this element."""
        return self.requires + ((self.name,) if self.key is not None else ())

    def column_of(self, dimension: str) -> str:
        """The column name, in this element's table, of an identifying or implied dimension."""
        return self.key.name if dimension == self.name and self.key else dimension


class DimensionUniverse:
    """All elements of a configured universe, with derived relationships cached."""

    def __init__(self, name: str, version: int, elements: Iterable[DimensionElement],
                 spatial_index: str | None = None):
        self.name = name
        self.version = version
        self.elements: dict[str, DimensionElement] = {e.name: e for e in elements}
        self.spatial_index = spatial_index
        #: the parsed YAML mapping it was built from (what a server sends its clients), if any
        self.config: Mapping[str, Any] | None = None
        self._check()

    # -- construction ---------------------------------------------------------

    @classmethod
    def from_config(cls, config: Mapping[str, Any]) -> DimensionUniverse:
        """Build a universe from a parsed YAML mapping (see ``default_universe.yaml``)."""
        elements = [DimensionElement(name=name, **spec) for name, spec in config["elements"].items()]
        for system, levels in (config.get("skypix") or {}).items():
            for level in levels:
                elements.append(DimensionElement(
                    name=f"{system}{level}", key=KeySpec(name="id", type="int"), skypix=(system, level)))
        universe = cls(config["name"], int(config["version"]), elements, config.get("spatial_index"))
        universe.config = config
        return universe

    @classmethod
    def from_yaml(cls, path: str | Path) -> DimensionUniverse:
        """Load a universe from a YAML file."""
        with open(path) as stream:
            return cls.from_config(yaml.safe_load(stream))

    @classmethod
    def default(cls) -> DimensionUniverse:
        """The default astronomy universe shipped with skybutler (loaded once)."""
        global _DEFAULT
        if _DEFAULT is None:
            text = resources.files(__package__).joinpath("default_universe.yaml").read_text()
            # libyaml's loader when PyYAML has it: every open of a repository reads this file,
            # and the pure-Python one takes a tenth of a second for it
            _DEFAULT = cls.from_config(yaml.load(text, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader)))
        return _DEFAULT

    def _check(self) -> None:
        for element in self.elements.values():
            for dep in element.requires + element.implies:
                if dep not in self.elements or not self.elements[dep].is_dimension:
                    raise UnknownDimensionError(
                        f"element {element.name!r} depends on {dep!r}, which is not a dimension of universe {self.name!r}")
        if self.spatial_index is not None and self.spatial_index not in self.elements:
            raise UnknownDimensionError(f"spatial_index {self.spatial_index!r} is not a sky-pixel dimension")

    # -- lookup ---------------------------------------------------------------

    def __getitem__(self, name: str) -> DimensionElement:
        try:
            return self.elements[name]
        except KeyError:
            raise UnknownDimensionError(
                f"{name!r} is not a dimension element; known: {', '.join(self.elements)}") from None

    def __contains__(self, name: object) -> bool:
        return name in self.elements

    @cached_property
    def dimensions(self) -> tuple[str, ...]:
        """Names of all dimensions (elements with a key), in definition order."""
        return tuple(n for n, e in self.elements.items() if e.is_dimension)

    @cached_property
    def order(self) -> dict[str, int]:
        """A stable sort position for every element: dependencies before dependents."""
        ordered: list[str] = []

        def visit(name: str) -> None:
            if name in ordered:
                return
            element = self.elements[name]
            for dep in element.requires + element.implies:
                visit(dep)
            ordered.append(name)

        for name in self.elements:
            visit(name)
        return {name: i for i, name in enumerate(ordered)}

    def sorted(self, names: Iterable[str]) -> tuple[str, ...]:
        """Names in the universe's dependency order (the canonical order of data IDs)."""
        return tuple(sorted(set(names), key=self.order.__getitem__))

    def group(self, names: Iterable[str]) -> DimensionGroup:
        """The dimension group spanned by ``names`` (with all their dependencies), cached."""
        key = frozenset(names)
        group = self._groups.get(key)
        if group is None:
            group = self._groups[key] = DimensionGroup(self, key)
        return group

    @cached_property
    def _groups(self) -> dict[frozenset[str], DimensionGroup]:
        return {}

    @cached_property
    def skypix_dimensions(self) -> tuple[str, ...]:
        return tuple(n for n, e in self.elements.items() if e.skypix is not None)

    def __repr__(self) -> str:
        return f"DimensionUniverse({self.name!r}, version={self.version})"


_DEFAULT: DimensionUniverse | None = None


class DimensionGroup:
    """A closed set of dimensions: the ones named plus everything they require or imply.

    ``required`` are the dimensions whose values identify a data ID; ``implied`` are
    looked up from records of the required ones.  Both are in canonical order.
    """

    def __init__(self, universe: DimensionUniverse, names: Iterable[str]):
        self.universe = universe
        required: set[str] = set()
        implied: set[str] = set()

        def add(name: str, as_required: bool) -> None:
            element = universe[name]
            if not element.is_dimension:
                raise UnknownDimensionError(f"{name!r} is a join element, not a dimension")
            (required if as_required else implied).add(name)
            for dep in element.requires:
                add(dep, as_required)
            for dep in element.implies:
                add(dep, False)

        for name in names:
            add(name, True)
        # A named dimension that another one implies stays implied ({visit, band} is
        # identified by the visit alone), unless something also requires it.
        required_by_others = {dep for r in required for dep in universe[r].requires}
        required -= {n for n in implied if n not in required_by_others}
        self.required: tuple[str, ...] = universe.sorted(required)
        self.implied: tuple[str, ...] = universe.sorted(implied - required)
        self.names: tuple[str, ...] = universe.sorted(required | implied)

    @cached_property
    def elements(self) -> tuple[str, ...]:
        """Every element (dimensions and join elements) whose identity lies in this group."""
        have = set(self.names)
        return self.universe.sorted(
            n for n, e in self.universe.elements.items() if e.skypix is None and set(e.identity) <= have)

    def __contains__(self, name: object) -> bool:
        return name in self.names

    def __iter__(self):
        return iter(self.names)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, DimensionGroup) and self.required == other.required

    def __hash__(self) -> int:
        return hash(self.required)

    def __repr__(self) -> str:
        return "{" + ", ".join(self.required) + "}"
