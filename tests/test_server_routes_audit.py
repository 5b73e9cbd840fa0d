"""Every route of the server's application needs a signed-in user, except a short list of public
ones: walked from ``app.routes``, so a route added without authentication fails here.  The API's
description is not public: its schema is for signed-in users and its interactive page is off
unless the server's owner turns it on (then for signed-in users too)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from server_helpers import running_server
from skybutler import Butler

pytest.importorskip("fastapi")

#: (method, path) of the routes anyone may call, and why.
PUBLIC = {
    ("GET", "/login"): "the login page",
    ("POST", "/login"): "signing in (it checks the token given)",
    ("POST", "/logout"): "signing out (it only drops the cookie)",
    ("MOUNT", "/static"): "the web view's CSS and JavaScript",
}


def _calls(dependant: Any) -> Iterator[Any]:
    for sub in dependant.dependencies:
        yield sub.call
        yield from _calls(sub)


def _routes(routes: list[Any]) -> Iterator[Any]:
    """The routes as served: those of included routers each with its router's dependencies."""
    for route in routes:
        if hasattr(route, "effective_route_contexts"):  # an included router (FastAPI >= 0.165)
            yield from route.effective_route_contexts()
        else:
            yield route


def unauthenticated(app: Any) -> list[tuple[str, str]]:
    """(method, path) of every route that neither asks for the user nor is in ``PUBLIC``."""
    from skybutler.server.app import current_user
    from skybutler.web.session import page_user

    out = []
    for route in _routes(app.routes):
        methods = sorted((getattr(route, "methods", None) or {"MOUNT"}) - {"HEAD"})
        dependant = getattr(route, "dependant", None)
        if dependant is not None and {current_user, page_user} & set(_calls(dependant)):
            continue
        out.extend((m, route.path) for m in methods if (m, route.path) not in PUBLIC)
    return out


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    """A new repository's application, with the interactive API page turned on, and its URL."""
    root = tmp_path_factory.mktemp("audit") / "repo"
    Butler.create(root).close()
    apps: list = []
    with running_server(root, apps, api_docs=True) as url:
        yield apps[0], url


def test_every_route_needs_a_user_or_is_public(served):
    app, _ = served
    assert unauthenticated(app) == []
    served_paths = {(m, r.path) for r in _routes(app.routes) for m in (getattr(r, "methods", None) or {"MOUNT"})}
    assert set(PUBLIC) <= served_paths  # the list names no route that is gone
    assert len(served_paths) > 100
    assert {("GET", "/api/v1/openapi.json"), ("GET", "/docs")} <= served_paths
    assert not {p for _, p in served_paths if p in ("/openapi.json", "/redoc", "/docs/oauth2-redirect")}


def test_a_route_added_without_a_user_is_flagged(served):
    """The check can fail: a route added to the very application, as a new module would add it."""
    from fastapi import APIRouter, Depends

    from skybutler.server.app import create_app, current_user

    app = create_app(served[0].state.skybutler.root)
    try:
        open_router = APIRouter()

        @open_router.get("/api/v1/forgotten")
        def forgotten() -> int:
            return 1

        @app.post("/also-forgotten")
        def also_forgotten() -> int:
            return 2

        @app.get("/guarded")
        def guarded(user=Depends(current_user)) -> int:
            return 3

        app.include_router(open_router)
        assert sorted(unauthenticated(app)) == [("GET", "/api/v1/forgotten"), ("POST", "/also-forgotten")]
    finally:
        app.state.skybutler.close()


def _example(path: str) -> str:
    return re.sub(r"\{[^}]+\}", "x", path)


def test_every_guarded_route_refuses_a_caller_without_a_token(served):
    """Not only declared: called with no token (and with a wrong one), each API route answers 401
    and each page sends the browser to the login page, before anything of the request is read."""
    app, url = served
    checked = 0
    with httpx.Client(base_url=url, follow_redirects=False) as client:
        for route in _routes(app.routes):
            path = route.path
            for method in sorted((getattr(route, "methods", None) or set()) - {"HEAD"}):
                if (method, path) in PUBLIC:
                    continue
                for headers in ({}, {"Authorization": "Bearer not-a-token"}):
                    answer = client.request(method, _example(path), json={}, headers=headers)
                    if path.startswith("/api/"):
                        assert answer.status_code == 401, (method, path, answer.text[:200])
                        assert answer.json()["error"] == "AuthenticationError"
                    else:
                        assert answer.status_code in (303, 401), (method, path, answer.status_code)
                        assert answer.status_code == 401 or "/login" in answer.headers["location"]
                checked += 1
    assert checked > 100


def test_the_api_description_is_for_signed_in_users(served, tmp_path):
    """The schema answers a token (401 without one); the interactive page is off by default, and
    turned on it is a page for signed-in users that admits scripts of its CDN and its own inline
    script only."""
    import base64
    import hashlib

    from skybutler.access import Access
    from skybutler.server.api_docs import CDN

    app, url = served
    with Butler(app.state.skybutler.root) as butler:
        token = Access(butler.registry.access).create_token("reader")
    with httpx.Client(base_url=url, follow_redirects=False) as client:
        refused = client.get("/api/v1/openapi.json")
        assert refused.status_code == 401 and refused.json()["error"] == "AuthenticationError"
        schema = client.get("/api/v1/openapi.json", headers={"Authorization": f"Bearer {token}"}).json()
        assert "/api/v1/datasets/find" in schema["paths"] and "/api/v1/openapi.json" not in schema["paths"]
        assert client.get("/docs").headers["location"].startswith("/login")
        client.cookies.set("skybutler_token", token)
        page = client.get("/docs")
        assert page.status_code == 200 and "/api/v1/openapi.json" in page.text
        inline = re.findall(r"<script>(.*?)</script>", page.text, re.S)
        digest = base64.b64encode(hashlib.sha256(inline[0].encode()).digest()).decode()
        policy = page.headers["Content-Security-Policy"]
        assert f"script-src {CDN} 'sha256-{digest}';" in policy and "'unsafe-inline'" not in policy.split(";")[1]
        assert {src for src in re.findall(r'src="([^"]+)"', page.text)} <= {f"{CDN}/npm/swagger-ui-dist@5/"
                                                                            "swagger-ui-bundle.js"}
    root = tmp_path / "plain"
    with Butler.create(root) as butler:
        token = Access(butler.registry.access).create_token("reader")
    with running_server(root) as plain:  # the default: no page, the schema for signed-in users only
        with httpx.Client(base_url=plain, cookies={"skybutler_token": token}) as client:
            for path in ("/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"):
                assert client.get(path).status_code == 404, path
        assert httpx.get(f"{plain}/api/v1/openapi.json").status_code == 401
