"""The HTTP server of a repository: a FastAPI application over :class:`ServerState`.

``create_app(root)`` builds it; ``skybutler serve`` runs it under uvicorn.  Every
route takes the caller from their bearer token (or the web view's login cookie, or a
trusted header; 401 without a valid one) and applies
their collection rights (``authz.py``) before touching the repository.  skybutler's
own errors become JSON ``{"error": <class name>, "message": ...}`` with the status
that fits (404 missing or invisible, 403 forbidden, 409 conflict, 413 too large, 422
bad input -- a body or parameter of the wrong shape too, naming the field -- 429 too many
queries waiting), so the remote client raises the very
exception a local butler would.  The web view (``skybutler.web``) is mounted at the
root beside the API; its pages show the same errors as HTML.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.exception_handlers import request_validation_exception_handler
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from .. import errors
from ..access import User
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
        return state.access.user(name, int(now * 1e9))
    token = credentials.credentials if credentials is not None else request.cookies.get(COOKIE)
    return state.access.authenticate(token, now=now)


def is_api(request: Request) -> bool:
    """Whether the request is for the API (JSON errors) rather than a web page (HTML)."""
    path = request.url.path[len(str(request.scope.get("root_path", "")).rstrip("/")):]
    return path.startswith(API + "/") or path == API


def create_app(root: str | Path, settings: ServerSettings | None = None) -> FastAPI:
    """The application serving the repository at ``root``."""
    from .. import web
    from . import (
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
    app = FastAPI(title="skybutler", version="1",
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
        problems = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in err.errors()[:5])
        return error_response(errors.SkybutlerError(f"malformed request: {problems}"[:2000]))

    @app.middleware("http")
    async def limit_size(request: Request, call_next: Any) -> Any:
        length = request.headers.get("content-length")
        limit = state.settings.max_request_bytes
        if length is not None and (not length.isdigit() or int(length) > limit):
            return error_response(RequestTooLarge(f"the request body ({length} bytes) is above this server's "
                                                  f"limit of {limit} bytes"))
        return await call_next(request)

    @app.get(f"{API}/info")
    def info(user: User = Depends(current_user)) -> dict[str, Any]:
        """The repository's dimension universe and who the caller is."""
        default = state.universe_source == "default"
        return {"universe": "default" if default else "config", "universe_name": state.universe.name,
                "universe_version": state.universe.version,
                "universe_config": None if default else state.universe.config,
                "user": user.name, "groups": list(user.groups), "admin": user.admin,
                "max_request_bytes": state.settings.max_request_bytes}

    for module in (routes_registry, routes_query, routes_calibrations, routes_datasets, routes_provenance,
                   routes_quanta, routes_batch, routes_retention, routes_catalogs, routes_transfer,
                   routes_maintenance, routes_access, routes_ingest):
        app.include_router(module.router, prefix=API, dependencies=[Depends(current_user)])
    web.install(app)
    return app
