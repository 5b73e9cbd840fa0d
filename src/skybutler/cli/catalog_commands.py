"""Catalog commands: declare-catalog-schema, catalog-schema, load-catalog."""

from __future__ import annotations

from pathlib import Path

import click

from .helpers import info, json_option, open_butler, print_rows, repo_argument, split_csv_option


@click.command("declare-catalog-schema")
@repo_argument
@click.argument("dataset_type")
@click.argument("schema_file", type=click.Path(dir_okay=False, path_type=Path))
@click.option("--table", help="The table of SCHEMA_FILE the dataset type holds (needed when it declares several).")
@click.option("--new-version", is_flag=True,
              help="Record the schema as a new version (needed once the dataset type has datasets).")
def declare_catalog_schema(repo: Path, dataset_type: str, schema_file: Path, table: str | None,
                           new_version: bool) -> None:
    """Declare the schema of catalog DATASET_TYPE from a Felis YAML file; later puts and ingests are checked against it."""
    with open_butler(repo) as butler:
        before = butler.get_catalog_schema(dataset_type)
        version = butler.declare_catalog_schema(dataset_type, schema_file, table=table, new_version=new_version)
        after = butler.get_catalog_schema(dataset_type)
    if before is not None and before.version == version and before.same_definition(after):
        info(f"{dataset_type} already declares this schema (version {version})")
    else:
        info(f"{dataset_type}: schema version {version} (table {after.table}, {len(after.columns)} columns)")


@click.command("catalog-schema")
@repo_argument
@click.argument("dataset_type")
@click.option("--version", "version", type=int, help="This version (default: the one in force).")
@click.option("--versions", "list_versions", is_flag=True, help="List the declared versions instead of columns.")
@json_option
def catalog_schema(repo: Path, dataset_type: str, version: int | None, list_versions: bool, as_json: bool) -> None:
    """Show the declared schema of catalog DATASET_TYPE: its columns (datatype, unit, UCD, description)."""
    with open_butler(repo) as butler:
        if list_versions:
            rows = [{"version": s.version, "table": s.table, "columns": len(s.columns),
                     "primary_key": ",".join(s.primary_key)} for s in butler.catalog_schema_versions(dataset_type)]
            print_rows(rows, as_json=as_json, empty=f"{dataset_type} declares no schema")
            return
        schema = butler.get_catalog_schema(dataset_type, version)
    if schema is None:
        print_rows([], as_json=as_json, empty=f"{dataset_type} declares no schema")
        return
    if not as_json:
        info(f"{dataset_type}: table {schema.table} of Felis schema {schema.schema_name}, version {schema.version}")
    print_rows([c.describe() for c in schema.columns], as_json=as_json)


@click.command("load-catalog")
@repo_argument
@click.argument("dataset_type")
@click.argument("db_url")
@click.option("--collections", "-c", multiple=True, required=True,
              help="Collections to search, in order (repeatable or comma-separated).")
@click.option("--where", "-w", default="", help="A where-clause choosing the datasets, e.g. \"visit > 100\".")
@click.option("--table", help="The table to load into (default: the schema's table name).")
def load_catalog(repo: Path, dataset_type: str, db_url: str, collections: tuple[str, ...], where: str,
                 table: str | None) -> None:
    """Load the rows of DATASET_TYPE's datasets into a table of the SQL database DB_URL (sqlite:///FILE, postgresql://..., duckdb:///FILE), made from the declared schema with a _healpix_29 column; datasets loaded before are skipped."""
    with open_butler(repo) as butler:
        summary = butler.load_catalog(dataset_type, db_url, collections=split_csv_option(collections), where=where,
                                      table=table)
    info(f"loaded {summary.rows_loaded} rows of {summary.datasets_loaded} dataset(s) into {summary.table}"
         + (f"; {summary.datasets_skipped} dataset(s) were loaded already" if summary.datasets_skipped else ""))


COMMANDS = (declare_catalog_schema, catalog_schema, load_catalog)
