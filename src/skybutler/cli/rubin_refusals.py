"""The Rubin butler's command-line options that have no meaning in skybutler, in one place:
each is taken by the parser (so a Rubin user's command line is not misread) and refused by
name, saying why and what to type instead (exit status 2, nothing changed).

``tests/test_cli_rubin_refusals.py`` walks the Rubin ``butler`` command and fails on any of its
options that skybutler's same command neither accepts nor refuses here, so that a new Rubin
release's options are noticed.
"""

from __future__ import annotations

from typing import NamedTuple

import click


class Refusal(NamedTuple):
    """A Rubin option's spellings, whether it takes a value, and why skybutler refuses it."""

    spellings: tuple[str, ...]
    takes_value: bool
    why: str


def _short(letter: str, long: str, convention: str) -> Refusal:
    """The Rubin butler's short spelling ``-letter`` of ``long``, which in every skybutler
    command means ``convention`` (one short option, one meaning: see the user guide)."""
    return Refusal((f"-{letter}",), True, f"here -{letter} is {convention} in every command; spell it {long}")


_RAW_TASK = ("the Rubin RawIngestTask's configuration has no counterpart: skybutler reads each header with its "
             "camera's translator and stored description (register-instrument); --run, --transfer and -j are "
             "its options")
_NO_UPDATE = ("records once written are kept: to change a camera's description (and the visits defined after), "
              "use 'skybutler register-instrument REPO CAMERA --update'")

_NO_TRACK_FILE_ATTRS = Refusal(("--no-track-file-attrs",), False,
                              "skybutler records every stored file's size and checksum (verify and get rely on "
                              "them); a repository made with 'skybutler create --checksum none' records no checksum")

#: Each command's refused Rubin options.
REFUSED: dict[str, tuple[Refusal, ...]] = {
    "associate": (_short("d", "--dataset-type", "--where (as pipetask -d)"),),
    "retrieve-artifacts": (_short("d", "--dataset-type", "--where (as pipetask -d)"),),
    "query-collections": (Refusal(("-t",), False, "here -t is --transfer in every command; spell it "
                                                   "--show-dataset-types"),),
    "config-validate": (_short("d", "--dataset-type", "--where (as pipetask -d)"),
                        _short("i", "--ignore", "--input (as pipetask -i)")),
    "config-dump": (
        _short("s", "--subset", "--storage-class"),
        Refusal(("-p", "--searchpath"), True,
                "skybutler reads REPO/butler.yaml alone, with built-in defaults, never a search path of config "
                "files: 'skybutler config-dump REPO' shows what the repository uses"),
    ),
    "create": (
        Refusal(("--dimension-config",), True,
                "skybutler repositories use a universe it ships ('universe:' in butler.yaml); to make a repository "
                "with another universe, use --seed-config FILE holding 'universe: NAME'"),
        Refusal(("--standalone",), False,
                "butler.yaml names the values it changes and takes built-in defaults for the rest; "
                "'skybutler config-dump REPO' prints every value resolved"),
        Refusal(("--override",), False,
                "a --seed-config file always overrides the defaults of the keys it names (nothing else can)"),
        Refusal(("-f", "--outfile"), True,
                "a repository's configuration is REPO/butler.yaml and nowhere else; write a copy with "
                "'skybutler config-dump REPO --file FILE'"),
    ),
    "import": (
        Refusal(("-s", "--skip-dimensions"), True,
                "the import inserts only the dimension records REPO lacks (those it has cost nothing); leave the "
                "option out"),
        _NO_TRACK_FILE_ATTRS,
    ),
    "ingest-files": (
        _NO_TRACK_FILE_ATTRS,
    ),
    "transfer-datasets": (
        _short("d", "--dataset-type", "--where (as pipetask -d)"),
        Refusal(("--no-transfer-dimensions",), False,
                "TARGET gets the dimension records it lacks and only those (the ones it has cost nothing); "
                "leave the option out"),
    ),
    # obs_base's commands (the Rubin science stack's, not on PyPI: tests/test_cli_rubin_refusals.py
    # holds their options)
    "ingest-raws": (
        Refusal(("--regex",), True,
                "skybutler takes the files named and the *.fits, *.fit, *.fits.gz and *.fits.fz files under the "
                "directories named; name other files one by one (a shell glob)"),
        Refusal(("-c", "--config"), True, _RAW_TASK),
        Refusal(("-C", "--config-file"), True, _RAW_TASK),
        Refusal(("--ingest-task",), True, _RAW_TASK),
        _NO_TRACK_FILE_ATTRS,
        Refusal(("--fail-fast",), False,
                "every file that can go in does, and each one that cannot is listed with its reason (exit "
                "status 1) and stays where it was"),
        Refusal(("--update-records",), False, _NO_UPDATE),
        Refusal(("--no-skip-existing",), False,
                "a raw already ingested (the same file, the same deterministic dataset ID) is listed as such, "
                "never an error"),
        Refusal(("--search-indexes",), False, "skybutler reads each file's header; it reads no index files"),
    ),
    "define-visits": (
        Refusal(("-C", "--config-file"), True,
                "skybutler defines one visit per science exposure, with no task configuration; --exposure and "
                "--where choose the exposures"),
        Refusal(("--update-records",), False, _NO_UPDATE),
    ),
    "write-curated-calibrations": tuple(
        Refusal((spelling,), True,
                "skybutler ingests a DIRECTORY of curated calibration files into RUNs "
                "<collection>/curated/<valid start>; --collection names the CALIBRATION collection")
        for spelling in ("--label", "--prefix")),
}

#: Rubin flags skybutler takes and needs nothing for: what each asks for is what it always does.
TAKEN: dict[str, tuple[str, ...]] = {
    "ingest-raws": ("--track-file-attrs", "--skip-existing", "--no-update-records", "--no-search-indexes"),
    "define-visits": ("--no-update-records", "--incremental", "--no-incremental"),
}


#: The Rubin butler's transfer modes (``retrieve-artifacts`` and ``transfer-datasets`` refuse all
#: but auto and copy: the files they write must not depend on the repository's).
RUBIN_TRANSFER_CHOICES = ("auto", "link", "symlink", "hardlink", "copy", "move", "relsymlink", "direct")


def _refuse(why: str):  # noqa: ANN202 - a click callback
    def callback(ctx: click.Context, param: click.Parameter, value: object) -> None:
        if value:
            raise click.UsageError(f"{param.opts[0]} is the Rubin butler's and not taken: {why}", ctx)
    return callback


#: The name of each refusal's hidden option starts with this.
REFUSAL_PREFIX = "rubin_refused_"


def is_refusal(param: click.Parameter) -> bool:
    """Whether ``param`` is a refused Rubin option (not one skybutler takes)."""
    return str(param.name).startswith(REFUSAL_PREFIX)


def add_refusals(command: click.Command) -> None:
    """Give ``command`` a hidden option for each Rubin option it refuses (once), and a hidden flag
    doing nothing for each it takes as a no-op."""
    taken = {opt for param in command.params for opt in param.opts + getattr(param, "secondary_opts", [])}
    for number, spelling in enumerate(TAKEN.get(str(command.name), ())):
        if spelling not in taken:
            command.params.append(click.Option([spelling, f"rubin_taken_{number}"], is_flag=True, hidden=True,
                                               expose_value=False))
    for number, refusal in enumerate(REFUSED.get(str(command.name), ())):
        if taken.isdisjoint(refusal.spellings):
            command.params.append(click.Option(
                [*refusal.spellings, f"{REFUSAL_PREFIX}{number}"], is_flag=not refusal.takes_value, hidden=True,
                expose_value=False, callback=_refuse(refusal.why)))
