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


#: The options of obs_base's commands (lsst/obs_base python/lsst/obs/base/cli/cmd/commands.py, and
#: pipe_base's register-instrument): the Rubin science stack is not on PyPI, so they are written here.
OBS_BASE = {
    "ingest-raws": {"--regex", "-c", "--config", "-C", "--config-file", "--output-run", "-t", "--transfer", "-j",
                    "--processes", "--ingest-task", "--track-file-attrs", "--no-track-file-attrs", "--fail-fast",
                    "--update-records", "--no-update-records", "--skip-existing", "--no-skip-existing",
                    "--search-indexes", "--no-search-indexes", "-@", "--options-file"},
    "define-visits": {"-C", "--config-file", "--collections", "--where", "--update-records", "--no-update-records",
                      "--incremental", "--no-incremental", "-@", "--options-file"},
    "write-curated-calibrations": {"--collection", "--label", "--prefix", "-@", "--options-file"},
    "register-instrument": {"--update"},
}


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


def test_every_obs_base_option_is_taken_or_refused_by_name():
    ctx = click.Context(cli)
    unknown = [f"{name} {o}" for name, theirs in OBS_BASE.items()
               for o in sorted(theirs - _spellings(cli.get_command(ctx, name)))]
    assert unknown == [], "obs_base options neither taken nor refused (see skybutler/cli/rubin_refusals.py)"


def test_every_refusal_is_of_an_option_the_rubin_butler_has():
    rubin = _rubin_commands()
    for name, refusals in REFUSED.items():
        theirs = _spellings(rubin[name]) if name in rubin else OBS_BASE[name]
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


def test_obs_base_flags_asking_what_skybutler_does_anyway_are_taken(tmp_path):
    """ingest-raws and define-visits take obs_base's flags whose request is skybutler's only way;
    write-curated-calibrations given a camera, as obs_base's INSTRUMENT, says what it takes instead."""
    root = tmp_path / "repo"
    Butler.create(root).close()
    raws = tmp_path / "raws"
    raws.mkdir()
    taken = run("ingest-raws", root, raws, "--skip-existing", "--no-search-indexes", "--track-file-attrs",
                "--no-update-records").stdout
    assert "0 raw(s) ingested" in taken
    defined = run("define-visits", root, "HSC", "--collections", "HSC/calib", "--incremental", "--no-update-records")
    assert "--collections is not needed" in defined.stdout and "0 visit(s) defined" in defined.stdout
    refused = " ".join(run("write-curated-calibrations", root, "lsst.obs.subaru.HyperSuprimeCam", code=2).stderr.split())
    assert "is a camera, as the Rubin command's INSTRUMENT argument" in refused and "--instrument HSC" in refused
