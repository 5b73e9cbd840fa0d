"""Publishing a catalog as HATS through a server: what ``Butler.publish_catalog`` sends when the
butler is opened on a URL.

The client sends the query as every query is sent (its where-clause parsed here, so a syntax
error is found before any request), the publication's name and its settings; the server finds
the datasets the caller may see, writes the HATS collection in its own repository, registers it
and streams its progress as JSON lines, then the publication's summary
(``server/routes_catalogs.py``).  No path of either machine crosses: the report's ``path`` is
the publication's name.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..butler import Butler
    from ..catalogs.publish import Publication


def publish_catalog(butler: Butler, dataset_type: str, destination: str, *, collections: Sequence[str],
                    where: str = "", bind: Mapping[str, Any] | None = None, name: str | None = None,
                    run: str | None = None, margin_arcsec: float | None = None, max_rows: int | None = None,
                    max_bytes: int | None = None, ra_column: str | None = None, dec_column: str | None = None,
                    rebuild: bool = False, progress: Callable[[int, int], None] | None = None) -> Publication:
    """Have the server publish the datasets of ``dataset_type`` the query finds as the publication
    ``destination``; its progress (datasets read, of all) is told to ``progress``."""
    transport = butler._remote
    spec = butler._query_spec(kind="datasets", dataset_types=(dataset_type,), where=where, bind=dict(bind or {}),
                              collections=collections, find_first=True)
    body = {"dataset_type": dataset_type, "destination": destination, "query": transport.query(spec)._body(),
            "name": name, "run": run, "margin_arcsec": margin_arcsec, "max_rows": max_rows, "max_bytes": max_bytes,
            "ra_column": ra_column, "dec_column": dec_column, "rebuild": rebuild}
    return _publication(butler, destination, transport.stream_result("catalogs/publish", body, progress,
                                                                     "a publication"))


def _publication(butler: Butler, destination: str, summary: dict[str, Any]) -> Publication:
    from ..catalogs.publish import Publication

    ref = summary.pop("ref")
    return Publication(path=Path(destination), **summary,
                       ref=None if ref is None else butler._remote.ref_from_json(ref))
