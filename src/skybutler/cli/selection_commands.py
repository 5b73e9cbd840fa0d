"""Commands that select datasets with a query and act on them, in the Rubin butler's
spelling: associate, disassociate, prune-datasets, retrieve-artifacts.

Each takes the dataset types (``--dataset-type``, repeatable or comma-separated; the Rubin
butler's ``-d`` for it is refused by name, ``-d`` being ``--where`` in every skybutler command),
the collections to search (``--collections``/``-c``) and a where-clause (``--where``/``-w``),
finds the datasets with :meth:`skybutler.Butler.query_datasets`, and hands the refs to one
butler call.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .helpers import (
    capped,
    confirm_option,
    confirm_or_refuse,
    expand_collections,
    fail,
    info,
    json_option,
    open_butler,
    print_json,
    print_rows,
    ref_rows,
    repo_argument,
    selection_order_option,
    split_csv_option,
)
from .query_commands import dataset_type_groups
from .rubin_refusals import RUBIN_TRANSFER_CHOICES


def _selection_options(func: Any) -> Any:
    func = click.option("--where", "-w", default="", help="A where-clause selecting the datasets.")(func)
    func = click.option("--collections", "-c", multiple=True, required=True,
                        help="Collections to search, in order (repeatable or comma-separated).")(func)
    return click.option("--dataset-type", "dataset_types", multiple=True, required=True,
                        help="Dataset types or globs to select (repeatable or comma-separated).")(func)


def _select(butler: Any, dataset_types: tuple[str, ...], collections: tuple[str, ...], where: str,
            find_first: bool, every_match: str = "--find-all", limit: int = 0) -> list[Any]:
    """The datasets of the types (globs allowed) in the collections (globs allowed) matching ``where``; a
    find-first selection needs collections in an order, which a glob matching several lacks.
    ``limit`` is the Rubin butler's (see :func:`.helpers.capped`)."""
    search, ordered = expand_collections(butler, split_csv_option(collections))
    if find_first and not ordered:
        raise click.UsageError("a glob matching several collections gives no order to take the first match per "
                               f"data ID in: name the collections in order, or take every match ({every_match})")
    refs: list[Any] = []
    for group in dataset_type_groups(butler, split_csv_option(dataset_types)):  # globs, as the Rubin -d takes
        for dataset_type in group:
            found = butler.query_datasets(dataset_type, where, collections=search, find_first=find_first)
            refs.extend(found.limit(abs(limit) + 1) if limit else found)
    return capped(refs, limit)


@click.command("associate")
@repo_argument
@click.argument("collection")
@_selection_options
@click.option("--find-first/--no-find-first", default=False,
              help="Only the first collection's dataset per data ID, or (the default) every match.")
@click.option("--limit", type=int, default=0,
              help="At most this many datasets; 0 (the default) means no limit, -N at most N with a warning when "
                   "there were more.")
def associate(repo: Path, collection: str, dataset_types: tuple[str, ...], collections: tuple[str, ...], where: str,
              find_first: bool, limit: int) -> None:
    """Add the selected datasets to the TAGGED COLLECTION (created if missing)."""
    with open_butler(repo) as butler:
        refs = _select(butler, dataset_types, collections, where, find_first, every_match="without --find-first",
                       limit=limit)
        butler.collections.associate(collection, refs)
    info(f"associated {len(refs)} dataset(s) with {collection}")


@click.command("disassociate")
@repo_argument
@click.argument("tag")
@_selection_options
def disassociate(repo: Path, tag: str, dataset_types: tuple[str, ...], collections: tuple[str, ...],
                 where: str) -> None:
    """Remove the selected datasets from the TAGGED collection TAG (they stay in their RUNs)."""
    with open_butler(repo) as butler:
        refs = _select(butler, dataset_types, collections, where, find_first=False)
        butler.collections.disassociate(tag, refs)
    info(f"disassociated {len(refs)} dataset(s) from {tag}")


@click.command("prune-datasets")
@repo_argument
@click.argument("collections", nargs=-1)
@click.option("--datasets", "dataset_types", multiple=True, required=True,
              help="Dataset types or globs to prune (repeatable or comma-separated).")
@click.option("--where", "-w", default="", help="A where-clause selecting the datasets.")
@click.option("--find-all", is_flag=True, help="Every match in COLLECTIONS, not only the first per data ID.")
@click.option("--dry-run", is_flag=True, help="Only list what would be deleted.")
@confirm_option
@click.option("--purge", metavar="RUN",
              help="As the Rubin butler's: the collection to prune when no COLLECTIONS are given (pruning always "
                   "deletes the datasets with their files).")
@click.option("--quiet", is_flag=True, help="Print nothing and do not ask (as the Rubin butler's; not with --dry-run).")
@click.option("--unstore", is_flag=True, hidden=True)
@click.option("--disassociate", multiple=True, hidden=True)
def prune_datasets(repo: Path, collections: tuple[str, ...], dataset_types: tuple[str, ...], where: str,
                   find_all: bool, dry_run: bool, yes: bool, purge: str | None, quiet: bool, unstore: bool,
                   disassociate: tuple[str, ...]) -> None:
    """Delete the selected datasets of COLLECTIONS (or of --purge RUN), with their files (from every
    collection)."""
    if unstore:
        raise click.UsageError("--unstore is not taken: skybutler keeps no dataset without its file (pruning "
                               "deletes both, as the Rubin butler's --purge)")
    if disassociate:
        raise click.UsageError("--disassociate is not taken: use 'skybutler disassociate REPO TAG' (the datasets "
                               "stay in their RUNs)")
    if quiet and dry_run:
        raise click.UsageError("--quiet prints nothing, so it cannot go with --dry-run")
    collections = collections or ((purge,) if purge else ())
    if not collections:
        raise click.UsageError("Missing argument 'COLLECTIONS...' (or --purge RUN)")
    with open_butler(repo) as butler:
        refs = _select(butler, dataset_types, collections, where, find_first=not find_all)
        if not refs:
            if not quiet:
                info("no datasets match: nothing to prune")
            return
        if not quiet:
            print_rows(ref_rows(refs), as_json=False, title="datasets to delete, with their files")
        if dry_run:
            info(f"dry run: {len(refs)} dataset(s) would be deleted")
            return
        confirm_or_refuse(f"Delete these {len(refs)} dataset(s) and their files?", yes or quiet)
        removed = butler.remove(refs)
    if not quiet:
        info(f"deleted {removed} dataset(s) and their files")


@click.command("retrieve-artifacts")
@repo_argument
@click.argument("destination", type=click.Path(file_okay=False, path_type=Path))
@click.option("--dataset-type", "dataset_types", multiple=True,
              help="Dataset types or globs to retrieve (repeatable or comma-separated; default: every type).")
@click.option("--collections", "-c", multiple=True,
              help="Collections to search, in order (repeatable or comma-separated, globs allowed; default: every "
                   "RUN).")
@click.option("--where", "-w", default="", help="A where-clause selecting the datasets.")
@click.option("--find-first/--no-find-first", default=None,
              help="Only the first collection's dataset per data ID (the default with --collections), or every "
                   "match.")
@click.option("--find-all", is_flag=True, help="Every match in the collections (as --no-find-first).")
@click.option("--limit", type=int,
              help="At most this many datasets; 0 means no limit, -N at most N with a warning when there were more.")
@selection_order_option
@click.option("--transfer", "-t", type=click.Choice(RUBIN_TRANSFER_CHOICES, case_sensitive=False), default="auto",
              help="How the files get there: auto and copy copy them (the other Rubin modes are refused by name).")
@click.option("--preserve-path/--no-preserve-path", default=True,
              help="Files in directories by RUN and type (default), or side by side in DESTINATION.")
@click.option("--clobber/--no-clobber", default=False, help="Replace files already at the destination paths.")
@click.option("--zip/--no-zip", "as_zip", default=False,
              help="Write one zip into DESTINATION (files and an index; 'skybutler import' and the Rubin butler "
                   "read it).")
@click.option("--verbose", "-v", is_flag=True, help="Print the path of each file written.")
@json_option
def retrieve_artifacts(repo: Path, destination: Path, dataset_types: tuple[str, ...], collections: tuple[str, ...],
                       where: str, find_first: bool | None, find_all: bool, limit: int | None,
                       order_by: tuple[str, ...], transfer: str, preserve_path: bool, clobber: bool, as_zip: bool,
                       verbose: bool, as_json: bool) -> None:
    """Copy the files of the selected datasets into DESTINATION, as RUN/TYPE/TYPE_KEY=VALUE_....EXT,
    or into one zip (--zip).  The options are the Rubin butler's."""
    if transfer.lower() not in ("auto", "copy"):
        fail(f"--transfer {transfer}: retrieve-artifacts copies the files (auto or copy); the retrieved files "
             "must not depend on the repository's")
    with open_butler(repo) as butler:
        search, ordered = expand_collections(butler, split_csv_option(collections))
        if find_first and not ordered:
            raise click.BadParameter("needs --collections naming each collection, in the order to search them "
                                     "(a glob or none gives no order)", param_hint="--find-first")
        first = ordered and not find_all and find_first is not False
        types = [t for group in dataset_type_groups(butler, split_csv_option(dataset_types)) for t in group]
        order = split_csv_option(order_by)
        refs: list[Any] = []
        for dataset_type in types:
            found = butler.query_datasets(dataset_type, where, collections=search, find_first=first)
            if order:
                found = found.order_by(*order)
            refs.extend(found.limit(abs(limit) + 1) if limit else found)
        refs = capped(refs, limit or 0)
        if not refs:
            info("no datasets match: nothing retrieved")
            return
        written = butler.retrieve_artifacts(refs, destination, preserve_path=preserve_path, overwrite=clobber,
                                            zip=as_zip)
    if as_json:
        print_json([str(p) for p in written])
        return
    if verbose:
        for path in written:
            info(str(path))
    if as_zip:
        info(f"wrote {len(refs)} dataset(s) into the zip {written[0]}")
    else:
        info(f"copied {len(written)} file(s) into {destination}")


COMMANDS = (associate, disassociate, prune_datasets, retrieve_artifacts)
