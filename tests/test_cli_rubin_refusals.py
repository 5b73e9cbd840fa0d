"""Every option of the Rubin butler's ``butler`` command is either taken by skybutler's command
of the same name or refused by name (``skybutler.cli.rubin_refusals``), so that a Rubin release
adding an option fails here until skybutler decides what it means; and each refusal says why,
changing nothing."""

from __future__ import annotations

import click
import pytest
from click.testing import CliRunner

from skybutler import Butler
from skybutler.cli.main import RUBIN_COMMANDS_ELSEWHERE, cli
from skybutler.cli.rubin_refusals import REFUSED
from test_cli_rubin_habits import run

pytest.importorskip("lsst.daf.butler")


def _spellings(command: click.Command) -> set[str]:
    return {o for p in command.params if isinstance(p, click.Option) for o in p.opts + p.secondary_opts}


def _rubin_commands() -> dict[str, click.Command]:
    from lsst.daf.butler.cli.butler import cli as rubin_cli

    ctx = click.Context(rubin_cli)
    return {name: rubin_cli.get_command(ctx, name) for name in rubin_cli.list_commands(ctx)}


def test_every_rubin_option_is_taken_or_refused_by_name():
    from lsst.daf.butler.cli.butler import cli as rubin_cli

    unknown = sorted(_spellings(rubin_cli) - _spellings(cli))
    ctx = click.Context(cli)
    for name, theirs in _rubin_commands().items():
        if name in RUBIN_COMMANDS_ELSEWHERE:
            continue
        mine = cli.get_command(ctx, name)
        assert mine is not None, f"the Rubin butler's {name} is neither a skybutler command nor refused"
        wanted = {o for p in theirs.params if isinstance(p, click.Option) and not p.hidden
                  for o in p.opts + p.secondary_opts}
        unknown += [f"{name} {o}" for o in sorted(wanted - _spellings(mine))]
    assert unknown == [], "Rubin options neither taken nor refused (see skybutler/cli/rubin_refusals.py)"


def test_every_refusal_is_of_an_option_the_rubin_butler_has():
    rubin = _rubin_commands()
    for name, refusals in REFUSED.items():
        theirs = _spellings(rubin[name])
        for refusal in refusals:
            assert set(refusal.spellings) <= theirs, (name, refusal.spellings)


@pytest.mark.parametrize(("name", "number"), [(n, i) for n, r in REFUSED.items() for i in range(len(r))])
def test_a_refused_rubin_option_says_why_and_changes_nothing(tmp_path, name, number):
    refusal = REFUSED[name][number]
    root = tmp_path / "repo"
    Butler.create(root).close()
    before = sorted(p.name for p in tmp_path.rglob("*"))
    target = root if name != "create" else tmp_path / "new"
    args = [name, target, *(["DIR"] if name == "import" else []), *(["t", "f.csv"] if name == "ingest-files" else []),
            *(["--run", "r"] if name == "ingest-files" else []), *([root] if name == "transfer-datasets" else [])]
    spelling = refusal.spellings[-1]
    line = [*args[:2], spelling, *(["x"] if refusal.takes_value else []), *args[2:]]
    refused = run(*line, code=2).stderr
    assert f"{refusal.spellings[0]} is the Rubin butler's and not taken" in refused
    assert refusal.why.split(";")[0][:40] in " ".join(refused.split())
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


def test_progress_and_no_progress_are_taken_before_the_command(tmp_path):
    root = tmp_path / "repo"
    export = tmp_path / "export"
    with Butler.create(root) as butler:
        butler.register_dataset_type("note", [], "Dict")
        butler.put({"a": 1}, "note", run="r")
    shown = run("--progress", "export", root, export).stderr
    assert "exporting datasets" in shown
    quiet = run("--no-progress", "export", root, tmp_path / "again")
    assert quiet.stderr == "" and "exported 1 datasets" in quiet.stdout
    from lsst.daf.butler.cli.butler import cli as rubin_cli  # the same spelling the Rubin command takes

    assert CliRunner().invoke(rubin_cli, ["--no-progress", "--help"]).exit_code == 0


def test_a_group_subcommand_reads_its_section_of_an_options_file(tmp_path):
    root = tmp_path / "repo"
    Butler.create(root).close()
    options = tmp_path / "options.yaml"
    options.write_text("retention:\n  status:\n    json: true\n")
    assert run("retention", "status", root, "-@", options).stdout.lstrip().startswith(("[", "{"))
    options.write_text("status:\n  json: true\n")
    refused = run("retention", "status", root, "-@", options, code=2).stderr
    assert "Error reading overrides file" in refused and "no section 'retention'" in refused
    options.write_text("retention:\n  status:\n    bogus: 1\n")
    assert "'bogus' is not a valid option for retention status" in run("retention", "status", root, "-@", options,
                                                                       code=2).stderr
