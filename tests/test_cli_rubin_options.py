"""More of the Rubin butler's command-line options, each run through the Rubin butler's own
``butler`` command on a Rubin repository (the oracle) and through ``skybutler`` on its
import: ``-@``/``--options-file``.  The repositories and helpers are those of
``test_cli_rubin_habits``."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from skybutler.errors import DatasetConflictError
from test_cli_rubin_habits import both_outputs, ids, imported_rubin_pair, rubin_collection_lists, run


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


@pytest.mark.parametrize("args", [["--chains", "no-children"], ["Cam/defaults", "--chains", "flatten"],
                                  ["--chains", "no-children", "--exclude-dataset-types", "c*,deep*"],
                                  ["Cam/*", "--chains", "no-children", "--exclude-dataset-types", "bias",
                                   "--collection-type", "RUN"]], ids=str)
def test_query_collections_shows_the_dataset_types_the_rubin_command_shows(rubin_pair, args):
    import json

    theirs = _rubin("query-collections", rubin_pair[0], *args, "-t")
    assert theirs.exit_code == 0, theirs.output
    expected = rubin_collection_lists(theirs.output)
    mine = json.loads(run("query-collections", rubin_pair[1], *args, "--show-dataset-types", "--json").stdout)
    assert {c["name"]: c["dataset_types"] for c in mine} == expected and any(len(v) > 1 for v in expected.values())
    assert "dataset_types" not in run("query-collections", rubin_pair[1], *args, "--json").stdout


@pytest.mark.parametrize("collections", [["Cam/run1"], ["Cam/calib"], ["Cam/best"], ["Cam/defaults"],
                                         ["Cam/calib/run,Cam/best"], ["Cam/c*"], ["Cam/best", "Cam/calib"]], ids=str)
def test_query_dataset_types_in_collections_is_the_rubin_commands(rubin_pair, collections):
    import json

    line = ["query-dataset-types", "{repo}"] + [a for c in collections for a in ("--collections", c)]
    _, theirs = both_outputs(rubin_pair, line)
    lines = theirs.splitlines()
    expected = sorted(x.strip() for x in lines[next(i for i, x in enumerate(lines) if x.startswith("---")) + 1:])
    mine = [t["name"] for t in json.loads(run(*[a.format(repo=rubin_pair[1]) for a in line], "--json").stdout)]
    assert mine == expected and expected
    assert len(expected) < 4 or collections == ["Cam/defaults"]  # the collections narrow the list


@pytest.mark.parametrize("search_all", [[], ["--search-all-inputs"]], ids=["first-child", "search-all-inputs"])
def test_certify_calibrations_from_a_chain_is_the_rubin_commands(fresh_rubin_pair, search_all):
    """A chain (a TAGGED collection with the bias of detector 0, then the RUN of all three):
    its first child alone, or with --search-all-inputs all the chain finds first."""
    from lsst.daf.butler import Butler as RubinButler
    from lsst.daf.butler import CollectionType as RubinType

    from skybutler import Butler

    with RubinButler.from_config(str(fresh_rubin_pair[0]), writeable=True) as b:
        b.registry.registerCollection("Cam/bias-tag", RubinType.TAGGED)
        b.registry.associate("Cam/bias-tag", [b.find_dataset("bias", instrument="Cam", detector=0,
                                                             collections="Cam/calib/run")])
        b.registry.registerCollection("Cam/bias-chain", RubinType.CHAINED)
        b.registry.setCollectionChain("Cam/bias-chain", ["Cam/bias-tag", "Cam/calib/run"])
    with Butler(fresh_rubin_pair[1]) as ours:
        ours.collections.associate("Cam/bias-tag", [ours.find_dataset("bias", instrument="Cam", detector=0,
                                                                      collections="Cam/calib/run")])
        ours.collections.set_chain("Cam/bias-chain", ["Cam/bias-tag", "Cam/calib/run"])
    both_outputs(fresh_rubin_pair, ["certify-calibrations", "{repo}", "Cam/bias-chain", "Cam/new", "bias",
                                    "--begin-date", "2025-01-01T00:00:00", *search_all])
    with RubinButler.from_config(str(fresh_rubin_pair[0])) as b:
        expected = sorted(str(r.id) for r in b.registry.queryDatasets("bias", collections="Cam/new", findFirst=False))
    with Butler(fresh_rubin_pair[1]) as ours:
        certified = ours.collections.validity("Cam/new", "bias")
    assert sorted(str(ref.id) for ref, _ in certified) == expected and len(expected) == (3 if search_all else 1)
    assert all(span.begin.isot.startswith("2025-01-01") and span.end is None for _, span in certified)


def test_certify_calibrations_from_a_calibration_collection_is_the_rubin_commands(fresh_rubin_pair):
    from lsst.daf.butler import Butler as RubinButler

    from skybutler import Butler

    both_outputs(fresh_rubin_pair, ["certify-calibrations", "{repo}", "Cam/calib", "Cam/again", "bias"])
    with RubinButler.from_config(str(fresh_rubin_pair[0])) as b:
        expected = sorted(str(r.id) for r in b.registry.queryDatasets("bias", collections="Cam/again",
                                                                      findFirst=False))
    with Butler(fresh_rubin_pair[1]) as ours:
        assert sorted(str(ref.id) for ref, _ in ours.collections.validity("Cam/again", "bias")) == expected
    assert len(expected) == 3
    refused = run("certify-calibrations", fresh_rubin_pair[1], "Cam/defaults", "Cam/x", "bias",
                  "--search-all-inputs", code=1).stderr
    assert "searches the CALIBRATION collection(s) Cam/calib" in refused


@pytest.mark.parametrize("mode", ["DATAID_TYPE", "dataid_type_run", "unique"])
def test_ingest_files_id_generation_mode_makes_the_rubin_butlers_ids(fresh_rubin_pair, tmp_path, mode):
    from lsst.daf.butler import Butler as RubinButler

    from skybutler import Butler

    for v, d in ((1, 0), (2, 1)):
        (tmp_path / f"s{v}{d}.yaml").write_text(f'{{"v": {v}, "d": {d}}}')
    (tmp_path / "files.csv").write_text("file,visit,detector\ns10.yaml,1,0\ns21.yaml,2,1\n")
    both_outputs(fresh_rubin_pair, ["ingest-files", "{repo}", "summary", "Cam/ingested", str(tmp_path / "files.csv"),
                                    "--data-id", "instrument=Cam", "-t", "copy", "--prefix", str(tmp_path),
                                    "--id-generation-mode", mode])
    with RubinButler.from_config(str(fresh_rubin_pair[0])) as b:
        theirs = sorted(str(r.id) for r in b.registry.queryDatasets("summary", collections="Cam/ingested"))
    with Butler(fresh_rubin_pair[1]) as ours:
        mine = sorted(str(r.id) for r in ours.query_datasets("summary", collections="Cam/ingested"))
    assert len(mine) == len(theirs) == 2
    assert (mine == theirs) is (mode != "unique")


@pytest.mark.parametrize("mode", ["dataid_type", "dataid_type_run"])
def test_a_put_with_a_rubin_id_mode_gets_the_id_the_rubin_butler_makes(butler, mode):
    daf_butler = pytest.importorskip("lsst.daf.butler")

    ref = butler.put({"v": 1}, "metrics", instrument="Cam", visit=2, detector=1, run="u/x", id_mode=mode)
    universe = daf_butler.DimensionUniverse()
    rubin_type = daf_butler.DatasetType("metrics", ["instrument", "visit", "detector"], "StructuredDataDict",
                                        universe=universe)
    data_id = daf_butler.DataCoordinate.standardize(instrument="Cam", visit=2, detector=1, universe=universe)
    expected = daf_butler.DatasetIdFactory().makeDatasetId("u/x", rubin_type, data_id,
                                                           daf_butler.DatasetIdGenEnum[mode.upper()])
    assert ref.id == expected
    if mode == "dataid_type":  # the same ID in another RUN: refused, as by the Rubin butler
        with pytest.raises(DatasetConflictError, match=f"dataset ID {ref.id} already exists"):
            butler.put({"v": 1}, "metrics", instrument="Cam", visit=2, detector=1, run="u/y", id_mode=mode)
    else:  # the RUN is part of the ID
        again = butler.put({"v": 1}, "metrics", instrument="Cam", visit=2, detector=1, run="u/y", id_mode=mode)
        assert again.id != ref.id and again.id.version == 5


def test_remove_collections_takes_a_glob_no_confirm_and_remove_from_parents(fresh_rubin_pair):
    from test_cli_rubin_habits import _chains_and_ids

    def collections(which: int) -> list[str]:
        from lsst.daf.butler import Butler as RubinButler

        from skybutler import Butler

        if which == 0:
            with RubinButler.from_config(str(fresh_rubin_pair[0])) as b:
                return sorted(c.name for c in b.collections.query_info("*"))
        with Butler(fresh_rubin_pair[1]) as b:
            return sorted(c.name for c in b.collections.query("*"))

    before = collections(1)
    refused = _rubin("remove-collections", fresh_rubin_pair[0], "Cam/b*", "--no-confirm")
    assert refused.exit_code != 0  # the Rubin butler fails on a foreign key of the chain
    assert "is in chain(s) Cam/defaults" in run("remove-collections", fresh_rubin_pair[1], "Cam/b*", "--no-confirm",
                                                code=1).stderr
    assert collections(1) == collections(0) == before
    both_outputs(fresh_rubin_pair, ["remove-collections", "{repo}", "Cam/b*", "--no-confirm", "--remove-from-parents"])
    assert collections(1) == collections(0) == [n for n in before if n != "Cam/best"]
    assert _chains_and_ids(fresh_rubin_pair, 1) == _chains_and_ids(fresh_rubin_pair, 0)
    both_outputs(fresh_rubin_pair, ["remove-collections", "{repo}", "Cam/*", "--no-confirm", "--remove-from-parents"])
    assert collections(1) == collections(0) == ["Cam/calib/run", "Cam/run1"]  # the RUNs are left


def test_the_rubin_commands_skybutler_does_elsewhere_name_what_to_type(rubin_pair, tmp_path):
    """ingest-zip and export-calibs are refused naming the command that does it; the advice for
    export-calibs gives the Rubin butler the calibrations with their validity ranges."""
    from lsst.daf.butler import Butler as RubinButler

    for command, advice in (("ingest-zip", "skybutler import REPO ZIP"), ("export-calibs", "--format rubin")):
        assert _rubin(command, "--help").exit_code == 0  # a command of the Rubin butler's
        refused = run(command, rubin_pair[1], tmp_path / "x", code=2).stderr
        assert f"skybutler has no {command} command" in refused and advice in refused
    run("export", rubin_pair[1], tmp_path / "calibs", "-c", "Cam/calib", "--format", "rubin")
    RubinButler.makeRepo(str(tmp_path / "theirs"))
    with RubinButler.from_config(str(tmp_path / "theirs"), writeable=True) as b:
        b.import_(directory=str(tmp_path / "calibs"), filename=str(tmp_path / "calibs/export.yaml"), transfer="copy")
        imported = {(r.id, r.dataId["detector"]) for r in b.registry.queryDatasets("bias", collections="Cam/calib",
                                                                                    findFirst=False)}
    with RubinButler.from_config(str(rubin_pair[0])) as b:
        original = {(r.id, r.dataId["detector"]) for r in b.registry.queryDatasets("bias", collections="Cam/calib",
                                                                                    findFirst=False)}
    assert imported == original and len(original) == 3


@pytest.mark.parametrize(("line", "n"), [
    (["query-dimension-records", "{repo}", "visit", "--datasets", "cat", "--collections", "Cam/best,Cam/run1"], 2),
    (["query-dimension-records", "{repo}", "visit", "--datasets", "summary", "--collections", "Cam/best"], 1),
    (["query-dimension-records", "{repo}", "detector", "--datasets", "summ*", "--collections", "Cam/best"], 2),
    (["query-dimension-records", "{repo}", "detector", "--datasets", "bias", "--collections", "Cam/calib/run",
      "--where", "instrument = 'Cam' AND detector > 0"], 2),
], ids=lambda v: " ".join(v[2:]) if isinstance(v, list) else str(v))
def test_query_dimension_records_with_datasets_lists_the_rubin_commands_records(rubin_pair, line, n):
    from test_cli_rubin_habits import _rows

    mine, theirs = both_outputs(rubin_pair, line)
    assert sorted(r[:2] for r in _rows(mine)) == sorted(r[:2] for r in _rows(theirs)) and len(_rows(theirs)) == n


def test_log_level_is_taken_as_the_rubin_butler_takes_it(rubin_pair):
    import logging

    for level, code in (("nope", 2), ("DEBUG", 0), ("skybutler.retention=verbose", 0)):
        assert _rubin("--log-level", level, "query-collections", rubin_pair[0]).exit_code == code
    loggers = {name: logging.getLogger(name).level for name in ("skybutler", "skybutler.retention")}
    handlers = list(logging.getLogger().handlers)
    try:
        run("--log-level", "DEBUG", "--log-level", "skybutler.retention=VERBOSE", "query-collections", rubin_pair[1])
        assert logging.getLogger("skybutler.query").getEffectiveLevel() == logging.DEBUG
        assert logging.getLogger("skybutler.retention").getEffectiveLevel() == 15
    finally:
        for name, level in loggers.items():
            logging.getLogger(name).setLevel(level)
        logging.getLogger().handlers[:] = handlers  # the handler on the runner's stderr goes
    assert "the level is one of CRITICAL" in run("--log-level", "nope", "query-collections", rubin_pair[1],
                                                 code=2).stderr


@pytest.mark.parametrize("command", ["remove-runs", "remove-collections"])
def test_confirm_asks_as_the_rubin_commands_does_and_a_refusal_changes_nothing(fresh_rubin_pair, command):
    """--confirm (the last of --no-confirm --confirm wins) asks: the Rubin command told no, and
    skybutler with nobody to answer, leave every collection."""
    from lsst.daf.butler.cli.butler import cli as rubin_cli

    from test_cli_rubin_habits import _chains_and_ids

    before = _chains_and_ids(fresh_rubin_pair, 1)
    names, unlink = ("Cam/run1", "--force") if command == "remove-runs" else ("Cam/best", "--remove-from-parents")
    theirs = CliRunner().invoke(rubin_cli, [command, str(fresh_rubin_pair[0]), names, "--no-confirm", "--confirm",
                                            unlink], input="n\n")
    assert "Continue?" in theirs.output and "Aborted" in theirs.output, theirs.output
    refused = run(command, fresh_rubin_pair[1], names, "--no-confirm", "--confirm", unlink, code=1).stderr
    assert "nothing was changed" in refused and "--no-confirm" in refused
    assert _chains_and_ids(fresh_rubin_pair, 1) == _chains_and_ids(fresh_rubin_pair, 0) == before
    run(command, fresh_rubin_pair[1], names, "--confirm", "--no-confirm", unlink)
    assert _chains_and_ids(fresh_rubin_pair, 1) != before


def test_log_file_label_long_log_and_no_log_tty_are_taken_as_the_rubin_butler_takes_them(rubin_pair, tmp_path):
    """The same options before a query with a --limit it exceeds: each butler writes the
    warning to its JSON and text log files with the label, long lines with the time, and
    nothing to the terminal with --no-log-tty; the handlers are gone after the command."""
    import datetime
    import json
    import logging
    import subprocess
    import sys

    def rubin_process(*args: object) -> subprocess.CompletedProcess:  # its logging is set once a process
        return subprocess.run([str(Path(sys.executable).with_name("butler")), *map(str, args)], capture_output=True,
                              text=True, check=False)

    handlers = list(logging.getLogger().handlers)
    records = {}
    for which, invoke in ((0, rubin_process), (1, lambda *a: run(*a))):
        base = tmp_path / str(which)
        line = ["--log-file", f"{base}.json,{base}.log", "--log-label", "job=j1", "--long-log", "--no-log-tty",
                "query-datasets", rubin_pair[which], "summary", "--collections", "Cam/run1", "--limit", "-1"]
        result = invoke(*line)
        assert getattr(result, "returncode", 0) == getattr(result, "exit_code", 0) == 0
        records[which] = [json.loads(text) for text in Path(f"{base}.json").read_text().splitlines()]
        words = Path(f"{base}.log").read_text().split()
        assert words[0] == "WARNING" and words[1].startswith(f"{datetime.date.today().year}-") and "T" in words[1]
        assert "limit" in " ".join(words) and logging.getLogger().handlers == handlers
    assert "showing the first 1" in result.stderr  # skybutler's own warning stays on the terminal
    assert "limit" not in rubin_process(*line[:7], rubin_pair[0], *line[8:]).stderr  # the Rubin butler's does not
    (rubin,), (mine,) = records[0], records[1]
    assert set(rubin) >= set(mine) and mine["MDC"] == rubin["MDC"] == {"JOB": "j1"}
    assert mine["levelname"] == rubin["levelname"] == "WARNING" and "limit of 1" in rubin["message"]
    assert "the first 1" in mine["message"]
    assert "is not KEY=VALUE" in run("--log-label", "nope", "query-collections", rubin_pair[1], code=2).stderr


def test_remove_dataset_type_takes_globs_as_the_rubin_command(fresh_rubin_pair):
    from lsst.daf.butler import Butler as RubinButler

    from skybutler import Butler

    for name in ("tmpA", "tmpB", "keep"):
        both_outputs(fresh_rubin_pair, ["register-dataset-type", "{repo}", name, "StructuredDataDict", "instrument"])
    both_outputs(fresh_rubin_pair, ["remove-dataset-type", "{repo}", "tmp*"])
    with RubinButler.from_config(str(fresh_rubin_pair[0])) as b:
        theirs = sorted(t.name for t in b.registry.queryDatasetTypes(...))
    with Butler(fresh_rubin_pair[1]) as ours:
        mine = sorted(t.name for t in ours.query_dataset_types("*"))
    assert "keep" in mine and not {"tmpA", "tmpB"} & set(mine)
    assert set(theirs) <= set(mine)  # skybutler also has the import's camera descriptions, if any
    assert "no dataset type matches 'zz*'" in run("remove-dataset-type", fresh_rubin_pair[1], "zz*", code=1).stderr
    refused = run("remove-dataset-type", fresh_rubin_pair[1], "summ*", code=1).stderr
    assert "'summary' still has" in refused


def test_associate_and_prune_datasets_take_dataset_type_globs_as_the_rubin_command(fresh_rubin_pair):
    from lsst.daf.butler import Butler as RubinButler

    from skybutler import Butler

    both_outputs(fresh_rubin_pair, ["associate", "{repo}", "Cam/picked", "--dataset-type", "summ*", "--collections",
                                    "Cam/run1", "--where", "instrument = 'Cam' AND visit = 2"])
    both_outputs(fresh_rubin_pair, ["prune-datasets", "{repo}", "Cam/run1", "--purge", "Cam/run1", "--datasets",
                                    "summ*", "--where", "instrument = 'Cam' AND detector = 0", "--no-confirm"])
    with RubinButler.from_config(str(fresh_rubin_pair[0])) as b:
        theirs = [sorted(str(r.id) for r in b.registry.queryDatasets("summary", collections=c)) for c in
                  ("Cam/picked", "Cam/run1")]
    with Butler(fresh_rubin_pair[1]) as ours:
        mine = [sorted(str(r.id) for r in ours.query_datasets("summary", collections=c)) for c in
                ("Cam/picked", "Cam/run1")]
    assert mine == theirs and len(mine[0]) == 2 and len(mine[1]) == 4  # visit 2's detectors 1, 2; detector 0 pruned
