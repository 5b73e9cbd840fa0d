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
from .helpers import fail, info, open_butler, read_text, refuse_url, repo_argument, report_error, split_csv_option

#: The ``--seed-config`` keys, each a ``Butler.create`` argument (``registry``/``datastore`` also as
#: the Rubin butler's ``{db: URL}``/``{root: URI}``).
SEED_KEYS = ("registry", "datastore", "universe", "templates", "checksum", "verify_checksums")


def read_seed(path: Path) -> dict[str, Any]:
    """The ``Butler.create`` settings of a seed config: a butler.yaml-like YAML mapping."""
    try:
        seed = yaml.safe_load(read_text(path))
    except yaml.YAMLError as err:
        fail(f"--seed-config {path} is not YAML: {' '.join(str(err).split())}")
    if not isinstance(seed, dict):
        fail(f"--seed-config {path} must be a mapping of butler.yaml keys ({', '.join(SEED_KEYS)})")
    for key, inner in (("registry", "db"), ("datastore", "root")):
        if isinstance(seed.get(key), dict):  # the Rubin butler's spelling
            extra = sorted(set(seed[key]) - {inner})
            if extra:
                fail(f"--seed-config {path}: {key} takes only {inner} here, not {', '.join(map(str, extra))}")
            seed[key] = seed[key].get(inner)
    unknown = sorted(map(str, set(seed) - set(SEED_KEYS)))
    if unknown:
        fail(f"--seed-config {path}: skybutler has no setting {', '.join(unknown)} (it takes {', '.join(SEED_KEYS)})")
    return seed


@click.command()
@repo_argument
@click.option("--registry", metavar="URL", help="Registry database URL (default: SQLite file in REPO). "
              "Never put a password here: use PGPASSWORD, ~/.pgpass or SKYBUTLER_DB_PASSWORD.")
@click.option("--datastore", metavar="URI", help="Datastore root (default: REPO/datastore), e.g. s3://bucket/path.")
@click.option("--checksum", type=click.Choice(["xxh3", "blake2b", "none"]), default=None,
              help="Checksum recorded for every stored file (default: xxh3).")
@click.option("--verify-checksums", is_flag=True, default=None, help="Have every get check its file against the "
              "recorded checksum by default (butler.yaml: verify_checksums: true).")
@click.option("--existing-ok", is_flag=True, help="Create the repository in a directory that already holds other "
              "files; skybutler never touches them.")
@click.option("--seed-config", type=click.Path(dir_okay=False, path_type=Path), metavar="FILE",
              help=f"YAML file of butler.yaml settings to start from ({', '.join(SEED_KEYS)}; the options above "
                   "win), as the Rubin butler's --seed-config.")
def create(repo: Path, registry: str | None, datastore: str | None, checksum: str | None,
           verify_checksums: bool | None, existing_ok: bool, seed_config: Path | None) -> None:
    """Create a new, empty repository at REPO (a new or empty directory unless --existing-ok)."""
    given = {"registry": registry, "datastore": datastore, "verify_checksums": verify_checksums,
             "checksum": None if checksum is None else ("" if checksum == "none" else checksum)}
    settings = {**(read_seed(seed_config) if seed_config else {}), **{k: v for k, v in given.items() if v is not None}}
    settings["checksum"] = settings.get("checksum", "xxh3") or None  # "" and none: no checksum
    with Butler.create(repo, existing_ok=existing_ok, **settings) as butler:
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


def config_subset(config: dict[str, Any], subset: str) -> Any:
    """The value at ``subset`` in ``config``: keys joined by ``.``, or by the character a
    subset starts with (the Rubin butler's ``.datastore.root``, ``/templates/default``)."""
    delimiter = subset[0] if subset and not subset[0].isalnum() else "."
    value: Any = config
    for key in (k for k in subset.split(delimiter) if k):
        if not isinstance(value, dict) or key not in value:
            keys = ", ".join(map(str, value)) if isinstance(value, dict) else "none: it is a value"
            fail(f"--subset {subset}: no key {key!r} in the configuration (keys there: {keys})")
        value = value[key]
    return value


@click.command("config-dump")
@repo_argument
@click.option("--json", "as_json", is_flag=True, help="Print JSON instead of YAML.")
@click.option("--subset", metavar="KEY", help="Only this part: keys joined by '.' (or by the character KEY "
              "starts with, as the Rubin butler's '.templates.default').")
@click.option("--file", "out", type=click.File("w"), default="-", metavar="FILE",
              help="Write to FILE instead of stdout.")
def config_dump(repo: Path, as_json: bool, subset: str | None, out: Any) -> None:
    """Print REPO's butler.yaml resolved with defaults (registry URL without password).

    The output is itself a valid butler.yaml; the YAML form starts with comments naming
    the repository and its dimension universe."""
    refuse_url(repo, "config-dump", why="config-dump prints butler.yaml, which names the server's own database and "
               "storage, so it runs on the server's machine with the repository's path")
    config = resolved_config(repo)
    shown = config_subset(config, subset) if subset else config
    if as_json:
        import json

        click.echo(json.dumps(shown, indent=2), file=out)
        return
    if not subset:
        universe = load_universe(config["universe"])
        click.echo(f"# skybutler repository {Path(repo).absolute()}\n"
                   f"# dimension universe {universe.name!r} version {universe.version} (from {config['universe']!r})",
                   file=out)
    click.echo(yaml.safe_dump(shown, sort_keys=False).rstrip().removesuffix("\n..."), file=out)


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
@click.option("--quiet", "-q", is_flag=True, help="Do not report each problem, only how many (exit status 1).")
@click.option("--dataset-type", "dataset_types", multiple=True, metavar="GLOB",
              help="Check only these dataset types (globs, repeatable or comma-separated).")
@click.option("--ignore", multiple=True, metavar="GLOB",
              help="Leave these dataset types out (globs, repeatable or comma-separated).")
def config_validate(repo: Path, quiet: bool, dataset_types: tuple[str, ...], ignore: tuple[str, ...]) -> None:
    """Check REPO's configuration: butler.yaml, and each dataset type's storage class and path template."""
    import fnmatch

    refuse_url(repo, "config-validate", why="config-validate checks butler.yaml against the server's own database and "
               "storage, so it runs on the server's machine with the repository's path")
    with open_butler(repo) as butler:
        names = [d.name for d in butler.query_dataset_types()]
        for glob in split_csv_option(dataset_types):
            if not fnmatch.filter(names, glob):
                fail(f"--dataset-type {glob}: no dataset type matches it")
        wanted = split_csv_option(dataset_types) or ["*"]
        names = [n for n in names if any(fnmatch.fnmatchcase(n, g) for g in wanted)
                 and not any(fnmatch.fnmatchcase(n, g) for g in split_csv_option(ignore))]
        problems = butler.validate_config(names)
    if problems:
        for problem in [] if quiet else problems:
            report_error(problem)
        fail(f"{len(problems)} problem(s) in the configuration of {repo}")
    info(f"the configuration of {repo} is valid ({len(names)} dataset type(s) checked)")


COMMANDS = (create, config_dump, config_validate, insert_records)
