"""The Rubin butler's command-line habits work on skybutler's commands with the same
spelling and meaning: query-datasets with several types or globs (or none), --limit as a
cap (0: none, -N: N with a warning), --offset, comma-separated --order-by;
query-collections with several patterns, --collection-type and --chains; retrieve-artifacts
with --find-first/--no-find-first, -t/--transfer, --limit, --preserve-path/--no-preserve-path,
--clobber/--no-clobber, --zip/--no-zip, -v; register-instrument with the Rubin instrument
classes; define-visits with the instrument as an argument; ingest-raws --output-run.

Where the Rubin butler is installed, its own ``butler`` command, run on a repository it made,
is the oracle: the same command line on the imported twin lists the same datasets.
"""

from __future__ import annotations

import re
import uuid
from pathlib import Path

import pytest
from click.testing import CliRunner

from conftest import populate
from conftest import run_cli as run
from skybutler import Butler

UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")


def ids(text: str) -> list[str]:
    return UUID.findall(text)


@pytest.fixture
def repo(tmp_path) -> Path:
    """Visits 1-6 (detectors 0-3) of Cam; metrics (visit, detector) for visits 1-3 x detectors
    0-1 in run/a, nightly (visit) for visits 1-2 in run/a; run/b tagged, chained."""
    root = tmp_path / "repo"
    with Butler.create(root) as butler:
        populate(butler)
        butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
        butler.register_dataset_type("nightly", ["instrument", "visit"], "Dict")
        butler.put_many("metrics", [({"v": v, "d": d}, {"instrument": "Cam", "visit": v, "detector": d})
                                    for v in (1, 2, 3) for d in (0, 1)], run="run/a")
        butler.put_many("nightly", [({"v": v}, {"instrument": "Cam", "visit": v}) for v in (1, 2)], run="run/a")
        butler.collections.register("tagged/b", "tagged")
        butler.collections.register("chain", "chained")
        butler.collections.set_chain("chain", ["tagged/b", "run/a"])
    return root


def metric_pairs(text: str) -> list[tuple[int, int]]:
    """(visit, detector) of each row of a --csv query-datasets of metrics, in order."""
    lines = text.strip().splitlines()
    header = lines[0].split(",")
    v, d = header.index("visit"), header.index("detector")
    return [(int(r.split(",")[v]), int(r.split(",")[d])) for r in lines[1:]]


def test_query_datasets_takes_several_types_globs_or_none(repo):
    both = run("query-datasets", repo, "metrics", "nightly", "-c", "run/a").stdout
    assert len(ids(both)) == 8 and "metrics" in both and "nightly" in both  # a table per dimension set
    assert len(ids(run("query-datasets", repo, "met*", "-c", "run/a").stdout)) == 6
    assert len(ids(run("query-datasets", repo, "-c", "run/a").stdout)) == 8
    assert "no dataset type matches 'zz*'" in run("query-datasets", repo, "zz*", "-c", "run/a", code=1).stderr
    refused = run("query-datasets", repo, "metrics", "nightly", "-c", "run/a", "--json", code=1).stderr
    assert "have different dimensions" in refused


def test_limit_zero_is_no_limit_and_a_negative_limit_a_cap_with_a_warning(repo):
    assert len(ids(run("query-datasets", repo, "metrics", "-c", "run/a", "--limit", "0").stdout)) == 6
    capped = run("query-datasets", repo, "metrics", "-c", "run/a", "--limit", "-4")
    assert len(ids(capped.stdout)) == 4 and "warning: more than 4 results" in capped.stderr
    whole = run("query-datasets", repo, "metrics", "-c", "run/a", "--limit", "-6")
    assert len(ids(whole.stdout)) == 6 and "warning" not in whole.stderr
    assert len(ids(run("query-datasets", repo, "metrics", "-c", "run/a", "--limit", "4").stdout)) == 4


def test_order_by_comma_separated_and_offset(repo):
    out = run("query-datasets", repo, "metrics", "-c", "run/a", "--order-by", "visit,-detector", "--csv").stdout
    assert metric_pairs(out) == [(1, 1), (1, 0), (2, 1), (2, 0), (3, 1), (3, 0)]
    page = run("query-datasets", repo, "metrics", "-c", "run/a", "--order-by", "-visit,detector", "--limit", "2",
               "--offset", "1", "--csv").stdout
    assert metric_pairs(page) == [(3, 1), (2, 0)]
    rows = run("query-data-ids", repo, "visit", "--order-by", "-visit", "--limit", "2", "--offset", "1",
               "--csv").stdout.split()
    assert rows[1:] == ["Cam,5", "Cam,4"]
    records = run("query-dimension-records", repo, "detector", "--order-by", "id", "--limit", "1",
                  "--offset", "2", "--json").stdout
    assert '"id": 2' in records and '"id": 3' not in records and '"id": 1' not in records
    assert "--offset skips results before a --limit" in run("query-data-ids", repo, "visit", "--offset", "1",
                                                             code=1).stderr


def test_query_collections_takes_rubin_options(repo):
    listed = run("query-collections", repo, "run/*", "tagged/*", "--csv").stdout.splitlines()
    assert [r.split(",")[0] for r in listed[1:]] == ["run/a", "tagged/b"]
    runs = run("query-collections", repo, "--collection-type", "RUN", "--collection-type", "tagged", "--csv").stdout
    assert [r.split(",")[0] for r in runs.splitlines()[1:]] == ["run/a", "tagged/b"]
    flat = run("query-collections", repo, "chain", "--chains", "flatten", "--csv").stdout
    assert [r.split(",")[0] for r in flat.splitlines()[1:]] == ["tagged/b", "run/a"]  # as the Rubin command
    own = run("query-collections", repo, "chain", "--flatten", "--csv").stdout
    assert [r.split(",")[0] for r in own.splitlines()[1:]] == ["chain", "tagged/b", "run/a"]
    assert "'forest' is not one of" in run("query-collections", repo, "--chains", "forest", code=2).stderr


def test_retrieve_artifacts_takes_rubin_options(repo, tmp_path):
    dest = tmp_path / "dest"
    out = run("retrieve-artifacts", repo, dest, "--dataset-type", "met*", "-c", "chain", "--no-find-first",
              "-t", "copy", "--limit", "-2", "--order-by", "visit,detector", "--no-preserve-path", "--no-zip", "-v")
    written = sorted(p.name for p in dest.iterdir())
    assert len(written) == 2 and "warning: more than 2 datasets match" in out.stderr
    assert all(name in out.stdout for name in written) and "visit=1_detector=0" in written[0]
    again = run("retrieve-artifacts", repo, dest, "--dataset-type", "metrics", "-c", "run/a", "--limit", "2",
                "--order-by", "visit,detector", "--no-preserve-path", "--clobber")
    assert "copied 2 file(s)" in again.stdout
    nested = run("retrieve-artifacts", repo, tmp_path / "nested", "--dataset-type", "nightly", "--preserve-path")
    assert "copied 2 file(s)" in nested.stdout and (tmp_path / "nested" / "run" / "a" / "nightly").is_dir()
    refused = run("retrieve-artifacts", repo, tmp_path / "x", "--dataset-type", "metrics", "-t", "symlink", code=1)
    assert "--transfer symlink: retrieve-artifacts copies the files" in refused.stderr and not (tmp_path / "x").exists()
    zipped = run("retrieve-artifacts", repo, tmp_path / "z", "--dataset-type", "nightly", "--zip").stdout
    assert "wrote 2 dataset(s) into the zip" in zipped


def test_register_instrument_takes_the_rubin_instrument_classes(tmp_path):
    from skybutler.cli.main import cli as skybutler

    root = tmp_path / "repo"
    Butler.create(root).close()
    result = CliRunner().invoke(skybutler, ["register-instrument", str(root), "lsst.obs.subaru.HyperSuprimeCam",
                                            "lsst.obs.decam.DarkEnergyCamera"])
    assert result.exit_code == 0, result.output
    assert "registered camera HSC" in result.stdout and "registered camera DECam" in result.stdout
    with Butler(root) as butler:
        assert {r["instrument"] for r in butler.query_dimension_records("instrument")} == {"HSC", "DECam"}
    unknown = CliRunner().invoke(skybutler, ["register-instrument", str(root), "lsst.obs.nowhere.Cam"])
    assert unknown.exit_code == 1 and "unknown instrument 'lsst.obs.nowhere.Cam'" in unknown.stderr


def test_ingest_raws_output_run_and_define_visits_with_the_instrument_argument(tmp_path):
    import camera_headers as ch
    from test_cameras import write_raw

    raws = tmp_path / "raws"
    raws.mkdir()
    for det in (50, 51):
        write_raw(raws / f"hsc-{det}.fits", ch.hsc(detector=det))
    root = tmp_path / "repo"
    Butler.create(root).close()
    run("ingest-raws", root, raws, "--output-run", "HSC/raw/night1", "-j", "1")
    with Butler(root) as butler:
        assert len(list(butler.query_datasets("raw", collections="HSC/raw/night1"))) == 2
    assert "1 visit" in run("define-visits", root, "lsst.obs.subaru.HyperSuprimeCam").stdout
    refused = run("define-visits", root, "HSC", "--instrument", "DECam", code=1).stderr
    assert "CAMERA HSC and --instrument DECam disagree" in refused


# -- the Rubin butler's own command as the oracle --------------------------------------------------


def imported_rubin_pair(base: Path) -> tuple[Path, Path]:
    """The Rubin repository of ``rubin_repos`` under ``base`` and its skybutler import."""
    pytest.importorskip("lsst.daf.butler")
    from rubin_repos import make_rubin_export
    from skybutler.interchange import import_rubin

    make_rubin_export(base)
    with Butler.create(base / "sky") as ours:
        import_rubin(ours, base / "export")
    return base / "repo", base / "sky"


@pytest.fixture(scope="module")
def rubin_pair(tmp_path_factory):
    return imported_rubin_pair(tmp_path_factory.mktemp("rubin_cli"))


def both_outputs(rubin_pair, line: list[str]) -> tuple[str, str]:
    """Our output and the Rubin butler's of one command line, ``{repo}`` naming each one's repository."""
    from lsst.daf.butler.cli.butler import cli as rubin_cli

    rubin_repo, our_repo = rubin_pair
    theirs = CliRunner().invoke(rubin_cli, [a.format(repo=rubin_repo) for a in line])
    assert theirs.exit_code == 0, theirs.output
    return run(*[a.format(repo=our_repo) for a in line]).stdout, theirs.output


RUBIN_COMMAND_LINES = [
    ["query-datasets", "{repo}", "summary", "cat", "--collections", "Cam/run1", "--where", "instrument = 'Cam'"],
    ["query-datasets", "{repo}", "summ*", "--collections", "Cam/run1", "--where",
     "instrument = 'Cam' AND visit = 2 AND detector IN (0, 2)"],
    ["query-datasets", "{repo}", "summary", "--collections", "Cam/run1", "--limit", "0"],
    ["query-datasets", "{repo}", "summary", "--collections", "Cam/run1", "--order-by", "visit,-detector",
     "--limit", "2"],
    ["query-datasets", "{repo}", "summary", "--collections", "Cam/run1", "--limit", "-3"],
    ["query-datasets", "{repo}", "bias", "--collections", "Cam/calib", "--no-find-first"],
    ["query-datasets", "{repo}", "summary", "--collections", "Cam/run1", "--where", "instrument = 'Cam'",
     "--order-by", "-visit.name,detector"],
    ["query-datasets", "{repo}", "summary", "--collections", "Cam/run1", "--where", "instrument = 'Cam'",
     "--order-by", "-detector", "--order-by", "visit.timespan.begin"],
]


@pytest.mark.parametrize("line", RUBIN_COMMAND_LINES, ids=[" ".join(c[2:]) for c in RUBIN_COMMAND_LINES])
def test_the_rubin_command_line_lists_the_same_datasets(rubin_pair, line):
    mine, theirs = both_outputs(rubin_pair, line)
    ordered = "--order-by" in line
    assert (ids(mine) if ordered else sorted(ids(mine))) == (ids(theirs) if ordered else
                                                             sorted(ids(theirs)))
    assert all(uuid.UUID(i) for i in ids(mine)) and ids(mine)


def _rows(output: str) -> list[list[str]]:
    """The data rows of a table either butler prints (rules, borders and the header left out)."""
    rows = [[c for c in re.split(r"[\s│┃]+", line) if c] for line in output.splitlines()]
    return [r for r in rows if r and not set("".join(r)) <= set("-─━┏┓┗┛┡┩└┘┳┻╇┴┬") and r[0] == "Cam"]


# command lines whose rows (instrument first, then the keys) both butlers print alike
RUBIN_TABLE_LINES = [
    (["query-data-ids", "{repo}", "visit", "detector", "--datasets", "summ*", "--collections", "Cam/*", "--where",
      "instrument = 'Cam' AND detector = 1"], 2),
    (["query-data-ids", "{repo}", "visit", "--where", "instrument = 'Cam'", "--order-by", "-visit.name"], 2),
    (["query-dimension-records", "{repo}", "detector", "--where", "instrument = 'Cam'", "--order-by", "-detector"], 3),
    (["query-dimension-records", "{repo}", "visit", "--where", "instrument = 'Cam'", "--order-by",
      "-visit.exposure_time,-visit", "--no-check"], 2),
]


@pytest.mark.parametrize(("line", "n"), RUBIN_TABLE_LINES, ids=[" ".join(c[0][2:]) for c in RUBIN_TABLE_LINES])
def test_the_rubin_command_line_lists_the_same_rows(rubin_pair, line, n):
    mine, theirs = both_outputs(rubin_pair, line)
    if "--order-by" in line:  # instrument and the ordered key lead both tables
        assert [r[:2] for r in _rows(mine)] == [r[:2] for r in _rows(theirs)] and len(_rows(mine)) == n
    else:  # the Rubin butler prints detector before visit
        assert sorted(sorted(r[:3]) for r in _rows(mine)) == sorted(sorted(r[:3]) for r in _rows(theirs))
        assert len(_rows(mine)) == n


def test_query_collections_takes_comma_separated_patterns(rubin_pair):
    from lsst.daf.butler.cli.butler import cli as rubin_cli

    rubin_repo, our_repo = rubin_pair
    theirs = CliRunner().invoke(rubin_cli, ["query-collections", str(rubin_repo), "Cam/run1,Cam/best"])
    mine = run("query-collections", our_repo, "Cam/run1,Cam/best", "--json").stdout
    assert sorted(c["name"] for c in __import__("json").loads(mine)) == ["Cam/best", "Cam/run1"]
    assert "Cam/best" in theirs.output and "Cam/run1" in theirs.output


@pytest.fixture(scope="module")
def rubin_chains(tmp_path_factory):
    """A Rubin repository with chains of chains (Cam/outer holds Cam/defaults, which holds
    Cam/calib; Cam/also holds Cam/run1, which Cam/defaults holds too), and its skybutler twin."""
    daf_butler = pytest.importorskip("lsst.daf.butler")
    from rubin_repos import make_rubin_repo
    from skybutler.interchange import import_rubin

    base = tmp_path_factory.mktemp("rubin_chains")
    theirs = make_rubin_repo(base / "repo")
    chains = {"Cam/outer": ["Cam/defaults", "Cam/calib/run"], "Cam/also": ["Cam/run1"], "Cam/empty": []}
    for name, children in chains.items():
        theirs.registry.registerCollection(name, daf_butler.CollectionType.CHAINED)
        theirs.registry.setCollectionChain(name, children)
    (base / "export").mkdir()
    with theirs.export(directory=str(base / "export"), format="yaml", transfer="copy") as export:
        export.saveDatasets(theirs.registry.queryDatasets(..., collections=...))
        for name in ("Cam/best", "Cam/calib", "Cam/defaults", *chains):
            export.saveCollection(name)
    with Butler.create(base / "sky") as ours:
        import_rubin(ours, base / "export")
    return base / "repo", base / "sky"


def rubin_collection_lists(output: str) -> dict[str, list[str]]:
    """Each collection's list (its children, parents or dataset types) in a table of the Rubin
    butler's ``query-collections`` (``--chains table``/``inverse-table``, ``-t``): a row per item,
    the collection's name and type only on its first."""
    lines = output.splitlines()
    held: dict[str, list[str]] = {}
    for line in lines[next(i for i, x in enumerate(lines) if x.startswith("---")) + 1:]:
        cells = line.split()
        if len(cells) >= 2:
            name = cells[0]
            held[name] = cells[2:]
        elif cells:
            held[name].append(cells[0])
    return held


def _rubin_tree(output: str) -> list[tuple[int, str, str]]:
    """(depth, name, type) of each row of the Rubin butler's tree (two spaces of indent a level)."""
    lines = output.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("---")) + 1
    rows = [re.fullmatch(r"( *)(\S+)\s+(\S+)\s*", line) for line in lines[start:] if line.strip()]
    return [(len(m[1]) // 2, m[2], m[3].lower()) for m in rows]


@pytest.mark.parametrize("args", [[], ["Cam/outer"], ["Cam/run1,Cam/calib"], ["--collection-type", "CHAINED"],
                                  ["Cam/*", "--collection-type", "RUN"]], ids=str)
@pytest.mark.parametrize("chains", ["tree", "inverse-tree"])
def test_query_collections_tree_is_the_rubin_butlers(rubin_chains, args, chains):
    from lsst.daf.butler.cli.butler import cli as rubin_cli

    rubin_repo, our_repo = rubin_chains
    theirs = CliRunner().invoke(rubin_cli, ["query-collections", str(rubin_repo), *args, "--chains", chains])
    assert theirs.exit_code == 0, theirs.output
    expected = _rubin_tree(theirs.output)
    assert any(depth == 2 for depth, _, _ in expected) or args  # chains of chains are walked
    csv_rows = run("query-collections", our_repo, *args, "--chains", chains, "--csv").stdout.splitlines()
    assert csv_rows[0] == "name,type,depth"
    assert [(int(d), n, t) for n, t, d in (r.split(",") for r in csv_rows[1:])] == expected
    table = run("query-collections", our_repo, *args, "--chains", chains).stdout
    shown = [(len(m[1]) // 2, m[2], m[3]) for m in re.finditer(r"│ ( *)(\S+)\s+│ (\S+)\s+│", table)]
    assert shown == expected


@pytest.mark.parametrize("chains", ["table", "inverse-table"])
def test_query_collections_chain_tables_are_the_rubin_butlers(rubin_chains, chains):
    """The Rubin butler prints a chain's children (or a collection's parents) one a line; skybutler
    lists them in one cell: the same names, in the same order."""
    import json

    from lsst.daf.butler.cli.butler import cli as rubin_cli

    rubin_repo, our_repo = rubin_chains
    theirs = CliRunner().invoke(rubin_cli, ["query-collections", str(rubin_repo), "--chains", chains])
    assert theirs.exit_code == 0, theirs.output
    expected = rubin_collection_lists(theirs.output)
    column = "parents" if chains == "inverse-table" else "children"
    mine = {c["name"]: c[column] for c in json.loads(run("query-collections", our_repo, "--chains", chains,
                                                         "--json").stdout)}
    assert mine == expected and any(len(v) > 1 for v in expected.values())


@pytest.mark.parametrize("args", [["Cam/outer"], ["Cam/defaults", "Cam/run1"], ["Cam/also,Cam/best"], []], ids=str)
def test_query_collections_chains_flatten_is_the_rubin_commands(rubin_chains, args):
    from lsst.daf.butler.cli.butler import cli as rubin_cli

    rubin_repo, our_repo = rubin_chains
    theirs = CliRunner().invoke(rubin_cli, ["query-collections", str(rubin_repo), *args, "--chains", "flatten"])
    assert theirs.exit_code == 0, theirs.output
    expected = [(d, n, t) for d, n, t in _rubin_tree(theirs.output)]
    mine = [tuple(r.split(",")[:2]) for r in run("query-collections", our_repo, *args, "--chains", "flatten",
                                                  "--csv").stdout.splitlines()[1:]]
    assert all(d == 0 for d, _, _ in expected) and expected
    if len(args) == 1 and "," not in args[0]:  # one chain: its search order
        assert mine == [(n, t) for _, n, t in expected]
    else:
        assert sorted(mine) == sorted((n, t) for _, n, t in expected)


def _verbose_types(theirs: str) -> dict[str, tuple[set[str], str]]:
    """Name: (dimensions, implied ones included; storage class) of each row the Rubin butler's
    ``query-dataset-types -v`` prints."""
    return {m[1]: (set(re.findall(r"'(\w+)'", m[2])), m[3])
            for m in re.finditer(r"^(\w+)\s+\[(.*)\]\s+(\w+)\s*$", theirs, re.M)}


def _our_types(repo: Path, *globs: str) -> dict[str, tuple[set[str], str]]:
    import json

    listed = json.loads(run("query-dataset-types", repo, *globs, "--json").stdout)
    return {t["name"]: (set(t["dimensions"]), t["storage_class"]) for t in listed}


@pytest.mark.parametrize("globs", [["summ*", "cat"], ["summ*,cat"], ["*Summ*", "b*", "-v"], []], ids=str)
def test_query_dataset_types_takes_several_globs_and_verbose(rubin_pair, globs):
    """The Rubin butler's -v rows (name, dimensions with the implied ones, storage class) hold
    ours: the same names and storage classes, our dimensions among theirs."""
    mine, theirs = both_outputs(rubin_pair, ["query-dataset-types", "{repo}", *globs, "-v"])
    expected, listed = _verbose_types(theirs), _our_types(rubin_pair[1], *globs)
    assert sorted(listed) == sorted(expected) and expected and all(n in mine for n in expected)
    assert all(listed[n][1] == expected[n][1] and listed[n][0] <= expected[n][0] for n in expected)


def test_register_dataset_type_takes_the_storage_class_as_an_argument(rubin_pair):
    from lsst.daf.butler.cli.butler import cli as rubin_cli

    line = ["register-dataset-type", "{repo}", "calibSummary", "StructuredDataDict", "instrument", "detector",
            "--is-calibration"]
    both_outputs(rubin_pair, line)
    both_outputs(rubin_pair, ["register-dataset-type", "{repo}", "plainDict", "StructuredDataDict"])
    _, theirs = both_outputs(rubin_pair, ["query-dataset-types", "{repo}", "calibSummary,plainDict", "-v"])
    assert _our_types(rubin_pair[1], "calibSummary,plainDict") == {"calibSummary": ({"instrument", "detector"},
                                                                                    "StructuredDataDict"),
                                                                   "plainDict": (set(), "StructuredDataDict")}
    assert _verbose_types(theirs)["calibSummary"] == ({"instrument", "detector"}, "StructuredDataDict")
    with Butler(rubin_pair[1]) as ours:
        assert [t.is_calibration for t in ours.query_dataset_types("calibSummary")] == [True]
    refused = run("register-dataset-type", rubin_pair[1], "noClass", code=2).stderr
    assert "no storage class: give NAME STORAGE_CLASS" in refused
    assert CliRunner().invoke(rubin_cli, ["register-dataset-type", str(rubin_pair[0]), "noClass"]).exit_code == 2


@pytest.fixture
def fresh_rubin_pair(tmp_path):
    """A Rubin repository and its skybutler twin that a test may change."""
    return imported_rubin_pair(tmp_path)


def _chains_and_ids(pair, which: int) -> tuple[dict[str, list[str]], list[str]]:
    """Each chain's children and the sorted dataset IDs of one side of ``pair`` (0: Rubin's)."""
    from lsst.daf.butler import Butler as RubinButler
    from lsst.daf.butler import CollectionType

    if which == 0:
        with RubinButler.from_config(str(pair[0])) as b:
            chains = {c.name: list(c.children) for c in b.collections.query_info("*", CollectionType.CHAINED)}
            return chains, sorted({str(r.id) for r in b.registry.queryDatasets(..., collections=...)})
    with Butler(pair[1]) as b:
        chains = {c.name: list(b.collections.get_chain(c.name)) for c in b.collections.query("*", ["chained"])}
        return chains, sorted(set(ids(run("query-datasets", pair[1], "-c", "*", "--no-find-first", "--limit",
                                          "0").stdout)))


def test_remove_runs_takes_a_glob_no_confirm_and_force_as_the_rubin_command(fresh_rubin_pair):
    from lsst.daf.butler.cli.butler import cli as rubin_cli

    rubin_repo, our_repo = fresh_rubin_pair
    before = _chains_and_ids(fresh_rubin_pair, 1)
    assert before == _chains_and_ids(fresh_rubin_pair, 0) and "Cam/run1" in before[0]["Cam/defaults"]
    refused = CliRunner().invoke(rubin_cli, ["remove-runs", str(rubin_repo), "Cam/r*", "--no-confirm"])
    assert refused.exit_code == 1 and "must be unlinked" in refused.output
    assert "is in chain(s) Cam/defaults" in run("remove-runs", our_repo, "Cam/r*", "--no-confirm", code=1).stderr
    assert _chains_and_ids(fresh_rubin_pair, 1) == before
    both_outputs(fresh_rubin_pair, ["remove-runs", "{repo}", "Cam/r*", "--no-confirm", "--force"])
    after = _chains_and_ids(fresh_rubin_pair, 1)
    assert after == _chains_and_ids(fresh_rubin_pair, 0) and after != before
    assert "Cam/run1" not in after[0]["Cam/defaults"] and len(after[1]) == 3  # the biases are left


@pytest.mark.parametrize("types", [["--dataset-type", "summ*"], ["--dataset-type", "cat,summary"]], ids=str)
def test_transfer_datasets_is_the_rubin_commands(rubin_pair, tmp_path, types):
    from lsst.daf.butler import Butler as RubinButler
    from lsst.daf.butler.cli.butler import cli as rubin_cli

    RubinButler.makeRepo(str(tmp_path / "theirs"))
    Butler.create(tmp_path / "ours").close()
    line = ["transfer-datasets", "{repo}", "{dest}", *types, "--collections", "Cam/run1", "--where",
            "instrument = 'Cam' AND visit = 1", "--register-dataset-types", "--transfer-dimensions"]
    theirs = CliRunner().invoke(rubin_cli, [a.format(repo=rubin_pair[0], dest=tmp_path / "theirs") for a in line])
    assert theirs.exit_code == 0, theirs.output
    run(*[a.format(repo=rubin_pair[1], dest=tmp_path / "ours") for a in line])
    with RubinButler.from_config(str(tmp_path / "theirs")) as b:
        expected = sorted(str(r.id) for r in b.registry.queryDatasets(..., collections=...))
    with Butler(tmp_path / "ours") as ours:
        mine = sorted(str(r.id) for t in ours.query_dataset_types() for r in ours.query_datasets(t.name, collections="*",
                                                                                               find_first=False))
    assert mine == expected and len(expected) == (3 if "summ*" in types else 4)
    assert "no dataset type matches 'zz*'" in run("transfer-datasets", rubin_pair[1], tmp_path / "ours",
                                                  "--dataset-type", "zz*", code=1).stderr


@pytest.mark.parametrize("file_column", ["file", "Files"])  # the Rubin command's files are its first column
def test_ingest_files_takes_data_id_values_shared_by_every_file(fresh_rubin_pair, tmp_path, file_column):
    from lsst.daf.butler import Butler as RubinButler

    for v, d in ((1, 0), (2, 1)):
        (tmp_path / f"s{v}{d}.yaml").write_text(f'{{"v": {v}, "d": {d}}}')
    (tmp_path / "files.csv").write_text(f"{file_column},visit,detector\ns10.yaml,1,0\ns21.yaml,2,1\n")
    both_outputs(fresh_rubin_pair, ["ingest-files", "{repo}", "summary", "Cam/ingested", str(tmp_path / "files.csv"),
                                    "--data-id", "instrument=Cam", "-t", "copy", "--prefix", str(tmp_path)])
    with RubinButler.from_config(str(fresh_rubin_pair[0])) as b:
        expected = sorted((r.dataId["visit"], r.dataId["detector"])
                          for r in b.registry.queryDatasets("summary", collections="Cam/ingested"))
    with Butler(fresh_rubin_pair[1]) as ours:
        refs = list(ours.query_datasets("summary", collections="Cam/ingested"))
        assert sorted((r.data_id["visit"], r.data_id["detector"]) for r in refs) == expected == [(1, 0), (2, 1)]
        assert sorted(ours.get(r)["v"] for r in refs) == [1, 2]
    refused = run("ingest-files", fresh_rubin_pair[1], "summary", tmp_path / "files.csv", "--run", "Cam/more",
                  "--data-id", "instrument=Cam,visit=1", code=1).stderr
    assert "--data-id gives visit, which" in refused


def test_collection_chain_takes_comma_separated_children_flatten_and_doc(fresh_rubin_pair):
    from lsst.daf.butler import Butler as RubinButler

    for line in (["collection-chain", "{repo}", "Cam/outer", "Cam/defaults,Cam/calib/run", "--doc", "searched"],
                 ["collection-chain", "{repo}", "Cam/flat", "Cam/outer", "--flatten"],
                 ["collection-chain", "{repo}", "Cam/flat", "Cam/outer", "--mode", "prepend", "--flatten"],
                 ["collection-chain", "{repo}", "Cam/outer", "Cam/calib/run,Cam/defaults", "--mode", "remove"]):
        both_outputs(fresh_rubin_pair, line)
    chains = _chains_and_ids(fresh_rubin_pair, 1)[0]
    assert chains == _chains_and_ids(fresh_rubin_pair, 0)[0]
    assert chains["Cam/flat"] == ["Cam/best", "Cam/run1", "Cam/calib", "Cam/calib/run"]
    with RubinButler.from_config(str(fresh_rubin_pair[0])) as b, Butler(fresh_rubin_pair[1]) as ours:
        expected = b.collections.get_info("Cam/outer").doc
        assert ours.collections.query("Cam/outer")[0].doc == ours.collections.info("Cam/outer").doc == expected != ""
        assert ours.collections.info("Cam/best").doc == b.collections.get_info("Cam/best").doc == ""
    assert "no collection named 'nosuch'" in run("collection-chain", fresh_rubin_pair[1], "Cam/new", "Cam/best,nosuch",
                                                 "--doc", "x", code=1).stderr
    with Butler(fresh_rubin_pair[1]) as ours:
        assert not ours.collections.exists("Cam/new")


def test_prune_datasets_takes_purge_and_quiet_as_the_rubin_command(fresh_rubin_pair):
    before = _chains_and_ids(fresh_rubin_pair, 1)
    for line in (["prune-datasets", "{repo}", "Cam/run1", "--datasets", "summary", "--where",
                  "instrument = 'Cam' AND visit = 1", "--purge", "Cam/run1", "--no-confirm"],
                 ["prune-datasets", "{repo}", "--datasets", "cat", "--purge", "Cam/run1", "--quiet"]):
        mine, _ = both_outputs(fresh_rubin_pair, line)
    after = _chains_and_ids(fresh_rubin_pair, 1)
    assert after == _chains_and_ids(fresh_rubin_pair, 0) and len(before[1]) - len(after[1]) == 5 and mine == ""
    for option, says in ((["--unstore"], "--unstore is not taken"), (["--disassociate", "Cam/best"], "disassociate"),
                         (["--quiet", "--dry-run"], "cannot go with --dry-run"), ([], "(or --purge RUN)")):
        refused = run("prune-datasets", fresh_rubin_pair[1], "--datasets", "summary", *option, code=2).stderr
        assert says in refused
    assert _chains_and_ids(fresh_rubin_pair, 1) == after


@pytest.mark.parametrize("find_first", ["--find-first", "--no-find-first"])
def test_associate_takes_find_first_or_not_as_the_rubin_command(fresh_rubin_pair, find_first):
    from lsst.daf.butler import Butler as RubinButler
    from lsst.daf.butler import CollectionType

    with RubinButler.from_config(str(fresh_rubin_pair[0]), writeable=True) as b:
        b.registry.registerCollection("Cam/picked", CollectionType.TAGGED)
    both_outputs(fresh_rubin_pair, ["associate", "{repo}", "Cam/picked", "--dataset-type", "summary", "--collections",
                                    "Cam/best,Cam/run1", "--where", "instrument = 'Cam' AND visit = 1", find_first])
    with RubinButler.from_config(str(fresh_rubin_pair[0])) as b:
        expected = sorted(str(r.id) for r in b.registry.queryDatasets("summary", collections="Cam/picked"))
    assert sorted(ids(run("query-datasets", fresh_rubin_pair[1], "summary", "-c", "Cam/picked").stdout)) == expected
    assert len(expected) == 3
