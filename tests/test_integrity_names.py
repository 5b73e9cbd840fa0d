"""Names that cannot collide or escape: RUN names and data-ID values made into datastore
paths are injective (two names never share a file, a RUN's tree never holds another's) and
stay inside the datastore root; templates that could escape or collide are refused; dataset
type names follow the Rubin rule; files stored under the older naming rule still read."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from click.testing import CliRunner

from skybutler import Butler
from skybutler.cli.main import cli
from skybutler.errors import DatasetTypeError, DatastoreError
from skybutler.verify import verify
from test_integrity import DATA_ID, stored


@pytest.mark.parametrize("first, second", [("ü", "ñ"), ("a b", "a_b"), ("a/b", "a//b"), ("x", "x/"),
                                           ("100%", "100%25"), ("..", "%2E%2E"), ("a.b", "a/b")])
def test_runs_differing_in_any_character_get_their_own_files(butler: Butler, first: str, second: str) -> None:
    one = butler.put({"run": first}, "metrics", DATA_ID, run=first)
    two = butler.put({"run": second}, "metrics", DATA_ID, run=second)
    assert one.artifact.path != two.artifact.path
    assert butler.get(one) == {"run": first} and butler.get(two) == {"run": second}
    assert verify(butler).consistent


NESTED_RUNS = ["u/ana", "u/ana/run1", "u/ana/run1/x", "u", "u/ana/metrics"]


def _run_tree(run: str, path: str) -> str:
    """The directory of a RUN's files under the default template: as many leading segments of one
    of its paths as the RUN has parts."""
    return "/".join(path.split("/")[:run.count("/") + 1]) + "/"


def test_nested_run_names_get_trees_that_never_contain_each_other(butler: Butler) -> None:
    """RUNs u/ana and u/ana/run1: the files of one are never inside the other's directory, so
    nothing that works through a RUN's tree can reach another RUN's files; verify, removal and
    purge of one leave the other as it was."""
    refs = {run: butler.put({"run": run}, "metrics", DATA_ID, run=run) for run in NESTED_RUNS}
    trees = {run: _run_tree(run, ref.artifact.path) for run, ref in refs.items()}
    for run, tree in trees.items():
        for other, ref in refs.items():
            if other != run:
                assert not ref.artifact.path.startswith(tree), (run, other, ref.artifact.path)
    assert verify(butler).consistent
    butler.remove_runs(["u/ana"])
    for run in NESTED_RUNS[1:]:
        assert butler.get(refs[run]) == {"run": run}
    butler.retention.purge([refs["u/ana/run1"]], force=True)
    assert butler.get(refs["u/ana/run1/x"]) == {"run": "u/ana/run1/x"}
    assert verify(butler).consistent


def test_a_run_named_like_another_runs_file_gets_its_own_directory(butler: Butler) -> None:
    """RUN a's file a/metrics/g/20250101/metrics_Cam_1_0.json, then a RUN of that name plus
    '/x': on a local disk a file cannot also be a directory, so with RUN names nested as plain
    directories the second put failed."""
    first = butler.put({"n": 1}, "metrics", DATA_ID, run="a")
    second = butler.put({"n": 2}, "metrics", DATA_ID, run=first.artifact.path + "/x")
    assert butler.get(first) == {"n": 1} and butler.get(second) == {"n": 2}
    assert verify(butler).consistent


def test_a_template_with_text_after_run_in_its_segment_is_refused_at_put(make_butler) -> None:
    """'{run}_{dataset_type}': RUN 'a' with type 'b_c' and RUN 'a_b' with type 'c' would share files."""
    from conftest import populate

    b = make_butler(run="a", templates={"default": "{run}_{dataset_type}/{data_id}"})
    populate(b)
    b.register_dataset_type("metrics", ["visit", "detector"], "Dict")
    with pytest.raises(DatastoreError, match="text after \\{run\\}"):
        b.put({"a": 1}, "metrics", DATA_ID)
    assert any("text after {run}" in p for p in b.validate_config())


def test_a_data_id_value_with_a_slash_makes_no_directory(butler: Butler) -> None:
    butler.insert_records("band", [{"name": "g/r"}, {"name": "g_r"}])
    butler.register_dataset_type("bandstat", ["band"], "Dict")
    slash = butler.put({"b": 1}, "bandstat", band="g/r")
    underscore = butler.put({"b": 2}, "bandstat", band="g_r")
    assert slash.artifact.path == "run~/a/bandstat/g%2Fr/bandstat_g%2Fr.json"
    assert underscore.artifact.path == "run~/a/bandstat/g_r/bandstat_g%5Fr.json"
    assert butler.get(slash) == {"b": 1} and butler.get(underscore) == {"b": 2}


def test_data_ids_that_join_alike_get_their_own_files(butler: Butler) -> None:
    """{data_id} joins values with '_': ('A_B', 'C') and ('A', 'B_C') must not meet."""
    butler.insert_records("band", [{"name": name} for name in ("A_B", "C", "A", "B_C")])
    butler.insert_records("skymap", [{"name": name} for name in ("A_B", "C", "A", "B_C")])
    butler.register_dataset_type("pairs", ["skymap", "band"], "Dict")
    one = butler.put({"n": 1}, "pairs", skymap="A_B", band="C")
    two = butler.put({"n": 2}, "pairs", skymap="A", band="B_C")
    assert one.artifact.path.rsplit("/", 1)[1] != two.artifact.path.rsplit("/", 1)[1]
    assert butler.get(one) == {"n": 1} and butler.get(two) == {"n": 2}


def _decode_run(path: str) -> str:
    from urllib.parse import unquote

    parts = path.split("/")
    # every directory but the RUN's own ends with the mark '~', which no encoded part holds
    assert all(p.endswith("~") for p in parts[:-1]) and "~" not in parts[-1] and "~" not in "".join(
        p[:-1] for p in parts[:-1])
    return "/".join(unquote(part.removesuffix("~")) for part in parts)


@pytest.mark.parametrize("alphabet", ["ab/._ %", "aü/ñ.\x00\n~"])
def test_the_path_encoding_is_injective_and_stays_inside(alphabet: str) -> None:
    """Every encoded name decodes back (urllib's percent-decoding is the oracle), so no two names
    share a path; and no encoded name has an empty, '.' or '..' segment or starts with '/'."""
    from urllib.parse import unquote

    from hypothesis import given, settings
    from hypothesis import strategies as st

    from skybutler.datastore.templates import check_inside, encode_run, encode_value

    @settings(max_examples=400, deadline=None)
    @given(st.text(alphabet=alphabet, min_size=1, max_size=8))
    def check(name: str) -> None:
        run = encode_run(name)
        assert _decode_run(run) == name and check_inside(run) == run
        value = encode_value(name)
        assert "/" not in value and unquote(value) == name and check_inside(value) == value

    check()


def test_no_runs_directory_is_inside_another_runs() -> None:
    """Prefix-free: for two different RUN names, neither encoded directory (with its '/') starts the
    other's, checked on pairs of random names and on names made by extending one another."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from skybutler.datastore.templates import encode_run

    names = st.text(alphabet="ab/~%.", min_size=1, max_size=7)

    @settings(max_examples=600, deadline=None)
    @given(names, names)
    def check(first: str, second: str) -> None:
        for a, b in ((first, second), (first, first + "/" + second), (first, first + second)):
            if a != b:
                assert not (encode_run(b) + "/").startswith(encode_run(a) + "/"), (a, b)
                assert not (encode_run(a) + "/").startswith(encode_run(b) + "/"), (a, b)

    check()


@pytest.mark.parametrize("template, reason", [
    ("../../escape/{run}/{dataset_type}_{data_id}", "has a '..' segment"),
    ("/abs/{run}/{dataset_type}_{data_id}", "starts with '/'"),
    ("{run}//{dataset_type}_{data_id}", "has an empty segment"),
    ("{run}/./{dataset_type}_{data_id}", "has a '.' segment"),
    ("../../escape/{dataset_type}_{data_id}", "has a '..' segment"),
    ("{dataset_type}/{data_id}", "has no {run}"),
    ("{run}/{data_id}", "has no {dataset_type}"),
])
def test_a_template_that_could_escape_or_collide_is_refused_at_load(tmp_path: Path, template: str,
                                                                     reason: str) -> None:
    from skybutler.errors import ConfigError

    with pytest.raises(ConfigError, match=f"templates[.:].*{re.escape(reason)}"):
        Butler.create(tmp_path / "new", templates={"default": template})
    root = tmp_path / "repo"
    Butler.create(root).close()
    (root / "butler.yaml").write_text(f"datastore: datastore\ntemplates:\n  default: '{template}'\n")
    with pytest.raises(ConfigError, match=f"butler.yaml line [23]: templates[.:].*{re.escape(reason)}"):
        Butler(root)


def test_every_path_is_checked_at_put(butler: Butler, monkeypatch) -> None:
    """Even if a template's formatting went wrong, the path is checked before anything is written."""
    from skybutler.datastore import templates

    monkeypatch.setattr(templates, "_encoded", lambda name, value: ".." if name == "run" else str(value))
    with pytest.raises(DatastoreError, match="would leave the datastore root"):
        butler.put({"a": 1}, "metrics", DATA_ID)
    assert stored(butler) == set()


def test_dataset_type_names_follow_the_rubin_rule(butler: Butler) -> None:
    for good in ("calexp", "deep_coadd", "_private", "Visit_Summary2"):
        assert butler.register_dataset_type(good, ["instrument"], "Dict")
    for component in ("calexp.wcs", "a1.b2.c3"):  # a valid name, but a component's: not registered
        with pytest.raises(DatasetTypeError, match="names a component of"):
            butler.register_dataset_type(component, ["instrument"], "Dict")
    for bad in ("1calexp", "cal exp", "cal-exp", "a..b", "a.", ".a", "ü", "a/b", "", "a.1b"):
        with pytest.raises(DatasetTypeError, match="invalid dataset type name"):
            butler.register_dataset_type(bad, ["instrument"], "Dict")
    result = CliRunner().invoke(cli, ["register-dataset-type", str(butler.root), "cal-exp", "instrument", "-s", "Dict"])
    assert result.exit_code == 1 and result.stderr.startswith("error: invalid dataset type name 'cal-exp'")


def test_files_stored_under_the_old_rule_still_read(butler: Butler) -> None:
    """Paths are recorded in the registry: a file written where the old, folding rule put it
    (a RUN 'a b' in directory 'a_b') is still found, read and verified."""

    if not butler.datastore.local:
        pytest.skip("moves a local file to where the old rule put it")
    ref = butler.put({"old": 1}, "metrics", DATA_ID, run="a b")
    new = Path(butler.datastore.full_path(ref.artifact.path))
    old_path = ref.artifact.path.replace("a%20b", "a_b")
    old = Path(butler.datastore.full_path(old_path))
    old.parent.mkdir(parents=True)
    new.rename(old)
    table = butler.registry.schema.location
    with butler.registry.db.transaction() as conn:
        conn.execute(table.update().where(table.c.path == ref.artifact.path).values(path=old_path))
    with Butler(butler.root, collections="a b") as again:
        assert again.get("metrics", DATA_ID) == {"old": 1}
        assert verify(again, check_checksums=True).consistent
