"""The API's description: its OpenAPI schema for signed-in users, and an interactive page only
where the server's owner turns it on.

The schema (``/api/v1/openapi.json``) lists every route and body a client may send: it holds
no data, but it maps the whole attack surface, so it is for callers with a token (or the web
view's cookie), as every other API route is.  The interactive page (``/docs``, Swagger UI) is
off unless ``ServerSettings.api_docs`` (``skybutler serve --api-docs``): it loads its JavaScript
and CSS from a third-party CDN (cdn.jsdelivr.net, a floating version no integrity hash can pin),
and script running on this server's origin could read everything the signed-in user may read.
Turned on, it is a page for signed-in users whose content security policy admits that CDN and
the page's one inline script (by its hash) and nothing else of other sites.  FastAPI's ReDoc page
is not served: one interactive page is enough, and ReDoc needs more (workers, web fonts).
"""

from __future__ import annotations

import base64
import hashlib
import re
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import HTMLResponse

from ..access import User

#: Where the interactive page loads Swagger UI from (FastAPI's default).
CDN = "https://cdn.jsdelivr.net"


def install(app: FastAPI, api: str, enabled: bool) -> None:
    """Serve the schema at ``{api}/openapi.json`` to signed-in users, and ``/docs`` if ``enabled``."""
    from ..web.session import page_user
    from ..web.templating import root
    from .app import current_user

    @app.get(f"{api}/openapi.json", include_in_schema=False)
    def openapi(user: User = Depends(current_user)) -> dict[str, Any]:
        """The OpenAPI description of the API (for signed-in users: it maps every route)."""
        return app.openapi()

    if not enabled:
        return

    @app.get("/docs", include_in_schema=False)
    def docs(request: Request, user: User = Depends(page_user)) -> HTMLResponse:
        """Swagger UI over the schema, for signed-in users (the browser sends the login cookie)."""
        from fastapi.openapi.docs import get_swagger_ui_html

        page = get_swagger_ui_html(openapi_url=f"{root(request)}{api}/openapi.json", title=f"{app.title} API",
                                   swagger_favicon_url="data:,")
        page.headers["Content-Security-Policy"] = policy(bytes(page.body).decode())
        return page


def policy(html: str) -> str:
    """The content security policy of the interactive page: its inline scripts by hash, the CDN's
    scripts and styles, this server for the schema, nothing else."""
    hashes = " ".join(f"'sha256-{base64.b64encode(hashlib.sha256(s.encode()).digest()).decode()}'"
                      for s in re.findall(r"<script>(.*?)</script>", html, re.S))
    return (f"default-src 'self'; script-src {CDN} {hashes}; style-src {CDN} 'unsafe-inline'; "
            "img-src 'self' data:; connect-src 'self'; object-src 'none'; base-uri 'none'; "
            "form-action 'self'; frame-ancestors 'none'")
