"""Retention policies and the cold tier, as written in ``butler.yaml``::

    retention:
      policies:
        - dataset_type: "calexp"         # glob over dataset type names (default "*")
          collection: "HSC/runs/*"       # glob over the dataset's RUN (default "*")
          keep_days: 30
          after: created                 # or: last_access
          action: purge                  # or: cold
        - dataset_type: raw
          keep_days: 30
          action: cold
      cold_tier:
        uri: /archive/tape-standin       # a directory or an fsspec URL (s3://...)
        staging_latency: 120             # seconds a read from it is expected to wait

A dataset is due for a policy's action once it is older than ``keep_days`` counted
from its creation or from its last read (``after: last_access``; reads are recorded at
most once a day per dataset, only when some policy asks for it).  Of all the policies
that match a dataset and are due, the furthest-reaching action wins (purge over cold).
Purging deletes the file and keeps everything else; a dataset that could not be
recomputed from its provenance is never purged unless forced.

``staging_latency`` is a stand-in for a tape library: staging a dataset back from the
cold tier sleeps that long (so tests and demos see the wait a user would be told of).
"""

from __future__ import annotations

import dataclasses
import fnmatch
from typing import Literal

from ..settings import Settings, non_negative

DAY_NS = 86_400 * 10**9


@dataclasses.dataclass(kw_only=True)
class RetentionPolicy(Settings):
    """Keep matching datasets for ``keep_days``, then purge them or move them to the cold tier."""

    dataset_type: str = "*"
    collection: str = "*"
    keep_days: float = dataclasses.field(metadata={"check": non_negative})
    after: Literal["created", "last_access"] = "created"
    action: Literal["purge", "cold"] = "purge"

    def matches(self, dataset_type: str, run: str) -> bool:
        return fnmatch.fnmatchcase(dataset_type, self.dataset_type) and fnmatch.fnmatchcase(run, self.collection)

    def due(self, created_ns: int, last_access_ns: int | None, now_ns: int) -> bool:
        start = max(created_ns, last_access_ns or 0) if self.after == "last_access" else created_ns
        return now_ns - start >= self.keep_days * DAY_NS

    def describe(self) -> str:
        return (f"{self.action} {self.dataset_type} in {self.collection} {self.keep_days:g} d after "
                f"{self.after.replace('_', ' ')}")


@dataclasses.dataclass(kw_only=True)
class ColdTierConfig(Settings):
    """A second datastore location standing in for tape."""

    uri: str
    #: Seconds a stage request waits before its bytes arrive (simulated with a sleep).
    staging_latency: float = dataclasses.field(default=0.0, metadata={"check": non_negative})


@dataclasses.dataclass(kw_only=True)
class RetentionConfig(Settings):
    """The ``retention`` section of ``butler.yaml``."""

    policies: list[RetentionPolicy] = dataclasses.field(default_factory=list)
    cold_tier: ColdTierConfig | None = None

    @property
    def tracks_access(self) -> bool:
        """Whether reads must be recorded (some policy counts from the last read)."""
        return any(p.after == "last_access" for p in self.policies)
