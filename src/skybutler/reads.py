"""The read path of the Butler: reading a resolved dataset (or handing a cold or purged one
to retention), and the observation time that picks a calibration."""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from .data_id_lookup import ALTERNATE_KEYS
from .errors import DataIdError, FileNotStoredError, StaleArtifactError, StorageClassError
from .formats import get_storage_class
from .models import DatasetRef
from .timespan import Timespan

if TYPE_CHECKING:
    from .butler import Butler
    from .retention import RecomputeOptions


def read_dataset(butler: Butler, ref: DatasetRef, *, component: str | None, parameters: Mapping[str, Any] | None,
                 recompute: bool | RecomputeOptions | None, verify_checksums: bool | None,
                 just_resolved: bool = False) -> Any:
    """Read ``ref`` (its artifact, if known, or the one the registry holds now) as ``Butler.get`` does
    (``just_resolved``: the ref was looked up by this very get, so its record is current)."""
    sc = get_storage_class(ref.dataset_type.storage_class)
    if component is not None and component not in sc.components:
        raise StorageClassError(f"{sc.name} has no component {component!r}; components: "
                                f"{', '.join(sc.components) or 'none'}")
    if parameters:
        unknown = set(parameters) - set(sc.parameters)
        if unknown:
            raise StorageClassError(f"{sc.name} does not accept parameter(s) {', '.join(sorted(unknown))}; "
                                    f"accepted: {', '.join(sorted(sc.parameters)) or 'none'}")
    if butler._tracks_access:
        butler.retention.record_access(ref.id)
    check = butler.config.verify_checksums if verify_checksums is None else verify_checksums
    artifact = ref.artifact
    if artifact is not None:
        datasets = butler.registry.datasets

        def still_recorded() -> bool:
            # Asked only when the file at the path may be newer than the ref's record of it:
            # the dataset may have been purged, moved to the cold tier or removed since, and
            # the file be a stranger's or one a killed writer left.
            return artifact.same_file(datasets.artifacts([ref.id]).get(ref.id))

        try:
            return butler.datastore.read(artifact, component=component, parameters=parameters, check=check,
                                         confirm=None if just_resolved else still_recorded)
        except FileNotStoredError as err:
            # Gone, or not the file the registry records now: ask the registry again.
            current = datasets.artifacts([ref.id]).get(ref.id)
            if current is not None:
                if artifact.same_file(current) and not isinstance(err, StaleArtifactError):
                    raise
                return butler.datastore.read(current, component=component, parameters=parameters, check=check)
    from .retention.ondemand import RecomputeOptions

    options = RecomputeOptions.of(butler.recompute if recompute is None else recompute)
    return butler.retention.read_missing(ref, options, component, parameters)


def observation_time(butler: Butler, group: Any, data_id: Mapping[str, Any] | None, kwargs: Mapping[str, Any],
                     need_time: bool = True) -> tuple[dict[str, Any], dict[str, Any], Timespan | None]:
    """The timespan of the exposure or visit a calibration's data ID names (outside the
    calibration's own dimensions), and the data ID without it (``need_time`` False: a
    timespan is given, and an exposure without one is no error)."""
    data_id, kwargs = dict(data_id or {}), dict(kwargs)
    given = {**butler.default_data_id, **data_id, **kwargs}
    for element in ("exposure", "visit"):
        if element in group.names or element not in given:
            continue
        el = butler.universe[element]
        identity = {d: given.get(d) for d in el.requires}
        if any(v is None for v in identity.values()):
            identity = dict(butler._fill_governors(butler.universe.group(el.requires), identity) or identity)
        value = given[element]
        if isinstance(value, str) and element in ALTERNATE_KEYS:  # exposure="AT_O_20240101_000001", its obs_id
            found = list(butler.query_dimension_records(element, f"{element}.{ALTERNATE_KEYS[element]} = :key",
                                                        bind={"key": value}, data_id=identity).limit(2))
            record = found[0] if len(found) == 1 else None
        else:
            record = butler.get_record(element, **{**identity, element: value})
        if record is None:
            raise DataIdError(f"no {element} {given[element]!r} of {identity}: cannot tell which calibration "
                              "was valid during it")
        if record["timespan"] is None and need_time:
            raise DataIdError(f"{element} {given[element]!r} has no timespan: cannot tell which calibration "
                              "was valid during it; give timespan=")
        for mapping in (data_id, kwargs):
            for name in (element, *[d for d in ("visit", "exposure") if d not in group.names]):
                mapping.pop(name, None)
        # The calibration's dimensions the exposure implies (a flat's physical_filter), as Rubin's get fills them.
        data_id.update({d: record[d] for d in group.names if d not in given and d in record.element.implies})
        return data_id, kwargs, record["timespan"]
    return data_id, kwargs, None
