"""Dataset commands: ingest-files, put, get, extract-metadata."""

from __future__ import annotations

import csv
import io
import json
import uuid
from pathlib import Path
from typing import Any

import click

from ..datastore.transfer import TRANSFER_MODES
from ..dimensions import DimensionUniverse
from ..models import REPRODUCIBLE_ID_MODES
from .helpers import (
    DataIdTextError,
    coerce_value,
    fail,
    info,
    json_option,
    open_butler,
    parse_data_id,
    print_json,
    print_rows,
    read_text,
    ref_rows,
    repo_argument,
    split_csv_option,
    stderr_console,
)

data_id_argument = click.argument("data_id", nargs=-1, metavar="KEY=VALUE...")

#: What --id-mode takes: random IDs, or one of the rules that make them from what they identify.
ID_MODES = ["random", *REPRODUCIBLE_ID_MODES]


def read_file_table(path: Path, universe: DimensionUniverse,
                    prefix: Path) -> tuple[list[tuple[Path, dict[str, Any]]], list[uuid.UUID] | None]:
    """The (file, data ID) pairs of an ingest table: a CSV with a ``file`` column (or, as the
    Rubin command reads its tables, a first column of another name that is not a data-ID key),
    one column per data-ID key and optionally an ``id`` column of dataset IDs to keep; relative
    file paths are taken from ``prefix``.  Returns the pairs and the IDs (None without the column)."""
    with io.StringIO(read_text(path), newline="") as stream:
        reader = csv.DictReader(stream)
        columns = [c.strip() for c in reader.fieldnames or []]
        file_column = "file" if "file" in columns else (
            columns[0] if columns and columns[0] != "id" and columns[0] not in universe.elements else None)
        if file_column is None:
            fail(f"{path} has no 'file' column (columns: {', '.join(columns) or 'none'}); name the column of "
                 "files 'file', or put it first")
        entries = []
        ids: list[uuid.UUID] | None = [] if "id" in columns else None
        for line, row in enumerate(reader, start=2):
            row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
            empty = [k for k, v in row.items() if not v]
            if empty:
                fail(f"{path} line {line}: empty value for {', '.join(empty)}")
            file = Path(row.pop(file_column))
            if ids is not None:
                try:
                    ids.append(uuid.UUID(row.pop("id")))
                except ValueError:
                    fail(f"{path} line {line}: the id column does not hold a dataset ID (a UUID)")
            try:
                data_id = {key: coerce_value(universe, key, text) for key, text in row.items()}
            except DataIdTextError as err:
                fail(f"{path} line {line}: {err}")
            entries.append((file if file.is_absolute() else prefix / file, data_id))
    if not entries:
        fail(f"{path} lists no files")
    return entries, ids


@click.command("ingest-files")
@repo_argument
@click.argument("dataset_type")
@click.argument("arguments", nargs=-1, metavar="TABLE_FILE")
@click.option("--run", "run_option", metavar="RUN", help="RUN collection to ingest into (created if missing).")
@click.option("--transfer", "-t", type=click.Choice(TRANSFER_MODES), default="auto", show_default=True,
              help="How files enter the datastore (auto: direct if already inside it, else copy; link: a hard "
                   "link, or a symbolic one across devices; relsymlink: a relative symbolic link).")
@click.option("--formatter", metavar="NAME", help="Formatter that reads the files (default: the storage class's).")
@click.option("--id-mode", type=click.Choice(ID_MODES), default="random", show_default=True,
              help="Dataset IDs: random, or derived from dataset type and data ID (same in every repository): "
                   "skybutler's rule (deterministic), or the Rubin butler's (dataid_type, dataid_type_run: with "
                   "the RUN too).")
@click.option("--id-generation-mode", type=click.Choice(["unique", "dataid_type", "dataid_type_run"],
                                                        case_sensitive=False),
              help="The Rubin butler's spelling: unique is --id-mode random, the others the same IDs as the "
                   "Rubin butler makes.")
@click.option("--prefix", type=click.Path(file_okay=False, path_type=Path),
              help="Directory of relative paths in TABLE_FILE (default: the directory of TABLE_FILE).")
@click.option("--skip-existing", is_flag=True,
              help="Leave out files whose data ID already has a dataset in RUN (default: refuse them all).")
@click.option("--data-id", "fixed", multiple=True, metavar="KEY=VALUE",
              help="A data-ID value shared by every file, not a column of TABLE_FILE (repeatable or "
                   "comma-separated), as the Rubin butler's --data-id.")
@click.option("--track-file-attrs", is_flag=True, expose_value=False,
              help="Accepted as the Rubin butler's: every file's size and checksum are recorded.")
@json_option
def ingest_files(repo: Path, dataset_type: str, arguments: tuple[str, ...], run_option: str | None, transfer: str,
                 formatter: str | None, id_mode: str, id_generation_mode: str | None, prefix: Path | None,
                 skip_existing: bool, fixed: tuple[str, ...], as_json: bool) -> None:
    """Ingest the files listed in TABLE_FILE as DATASET_TYPE datasets into RUN.

    TABLE_FILE is a CSV with a 'file' column and one column per data-ID key, e.g.
    'file,instrument,visit,detector', and optionally an 'id' column: dataset IDs to
    keep (instead of making new ones).  All files go in, or none do.  The RUN is
    --run, as in put and ingest-raws (the older form, RUN before TABLE_FILE, still works).
    """
    if len(arguments) == 2 and run_option is None:
        run, table = arguments
        stderr_console().print("note: RUN before TABLE_FILE is the old form of ingest-files; give it as --run RUN",
                               style="yellow", soft_wrap=True, markup=False, highlight=False)
    elif len(arguments) == 1 and run_option is not None:
        run, table = run_option, arguments[0]
    elif len(arguments) == 1:
        raise click.UsageError("Missing option '--run' (the RUN collection to ingest into)")
    else:
        raise click.UsageError(f"expected one TABLE_FILE, got {len(arguments)} argument(s) after DATASET_TYPE")
    if id_generation_mode is not None:
        chosen = {"unique": "random"}.get(id_generation_mode.lower(), id_generation_mode.lower())
        if id_mode not in ("random", chosen):
            raise click.UsageError(f"--id-mode {id_mode} and --id-generation-mode {id_generation_mode} disagree")
        id_mode = chosen
    table_file = Path(table)
    if not table_file.is_file():
        raise click.BadParameter(f"file {table!r} does not exist", param_hint="TABLE_FILE")
    with open_butler(repo) as butler:
        entries, ids = read_file_table(table_file, butler.universe, prefix or table_file.absolute().parent)
        shared = parse_data_id(butler.universe, split_csv_option(fixed))
        both = sorted(shared.keys() & entries[0][1].keys())
        if both:
            fail(f"--data-id gives {', '.join(both)}, which {table} has as column(s) too")
        entries = [(file, {**shared, **data_id}) for file, data_id in entries]
        refs = butler.ingest(dataset_type, entries, run=run, transfer=transfer, formatter=formatter,
                             id_mode=id_mode, ids=ids, skip_existing=skip_existing)
    if not as_json:
        info(f"ingested {len(refs)} {dataset_type} dataset(s) into {run}")
    print_rows(ref_rows(refs), as_json=as_json)


@click.command("put")
@repo_argument
@click.argument("dataset_type")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path), metavar="FILE.json")
@data_id_argument
@click.option("--run", required=True, help="RUN collection to write into (created if missing).")
@click.option("--id-mode", type=click.Choice(ID_MODES), default="random", show_default=True,
              help="Dataset ID: random, or derived from dataset type and data ID (see ingest-files --help).")
@click.option("--json", "as_json", is_flag=True,
              help="Print the stored dataset as one JSON object (dataset_type, run, id and data-ID values).")
def put(repo: Path, dataset_type: str, file: Path, data_id: tuple[str, ...], run: str, id_mode: str,
        as_json: bool) -> None:
    """Store the JSON object in FILE.json as a DATASET_TYPE (Dict) dataset with data ID KEY=VALUE..."""
    try:
        obj = json.loads(read_text(file))
    except json.JSONDecodeError as err:
        fail(f"{file} is not valid JSON: {err}")
    with open_butler(repo) as butler:
        ref = butler.put(obj, dataset_type, parse_data_id(butler.universe, data_id), run=run, id_mode=id_mode)
    if as_json:
        print_json(ref.summary())
    else:
        data_id = "".join(f" {k}={v}," for k, v in ref.data_id.required.items()).rstrip(",")
        info(f"stored {ref.dataset_type.name}{data_id} in RUN {ref.run} as dataset {ref.id}")


@click.command("get")
@repo_argument
@click.argument("dataset_type")
@data_id_argument
@click.option("--collections", "-c", multiple=True, required=True,
              help="Collections to search, in order (repeatable or comma-separated).")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="Write the dataset to this file, in its storage class's format (the one FILE's extension "
                   "names, if the storage class has it: .json or .yaml for a Dict).")
@click.option("--json", "as_json", is_flag=True, help="Print a table's rows as a JSON list of objects.")
@click.option("--rows", type=click.IntRange(min=0), metavar="N",
              help="Only the first N rows of a table (read from the file's start, not the whole table).")
@click.option("--yes", "-y", is_flag=True, help="Recompute a purged dataset without asking.")
@click.option("--no-recompute", is_flag=True, help="Fail on a purged dataset instead of recomputing it.")
@click.option("--on-drift", type=click.Choice(["refuse", "note"]), default="refuse", show_default=True,
              help="If the installed task code differs from the recorded version: refuse, or go on and record it.")
@click.option("--verify-checksums/--no-verify-checksums", default=None,
              help="Check the file against its recorded checksum first (default: the repository's setting).")
def get(repo: Path, dataset_type: str, data_id: tuple[str, ...], collections: tuple[str, ...], output: Path | None,
        as_json: bool, rows: int | None, yes: bool, no_recompute: bool, on_drift: str, verify_checksums: bool | None) -> None:
    """Read the DATASET_TYPE dataset with data ID KEY=VALUE...: print a Dict as JSON or a
    table's rows, or write any dataset to a file with -o.

    A cold dataset is staged back from the cold tier; a purged one is recomputed from its
    provenance after the expected wait is shown and confirmed (--yes).  What was staged or
    recomputed, and any wait, is said on stderr; stdout holds only the dataset.
    """
    from ..datastore.local_files import write_output
    from ..formats import get_formatter, get_storage_class
    from ..registry.dataset_state_store import COLD, PURGED
    from ..retention.ondemand import RecomputeOptions
    from .retention_commands import confirm_recompute, tell_wait_stderr

    with open_butler(repo, on_wait=tell_wait_stderr) as butler:
        storage_class = get_storage_class(butler.get_dataset_type(dataset_type).storage_class)
        printable = storage_class.name == "Dict" or "as" in storage_class.parameters
        if output is None and not printable:
            article = "an" if storage_class.name[0] in "AEIOU" else "a"
            fail(f"{dataset_type} is {article} {storage_class.name}, which cannot be printed; write it to a file with "
                 f"-o FILE (e.g. -o {dataset_type}{get_formatter(storage_class.default_formatter).extension})")
        search = split_csv_option(collections)
        ref = butler.find_dataset(dataset_type, parse_data_id(butler.universe, data_id), collections=search)
        if ref is None:
            fail(f"no {dataset_type} dataset with data ID {' '.join(data_id) or '(none)'} in {', '.join(search)}")
        state = butler.retention.states([ref]).get(ref.id, "stored")
        if state in PURGED:
            if no_recompute:
                fail(f"{_describe(ref)} was purged ({state}); run without --no-recompute to re-create it from "
                     "its provenance")
            confirm_recompute(butler, ref, yes)
            butler.on_wait = lambda message, seconds: None  # the expected wait was just shown: once is enough
        parameters = {"as": "arrow"} if output is None and "as" in storage_class.parameters else None
        if rows is not None:
            if "rows" not in storage_class.parameters:
                fail(f"--rows needs a table; {dataset_type} is a {storage_class.name}")
            parameters = {**(parameters or {}), "rows": rows}
        obj = butler.get(ref, parameters=parameters, verify_checksums=verify_checksums,
                         recompute=None if no_recompute else RecomputeOptions(on_drift=on_drift))  # type: ignore[arg-type]
    if state == COLD:
        report(f"staged {_describe(ref)} back from the cold tier")
    elif state in PURGED:
        report(f"recomputed {_describe(ref)} from its provenance")
    if output is not None:
        formatter = _formatter_for(storage_class, output)
        write_output(output, lambda stream: formatter.write(obj, stream))
        report(f"wrote {_describe(ref)} ({storage_class.name}, {formatter.name}) to {output}")
    elif storage_class.name == "Dict":
        print_json(obj)
    else:
        print_rows(obj.to_pylist(), as_json=as_json, columns=obj.column_names, empty=f"{_describe(ref)} has no rows")


def _describe(ref: Any) -> str:
    """A dataset as a user names it: type, data ID and RUN."""
    data_id = " ".join(f"{k}={v}" for k, v in ref.data_id.required.items())
    return f"{ref.dataset_type.name} {data_id} of RUN {ref.run}"


def _formatter_for(storage_class: Any, path: Path) -> Any:
    """The storage class's formatter whose extension ``path`` has, else its default one."""
    from ..formats import get_formatter

    suffixes = "".join(path.suffixes).lower()
    for name in storage_class.formatters:
        formatter = get_formatter(name)
        if formatter.extension and suffixes.endswith(formatter.extension.lower()):
            return formatter
    return get_formatter(storage_class.default_formatter)


def report(message: str) -> None:
    """A line about what a command did, on stderr (its stdout holds data)."""
    stderr_console().print(message, soft_wrap=True, markup=False, highlight=False)


@click.command("extract-metadata")
@repo_argument
@click.argument("dataset_types", nargs=-1, required=True, metavar="DATASET_TYPE...")
@click.option("--collections", "-c", multiple=True,
              help="Collections to search (repeatable or comma-separated; default: every RUN, through a server "
                   "every RUN you may write).")
@click.option("--where", "-w", default="", help="Only datasets matching this expression.")
@click.option("--replace", is_flag=True, help="Extract again for datasets that already have facts.")
@json_option
def extract_metadata(repo: Path, dataset_types: tuple[str, ...], collections: tuple[str, ...], where: str,
                     replace: bool, as_json: bool) -> None:
    """Extract the queryable facts (shape, sky footprint, header keys...) of stored DATASET_TYPE
    datasets that have none, e.g. ones stored by an older skybutler."""
    with open_butler(repo) as butler:
        searched = split_csv_option(collections) or (  # through a server: every RUN the user may write
            None if butler.served_by is not None else [c.name for c in butler.collections.query(types=["run"])])
        count = butler.extract_metadata(list(dataset_types), collections=searched, where=where, replace=replace)
    if as_json:
        print_json({"extracted": count})
    else:
        info(f"extracted the facts of {count} dataset(s)")


COMMANDS = (ingest_files, put, get, extract_metadata)
