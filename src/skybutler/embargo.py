"""Embargoes as metadata: whether a dataset is hidden from a user right now.

An embargo rule (``Access.add_embargo``) names dataset types and RUN collections by
glob patterns, a number of hours and the groups with data rights.  A dataset it
covers stays hidden from everyone else until that many hours after the end of the
exposure (else the visit, else the observing day) its data ID names; a dataset whose
data ID names none of these stays hidden while the rule exists.  The datasets are
never copied or moved: when the time has passed the next query shows them.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Mapping
from typing import Any

from .access import User

#: The elements whose timespan ends an observation, in the order they are looked for.
_TIMED = ("exposure", "visit", "day_obs")


class EmbargoCheck:
    """Judges datasets for one user and one request (records looked up once each)."""

    def __init__(self, butler: Any, user: User):
        self.butler = butler
        self.user = user
        self._ends: dict[tuple, int | None] = {}

    def applies_to(self, dataset_type: str) -> bool:
        """Whether any rule hiding things from this user names ``dataset_type``."""
        return any(fnmatch.fnmatchcase(dataset_type, e.dataset_types) for e in self.user.embargoes)

    def hidden(self, dataset_type: str, run: str, values: Mapping[str, Any]) -> bool:
        """Whether the dataset of this type, RUN and data-ID ``values`` is hidden from the user now."""
        rules = [e for e in self.user.embargoes if fnmatch.fnmatchcase(dataset_type, e.dataset_types)
                 and fnmatch.fnmatchcase(run, e.collections)]
        if not rules:
            return False
        end = self._observation_end(values)
        if end is None:
            return True
        return any(self.user.now_ns < end + int(rule.hours * 3600e9) for rule in rules)

    def hidden_ref(self, ref: Any) -> bool:
        return self.hidden(ref.dataset_type.name, ref.run, ref.data_id.mapping)

    def _observation_end(self, values: Mapping[str, Any]) -> int | None:
        """POSIX nanoseconds at which the observation the data ID names ended (None: unknown)."""
        universe = self.butler.universe
        for element in _TIMED:
            if element not in values:
                continue
            identity = tuple(values.get(d) for d in universe[element].identity)
            key = (element, identity)
            if key not in self._ends:
                record = None if None in identity else self.butler.registry.dimensions.fetch_one(element, identity)
                span = None if record is None else record["timespan"]
                self._ends[key] = None if span is None or span.end is None else int(span.end.utc.unix * 1e9)
            return self._ends[key]
        return None


def record_releases(butler: Any, now_ns: int) -> int:
    """Write to the audit log every embargo release that happened since the last time this ran
    (one entry per rule, RUN and dataset type, with the datasets' IDs and release times); returns
    how many datasets were released.  A dataset's release is the instant its rule's hours after
    the end of its observation have passed: that is when it becomes visible to everyone who may
    read its RUN, with nothing copied."""
    from .models import CollectionType

    store = butler.registry.access
    rules = store.embargo_rows()
    if not rules:
        return 0
    since = store.releases_recorded_until()
    runs = [c.name for c in butler.collections.query("*", [CollectionType.RUN])]
    check = EmbargoCheck(butler, User("embargo", embargoes=tuple(rules), now_ns=now_ns))
    entries, released = [], 0
    for rule in rules:
        in_runs = [r for r in runs if fnmatch.fnmatchcase(r, rule.collections)]
        types = [t.name for t in butler.registry.dataset_types.all() if fnmatch.fnmatchcase(t.name, rule.dataset_types)]
        if not in_runs or not types:
            continue
        for name in types:
            groups: dict[str, list[tuple[int, str]]] = {}
            for ref in _ending_within(butler, name, in_runs, since, now_ns, int(rule.hours * 3600e9)):
                end = check._observation_end(ref.data_id.mapping)
                if end is None:
                    continue  # no observation time: hidden while the rule exists, never released by it
                at = end + int(rule.hours * 3600e9)
                if at <= now_ns and (since is None or at > since):
                    groups.setdefault(ref.run, []).append((at, str(ref.id)))
            for run, items in sorted(groups.items()):
                items.sort()
                released += len(items)
                entries.append(f"rule {rule.rule_id} ({rule.dataset_types} in {rule.collections}, {rule.hours:g} h): "
                               f"{len(items)} {name} dataset(s) in {run} released between {items[0][0]} and "
                               f"{items[-1][0]}: {' '.join(i for _, i in items)}")
    if entries and not store.record_releases(entries, since, now_ns):
        return 0  # another server process recorded them first
    return released


def _ending_within(butler: Any, dataset_type: str, runs: list[str], since: int | None, now_ns: int,
                   hours_ns: int) -> Any:
    """The datasets of ``dataset_type`` in ``runs`` whose observation ended so that their release
    (the end plus ``hours_ns``) may fall in (``since``, ``now_ns``]: selected in SQL by their
    exposure's, visit's or day's timespan (a second's margin each side; the caller judges each
    exactly), so a sweep reads the datasets released since the last one, not every covered one.
    Nothing for a type whose data IDs name no observation (never released while the rule exists)."""
    from astropy.time import Time

    from .timespan import Timespan

    group = butler.get_dataset_type(dataset_type).group(butler.universe)
    element = next((e for e in _TIMED if e in group.names), None)
    if element is None:
        return []

    def at(ns: int) -> Time:
        return Time(ns / 1e9, format="unix", scale="utc")

    second = 1_000_000_000
    window = Timespan(None if since is None else at(since - hours_ns - second), at(now_ns - hours_ns + second))
    return butler.query_datasets(dataset_type, f"{element}.timespan OVERLAPS release_window", collections=runs,
                                 find_first=False, bind={"release_window": window})
