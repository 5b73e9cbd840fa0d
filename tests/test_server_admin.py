"""The administration of a served repository through its server (``butler.access``): the same
commands on a URL as on the path, with the local command on a twin repository as the oracle;
what a user who is not an administrator may see of themselves; and the hostile cases -- 403
with nothing written, revocations and demotions that apply at once, odd names refused by
name, and no way past the repository's administrator."""

from __future__ import annotations

import json
import re

import httpx
import pytest
from click.testing import CliRunner

from conftest import populate
from server_helpers import running_server
from skybutler import Butler
from skybutler.access import Access
from skybutler.cli.main import cli
from skybutler.errors import AccessError, AuthenticationError, PermissionDeniedError

pytest.importorskip("fastapi")

#: Secrets, token ids and times differ between the twins; everything else must not.
_VARYING = [(re.compile(r"sbt_[0-9a-f]{16}\.[A-Za-z0-9_-]+"), "<token>"), (re.compile(r"\b[0-9a-f]{16}\b"), "<id>"),
            (re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"), "<time>")]


def _same(text: str) -> str:
    for pattern, stands_for in _VARYING:
        text = pattern.sub(stands_for, text)
    return text


def cli_run(*args: object, token: str | None = None, ok: bool = True) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args], env={"SKYBUTLER_TOKEN": token or ""})
    if ok:
        assert result.exit_code == 0, result.output
    return result.exit_code, result.stdout, result.stderr


def _audit(store) -> list[tuple[str, str, str]]:
    return [(actor, action, detail) for _, actor, action, detail in store.audit_rows(1000)]


def _setup(butler: Butler) -> str:
    """The state both twins start from: datasets in ana's area and a public RUN, and the
    administrator ``boss``; returns boss's token."""
    butler.put({"n": 1}, "metrics", instrument="Cam", visit=1, detector=0, run="u/ana/run")
    butler.put({"n": 22}, "metrics", instrument="Cam", visit=2, detector=0, run="u/ana/run")
    butler.put({"n": 3}, "metrics", instrument="Cam", visit=1, detector=0, run="public/run")
    Access(butler.registry.access).add_user("boss", admin=True)
    return Access(butler.registry.access).create_token("boss")


#: The administration an administrator runs: on the path of one twin, on the URL of the other.
SCRIPT = [
    ["add-user", "{repo}", "ana", "--group", "rights", "--group", "team"],
    ["add-user", "{repo}", "bob"],
    ["remove-from-group", "{repo}", "ana", "team"],
    ["grant", "{repo}", "read", "public/*", "--everyone"],
    ["grant", "{repo}", "write", "team/*", "--group", "rights"],
    ["grant", "{repo}", "read", "x/*", "--user", "bob"],
    ["grant", "{repo}", "none", "x/*", "--user", "bob"],
    ["rules", "{repo}", "--json"],
    ["embargo", "add", "{repo}", "--dataset-types", "raw", "--hours", "80", "--group", "rights"],
    ["embargo", "add", "{repo}", "--dataset-types", "calexp", "--collections", "dr/*", "--hours", "2"],
    ["embargo", "list", "{repo}", "--json"],
    ["embargo", "remove", "{repo}", "2"],
    ["quota", "{repo}", "ana", "--max-bytes", "100000", "--max-datasets", "5", "--json"],
    ["quota", "{repo}", "--group", "rights", "--max-datasets", "9", "--json"],
    ["quota", "{repo}", "--json"],
    ["whoami", "{repo}", "ana", "--json"],
    ["whoami", "{repo}", "bob"],
    ["token", "create", "{repo}", "carol", "--group", "rights", "--expires", "1d", "--note", "for the pipeline"],
    ["token", "list", "{repo}", "--user", "carol", "--json"],
]


def test_administration_through_a_server_matches_the_local_commands(make_butler):
    """Every command of the script gives the same output on the URL as on the twin's path, the
    twins' access tables end the same, and each change is in the audit log as the local command
    writes it (under the administrator's name rather than ``admin``)."""
    twins = []
    for name in ("local", "served"):
        butler = make_butler(name)
        populate(butler)
        butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
        twins.append((butler, _setup(butler)))
    (local, _), (served, boss) = twins
    before = len(_audit(served.registry.access))
    with running_server(served.root) as url:
        for command in SCRIPT:
            _, on_path, _ = cli_run(*[a.format(repo=local.root) for a in command])
            _, on_url, _ = cli_run(*[a.format(repo=url) for a in command], token=boss)
            assert _same(on_url) == _same(on_path), command
        dora = cli_run("token", "create", url, "dora", token=boss)[1].strip()
        cli_run("token", "create", local.root, "dora")
        assert Butler(url, token=dora).access.whoami().user == "dora"  # the secret printed once works
        for repo, token in ((local.root, None), (url, boss)):
            tokens = json.loads(cli_run("token", "list", repo, "--json", token=token)[1])
            cli_run("token", "revoke", repo, next(t["id"] for t in tokens if t["user"] == "carol"), token=token)
        assert _same(cli_run("audit", url, "--json", token=boss)[1]).replace('"boss"', '"admin"') == \
            _same(cli_run("audit", local.root, "--json")[1])
    stores = local.registry.access, served.registry.access
    assert [s.user_names() for s in stores] == [["ana", "bob", "boss", "carol", "dora"]] * 2
    assert stores[0].rule_rows() == stores[1].rule_rows()
    assert stores[0].embargo_rows() == stores[1].embargo_rows()
    assert [s.user("ana") for s in stores] == [(False, ("rights",))] * 2
    local_log, served_log = _audit(stores[0]), _audit(stores[1])
    made = served_log[:len(served_log) - before]
    assert {actor for actor, _, _ in made} == {"boss"}
    assert [_same(f"{a} {d}") for _, a, d in made] == [_same(f"{a} {d}") for _, a, d in local_log[:len(made)]]
    assert [[t.revoked_ns is not None for t in s.token_rows("carol")] for s in stores] == [[True]] * 2


@pytest.fixture
def served(butler):
    """One repository with an administrator, two users in a group, a third outside, datasets in
    their areas, and a server; yields (butler, url, {user: token})."""
    if butler.registry.db.dialect != "sqlite":
        pytest.skip("the server's own checks, which no registry backend changes: run once")
    butler.put({"n": 1}, "metrics", instrument="Cam", visit=1, detector=0, run="u/ana/run")
    butler.put({"n": 2}, "metrics", instrument="Cam", visit=1, detector=0, run="g/rights/run")
    access = Access(butler.registry.access)
    access.add_user("boss", admin=True)
    access.add_user("ana", groups=["rights"])
    access.add_user("bob")
    access.set_quota("user", "ana", max_datasets=10)
    tokens = {name: access.create_token(name) for name in ("boss", "ana", "bob")}
    with running_server(butler.root, access_recheck_seconds=60) as url:
        yield butler, url, tokens


def test_a_user_sees_their_own_quota_tokens_and_rules(served):
    butler, url, tokens = served
    bob = Butler(url, token=tokens["bob"])
    ana = Butler(url, token=tokens["ana"])
    assert ana.access.usage() == [{"user": "ana", "datasets": 1, "bytes": ana.access.usage()[0]["bytes"],
                                   "max_datasets": 10, "max_bytes": None}]
    assert ana.access.usage("user", "ana") == butler.access.usage("user", "ana")  # the local oracle
    assert ana.access.usage("group", "rights") == butler.access.usage("group", "rights")
    assert [row["user"] for row in json.loads(cli_run("quota", url, "--json", token=tokens["bob"])[1])] == ["bob"]
    me = bob.access.whoami()
    assert (me.user, me.admin, me.groups) == ("bob", False, ())
    assert [t.user for t in bob.access.tokens()] == ["bob"]
    assert ana.access.whoami() == butler.access.whoami("ana")
    # another user's (or a group's that is not theirs) is refused the same way, existing or not
    for call in (lambda: bob.access.usage("user", "ana"), lambda: bob.access.usage("user", "nobody"),
                 lambda: bob.access.usage("group", "rights"), lambda: bob.access.usage("group", "nothing"),
                 lambda: bob.access.whoami("ana"), lambda: bob.access.whoami("nobody"),
                 lambda: bob.access.tokens("ana"), lambda: bob.access.tokens("nobody")):
        with pytest.raises(PermissionDeniedError) as refused:
            call()
        assert "ana" not in str(refused.value) and "nobody" not in str(refused.value)
        assert refused.value.status == 403


def test_a_user_revokes_their_own_token_and_no_other(served):
    butler, url, tokens = served
    store = butler.registry.access
    spare = Access(store).create_token("bob", note="laptop")
    bob = Butler(url, token=tokens["bob"])
    anas = next(t.token_id for t in store.token_rows("ana"))
    answers = []
    for token_id in (anas, "0123456789abcdef"):  # another's, and none at all: the same answer
        with pytest.raises(AccessError) as refused:
            bob.access.revoke_token(token_id)
        answers.append(str(refused.value).replace(token_id, "<id>"))
    assert answers == ["no token '<id>'"] * 2
    assert store.token(anas).revoked_ns is None
    bob.access.revoke_token(spare)
    with pytest.raises(AuthenticationError):
        Butler(url, token=spare)
    assert [a for _, a, _ in _audit(store)[:1]] == ["token-revoke"] and _audit(store)[0][0] == "bob"


#: What only an administrator may do, as (command, the request it makes).
ADMIN_ONLY = [
    ["add-user", "{url}", "mallory", "--admin"], ["add-user", "{url}", "bob", "--group", "rights"],
    ["remove-from-group", "{url}", "ana", "rights"], ["token", "create", "{url}", "ana"],
    ["grant", "{url}", "admin", "*", "--user", "bob"], ["rules", "{url}"],
    ["embargo", "add", "{url}", "--dataset-types", "raw", "--hours", "1"], ["embargo", "list", "{url}"],
    ["embargo", "remove", "{url}", "1"], ["quota", "{url}", "bob", "--max-bytes", "1"], ["audit", "{url}"],
]


@pytest.mark.parametrize("command", ADMIN_ONLY, ids=lambda c: " ".join(c[:2]) if c[0] in ("token", "embargo")
                         else c[0])
def test_only_an_administrator_administers(served, command):
    """A user who is not an administrator -- even one granted ``admin`` on every collection --
    is refused in one line (403) and nothing is written."""
    butler, url, tokens = served
    store = butler.registry.access
    Access(store).grant("user", "bob", "*", "admin")  # administers every collection: not the repository
    before = (_audit(store), store.user_names(), store.rule_rows(), store.embargo_rows(), store.token_rows())
    code, out, err = cli_run(*[a.format(url=url) for a in command], token=tokens["bob"], ok=False)
    assert code == 1 and out == ""
    assert len(err.strip().splitlines()) == 1 and err.startswith("error: only a repository administrator may"), err
    assert (_audit(store), store.user_names(), store.rule_rows(), store.embargo_rows(), store.token_rows()) == before


def test_refusals_are_json_with_their_status(served):
    butler, url, tokens = served
    api = f"{url}/api/v1/access"
    bob = {"Authorization": f"Bearer {tokens['bob']}"}
    boss = {"Authorization": f"Bearer {tokens['boss']}"}
    before = _audit(butler.registry.access)
    refused = httpx.post(f"{api}/users", json={"name": "bob", "admin": True}, headers=bob)
    assert refused.status_code == 403 and refused.json() == {
        "error": "PermissionDeniedError", "message": "only a repository administrator may add users or change their "
                                                     "groups"}
    assert httpx.get(f"{api}/users", headers={}).status_code == 401
    # the actor of an audit entry is the caller: a body naming another is refused, not obeyed
    forged = httpx.post(f"{api}/users", json={"name": "eve", "actor": "ana"}, headers=boss)
    assert forged.status_code == 422 and forged.json() == {
        "error": "SkybutlerError", "message": "malformed request: body.actor: Extra inputs are not permitted"}
    listed = httpx.get(f"{api}/tokens", headers=boss)
    assert listed.status_code == 200 and "argon2" not in listed.text and "secret" not in listed.text
    assert _audit(butler.registry.access) == before


def test_a_revoked_or_demoted_administrator_stops_at_once(served):
    """The server's own caches are dropped by a change made through it: the next request of a
    revoked token is 401, of a demoted administrator 403 (the server re-reads other processes'
    changes only every 60 s here)."""
    butler, url, tokens = served
    store = butler.registry.access
    deputy = Access(store).create_token("deputy")
    boss = Butler(url, token=tokens["boss"])
    boss.access.add_user("deputy", admin=True)
    second = Butler(url, token=deputy)
    assert second.access.users() == ["ana", "bob", "boss", "deputy"]
    boss.access.revoke_token(deputy)
    with pytest.raises(AuthenticationError):
        second.access.users()
    other = boss.access.create_token("deputy")
    third = Butler(url, token=other)
    third.access.add_user("ana", groups=["rights"])
    boss.access.add_user("deputy", admin=False)  # --no-admin: demoted
    with pytest.raises(PermissionDeniedError):
        third.access.add_user("bob", admin=True)
    assert store.user("bob") == (False, ())


def test_an_administrator_of_one_repository_is_nobody_in_another(make_butler):
    """Two repositories served together keep their own users: a token of one opens nothing of the
    other, whatever its owner may do in the first."""
    from skybutler.server.config import ServeConfig
    from skybutler.server.main import build

    first, second = make_butler("first"), make_butler("second")
    if first.registry.db.dialect != "sqlite":
        pytest.skip("the server's own checks, which no registry backend changes: run once")
    boss = Access(first.registry.access).create_token("boss")
    first.access.add_user("boss", admin=True)
    Access(second.registry.access).add_user("someone")
    app = build(ServeConfig(repositories={"first": str(first.root), "second": str(second.root)}))
    try:
        with running_server(None, app=app) as url:
            assert Butler(f"{url}/first", token=boss).access.users() == ["boss"]
            with pytest.raises(AuthenticationError):
                Butler(f"{url}/second", token=boss)
    finally:
        for mount in app.routes:
            if hasattr(getattr(mount, "app", None), "state"):
                mount.app.state.skybutler.close()
    assert second.registry.access.user_names() == ["someone"] and len(_audit(second.registry.access)) == 1


HOSTILE = [
    (["add-user", "{repo}", "../etc"], "invalid user name '../etc': use letters, digits and _.@- (at most 128)"),
    (["add-user", "{repo}", "ana", "--group", "a/b"], "invalid group name 'a/b'"),
    (["add-user", "{repo}", "x" * 129], "invalid user name"),
    (["token", "create", "{repo}", "..\\ana"], "invalid user name '..\\\\ana'"),
    (["token", "create", "{repo}", "ana", "--note", "a\nb"], "a token's note is at most 1000 printable characters"),
    (["token", "revoke", "{repo}", "../../etc/passwd"], "no token '../../etc/passwd'"),
    (["token", "list", "{repo}", "--user", "a b"], "invalid user name 'a b'"),
    (["grant", "{repo}", "read", "x\ny", "--user", "ana"], "a rule's collection pattern 'x\\ny' holds a control"),
    (["grant", "{repo}", "read", "x/*", "--group", "../g"], "invalid group name '../g'"),
    (["embargo", "add", "{repo}", "--dataset-types", "raw\r", "--hours", "1"], "holds a control character"),
    (["embargo", "add", "{repo}", "--dataset-types", "raw", "--collections", "", "--hours", "1"],
     "an embargo's collection pattern must be a pattern of 1 to 512 characters"),
    (["embargo", "add", "{repo}", "--dataset-types", "raw", "--hours", "inf"],
     "an embargo lasts a positive number of hours, not inf"),
    (["token", "create", "{repo}", "ana", "--expires", "infd"], "a token lasts a positive number of seconds, not inf"),
    (["embargo", "remove", "{repo}", "99"], "no embargo rule 99"),
    (["quota", "{repo}", "../ana"], "invalid user name '../ana'"),
    (["quota", "{repo}", "--group", "%", "--max-bytes", "5"], "invalid group name '%'"),
    (["whoami", "{repo}", "nobody"], "no user 'nobody'"),
    (["remove-from-group", "{repo}", "bob", "rights"], "user 'bob' is not in group 'rights'"),
]


@pytest.mark.parametrize(("command", "says"), HOSTILE, ids=lambda c: " ".join(c[:2]) if isinstance(c, list) else "")
def test_odd_names_are_refused_alike_on_the_path_and_through_the_server(served, command, says):
    """The same one-line error on the URL as on the path, and nothing written by either."""
    butler, url, tokens = served
    store = butler.registry.access
    before = (_audit(store), store.user_names(), store.rule_rows(), store.embargo_rows(), store.token_rows())
    errors = []
    for repo, token in ((url, tokens["boss"]), (butler.root, None)):
        code, out, err = cli_run(*[a.format(repo=repo) for a in command], token=token, ok=False)
        assert code == 1 and len(err.strip().splitlines()) == 1 and says in err, err
        errors.append(err)
    assert errors[0] == errors[1]
    assert (_audit(store), store.user_names(), store.rule_rows(), store.embargo_rows(), store.token_rows()) == before


def test_changing_an_administrators_groups_keeps_them_an_administrator(make_butler):
    """``add-user`` and ``token create`` without ``--admin``/``--no-admin`` leave an existing
    user's administrator flag as it was: adding a group to an administrator does not demote them."""
    butler = make_butler()
    repo = str(butler.root)
    store = butler.registry.access
    cli_run("add-user", repo, "chief", "--admin")
    assert store.user("chief") == (True, ())
    _, out, _ = cli_run("add-user", repo, "chief", "--group", "rights")
    assert store.user("chief") == (True, ("rights",)) and "chief (admin) in groups rights" in out
    cli_run("token", "create", repo, "chief", "--group", "team")
    assert store.user("chief") == (True, ("rights", "team"))
    cli_run("add-user", repo, "chief", "--no-admin")
    assert store.user("chief") == (False, ("rights", "team"))
    cli_run("add-user", repo, "newcomer")
    assert store.user("newcomer") == (False, ())
