"""The mark of a Butler method that a butler opened on a server URL sends to its server."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any


def served(method: Callable[..., Any]) -> Callable[..., Any]:
    """A public method that a butler opened on a server URL hands to its transport (the same
    name and arguments), so that local and remote butlers share one API."""
    name = method.__name__

    @functools.wraps(method)
    def call(self: Any, *args: Any, **kwargs: Any) -> Any:
        if self._remote is not None:
            return getattr(self._remote, name)(*args, **kwargs)
        return method(self, *args, **kwargs)

    return call
