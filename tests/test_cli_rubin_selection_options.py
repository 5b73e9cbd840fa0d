"""The Rubin butler's selection and repository options, each run through the Rubin ``butler``
command on a Rubin repository (the oracle) and through ``skybutler`` on its import:
transfer-datasets --find-first/--limit/--order-by/--dry-run/-t, associate -d/--limit, import
--export-file, ingest-files -t link/relsymlink, config-validate -q/--dataset-type/--ignore,
config-dump --subset/--file, create --seed-config.
The repositories and helpers are those of ``test_cli_rubin_habits``."""

from __future__ import annotations

import re
import shutil

import pytest
from click.testing import CliRunner

from skybutler import Butler
from test_cli_rubin_habits import ids, imported_rubin_pair, run


@pytest.fixture(scope="module")
def rubin_pair(tmp_path_factory):
    return imported_rubin_pair(tmp_path_factory.mktemp("rubin_selection"))


def _rubin(*args: object, code: int = 0):
    from lsst.daf.butler.cli.butler import cli as rubin_cli

    result = CliRunner().invoke(rubin_cli, [str(a) for a in args])
    assert result.exit_code == code, result.output
    return result


def _rubin_ids(root) -> list[str]:
    from lsst.daf.butler import Butler as RubinButler

    with RubinButler.from_config(str(root)) as b:
        return sorted({str(r.id) for r in b.registry.queryDatasets(..., collections=...)})


def _our_ids(root) -> list[str]:
    with Butler(root) as ours:
        return sorted({str(r.id) for t in ours.query_dataset_types()
                       for r in ours.query_datasets(t.name, collections="*", find_first=False)})


@pytest.mark.parametrize("options", [
    ["--limit", "2", "--order-by", "visit,-detector"],
    ["--limit", "-2", "--order-by", "-visit", "--order-by", "detector"],
    ["--find-first", "--collections", "Cam/best,Cam/run1"],
    ["--limit", "0", "-t", "copy", "--no-find-first"],
], ids=" ".join)
def test_transfer_datasets_selects_as_the_rubin_command(rubin_pair, tmp_path, options):
    from lsst.daf.butler import Butler as RubinButler

    RubinButler.makeRepo(str(tmp_path / "theirs"))
    Butler.create(tmp_path / "ours").close()
    collections = [] if "--collections" in options else ["--collections", "Cam/run1"]
    line = ["--dataset-type", "summary", *collections, "--where", "instrument = 'Cam'", "--register-dataset-types", *options]
    theirs = _rubin("transfer-datasets", rubin_pair[0], tmp_path / "theirs", *line)
    mine = run("transfer-datasets", rubin_pair[1], tmp_path / "ours", *line)
    expected = _rubin_ids(tmp_path / "theirs")
    assert _our_ids(tmp_path / "ours") == expected and expected
    assert f"Number of datasets transferred: {len(expected)}" in theirs.output
    assert f"transferred {len(expected)} datasets" in mine.stdout
    assert ("warning: more than 2 datasets match" in mine.stderr) == ("-2" in options)


def test_transfer_datasets_dry_run_counts_and_changes_nothing(rubin_pair, tmp_path):
    from lsst.daf.butler import Butler as RubinButler

    RubinButler.makeRepo(str(tmp_path / "theirs"))
    Butler.create(tmp_path / "ours").close()
    line = ["--dataset-type", "summary", "--collections", "Cam/run1", "--register-dataset-types", "--dry-run"]
    theirs = _rubin("transfer-datasets", rubin_pair[0], tmp_path / "theirs", *line).output
    mine = run("transfer-datasets", rubin_pair[1], tmp_path / "ours", *line).stdout
    (n,) = re.findall(r"Number of datasets transferred: (\d+)", theirs)
    assert f"dry run: {n} dataset(s) would be transferred" in mine and int(n) > 0
    assert _rubin_ids(tmp_path / "theirs") == _our_ids(tmp_path / "ours") == []
    refused = run("transfer-datasets", rubin_pair[1], tmp_path / "ours", "--dataset-type", "summary", "--find-first",
                  code=2)
    assert "needs --collections naming each collection" in refused.stderr
    refused = run("transfer-datasets", rubin_pair[1], tmp_path / "ours", "-t", "symlink", code=2)
    assert "TARGET gets its own copy of each file" in refused.stderr and _our_ids(tmp_path / "ours") == []


def test_associate_takes_limit_as_the_rubin_command(tmp_path):
    from lsst.daf.butler import Butler as RubinButler
    from lsst.daf.butler import CollectionType

    pair = imported_rubin_pair(tmp_path)
    with RubinButler.from_config(str(pair[0]), writeable=True) as b:
        b.registry.registerCollection("Cam/picked", CollectionType.TAGGED)
    line = ["Cam/picked", "--dataset-type", "summary", "--collections", "Cam/run1", "--limit", "2"]
    _rubin("associate", pair[0], *line)
    run("associate", pair[1], *line)
    with RubinButler.from_config(str(pair[0])) as b:
        assert len(list(b.registry.queryDatasets("summary", collections="Cam/picked"))) == 2
    assert len(ids(run("query-datasets", pair[1], "summary", "-c", "Cam/picked").stdout)) == 2


def test_import_export_file_names_the_export_in_the_directory(rubin_pair, tmp_path):
    from lsst.daf.butler import Butler as RubinButler

    export = tmp_path / "export"
    shutil.copytree(rubin_pair[0].parent / "export", export)
    (export / "export.yaml").rename(export / "mine.yaml")
    RubinButler.makeRepo(str(tmp_path / "theirs"))
    Butler.create(tmp_path / "ours").close()
    _rubin("import", tmp_path / "theirs", export, "--export-file", "mine.yaml", "-t", "copy")
    run("import", tmp_path / "ours", export, "--export-file", "mine.yaml", "-t", "copy", "--track-file-attrs")
    assert _our_ids(tmp_path / "ours") == _rubin_ids(tmp_path / "theirs") != []
    elsewhere = tmp_path / "elsewhere.yaml"
    shutil.copy(export / "mine.yaml", elsewhere)
    refused = run("import", tmp_path / "ours", export, "--export-file", elsewhere, code=2).stderr
    assert "is not in" in refused and "beside the export file" in refused


def test_config_validate_takes_quiet_dataset_types_and_ignore(rubin_pair):
    for options, checked in ((["--dataset-type", "summary"], 1), (["--dataset-type", "summ*,cat", "--ignore", "cat"], 1),
                             (["-q", "--ignore", "*"], 0)):
        _rubin("config-validate", rubin_pair[0], *[o.replace("summ*,cat", "summary") for o in options])
        assert f"({checked} dataset type(s) checked)" in run("config-validate", rubin_pair[1], *options).stdout
    assert "--dataset-type nosuch: no dataset type matches it" in run("config-validate", rubin_pair[1],
                                                                      "--dataset-type", "nosuch", code=1).stderr


def test_config_dump_subset_and_file(rubin_pair, tmp_path):
    assert _rubin("config-dump", rubin_pair[0], "--subset", ".datastore", "--file", tmp_path / "r.yaml").output == ""
    assert "root:" in (tmp_path / "r.yaml").read_text()  # the Rubin command's spelling, ours below
    template = run("config-dump", rubin_pair[1], "--subset", ".templates.default").stdout.strip()
    assert template == run("config-dump", rubin_pair[1], "--subset", "/templates/default").stdout.strip() != ""
    with Butler(rubin_pair[1]) as ours:
        assert run("config-dump", rubin_pair[1], "--subset", "datastore").stdout.strip() == ours.datastore.root.rstrip("/")
    run("config-dump", rubin_pair[1], "--file", tmp_path / "dumped.yaml")
    assert (tmp_path / "dumped.yaml").read_text().strip() == run("config-dump", rubin_pair[1]).stdout.strip()
    refused = run("config-dump", rubin_pair[1], "--subset", ".templates.nosuch", code=1).stderr
    assert "no key 'nosuch' in the configuration (keys there: default" in refused


def test_create_seed_config_takes_the_rubin_spelling(tmp_path):
    seed = tmp_path / "seed.yaml"
    seed.write_text(f"datastore:\n  root: {tmp_path / 'files'}\nchecksum: blake2b\n")
    _rubin("create", tmp_path / "theirs", "--seed-config", seed)  # the same seed file is taken
    run("create", tmp_path / "ours", "--seed-config", seed)
    dumped = run("config-dump", tmp_path / "ours").stdout
    assert f"datastore: {tmp_path / 'files'}" in dumped and "checksum: blake2b" in dumped
    run("create", tmp_path / "wins", "--seed-config", seed, "--checksum", "none", "--datastore", tmp_path / "other")
    dumped = run("config-dump", tmp_path / "wins").stdout
    assert f"datastore: {tmp_path / 'other'}" in dumped and "checksum: null" in dumped
    seed.write_text("registry:\n  db: sqlite:///x.db\nfrobnicate: 1\n")
    refused = run("create", tmp_path / "bad", "--seed-config", seed, code=1).stderr
    assert "skybutler has no setting frobnicate" in refused and not (tmp_path / "bad").exists()


@pytest.mark.parametrize("mode", ["relsymlink", "link"])
def test_ingest_files_links_as_the_rubin_command(tmp_path, mode):
    import os
    from pathlib import Path

    from lsst.daf.butler import Butler as RubinButler

    pair = imported_rubin_pair(tmp_path)
    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "s10.yaml").write_text('{"v": 1, "d": 0}')
    (tmp_path / "files.csv").write_text("file,visit,detector\ns10.yaml,1,0\n")
    line = ["summary", "Cam/linked", tmp_path / "files.csv", "--data-id", "instrument=Cam", "-t", mode,
            "--prefix", tmp_path / "in"]
    _rubin("ingest-files", pair[0], *line)
    run("ingest-files", pair[1], *line)
    with RubinButler.from_config(str(pair[0])) as b:
        (ref,) = b.registry.queryDatasets("summary", collections="Cam/linked")
        theirs = Path(b.getURI(ref).ospath)
    with Butler(pair[1]) as ours:
        (mine,) = ours.query_datasets("summary", collections="Cam/linked")
        path = Path(ours.datastore.full_path(mine.artifact.path))
        assert ours.get(mine) == {"v": 1, "d": 0}
    assert path.is_symlink() == theirs.is_symlink() == (mode == "relsymlink")
    if mode == "relsymlink":
        assert path.resolve() == theirs.resolve() == (tmp_path / "in" / "s10.yaml").resolve()
        assert not os.readlink(path).startswith("/") and not os.readlink(theirs).startswith("/")
    else:
        assert os.stat(path).st_ino == os.stat(theirs).st_ino == os.stat(tmp_path / "in" / "s10.yaml").st_ino
