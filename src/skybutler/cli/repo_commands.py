"""Repository commands: create, config-dump, config-validate, insert-records."""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit, urlunsplit

import click
import yaml

from .. import Butler
from ..butler import _load_universe as load_universe
from ..config import RepoConfig
from ..datastore.templates import DEFAULT_TEMPLATE
from ..timespan import Timespan
from .helpers import fail, info, open_butler, print_json, read_text, refuse_url, repo_argument, report_error


@click.command()
@repo_argument
@click.option("--registry", metavar="URL", help="Registry database URL (default: SQLite file in REPO). "
              "Never put a password here: use PGPASSWORD, ~/.pgpass or SKYBUTLER_DB_PASSWORD.")
@click.option("--datastore", metavar="URI", help="Datastore root (default: REPO/datastore), e.g. s3://bucket/path.")
@click.option("--checksum", type=click.Choice(["xxh3", "blake2b", "none"]), default="xxh3", show_default=True,
              help="Checksum recorded for every stored file.")
@click.option("--verify-checksums", is_flag=True, help="Have every get check its file against the recorded "
              "checksum by default (butler.yaml: verify_checksums: true).")
@click.option("--existing-ok", is_flag=True, help="Create the repository in a directory that already holds other "
              "files; skybutler never touches them.")
def create(repo: Path, registry: str | None, datastore: str | None, checksum: str, verify_checksums: bool,
           existing_ok: bool) -> None:
    """Create a new, empty repository at REPO (a new or empty directory unless --existing-ok)."""
    with Butler.create(repo, registry=registry, datastore=datastore, existing_ok=existing_ok,
                       checksum=None if checksum == "none" else checksum,
                       verify_checksums=verify_checksums) as butler:
        info(f"created repository at {butler.root}")


def strip_password(url: str) -> str:
    """A database URL without any password in it."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{user}@{host}" if user else host))


def resolved_config(root: Path) -> dict[str, Any]:
    """The repository's settings with defaults filled in, as ``butler.yaml`` keys: saved as a
    ``butler.yaml`` it opens the same repository.  The registry URL is shown as configured
    (``${VAR}`` references unexpanded, never a password)."""
    root = root.absolute()
    config = RepoConfig.load(root)
    resolved = {
        "registry": strip_password(config.registry or config.registry_url(root)),
        "datastore": config.datastore_uri(root),
        "templates": {"default": DEFAULT_TEMPLATE, **config.templates},
        **{k: v for k, v in config.to_dict().items() if k in ("checksum", "verify_checksums", "universe", "retention")},
    }
    return RepoConfig.checked(**resolved).to_dict()  # the same keys, checked to load back


@click.command("config-dump")
@repo_argument
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
def config_dump(repo: Path, as_json: bool) -> None:
    """Print REPO's butler.yaml resolved with defaults (registry URL without password).

    The output is itself a valid butler.yaml; the YAML form starts with comments naming
    the repository and its dimension universe."""
    refuse_url(repo, "config-dump", why="config-dump prints butler.yaml, which names the server's own database and "
               "storage, so it runs on the server's machine with the repository's path")
    config = resolved_config(repo)
    if as_json:
        print_json(config)
        return
    universe = load_universe(config["universe"])
    click.echo(f"# skybutler repository {Path(repo).absolute()}\n"
               f"# dimension universe {universe.name!r} version {universe.version} (from {config['universe']!r})")
    click.echo(yaml.safe_dump(config, sort_keys=False).rstrip())


def load_records(path: Path) -> list[dict[str, Any]]:
    """A YAML or JSON file holding a list of record mappings."""
    try:
        data = yaml.safe_load(read_text(path))
    except yaml.YAMLError as err:
        fail(f"{path} is not valid YAML or JSON: {err}")
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(r, dict) for r in data):
        fail(f"{path} must hold a list of records (mappings of field to value)")
    for number, record in enumerate(data, 1):
        span = record.get("timespan")
        if isinstance(span, dict):
            span = (span.get("begin"), span.get("end"))
        if isinstance(span, (list, tuple)) and len(span) == 2:
            try:
                record["timespan"] = Timespan(*span)
            except ValueError as err:
                fail(f"record {number} of {path}: bad timespan {list(span)}: {err}")
    return data


@click.command("insert-records")
@repo_argument
@click.argument("element")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--skip-existing", is_flag=True, help="Skip records whose identity already exists.")
def insert_records(repo: Path, element: str, file: Path, skip_existing: bool) -> None:
    """Insert dimension records of ELEMENT from FILE (a YAML or JSON list of mappings).

    A timespan is given as [begin, end] or {begin: ..., end: ...} with ISO times
    (null for an unbounded side).
    """
    records = load_records(file)
    with open_butler(repo) as butler:
        count = butler.insert_records(element, records, skip_existing=skip_existing)
    info(f"inserted {count} new {element} record(s)")


@click.command("config-validate")
@repo_argument
def config_validate(repo: Path) -> None:
    """Check REPO's configuration: butler.yaml, and each dataset type's storage class and path template."""
    refuse_url(repo, "config-validate", why="config-validate checks butler.yaml against the server's own database and "
               "storage, so it runs on the server's machine with the repository's path")
    with open_butler(repo) as butler:
        problems = butler.validate_config()
        count = len(butler.query_dataset_types())
    if problems:
        for problem in problems:
            report_error(problem)
        fail(f"{len(problems)} problem(s) in the configuration of {repo}")
    info(f"the configuration of {repo} is valid ({count} dataset type(s) checked)")


COMMANDS = (create, config_dump, config_validate, insert_records)
