"""Settings classes: dataclasses whose values are checked against their fields' annotations,
built from a parsed YAML mapping with every problem reported at once, each at its key path.

The repository config (``butler.yaml``) is read on every open of a repository; checking it
with pydantic took longer (its import) than a trivial command may run.  A field may add a
``check`` (``dataclasses.field(metadata={"check": f})``): a function of the value that
raises ValueError to refuse it, or a :class:`SettingsError` to refuse parts of it (its
locations relative to the field).
"""

from __future__ import annotations

import dataclasses
import functools
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, Self, Union

#: (key path, message): the key path a tuple of names and list positions.
Problem = tuple[tuple[str | int, ...], str]


class SettingsError(ValueError):
    """What is wrong with some settings: every problem, each at its key path."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("; ".join(f"{dotted(loc)}: {message}" for loc, message in problems))


def dotted(loc: tuple[str | int, ...]) -> str:
    """A key path as text: ``retention.policies[0].keep_days``."""
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "(top level)"


def non_negative(value: float) -> None:
    if value < 0:
        raise ValueError("Input should be greater than or equal to 0")


class Settings:
    """Base of a settings dataclass (``@dataclasses.dataclass(kw_only=True)``): its values are
    checked (and nested mappings built into their settings classes) when it is made."""

    def __post_init__(self) -> None:
        problems: list[Problem] = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            try:
                value = _convert(_hints(type(self))[f.name], getattr(self, f.name))
                if "check" in f.metadata:
                    f.metadata["check"](value)
            except SettingsError as err:
                problems += [((f.name, *loc), message) for loc, message in err.problems]
            except ValueError as err:
                problems.append(((f.name,), str(err)))
            else:
                setattr(self, f.name, value)
        if problems:
            raise SettingsError(problems)

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any]) -> Self:
        """Settings from a parsed mapping; SettingsError names every bad, missing or unknown key."""
        fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
        problems: list[Problem] = [((name,), "Field required") for name, f in fields.items() if name not in data
                                   and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING]
        if not problems:
            try:
                made = cls(**{k: v for k, v in data.items() if k in fields})
            except SettingsError as err:
                problems += err.problems
        problems += [((str(key),), "unknown key (a typo?)") for key in data if key not in fields]
        if problems:
            raise SettingsError(problems)
        return made

    def to_dict(self, *, exclude_defaults: bool = False) -> dict[str, Any]:
        """The settings as plain values (what :meth:`from_mapping` reads back)."""
        out = {}
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if exclude_defaults and f.default is not dataclasses.MISSING and value == f.default:
                continue
            if exclude_defaults and f.default_factory is not dataclasses.MISSING and value == f.default_factory():
                continue
            out[f.name] = _plain(value, exclude_defaults)
        return out


@functools.cache
def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _plain(value: Any, exclude_defaults: bool) -> Any:
    if isinstance(value, Settings):
        return value.to_dict(exclude_defaults=exclude_defaults)
    if isinstance(value, list):
        return [_plain(v, exclude_defaults) for v in value]
    if isinstance(value, dict):
        return {k: _plain(v, exclude_defaults) for k, v in value.items()}
    return value


def _convert(hint: Any, value: Any) -> Any:
    """``value`` as a ``hint`` (a nested mapping made into its settings class); ValueError
    (SettingsError for problems inside it) says why it cannot be."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        (hint,) = [a for a in args if a is not type(None)]
        return _convert(hint, value)
    if origin is Literal:
        if value not in args:
            raise ValueError("Input should be " + " or ".join(repr(a) for a in args))
        return value
    if origin in (dict, list):
        container = Mapping if origin is dict else (list, tuple)
        if not isinstance(value, container):
            raise ValueError(f"Input should be a valid {'dictionary' if origin is dict else 'list'}")
        items = value.items() if origin is dict else enumerate(value)
        out, problems = {}, []
        for key, item in items:
            try:
                out[key] = _convert(args[-1], item)
            except SettingsError as err:
                problems += [((key, *loc), message) for loc, message in err.problems]
            except ValueError as err:
                problems.append(((key,), str(err)))
        if problems:
            raise SettingsError(problems)
        return out if origin is dict else list(out.values())
    if isinstance(hint, type) and issubclass(hint, Settings):
        if isinstance(value, hint):
            return value
        if not isinstance(value, Mapping):
            raise ValueError("Input should be a valid dictionary")
        return hint.from_mapping(value)
    if hint is bool:
        if not isinstance(value, bool):
            raise ValueError("Input should be a valid boolean")
    elif hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ValueError("Input should be a valid number")
        return float(value)
    elif hint is str:
        if not isinstance(value, str):
            raise ValueError("Input should be a valid string")
    else:
        raise TypeError(f"settings fields of type {hint!r} are not supported")
    return value
