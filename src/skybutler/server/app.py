"""The HTTP server of a repository: a FastAPI application over :class:`ServerState`.

``create_app(root)`` builds it; ``skybutler serve`` runs it under uvicorn.  Every
route takes the caller from their bearer token (or the web view's login cookie, or a
trusted header; 401 without a valid one -- and 403 for a change the cookie or header would
authenticate that another origin's page asked for) and applies
their collection rights (``authz.py``) before touching the repository.  skybutler's
own errors become JSON ``{"error": <class name>, "message": ...}`` with the status
that fits (404 missing or invisible, 403 forbidden, 409 conflict, 413 too large (chunked or not, or a
list of more than ``MAX_IDS`` IDs), 422
bad input -- a body or parameter of the wrong shape too, naming the field -- 429 too many
queries waiting), so the remote client raises the very
exception a local butler would.  The web view (``skybutler.web``) is mounted at the
root beside the API; its pages show the same errors as HTML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any
from urllib.parse import urlsplit

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import Field

from .. import errors
from ..access import User
from ..remote.wire import MAX_IDS
from .state import ServerSettings, ServerState

API = "/api/v1"
#: The cookie the web view's login page sets: the user's token, sent back by the browser.
COOKIE = "skybutler_token"

_STATUS: list[tuple[type[Exception], int]] = [
    (errors.AuthenticationError, 401),
    (errors.PermissionDeniedError, 403),
    (errors.QuotaExceededError, 403),
    (errors.DatasetNotFoundError, 404),
    (errors.MissingCollectionError, 404),
    (errors.MissingDatasetTypeError, 404),
    (errors.FileNotStoredError, 404),
    (errors.ConflictingDefinitionError, 409),
    (errors.DatasetConflictError, 409),
    (errors.ArtifactExistsError, 409),
    (errors.CalibrationConflictError, 409),
    (errors.CollectionCycleError, 409),
    (errors.QueryTimeoutError, 504),
    (errors.BackendError, 503),
    (errors.SkybutlerError, 422),
]


class TooManyRequests(errors.SkybutlerError):
    """A user's queue of waiting queries ran out of patience."""


class RequestTooLarge(errors.SkybutlerError):
    """A request body above the server's limit."""


#: A request's list of dataset IDs (or names): at most ``MAX_IDS`` of them (413 otherwise).
Ids = Annotated[list[str], Field(max_length=MAX_IDS)]


def too_long(problems: list[Any]) -> RequestTooLarge | None:
    """The 413 for a list above its limit among pydantic's ``problems`` (None if there is none)."""
    for problem in problems:
        if problem.get("type") == "too_long":
            field = ".".join(str(p) for p in problem["loc"] if p != "body")
            context = problem.get("ctx") or {}
            return RequestTooLarge(f"{field} lists {context.get('actual_length')} items; a request lists at most "
                                   f"{context.get('max_length')} (the server's max_ids): send them in several "
                                   "requests (a remote butler does so itself)")
    return None


def status_of(err: Exception) -> int:
    if isinstance(err, TooManyRequests):
        return 429
    if isinstance(err, RequestTooLarge):
        return 413
    for kind, status in _STATUS:
        if isinstance(err, kind):
            return status
    return 500


def error_response(err: Exception) -> JSONResponse:
    return JSONResponse({"error": type(err).__name__, "message": str(err)}, status_code=status_of(err))


_bearer = HTTPBearer(auto_error=False)


def current_user(request: Request, credentials: HTTPAuthorizationCredentials | None = Depends(_bearer)) -> User:
    """The authenticated caller (401 otherwise)."""
    state: ServerState = request.app.state.skybutler
    now = state.settings.clock()
    state.record_releases(now)
    identify = state.settings.identify
    name = None if identify is None else identify(request.headers)
    if name is not None:
        if request.method not in SAFE_METHODS and cross_origin(request):
            raise errors.PermissionDeniedError("a change requested by another site's page is refused")
        return state.access.user(name, int(now * 1e9))
    if credentials is not None:
        return state.access.authenticate(credentials.credentials, now=now)
    user = state.access.authenticate(request.cookies.get(COOKIE), now=now)
    if request.method not in SAFE_METHODS and not same_origin(request):
        raise errors.PermissionDeniedError("the login cookie authenticates a change only from this server's own "
                                           "pages; send the bearer token instead")
    return user


#: Methods that change nothing: the login cookie authenticates them from anywhere (SameSite=Strict
#: keeps other sites' links from sending it anyway).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def cross_origin(request: Request) -> bool:
    """Whether a browser says the request comes from another origin's page (another site, or
    another port or subdomain of this one: SameSite cookies are sent to those).  The browser's
    ``Sec-Fetch-Site`` decides where it is given; otherwise an ``Origin`` whose host differs
    from the one the request was sent to (directly or through a proxy)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None:
        return fetch_site not in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return False
    hosts = {request.headers.get("host"), request.headers.get("x-forwarded-host")}
    return urlsplit(origin).netloc not in hosts - {None}


def same_origin(request: Request) -> bool:
    """Whether a browser vouches that the request comes from this server's own pages (a request
    that names no origin at all is not vouched for: a client without a browser sends its token)."""
    said = request.headers.get("sec-fetch-site") is not None or request.headers.get("origin") is not None
    return said and not cross_origin(request)


class BodyLimit:
    """Refuse a request body above the server's limit with a 413 naming it, before it is read: at
    once from its ``Content-Length``, or -- a chunked body, which announces no length -- as soon
    as the bytes read pass the limit (the route is then told the client went away, and its
    answer is dropped).  Other clients' requests go on as before."""

    def __init__(self, app: Any, limit: Any):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        limit: int = self.limit()
        headers = dict(scope["headers"])
        length = headers.get(b"content-length", b"").decode("latin-1")
        if length and (not length.isdigit() or int(length) > limit):
            await error_response(RequestTooLarge(f"the request body ({length[:40]} bytes) is above this "
                                                 f"server's limit of {limit} bytes"))(scope, receive, send)
            return
        seen, refused = 0, False

        async def counted() -> Any:
            nonlocal seen, refused
            if refused:
                return {"type": "http.disconnect"}
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    refused = True
                    await error_response(RequestTooLarge(
                        f"the request body (more than {limit} bytes, sent in chunks) is above this server's "
                        f"limit of {limit} bytes"))(scope, receive, send)
                    return {"type": "http.disconnect"}
            return message

        async def unless_refused(message: Any) -> None:
            if not refused:
                await send(message)

        try:
            await self.app(scope, counted, unless_refused)
        except Exception:
            if not refused:
                raise  # otherwise the route failing on the cut-off body: answered already


def is_api(request: Request) -> bool:
    """Whether the request is for the API (JSON errors) rather than a web page (HTML)."""
    path = request.url.path[len(str(request.scope.get("root_path", "")).rstrip("/")):]
    return path.startswith(API + "/") or path == API


def create_app(root: str | Path, settings: ServerSettings | None = None) -> FastAPI:
    """The application serving the repository at ``root``."""
    from .. import web
    from . import (
        api_docs,
        routes_access,
        routes_batch,
        routes_calibrations,
        routes_catalogs,
        routes_datasets,
        routes_ingest,
        routes_maintenance,
        routes_provenance,
        routes_quanta,
        routes_query,
        routes_registry,
        routes_retention,
        routes_transfer,
    )

    state = ServerState(root, settings)
    app = FastAPI(title="skybutler", version="1", openapi_url=None, docs_url=None, redoc_url=None,
                  description="A skybutler repository: dataset types, collections, dimension records, "
                              "queries, reads and writes, under per-collection access rules.")
    app.state.skybutler = state

    @app.exception_handler(errors.SkybutlerError)
    async def skybutler_error(request: Request, err: errors.SkybutlerError) -> Any:
        if is_api(request):
            return JSONResponse({"error": type(err).__name__, "message": state.public_message(str(err))},
                                status_code=status_of(err))
        from ..web.errors import error_page

        return error_page(request, err, status_of(err))

    @app.exception_handler(Exception)
    async def unforeseen(request: Request, err: Exception) -> Any:
        """A fault the server did not foresee: a JSON 500 that tells nothing of the server's
        insides (the log has the traceback).  The server closes the connection after it, so the
        answer says so: a client must not send its next request down that connection."""
        failure = errors.ServerError("the server failed on this request (an internal error; its log has the details)")
        if not is_api(request):
            from ..web.errors import error_page

            page = error_page(request, failure, 500)
            page.headers["Connection"] = "close"
            return page
        return JSONResponse({"error": "ServerError", "message": str(failure)}, status_code=500,
                            headers={"Connection": "close"})

    @app.exception_handler(RequestValidationError)
    async def malformed(request: Request, err: RequestValidationError) -> Any:
        """A body or parameter of the wrong shape: the project's JSON error (the client raises a
        SkybutlerError naming the field), not FastAPI's list of validation details."""
        if not is_api(request):
            return await request_validation_exception_handler(request, err)
        refused = too_long(err.errors())
        if refused is not None:
            return error_response(refused)
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:5])
        return error_response(errors.SkybutlerError(f"malformed request: {problems}"[:2000]))

    app.add_middleware(BodyLimit, limit=lambda: state.settings.max_request_bytes)

    @app.get(f"{API}/info")
    def info(user: User = Depends(current_user)) -> dict[str, Any]:
        """The repository's dimension universe and who the caller is."""
        default = state.universe_source == "default"
        return {"universe": "default" if default else "config", "universe_name": state.universe.name,
                "universe_version": state.universe.version,
                "universe_config": None if default else state.universe.config,
                "user": user.name, "groups": list(user.groups), "admin": user.admin,
                "max_request_bytes": state.settings.max_request_bytes, "max_ids": MAX_IDS}

    for module in (routes_registry, routes_query, routes_calibrations, routes_datasets, routes_provenance,
                   routes_quanta, routes_batch, routes_retention, routes_catalogs, routes_transfer,
                   routes_maintenance, routes_access, routes_ingest):
        app.include_router(module.router, prefix=API, dependencies=[Depends(current_user)])
    api_docs.install(app, API, state.settings.api_docs)
    web.install(app)
    return app
