"""``-@ FILE`` / ``--options-file FILE`` on every command: default option values read from a
YAML file, as the Rubin butler's command takes them.

The file maps command names to their options, each named by one of its spellings without
the leading dashes (``collections``, ``order-by``, ``c``), or an argument by its name
(``repo``)::

    query-datasets:
      collections: [u/ana/current]
      order-by: visit,detector

A subcommand of a group (``retention apply``, ``token create``, ...) reads its section inside
its group's (``retention: {apply: {...}}``).  Values given on the command line win; an option the command does not have, or a file
without a section for the command, is refused by name (exit status 2), as the Rubin
command refuses it.  A single value for an option taking several is taken as a list of one
(the Rubin command refuses it).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click

OPTION_NAME = "options_file"


def _parameter_for(command: click.Command, key: str, where: str) -> click.Parameter:
    """The parameter of ``command`` spelled ``key`` (an option without its dashes, or an
    argument's name)."""
    for param in command.params:
        if key in (opt.lstrip("-") for opt in param.opts):
            return param
    raise ValueError(f"{key!r} is not a valid option for {where}")


def _command_names(ctx: click.Context) -> list[str]:
    """The names leading from the top command to this one: ``['retention', 'apply']``."""
    names = []
    while ctx.parent is not None:
        names.append(str(ctx.info_name))
        ctx = ctx.parent
    return names[::-1] or [str(ctx.command.name)]


def _read_presets(path: str, command: click.Command, names: list[str]) -> dict[str, Any]:
    """The default values ``path`` gives ``command`` (reached by ``names``), keyed by parameter name."""
    import yaml

    from .helpers import read_text

    try:
        loaded = yaml.safe_load(read_text(Path(path)))
    except yaml.YAMLError as err:
        raise ValueError(f"not YAML: {' '.join(str(err).split())}") from None
    section = loaded
    for depth, name in enumerate(names, 1):
        where = " ".join(names[:depth])
        if not isinstance(section, dict) or name not in section:
            raise ValueError(f"no section {where!r} (the file maps command names to their options)")
        section = section[name]
        if not isinstance(section, dict):
            raise ValueError(f"section {where!r} is not a mapping of option names to values")
    presets: dict[str, Any] = {}
    for key, value in section.items():
        param = _parameter_for(command, str(key), " ".join(names))
        takes_many = getattr(param, "multiple", False) or param.nargs == -1
        if takes_many and not isinstance(value, list):
            value = [value]
        presets[str(param.name)] = value
    return presets


def _apply(ctx: click.Context, param: click.Parameter, value: str | None) -> None:
    if not value:
        return
    try:
        presets = _read_presets(value, ctx.command, _command_names(ctx))
    except (ValueError, click.ClickException) as err:
        message = err.format_message() if isinstance(err, click.ClickException) else str(err)
        raise click.BadOptionUsage(OPTION_NAME, f"Error reading overrides file {value}: {message}", ctx) from None
    ctx.default_map = {**(ctx.default_map or {}), **presets}


def add_options_file(command: click.Command) -> None:
    """Give ``command`` the ``-@``/``--options-file`` option (once)."""
    if any(p.name == OPTION_NAME for p in command.params):
        return
    command.params.append(click.Option(
        ["-@", "--options-file", OPTION_NAME], metavar="FILE", expose_value=False, callback=_apply,
        help="YAML file of default options: a section per command name, each option named without its "
             "dashes (the command line wins)."))
