"""``python -m skybutler.cli``: the same as the ``skybutler`` command."""

from .main import cli

cli(prog_name="skybutler")
