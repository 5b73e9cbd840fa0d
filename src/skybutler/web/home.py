"""The web view's front page: what the repository holds that the user may see, at a glance."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ..access import User
from ..server import authz
from ..server.state import ServerState
from .session import page_user
from .templating import render

router = APIRouter()

NAV = [("Overview", "/")]


@router.get("/", name="web_home")
def home(request: Request, user: User = Depends(page_user)) -> Response:
    state: ServerState = request.app.state.skybutler
    with state.butler() as butler:
        collections = authz.visible_collections(user, butler.collections.query("*"))
        dataset_types = butler.query_dataset_types("*")
    kinds: dict[str, int] = {}
    for info in collections:
        kinds[info.type.value] = kinds.get(info.type.value, 0) + 1
    return render(request, "home.html", user=user, repo=state.root.name, kinds=sorted(kinds.items()),
                  dataset_types=dataset_types, dimensions=state.universe.dimensions)
