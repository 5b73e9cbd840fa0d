"""More of the Rubin butler's command-line options, each run through the Rubin butler's own
``butler`` command on a Rubin repository (the oracle) and through ``skybutler`` on its
import: ``-@``/``--options-file``.  The repositories and helpers are those of
``test_cli_rubin_habits``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from test_cli_rubin_habits import both_outputs, ids, imported_rubin_pair, run


@pytest.fixture(scope="module")
def rubin_pair(tmp_path_factory):
    return imported_rubin_pair(tmp_path_factory.mktemp("rubin_options"))


@pytest.fixture
def fresh_rubin_pair(tmp_path):
    """A Rubin repository and its skybutler twin that a test may change."""
    return imported_rubin_pair(tmp_path)


def _rubin(*args: object):
    from lsst.daf.butler.cli.butler import cli as rubin_cli

    return CliRunner().invoke(rubin_cli, [str(a) for a in args])


@pytest.fixture
def options(tmp_path) -> Path:
    path = tmp_path / "options.yaml"
    path.write_text("query-datasets:\n"
                    "  collections: [Cam/run1]\n"
                    "  where: instrument = 'Cam' AND visit = 2\n"
                    "  order-by: [-detector]\n"
                    "query-collections:\n"
                    "  chains: flatten\n"
                    "query-dataset-types:\n"
                    "  v: true\n")
    return path


@pytest.mark.parametrize("extra", [[], ["--where", "instrument = 'Cam' AND visit = 1"], ["--limit", "2"]], ids=str)
def test_an_options_file_gives_defaults_the_command_line_overrides(rubin_pair, options, extra):
    mine, theirs = both_outputs(rubin_pair, ["query-datasets", "{repo}", "summary", "-@", str(options), *extra])
    assert ids(mine) == ids(theirs) and len(ids(theirs)) == (2 if "--limit" in extra else 3)
    mine, theirs = both_outputs(rubin_pair, ["query-collections", "{repo}", "Cam/defaults", "--options-file",
                                             str(options)])
    for listed in (mine, theirs):  # --chains flatten: the chain's children, not the chain
        assert all(n in listed for n in ("Cam/best", "Cam/run1", "Cam/calib")) and "Cam/defaults" not in listed


@pytest.mark.parametrize(("text", "says"), [
    ("query-datasets:\n  bogus: 1\n", "'bogus' is not a valid option for query-datasets"),
    ("query-collections:\n  chains: flatten\n", "query-datasets"),
])
def test_an_options_file_with_an_unknown_option_or_no_section_is_refused(rubin_pair, tmp_path, text, says):
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    theirs = _rubin("query-datasets", rubin_pair[0], "summary", "-@", path)
    assert theirs.exit_code == 2 and "Error reading overrides file" in theirs.output and says in theirs.output
    mine = run("query-datasets", rubin_pair[1], "summary", "-@", path, code=2).stderr
    assert "Error reading overrides file" in mine and says in mine
