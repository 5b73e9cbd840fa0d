"""The served repository against hostile browsers and clients, on a real uvicorn server:
another origin's page may not use a signed-in browser's cookie to change anything (nor sign it
in or out), and a request body above the server's limit is refused with a 413 naming the limit
even when sent in chunks (no Content-Length), the server answering others meanwhile."""

from __future__ import annotations

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("jinja2")

from server_helpers import running_server  # noqa: E402
from web_browser import browser, build_repository  # noqa: E402,F401 (fixture)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    site = build_repository(tmp_path_factory.mktemp("websec") / "repo")
    with running_server(site.root, max_request_bytes=20_000) as url:
        site.url = url
        yield site


def signed_in(site, user: str = "alice") -> httpx.Client:
    c = httpx.Client(base_url=site.url, timeout=30)
    assert c.post("/login", data={"token": site.tokens[user], "next": "/"}).status_code == 303
    return c


def _put_body(run: str) -> bytes:
    """What ``Butler.put`` sends for one metrics dataset: bytes a page could send as text/plain."""
    from skybutler.formats.wire_objects import encode_object
    from skybutler.remote import wire

    kind, data = encode_object({"n": 1})
    header = {"dataset_type": "metrics", "run": run, "id_mode": "random",
              "items": [{"kind": kind, "data_id": wire.encode({"instrument": "Cam", "visit": 1, "detector": 0})}]}
    return wire.pack(header, [data])


def _runs(site) -> set[str]:
    from skybutler import Butler

    with Butler(site.root) as butler:
        return {c.name for c in butler.collections.query("u/alice/*")}


@pytest.mark.parametrize("headers", [
    {"Origin": "http://127.0.0.1:9", "Content-Type": "text/plain"},  # another port: same site, other origin
    {"Sec-Fetch-Site": "same-site", "Origin": "http://127.0.0.1:9", "Content-Type": "text/plain"},
    {"Sec-Fetch-Site": "cross-site", "Content-Type": "text/plain"},
    {"Content-Type": "application/octet-stream"},  # no origin at all: not vouched for by a browser
])
def test_a_cookie_does_not_authenticate_a_change_from_another_origin(site, headers):
    c = signed_in(site)
    before = _runs(site)
    answer = c.post("/api/v1/datasets/put", content=_put_body("u/alice/csrf"), headers=headers)
    assert answer.status_code == 403 and answer.json()["error"] == "PermissionDeniedError"
    assert "bearer token" in answer.json()["message"]
    assert _runs(site) == before  # nothing written
    # reading with the cookie still works from anywhere (links, the web view's own pages)
    assert c.get("/api/v1/dataset_types", headers={"Sec-Fetch-Site": "cross-site"}).status_code == 200


def test_the_servers_own_pages_and_bearer_clients_may_still_change_things(site):
    c = signed_in(site)
    own = c.post("/api/v1/datasets/put", content=_put_body("u/alice/own"),
                 headers={"Origin": site.url, "Sec-Fetch-Site": "same-origin",
                          "Content-Type": "application/octet-stream"})
    assert own.status_code == 200, own.text
    bearer = httpx.post(f"{site.url}/api/v1/datasets/put", content=_put_body("u/alice/bearer"),
                        headers={"Authorization": f"Bearer {site.tokens['alice']}",
                                 "Content-Type": "application/octet-stream"})
    assert bearer.status_code == 200, bearer.text
    assert {"u/alice/own", "u/alice/bearer"} <= _runs(site)


def test_another_site_may_not_sign_a_browser_in_or_out(site):
    c = httpx.Client(base_url=site.url)
    forced = c.post("/login", data={"token": site.tokens["bob"], "next": "/"},
                    headers={"Origin": "http://127.0.0.1:9"})
    assert forced.status_code == 403 and "set-cookie" not in forced.headers
    alice = signed_in(site)
    out = alice.post("/logout", headers={"Sec-Fetch-Site": "same-site"})
    assert out.status_code == 403 and "set-cookie" not in out.headers
    assert alice.get("/collections").status_code == 200  # still signed in


def test_trusted_header_changes_from_another_origin_are_refused(site):
    from skybutler.server.app import create_app
    from skybutler.server.state import ServerSettings, trust_header

    app = create_app(site.root, ServerSettings(identify=trust_header("X-Forwarded-User")))
    with running_server(None, app=app) as url:
        sent = {"X-Forwarded-User": "alice", "Content-Type": "text/plain"}
        foreign = httpx.post(f"{url}/api/v1/datasets/put", content=_put_body("u/alice/proxied"),
                             headers={**sent, "Origin": "http://evil.example"})
        assert foreign.status_code == 403
        assert "u/alice/proxied" not in _runs(site)
        # a client behind the proxy (no browser, no Origin) goes on working
        plain = httpx.post(f"{url}/api/v1/datasets/put", content=_put_body("u/alice/proxied"),
                           headers={**sent, "Content-Type": "application/octet-stream"})
        assert plain.status_code == 200, plain.text
    app.state.skybutler.close()


def _chunks(n: int):
    yield b'{"name": "u/alice/'
    for _ in range(n):
        yield b"x" * 1000
    yield b'", "type": "RUN"}'


@pytest.mark.parametrize("path", ["/api/v1/collections", "/api/v1/datasets/put", "/login"])
def test_a_chunked_body_above_the_limit_is_refused_and_others_are_served(site, path):
    bearer = {"Authorization": f"Bearer {site.tokens['alice']}", "Content-Type": "application/json"}
    answer = httpx.post(site.url + path, content=_chunks(200), headers=bearer)  # 200 kB, no Content-Length
    assert answer.status_code == 413, answer.text
    assert answer.json()["error"] == "RequestTooLarge" and "limit of 20000 bytes" in answer.json()["message"]
    sized = httpx.post(site.url + path, content=b"x" * 30_000, headers=bearer)
    assert sized.status_code == 413 and "limit of 20000 bytes" in sized.json()["message"]
    # a small chunked body is read as before, and other users are served
    small = httpx.post(f"{site.url}/api/v1/collections/query", content=iter([b'{"pattern": "demo/*"}']),
                       headers=bearer)
    assert small.status_code == 200, small.text
    assert signed_in(site, "bob").get("/collections").status_code == 200


# -- tokens -----------------------------------------------------------------------


def test_a_refused_token_costs_one_secret_check_whether_its_id_exists_or_not(site, monkeypatch):
    """The time of a refusal does not tell which token ids exist: an unknown or revoked id has
    its secret checked (against a decoy hash) as a known one has."""
    import skybutler.access as access_module
    from skybutler.access import Access
    from skybutler.errors import AuthenticationError

    checked = []
    real = access_module._hasher

    class Counting:
        def __init__(self):
            self.inner = real()

        def verify(self, hashed, secret):
            checked.append(secret)
            return self.inner.verify(hashed, secret)

        def hash(self, secret):
            return self.inner.hash(secret)

    from skybutler import Butler

    with Butler(site.root) as butler:
        access = Access(butler.registry.access)
        revoked = access.create_token("bob")
        access.revoke_token(revoked)
        monkeypatch.setattr(access_module, "_hasher", Counting)
        known = site.tokens["alice"]
        for token in (known[:-4] + "AAAA", "sbt_0123456789abcdef." + "A" * 43, revoked):
            checked.clear()
            with pytest.raises(AuthenticationError) as refused:
                access.authenticate(token)
            assert len(checked) == 1, token
            assert token.split(".")[1] not in str(refused.value)


def test_a_token_given_where_an_id_is_wanted_is_never_echoed(site):
    """Revoking with a mistyped whole token (a trailing newline) names its id, not its secret."""
    token = site.tokens["alice"]
    answer = httpx.post(f"{site.url}/api/v1/access/tokens/revoke", json={"token_id": token + "\n"},
                        headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 422
    secret = token.split(".")[1]
    assert secret[:8] not in answer.text and token.split(".")[0] in answer.text
    assert httpx.get(f"{site.url}/api/v1/info", headers={"Authorization": f"Bearer {token}"}).status_code == 200


# -- error messages -----------------------------------------------------------------


def test_a_pages_error_names_no_path_of_the_server(site):
    """A damaged file's error, on the dataset page, its quicklook and a cut-out: the message the
    API gives (the file named as the datastore lays it out), never the server's directories."""
    import uuid
    from urllib.parse import urlparse

    from skybutler import Butler

    with Butler(site.root) as butler:
        ref = butler.registry.refs_by_id([uuid.UUID(site.ids["calexp-3-1"])])[0]
        path = urlparse(butler.get_uri(ref)).path
    with open(path, "wb") as damaged:
        damaged.write(b"not a FITS file")
    c = signed_in(site)
    api = c.get(f"/api/v1/datasets/{ref.id}/quicklook.png")
    assert api.status_code == 422 and "calexp_Cam_3_1.fits" in api.json()["message"]
    for page in (f"/datasets/{ref.id}", f"/datasets/{ref.id}/quicklook.png", f"/cutouts/{ref.id}.png?ra=1&dec=1"):
        answer = c.get(page)
        assert answer.status_code == 422 and "calexp_Cam_3_1.fits" in answer.text, page
        assert str(site.root) not in answer.text and str(site.root.parent) not in answer.text, page


# -- many-thousand-item lists ---------------------------------------------------------


def test_a_list_naming_ids_thousands_of_times_costs_one_look_up(site, monkeypatch):
    """``datasets/states`` given a hidden ID 250 times and 150 unknown IDs (within the test
    server's body limit): the answer leaves them out as before, and the server looks the IDs up together -- a handful of registry
    look-ups, not one (and a scan of every TAGGED collection) per ID, which let one small request
    hold a server thread for minutes."""
    import uuid

    from skybutler.registry.dataset_store import DatasetStore

    calls = {"refs_by_id": 0, "ids_in_collection": 0}
    for name in calls:
        real = getattr(DatasetStore, name)

        def counting(self, *args, _real=real, _name=name, **kwargs):
            calls[_name] += 1
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(DatasetStore, name, counting)
    ids = [site.ids["secret"]] * 250 + [str(uuid.uuid4()) for _ in range(150)] + ["not-an-id"]
    bob = {"Authorization": f"Bearer {site.tokens['bob']}"}
    shown = [site.ids["calexp-1-0"], site.ids["bias-0"]]
    answer = httpx.post(f"{site.url}/api/v1/datasets/states", json={"ids": ids + shown}, headers=bob, timeout=120)
    assert answer.status_code == 200 and set(answer.json()) == set(shown)
    assert calls["refs_by_id"] <= 3 and calls["ids_in_collection"] <= 6, calls
    # each ID is judged as a request for it alone judges it
    for dataset_id in (site.ids["secret"], site.ids["embargoed"], site.ids["calexp-1-0"], site.ids["bias-1"]):
        alone = httpx.post(f"{site.url}/api/v1/datasets/states", json={"ids": [dataset_id]}, headers=bob)
        page = httpx.get(f"{site.url}/api/v1/datasets/{dataset_id}/url", headers=bob)
        assert (dataset_id in alone.json()) == (page.status_code == 200), dataset_id


# -- redirects ------------------------------------------------------------------------


@pytest.mark.parametrize("target", ["/\t/evil.example/", "/\n/evil.example/", "/\r\n/evil.example/", "/ /x"])
def test_sign_in_never_leads_to_another_site(site, target):
    """A ``next`` whose tab or newline a browser drops (``//evil.example/``: another site) is
    replaced by the repository's front page, on the trusted-header page's link and after a
    sign-in."""
    import html
    import re

    from skybutler.server.state import trust_header

    with running_server(site.root, identify=trust_header("X-Forwarded-User")) as url:
        page = httpx.get(f"{url}/login", params={"next": target}, headers={"X-Forwarded-User": "bob"})
        links = [html.unescape(h) for h in re.findall(r'<a href="([^"]*)">Continue</a>', page.text)]
        assert links == ["/"], links
    answer = httpx.post(f"{site.url}/login", data={"token": site.tokens["bob"], "next": target})
    assert answer.status_code == 303 and answer.headers["location"] == "/"


# -- a real browser -------------------------------------------------------------------


def test_a_page_on_another_port_cannot_write_with_a_signed_in_browser(site, browser):
    """Headless Chromium signed in as alice opens a page served from another port of the same
    host (same site, so the SameSite=Strict cookie is sent) whose script posts a put into
    ``u/alice/forged`` as a no-cors text/plain fetch: the server refuses it, nothing is written."""
    import base64
    import http.server
    import threading
    import time

    from web_browser import sign_in

    body = base64.b64encode(_put_body("u/alice/forged")).decode()
    attack = f"""<!DOCTYPE html><html><body><script>
    var bytes = Uint8Array.from(atob("{body}"), function (c) {{ return c.charCodeAt(0); }});
    fetch("{site.url}/api/v1/datasets/put", {{method: "POST", mode: "no-cors", credentials: "include",
          headers: {{"Content-Type": "text/plain"}}, body: bytes}})
      .then(function () {{ document.title = "sent"; }}, function () {{ document.title = "failed"; }});
    </script></body></html>""".encode()

    class Attacker(http.server.BaseHTTPRequestHandler):
        def do_GET(self):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.end_headers()
            self.wfile.write(attack)

        def log_message(self, *args):
            pass

    # Threaded: Chromium also opens a speculative connection it sends nothing on; a one-thread
    # server would sit reading it (and shutdown() wait) until Chromium drops it a minute later.
    other = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Attacker)
    other.block_on_close = False
    threading.Thread(target=other.serve_forever, daemon=True).start()
    try:
        sign_in(browser, site, "alice")
        browser.get(f"http://127.0.0.1:{other.server_port}/")
        deadline = time.monotonic() + 20
        while browser.title not in ("sent", "failed") and time.monotonic() < deadline:
            time.sleep(0.1)
        assert browser.title == "sent"  # the request went out (no-cors: its answer is opaque)
    finally:
        other.shutdown()
        other.server_close()
    assert "u/alice/forged" not in _runs(site)
