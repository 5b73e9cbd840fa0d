"""The web view over HTTP (no browser): signing in with a token cookie under the API's rules,
the collections tree and the dataset page checked against what was put, invisible and
embargoed data absent (404 exactly as missing), and hostile text escaped everywhere.
The browser tests are in test_web_browser.py."""

from __future__ import annotations

import html
import re
import uuid
from pathlib import Path
from urllib.parse import urlparse

import httpx
import pytest

pytest.importorskip("fastapi")
pytest.importorskip("jinja2")

from server_helpers import running_server, visible_one_by_one  # noqa: E402
from web_browser import HOSTILE, Site, web_site  # noqa: E402,F401 (fixture)


def client(site: Site, user: str | None = None) -> httpx.Client:
    """An HTTP client signed in as ``user`` through the login form (anonymous without)."""
    c = httpx.Client(base_url=site.url, timeout=30)
    if user is not None:
        answer = c.post("/login", data={"token": site.tokens[user], "next": "/"})
        assert answer.status_code == 303, answer.text
    return c


def _file(site: Site, dataset_id: str) -> Path:
    from skybutler import Butler

    with Butler(site.root) as butler:
        ref = butler.registry.refs_by_id([uuid.UUID(dataset_id)])[0]
        return Path(urlparse(butler.get_uri(ref)).path)


# -- signing in -----------------------------------------------------------------


def test_pages_need_a_sign_in_and_the_api_keeps_its_401(web_site):
    anonymous = client(web_site)
    answer = anonymous.get("/collections?x=1")
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login?next=%2Fcollections%3Fx%3D1"
    api = anonymous.get("/api/v1/dataset_types")
    assert api.status_code == 401 and api.json()["error"] == "AuthenticationError"
    login = anonymous.get("/login")
    assert login.status_code == 200 and 'for="token"' in login.text and 'id="token"' in login.text


def test_login_sets_an_httponly_strict_cookie_the_api_accepts(web_site):
    c = httpx.Client(base_url=web_site.url)
    answer = c.post("/login", data={"token": web_site.tokens["bob"], "next": "/collections"})
    assert answer.status_code == 303 and answer.headers["location"] == "/collections"
    cookie = answer.headers["set-cookie"]
    assert "HttpOnly" in cookie and "SameSite=strict" in cookie and "Path=/" in cookie
    assert "Secure" not in cookie  # plain http on loopback
    assert ">bob<" in c.get("/collections").text
    # the same cookie authenticates the API, with the same rights as bob's bearer token
    assert c.get("/api/v1/dataset_types").status_code == 200
    with_token = httpx.get(f"{web_site.url}/api/v1/datasets/{web_site.ids['secret']}/url",
                           headers={"Authorization": f"Bearer {web_site.tokens['bob']}"})
    assert c.get(f"/api/v1/datasets/{web_site.ids['secret']}/url").status_code == with_token.status_code == 404
    # signing out forgets it
    out = c.post("/logout")
    assert out.status_code == 303 and 'skybutler_token=""' in out.headers["set-cookie"]
    assert c.get("/collections").status_code == 303


def test_bad_tokens_and_foreign_redirects_are_refused(web_site):
    c = httpx.Client(base_url=web_site.url)
    forged = web_site.tokens["alice"][:-4] + "AAAA"
    for bad in ("", "sbt_nothing", forged, HOSTILE):
        answer = c.post("/login", data={"token": bad, "next": "/"})
        assert answer.status_code == 401 and 'role="alert"' in answer.text
        assert "set-cookie" not in answer.headers and HOSTILE not in answer.text
    for target in ("//evil.example/x", "https://evil.example/", "/\\evil.example", "collections"):
        answer = c.post("/login", data={"token": web_site.tokens["alice"], "next": target})
        assert answer.headers["location"] == "/", target
    c.cookies.set("skybutler_token", forged)
    assert c.get("/").status_code == 303


def test_trusted_header_mode_signs_in_without_a_token(web_site):
    from skybutler.server.state import trust_header

    with running_server(web_site.root, identify=trust_header("X-Forwarded-User")) as url:
        page = httpx.get(f"{url}/collections", headers={"X-Forwarded-User": "bob"})
        assert page.status_code == 200 and ">bob<" in page.text and "team/secret" not in page.text
        login = httpx.get(f"{url}/login", headers={"X-Forwarded-User": "bob"})
        assert "identifies you as <strong>bob</strong>" in login.text
        assert httpx.get(f"{url}/collections").status_code == 303


def test_under_a_mount_prefix_links_and_cookie_stay_inside_it(web_site):
    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from skybutler.server.app import create_app

    outer = FastAPI()
    inner = create_app(web_site.root)
    outer.mount("/repo", inner)
    try:
        with TestClient(outer, base_url="http://testserver", follow_redirects=False) as c:
            assert c.get("/repo/search").headers["location"] == "/repo/login?next=%2Frepo%2Fsearch"
            answer = c.post("/repo/login", data={"token": web_site.tokens["alice"], "next": "/repo/search"})
            assert answer.headers["location"] == "/repo/search" and "Path=/repo/" in answer.headers["set-cookie"]
            page = c.get("/repo/collections").text
            assert 'href="/repo/static/web.css"' in page and 'href="/repo/search?collections=demo/run1' in page
            assert c.get("/repo/static/web.css").status_code == 200
    finally:
        inner.state.skybutler.close()


# -- collections ----------------------------------------------------------------


def _tree(text: str) -> dict[str, dict[str, int]]:
    """collection -> dataset type -> count, read off the collections page."""
    out: dict[str, dict[str, int]] = {}
    for item in re.finditer(r'<li class="collection" data-name="([^"]+)">(.*?)(?=<li class="collection"|\Z)', text,
                            re.S):
        name = html.unescape(item.group(1))
        out[name] = {html.unescape(t): int(n) for t, n in re.findall(
            r'dataset_type=[^"]*">([^<]+)</a>: <span class="count">(\d+)</span>', item.group(2))}
    return out


def test_collections_tree_counts_and_validity(web_site):
    text = client(web_site, "alice").get("/collections").text
    tree = _tree(text)
    # what build_repository put, written out by hand
    assert tree["demo/run1"] == {"calexp": 7, "src": 7, "metrics": 6}
    assert tree["team/secret"] == {"calexp": 1}
    assert tree["night2/run"] == {"calexp": 1, "src": 1}
    assert tree["demo/good"] == {"calexp": 1}
    assert tree["Cam/calib"] == {"bias": 2} and tree["Cam/calib/run"] == {"bias": 2}
    assert tree["demo/best"] == {}
    # the chain nests its children, in order
    chain = text[text.index('data-name="demo/best"'):]
    assert "searches demo/run1 → Cam/calib" in chain
    assert 'href="/search?collections=demo/best&amp;find_first=on">search it</a>' in chain
    assert chain.index('data-name="demo/run1"') < chain.index('data-name="Cam/calib"') < chain.index("</details>")
    assert "validity ranges of bias in Cam/calib" in text
    assert text.count("2025-01-01T00:00:00.000</td><td>2025-02-01T00:00:00.000") == 2


def test_collections_show_only_what_the_user_may_see(web_site):
    tree = _tree(client(web_site, "bob").get("/collections").text)
    assert "team/secret" not in tree
    assert tree["night2/run"] == {"src": 1}  # the embargoed calexp is not counted
    assert tree["demo/run1"]["calexp"] == 7


# -- dataset page ---------------------------------------------------------------


def test_dataset_page_of_an_image(web_site):
    from astropy.io import fits

    from skybutler import Butler

    dataset_id = web_site.ids["calexp-2-1"]
    text = client(web_site, "alice").get(f"/datasets/{dataset_id}").text
    path = _file(web_site, dataset_id)
    assert f'id="size">{path.stat().st_size:,} bytes' in text
    with Butler(web_site.root) as butler:
        artifact = butler.registry.refs_by_id([uuid.UUID(dataset_id)])[0].artifact
    assert artifact.checksum and f'id="checksum">{artifact.checksum}<' in text
    assert 'id="storage-class">Image<' in text and 'id="state" class="state-stored">stored<' in text
    assert f'href="/api/v1/datasets/{dataset_id}/file"' in text
    # the header, as astropy reads the file
    with fits.open(path) as hdus:
        header = hdus[1].header if len(hdus) > 1 and hdus[0].data is None else hdus[0].header
    for key in ("CRVAL1", "CD2_2", "EXPTIME"):
        assert f'<td class="mono">{key}</td><td class="mono">{header[key]}</td>' in text
    # metrics set on it, and the data ID's records
    assert "<th scope=\"row\">seeing</th><td>1.2</td>" in text
    assert "<th scope=\"row\">zero_point</th><td>28.0</td>" in text
    assert "visit record" in text and "R00_S01" in text


def test_dataset_page_of_a_catalog(web_site):
    import pyarrow.parquet as pq

    dataset_id = web_site.ids["src-3-0"]
    text = client(web_site, "alice").get(f"/datasets/{dataset_id}").text
    table = pq.read_table(_file(web_site, dataset_id))
    schema = re.search(r'<table class="grid" id="schema">(.*?)</table>', text, re.S).group(1)
    assert re.findall(r'<td class="mono">([^<]+)</td><td>([^<]+)</td>', schema) == [
        (f.name, str(f.type)) for f in table.schema]
    rows = re.search(r'<table class="grid" id="rows">.*?<tbody>(.*?)</tbody>', text, re.S).group(1)
    shown = [re.findall(r"<td>([^<]*)</td>", r) for r in re.findall(r"<tr>(.*?)</tr>", rows)]
    assert shown == [[str(v) for v in row.values()] for row in table.to_pylist()]


def test_a_calexp_page_view_opens_its_file_once_for_the_page_and_once_for_the_quicklook(web_site, monkeypatch):
    """The page reads the header (its cards); the quicklook reads the binned pixels, its shape
    taken from the facts recorded at store time, not from a header read of its own."""
    from astropy.io import fits

    from skybutler.formats.formatter import Formatter
    from skybutler.web import images

    reads, opens, real_read, real_open = [], [], Formatter.read, fits.open

    def counted_read(self, stream, component=None, parameters=None):
        reads.append(component)
        return real_read(self, stream, component, parameters)

    def counted_open(*args, **kwargs):
        opens.append(1)
        return real_open(*args, **kwargs)

    monkeypatch.setattr(Formatter, "read", counted_read)
    monkeypatch.setattr(fits, "open", counted_open)  # the server runs in this process
    monkeypatch.setattr(images, "render_cache", lambda state: None)  # rendered afresh, not cached
    c = client(web_site, "alice")
    page = c.get(f"/datasets/{web_site.ids['calexp-2-1']}")
    assert page.status_code == 200 and reads == ["header"] and len(opens) == 1
    reads.clear(), opens.clear()
    png = c.get(f"/datasets/{web_site.ids['calexp-2-1']}/quicklook.png", params={"stretch": "asinh", "size": "128"})
    assert png.status_code == 200 and png.content.startswith(b"\x89PNG")
    assert reads == ["data"] and len(opens) == 1


def test_provenance_graph_shows_exactly_the_datasets_their_pages_show(web_site):
    """The graph page's bulk check (type and RUN of every dataset at once) against the dataset
    page's own rule, ID by ID, for a user who may see everything and one under an embargo
    without the secret RUN."""
    from skybutler import Butler
    from skybutler.access import Access
    from skybutler.server.authz import visible_ids

    ids = [uuid.UUID(i) for i in web_site.ids.values()] + [uuid.uuid4()]
    with Butler(web_site.root) as butler:
        for name in ("alice", "bob"):
            user = Access(butler.registry.access).user(name)
            expected = visible_one_by_one(butler, user, ids)
            assert visible_ids(butler, user, ids) == expected
            hidden = {uuid.UUID(web_site.ids[k]) for k in ("secret", "embargoed")}
            assert hidden <= expected if name == "alice" else not hidden & expected


def test_purged_dataset_page(web_site):
    c = client(web_site, "alice")
    text = c.get(f"/datasets/{web_site.ids['purged']}").text
    assert 'id="state" class="state-purged">purged-lost<' in text and 'id="purged"' in text
    assert 'id="download"' not in text and 'id="schema"' not in text
    assert "<th scope=\"row\">n_rows</th><td>7</td>" in text  # its facts stay
    rows = _rows(_search(c, dataset_type="src", collections="demo/run1", where="visit = 3 AND detector = 1").text)
    assert [r["state"] for r in rows] == ["purged-lost"]


def test_invisible_and_embargoed_datasets_are_missing(web_site):
    bob = client(web_site, "bob")
    missing = bob.get(f"/datasets/{uuid.uuid4()}")
    assert missing.status_code == 404
    for key in ("secret", "embargoed"):
        answer = bob.get(f"/datasets/{web_site.ids[key]}")
        assert answer.status_code == 404
        assert answer.text.replace(web_site.ids[key], "ID") == missing.text.replace(
            re.search(r"no dataset with ID (\S+)<", missing.text).group(1), "ID")
    assert client(web_site, "alice").get(f"/datasets/{web_site.ids['embargoed']}").status_code == 200
    assert bob.get("/datasets/not-a-uuid").status_code == 404


# -- escaping -------------------------------------------------------------------


@pytest.mark.parametrize("page", ["/collections", "/datasets/{hostile-calexp}", "/datasets/{hostile-src}",
                                  "/login?next=/%3Cscript%3E", "/datasets/%3Cscript%3Ealert(1)%3C%2Fscript%3E",
                                  "/search?dataset_type=calexp&where={HOSTILE}",
                                  "/search?dataset_type=calexp&collections={HOSTILE}",
                                  "/search?dataset_type={HOSTILE}&order={HOSTILE}"])
def test_hostile_text_is_escaped(web_site, page):
    from urllib.parse import quote

    ids = dict(web_site.ids, HOSTILE=quote(HOSTILE))
    path = re.sub(r"\{([^}]+)\}", lambda m: ids[m.group(1)], page)
    text = client(web_site, "alice").get(path).text
    assert "<script>" not in text.replace('<script src="/static/web.js"></script>', "")
    assert "<img src=x" not in text and "onerror=\"window" not in text
    if "hostile" in page or "HOSTILE" in page or page == "/collections":
        assert HOSTILE in html.unescape(text)  # shown, as text


# -- search ---------------------------------------------------------------------

#: calexps of demo/run1 with visit > 1, by hand from build_repository: (visit, detector)
CALEXPS_AFTER_1 = [(2, 0), (2, 1), (3, 0), (3, 1), (4, 0)]


def _rows(text: str) -> list[dict[str, str]]:
    """The results table of a search page, as dicts of its cells' text."""
    found = re.search(r'<table class="grid" id="results">(.*?)</table>', text, re.S)
    if found is None:
        return []
    heads = [re.sub(r"<[^>]+>| [▲▼]", "", h).strip() for h in re.findall(r"<th[^>]*>(.*?)</th>", found.group(1), re.S)]
    body = found.group(1).split("<tbody>")[1]
    return [dict(zip(heads, [html.unescape(re.sub(r"<[^>]+>", "", c)) for c in re.findall(r"<td[^>]*>(.*?)</td>", r, re.S)]))
            for r in re.findall(r"<tr>(.*?)</tr>", body, re.S)]


def _search(c: httpx.Client, **params: str) -> httpx.Response:
    return c.get("/search", params=params)


def test_search_sorts_and_pages_through_the_results(web_site):
    c = client(web_site, "alice")
    query = {"dataset_type": "calexp", "collections": "demo/run1", "where": "visit > 1", "find_first": "on"}
    rows = _rows(_search(c, **query, order="-visit").text)
    assert [int(r["visit"]) for r in rows] == sorted((v for v, _ in CALEXPS_AFTER_1), reverse=True)
    assert {(int(r["visit"]), int(r["detector"])) for r in rows} == set(CALEXPS_AFTER_1)
    assert all(r["state"] == "stored" and r["run"] == "demo/run1" for r in rows)
    # pages of two, by visit (then dataset ID), followed by their next links, give the whole
    # answer once; the previous links lead back through the same pages
    pages, text = [], _search(c, **query, order="visit", size="2").text
    while True:
        pages.append([(int(r["visit"]), int(r["detector"])) for r in _rows(text)])
        assert re.search(r'id="total">5<', text)
        assert f"rows {2 * len(pages) - 1}–{2 * len(pages) - 2 + len(pages[-1])} of" in text
        link = re.search(r'id="next-page" href="([^"]+)"', text)
        if link is None:
            break
        text = c.get(html.unescape(link.group(1))).text
    seen = [row for page in pages for row in page]
    assert len(pages) == 3 and sorted(seen) == CALEXPS_AFTER_1 and [v for v, _ in seen] == sorted(v for v, _ in seen)
    back = []
    while (link := re.search(r'id="prev-page" href="([^"]+)"', text)) is not None:
        text = c.get(html.unescape(link.group(1))).text
        back.append([(int(r["visit"]), int(r["detector"])) for r in _rows(text)])
    assert back == pages[-2::-1] and "rows 1–2 of" in text
    # each result links to its dataset page
    first = _rows(_search(c, **query).text)[0]["dataset_id"]
    assert f'href="/datasets/{first}"' in _search(c, **query).text
    assert c.get(f"/datasets/{first}").status_code == 200
    # the sorted column says so to assistive technology
    assert 'aria-sort="descending"' in _search(c, **query, order="-visit").text


def test_search_total_counts_only_what_the_user_may_see_and_caps(web_site, monkeypatch):
    from skybutler.web import search

    alice, bob = client(web_site, "alice"), client(web_site, "bob")
    total = re.compile(r'id="total">([^<]+)<')
    assert total.search(_search(alice, dataset_type="calexp").text).group(1) == "9"
    assert total.search(_search(bob, dataset_type="calexp").text).group(1) == "7"  # no secret, no embargoed
    monkeypatch.setattr(search, "COUNT_LIMIT", 4)  # the page server runs in this process
    text = _search(alice, dataset_type="calexp", size="2").text
    assert total.search(text).group(1) == "4+" and len(_rows(text)) == 2


def test_search_page_keys_are_checked(web_site):
    alice = client(web_site, "alice")
    query = {"dataset_type": "calexp", "collections": "demo/run1", "order": "visit"}
    for after in ('[2, "not-a-uuid"]', '["two", "00000000-0000-0000-0000-000000000000"]', "[1]"):
        answer = _search(alice, **query, after=after)
        assert answer.status_code == 422 and 'id="query-error"' in answer.text
    # a malformed key is no key: the first page
    assert _rows(_search(alice, **query, after="{not json").text) == _rows(_search(alice, **query).text)


def test_search_explains_an_empty_answer(web_site):
    text = _search(client(web_site, "alice"), dataset_type="calexp", collections="demo/run1", where="visit > 100").text
    assert 'id="no-results"' in text
    explain = re.search(r'<ul id="explain">(.*?)</ul>', text, re.S).group(1)
    assert "visit &gt; 100" in explain


def test_search_hides_what_the_user_may_not_see(web_site):
    bob = client(web_site, "bob")
    text = _search(bob, dataset_type="calexp", collections="night2/run").text
    assert _rows(text) == [] and "no dataset you may see matches the query" in text
    ids = {r["dataset_id"] for r in _rows(_search(bob, dataset_type="calexp", size="1000").text)}
    assert web_site.ids["secret"] not in ids and web_site.ids["embargoed"] not in ids and len(ids) == 7
    alice_ids = {r["dataset_id"] for r in _rows(_search(client(web_site, "alice"), dataset_type="calexp").text)}
    assert alice_ids == ids | {web_site.ids["secret"], web_site.ids["embargoed"]}
    refused = _search(bob, dataset_type="calexp", collections="team/secret")
    missing = _search(bob, dataset_type="calexp", collections="no/such")
    assert refused.status_code == missing.status_code == 404
    assert "no collection named &#39;team/secret&#39;" in refused.text


def test_malformed_where_shows_the_cli_caret_message(web_site):
    from click.testing import CliRunner

    from skybutler.cli.main import cli

    where = "visit > 1 AND (detector = "
    page = _search(client(web_site, "alice"), dataset_type="calexp", collections="demo/run1", where=where)
    assert page.status_code == 422
    shown = html.unescape(re.search(r'<pre class="error" role="alert" id="query-error">(.*?)</pre>', page.text,
                                    re.S).group(1))
    result = CliRunner().invoke(cli, ["query-datasets", str(web_site.root), "calexp", "-c", "demo/run1",
                                      "--where", where])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: {shown}".strip()
    assert "^" in shown


def test_downloads_hold_the_whole_answer(web_site):
    import csv
    import io

    import pyarrow.parquet as pq

    for user, expected in (("alice", 9), ("bob", 7)):
        c = client(web_site, user)
        params = {"dataset_type": "calexp", "size": "2"}  # the page size does not cut a download
        text = c.get("/search.csv", params=params)
        assert text.status_code == 200 and text.headers["content-type"].startswith("text/csv")
        assert 'filename="calexp.csv"' in text.headers["content-disposition"]
        rows = list(csv.DictReader(io.StringIO(text.text)))
        table = pq.read_table(io.BytesIO(c.get("/search.parquet", params=params).content))
        assert len(rows) == table.num_rows == expected
        assert {r["dataset_id"] for r in rows} == set(table.column("dataset_id").to_pylist())
        assert {(int(r["visit"]), int(r["detector"])) for r in rows} == set(
            zip(table.column("visit").to_pylist(), table.column("detector").to_pylist()))
    bad = client(web_site, "alice").get("/search.csv", params={"dataset_type": "calexp", "where": "visit >"})
    assert bad.status_code == 422 and "^" in html.unescape(bad.text)


def test_python_and_cli_snippets_run_the_same_query(web_site, monkeypatch):
    import shlex

    from click.testing import CliRunner

    from skybutler.cli.main import cli

    c = client(web_site, "bob")
    query = {"dataset_type": "calexp", "collections": "demo/run1,night2/run", "where": "detector = 0",
             "find_first": "on", "order": "-visit"}
    page = _search(c, **query).text
    shown = [r["dataset_id"] for r in _rows(page)]
    assert len(shown) == 4  # visits 1-4 of demo/run1; night2's calexp (visit 6) is embargoed from bob
    command = html.unescape(re.search(r'<pre id="snippet-cli">(.*?)</pre>', page, re.S).group(1))
    python = html.unescape(re.search(r'<pre id="snippet-python">(.*?)</pre>', page, re.S).group(1))
    words = shlex.split(command)
    assert words[:3] == ["skybutler", "query-datasets", web_site.url]
    monkeypatch.setenv("SKYBUTLER_TOKEN", web_site.tokens["bob"])
    result = CliRunner().invoke(cli, words[1:] + ["--csv"])
    assert result.exit_code == 0, result.output
    assert [line.split(",")[0] for line in result.output.strip().splitlines()[1:]] == shown
    scope: dict = {}
    exec(compile(python, "snippet", "exec"), scope)  # noqa: S102 -- the snippet the page shows
    assert scope["table"].column("dataset_id").to_pylist() == shown
    scope["butler"].close()


def test_the_demo_prints_the_url_skybutler_serve_serves_the_web_view_at(web_site, monkeypatch):
    from fastapi.testclient import TestClient

    from skybutler.demo import web_view_hint
    from skybutler.server.main import app

    hint = web_view_hint(web_site.root, kept=True)
    assert f"skybutler serve {web_site.root}" in hint
    path = re.search(r"http://127\.0\.0\.1:8080(/\S+/)$", hint).group(1)
    from skybutler.server.config import ENV, ServeConfig

    served = ServeConfig(repositories={web_site.root.name: str(web_site.root)})  # as `skybutler serve REPO` makes it
    monkeypatch.setenv(ENV, served.model_dump_json())
    outer = app()  # what `skybutler serve` runs
    try:
        with TestClient(outer, follow_redirects=False) as c:
            assert c.get(path).headers["location"] == f"{path}login?next={path.replace('/', '%2F')}"
            c.post(f"{path}login", data={"token": web_site.tokens["alice"], "next": path})
            page = c.get(path)
            assert page.status_code == 200 and ">alice<" in page.text and "Server-Timing" in page.headers
    finally:
        from starlette.routing import Mount

        for mounted in outer.routes:
            if isinstance(mounted, Mount):
                mounted.app.state.skybutler.close()
    assert "--keep" in web_view_hint(web_site.root, kept=False)


def test_pages_forbid_inline_scripts_and_foreign_resources(web_site):
    answer = client(web_site, "alice").get("/collections")
    policy = dict(part.strip().split(" ", 1) for part in answer.headers["content-security-policy"].split(";"))
    assert policy["script-src"] == "'self'" and policy["default-src"] == "'self'"
    assert policy["frame-ancestors"] == "'none'" and answer.headers["x-content-type-options"] == "nosniff"
    assert "content-security-policy" not in client(web_site, "alice").get("/api/v1/dataset_types").headers


def test_dataset_counts_match_the_collections_members(butler):
    """DatasetStore.counts against a count of each collection's members, type by type."""
    butler.register_dataset_type("flat", ["instrument", "detector"], "Dict", is_calibration=True)
    refs = [butler.put({"v": v}, "metrics", instrument="Cam", visit=v, detector=d, run="run/a")
            for v in (1, 2) for d in (0, 1)]
    butler.put({"v": 9}, "metrics", instrument="Cam", visit=3, detector=0, run="run/b")
    flats = [butler.put({"f": d}, "flat", instrument="Cam", detector=d, run="calib/run") for d in (0, 1)]
    butler.collections.register("tagged", "TAGGED")
    butler.collections.associate("tagged", refs[:3])
    from astropy.time import Time

    for start, end in (("2025-01-01", "2025-01-02"), ("2025-01-03", "2025-01-04")):  # twice: counted once
        butler.collections.certify("calib", flats, Time(start, scale="tai"), Time(end, scale="tai"))
    counts = butler.registry.datasets.counts()
    expected = {}
    for info in butler.collections.query("*"):
        for dtype in ("metrics", "flat"):
            if info.type.value == "CHAINED":
                continue
            n = len(set(butler.registry.datasets.ids_in_collection(info.name, dtype)))
            if n:
                expected[(info.name, dtype)] = n
    assert {k: v for k, v in counts.items() if v} == expected
    assert expected[("run/a", "metrics")] == 4 and expected[("tagged", "metrics")] == 3
    assert expected[("calib", "flat")] == 2 and expected[("run/b", "metrics")] == 1


def test_every_column_header_sorts_the_results_by_its_column(web_site):
    """Each header's link sorts by its column, the RUN by name (over several RUNs, both ways,
    paged by key); the state is no query column and does not sort."""
    c = client(web_site, "alice")
    query = {"dataset_type": "calexp", "collections": "demo/run1"}
    text = _search(c, **query).text
    heads = re.findall(r"<th scope=\"col\"[^>]*>\s*<a href=\"([^\"]+)\">([^<]+)</a>", text)
    assert len(heads) >= 5 and "run" in {name for _, name in heads} and "state" not in {name for _, name in heads}
    assert re.search(r'<th scope="col">state</th>', text)
    for href, name in heads:
        response = c.get(html.unescape(href))
        assert response.status_code == 200, (name, re.findall(r"id=\"error-message\">(.*?)</pre>", response.text, re.S))
        column = [r[name.strip()] for r in _rows(response.text)]
        assert column and column == sorted(column, key=lambda v: (int(v) if v.isdigit() else v)), name
    # every RUN (no collections named), by RUN name, pages of 3 followed by their links
    for order in ("run", "-run"):
        rows, page = [], _search(c, dataset_type="calexp", order=order, size="3")
        while True:
            rows += [(r["run"], r["dataset_id"]) for r in _rows(page.text)]
            link = re.search(r'<a[^>]*href="([^"]*after=[^"]*)"', page.text)
            if link is None or len(rows) > 100:
                break
            page = c.get(html.unescape(link.group(1)))
        runs = [run for run, _ in rows]
        assert len(set(runs)) > 1 and runs == sorted(runs, reverse=order == "-run"), order
        whole = [(r["run"], r["dataset_id"]) for r in _rows(_search(c, dataset_type="calexp", size="1000").text)]
        assert len(set(rows)) == len(rows) and set(rows) == set(whole), order
