"""HATS catalogs: publish-catalog (a catalog dataset type as HATS) and cone-, box- and
polygon-search over a published catalog -- a dataset type's publication found by the butler in
a repository or through a server, or a publication's directory read as it is."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

from .helpers import (
    RepoLocation,
    fail,
    info,
    json_option,
    open_butler,
    print_rows,
    progress_bar,
    repo_argument,
    split_csv_option,
)


@click.command("publish-catalog")
@repo_argument
@click.argument("dataset_type")
@click.argument("dest", type=click.Path(path_type=Path))
@click.option("--collections", "-c", multiple=True, required=True,
              help="Collections to search, in order (repeatable or comma-separated).")
@click.option("--where", "-w", default="", help="Only the datasets matching this expression.")
@click.option("--name", help="The catalog's name (default: DEST's directory name).")
@click.option("--run", help="RUN to register the publication in (default: publications/NAME/<UTC time>).")
@click.option("--margin", "margin_arcsec", type=float,
              help="Width of the margin cache, in arcseconds (new publication: 10).")
@click.option("--max-rows", type=click.IntRange(min=1), help="Most rows in one partition (new: 1,000,000).")
@click.option("--max-bytes", type=click.IntRange(min=1),
              help="Most bytes (in memory) in one partition (new: 1 GiB).")
@click.option("--ra", "ra_column", help="The right-ascension column, degrees (new: ra).")
@click.option("--dec", "dec_column", help="The declination column, degrees (new: dec).")
@click.option("--rebuild", is_flag=True, help="Write the whole publication again instead of adding to it.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
def publish_catalog(repo: Path, dataset_type: str, dest: Path, collections: tuple[str, ...], where: str,
                    no_progress: bool, **options: Any) -> None:
    """Publish the DATASET_TYPE catalogs matching --where as a HATS catalog at DEST, or add the
    ones not yet published to the catalog already there.  Settings not given are the
    publication's own.  Given a server's URL, DEST is the publication's name: the server writes
    it in its repository, from the datasets you may see."""
    with open_butler(repo) as butler, progress_bar("reading catalogs", enabled=not no_progress) as progress:
        done = butler.publish_catalog(dataset_type, dest, collections=split_csv_option(collections), where=where,
                                      progress=progress, **options)
    if done.datasets_added == 0:
        info(f"{dest}: nothing new to publish ({done.datasets} datasets, {done.total_rows} rows already there)")
        return
    info(f"published {done.datasets_added} datasets ({done.rows_added} rows) into {done.path}: {done.total_rows} "
         f"rows in {done.partitions} partition(s) ({done.partitions_written} written, "
         f"{done.margin_partitions_written} margins written) in {done.seconds:.1f} s; registered as "
         f"{done.ref.dataset_type.name} in {done.ref.run}")


def _output_options(func: Any) -> Any:
    func = json_option(func)
    func = click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
                        help="Write the rows to this file (.parquet or .csv) instead of printing them.")(func)
    return click.option("--columns", multiple=True,
                        help="Only these columns (repeatable or comma-separated).")(func)


def _emit(table: Any, output: Path | None, as_json: bool) -> None:
    if output is not None:
        from ..datastore.local_files import write_output

        if output.suffix == ".parquet":
            import pyarrow.parquet as pq

            write_output(output, lambda stream: pq.write_table(table, stream))
        elif output.suffix == ".csv":
            import pyarrow.csv as pcsv

            write_output(output, lambda stream: pcsv.write_csv(table, stream))
        else:
            fail(f"--output must end in .parquet or .csv, not {output.name!r}")
        info(f"wrote {table.num_rows} rows to {output}")
        return
    print_rows(table.to_pylist(), as_json=as_json, columns=table.column_names, empty="no rows in the region")


def _pair(text: str, what: str) -> tuple[float, float]:
    parts = text.split(",")
    try:
        values = tuple(float(p) for p in parts)
    except ValueError:
        values = ()
    if len(values) != 2:
        fail(f"{what} needs two numbers A,B (degrees), not {text!r}")
    return values  # type: ignore[return-value]


def _search_arguments(func: Any) -> Any:
    """SOURCE [DATASET_TYPE] and --collections: a repository or server URL with the catalog
    dataset type whose publication to search, or a published catalog's directory alone."""
    func = click.option("--collections", "-c", multiple=True,
                        help="With DATASET_TYPE: the collections to find its publication in, in order "
                             "(repeatable or comma-separated).")(func)
    func = click.argument("dataset_type", required=False)(func)
    return click.argument("source", metavar="REPO_OR_URL DATASET_TYPE | CATALOG", type=RepoLocation())(func)


def _search(kind: str, source: str | Path, dataset_type: str | None, collections: tuple[str, ...],
            args: tuple[Any, ...], columns: tuple[str, ...]) -> Any:
    """The rows of a ``kind`` search (cone, box, polygon) as an Arrow table: through the butler
    (``Butler.cone_search`` and co., the same call on a repository and on a server URL, under
    the caller's rights there) when DATASET_TYPE is given, else read from the directory SOURCE."""
    wanted = split_csv_option(columns) or None
    if dataset_type is None:
        if isinstance(source, str):
            fail(f"{source} is a server: name the catalog dataset type whose publication to search "
                 "(REPO_OR_URL DATASET_TYPE -c COLLECTIONS)")
        if collections:
            fail("--collections goes with REPO_OR_URL DATASET_TYPE; a catalog directory is searched as it is")
        from ..catalogs import search

        return getattr(search, f"{kind}_search")(source, *args, columns=wanted)
    if not collections:
        fail(f"name the collections holding the publication of {dataset_type} with --collections/-c")
    with open_butler(source) as butler:
        return getattr(butler, f"{kind}_search")(dataset_type, *args, collections=split_csv_option(collections),
                                                 columns=wanted)


@click.command("cone-search")
@_search_arguments
@click.option("--ra", type=float, required=True, help="Right ascension of the centre (degrees).")
@click.option("--dec", type=float, required=True, help="Declination of the centre (degrees).")
@click.option("--radius", type=float, required=True, help="Radius (degrees).")
@_output_options
def cone_search(source: str | Path, dataset_type: str | None, collections: tuple[str, ...], ra: float, dec: float,
                radius: float, columns: tuple[str, ...], output: Path | None, as_json: bool) -> None:
    """Print the rows of a published catalog within --radius of (--ra, --dec): DATASET_TYPE's publication in a repository or through a server, or the HATS CATALOG directory."""
    _emit(_search("cone", source, dataset_type, collections, (ra, dec, radius), columns), output, as_json)


@click.command("box-search")
@_search_arguments
@click.option("--ra", "ra_range", required=True, metavar="START,END",
              help="RA from START eastwards to END (degrees; 350,10 crosses RA 0).")
@click.option("--dec", "dec_range", required=True, metavar="MIN,MAX", help="Declination range (degrees).")
@_output_options
def box_search(source: str | Path, dataset_type: str | None, collections: tuple[str, ...], ra_range: str,
               dec_range: str, columns: tuple[str, ...], output: Path | None, as_json: bool) -> None:
    """Print the rows of a published catalog inside an RA/Dec box (see cone-search for what is searched)."""
    box = (_pair(ra_range, "--ra"), _pair(dec_range, "--dec"))
    _emit(_search("box", source, dataset_type, collections, box, columns), output, as_json)


@click.command("polygon-search")
@_search_arguments
@click.option("--vertex", "vertices", multiple=True, required=True, metavar="RA,DEC",
              help="A corner of the convex polygon (degrees); repeat, in order around it.")
@_output_options
def polygon_search(source: str | Path, dataset_type: str | None, collections: tuple[str, ...],
                   vertices: tuple[str, ...], columns: tuple[str, ...], output: Path | None, as_json: bool) -> None:
    """Print the rows of a published catalog inside a convex polygon with great-circle edges (see cone-search for what is searched)."""
    corners = ([_pair(v, "--vertex") for v in vertices],)
    _emit(_search("polygon", source, dataset_type, collections, corners, columns), output, as_json)


COMMANDS = (publish_catalog, cone_search, box_search, polygon_search)
