"""The ``skybutler`` command group and the registry of topic modules that fill it.

To add commands, write a module in this package that defines ``COMMANDS`` (a
sequence of click commands) and append its name to :data:`COMMAND_MODULES`.
Errors a user can cause (:class:`~skybutler.errors.SkybutlerError`) are reported
here once, as ``error: <message>`` on stderr with exit status 1; so are the system's
refusals (``OSError``) and, naming their type, errors nobody foresaw (``SKYBUTLER_TRACEBACK=1``
shows their traceback instead).
"""

from __future__ import annotations

import importlib
import os
from typing import Any

import click

from ..errors import SkybutlerError
from .helpers import report_error

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
)


class SkybutlerGroup(click.Group):
    """A click group that turns skybutler errors into a one-line message and exit status 1."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except SkybutlerError as err:
            report_error(str(err))
            ctx.exit(1)
        except (click.exceptions.ClickException, click.exceptions.Exit, click.exceptions.Abort):
            raise
        except OSError as err:  # a file or directory the system refused: the message names it
            report_error(str(err))
            ctx.exit(1)
        except Exception as err:
            if os.environ.get("SKYBUTLER_TRACEBACK"):
                raise
            # A failure skybutler did not foresee is a bug, but the user still gets one line.
            report_error(f"unexpected {type(err).__name__}: {' '.join(str(err).split())} (a bug in skybutler; "
                         "set SKYBUTLER_TRACEBACK=1 to see where)")
            ctx.exit(1)


@click.group(cls=SkybutlerGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="skybutler")
def cli() -> None:
    """skybutler: manage a data butler repository from the shell.

    Every command takes the repository directory (REPO) first.
    """


def add_command_modules(group: click.Group, modules: tuple[str, ...] = COMMAND_MODULES) -> None:
    """Add the ``COMMANDS`` of each topic module to ``group``."""
    for name in modules:
        module = importlib.import_module(f"{__package__}.{name}")
        for command in module.COMMANDS:
            group.add_command(command)


add_command_modules(cli)
