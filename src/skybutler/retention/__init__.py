"""Retention: dataset states, policies from ``butler.yaml``, the cold tier, recompute on demand.

Walkthrough step 8: processed images kept on disk for 30 days, raws moved to a cold tier,
older products recreated on demand from their recorded provenance, with the expected
wait told to the user.  The entry point is ``butler.retention`` (:class:`.facade.Retention`)
and ``butler.get(..., recompute=True)``; the CLI has ``skybutler retention apply`` and
``skybutler recompute``.
"""

from __future__ import annotations

from typing import Any

from .policy import ColdTierConfig, RetentionConfig, RetentionPolicy

_LAZY = {
    "Retention": "facade", "RetentionReport": "apply", "RetentionAction": "apply",
    "RecomputeOptions": "ondemand", "RecomputeEstimate": "ondemand", "RecomputeResult": "ondemand",
    "RecomputeError": "ondemand", "SoftwareDriftError": "ondemand", "RecomputeVerificationError": "ondemand",
    "RecomputeReport": "executor",
}

__all__ = ["ColdTierConfig", "RecomputeError", "RecomputeEstimate", "RecomputeOptions", "RecomputeReport",
           "RecomputeResult", "RecomputeVerificationError", "Retention", "RetentionAction", "RetentionConfig",
           "RetentionPolicy", "RetentionReport", "SoftwareDriftError"]


def __getattr__(name: str) -> Any:
    # config.py imports .policy while the butler is being imported: the rest waits until asked for.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
    raise AttributeError(name)
