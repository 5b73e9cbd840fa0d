"""The Rubin butler's global logging options, taken by ``skybutler`` before the command:
``--log-level``, ``--long-log``, ``--log-file``, ``--log-tty/--no-log-tty`` and ``--log-label``.

They change only Python's logging for the one invocation: every handler added here is taken
off (and a file closed) when the command ends, so a caller running several commands in one
process (tests, notebooks) does not collect handlers."""

from __future__ import annotations

import datetime
import json
import logging
import sys
from collections.abc import Callable
from typing import Any

import click

#: The logger of the warnings the CLI prints itself (``helpers.report_warning``); its own
#: NullHandler keeps Python's last-resort handler from printing them a second time when no
#: logging option is given.  Defined here, not in ``helpers``, so that the command group loads
#: no butler (nor SQLAlchemy) before a command needs one.
CLI_LOGGER = "skybutler.cli"
logging.getLogger(CLI_LOGGER).addHandler(logging.NullHandler())

#: The levels ``--log-level`` takes (the Rubin butler's, VERBOSE and TRACE among them).
LOG_LEVELS = {"CRITICAL": 50, "ERROR": 40, "WARNING": 30, "INFO": 20, "VERBOSE": 15, "DEBUG": 10, "TRACE": 5}

#: The line of a record, short and with ``--long-log`` (time in UTC, labels, where logged).
SHORT_FORMAT = "%(levelname)s %(name)s: %(message)s"
LONG_FORMAT = "%(levelname)s %(asctime)s %(name)s (%(labels)s)(%(filename)s:%(lineno)d) - %(message)s"


class _Labels(logging.Filter):
    """Adds the ``--log-label`` pairs to each record: ``MDC`` (a dict, as the Rubin butler's
    records carry them) and ``labels`` (``KEY=value,...`` for a text line)."""

    def __init__(self, labels: dict[str, str]) -> None:
        super().__init__()
        self.labels = labels

    def filter(self, record: logging.LogRecord) -> bool:
        record.MDC = dict(self.labels)
        record.labels = ",".join(f"{k}={v}" for k, v in self.labels.items())
        return True


class _UtcFormatter(logging.Formatter):
    """A record's time as ISO 8601 in UTC to the millisecond."""

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        when = datetime.datetime.fromtimestamp(record.created, tz=datetime.UTC)
        return when.isoformat(sep="T", timespec="milliseconds")


class _JsonFormatter(_UtcFormatter):
    """One JSON object a line, with the fields of the Rubin butler's JSON log records that a
    reader needs (name, time, level, message, where, labels)."""

    def format(self, record: logging.LogRecord) -> str:
        return json.dumps({"name": record.name, "asctime": self.formatTime(record), "levelname": record.levelname,
                           "levelno": record.levelno, "message": record.getMessage(), "filename": record.filename,
                           "lineno": record.lineno, "funcName": record.funcName, "process": record.process,
                           "MDC": getattr(record, "MDC", {})})


def _levels(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> list[tuple[str | None, int]]:
    """``LEVEL`` (skybutler's loggers), ``skybutler.retention=DEBUG`` (one) or ``.=DEBUG`` (the
    root logger), as the Rubin butler's ``--log-level`` takes them: (logger name, level)."""
    levels: list[tuple[str | None, int]] = []
    for value in values:
        name, _, level = value.rpartition("=")
        if level.upper() not in LOG_LEVELS:
            raise click.BadParameter(f"{value!r}: the level is one of {', '.join(LOG_LEVELS)}", param=param)
        levels.append((None if name == "." else name or "skybutler", LOG_LEVELS[level.upper()]))
    return levels


def _labels(_ctx: click.Context, param: click.Parameter, values: tuple[str, ...]) -> dict[str, str]:
    """``KEY=VALUE`` pairs (repeatable or comma-separated), keys upper-cased as the Rubin butler's."""
    labels: dict[str, str] = {}
    for item in (part for value in values for part in value.split(",") if part):
        key, sep, text = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param=param)
        labels[key.upper()] = text
    return labels


def _files(_ctx: click.Context, _param: click.Parameter, values: tuple[str, ...]) -> list[str]:
    return [part for value in values for part in value.split(",") if part]


def log_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add the logging options to the ``skybutler`` group; ``configure_logging`` applies them."""
    for option in reversed((
        click.option("--log-level", multiple=True, callback=_levels, metavar="LEVEL|COMPONENT=LEVEL",
                     help="Log at this level (repeatable): skybutler's loggers, one by name "
                          f"(skybutler.retention=DEBUG), or the root logger (.=LEVEL); levels {'|'.join(LOG_LEVELS)}."),
        click.option("--long-log", is_flag=True,
                     help="Log lines with the time (UTC), the --log-label pairs and the file and line logging."),
        click.option("--log-file", multiple=True, callback=_files, metavar="PATH",
                     help="Also append the log to PATH (repeatable or comma-separated); a PATH ending in .json "
                          "gets one JSON record a line."),
        click.option("--log-tty/--no-log-tty", default=True, help="Log to the terminal (stderr; the default) or not."),
        click.option("--log-label", multiple=True, callback=_labels, metavar="KEY=VALUE",
                     help="Add KEY=VALUE to every log record (repeatable or comma-separated; shown by --long-log "
                          "and in a JSON --log-file)."),
    )):
        command = option(command)
    return command


def configure_logging(ctx: click.Context, log_level: list[tuple[str | None, int]], long_log: bool,
                      log_file: list[str], log_tty: bool, log_label: dict[str, str]) -> None:
    """Set the levels and add the handlers asked for, taking the handlers off when ``ctx`` closes.
    Nothing is changed when no logging option is given (Python's own last-resort output stays)."""
    if not (log_level or long_log or log_file or not log_tty or log_label):
        return
    for name, level in log_level:
        logging.getLogger(name).setLevel(level)
    text = _UtcFormatter(LONG_FORMAT if long_log else SHORT_FORMAT)
    handlers: list[logging.Handler] = [logging.StreamHandler(sys.stderr) if log_tty else logging.NullHandler()]
    handlers[0].setFormatter(text)
    handlers[0].addFilter(lambda record: record.name != CLI_LOGGER)  # printed on the terminal already
    for path in log_file:
        handler = logging.FileHandler(path, encoding="utf-8")
        handler.setFormatter(_JsonFormatter() if path.endswith(".json") else text)
        handlers.append(handler)
    root = logging.getLogger()
    labels = _Labels(log_label)
    for handler in handlers:
        handler.addFilter(labels)
        root.addHandler(handler)

    def remove() -> None:
        for handler in handlers:
            root.removeHandler(handler)
            handler.close()

    ctx.call_on_close(remove)
