"""Dataset type commands: register-dataset-type, query-dataset-types, remove-dataset-type."""

from __future__ import annotations

from pathlib import Path

import click

from .helpers import (
    GLOB_CHARACTERS,
    expand_collections,
    fail,
    info,
    json_option,
    open_butler,
    print_rows,
    repo_argument,
    split_csv_option,
)


@click.command("register-dataset-type")
@repo_argument
@click.argument("name")
@click.argument("dimensions", nargs=-1, metavar="[STORAGE_CLASS] [DIMENSIONS]...")
@click.option("--storage-class", "-s",
              help="Storage class name (Dict, Table, Image, ...); without it the first argument after NAME "
                   "is the storage class, as the Rubin butler takes it.")
@click.option("--calibration/--no-calibration", "--is-calibration/--no-is-calibration", default=False,
              help="Datasets of this type are calibrations (certified with validity ranges).")
@click.option("--schema", type=click.Path(dir_okay=False, path_type=Path),
              help="A Felis YAML file declaring the columns of a Table type (see declare-catalog-schema).")
@click.option("--schema-table", help="The table of the --schema file this type holds (when it declares several).")
def register_dataset_type(repo: Path, name: str, dimensions: tuple[str, ...], storage_class: str | None,
                          calibration: bool, schema: Path | None, schema_table: str | None) -> None:
    """Register dataset type NAME over DIMENSIONS with a storage class (-s, or STORAGE_CLASS
    before the dimensions as the Rubin butler takes it)."""
    if storage_class is None:
        if not dimensions:
            raise click.UsageError("no storage class: give NAME STORAGE_CLASS [DIMENSIONS]... or --storage-class")
        storage_class, *rest = dimensions
        dimensions = tuple(rest)
    with open_butler(repo) as butler:
        new = butler.register_dataset_type(name, dimensions, storage_class, is_calibration=calibration,
                                           schema=schema, schema_table=schema_table)
    if new:
        info(f"registered dataset type {name}")
    else:
        info(f"dataset type {name} already exists with the same definition")


@click.command("query-dataset-types")
@repo_argument
@click.argument("patterns", nargs=-1)
@click.option("--verbose", "-v", is_flag=True,
              help="Accepted as the Rubin butler's: dimensions and storage class are always shown.")
@click.option("--collections", "-c", multiple=True, metavar="COLLECTIONS",
              help="Only the types with datasets in these collections (globs, comma-separated or repeated; "
                   "a chain: in what it searches).")
@json_option
def query_dataset_types(repo: Path, patterns: tuple[str, ...], verbose: bool, collections: tuple[str, ...],
                        as_json: bool) -> None:
    """List dataset types whose names match any glob of PATTERNS (default: all)."""
    globs = [g for p in patterns for g in p.split(",") if g] or ["*"]
    with open_butler(repo) as butler:
        types = {t.name: t for g in globs for t in butler.query_dataset_types(g)}
        if collections:
            names, _ = expand_collections(butler, split_csv_option(collections))
            held = set().union(*butler.collections.dataset_types(names).values())
            types = {name: t for name, t in types.items() if name in held}
    rows = [{"name": t.name, "dimensions": list(t.dimensions), "storage_class": t.storage_class,
             "is_calibration": t.is_calibration} for t in sorted(types.values(), key=lambda t: t.name)]
    print_rows(rows, as_json=as_json, empty=f"no dataset types match {', '.join(globs)}")


@click.command("remove-dataset-type")
@repo_argument
@click.argument("names", nargs=-1, required=True)
def remove_dataset_type(repo: Path, names: tuple[str, ...]) -> None:
    """Remove the dataset types NAMES (or globs, 'calexp*', as the Rubin command takes them), which
    must have no datasets left: all of them, or none if one is refused."""
    with open_butler(repo) as butler, butler.transaction():
        expanded: list[str] = []
        for name in names:
            if GLOB_CHARACTERS.isdisjoint(name):
                expanded.append(name)
                continue
            matched = sorted(t.name for t in butler.query_dataset_types(name))
            if not matched:
                fail(f"no dataset type matches {name!r}")
            expanded += matched
        names = tuple(dict.fromkeys(expanded))
        for name in names:
            butler.remove_dataset_type(name)
    for name in names:
        info(f"removed dataset type {name}")


COMMANDS = (register_dataset_type, query_dataset_types, remove_dataset_type)
