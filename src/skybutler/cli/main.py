"""The ``skybutler`` command group, which loads each command's module only when it is used.

Start-up time matters: users script hundreds of calls.  ``skybutler --help`` reads the
command names and their one-line help from :data:`COMMAND_INDEX` without importing any
command module, and ``skybutler CMD`` imports only CMD's module (and what it needs:
astropy, pyarrow, SQLAlchemy, ...).  To add commands, write a module in this package
that defines ``COMMANDS`` (a sequence of click commands), append its name to
:data:`COMMAND_MODULES` and add each command to :data:`COMMAND_INDEX`
(``tests/test_cli_usability.py`` checks that the index and the modules agree).

Every command takes ``-@ FILE`` (default options from a YAML file, see
:mod:`.options_file`), as the Rubin butler's commands do.

Errors a user can cause (:class:`~skybutler.errors.SkybutlerError`) are reported
here once, as ``error: <message>`` on stderr with exit status 1; so are the system's
refusals (``OSError``) and, naming their type, errors nobody foresaw.  ``skybutler --debug CMD``
(or ``SKYBUTLER_TRACEBACK=1``) shows the traceback of any error instead, for a bug report.
"""

from __future__ import annotations

import contextlib
import gc
import importlib
import os
from collections.abc import Iterator
from typing import Any

import click

from ..errors import SkybutlerError
from .log_options import configure_logging, log_options

#: Topic modules of this package, each with a ``COMMANDS`` sequence.
COMMAND_MODULES: tuple[str, ...] = (
    "repo_commands",
    "dataset_type_commands",
    "collection_commands",
    "dataset_commands",
    "image_commands",
    "ingest_commands",
    "maintenance_commands",
    "pipeline_commands",
    "query_commands",
    "retention_commands",
    "selection_commands",
    "server_commands",
    "catalog_commands",
    "hats_commands",
)

#: Each command's name: (its topic module, its one-line help as ``--help`` lists it).
COMMAND_INDEX: dict[str, tuple[str, str]] = {
    'create': ('repo_commands', 'Create a new, empty repository at REPO (a new or empty directory unless --existing-ok).'),
    'config-dump': ('repo_commands', "Print REPO's butler.yaml resolved with defaults (registry URL without password)."),
    'config-validate': ('repo_commands', "Check REPO's configuration: butler.yaml, and each dataset type's storage class and path template."),
    'insert-records': ('repo_commands', 'Insert dimension records of ELEMENT from FILE (a YAML or JSON list of mappings).'),
    'register-dataset-type': ('dataset_type_commands', 'Register dataset type NAME over DIMENSIONS with a storage class (-s, or STORAGE_CLASS before the dimensions as the Rubin butler takes it).'),
    'query-dataset-types': ('dataset_type_commands', 'List dataset types whose names match any glob of PATTERNS (default: all).'),
    'remove-dataset-type': ('dataset_type_commands', "Remove the dataset types NAMES (or globs, 'calexp*', as the Rubin command takes them), which must have no datasets left: all of them, or none if one is refused."),
    'query-collections': ('collection_commands', 'List collections whose names match the glob PATTERNS (default: all; several, or comma-separated).'),
    'register-collection': ('collection_commands', 'Create collection NAME of the given type.'),
    'collection-chain': ('collection_commands', 'Define or change the CHAINED collection PARENT (created if missing); CHILDREN may be comma-separated, as the Rubin butler takes them.'),
    'remove-runs': ('collection_commands', 'Delete RUN collections NAMES (or globs) with all their datasets and files.'),
    'remove-collections': ('collection_commands', 'Remove TAGGED, CHAINED or CALIBRATION collections NAMES (their datasets stay in their RUNs): all of them in one transaction.'),
    'certify-calibrations': ('collection_commands', 'Certify every DATASET_TYPE dataset of FROM_RUN into TO_CALIB_COLLECTION over [begin, end).'),
    'ingest-files': ('dataset_commands', 'Ingest the files listed in TABLE_FILE as DATASET_TYPE datasets into RUN.'),
    'put': ('dataset_commands', 'Store the JSON object in FILE.json as a DATASET_TYPE (Dict) dataset with data ID KEY=VALUE...'),
    'get': ('dataset_commands', "Read the DATASET_TYPE dataset with data ID KEY=VALUE...: print a Dict as JSON or a table's rows, or write any dataset to a file with -o."),
    'extract-metadata': ('dataset_commands', 'Extract the queryable facts (shape, sky footprint, header keys...) of stored DATASET_TYPE datasets that have none, e.g. ones stored by an older skybutler.'),
    'get-image': ('image_commands', 'Write a stored image (one HDU of it, or a pixel box, with a header describing it; or its pixels binned) to a FITS file, or print its header.'),
    'cutouts': ('image_commands', 'Cut out SIZE x SIZE pixels around ICRS RA, DEC (degrees) from every DATASET_TYPE image whose footprint covers it, each with its header and WCS describing the cut-out.'),
    'ingest-raws': ('ingest_commands', 'Ingest raw files (and the *.fits files under directories) into REPO as `raw` datasets.'),
    'register-instrument': ('ingest_commands', "Register CAMERAS in REPO: each a YAML file describing a camera, the name of one skybutler ships (HSC, SuprimeCam, DECam, MegaPrime, LSSTCam, LSSTComCam, LATISS, ...), or the Rubin butler's instrument class of one (lsst.obs.subaru.HyperSuprimeCam, ...)."),
    'define-visits': ('ingest_commands', 'Define one visit per science exposure not yet in one, with sky regions per visit and detector.'),
    'register-skymap': ('ingest_commands', 'Register sky map NAME: tract and patch records with regions tiling the whole sky.'),
    'watch': ('ingest_commands', 'Watch DIRECTORY (or an S3 prefix, s3://bucket/incoming): ingest raw files as they land (complete ones only), define visits and run PIPELINE incrementally into OUTPUT; stop with Ctrl-C or SIGTERM, restart to resume.'),
    'write-curated-calibrations': ('ingest_commands', "Ingest the curated calibration files of DIRECTORY (<type>/[<detector>/]<valid_start>.yaml) and certify each from its valid_start to the next file's."),
    'export': ('maintenance_commands', 'Export datasets, their files and dimension records to DIRECTORY.'),
    'import': ('maintenance_commands', 'Import an export at PATH (dataset IDs preserved; existing ones skipped).'),
    'transfer': ('maintenance_commands', 'Copy datasets from repository SOURCE to TARGET (any stacks), IDs preserved.'),
    'transfer-datasets': ('maintenance_commands', 'Copy datasets from repository SOURCE to TARGET (any stacks), IDs preserved.'),
    'verify': ('maintenance_commands', 'Report registry rows without files and files without rows (and, with --checksums, files whose content changed); exit 1 while any remain.'),
    'clean-copy-out': ('maintenance_commands', 'Remove the scratch files killed copy outs (export, retrieve-artifacts) left in DIRECTORY.'),
    'migrate': ('maintenance_commands', "Upgrade an older repository's registry schema to this skybutler's version."),
    'qgraph': ('pipeline_commands', 'Build the quantum graph of PIPELINE (a YAML file, FILE#subset selects labels) over the inputs.'),
    'run': ('pipeline_commands', 'Run PIPELINE over the inputs into OUTPUT; failed quanta are listed and recorded, and the exit status is 1 if any quantum failed or was blocked.'),
    'provenance': ('pipeline_commands', 'Show what made a dataset (recursively, down to its original inputs) and what used it.'),
    'quanta': ('pipeline_commands', 'List recorded quanta: task, data ID, status, time, error.'),
    'stale': ('pipeline_commands', 'List the DATASET_TYPE products that their task would not make the same way today, with why (inputs added, removed or remade upstream, calibration superseded or decertified, ...).'),
    'query-data-ids': ('query_commands', 'List the data IDs of DIMENSIONS (e.g. visit detector) that match a where-clause.'),
    'query-datasets': ('query_commands', "List the datasets of DATASET_TYPES in the collections that match a where-clause, with each one's state (stored, cold, purged-recomputable, purged-lost)."),
    'query-dimension-records': ('query_commands', 'List the records of a dimension ELEMENT (e.g. visit) that match a where-clause.'),
    'query-calibrations': ('query_commands', 'For each data ID of DIMENSIONS (e.g. exposure detector), the calibrations of DATASET_TYPES (comma-separated, e.g. bias,flat) valid during its exposure or visit.'),
    'retention': ('retention_commands', "Retention policies (butler.yaml 'retention:'): purge or move old datasets to the cold tier."),
    'recompute': ('retention_commands', 'Re-create purged datasets from their recorded provenance (and the purged inputs they need).'),
    'associate': ('selection_commands', 'Add the selected datasets to the TAGGED COLLECTION (created if missing).'),
    'disassociate': ('selection_commands', 'Remove the selected datasets from the TAGGED collection TAG (they stay in their RUNs).'),
    'prune-datasets': ('selection_commands', 'Delete the selected datasets of COLLECTIONS (or of --purge RUN), with their files (from every collection).'),
    'serve': ('server_commands', "Serve REPOS (or a --config file's) over HTTP, each at http://HOST:PORT/<its name> (clients need a token)."),
    'token': ('server_commands', 'Create, list and revoke the bearer tokens of a served repository.'),
    'grant': ('server_commands', 'Grant LEVEL (read, write, admin; none takes a grant away) on collections matching the glob PATTERN to a user, a group or everyone.'),
    'rules': ('server_commands', 'List the collection rules: who (user:NAME, group:NAME or * for everyone), on which pattern, at which level.'),
    'add-user': ('server_commands', 'Add USER to a served repository (or change their groups and administrator flag).'),
    'remove-from-group': ('server_commands', 'Take USER out of GROUP (their other groups and administrator flag stay).'),
    'whoami': ('server_commands', "Who you are in REPO (through a server, the owner of your token; on the path, the administrator), your groups, and the collection and embargo rules that apply; or USER's."),
    'embargo': ('server_commands', 'Embargo rules: datasets hidden from all but the data-rights groups until some hours after their exposure ends.'),
    'quota': ('server_commands', "Report the datasets and bytes in users' areas u/<user> (or a group's g/<group>) against their quotas; with --max-bytes/--max-datasets, set the quota of USER (or --group) first."),
    'audit': ('server_commands', 'The latest entries of the access audit log: grants, tokens, users, embargoes and their releases, quotas.'),
    'declare-catalog-schema': ('catalog_commands', 'Declare the schema of catalog DATASET_TYPE from a Felis YAML file; later puts and ingests are checked against it.'),
    'catalog-schema': ('catalog_commands', 'Show the declared schema of catalog DATASET_TYPE: its columns (datatype, unit, UCD, description).'),
    'load-catalog': ('catalog_commands', "Load the rows of DATASET_TYPE's datasets into a table of the SQL database DB_URL (sqlite:///FILE, postgresql://..., duckdb:///FILE), made from the declared schema with a _healpix_29 column; datasets loaded before are skipped."),
    'retrieve-artifacts': ('selection_commands', 'Copy the files of the selected datasets into DESTINATION, as RUN/TYPE/TYPE_KEY=VALUE_....EXT, or into one zip (--zip).'),
    'publish-catalog': ('hats_commands', 'Publish the DATASET_TYPE catalogs matching --where as a HATS catalog at DEST, or add the ones not yet published to the catalog already there.'),
    'cone-search': ('hats_commands', "Print the rows of a published catalog within --radius of (--ra, --dec): DATASET_TYPE's publication in a repository or through a server, or the HATS CATALOG directory."),
    'box-search': ('hats_commands', 'Print the rows of a published catalog inside an RA/Dec box (see cone-search for what is searched).'),
    'polygon-search': ('hats_commands', 'Print the rows of a published catalog inside a convex polygon with great-circle edges (see cone-search for what is searched).'),
}


#: The Rubin butler's commands that skybutler does in another one: what to type instead.
RUBIN_COMMANDS_ELSEWHERE: dict[str, str] = {
    "ingest-zip": "skybutler import REPO ZIP takes the Rubin butler's zips (retrieve-artifacts --zip)",
    "export-calibs": "skybutler export REPO DIRECTORY -c COLLECTIONS --format rubin writes the CALIBRATION "
                     "collections named with their validity ranges (and the RUNs of their datasets' files)",
}


def _report_error(message: str) -> None:
    from .helpers import report_error  # rich and the butler load only when there is an error to show

    report_error(message)


@contextlib.contextmanager
def _importing_without_gc() -> Iterator[None]:
    """Import a command module (and SQLAlchemy, PyYAML, ... with it) with the cyclic garbage
    collector paused, then freeze what was imported out of its reach.

    Imports make hundreds of thousands of long-lived objects and hardly any garbage, yet the
    collector walks them again and again while they load (about an eighth of a trivial
    command's start-up); frozen, later collections of a long command skip them too."""
    collecting = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        gc.freeze()
        if collecting:
            gc.enable()


class SkybutlerGroup(click.Group):
    """A click group that loads commands lazily and turns skybutler errors into a one-line
    message and exit status 1."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(COMMAND_INDEX) | set(self.commands))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name not in self.commands and cmd_name in COMMAND_INDEX:
            with _importing_without_gc():
                load_command_module(self, COMMAND_INDEX[cmd_name][0])
        return self.commands.get(cmd_name)

    def resolve_command(self, ctx: click.Context, args: list[str]) -> tuple[str | None, click.Command | None,
                                                                            list[str]]:
        if args and args[0] in RUBIN_COMMANDS_ELSEWHERE and args[0] not in COMMAND_INDEX:
            ctx.fail(f"skybutler has no {args[0]} command: {RUBIN_COMMANDS_ELSEWHERE[args[0]]}")
        return super().resolve_command(ctx, args)

    def format_commands(self, ctx: click.Context, formatter: click.HelpFormatter) -> None:
        """The command list of ``--help``, from the index (no command module is imported)."""
        limit = formatter.width - 6 - max(len(name) for name in COMMAND_INDEX)
        rows = []
        for name in self.list_commands(ctx):
            if name in COMMAND_INDEX:
                rows.append((name, click.Command(name, help=COMMAND_INDEX[name][1]).get_short_help_str(limit)))
            else:
                rows.append((name, self.commands[name].get_short_help_str(limit)))
        with formatter.section("Commands"):
            formatter.write_dl(rows)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except click.UsageError as err:  # one line naming the option, with where to read more
            if err.ctx is not None:
                err.message = f"{err.message.rstrip()} (see '{err.ctx.command_path} --help')".lstrip()
                err.ctx = None
            raise
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except Exception as err:
            if ctx.meta.get(DEBUG) or os.environ.get("SKYBUTLER_TRACEBACK"):
                raise
            if isinstance(err, (SkybutlerError, OSError)):  # the user's mistake, or a file the system refused
                _report_error(str(err))
            else:  # a failure skybutler did not foresee is a bug, but the user still gets one line
                _report_error(f"unexpected {type(err).__name__}: {' '.join(str(err).split())} (a bug in "
                              "skybutler; run with --debug to see where)")
            ctx.exit(1)


#: ``ctx.meta`` key set by ``skybutler --debug``.
DEBUG = "skybutler.debug"


def _progress(ctx: click.Context, _param: click.Parameter, value: bool | None) -> None:
    if value is not None:
        from .helpers import PROGRESS

        ctx.meta[PROGRESS] = value


def _debug(ctx: click.Context, _param: click.Parameter, value: bool) -> None:
    if value:
        ctx.meta[DEBUG] = True


@click.group(cls=SkybutlerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="skybutler")
@click.option("--debug", is_flag=True, expose_value=False, is_eager=True, callback=_debug,
              help="Show the traceback of any error (for a bug report) instead of one line.")
@click.option("--progress/--no-progress", default=None, expose_value=False, callback=_progress,
              help="Show progress bars on stderr (the default) or not, as the Rubin butler's option.")
@log_options
@click.pass_context
def cli(ctx: click.Context, **logging_options: Any) -> None:
    """skybutler: manage a data butler repository from the shell.

    Every command takes the repository directory (REPO) first.
    """
    configure_logging(ctx, **logging_options)


def load_command_module(group: click.Group, name: str) -> None:
    """Add the ``COMMANDS`` of topic module ``name`` to ``group``."""
    from .options_file import add_options_file
    from .rubin_refusals import add_refusals

    module = importlib.import_module(f"{__package__}.{name}")
    for command in module.COMMANDS:
        for each in _with_subcommands(command):
            add_options_file(each)
        add_refusals(command)
        group.add_command(command)


def _with_subcommands(command: click.Command) -> list[click.Command]:
    """``command`` if it is not a group, else its subcommands (and theirs): the commands that
    take ``-@``, each reading the section of its own name."""
    if not isinstance(command, click.Group):
        return [command]
    return [each for sub in command.commands.values() for each in _with_subcommands(sub)]


def add_command_modules(group: click.Group, modules: tuple[str, ...] = COMMAND_MODULES) -> None:
    """Add the ``COMMANDS`` of each topic module to ``group`` (every command, loaded now)."""
    for name in modules:
        load_command_module(group, name)
