"""The command line as a survey user meets it: output in a pipe, start-up, the commands a
Rubin user reaches for, and one meaning per option letter across every command."""

from __future__ import annotations

import csv
import io
import json
import subprocess
import sys
from pathlib import Path

import click
from click.testing import CliRunner

from conftest import run_cli as run
from skybutler import Butler
from skybutler.cli.main import COMMAND_INDEX, add_command_modules, cli
from skybutler.cli.rubin_refusals import is_refusal

LONG_RUN = "u/someone/a-very-long-collection-name-for-the-nightly-reprocessing/20261203T171800Z"


def put_metrics(repo: Path, run_name: str, *visits: int) -> list[str]:
    with Butler(repo) as b:
        return [str(b.put({"v": v}, "metrics", instrument="Cam", visit=v, detector=1, run=run_name).id)
                for v in visits]


# -- output in a pipe ---------------------------------------------------------


def test_tables_in_a_pipe_are_never_wrapped(butler):
    repo = butler.root
    (dataset_id,) = put_metrics(repo, LONG_RUN, 1)
    out = run("query-datasets", repo, "metrics", "-c", LONG_RUN).stdout
    lines = out.splitlines()
    # The header names every column whole, and the one row holds the whole UUID and RUN name.
    (header,) = [line for line in lines if "dataset_id" in line]
    assert all(f" {name} " in header for name in ("dataset_id", "run", "instrument", "visit", "detector"))
    (row,) = [line for line in lines if dataset_id in line]
    assert LONG_RUN in row and " Cam " in row and " 1 " in row
    assert len(row) > 80
    out = run("query-collections", repo).stdout
    assert any(LONG_RUN in line and "run" in line for line in out.splitlines())



def test_names_with_emoji_codes_print_as_typed(tmp_path):
    """rich would print ``:cat:`` as an emoji: a name or doc holding one must come out as typed."""
    repo = tmp_path / "repo"
    Butler.create(repo).close()
    assert "u/ana/:cat:" in run("register-collection", repo, "u/ana/:cat:", "--type", "run", "--doc",
                                "see :warning: first").stdout
    (row,) = [line for line in run("query-collections", repo).stdout.splitlines() if "u/ana" in line]
    assert "u/ana/:cat:" in row and "see :warning: first" in row
    assert ":cat:" in run("remove-runs", repo, "u/ana/:cat:", "--yes").stdout

# -- start-up -----------------------------------------------------------------


def test_the_cli_group_imports_no_heavy_library():
    """``skybutler --help`` must not pay for astropy, pandas, pyarrow or dask (nor SQLAlchemy)."""
    code = ("import sys, skybutler.cli.main; "
            "print(sorted(m for m in ('astropy', 'pandas', 'pyarrow', 'dask', 'sqlalchemy') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True).stdout
    assert json.loads(out.replace("'", '"')) == []
    help_text = subprocess.run([sys.executable, "-m", "skybutler.cli", "--help"], check=True, capture_output=True,
                               text=True).stdout
    assert "query-collections" in help_text and "List collections whose names match" in help_text


#: Libraries a command that reads no dataset must not load (SQLAlchemy it needs), nor rich
#: when it prints no table (``--json``, ``--csv``).
HEAVY_FOR_A_TRIVIAL_COMMAND = ("astropy", "pyarrow", "numpy", "pandas", "dask", "lsst.sphgeom", "lark", "erfa",
                               "fsspec", "rich", "pydantic", "pydantic_core", "rich._emoji_codes",
                               # registry stores made on first use (see Registry)
                               "skybutler.registry.dataset_state_store", "skybutler.registry.metadata_store",
                               "skybutler.registry.user_tables", "skybutler.registry.catalog_schema_store",
                               "skybutler.registry.access_store")


def test_a_trivial_command_imports_no_heavy_library(tmp_path):
    """``query-collections`` on a small repository opens the butler and lists collections without
    loading astropy, pyarrow, numpy, pandas, dask, sphgeom, the query parser, fsspec or pydantic
    (the data model is plain classes; only the server and remote client speak pydantic) nor rich's
    table of emoji names; as JSON or CSV, without rich either (only a table needs it)."""
    repo = tmp_path / "repo"
    with Butler.create(repo) as butler:
        butler.collections.register("run/a", "RUN")
        butler.collections.register("tagged/b", "TAGGED")
    code = ("import sys\n"
            "from skybutler.cli.main import cli\n"
            "try:\n"
            f"    cli(['query-collections', {str(repo)!r}, '--json'])\n"
            "except SystemExit as exit:\n"
            "    assert not exit.code, exit.code\n"
            f"print(sorted(m for m in {HEAVY_FOR_A_TRIVIAL_COMMAND!r} if m in sys.modules), file=sys.stderr)\n")
    done = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    assert sorted(c["name"] for c in json.loads(done.stdout)) == ["run/a", "tagged/b"]
    assert done.stderr.strip() == "[]"
    done = subprocess.run([sys.executable, "-c", code.replace("'--json'", "'--csv'")], check=True,
                          capture_output=True, text=True)
    assert done.stdout.splitlines()[1:] == ["run/a,run,,", "tagged/b,tagged,,"]
    assert done.stderr.strip() == "[]"
    table = subprocess.run([sys.executable, "-c", code.replace(", '--json'", "").replace("'rich'", "'dask'")],
                           check=True, capture_output=True, text=True)  # a table prints through rich
    assert "tagged/b" in table.stdout and table.stderr.strip() == "[]", table.stderr


def test_loading_a_command_pauses_the_collector_and_gives_it_back(tmp_path):
    """A command's module (with SQLAlchemy and the rest) is imported without the cyclic garbage
    collector walking it over and over, and frozen out of its reach; then the collector is as
    it was (on, or off if the caller turned it off)."""
    repo = tmp_path / "repo"
    Butler.create(repo).close()
    for before in ("gc.enable()", "gc.disable()"):
        code = (f"import gc, sys\n{before}\nfrom skybutler.cli.main import cli\n"
                "cli(['query-collections', sys.argv[1], '--json'], standalone_mode=False)\n"
                "print(gc.isenabled(), gc.get_freeze_count() > 10_000, file=sys.stderr)\n")
        done = subprocess.run([sys.executable, "-c", code, str(repo)], check=True, capture_output=True, text=True)
        assert done.stderr.split() == [str(before == "gc.enable()"), "True"]


def test_the_command_index_matches_the_commands():
    """The index ``--help`` reads (to import nothing) names every command of every module,
    with the help its docstring gives."""
    group = click.Group()
    add_command_modules(group)
    assert {name: (cmd.callback.__module__.rsplit(".", 1)[1], cmd.get_short_help_str(limit=1000))
            for name, cmd in group.commands.items()} == COMMAND_INDEX
    assert set(cli.list_commands(click.Context(cli))) == set(COMMAND_INDEX)


# -- the commands a Rubin user reaches for ------------------------------------


def test_collection_chain_remove_and_pop(butler):
    repo = butler.root
    for name in ("a", "b", "c", "d"):
        butler.collections.register(name, "run")
    assert run("collection-chain", repo, "chain", "a", "b", "c", "d").stdout.strip() == "chain = a, b, c, d"
    assert run("collection-chain", repo, "chain", "b", "d", "--mode", "remove").stdout.strip() == "chain = a, c"
    run("collection-chain", repo, "chain", "b", "d", "--mode", "extend")
    assert run("collection-chain", repo, "chain", "--mode", "pop").stdout.strip() == "chain = c, b, d"
    assert run("collection-chain", repo, "chain", "--mode", "pop", "--", "-1", "0").stdout.strip() == "chain = b"
    for args, message in [(("x", "--mode", "remove"), "x not in chain 'chain'"),
                          (("5", "--mode", "pop"), "no position 5"),
                          (("--mode", "remove"), "--mode remove needs at least one child"),
                          (("first", "--mode", "pop"), "takes positions (integers), got 'first'")]:
        result = run("collection-chain", repo, "chain", *args, code=1 if "position 5" in message or "not in" in message
                     else 2)
        (line,) = [line for line in result.stderr.splitlines() if message in line]
        assert line.startswith(("error: ", "Error: ")), result.stderr
    assert Butler(repo).collections.get_chain("chain") == ("b",)


def test_associate_and_disassociate(butler):
    repo = butler.root
    ids = put_metrics(repo, "run/b", 1, 2)
    out = run("associate", repo, "best", "--dataset-type", "metrics", "-c", "run/b", "-w", "visit = 2").stdout
    assert "associated 1 dataset(s) with best" in out
    with Butler(repo) as b:
        assert [str(r.id) for r in b.query_datasets("metrics", collections="best")] == [ids[1]]
    run("associate", repo, "best", "--dataset-type", "metrics", "-c", "run/b")
    out = run("disassociate", repo, "best", "--dataset-type", "metrics", "-c", "best", "-w", "visit = 1").stdout
    assert "disassociated 1 dataset(s) from best" in out
    with Butler(repo) as b:
        assert [str(r.id) for r in b.query_datasets("metrics", collections="best")] == [ids[1]]
        assert len(list(b.query_datasets("metrics", collections="run/b"))) == 2
    result = run("associate", repo, "best", "-c", "run/b", code=2)
    assert "--dataset-type" in result.stderr and "Traceback" not in result.stderr


def test_prune_datasets(butler):
    repo = butler.root
    ids = put_metrics(repo, "run/b", 1, 2)
    out = run("prune-datasets", repo, "run/b", "--datasets", "metrics", "-w", "visit = 1", "--dry-run").stdout
    assert ids[0] in out and ids[1] not in out and "1 dataset(s) would be deleted" in out
    result = run("prune-datasets", repo, "run/b", "--datasets", "metrics", "-w", "visit = 1", code=1)
    assert "pass --yes" in result.stderr
    with Butler(repo) as b:
        uri = b.get_uri("metrics", instrument="Cam", visit=1, detector=1, collections="run/b")
        assert b.datastore.fs.exists(uri)
    out = run("prune-datasets", repo, "run/b", "--datasets", "metrics", "-w", "visit = 1", "--no-confirm").stdout
    assert "deleted 1 dataset(s)" in out
    with Butler(repo) as b:
        assert [str(r.id) for r in b.query_datasets("metrics", collections="run/b")] == [ids[1]]
        assert not b.datastore.fs.exists(uri)  # the file went too (a local file or an S3 object)


def test_query_datasets_show_uri(butler):
    repo = butler.root
    ids = put_metrics(repo, "run/b", 1, 2)
    rows = json.loads(run("query-datasets", repo, "metrics", "-c", "run/b", "--show-uri", "--json").stdout)
    with Butler(repo) as b:
        expected = {str(r.id): b.get_uri(r) for r in b.query_datasets("metrics", collections="run/b")}
        assert all(b.datastore.fs.exists(u) for u in expected.values())  # local files or S3 objects
    assert {row["dataset_id"]: row["uri"] for row in rows} == expected and set(expected) == set(ids)
    assert "uri" not in json.loads(run("query-datasets", repo, "metrics", "-c", "run/b", "--json").stdout)[0]


def test_remove_dataset_type(butler):
    repo = butler.root
    butler.register_dataset_type("unused", ["instrument", "detector"], "Dict")
    put_metrics(repo, "run/b", 1, 2)
    result = run("remove-dataset-type", repo, "metrics", code=1)
    assert result.stderr.strip() == ("error: dataset type 'metrics' still has 2 dataset(s), in RUN(s) run/b; "
                                     "remove them first")
    assert "dataset type 'nope' is not registered" in run("remove-dataset-type", repo, "nope", code=1).stderr
    # one refused removes none: not the unused type named before it
    assert "'metrics' still has 2" in run("remove-dataset-type", repo, "unused", "metrics", code=1).stderr
    assert "'nope' is not registered" in run("remove-dataset-type", repo, "unused", "nope", code=1).stderr
    with Butler(repo) as b:
        assert sorted(t.name for t in b.query_dataset_types()) == ["metrics", "unused"]
    assert run("remove-dataset-type", repo, "unused").stdout.strip() == "removed dataset type unused"
    with Butler(repo) as b:
        assert sorted(t.name for t in b.query_dataset_types()) == ["metrics"]


def test_config_validate(make_butler):
    good = make_butler("good")
    good.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    assert run("config-validate", good.root).stdout.strip() == (
        f"the configuration of {good.root} is valid (1 dataset type(s) checked)")
    vague = make_butler("vague", templates={"metrics": "{run}/{dataset_type}/{visit}"})
    vague.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    vague.register_dataset_type("other", ["instrument", "visit", "detector"], "Dict")
    result = run("config-validate", vague.root, code=1)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 2 and "of metrics does not name instrument, detector" in lines[0], result.stderr
    assert lines[1] == f"error: 1 problem(s) in the configuration of {vague.root}"
    (vague.root / "butler.yaml").write_text("templates: [not, a, mapping]\n")
    result = run("config-validate", vague.root, code=1)
    assert result.stderr.startswith("error: ") and "butler.yaml line 1: templates" in result.stderr, result.stderr


# -- one meaning per letter ---------------------------------------------------

#: The CLI's short options: each letter means one long option in every command (the
#: user guide's "Command-line conventions" lists the same table).
SHORT_OPTIONS = {"-b": "--butler", "-c": "--collections", "-d": "--where", "-w": "--where", "-g": "--graph",
                 "-h": "--help", "-i": "--input", "-j": "--processes", "-o": "--output", "-s": "--storage-class",
                 "-t": "--transfer", "-v": "--verbose", "-y": "--yes", "-q": "--quiet", "-@": "--options-file"}


def every_command(group: click.Group, prefix: str = "") -> dict[str, click.Command]:
    """Every command of ``group`` by its full name (``retention apply``), groups walked."""
    out: dict[str, click.Command] = {}
    for name, command in group.commands.items():
        if isinstance(command, click.Group):
            out.update(every_command(command, f"{prefix}{name} "))
        else:
            out[prefix + name] = command
    return out


def test_each_short_option_means_one_long_option_everywhere():
    group = click.Group(context_settings={"help_option_names": ["-h", "--help"]})
    add_command_modules(group)
    commands = every_command(group)
    assert len(commands) > 40
    wrong = []
    for name, command in sorted(commands.items()):
        ctx = click.Context(command, parent=click.Context(group), info_name=name)
        for param in command.get_params(ctx):
            if not isinstance(param, click.Option) or is_refusal(param):  # a Rubin spelling refused by name
                continue
            names = param.opts + param.secondary_opts
            long_name = next(o for o in names if o.startswith("--"))
            for short in (o for o in names if not o.startswith("--")):
                if SHORT_OPTIONS.get(short) != long_name:
                    wrong.append(f"{name}: {short} is {long_name}, the convention says {SHORT_OPTIONS.get(short)}")
    assert wrong == []


def test_old_spellings_still_work(butler):
    repo = butler.root
    butler.register_dataset_type("bias", ["instrument", "detector"], "Dict", is_calibration=True)
    with Butler(repo) as b:
        b.put({"level": 1}, "bias", instrument="Cam", detector=1, run="calib/run")
    out = run("certify-calibrations", repo, "calib/run", "Cam/calib", "bias", "--begin-date", "2026-01-01T00:00:00",
              "--end-date", "2026-02-01T00:00:00").stdout
    assert "certified 1 bias dataset(s) into Cam/calib" in out
    out = run("certify-calibrations", repo, "calib/run", "Cam/calib2", "bias", "--begin", "2026-01-01T00:00:00").stdout
    assert out.strip() == (
        "certified 1 bias dataset(s) into Cam/calib2, valid from 2026-01-01T00:00:00.000 TAI with no end")
    result = run("certify-calibrations", repo, "calib/run", "x", "bias", "--begin-date", "2026-02-01",
                 "--end-date", "2026-01-01", code=2)
    assert "Error: Invalid value for --end-date: --end-date is before --begin-date" in result.stderr


def test_a_usage_error_is_one_line_naming_the_option(butler):
    result = run("certify-calibrations", butler.root, "run/a", "c", "bias", "--begin-date", "nope", code=2)
    assert result.stderr.startswith("Error: Invalid value for '--begin-date'") and "'nope' is not an ISO time" in \
        result.stderr and "(see 'cli certify-calibrations --help')" in result.stderr
    for args in (("query-datasets", butler.root, "metrics", "--limit", "many"),
                 ("query-datasets", butler.root, "metrics", "--offset", "-1"),
                 ("collection-chain", butler.root, "c", "a", "--mode", "sideways"), ("nosuch",)):
        stderr = run(*args, code=2).stderr
        assert len(stderr.strip().splitlines()) == 1 and stderr.startswith("Error: "), stderr
    missing = run("register-dataset-type", butler.root, "t", code=2).stderr
    assert missing.strip() == ("Error: no storage class: give NAME STORAGE_CLASS [DIMENSIONS]... or --storage-class "
                               "(see 'cli register-dataset-type --help')")


def test_query_collections_csv(butler):
    repo = butler.root
    put_metrics(repo, "run/b", 1)
    put_metrics(repo, "run/a", 2)
    run("collection-chain", repo, "best, really", "run/b", "run/a")
    out = run("query-collections", repo, "--csv").stdout
    assert list(csv.reader(io.StringIO(out))) == [["name", "type", "children", "doc"],
                                                   ["best, really", "chained", "run/b run/a", ""],
                                                   ["run/a", "run", "", ""], ["run/b", "run", "", ""]]
    assert "choose one of --json and --csv" in run("query-collections", repo, "--csv", "--json", code=1).stderr


def test_query_datasets_searches_every_run_by_default(butler):
    repo = butler.root
    ids = put_metrics(repo, "run/b", 1, 2) + put_metrics(repo, "run/c", 1)
    run("associate", repo, "tagged", "--dataset-type", "metrics", "-c", "run/b")
    rows = json.loads(run("query-datasets", repo, "metrics", "--json").stdout)
    assert sorted(r["dataset_id"] for r in rows) == sorted(ids)  # each once, though run/b's are also tagged
    first = json.loads(run("query-datasets", repo, "metrics", "-c", "run/c,run/b", "--json").stdout)
    assert sorted(r["dataset_id"] for r in first) == sorted([ids[1], ids[2]])
    stderr = run("query-datasets", repo, "metrics", "--find-first", code=2).stderr
    assert "--find-first" in stderr and "needs --collections" in stderr


def test_debug_shows_the_traceback_that_a_usage_mistake_otherwise_hides(tmp_path):
    """One line by default; with --debug the error itself comes out (a traceback), for a bug report."""
    missing = tmp_path / "no-repo"
    plain = CliRunner().invoke(cli, ["query-collections", str(missing)])
    assert plain.exit_code == 1 and plain.stderr.startswith("error: ") and len(plain.stderr.splitlines()) == 1
    debug = CliRunner().invoke(cli, ["--debug", "query-collections", str(missing)])
    assert debug.exit_code == 1 and not isinstance(debug.exception, SystemExit)
    assert type(debug.exception).__name__ in ("ConfigError", "SkybutlerError", "FileNotFoundError")
