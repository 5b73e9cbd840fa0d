"""The web view of a repository: HTML pages served by the same FastAPI application as the
API (``skybutler serve``), under the same authentication and collection rights.

How the parts fit (and how to add a page):

- ``PAGE_MODULES`` lists the modules whose ``router`` (a FastAPI ``APIRouter``) is mounted
  at the application's root; add one line for a new module.  A module may also define
  ``NAV = [(label, path), ...]``: entries of the navigation bar (paths relative to the
  repository's root, e.g. ``"/sky"``).
- A page handler takes its user with ``user: User = Depends(page_user)`` (``session.py``):
  the bearer token, the login cookie or the server's trusted header, as for the API; a
  browser without any is sent to the login page.  Everything it shows must go through
  ``server.authz`` (a collection or dataset the user may not see is missing: 404).
- It answers with ``templating.render(request, "name.html", user=user, ...)``.  Templates
  live in ``web/templates/`` and extend ``base.html``, filling its blocks ``title``,
  ``head`` (extra tags in ``<head>``), ``content`` and ``scripts``.  Jinja2 escapes every
  value; never mark user-supplied text ``|safe``.  In templates ``root`` is the
  repository's URL prefix: link as ``{{ root }}/datasets/{{ id }}`` and
  ``{{ root }}/static/web.css``.
- ``dataset.html`` leaves the block ``images`` (quicklook, WCS footprint) and the block
  ``links`` (provenance, cutouts) for the image pages to fill: a template that extends
  ``dataset.html`` overrides them, and ``dataset.DATASET_TEMPLATE`` names the one used.
- Static files (CSS, JavaScript, no build step, nothing fetched from the network) live in
  ``web/static/`` and are served at ``/static``.
- Every web response carries a ``Server-Timing: app;dur=<ms>`` header: the server's time
  for it (``benchmarks/bench_web.py`` reads it), and ``SECURITY_HEADERS``: a content
  security policy allowing scripts only from ``/static`` (no inline ``<script>`` and no
  ``on...=`` attributes; inline ``style=`` is allowed) and nothing from other sites.
- skybutler errors raised by a page become an HTML error page with the API's status
  (``error.html``); an unauthenticated page request is redirected to ``/login``.
"""

from __future__ import annotations

import importlib
from typing import Any

#: The modules whose ``router`` the web view mounts, in order (one a line).
PAGE_MODULES: tuple[str, ...] = (
    "skybutler.web.session",
    "skybutler.web.home",
    "skybutler.web.tree",
    "skybutler.web.search",
    "skybutler.web.dataset",
    "skybutler.web.images",
    "skybutler.web.provenance_graph",
    "skybutler.web.sky_map",
)


#: Sent with every page: scripts only from this server's files (an injected inline script
#: would not run even if escaping failed), nothing from elsewhere, no framing by other sites.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; script-src 'self'; style-src 'self' 'unsafe-inline'; "
                               "img-src 'self' data:; object-src 'none'; base-uri 'none'; form-action 'self'; "
                               "frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
}


def modules() -> list[Any]:
    return [importlib.import_module(name) for name in PAGE_MODULES]


def navigation() -> list[tuple[str, str]]:
    """The navigation bar's (label, path) entries, from every page module's ``NAV``."""
    return [entry for module in modules() for entry in getattr(module, "NAV", [])]


def install(app: Any) -> None:
    """Mount the web view's routers and static files on the application ``app``."""
    import time
    from importlib.resources import files

    from fastapi.staticfiles import StaticFiles

    from ..server.app import is_api

    for module in modules():
        app.include_router(module.router, include_in_schema=False)
    app.mount("/static", StaticFiles(directory=str(files(__name__) / "static")), name="static")

    @app.middleware("http")
    async def server_timing(request: Any, call_next: Any) -> Any:
        start = time.perf_counter()
        response = await call_next(request)
        if not is_api(request):
            response.headers["Server-Timing"] = f"app;dur={(time.perf_counter() - start) * 1000:.1f}"
            for name, value in SECURITY_HEADERS.items():  # a page may set its own policy (server/api_docs.py)
                response.headers.setdefault(name, value)
        return response
