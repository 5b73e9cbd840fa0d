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
    assert "1 packages (lsst.daf.butler.formatters.packages.PackagesFormatter)" in kept[0].getMessage()
    for ref in refs:
        (mine,) = ours.registry.refs_by_id([ref.id])
        name = ref.datasetType.name
        assert mine.run == ref.run and dict(mine.data_id.required) == dict(ref.dataId.required), name
        assert _our_bytes(ours, mine) == rubin.getURI(ref).read(), name
        if name in KEPT:
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
