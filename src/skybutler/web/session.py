"""Signing a browser in and out: the login page takes the user's token (the one the API's
clients send as a bearer token) and keeps it in an HttpOnly, SameSite=Strict cookie that
``server.app.current_user`` accepts like the bearer header (for a change, only from this
server's own pages); behind an identifying proxy
(``skybutler serve --trust-header``) the header alone signs the user in."""

from __future__ import annotations

from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Request
from fastapi.security import HTTPAuthorizationCredentials
from starlette.responses import RedirectResponse, Response

from ..access import User
from ..errors import AuthenticationError, PermissionDeniedError
from ..server.app import COOKIE, _bearer, cross_origin, current_user
from ..server.state import ServerState
from .templating import render, root

router = APIRouter()

#: The longest form body the login page reads.
_MAX_FORM = 16 * 1024


def page_user(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> User:
    """The signed-in user of a page (an unauthenticated browser is sent to the login page by
    the application's error handler)."""
    user = current_user(request, credentials)
    request.state.user = user
    return user


def _safe_next(request: Request, target: str | None) -> str:
    """Where to go after signing in: a path of this repository's web view, never elsewhere."""
    prefix = root(request)
    # browsers drop tabs and newlines from a URL ("/\t/evil.example" becomes "//evil.example")
    if target and target.startswith(prefix + "/") and not target.startswith("//") and "\\" not in target \
            and target.isprintable() and not any(c.isspace() for c in target):
        return target
    return prefix + "/"


def login_redirect(request: Request) -> Response:
    """The answer to a page request without a valid sign-in."""
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"{root(request)}/login?next={quote(target, safe='')}", status_code=303)


def _trusted_name(request: Request) -> str | None:
    state: ServerState = request.app.state.skybutler
    identify = state.settings.identify
    return None if identify is None else identify(request.headers)


def _refuse_other_sites(request: Request) -> None:
    """Another site's page may neither sign a browser in (to an account of the attacker's
    choosing) nor out."""
    if cross_origin(request):
        raise PermissionDeniedError("signing in or out from another site's page is refused")


@router.get("/login", name="web_login")
def login_page(request: Request, next: str | None = None) -> Response:  # noqa: A002 -- the query name
    return render(request, "login.html", next=_safe_next(request, next), trusted=_trusted_name(request), error=None)


@router.post("/login")
async def login(request: Request) -> Response:
    _refuse_other_sites(request)
    body = await request.body()
    form = parse_qs(body[:_MAX_FORM].decode("utf-8", "replace"))
    token = (form.get("token") or [""])[0].strip()
    target = _safe_next(request, (form.get("next") or [None])[0])
    state: ServerState = request.app.state.skybutler
    try:
        user = state.access.authenticate(token, now=state.settings.clock())
    except AuthenticationError as err:
        return render(request, "login.html", status_code=401, next=target, trusted=_trusted_name(request),
                      error=str(err))
    response = RedirectResponse(target, status_code=303)
    response.set_cookie(COOKIE, token, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                        path=root(request) + "/")
    response.headers["X-Skybutler-User"] = user.name
    return response


@router.post("/logout", name="web_logout")
def logout(request: Request) -> Response:
    _refuse_other_sites(request)
    response = RedirectResponse(f"{root(request)}/login", status_code=303)
    response.delete_cookie(COOKIE, path=root(request) + "/", httponly=True, samesite="strict")
    return response
