"""Repository maintenance from the shell: export, import, transfer, verify, migrate."""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Iterator

import click

from ..butler import Butler
from ..config import RepoConfig
from ..datastore.copy_scratch import remove_abandoned
from ..datastore.transfer import TRANSFER_MODES
from ..interchange import export_rubin
from ..models import DatasetRef
from ..registry.migrations import migrate as migrate_registry
from ..repository_transfer import export_datasets, import_datasets, transfer_datasets
from ..verify import plan_repair, repair, verify
from .helpers import (
    RepoLocation,
    capped,
    confirm_or_refuse,
    dataset_type_names,
    expand_collections,
    info,
    json_option,
    open_butler,
    print_json,
    print_rows,
    progress_bar,
    refuse_url,
    repo_argument,
    report_warning,
    selection_order_option,
    split_csv_option,
)
from .rubin_refusals import RUBIN_TRANSFER_CHOICES

TRANSFERS = click.Choice(TRANSFER_MODES)


class _Refs:
    """The datasets an export or transfer names: every type's query is built (its where-clause
    checked) and counted before anything is written, then read batch by batch as the export
    takes them, so that memory does not grow with the number of datasets.

    ``find_first``, ``order`` and ``limit`` are the Rubin butler's (``limit`` 0: all, -N: at
    most N with a warning when there were more); a limited selection is read at once."""

    def __init__(self, butler: Butler, dataset_types: tuple[str, ...], collections: tuple[str, ...], where: str,
                 find_first: bool = False, order: tuple[str, ...] = (), limit: int = 0):
        types = dataset_type_names(butler, split_csv_option(dataset_types))
        cols, ordered = expand_collections(butler, split_csv_option(collections)) if collections else ([], False)
        if find_first and not ordered:
            raise click.BadParameter("needs --collections naming each collection, in the order to search them "
                                     "(a glob or none gives no order)", param_hint="--find-first")
        cols = cols or [c.name for c in butler.collections.query(types=["run", "tagged"])]
        self.queries: list[Iterable[DatasetRef]] = []
        for name in types:
            results = butler.query_datasets(name, where, collections=cols, find_first=find_first)
            if split_csv_option(order):
                results = results.order_by(*split_csv_option(order))
            if hasattr(results, "streaming"):  # a local query: rows read by a cursor, never whole
                results.streaming = True
            self.queries.append(results)
        if limit:
            self.queries = [capped(list(itertools.islice(itertools.chain.from_iterable(self.queries),
                                                         abs(limit) + 1)), limit)]
            self.total = len(self.queries[0])
        else:
            self.total = sum(results.count() for results in self.queries)

    def __len__(self) -> int:  # the progress bar's total
        return self.total

    def __iter__(self) -> Iterator[DatasetRef]:
        return itertools.chain.from_iterable(self.queries)


@click.command("export")
@repo_argument
@click.argument("directory")
@click.option("--dataset-type", "dataset_types", multiple=True, help="Types to export (default: all).")
@click.option("--collections", "-c", multiple=True, help="Collections to export from (default: all RUN/TAGGED).")
@click.option("--where", default="", help="A where-clause selecting the datasets.")
@click.option("--transfer", type=click.Choice(["copy", "symlink", "hardlink"]), default="copy")
@click.option("--format", "format_", type=click.Choice(["skybutler", "rubin"]), default="skybutler",
              show_default=True, help="rubin: an export.yaml (and files) the Rubin butler imports, or a Rubin "
              "zip when DIRECTORY ends in .zip.")
def export_command(repo: str, directory: str, dataset_types: tuple[str, ...], collections: tuple[str, ...],
                   where: str, transfer: str, format_: str) -> None:
    """Export datasets, their files and dimension records to DIRECTORY.

    From a server URL the files are downloaded (--transfer copy), only those you may see."""
    with open_butler(repo) as butler:
        refs = _Refs(butler, dataset_types, collections, where)
        if format_ == "rubin":
            n = export_rubin(butler, refs, directory, collections=split_csv_option(collections), transfer=transfer)
        else:
            left_out = [f"{c.name} ({c.type.name})" for name in split_csv_option(collections)
                        for c in butler.collections.query(name) if c.type.name != "RUN"]
            if left_out:
                report_warning(f"this format keeps each dataset's RUN only: {', '.join(left_out)} (memberships, "
                               "validity ranges, chains) are not exported; --format rubin writes them too, and "
                               "skybutler import reads it back")
            with progress_bar("exporting datasets") as progress:
                n = export_datasets(butler, refs, directory, transfer, progress=progress)
    info(f"exported {n} datasets to {directory}")


@click.command("import")
@repo_argument
@click.argument("path")
@click.option("--transfer", "-t", type=TRANSFERS, default="copy",
              help="How files come in (direct: used in place; a zip's files are always copied).")
@click.option("--export-file", metavar="FILE",
              help="The Rubin export file in directory PATH (default: export.yaml), as the Rubin butler's option.")
@click.option("--track-file-attrs", is_flag=True, expose_value=False,
              help="Accepted as the Rubin butler's: every file's size and checksum are recorded.")
def import_command(repo: str, path: str, transfer: str, export_file: str | None) -> None:
    """Import an export at PATH (dataset IDs preserved; existing ones skipped).

    PATH is a skybutler export directory, or a Rubin butler export: a directory
    holding export.yaml, the export.yaml itself, or a Rubin zip.  Into a server URL, either
    is uploaded in batches under the server's request-size limit, each imported in one
    transaction (your rights and quotas checked); running it again resumes a cut import.
    """
    if export_file:
        path = _export_file_in(path, export_file)
    with open_butler(repo) as butler, progress_bar("importing datasets") as progress:
        n = import_datasets(butler, path, transfer, progress=progress)
    info(f"imported {n} datasets from {path}")


def _export_file_in(directory: str, name: str) -> str:
    """The path of ``--export-file`` NAME: as given if absolute or present here, else in
    ``directory``, as the Rubin butler finds it; the datasets' files are found beside it, so it
    must be in ``directory``."""
    from pathlib import Path

    given = Path(name)
    found = given if given.is_absolute() or given.exists() else Path(directory) / name
    if found.absolute().parent != Path(directory).absolute():
        raise click.BadParameter(f"{name} is not in {directory}: skybutler finds the exported files beside the "
                                 "export file, so put it in the export directory", param_hint="--export-file")
    return str(found)


@click.command("transfer")
@click.argument("source", type=RepoLocation())
@click.argument("target", type=RepoLocation())
@click.option("--dataset-type", "dataset_types", multiple=True,
              help="Types or globs to copy (repeatable or comma-separated; default: all).")
@click.option("--collections", "-c", multiple=True, help="Collections to copy from (default: all RUN/TAGGED).")
@click.option("--where", default="", help="A where-clause selecting the datasets.")
@click.option("--find-first/--no-find-first", default=False,
              help="Only the first collection's dataset per data ID (--collections in order), or every match.")
@click.option("--limit", type=int, default=0, show_default=True,
              help="At most this many datasets; 0 means no limit, -N at most N with a warning when there were "
                   "more (the Rubin butler's default is -20000).")
@selection_order_option
@click.option("--transfer", "-t", type=click.Choice(RUBIN_TRANSFER_CHOICES, case_sensitive=False), default="auto",
              help="auto and copy copy the files (the other Rubin modes are refused by name).")
@click.option("--register-dataset-types", is_flag=True,
              help="Accepted as the Rubin butler's: TARGET always gets the dataset types it lacks.")
@click.option("--transfer-dimensions", is_flag=True,
              help="Accepted as the Rubin butler's: TARGET always gets the dimension records it lacks.")
@click.option("--dry-run/--no-dry-run", default=False, help="Only count the datasets TARGET would get.")
def transfer_command(source: str, target: str, dataset_types: tuple[str, ...], collections: tuple[str, ...],
                     where: str, find_first: bool, limit: int, order_by: tuple[str, ...], transfer: str,
                     register_dataset_types: bool, transfer_dimensions: bool, dry_run: bool) -> None:
    """Copy datasets from repository SOURCE to TARGET (any stacks), IDs preserved.

    Either may be a server URL (the files are then downloaded, or uploaded); each side's token is
    SKYBUTLER_SOURCE_TOKEN or SKYBUTLER_TARGET_TOKEN if set, else SKYBUTLER_TOKEN."""
    import os

    if transfer.lower() not in ("auto", "copy"):
        raise click.BadParameter(f"{transfer}: TARGET gets its own copy of each file (auto or copy), so that it "
                                 "never depends on SOURCE's files", param_hint="--transfer")
    with open_butler(source, token=os.environ.get("SKYBUTLER_SOURCE_TOKEN")) as src, \
            open_butler(target, token=os.environ.get("SKYBUTLER_TARGET_TOKEN")) as dst:
        refs = _Refs(src, dataset_types, collections, where, find_first, order_by, limit)
        if dry_run:
            info(f"dry run: {_new_to(dst, list(refs))} dataset(s) would be transferred from {source} to {target} "
                 "(nothing changed)")
            return
        n = transfer_datasets(src, dst, refs)
    info(f"transferred {n} datasets from {source} to {target}")


def _new_to(target: Butler, refs: list[DatasetRef]) -> int:
    """How many of ``refs`` ``target`` lacks (by dataset ID)."""
    if target.served_by is not None:
        return sum(target.get_dataset(ref.id) is None for ref in refs)
    return len(refs) - len(target.registry.refs_by_id([ref.id for ref in refs]))


#: ``transfer`` under the Rubin butler's name for it.
transfer_datasets_command = click.Command("transfer-datasets", callback=transfer_command.callback,
                                          params=transfer_command.params, help=transfer_command.help)


@click.command("verify")
@click.argument("repo")
@click.option("--sizes", is_flag=True, help="Also compare file sizes with the recorded ones.")
@click.option("--checksums", is_flag=True, help="Also re-hash every file and compare it with its recorded "
              "checksum (reads every byte; shows a progress bar on stderr).")
@click.option("--fix", is_flag=True, help="Show a repair plan and, once confirmed, carry it out: delete skybutler's "
              "own abandoned staging files, move every other file no dataset explains into the quarantine.")
@click.option("--yes", is_flag=True, help="With --fix: do not ask for confirmation.")
@json_option
def verify_command(repo: str, sizes: bool, checksums: bool, fix: bool, yes: bool, as_json: bool) -> None:
    """Report registry rows without files and files without rows (and, with --checksums, files
    whose content changed); exit 1 while any remain.

    Nothing is ever deleted that skybutler cannot prove it wrote and abandoned: other files
    go to REPO/.skybutler/quarantine/<time>/ with a manifest of where each came from and why.
    """
    with open_butler(repo) as butler:
        if fix and butler.served_by is not None:
            repair(butler, [])  # an empty repair: the server refuses it (403) unless the user is an administrator
        with progress_bar("re-hashing", enabled=checksums) as progress:
            report = verify(butler, check_sizes=sizes, check_checksums=checksums, progress=progress)
        plan = plan_repair(report) if fix else []
        result = None
        if plan:
            if not as_json:
                _print_report(report)
                print_rows([{"action": a.action, "path": a.path, "reason": a.reason} for a in plan], as_json=False,
                           title="repair plan")
            confirm_or_refuse(f"carry out these {len(plan)} action(s)?", yes)
            result = repair(butler, plan)
            report = verify(butler, check_sizes=sizes, check_checksums=checksums)
    if as_json:
        print_json({**report.summary(), "removed": result.deleted if result else 0,
                    "quarantined": result.quarantined if result else 0,
                    "quarantine": result.quarantine if result else None})
    else:
        _print_report(report)
        if result is not None:
            info(f"deleted {result.deleted} abandoned staging file(s); quarantined {result.quarantined} file(s)"
                 + (f" in {result.quarantine} (see its manifest.jsonl)" if result.quarantine else ""))
    if not report.consistent:
        raise SystemExit(1)


def _print_report(report) -> None:
    rows = [{"problem": "row without file", "path": p} for p in report.missing_files]
    rows += [{"problem": "file without row", "path": p} for p in report.orphan_files]
    rows += [{"problem": "abandoned staging file", "path": p} for p in report.abandoned_files]
    rows += [{"problem": "file of a purged or cold dataset", "path": p} for p in report.retention_leftovers]
    rows += [{"problem": "size differs", "path": p} for p in report.size_mismatches]
    rows += [{"problem": "checksum differs", "path": p} for p in report.checksum_mismatches]
    rows += [{"problem": "damaged write journal (never replayed nor deleted: look at it, then delete it)",
              "path": p} for p in report.damaged_journals]
    if report.cold is not None:
        rows += [{"problem": "cold copy missing", "path": p} for p in report.cold.missing]
        rows += [{"problem": "cold copy differs", "path": p} for p in report.cold.mismatches]
        rows += [{"problem": "cold file without row" + (" (abandoned by skybutler)" if p in report.cold.leftovers
                                                        else ""), "path": p} for p in report.cold.orphans]
    if rows:
        print_rows(rows, as_json=False)
    info(f"{report.datasets} datasets, {report.files} files: {'consistent' if report.consistent else 'INCONSISTENT'}"
         + (f" ({len(report.in_flight)} file(s) of writers at work)" if report.in_flight else ""))


@click.command("clean-copy-out")
@click.argument("directory", type=click.Path(file_okay=False))
def clean_copy_out_command(directory: str) -> None:
    """Remove the scratch files killed copy outs (export, retrieve-artifacts) left in DIRECTORY.

    Exactly those their journals prove they made: a person's file is never touched, whatever its
    name, nor a copy out's still running.  The next copy out into DIRECTORY does the same by itself."""
    removed = remove_abandoned(directory)
    for path in removed:
        click.echo(f"removed {path}")
    info(f"removed {len(removed)} scratch file(s) or director(ies) of killed copy outs from {directory}")


@click.command("migrate")
@click.argument("repo")
def migrate_command(repo: str) -> None:
    """Upgrade an older repository's registry schema to this skybutler's version."""
    from pathlib import Path

    from ..butler import _load_universe

    refuse_url(repo, "migrate", why="migrate upgrades the registry's schema in place, so it runs on the server's "
               "machine with the repository's path (stop the server first)")
    root = Path(repo).absolute()
    config = RepoConfig.load(root)
    old, new = migrate_registry(config.registry_url(root), _load_universe(config.universe))
    info(f"schema version {old} -> {new}" if old != new else f"already at schema version {new}")


COMMANDS = (export_command, import_command, transfer_command, transfer_datasets_command, verify_command,
            clean_copy_out_command, migrate_command)
