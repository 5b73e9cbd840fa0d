"""Ingest commands: ingest-raws, register-instrument, define-visits, register-skymap,
write-curated-calibrations, watch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
import yaml

from ..ingest import (
    define_visits,
    ingest_raws,
    register_instrument,
    register_skymap,
    update_instrument,
    write_curated_calibrations,
)
from ..ingest.raws import IngestFailure
from ..instruments.instrument import camera_name, known_instruments
from .helpers import (
    fail,
    info,
    jobs_option,
    open_butler,
    print_rows,
    progress_bar,
    read_text,
    repo_argument,
    resolve_jobs,
)

TRANSFERS = ("auto", "copy", "move", "symlink", "hardlink", "relsymlink", "link", "direct")


def _report_failures(failures: list[IngestFailure], what: str) -> None:
    """List the files that failed, then exit with status 1 (after the rest went in)."""
    if not failures:
        return
    print_rows([{"file": f.path, "reason": f.reason} for f in failures], as_json=False,
               columns=["file", "reason"], title=f"{len(failures)} {what} failed")
    fail(f"{len(failures)} {what} could not be ingested (listed above); the others were")


@click.command("ingest-raws")
@repo_argument
@click.argument("files_or_dirs", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--transfer", "-t", type=click.Choice(TRANSFERS), default="auto", show_default=True,
              help="How files come in: auto is direct for files already inside the datastore, copy otherwise.")
@click.option("--run", "--output-run", "run", default=None, help="RUN collection (default: <instrument>/raw/all).")
@jobs_option("Processes reading headers; a small batch is read in this process")
def ingest_raws_command(repo: Path, files_or_dirs: tuple[Path, ...], transfer: str, run: str | None,
                        jobs: int | None) -> None:
    """Ingest raw files (and the *.fits files under directories) into REPO as `raw` datasets."""
    with open_butler(repo) as butler:
        result = ingest_raws(butler, files_or_dirs, transfer=transfer, run=run, processes=jobs,
                             progress=lambda msg: info(msg, style="dim"))
    for line in result.registered:
        info(line, style="green")
    for path, ref in result.already_ingested:
        info(f"already ingested: {path} ({ref.run})")
    rate = len(result.refs) / result.seconds if result.seconds else 0.0
    info(f"{result.summary()} in {result.seconds:.2f} s ({rate:.0f} files/s) into {', '.join(result.runs) or '-'}")
    _report_failures(result.failures, "raw file(s)")


@click.command("register-instrument")
@repo_argument
@click.argument("cameras", nargs=-1, required=True)
@click.option("--update", is_flag=True, help="Replace the stored description and records of a registered camera "
                                              "(refused if it contradicts what the repository holds).")
def register_instrument_command(repo: Path, cameras: tuple[str, ...], update: bool) -> None:
    """Register CAMERAS in REPO: each a YAML file describing a camera, the name of one skybutler
    ships (HSC, SuprimeCam, DECam, MegaPrime, LSSTCam, LSSTComCam, LATISS, ...), or the Rubin
    butler's instrument class of one (lsst.obs.subaru.HyperSuprimeCam, ...)."""
    for camera in cameras:
        _register_one(repo, camera, update)


def _register_one(repo: Path, camera: str, update: bool) -> None:
    if update:
        with open_butler(repo) as butler:
            instrument, changed = update_instrument(butler, camera)
        info(f"updated camera {instrument.name}: {', '.join(changed)} changed" if changed and changed != ["registered"]
             else f"registered camera {instrument.name}" if changed else
             f"camera {instrument.name} is already described so: nothing to update")
        return
    with open_butler(repo) as butler:
        instrument, new = register_instrument(butler, camera)
    verb = "registered" if new else "already registered:"
    info(f"{verb} camera {instrument.name} ({len(instrument.detectors)} detectors, "
         f"{len(instrument.filters)} physical filters, bands {', '.join(sorted(set(instrument.filters.values())))})")


@click.command("define-visits")
@repo_argument
@click.argument("camera", required=False)
@click.option("--instrument", default=None, help="Only exposures of this instrument (or give it as CAMERA).")
@click.option("--exposure", "exposures", type=int, multiple=True, help="Only this exposure (repeatable).")
@click.option("--where", "-w", default=None, help="Only the exposures this where-clause selects.")
@click.option("--collections", multiple=True, hidden=True,
              help="The Rubin command's collections holding the camera geometry; skybutler reads the camera's "
                   "stored description (a note says so).")
def define_visits_command(repo: Path, camera: str | None, instrument: str | None, exposures: tuple[int, ...],
                          where: str | None, collections: tuple[str, ...]) -> None:
    """Define one visit per science exposure not yet in one, with sky regions per visit and detector.

    CAMERA (optional, as the Rubin butler's INSTRUMENT argument: a name or its instrument class)
    limits it to that camera's exposures, as --instrument does."""
    if collections:
        info("note: --collections is not needed: the detectors' positions come from each camera's stored "
             "description (the RUN <camera>/instrument), whatever collections are named", style="dim")
    if camera is not None:
        if instrument is not None and camera_name(camera) != instrument:
            fail(f"CAMERA {camera} and --instrument {instrument} disagree: give one")
        instrument = camera_name(camera)
    with open_butler(repo) as butler:
        result = define_visits(butler, instrument=instrument, exposures=exposures or None, where=where)
    for inst, exposure, reason in result.skipped:
        info(f"skipped {inst} exposure {exposure}: {reason}", style="yellow")
    info(result.summary())


@click.command("register-skymap")
@repo_argument
@click.argument("name")
@click.option("--config", "config_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="YAML mapping of sky-map settings (kind, rings, patches, tract_overlap, patch_overlap).")
@click.option("--rings", type=click.IntRange(min=1), help="Declination bands between the polar caps.")
@click.option("--patches", type=click.IntRange(min=1, max=1000), help="Patches per tract side.")
@click.option("--tract-overlap", type=float, help="Degrees added on each side of a tract.")
@click.option("--patch-overlap", type=float, help="Degrees added on each side of a patch.")
def register_skymap_command(repo: Path, name: str, config_file: Path | None, **options: Any) -> None:
    """Register sky map NAME: tract and patch records with regions tiling the whole sky."""
    config: dict[str, Any] = {}
    if config_file is not None:
        loaded = yaml.safe_load(read_text(config_file)) or {}
        if not isinstance(loaded, dict):
            fail(f"{config_file} must hold a YAML mapping")
        config.update(loaded)
    config.update({k: v for k, v in options.items() if v is not None})
    kind = config.pop("kind", "rings")
    with open_butler(repo) as butler, \
            progress_bar(f"registering sky map {name}: patches") as progress:
        skymap, new = register_skymap(butler, name, kind, progress=progress, **config)
    verb = "registered" if new else "already registered:"
    info(f"{verb} sky map {name} ({skymap.kind}, {skymap.n_tracts} tracts of "
         f"{skymap.patches}x{skymap.patches} patches)")


def _curated_directory(ctx: click.Context, param: click.Parameter, value: Path) -> Path:
    """DIRECTORY, which must exist; one that does not but names a camera is the Rubin command's
    INSTRUMENT argument, and the error says what skybutler takes instead."""
    if value.is_dir():
        return value
    if not value.exists() and camera_name(str(value)) in known_instruments():
        raise click.BadParameter(
            f"{value} is a camera, as the Rubin command's INSTRUMENT argument; skybutler ships no curated "
            f"calibrations: give the DIRECTORY of your curated calibration files, and --instrument "
            f"{camera_name(str(value))}", ctx, param)
    raise click.BadParameter(f"directory {value} does not exist" if not value.exists() else
                             f"{value} is not a directory", ctx, param)


@click.command("write-curated-calibrations")
@repo_argument
@click.argument("directory", type=click.Path(path_type=Path), callback=_curated_directory)
@click.option("--collection", default=None, help="CALIBRATION collection (default: <instrument>/calib).")
@click.option("--instrument", default=None, help="Instrument (default: the repository's only one).")
def write_curated_calibrations_command(repo: Path, directory: Path, collection: str | None,
                                       instrument: str | None) -> None:
    """Ingest the curated calibration files of DIRECTORY (<type>/[<detector>/]<valid_start>.yaml) and
    certify each from its valid_start to the next file's."""
    with open_butler(repo) as butler:
        result = write_curated_calibrations(butler, directory, instrument=instrument, collection=collection)
    for path, ref, span in result.certified:
        info(f"certified {path} as {ref.dataset_type.name} {dict(ref.data_id.required)}, valid {span}")
    info(result.summary())
    _report_failures(result.failures, "calibration file(s)")


def parse_duration(text: str) -> float:
    """Seconds from ``30s``, ``2m``, ``500ms``, ``1h`` or a plain number of seconds."""
    value = text.strip().lower()
    for suffix, scale in (("ms", 0.001), ("s", 1.0), ("m", 60.0), ("h", 3600.0)):
        if value.endswith(suffix):
            value, factor = value[: -len(suffix)], scale
            break
    else:
        factor = 1.0
    try:
        seconds = float(value) * factor
    except ValueError:
        raise click.BadParameter(f"{text!r} is not a duration (like 30s, 2m, 500ms)") from None
    if seconds < 0:
        raise click.BadParameter(f"{text!r} is negative")
    return seconds


class WatchedPlace(click.ParamType):
    """A local directory (which must exist), or an object-store prefix URL (``s3://bucket/incoming``)."""

    name = "directory"
    _path = click.Path(exists=True, file_okay=False, path_type=Path)

    def convert(self, value: Any, param: click.Parameter | None, ctx: click.Context | None) -> Any:
        if isinstance(value, str) and "://" in value:
            return value
        return self._path.convert(value, param, ctx)


@click.command("watch")
@repo_argument
@click.argument("directory", type=WatchedPlace())
@click.option("--pipeline", required=True, help="The pipeline YAML to run incrementally on what arrives.")
@click.option("-i", "--input", "inputs", multiple=True, required=True,
              help="Input collections of the pipeline (the raws' RUN, calibrations, ...).")
@click.option("-o", "--output", required=True, help="Output CHAINED collection, brought up to date each cycle.")
@click.option("-d", "-w", "--where", default="", help="Where-clause restricting the pipeline's data IDs.")
@click.option("--every", default="30s", show_default=True, help="How often to ingest and run (30s, 2m, ...).")
@click.option("--settle", default="2s", show_default=True,
              help="How long a closed file's size and time must stay the same before it is ingested.")
@click.option("--transfer", "-t", type=click.Choice(["move", "copy", "symlink", "hardlink"]), default="move",
              show_default=True, help="How files come in (move empties the directory of what is done).")
@click.option("--executor", type=click.Choice(["inline", "pool", "dask"]), default="inline", show_default=True)
@jobs_option("Parallel workers of the pool or Dask executors")
@click.option("--calibrations", type=click.Choice(["refuse", "recorded", "today"]), default="refuse",
              show_default=True, help="A quantum whose calibration changed since it ran: see 'run --incremental'.")
def watch_command(repo: Path, directory: Path | str, pipeline: str, inputs: tuple[str, ...], output: str, where: str,
                  every: str, settle: str, transfer: str, executor: str, jobs: int | None, calibrations: str) -> None:
    """Watch DIRECTORY (or an S3 prefix, s3://bucket/incoming): ingest raw files as they land (complete
    ones only), define visits and run PIPELINE incrementally into OUTPUT; stop with Ctrl-C or SIGTERM,
    restart to resume.  REPO may be a server's URL: the raws are uploaded (copy or move) and the
    pipeline runs here, through the server, as `run` does."""
    import signal

    from ..ingest.watcher import Watcher
    from ..pipeline import Pipeline
    from .helpers import split_csv_option

    seconds, settle_seconds = parse_duration(every), parse_duration(settle)
    with open_butler(repo) as butler:
        watcher = Watcher(butler, directory, Pipeline.from_yaml(pipeline), split_csv_option(inputs), output,
                          where=where, every=seconds, settle=settle_seconds, transfer=transfer, executor=executor,
                          jobs=resolve_jobs(jobs), calibrations=calibrations, say=lambda line: click.echo(line))

        def stop(signum: int, _frame: object) -> None:
            click.echo(f"received {signal.Signals(signum).name}: stopping after the current step")
            watcher.stop_event.set()

        previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            watcher.run()
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


COMMANDS = (watch_command, ingest_raws_command, register_instrument_command, define_visits_command,
            register_skymap_command, write_curated_calibrations_command)
