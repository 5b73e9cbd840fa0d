"""Extracting the facts of datasets already stored: ones stored before their storage class had a
fact, by an older skybutler, or whose facts could not be read when they were ingested.

Each artifact is read only as far as its storage class's ``metadata_component`` (an
image's header); the facts of a dataset type go in with one transaction.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from .formats import get_formatter, get_storage_class

if TYPE_CHECKING:
    from .butler import Butler
    from .models import DatasetRef


def extract_metadata(butler: Butler, dataset_types: str | Sequence[str], *,
                     collections: str | Sequence[str] | None = None, where: str = "", replace: bool = False,
                     keep: Callable[[list[DatasetRef]], list[DatasetRef]] | None = None) -> int:
    """See :meth:`Butler.extract_metadata`; ``keep`` picks (or refuses) the matching datasets
    first, for a server that answers under its caller's rights."""
    names = [dataset_types] if isinstance(dataset_types, str) else list(dataset_types)
    done = 0
    for name in names:
        storage_class = get_storage_class(butler.get_dataset_type(name).storage_class)
        if not storage_class.metadata_fields:
            continue
        refs = list(butler.query_datasets(name, where=where, collections=collections, find_first=False))
        if keep is not None:
            refs = keep(refs)
        ids = list(dict.fromkeys(r.id for r in refs))
        if not replace:
            ids = sorted(butler.registry.metadata.ids_without_facts(storage_class.name, ids))
        artifacts = butler.registry.datasets.artifacts(ids)
        facts = []
        for dataset_id in ids:
            artifact = artifacts.get(dataset_id)
            if artifact is None:  # purged or cold: nothing to read here
                continue
            component = storage_class.metadata_component
            if component not in get_formatter(artifact.formatter).components:
                component = None
            facts.append((dataset_id, storage_class.extract_metadata(butler.datastore.read(artifact, component))))
        butler.registry.metadata.table(storage_class.name, storage_class.metadata_fields)
        with butler.registry.transaction():
            butler.registry.metadata.insert(storage_class.name, storage_class.metadata_fields, facts, replace=True)
        done += len(facts)
    return done
