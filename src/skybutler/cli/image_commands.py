"""Image commands: get-image (an image, an HDU or a pixel box to a FITS file) and cutouts (every
stored image covering a sky position, cut out to FITS files)."""

from __future__ import annotations

from pathlib import Path

import click

from ..datastore.copy_scratch import ScratchJournal
from ..datastore.local_files import write_output
from ..formats import get_formatter
from .helpers import fail, info, json_option, open_butler, parse_data_id, print_rows, repo_argument, split_csv_option


def _bbox(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        values = tuple(int(part) for part in text.split(","))
    except ValueError:
        values = ()
    if len(values) != 4:
        fail(f"--bbox needs X_MIN,Y_MIN,X_MAX,Y_MAX (four integers), not {text!r}")
    return values


@click.command("get-image")
@repo_argument
@click.argument("dataset_type")
@click.argument("data_id", nargs=-1, metavar="KEY=VALUE...")
@click.option("--collections", "-c", multiple=True, required=True,
              help="Collections to search, in order (repeatable or comma-separated).")
@click.option("--bbox", metavar="X_MIN,Y_MIN,X_MAX,Y_MAX", help="Only this pixel box (half-open bounds).")
@click.option("--hdu", metavar="NAME|INDEX", help="The HDU to read: an EXTNAME or an index (0 = primary).")
@click.option("--bin", "bin_", type=int, metavar="N",
              help="Only the mean of each N x N block of pixels (read N rows at a time; no header).")
@click.option("--header", "header_only", is_flag=True, help="Print the header instead of writing a file.")
@click.option("--output", "-o", type=click.Path(dir_okay=False, path_type=Path),
              help="FITS file to write the image (or cut-out) to.")
def get_image(repo: Path, dataset_type: str, data_id: tuple[str, ...], collections: tuple[str, ...],
              bbox: str | None, hdu: str | None, bin_: int | None, header_only: bool, output: Path | None) -> None:
    """Write a stored image (one HDU of it, or a pixel box, with a header describing it; or its
    pixels binned) to a FITS file, or print its header."""
    if not header_only and output is None:
        fail("give --output FILE.fits, or --header to print the header")
    if bin_ is not None and header_only:
        fail("--bin reads pixels: it does not go with --header")
    parameters = {"bbox": _bbox(bbox), "hdu": hdu, "bin": bin_}
    with open_butler(repo) as butler:
        found = butler.get(dataset_type, parse_data_id(butler.universe, data_id),
                           collections=split_csv_option(collections), parameters=parameters,
                           component="header" if header_only else "data" if bin_ is not None else None)
    if header_only:
        click.echo(found.tostring(sep="\n").rstrip())
        return
    write_output(output, lambda stream: get_formatter("fits").write(found, stream))
    shape = found.shape if bin_ is not None else found.data.shape
    info(f"wrote {shape[1]}x{shape[0]} pixels to {output}")


@click.command("cutouts")
@repo_argument
@click.argument("dataset_type")
@click.argument("ra", type=float)
@click.argument("dec", type=float)
@click.option("--size", type=click.IntRange(min=1), default=64, show_default=True,
              help="Width and height of each cut-out, in pixels (clipped at an image's edges).")
@click.option("--collections", "-c", multiple=True, required=True,
              help="Collections to search (repeatable or comma-separated).")
@click.option("--where", "-w", default="", help="Only images matching this expression.")
@click.option("--output", "--output-dir", "-o", "output_dir", type=click.Path(file_okay=False, path_type=Path),
              required=True,
              help="Directory the cut-outs are written to, one FITS file per image.")
@json_option
def cutouts(repo: Path, dataset_type: str, ra: float, dec: float, size: int, collections: tuple[str, ...],
            where: str, output_dir: Path, as_json: bool) -> None:
    """Cut out SIZE x SIZE pixels around ICRS RA, DEC (degrees) from every DATASET_TYPE image whose
    footprint covers it, each with its header and WCS describing the cut-out."""
    with open_butler(repo) as butler:
        found = butler.get_cutouts(dataset_type, ra, dec, size, collections=split_csv_option(collections),
                                   where=where)
    try:
        output_dir.mkdir(parents=True, exist_ok=True)
    except OSError as err:
        fail(f"cannot create {output_dir}: {err.strerror or err}")
    rows = []
    with ScratchJournal(output_dir) as journal:  # each file replaced whole (see write_replacing)
        for ref, hdu in found:
            name = "_".join([dataset_type, *[str(ref.data_id[d]) for d in ref.data_id.group.required]]) + ".fits"
            write_output(output_dir / name, lambda stream, hdu=hdu: get_formatter("fits").write(hdu, stream), journal)
            rows.append({**ref.summary(), "file": str(output_dir / name),
                         "shape": f"{hdu.data.shape[1]}x{hdu.data.shape[0]}"})
    if not as_json:
        info(f"{len(rows)} cut-out(s) around ({ra}, {dec}) written to {output_dir}")
    print_rows(rows, as_json=as_json)


COMMANDS = (get_image, cutouts)
