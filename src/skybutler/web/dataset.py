"""The dataset page: a dataset's data ID with its dimension records, storage class, size,
checksum, retention state, metadata and metrics; the FITS header of an image; the schema
and first rows of a catalog; a download link.  The image pages fill the template's
``images`` and ``links`` blocks (see ``DATASET_TEMPLATE``)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ..access import User
from ..butler import Butler
from ..dimensions import regions as sky
from ..models import DatasetRef
from ..server import authz
from ..server.state import ServerState
from .images import image_context
from .session import page_user
from .templating import render

router = APIRouter()

#: The template of the dataset page; a template extending ``dataset.html`` may take its place
#: to fill the ``images`` and ``links`` blocks.
DATASET_TEMPLATE = "dataset_images.html"
#: Catalog rows shown on the page.
FIRST_ROWS = 20
#: Header cards shown (a header longer than this is cut, and says so).
MAX_CARDS = 2000


def records(butler: Butler, ref: DatasetRef) -> list[tuple[str, list[tuple[str, str]]]]:
    """The dimension records the data ID names: (element, [(field, value text)])."""
    group = ref.dataset_type.group(butler.universe)
    values = butler.expand_data_id(group.names, ref.data_id.mapping).mapping
    out = []
    for element in group.elements:
        identity = {d: values[d] for d in butler.universe[element].identity if d in values}
        record = butler.get_record(element, **identity)
        if record is not None:
            out.append((element, [(k, _text(v)) for k, v in record.to_dict().items()]))
    return out


def _text(value: Any) -> str:
    if isinstance(value, sky.Region) or type(value).__name__.endswith("Region"):
        return "region"
    if hasattr(value, "begin") and hasattr(value, "end"):
        return f"{getattr(value.begin, 'isot', value.begin)} – {getattr(value.end, 'isot', value.end)}"
    return str(value)


def header_cards(butler: Butler, ref: DatasetRef) -> list[list[tuple[str, str, str]]] | None:
    """The FITS header(s) of an image dataset as (keyword, value, comment) cards, one list per
    HDU; None for other storage classes."""
    kind = ref.dataset_type.storage_class
    if kind == "Image":
        headers = [butler.get(ref, component="header")]
    elif kind == "MultiExtensionImage":
        headers = butler.get(ref, component="headers")
    else:
        return None
    return [[(card.keyword, str(card.value), card.comment) for card in header.cards[:MAX_CARDS]]
            for header in headers]


def catalog(butler: Butler, ref: DatasetRef) -> tuple[list[tuple[str, str]], list[str], list[list[str]]] | None:
    """A catalog's schema (name, type) and its first rows; None for other storage classes."""
    if ref.dataset_type.storage_class != "Table":
        return None
    schema = butler.get(ref, component="schema")
    first = butler.get(ref, parameters={"as": "arrow", "rows": FIRST_ROWS}).to_pylist()
    names = list(schema.names)
    return ([(f.name, str(f.type)) for f in schema], names, [[_text(row[n]) for n in names] for row in first])


@router.get("/datasets/{dataset_id}", name="web_dataset")
def dataset(request: Request, dataset_id: str, user: User = Depends(page_user)) -> Response:
    state: ServerState = request.app.state.skybutler
    with state.butler() as butler:
        ref = authz.visible_ref(butler, user, dataset_id)
        artifact = ref.artifact
        state_name = butler.retention.states([ref.id]).get(ref.id, "stored")
        metadata = butler.get_metadata(ref)
        # What the page reads from the file (header, rows, quicklook) only while it is in the hot
        # datastore: a cold one would be staged back by a mere look; a purged one has no file.
        stored = artifact is not None and state_name == "stored"
        page = {
            "ref": ref, "artifact": artifact, "state": state_name,
            "data_id": list(ref.data_id.mapping.items()),
            "records": records(butler, ref),
            "metadata": [(k, _text(v)) for k, v in sorted(metadata.items()) if v is not None],
            "fits_headers": header_cards(butler, ref) if stored else None,
            "catalog": catalog(butler, ref) if stored else None,
            "stored": stored,
            "downloadable": artifact is not None and state_name in ("stored", "cold"),
            "images": image_context(ref, stored, metadata),
        }
    return render(request, DATASET_TEMPLATE, user=user, **page)
