"""Rendering the web view's Jinja2 templates, with what every page needs (the user, the
navigation, the repository's URL prefix) and escaping of every value."""

from __future__ import annotations

from functools import cache
from typing import Any

from fastapi import Request
from fastapi.templating import Jinja2Templates
from jinja2 import Environment, PackageLoader, StrictUndefined, select_autoescape
from starlette.responses import Response


@cache
def templates() -> Jinja2Templates:
    env = Environment(loader=PackageLoader("skybutler.web", "templates"),
                      autoescape=select_autoescape(["html"], default_for_string=True, default=True),
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    return Jinja2Templates(env=env)


def root(request: Request) -> str:
    """The repository's URL prefix (``/<name>`` under ``skybutler serve``, ``""`` alone)."""
    return str(request.scope.get("root_path", "")).rstrip("/")


def render(request: Request, name: str, *, status_code: int = 200, headers: dict[str, str] | None = None,
           **context: Any) -> Response:
    """The template ``name`` as an HTML response; ``context`` must hold ``user`` (None on the
    login and error pages of an anonymous browser)."""
    from . import navigation

    context.setdefault("user", None)
    context.update(request=request, root=root(request), nav=navigation(), path=request.url.path)
    return templates().TemplateResponse(request, name, context, status_code=status_code, headers=headers)
