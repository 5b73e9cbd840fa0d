"""A Rubin repository of pipeline outputs comes in whole: ECSV tables, task logs, task metadata
and JSON scalars are read as the Rubin butler reads them, and the rest (pex_config configs,
``Packages``, pickles) is kept byte for byte, its read naming the Rubin formatter.

The Rubin butler (lsst-daf-butler) writes the repository and is the oracle; without it these
tests are skipped.
"""

from __future__ import annotations

import json
import logging
import sqlite3

import pytest

daf_butler = pytest.importorskip("lsst.daf.butler", reason="the Rubin butler (pip install 'skybutler[rubin-test]') "
                                 "is the oracle of these tests")

from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
from astropy.table import Table  # noqa: E402
from lsst.daf.butler.logging import ButlerLogRecords  # noqa: E402
from lsst.utils.packages import Packages  # noqa: E402

from rubin_repos import make_rubin_repo, write_rubin_export  # noqa: E402
from skybutler.errors import FormatterError, SkybutlerError  # noqa: E402
from skybutler.interchange import import_rubin  # noqa: E402
from skybutler.repository_transfer import import_datasets  # noqa: E402
from test_rubin_interchange import _our_bytes  # noqa: E402

PEX_CONFIG = "lsst.pipe.base.formatters.pexConfig.PexConfigFormatter"
#: Dataset type -> Rubin storage class of the pipeline outputs the fixture writes.
OUTPUTS = {"srcTable": "AstropyTable", "packages": "Packages", "isr_log": "ButlerLogRecords", "nStars": "int",
           "isr_config": "Config", "isr_metadata": "TaskMetadata"}
KEPT = {"packages": "PackagesFormatter", "isr_config": "PexConfigFormatter"}


class PyFileFormatter(daf_butler.FormatterV2):
    """Stands in for PexConfigFormatter (lsst.pipe.base is not installed) while the Rubin butler
    ingests a config file; the record is then given PexConfigFormatter's name, as a pipeline's put leaves it."""

    supported_extensions = frozenset({".py"})
    can_read_from_local_file = True


def make_outputs_repo(base: Path):
    """The repository of :func:`make_rubin_repo` plus the outputs a pipeline run writes, put by the
    Rubin butler (config and task metadata ingested: their Python classes are not installed)."""
    b = make_rubin_repo(base / "repo")
    reg, u = b.registry, b.dimensions
    for name, sc in OUTPUTS.items():
        dims = [] if name in ("packages", "isr_config") else ["instrument", "visit"]
        reg.registerDatasetType(daf_butler.DatasetType(name, dims, sc, universe=u))
    run = "Cam/pipeline/run"
    reg.registerRun(run)
    for visit in (1, 2):
        table = Table({"x": np.arange(3.0) * visit, "name": ["a", "bb", "c"], "flag": [True, False, True]})
        table["x"].unit = "deg"
        table.meta["visit"] = visit
        b.put(table, "srcTable", instrument="Cam", visit=visit, run=run)
        log = ButlerLogRecords.from_records([])
        log.append(logging.LogRecord("isr", logging.INFO, "isr.py", 3, "visit %d done", (visit,), None))
        log.append(logging.LogRecord("isr", logging.WARNING, "isr.py", 4, "saturated: %s", ("R01",), None))
        b.put(log, "isr_log", instrument="Cam", visit=visit, run=run)
        b.put(visit * 100 + 7, "nStars", instrument="Cam", visit=visit, run=run)
        metadata = base / f"metadata{visit}.json"
        metadata.write_text(json.dumps({"metadata": {"isr": {"scalars": {"visit": visit}, "arrays": {"t": [1.5]},
                                                             "metadata": {}}}}))
        b.ingest(daf_butler.FileDataset(path=str(metadata), refs=[daf_butler.DatasetRef(
            reg.getDatasetType("isr_metadata"), {"instrument": "Cam", "visit": visit}, run=run)],
            formatter="lsst.daf.butler.formatters.json.JsonFormatter"), transfer="copy")
    b.put(Packages({"numpy": "2.0", "astropy": "6.1"}), "packages", run=run)
    config = base / "isr_config.py"
    config.write_text("import lsst.ip.isr.isrTask\nassert type(config) is lsst.ip.isr.isrTask.IsrTaskConfig\n"
                      "config.doBias=True\n")
    b.ingest(daf_butler.FileDataset(path=str(config), refs=[daf_butler.DatasetRef(
        reg.getDatasetType("isr_config"), {}, run=run)], formatter=PyFileFormatter), transfer="copy")
    with sqlite3.connect(base / "repo" / "gen3.sqlite3") as db:
        assert db.execute("UPDATE file_datastore_records SET formatter = ? WHERE path LIKE '%isr_config%'",
                          (PEX_CONFIG,)).rowcount == 1
    # a butler opened anew: no cached record of the stand-in formatter
    return write_rubin_export(daf_butler.Butler.from_config(str(base / "repo")), base)


@pytest.fixture(scope="module")
def outputs(tmp_path_factory):
    base = tmp_path_factory.mktemp("outputs")
    b, refs = make_outputs_repo(base)
    return {"butler": b, "refs": refs, "export": base / "export", "repo": base / "repo"}


def _rubin_log(records) -> list[tuple]:
    return [(r.name, r.levelno, r.message) for r in records]


def _assert_same_table(mine: Table, theirs: Table) -> None:
    assert mine.colnames == theirs.colnames and mine.meta == theirs.meta
    for name in theirs.colnames:
        assert mine[name].unit == theirs[name].unit and mine[name].dtype == theirs[name].dtype, name
        assert list(mine[name]) == list(theirs[name]), name


@pytest.mark.parametrize("source", ["export", "repo"])
def test_a_pipeline_output_repository_comes_in_every_dataset(outputs, make_butler, source, caplog):
    rubin, refs = outputs["butler"], outputs["refs"]
    ours = make_butler(f"sky_{source}")
    with caplog.at_level(logging.WARNING):
        assert import_datasets(ours, outputs[source], transfer="copy") == len(refs)
    kept = [r for r in caplog.records if "kept without a reader" in r.getMessage()]
    assert len(kept) == 1  # the up-front check names what is kept, by type and Rubin formatter
    assert f"1 isr_config ({PEX_CONFIG})" in kept[0].getMessage()
    assert "packages" not in kept[0].getMessage()  # kept byte for byte, but read
    for ref in refs:
        (mine,) = ours.registry.refs_by_id([ref.id])
        name = ref.datasetType.name
        assert mine.run == ref.run and dict(mine.data_id.required) == dict(ref.dataId.required), name
        assert _our_bytes(ours, mine) == rubin.getURI(ref).read(), name
        if name == "packages":  # kept, and read as the Rubin butler reads it
            assert mine.dataset_type.storage_class == "rubin:Packages"
            assert ours.get(mine) == dict(rubin.get(ref)) == {"numpy": "2.0", "astropy": "6.1"}
        elif name in KEPT:
            assert mine.dataset_type.storage_class == f"rubin:{OUTPUTS[name]}"
            with pytest.raises(FormatterError, match=f"written by the Rubin formatter {KEPT[name]}, which skybutler "
                                                     "has no reader for"):
                ours.get(mine)
        elif name == "srcTable":
            _assert_same_table(ours.get(mine), rubin.get(ref))
        elif name == "isr_log":
            mine_log = ours.get(mine)
            assert [(r["name"], r["levelno"], r["message"]) for r in mine_log] == _rubin_log(rubin.get(ref))
        elif name == "isr_metadata":  # the Rubin butler needs lsst.pipe.base to read it: the file is the oracle
            assert ours.get(mine) == json.loads(rubin.getURI(ref).read())
        elif name in OUTPUTS:
            assert ours.get(mine) == rubin.get(ref), name
    assert ours.get("nStars", instrument="Cam", visit=2, collections="Cam/pipeline/run") == 207
    with pytest.raises(SkybutlerError, match="kept from a Rubin repository takes no new datasets"):
        ours.put({"a": 1}, "packages", run="Cam/pipeline/run")
    assert import_datasets(ours, outputs[source], transfer="copy") == 0  # again: nothing new


def test_json_of_a_class_unknown_here_is_read_when_a_mapping_and_kept_otherwise(outputs, tmp_path, make_butler):
    """A JSON file whose Rubin storage class skybutler does not know is looked at by the up-front
    check: a mapping (``MetricMeasurementBundle``) is read as a ``Dict``, anything else
    (``StructuredDataList`` holding ``7``) is kept, never refused while files are placed."""
    import shutil

    export = tmp_path / "export"
    shutil.copytree(outputs["export"], export)
    text = (export / "export.yaml").read_text()
    assert "storage_class: int" in text and "storage_class: TaskMetadata" in text
    (export / "export.yaml").write_text(text.replace("storage_class: int", "storage_class: StructuredDataList")
                                        .replace("storage_class: TaskMetadata",
                                                 "storage_class: MetricMeasurementBundle"))
    ours = make_butler("sky")
    assert import_rubin(ours, export) == len(outputs["refs"])
    (ref,) = ours.query_datasets("nStars", collections="Cam/pipeline/run", where="visit = 1")
    assert ref.dataset_type.storage_class == "rubin:StructuredDataList"
    with pytest.raises(FormatterError, match="JsonFormatter"):
        ours.get(ref)
    (metadata,) = ours.query_datasets("isr_metadata", collections="Cam/pipeline/run", where="visit = 2")
    assert metadata.dataset_type.storage_class == "Dict"
    assert ours.get(metadata)["metadata"]["isr"]["scalars"] == {"visit": 2}


@pytest.fixture
def pex_config_formatter(monkeypatch):
    """The Rubin butler imports a dataset only if its formatter class imports; PexConfigFormatter
    lives in lsst.pipe.base (not installed here): a stand-in class of that name lets the import
    proceed, and the config file is compared byte for byte."""
    import sys
    import types

    try:
        import lsst.pipe.base.formatters.pexConfig  # noqa: F401
        return
    except ImportError:
        pass
    names = ["lsst.pipe", "lsst.pipe.base", "lsst.pipe.base.formatters", "lsst.pipe.base.formatters.pexConfig"]
    for name in names:
        monkeypatch.setitem(sys.modules, name, types.ModuleType(name))
    stand_in = type("PexConfigFormatter", (PyFileFormatter,), {"__module__": names[-1]})
    sys.modules[names[-1]].PexConfigFormatter = stand_in
    for parent, child in zip(names, names[1:]):
        setattr(sys.modules[parent], child.rsplit(".", 1)[1], sys.modules[child])
    import lsst

    monkeypatch.setattr(lsst, "pipe", sys.modules["lsst.pipe"], raising=False)


@pytest.mark.parametrize("form", ["directory", "zip"])
def test_kept_files_go_back_to_the_rubin_butler_with_their_formatter_and_class(outputs, make_butler, tmp_path,
                                                                                pex_config_formatter, form):
    """A file kept from a Rubin repository (a config, ``Packages``) exported by skybutler goes into
    the Rubin butler under its first formatter and storage class, byte for byte, and the Rubin
    butler reads it as it read the original."""
    from skybutler.interchange import export_rubin

    rubin = outputs["butler"]
    ours = make_butler("sky")
    import_rubin(ours, outputs["export"])
    refs = list(ours.query_datasets(["packages", "isr_config"], collections="Cam/pipeline/run"))
    destination = tmp_path / ("back.zip" if form == "zip" else "back")
    assert export_rubin(ours, refs, destination) == 2
    daf_butler.Butler.makeRepo(str(tmp_path / "rubin"))
    theirs = daf_butler.Butler.from_config(str(tmp_path / "rubin"), writeable=True)
    if form == "zip":
        for name in KEPT:
            theirs.registry.registerDatasetType(rubin.registry.getDatasetType(name))
        theirs.ingest_zip(str(destination))
    else:
        theirs.import_(directory=str(destination), filename=str(destination / "export.yaml"), transfer="copy")
    for name in KEPT:
        (original,) = rubin.registry.queryDatasets(name, collections="Cam/pipeline/run")
        (back,) = theirs.registry.queryDatasets(name, collections="Cam/pipeline/run")
        assert back.id == original.id and back.datasetType == original.datasetType, name
        (copied,) = theirs.retrieveArtifacts([back], str(tmp_path / "out" / name) + "/", transfer="copy",
                                             preserve_path=False)
        assert copied.read() == rubin.getURI(original).read(), name  # out of the zip too
        formatters = {theirs._datastore.getStoredItemsInfo(back)[0].formatter,
                      rubin._datastore.getStoredItemsInfo(original)[0].formatter}
        assert len(formatters) == 1 and KEPT[name] in formatters.pop(), name
    assert theirs.get("packages", collections="Cam/pipeline/run") == rubin.get("packages",
                                                                               collections="Cam/pipeline/run")


def test_a_kept_file_of_a_formatter_not_known_here_is_refused_by_name(outputs, make_butler, tmp_path):
    import shutil

    from skybutler.interchange import export_rubin

    export = tmp_path / "export"
    shutil.copytree(outputs["export"], export)
    text = (export / "export.yaml").read_text()
    (export / "export.yaml").write_text(text.replace("lsst.daf.butler.formatters.packages.PackagesFormatter",
                                                     "lsst.example.formats.OddFormatter"))
    ours = make_butler("sky")
    import_rubin(ours, export)
    refs = list(ours.query_datasets("packages", collections="Cam/pipeline/run"))
    with pytest.raises(SkybutlerError, match="'rubin:OddFormatter' cannot go back to the Rubin butler: its "
                                             "formatter's module was not recorded"):
        export_rubin(ours, refs, tmp_path / "back")
    assert not (tmp_path / "back" / "export.yaml").exists()


def test_packages_in_each_of_its_rubin_forms_are_read_without_importing_or_unpickling():
    """The Rubin butler writes ``Packages`` as tagged YAML, JSON or a pickle (lsst.utils decides by
    extension): the first two read as the Rubin butler reads them, a pickle is refused by name."""
    import io

    from skybutler.formats import get_formatter

    packages = Packages({"numpy": "2.0", "lsst_distrib": "w.2024.50", "python": "3.11.9"})
    reader = get_formatter("rubin:PackagesFormatter")
    for form in ("yaml", "json"):
        mine = reader.read(io.BytesIO(packages.toBytes(form)))
        assert mine == dict(Packages.fromBytes(packages.toBytes(form), form)), form
    with pytest.raises(FormatterError, match="it is a pickle, which skybutler never unpickles"):
        reader.read(io.BytesIO(packages.toBytes("pickle")))
    with pytest.raises(FormatterError, match="holds a mapping of package names to versions"):
        reader.read(io.BytesIO(b"!<lsst.utils.packages.Packages>\n- numpy\n"))
    with pytest.raises(FormatterError, match="could not read"):
        reader.read(io.BytesIO(b"!!python/object/apply:os.system ['true']\n: :"))
    assert reader.read(io.BytesIO(b"!!python/object/apply:os.system\nnumpy: '2.0'\n")) == {"numpy": "2.0"}
