"""skybutler errors raised while making a page, shown as an HTML page with the status the
API would give (an unauthenticated browser is sent to the login page instead)."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from ..errors import AuthenticationError, SkybutlerError
from .templating import render


def error_page(request: Request, err: SkybutlerError, status: int) -> Response:
    if isinstance(err, AuthenticationError):
        from .session import login_redirect

        return login_redirect(request)
    return render(request, "error.html", status_code=status, status=status, kind=type(err).__name__, message=str(err),
                  user=getattr(request.state, "user", None))
