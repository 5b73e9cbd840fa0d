"""Fault injection and hostile input on the changes to a served repository's access state: users
and groups, tokens, collection rules, embargo rules and quotas.

Each change is one registry transaction.  A command is killed with SIGKILL after each of its
registry commits in turn (``sql-committed:n``, :mod:`skybutler.faults`) until it runs to its end:
killed anywhere, the access state it leaves is the state before it or the one the same command
makes uninterrupted in a twin repository (the oracle), never a part of it, and the repository
opens and verifies clean.  Refused input (an unknown token, a malformed quota, an unknown rule,
a caller without the right) gets one precise line and leaves the access state as it was.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from conftest import POSTGRES_URL, populate, stack_locations
from skybutler import Butler
from skybutler.access import Access
from skybutler.cli.main import cli
from test_faults import assert_recovered, cli_main, run_killed

pytestmark = pytest.mark.slow


def access_state(root: Path) -> tuple:
    """The access state as the administration reads it (token ids and secrets left out: a new
    token's are random)."""
    with Butler(root) as butler:
        store = butler.registry.access
        users = [(name, *store.user(name)) for name in store.user_names()]
        tokens = sorted((t.user, t.note, t.revoked_ns is not None, t.expires_ns is not None) for t in store.token_rows())
        groups = sorted({g for _, _, gs in users for g in gs} | {"team", "rights"})
        quotas = {p: store.quota(p) for p in [f"user:{u}" for u, *_ in users] + [f"group:{g}" for g in groups]}
        embargoes = [(e.rule_id, e.dataset_types, e.collections, e.hours, e.groups) for e in store.embargo_rows()]
        audit = [(actor, action) for _, actor, action, _ in store.audit_rows(1000)]
        return users, tokens, store.rule_rows(), embargoes, quotas, audit


def _seed(butler: Butler) -> list[str]:
    """boss (an administrator), ana in team with two tokens, a rule, an embargo and a quota; ana's token ids."""
    access = Access(butler.registry.access)
    access.add_user("boss", admin=True)
    access.add_user("ana", groups=["team"])
    tokens = [access.create_token("ana", note=f"laptop {n}") for n in range(2)]
    access.grant("group", "team", "team/*", "write")
    access.add_embargo("raw", "*", 80.0, ["rights"])
    access.set_quota("user", "ana", max_bytes=10_000)
    return [t.split(".")[0].removeprefix("sbt_") for t in tokens]


@pytest.fixture(scope="module")
def seeded(tmp_path_factory) -> tuple[Path, list[str]]:
    root = tmp_path_factory.mktemp("access") / "repo"
    with Butler.create(root) as butler:
        populate(butler)
        ids = _seed(butler)
    return root, ids


def _fresh(stack: str, seeded: tuple[Path, list[str]], where: Path) -> tuple[Path, list[str]]:
    template, ids = seeded
    if stack == "sqlite":
        return Path(shutil.copytree(template, where)), ids
    with Butler.create(where, **stack_locations(stack, where.parent)) as butler:
        populate(butler)
        return where, _seed(butler)


#: The changes, as the command's arguments after its REPO ({ids[n]}: ana's n-th token id).
CHANGES = {
    "token-create-new-user": ["token", "create", "{repo}", "carol", "--note", "for the pipeline"],
    "token-create-admin-groups": ["token", "create", "{repo}", "dan", "--admin", "--group", "rights",
                                  "--group", "team", "--expires", "30d"],
    "token-revoke-two": ["token", "revoke", "{repo}", "{ids[0]}", "{ids[1]}"],
    "add-user": ["add-user", "{repo}", "eve", "--group", "rights", "--group", "team"],
    "remove-from-group": ["remove-from-group", "{repo}", "ana", "team"],
    "grant": ["grant", "{repo}", "read", "public/*", "--everyone"],
    "grant-none": ["grant", "{repo}", "none", "team/*", "--group", "team"],
    "embargo-add": ["embargo", "add", "{repo}", "--dataset-types", "calexp", "--hours", "2", "--group", "rights"],
    "embargo-remove": ["embargo", "remove", "{repo}", "1"],
    "quota": ["quota", "{repo}", "ana", "--max-bytes", "5000", "--max-datasets", "7"],
    "quota-group": ["quota", "{repo}", "--group", "team", "--max-datasets", "9"],
}

CASES = [pytest.param("sqlite", name, id=f"sqlite-{name}") for name in CHANGES]
if POSTGRES_URL:
    CASES += [pytest.param("postgres", name, id=f"postgres-{name}")
              for name in ("token-create-admin-groups", "token-revoke-two", "quota")]


def _args(name: str, root: Path, ids: list[str]) -> list[str]:
    return [a.format(repo=root, ids=ids) for a in CHANGES[name]]


def _invoke(args: list[str]) -> None:
    result = CliRunner().invoke(cli, args)
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("stack, name", CASES)
def test_an_access_change_killed_after_any_commit_is_all_or_nothing(seeded, tmp_path, stack, name):
    twin, twin_ids = _fresh(stack, seeded, tmp_path / "twin")
    before = access_state(twin)
    _invoke(_args(name, twin, twin_ids))
    expected = access_state(twin)
    assert expected != before
    for n in range(1, 10):
        repo, ids = _fresh(stack, seeded, tmp_path / f"repo{n}")
        killed = run_killed(cli_main(*_args(name, repo, ids)), f"sql-committed:{n}")
        assert_recovered(repo, {})
        state = access_state(repo)
        assert state in (before, expected), f"{name} killed after its commit {n} was kept in part"
        if not killed:
            assert state == expected
            break
        if state == before:  # killed before its change committed: the command again completes
            _invoke(_args(name, repo, ids))
            assert access_state(repo) == expected
    else:
        pytest.fail(f"{name} commits more than 9 times")


# -- hostile input -------------------------------------------------------------------------------


REFUSED = [
    (["token", "revoke", "{repo}", "{ids[0]}", "00112233445566ff"], 1, "no token '00112233445566ff'"),
    (["token", "revoke", "{repo}", "{ids[0]}", "../../etc/passwd"], 1, "no token '../../etc/passwd'"),
    (["token", "create", "{repo}", "new/user"], 1, "invalid user name 'new/user'"),
    (["token", "create", "{repo}", "newuser", "--group", "bad group"], 1, "invalid group name 'bad group'"),
    (["token", "create", "{repo}", "newuser", "--expires", "soon"], 2, "'soon' is not a duration"),
    (["token", "create", "{repo}", "newuser", "--note", "a\x07bell"], 1, "a token's note is at most 1000 printable"),
    (["quota", "{repo}", "ana", "--max-bytes", "-1"], 2, "-1 is not in the range x>=0"),
    (["quota", "{repo}", "ana", "--max-datasets", "many"], 2, "'many' is not a valid integer"),
    (["quota", "{repo}", "ana", "--max-bytes", str(2**64)], 1, f"a quota is a number of bytes or datasets, not {2**64}"),
    (["quota", "{repo}", "--max-bytes", "5"], 1, "setting a quota needs a USER or a --group"),
    (["quota", "{repo}", "ana", "--group", "team", "--max-bytes", "5"], 1, "give a USER or a --group, not both"),
    (["quota", "{repo}", "--group", "te am", "--max-bytes", "5"], 1, "invalid group name 'te am'"),
    (["embargo", "remove", "{repo}", "99"], 1, "no embargo rule 99"),
    (["embargo", "add", "{repo}", "--dataset-types", "raw", "--hours", "0"], 2, "0.0 is not in the range x>0"),
    (["remove-from-group", "{repo}", "ana", "rights"], 1, "user 'ana' is not in group 'rights'"),
    (["grant", "{repo}", "write", "team/*", "--user", "ana", "--everyone"], 1,
     "give exactly one of --user, --group or --everyone"),
]


@pytest.mark.parametrize("args, code, says", REFUSED, ids=[" ".join(a[:2]) + f"-{n}" for n, (a, _, _) in
                                                           enumerate(REFUSED)])
def test_refused_access_input_changes_nothing(seeded, tmp_path, args, code, says):
    repo, ids = _fresh("sqlite", seeded, tmp_path / "repo")
    before = access_state(repo)
    result = CliRunner().invoke(cli, [a.format(repo=repo, ids=ids) for a in args])
    assert result.exit_code == code and says in result.stderr, result.output
    assert access_state(repo) == before


def test_refused_through_a_server_changes_nothing(seeded, tmp_path):
    """An unknown bearer token, and a user who is no administrator, are refused with one line,
    and the access state is as it was; a user revoking their own token and another's in one
    command revokes neither."""
    from server_helpers import running_server

    repo, ids = _fresh("sqlite", seeded, tmp_path / "repo")
    with Butler(repo) as butler:
        access = Access(butler.registry.access)
        ana, bob = access.create_token("ana"), access.create_token("bob")
    before = access_state(repo)
    with running_server(repo) as url:
        cases = [(["token", "create", url, "mallory", "--admin"], "sbt_0011223344556677.forged",
                  "error: a valid bearer token is required (missing, invalid, expired or revoked)"),
                 (["token", "create", url, "mallory", "--admin"], ana, "error: only a repository administrator may"),
                 (["quota", url, "ana", "--max-bytes", "1"], ana, "error: only a repository administrator may"),
                 (["grant", url, "admin", "*", "--user", "ana"], ana, "error: only a repository administrator may"),
                 (["embargo", "remove", url, "1"], bob, "error: only a repository administrator may"),
                 (["token", "revoke", url, ana.split(".")[0].removeprefix("sbt_"),
                   bob.split(".")[0].removeprefix("sbt_")], ana, "error: no token")]
        for args, token, says in cases:
            result = CliRunner().invoke(cli, args, env={"SKYBUTLER_TOKEN": token})
            assert result.exit_code == 1 and result.stderr.startswith(says), (args, result.output)
            assert len(result.stderr.strip().splitlines()) == 1, result.stderr
            assert access_state(repo) == before, args
        refused = httpx.post(f"{url}/api/v1/access/tokens/revoke", json={"token_ids": []},
                             headers={"Authorization": f"Bearer {ana}"})
        assert refused.status_code >= 400 and "name the tokens to revoke" in refused.text
    assert access_state(repo) == before
