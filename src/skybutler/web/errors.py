"""skybutler errors raised while making a page, shown as an HTML page with the status and the
message the API would give (the server's own paths taken out); an unauthenticated browser is
sent to the login page instead."""

from __future__ import annotations

from fastapi import Request
from starlette.responses import Response

from ..errors import AuthenticationError, SkybutlerError
from .templating import render


def error_page(request: Request, err: SkybutlerError, status: int) -> Response:
    if isinstance(err, AuthenticationError):
        from .session import login_redirect

        return login_redirect(request)
    # the server's own paths are taken out, as the API's errors have them
    message = request.app.state.skybutler.public_message(str(err))
    return render(request, "error.html", status_code=status, status=status, kind=type(err).__name__, message=message,
                  user=getattr(request.state, "user", None))
