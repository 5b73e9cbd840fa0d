"""Helpers shared by every CLI command: opening a repository, printing tables or
JSON, reporting errors, confirming destructive actions and parsing data IDs."""

from __future__ import annotations

import contextlib
import json
import logging
import sys
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import click

from .. import Butler
from ..dimensions import DimensionUniverse
from ..errors import UnknownDimensionError
from ..models import CollectionType, DatasetRef
from ..timespan import to_time
from .log_options import CLI_LOGGER

if TYPE_CHECKING:  # rich loads only when something is printed through it (``--json`` needs none)
    from rich.console import Console

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")

#: Collection type names as typed on the command line.
COLLECTION_TYPES = tuple(t.value.lower() for t in CollectionType)


# -- repositories -------------------------------------------------------------


class RepoLocation(click.ParamType):
    """A repository directory, or a server's URL (``http[s]://host:port/repo``, used with the
    token in ``SKYBUTLER_TOKEN``), kept as text."""

    name = "repo"
    _path = click.Path(file_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and value.startswith(("http://", "https://")):
            return value
        return self._path.convert(value, param, ctx)


repo_argument = click.argument("repo", type=RepoLocation())


def refuse_url(repo: str | Path, what: str, *, why: str | None = None) -> None:
    """Stop a command that works on the repository itself when it is given a server's URL, in one
    line: ``why`` it stays on the server's machine (serve, migrate, config-dump, config-validate),
    or, by default, that ``what`` is done there."""
    if str(repo).startswith(("http://", "https://")):
        fail(why or f"{what} is done on the server's machine, with the repository's path, not through a server URL")


@contextlib.contextmanager
def open_butler(repo: str | Path, *, local_only: str | None = None, **kwargs: Any) -> Iterator[Butler]:
    """Open the repository at ``repo`` for one command and close it afterwards; what the open
    settled from interrupted writes (files taken back out, moved files put back) is said on stderr.
    ``local_only`` names an administration a command does on the repository itself: a server
    URL is then refused, saying so (``refuse_url``)."""
    if local_only is not None:
        refuse_url(repo, local_only)
    butler = Butler(repo, **kwargs)
    for line in butler.recovered:
        from rich.markup import escape

        stderr_console().print(f"recovered an interrupted write: {escape(line)}", soft_wrap=True, highlight=False)
    try:
        yield butler
    finally:
        butler.close()


GLOB_CHARACTERS = frozenset("*?[")


def dataset_type_names(butler: Any, given: list[str]) -> list[str]:
    """The dataset types named on the command line, each glob (``'calexp*'``, as the Rubin butler
    takes them) replaced by the types it matches, each once; none given means every type.  A glob
    matching nothing is an error naming it; a plain name is kept as it is (the caller's query says
    if it is not registered)."""
    names: list[str] = []
    for item in given or ["*"]:
        if GLOB_CHARACTERS.isdisjoint(item):
            names.append(item)
            continue
        matched = sorted(d.name for d in butler.query_dataset_types(item))
        if not matched and given:
            fail(f"no dataset type matches {item!r}")
        names += matched
    return list(dict.fromkeys(names))


def expand_collections(butler: Butler, given: Sequence[str]) -> tuple[list[str], bool]:
    """Collections given on the command line, each glob (``u/ana/*``) replaced by the collections
    it matches in name order; none given means every RUN (each dataset is in exactly one).

    Returns the names and whether their order is the user's: false for none and for a glob that
    matched more than one collection, where a find-first search would have no order to follow.
    A glob that matches nothing is an error naming it."""
    if not given:
        return [c.name for c in butler.collections.query("*", ["run"])], False
    names: list[str] = []
    ordered = True
    for item in given:
        if GLOB_CHARACTERS.isdisjoint(item):
            names.append(item)
            continue
        matched = sorted(c.name for c in butler.collections.query(item))
        if not matched:
            fail(f"no collection matches {item!r}")
        ordered = ordered and len(matched) == 1
        names += matched
    return list(dict.fromkeys(names)), ordered


def refs_in_collection(butler: Butler, collection: str, dataset_type: str | None = None) -> list[DatasetRef]:
    """The datasets a RUN owns or a TAGGED/CALIBRATION collection holds (optionally of one type).

    Asked of the registry (``Registry.refs_in_collection``) until the facade offers a query for
    it; through a server, a query of every (or the one) dataset type in that collection.
    """
    if dataset_type is not None:
        butler.get_dataset_type(dataset_type)  # a clear error for an unknown name
    if butler.served_by is not None:
        butler.collections.info(collection)  # missing (or invisible): the same error as locally
        types = [dataset_type] if dataset_type is not None else [t.name for t in butler.query_dataset_types()]
        return [ref for name in types for ref in butler.query_datasets(name, collections=[collection],
                                                                       find_first=False)]
    return butler.registry.refs_in_collection(collection, dataset_type)


# -- output -------------------------------------------------------------------


#: The width of output that is not a terminal: wide enough that no table is ever wrapped.
PIPE_WIDTH = 1_000_000


def stdout_console() -> Console:
    """A console on the current stdout (looked up at call time, so test runners can capture it).

    On a terminal, rich fits tables to its width; in a pipe or a file, tables come out at
    their full width, so a UUID or a long collection name stays whole on one line for
    ``grep`` and ``cut`` (``--json`` and ``--csv`` are the shapes meant for programs).
    Emoji codes are left as typed: a collection named ``u/ana/:cat:`` prints as such (and the
    console does not load rich's table of emoji names).
    """
    from rich.console import Console

    if sys.stdout.isatty():
        return Console(file=sys.stdout, highlight=False, emoji=False)
    return Console(file=sys.stdout, highlight=False, emoji=False, width=PIPE_WIDTH)


def stderr_console() -> Console:
    from rich.console import Console

    return Console(file=sys.stderr, highlight=False, emoji=False)


def json_option(func: F) -> F:
    """The ``--json`` flag of every listing command."""
    return click.option("--json", "as_json", is_flag=True,
                        help="Print a JSON list of objects (only JSON on stdout) instead of a table.")(func)


def to_jsonable(value: Any) -> Any:
    """A value as plain JSON types (tuples become lists, enums their lower-case value)."""
    if isinstance(value, CollectionType):
        return value.value.lower()
    if isinstance(value, Mapping):
        return {str(k): to_jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [to_jsonable(v) for v in value]
    if value is None or isinstance(value, (str, int, float, bool)):
        return value
    return str(value)


def print_json(value: Any) -> None:
    click.echo(json.dumps(to_jsonable(value), indent=2))


def _cell(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, CollectionType):
        return value.value.lower()
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple)):
        return ", ".join(_cell(v) for v in value)
    return str(value)


def print_rows(rows: Sequence[Mapping[str, Any]], *, as_json: bool, columns: Sequence[str] | None = None,
               title: str | None = None, empty: str = "nothing found") -> None:
    """Print rows as a rich table, or as a JSON list of objects with ``as_json``.

    ``columns`` fixes the table's columns and their order; by default they are the
    union of the rows' keys in first-seen order.
    """
    if as_json:
        print_json([dict(r) for r in rows])
        return
    from rich.markup import escape
    from rich.table import Table

    if not rows:
        stdout_console().print(f"[dim]{escape(empty)}[/dim]")
        return
    if columns is None:
        columns = list(dict.fromkeys(k for r in rows for k in r))
    if title:
        info(title, style="bold")
    table = Table()
    for name in columns:
        table.add_column(name, overflow="fold")
    for row in rows:
        table.add_row(*(escape(_cell(row.get(name))) for name in columns))
    stdout_console().print(table)


def ref_rows(refs: Iterable[DatasetRef]) -> list[dict[str, Any]]:
    """One flat row per dataset: type, run, id and data-ID values."""
    return [ref.summary() for ref in refs]


def info(message: str, *, style: str | None = None, markup: bool = False) -> None:
    """A human-readable status line on stdout, never wrapped, in one ``style`` if given.

    The text is printed as it is: names, paths and refs often hold square brackets,
    which rich would take for markup.  ``markup=True`` is for messages whose values the
    caller escaped itself (``rich.markup.escape``).
    """
    stdout_console().print(message, soft_wrap=True, style=style, markup=markup, highlight=False)


#: ``ctx.meta`` key set by ``skybutler --progress/--no-progress``.
PROGRESS = "skybutler.progress"


@contextlib.contextmanager
def progress_bar(description: str, enabled: bool = True) -> Iterator[Callable[[int, int], None]]:
    """A rich progress bar on stderr (stdout stays clean for ``--json``); yields the
    ``progress(done, total)`` callback that moves it; in a pipe only its final state is printed,
    and nothing if the step fails.  Disabled (or ``skybutler --no-progress``): a callback that
    does nothing."""
    ctx = click.get_current_context(silent=True)
    if not enabled or (ctx is not None and ctx.meta.get(PROGRESS) is False):
        yield lambda done, total: None
        return
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("[bold]{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TextColumn("ETA"), TimeRemainingColumn(), console=stderr_console()) as bar:
        task = bar.add_task(description, total=None)
        try:
            yield lambda done, total: bar.update(task, completed=done, total=total)
        except BaseException:
            bar.live.transient = True  # a failed step leaves its error alone, not a stopped bar
            raise


def read_text(path: Path) -> str:
    """The text of a file given on the command line, which must be UTF-8; a file that is not
    (or cannot be read) is a one-line error naming it."""
    try:
        data = path.read_bytes()
    except OSError as err:
        fail(f"cannot read {path}: {err.strerror or err}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as err:
        line = data.count(b"\n", 0, err.start) + 1
        fail(f"{path} is not UTF-8 text: byte {data[err.start]:#04x} at line {line} (offset {err.start}); "
             "save it as UTF-8")


def report_error(message: str) -> None:
    """Print ``error: <message>`` in red on stderr."""
    from rich.markup import escape

    stderr_console().print(f"[red]error: {escape(message)}[/red]", soft_wrap=True)


def report_warning(message: str) -> None:
    """Print ``warning: <message>`` in yellow on stderr (the output itself goes on), and log it
    on ``skybutler.cli`` for a ``--log-file`` (the terminal has it already: see log_options)."""
    from rich.markup import escape

    stderr_console().print(f"[yellow]warning: {escape(message)}[/yellow]", soft_wrap=True)
    logging.getLogger(CLI_LOGGER).warning("%s", message)




def capped(refs: list[T], limit: int) -> list[T]:
    """The Rubin butler's ``--limit``: 0 keeps every dataset, N the first N, -N the first N with
    a warning when there were more."""
    if limit and len(refs) > abs(limit):
        if limit < 0:
            report_warning(f"more than {-limit} datasets match: taking the first {-limit} (--limit 0 takes them all)")
        refs = refs[:abs(limit)]
    return refs


def fail(message: str) -> NoReturn:
    """Report an error found by the CLI itself and exit with status 1."""
    report_error(message)
    raise click.exceptions.Exit(1)


def selection_order_option(func: F) -> F:
    """``--order-by`` of the commands that copy a selection of datasets (transfer, retrieve-artifacts):
    the order the datasets are taken in, with ``--limit``."""
    return click.option("--order-by", "order_by", multiple=True, metavar="COLUMN",
                        help="Take the datasets in this order (with --limit): result columns, comma-separated or "
                             "repeated; a leading '-' sorts descending.")(func)


def confirm_option(func: F) -> F:
    """``--yes/--confirm`` (``-y``, ``--no-confirm``) of the commands that ask before deleting, as
    the Rubin butler spells it; its value goes to :func:`confirm_or_refuse`."""
    return click.option("--yes/--confirm", "-y", "--no-confirm", default=False,
                        help="Do not ask for confirmation (--confirm, the default, asks, as the Rubin butler's).")(func)


def confirm_or_refuse(question: str, yes: bool) -> None:
    """Go on if ``yes``; otherwise ask on a terminal, and refuse when nobody can answer."""
    if yes:
        return
    if not sys.stdin.isatty():
        fail("not an interactive terminal: nothing was changed; pass --yes (--no-confirm) to confirm")
    if not click.confirm(question, default=False):
        fail("cancelled: nothing was changed")


# -- parsing ------------------------------------------------------------------


class DataIdTextError(ValueError):
    """A data-ID value typed as text does not fit its dimension."""


def coerce_value(universe: DimensionUniverse, key: str, text: str) -> int | str:
    """A data-ID value typed as text, as an int where the dimension's key is an int.

    Names that are not dimensions are left as text for the API to reject with its
    own message; :class:`DataIdTextError` if an int key gets something else.
    """
    try:
        element = universe[key]
    except UnknownDimensionError:
        return text
    if element.key is not None and element.key.type == "int":
        try:
            return int(text)
        except ValueError:
            raise DataIdTextError(f"{key} must be an integer, got {text!r}") from None
    return text


def parse_data_id(universe: DimensionUniverse, pairs: Iterable[str]) -> dict[str, int | str]:
    """``KEY=VALUE`` arguments as a data ID, typed by the universe."""
    data_id: dict[str, int | str] = {}
    for key, text in split_pairs(pairs, "KEY=VALUE", "KEY=VALUE"):
        try:
            data_id[key] = coerce_value(universe, key, text.strip())
        except DataIdTextError as err:
            raise click.BadParameter(str(err), param_hint="KEY=VALUE") from None
    return data_id


def split_pairs(pairs: Iterable[str], form: str, hint: str) -> list[tuple[str, str]]:
    """``NAME=VALUE`` texts as (name, value text) pairs; a malformed or repeated name is a usage
    error (``form`` names the expected shape, ``hint`` the option)."""
    out: dict[str, str] = {}
    for pair in pairs:
        name, sep, text = pair.partition("=")
        name = name.strip()
        if not sep or not name:
            raise click.BadParameter(f"{pair!r} is not {form}", param_hint=hint)
        if name in out:
            raise click.BadParameter(f"{name} is given twice", param_hint=hint)
        out[name] = text
    return list(out.items())


class TimeParam(click.ParamType):
    """A time given as an ISO string (TAI), checked by astropy."""

    name = "time"

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        try:
            return to_time(value)
        except ValueError as err:
            self.fail(f"{value!r} is not an ISO time ({err})", param, ctx)


def jobs_option(what: str) -> Callable[[F], F]:
    """``-j/--processes`` (``--jobs`` too): how many parallel workers, the same option with the same
    default in every command: one per CPU (:func:`resolve_jobs`)."""
    return click.option("-j", "--processes", "--jobs", "jobs", type=click.IntRange(min=1), default=None,
                        help=f"{what} (default: one per CPU).")


def resolve_jobs(jobs: int | None) -> int:
    """The workers ``-j`` asks for, one per CPU when not given."""
    import os

    return jobs if jobs is not None else (os.cpu_count() or 1)


def split_csv_option(values: Iterable[str]) -> list[str]:
    """Values of a repeatable option where each may also be comma-separated."""
    return [part.strip() for value in values for part in value.split(",") if part.strip()]
