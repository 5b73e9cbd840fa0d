"""Serving a repository: serve, and the administration of its users, tokens and rules
(``butler.access``: on the repository's path, or through a server by an administrator --
anyone there may see themselves, their own quota and their own tokens)."""

from __future__ import annotations

import time
from pathlib import Path

import click

from .helpers import RepoLocation, fail, info, open_butler, print_rows, refuse_url, repo_argument

_DURATION = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str | None) -> float | None:
    """``90s``, ``30m``, ``12h``, ``30d`` (or plain seconds) as seconds; None stays None."""
    if text is None:
        return None
    unit = text[-1:].lower()
    number = text[:-1] if unit in _DURATION else text
    try:
        value = float(number) * _DURATION.get(unit, 1)
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration like 90s, 30m, 12h or 30d") from None
    if value <= 0:
        raise click.BadParameter(f"{text!r}: a duration must be positive")
    return value


@click.command()
@click.argument("repos", nargs=-1, type=RepoLocation())
@click.option("--config", "config_file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
              help="A YAML file naming the repositories (name: directory) and the settings below; "
                   "options given here override it.")
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8080, show_default=True, type=click.IntRange(0, 65535), help="Port to listen on.")
@click.option("--workers", default=1, show_default=True, type=click.IntRange(1, 64),
              help="Server processes (each with its own butlers of each repository).")
@click.option("--max-request-mb", default=256, show_default=True, type=click.IntRange(1),
              help="Largest request body accepted (413 beyond).")
@click.option("--user-concurrency", default=4, show_default=True, type=click.IntRange(1),
              help="Queries one user may run at once; more wait in a queue.")
@click.option("--presign", default=0, show_default=True, type=click.IntRange(0),
              help="Hand out pre-signed URLs valid this many seconds for S3 datastores (0: stream downloads).")
@click.option("--trust-header", metavar="NAME", help="Take the user's name from this request header, set by an "
              "authenticating proxy in front of the server (which must strip it from clients' requests).")
@click.option("--query-timeout", default=600.0, show_default=True, type=click.FloatRange(min=0, min_open=True),
              help="Seconds a query may run on the server before it is stopped with an error.")
@click.option("--api-docs/--no-api-docs", default=None, help="Serve the interactive API page /docs to signed-in "
              "users (off by default: it loads Swagger UI's JavaScript from cdn.jsdelivr.net).")
@click.pass_context
def serve(ctx: click.Context, repos: tuple[Path, ...], config_file: Path | None, **options: object) -> None:
    """Serve REPOS (or a --config file's) over HTTP, each at http://HOST:PORT/<its name> (clients need a token).

    A repository given on the command line is named by its directory; a --config file names each
    of its own, and its settings apply unless an option here gives another."""
    from ..extras import require
    from ..server.config import ServeConfig

    for repo in repos:
        refuse_url(repo, "serve", why=f"serve opens repositories by their path on this machine; {repo} is a server "
                   "already")
        if not repo.is_dir():
            fail(f"no repository directory {repo}")
    uvicorn = require("uvicorn", "serving a repository (pip install skybutler[server])")
    given = {name: value for name, value in options.items()
             if ctx.get_parameter_source(name) is not click.core.ParameterSource.DEFAULT}
    if config_file is not None:
        config = ServeConfig.load(config_file)
        mounts = dict(config.repositories)
    else:
        config, mounts = None, {}
    for repo in repos:
        name = repo.absolute().name
        if name in mounts:
            fail(f"two repositories to serve have the name {name!r}")
        mounts[name] = str(repo.absolute())
    if not mounts:
        fail("name the repositories to serve, or give a --config file that does")
    base = {} if config is None else config.model_dump(exclude={"repositories"})
    values = {**{k: v for k, v in options.items() if v is not None}, **base, **given, "repositories": mounts}
    config = ServeConfig.checked(values, str(config_file or "serve"))
    config.to_env()
    info(f"serving {', '.join(f'http://{config.host}:{config.port}/{n}' for n in mounts)}")
    uvicorn.run("skybutler.server.main:app", host=config.host, port=config.port, workers=config.workers,
                log_level="warning", factory=True)


@click.group()
def token() -> None:
    """Create, list and revoke the bearer tokens of a served repository."""


@token.command("create")
@repo_argument
@click.argument("user")
@click.option("--expires", metavar="DURATION", help="Lifetime, e.g. 12h or 30d (default: until revoked).")
@click.option("--admin/--no-admin", default=None,
              help="Make USER an administrator of the repository, or no longer one (default: unchanged).")
@click.option("--group", "groups", multiple=True, metavar="NAME", help="Add USER to this group (repeatable).")
@click.option("--note", default="", help="What the token is for.")
def token_create(repo: Path, user: str, expires: str | None, admin: bool | None, groups: tuple[str, ...],
                 note: str) -> None:
    """Create a token for USER (made if missing) and print it: it is shown only once."""
    with open_butler(repo) as butler:
        click.echo(butler.access.create_token(user, admin=admin, groups=groups, expires_in=parse_duration(expires),
                                              note=note))


@token.command("list")
@repo_argument
@click.option("--user", help="Only this user's tokens.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def token_list(repo: Path, user: str | None, as_json: bool) -> None:
    """List tokens (never their secrets): id, user, created, expires, state; through a server, a
    user who is not an administrator sees their own."""
    with open_butler(repo) as butler:
        now = time.time_ns()
        rows = [{"id": t.token_id, "user": t.user, "created": _when(t.created_ns), "expires": _when(t.expires_ns),
                 "state": t.state(now), "note": t.note} for t in butler.access.tokens(user)]
        print_rows(rows, as_json=as_json, columns=["id", "user", "created", "expires", "state", "note"])


@token.command("revoke")
@repo_argument
@click.argument("token_ids", nargs=-1, required=True)
def token_revoke(repo: Path, token_ids: tuple[str, ...]) -> None:
    """Revoke tokens by id (as ``token list`` shows it) or by the token itself (through a server,
    one's own, or anyone's for an administrator): all of them, or none if one is unknown."""
    with open_butler(repo) as butler:
        butler.access.revoke_tokens(token_ids)
        info(f"revoked {len(token_ids)} token(s)")


@click.command()
@repo_argument
@click.argument("level", type=click.Choice(["read", "write", "admin", "none"]))
@click.argument("pattern")
@click.option("--user", help="Grant to this user.")
@click.option("--group", help="Grant to this group.")
@click.option("--everyone", is_flag=True, help="Grant to every authenticated user.")
def grant(repo: Path, level: str, pattern: str, user: str | None, group: str | None, everyone: bool) -> None:
    """Grant LEVEL (read, write, admin; none takes a grant away) on collections matching the glob
    PATTERN to a user, a group or everyone."""
    chosen = [x for x in (user and ("user", user), group and ("group", group), everyone and ("*", "*")) if x]
    if len(chosen) != 1:
        fail("give exactly one of --user, --group or --everyone")
    with open_butler(repo) as butler:
        butler.access.grant(chosen[0][0], chosen[0][1], pattern, None if level == "none" else level)
        info(f"{'revoked' if level == 'none' else 'granted ' + level} on {pattern!r}")


@click.command()
@repo_argument
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def rules(repo: Path, as_json: bool) -> None:
    """List the collection rules: who (user:NAME, group:NAME or * for everyone), on which
    pattern, at which level."""
    with open_butler(repo) as butler:
        rows = [{"who": r.principal, "pattern": r.pattern, "level": r.level} for r in butler.access.rules()]
    print_rows(rows, as_json=as_json, columns=["who", "pattern", "level"], empty="no rules")


@click.command("add-user")
@repo_argument
@click.argument("user")
@click.option("--admin/--no-admin", default=None,
              help="Make USER an administrator of the repository, or no longer one (default: unchanged).")
@click.option("--group", "groups", multiple=True, metavar="NAME", help="Add USER to this group (repeatable).")
def add_user(repo: Path, user: str, admin: bool | None, groups: tuple[str, ...]) -> None:
    """Add USER to a served repository (or change their groups and administrator flag)."""
    with open_butler(repo) as butler:
        butler.access.add_user(user, admin=admin, groups=groups)
        now = butler.access.whoami(user)
    info(f"user {user} {'(admin) ' if now.admin else ''}in groups {', '.join(now.groups) or 'none'}")


@click.command("remove-from-group")
@repo_argument
@click.argument("user")
@click.argument("group")
def remove_from_group(repo: Path, user: str, group: str) -> None:
    """Take USER out of GROUP (their other groups and administrator flag stay)."""
    with open_butler(repo) as butler:
        butler.access.remove_from_group(user, group)
        info(f"user {user} is no longer in group {group}")


@click.command()
@repo_argument
@click.argument("user", required=False)
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def whoami(repo: Path, user: str | None, as_json: bool) -> None:
    """Who you are in REPO (through a server, the owner of your token; on the path, the
    administrator), your groups, and the collection and embargo rules that apply; or USER's."""
    with open_butler(repo) as butler:
        found = butler.access.whoami(user)
    if as_json:
        from dataclasses import asdict

        from .helpers import print_json

        print_json(asdict(found))
        return
    rights = " (administrator: every right)" if found.admin else f"; owns u/{found.user}"
    info(f"{found.user}, groups: {', '.join(found.groups) or 'none'}{rights}")
    if found.rules:
        print_rows([{"who": r.principal, "pattern": r.pattern, "level": r.level} for r in found.rules],
                   as_json=False, columns=["who", "pattern", "level"])
    for e in found.embargoes:
        info(f"embargo {e.rule_id}: {e.dataset_types} in {e.collections} hidden for {e.hours:g} h after each "
             f"exposure (data rights: {', '.join(e.groups) or 'administrators'})")


@click.group()
def embargo() -> None:
    """Embargo rules: datasets hidden from all but the data-rights groups until some hours after
    their exposure ends."""


@embargo.command("add")
@repo_argument
@click.option("--dataset-types", required=True, metavar="PATTERN", help="Glob over dataset type names, e.g. raw.")
@click.option("--collections", default="*", show_default=True, metavar="PATTERN",
              help="Glob over the RUN collections holding the datasets.")
@click.option("--hours", required=True, type=click.FloatRange(min=0, min_open=True),
              help="How long after the exposure (or visit, or observing day) ends the datasets stay hidden.")
@click.option("--group", "groups", multiple=True, metavar="NAME", help="A group with data rights (repeatable).")
def embargo_add(repo: Path, dataset_types: str, collections: str, hours: float, groups: tuple[str, ...]) -> None:
    """Add an embargo rule."""
    with open_butler(repo) as butler:
        butler.access.add_embargo(dataset_types, collections, hours, groups)
        info(f"{dataset_types} in {collections}: hidden for {hours:g} h after each exposure except from "
             f"{', '.join(groups) or 'administrators'}")


@embargo.command("list")
@repo_argument
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def embargo_list(repo: Path, as_json: bool) -> None:
    """List embargo rules."""
    with open_butler(repo) as butler:
        rows = [{"id": e.rule_id, "dataset_types": e.dataset_types, "collections": e.collections, "hours": e.hours,
                 "groups": ",".join(e.groups)} for e in butler.access.embargoes()]
        print_rows(rows, as_json=as_json, columns=["id", "dataset_types", "collections", "hours", "groups"])


@embargo.command("remove")
@repo_argument
@click.argument("rule_id", type=int)
def embargo_remove(repo: Path, rule_id: int) -> None:
    """Remove embargo rule RULE_ID (its datasets become visible to their RUN's readers at once)."""
    with open_butler(repo) as butler:
        butler.access.remove_embargo(rule_id)
        info(f"removed embargo rule {rule_id}")


@click.command()
@repo_argument
@click.argument("user", required=False)
@click.option("--group", help="A group's area g/<group> instead of a user's.")
@click.option("--max-bytes", type=click.IntRange(0), help="Set the area's byte quota.")
@click.option("--max-datasets", type=click.IntRange(0), help="Set the area's dataset-count quota.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def quota(repo: Path, user: str | None, group: str | None, max_bytes: int | None, max_datasets: int | None,
          as_json: bool) -> None:
    """Report the datasets and bytes in users' areas u/<user> (or a group's g/<group>) against their
    quotas; with --max-bytes/--max-datasets, set the quota of USER (or --group) first.  Through a
    server, a user who is not an administrator sees their own area (and their groups')."""
    if user and group:
        fail("give a USER or a --group, not both")
    with open_butler(repo) as butler:
        kind, name = ("group", group) if group else ("user", user)
        if max_bytes is not None or max_datasets is not None:
            if name is None:
                fail("setting a quota needs a USER or a --group")
            butler.access.set_quota(kind, name, max_bytes=max_bytes, max_datasets=max_datasets)
        rows = butler.access.usage(kind, name)
        print_rows(rows, as_json=as_json, columns=[kind, "datasets", "max_datasets", "bytes", "max_bytes"])


@click.command()
@repo_argument
@click.option("--limit", default=50, show_default=True, type=click.IntRange(1, 100_000), help="How many entries.")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def audit(repo: Path, limit: int, as_json: bool) -> None:
    """The latest entries of the access audit log: grants, tokens, users, embargoes and their releases, quotas."""
    with open_butler(repo) as butler:
        rows = [{"time": _when(e.time_ns), "actor": e.actor, "action": e.action, "detail": e.detail}
                for e in butler.access.audit(limit)]
        print_rows(rows, as_json=as_json, columns=["time", "actor", "action", "detail"])


def _when(ns: int | None) -> str:
    if ns is None:
        return "-"
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ns / 1e9))


COMMANDS = (serve, token, grant, rules, add_user, remove_from_group, whoami, embargo, quota, audit)
