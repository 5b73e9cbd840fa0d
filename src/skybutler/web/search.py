"""The search page: a where-clause over a dataset type in chosen collections."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ..access import User
from ..server.state import ServerState
from .session import page_user
from .templating import render

router = APIRouter()

NAV = [("Search", "/search")]


@router.get("/search", name="web_search")
def search(request: Request, user: User = Depends(page_user)) -> Response:
    state: ServerState = request.app.state.skybutler
    with state.butler() as butler:
        dataset_types = butler.query_dataset_types("*")
    return render(request, "search.html", user=user, dataset_types=dataset_types,
                  dimensions=state.universe.dimensions)
