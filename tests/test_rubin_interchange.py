"""Interchange with the Rubin butler (lsst-daf-butler, the ``rubin-test`` extra): its exports, zips
and whole repositories come in without losing anything, and bad ones are refused precisely.
(Back out to it: ``test_rubin_export.py``; its universes: ``test_rubin_universes.py``.)

Every test here uses the real Rubin butler as the oracle; without it they are skipped.
"""

from __future__ import annotations

import pytest

daf_butler = pytest.importorskip("lsst.daf.butler", reason="the Rubin butler (pip install 'skybutler[rubin-test]') "
                                 "is the oracle of these tests")

import glob  # noqa: E402
import uuid  # noqa: E402
from pathlib import Path  # noqa: E402

import astropy.units as units  # noqa: E402
from astropy.time import Time  # noqa: E402
from click.testing import CliRunner  # noqa: E402

from rubin_repos import T0, make_rubin_export, make_rubin_repo, region_at  # noqa: E402
from skybutler import Butler  # noqa: E402
from skybutler.cli.main import cli  # noqa: E402
from skybutler.errors import FormatterError  # noqa: E402
from skybutler.interchange import RubinImportError, import_rubin  # noqa: E402
from skybutler.repository_transfer import import_datasets  # noqa: E402

RubinButler = daf_butler.Butler
SUMMARY_WHERE = "band = 'r' AND detector IN (0..1)"


# -- a Rubin repository, made with the Rubin butler --------------------------------


@pytest.fixture(scope="module")
def rubin(tmp_path_factory):
    """The Rubin repository, its export.yaml directory and its zip."""
    base = tmp_path_factory.mktemp("rubin")
    b, refs = make_rubin_export(base)
    zips = {}
    for name, zipped in (("zip", [r.expanded(b.registry.expandDataId(r.dataId)) for r in refs]), ("bare_zip", refs)):
        (base / name).mkdir()  # `butler retrieve-artifacts --zip` writes the records; bare refs write none
        b.retrieve_artifacts_zip(zipped, str(base / name))
        (zips[name],) = (Path(p) for p in glob.glob(str(base / name / "*.zip")))
    return {"butler": b, "export": base / "export", "refs": refs, **zips}


def _ids(refs) -> set[tuple[uuid.UUID, tuple]]:
    return {(r.id, tuple(sorted((k, v) for k, v in dict(r.dataId.required if hasattr(r, "dataId")
                                                              else r.data_id.required).items())))
            for r in refs}


def _our_bytes(ours: Butler, ref) -> bytes:
    """A stored file's bytes, on local disk or an object store."""
    import fsspec

    with fsspec.open(ours.get_uri(ref), "rb") as stream:
        return stream.read()


def _rubin_bounds(span) -> tuple:
    """A Rubin timespan's TAI nanosecond bounds, None for an unbounded side."""
    return (None if span.begin is None else span.nsec[0], None if span.end is None else span.nsec[1])


def _our_bounds(span) -> tuple:
    begin, end = span.to_ns()
    return (None if span.begin is None else begin, None if span.end is None else end)


def _rubin_record(record) -> dict:
    out = record.toDict()
    span = out.pop("timespan", None)
    if span is not None:
        out["timespan"] = _rubin_bounds(span)
    region = out.pop("region", None)
    if region is not None:
        out["region"] = region.encode()
    if isinstance(out.get("hash"), bytes):
        out["hash"] = out["hash"].hex()
    return out


def _our_record(element: str, record) -> dict:
    out = {k: v for k, v in record.items()}
    key = record.element.key
    if key is not None:
        out[key.name] = out.pop(element)
    span = out.pop("timespan", None)
    if span is not None:
        out["timespan"] = _our_bounds(span)
    region = out.pop("region", None)
    if region is not None:
        out["region"] = region.encode()
    return out


RUBIN_ELEMENTS = ("instrument", "physical_filter", "detector", "day_obs", "exposure", "visit", "visit_system",
                  "visit_definition", "visit_system_membership", "visit_detector_region", "skymap", "tract", "patch")


def assert_same_repository(rubin_butler, ours: Butler, types=("summary", "cat", "bias", "deepSummary"),
                           elements=RUBIN_ELEMENTS, where=SUMMARY_WHERE, tagged="Cam/best",
                           calib=("Cam/calib", "bias", 3)) -> None:
    """Query answers, records, collections and file contents agree between the two butlers."""
    reg = rubin_butler.registry
    for name in types:
        theirs = list(reg.queryDatasets(name, collections=..., findFirst=False))
        mine = list(ours.query_datasets(name, collections=[c.name for c in ours.collections.query(types=["run"])],
                                        find_first=False))
        assert _ids(theirs) == _ids(mine), name
        for ref in theirs:
            (my_ref,) = [r for r in mine if r.id == ref.id]
            assert _our_bytes(ours, my_ref) == rubin_butler.getURI(ref).read(), name
    theirs = {tuple(sorted(d.required.items())) for d in reg.queryDataIds(["visit", "detector"], where=where,
                                                                          instrument="Cam")}
    mine = {tuple(sorted(d.required.items())) for d in ours.query_data_ids(["visit", "detector"], where,
                                                                           instrument="Cam")}
    assert theirs == mine and mine
    for element in elements:
        theirs = sorted(sorted(_rubin_record(r).items()) for r in reg.queryDimensionRecords(element))
        assert theirs, element
        keep = {k for k, _ in theirs[0]}
        mine = sorted(sorted((k, v) for k, v in _our_record(element, r).items() if k in keep)
                      for r in ours.query_dimension_records(element))
        assert mine == theirs, element
    if tagged is not None:
        assert tuple(ours.collections.get_chain("Cam/defaults")) == tuple(reg.getCollectionChain("Cam/defaults"))
    if tagged is not None:
        members = {r.id for r in reg.queryDatasets(..., collections=tagged)}
        assert {r.id for t in types for r in ours.query_datasets(t, collections=tagged, find_first=False)} == members
        assert members
    if calib is None:
        return
    collection, calib_type, n_calibs = calib
    theirs = {(a.ref.id, _rubin_bounds(a.timespan))
              for a in reg.queryDatasetAssociations(calib_type, collections=collection)}
    mine = {(ref.id, _our_bounds(span)) for ref, span in ours.collections.validity(collection, calib_type)}
    assert mine == theirs and len(mine) == n_calibs


def test_rubin_export_comes_in_whole(rubin, make_butler):
    ours = make_butler("sky")
    assert import_rubin(ours, rubin["export"]) == len(rubin["refs"])
    assert_same_repository(rubin["butler"], ours)
    # Reading by data ID through the chain, and calibrations by time, as a user would.
    assert ours.get("summary", instrument="Cam", visit=2, detector=1, collections="Cam/defaults") == \
        {"visit": 2, "detector": 1, "values": [1.0, 1]}
    table = ours.get("cat", instrument="Cam", visit=2, collections="Cam/run1", parameters={"as": "astropy"})
    assert list(table["x"]) == [2.0, 3.0, 4.0, 5.0]
    found = ours.find_dataset("bias", instrument="Cam", detector=2, collections="Cam/calib",
                              timespan=_our_span(T0))
    assert ours.get(found) == {"bias": 2}
    assert ours.get_dataset_type("cat").storage_class == "ArrowAstropy"
    # New fields are queryable, and the exact (nanosecond) times came through.
    assert ours.query_data_ids(["exposure"], "exposure.can_see_sky = TRUE", instrument="Cam").count() == 1
    exposure = ours.get_record("exposure", instrument="Cam", exposure=1)
    theirs = next(iter(rubin["butler"].registry.queryDimensionRecords("exposure", exposure=1, instrument="Cam")))
    assert exposure["timespan"].to_ns() == theirs.timespan.nsec
    # A second import finds everything there and adds nothing.
    assert import_rubin(ours, rubin["export"]) == 0


def test_a_found_datasets_data_id_has_its_implied_values_as_the_rubin_butlers(rubin, make_butler):
    """``find_dataset`` (and so ``get``'s lookup) answers with the whole data ID, band, physical
    filter and day_obs of a visit's dataset included, as the Rubin butler's ``find_dataset`` does."""
    ours = make_butler("sky")
    import_rubin(ours, rubin["export"])
    for ref in rubin["refs"]:
        theirs = rubin["butler"].find_dataset(ref.datasetType.name, ref.dataId.required, collections=ref.run)
        mine = ours.find_dataset(ref.datasetType.name, dict(ref.dataId.required), collections=ref.run)
        assert mine.id == theirs.id
        assert mine.data_id.mapping == dict(theirs.dataId.mapping), ref.datasetType.name
    summary = ours.find_dataset("summary", instrument="Cam", visit=2, detector=1, collections="Cam/run1")
    assert (summary.data_id["band"], summary.data_id["physical_filter"], summary.data_id["day_obs"]) == (
        "g", "Cam-g", 20240101)


def test_export_yaml_is_read_a_record_at_a_time_as_the_whole_document_reads(rubin, tmp_path):
    """The streamed reading of the Rubin butler's export.yaml gives what loading the whole document
    gives, block by block and record by record; broken YAML late in a block is one line as before."""
    import io

    from skybutler.errors import SkybutlerError
    from skybutler.interchange import rubin_yaml

    text = (rubin["export"] / "export.yaml").read_text()
    whole = rubin_yaml.load(text)
    streamed = rubin_yaml.load_streamed(io.StringIO(text))
    blocks = []
    for block in streamed["data"]:
        if "records" in block:
            records = block["records"]
            assert not isinstance(records, list)  # an iterator: one record at a time
            block = {**block, "records": list(records)}
        blocks.append(block)
    assert {k: v for k, v in streamed.items() if k != "data"} == {k: v for k, v in whole.items() if k != "data"}
    assert blocks == whole["data"] and any(b.get("type") == "dataset" for b in blocks)
    # A dumper anchors an object written twice: a later record may name an earlier one's node.
    aliased = ("version: 1.0.2\ndata:\n- type: dimension\n  element: day_obs\n  records:\n"
               "  - {instrument: Cam, id: 1, timespan: &span {begin: 1}}\n  - {instrument: Cam, id: 2, timespan: *span}\n")
    block = next(rubin_yaml.load_streamed(io.StringIO(aliased))["data"])
    assert list(block["records"]) == rubin_yaml.load(aliased)["data"][0]["records"]
    cut = text[:text.rindex("dataset_id:")] + "dataset_id: !uuid [unclosed\n"
    with pytest.raises(SkybutlerError, match="not valid YAML"):
        for block in rubin_yaml.load_streamed(io.StringIO(cut))["data"]:
            list(block.get("records") or [])


def _our_span(t: Time):
    from skybutler import Timespan

    return Timespan(t, t + 1 * units.s)


def test_a_whole_rubin_repository_comes_in_as_its_export(rubin, make_butler):
    """``skybutler import REPO RUBIN_REPO``: the Rubin butler exports it (files linked, not
    copied) and the export comes in; the Rubin repository keeps every file.  A transfer that
    would take the Rubin datastore's files away is refused and nothing lands."""
    source = rubin["export"].parent / "repo"
    ours = make_butler("whole")
    refused = CliRunner().invoke(cli, ["import", str(ours.root), str(source), "--transfer", "move"])
    assert refused.exit_code == 1 and "files of a Rubin repository are copied in" in refused.stderr
    assert ours.query_dataset_types("*") == []
    result = CliRunner().invoke(cli, ["import", str(ours.root), str(source)])
    assert result.exit_code == 0, result.output
    assert f"imported {len(rubin['refs'])} datasets" in result.stdout
    assert_same_repository(rubin["butler"], ours)
    assert all(Path(rubin["butler"].getURI(r).ospath).is_file() for r in rubin["refs"])


def test_a_whole_rubin_repository_with_an_empty_run_and_a_file_outside_it_comes_in(tmp_path, make_butler):
    """A RUN without datasets comes in with the whole repository when a chain names it (it used to be
    left out, and the chain refused), and so does an empty TAGGED collection: collections, their
    types and chains are the Rubin butler's.  A file ingested with transfer "direct" (outside the
    Rubin datastore, as raws often are) comes in too, with the content the Rubin butler reads."""
    import yaml

    b = make_rubin_repo(tmp_path / "repo")
    outside = tmp_path / "raw area é"
    outside.mkdir()
    (outside / "summary 1.yaml").write_text(yaml.safe_dump({"direct": 1}))
    b.registry.registerRun("ingested")
    direct = daf_butler.DatasetRef(b.registry.getDatasetType("summary"), {"instrument": "Cam", "visit": 1, "detector": 0},
                                   run="ingested")
    b.ingest(daf_butler.FileDataset(path=str(outside / "summary 1.yaml"), refs=[direct]), transfer="direct")
    b.registry.registerRun("empty/run")
    b.registry.registerCollection("empty/tagged", daf_butler.CollectionType.TAGGED)
    b.registry.registerCollection("outer", daf_butler.CollectionType.CHAINED)
    b.registry.setCollectionChain("outer", ["empty/tagged", "Cam/defaults", "empty/run"])
    ours = make_butler("whole")
    assert import_datasets(ours, tmp_path / "repo") == len({r.id for r in b.registry.queryDatasets(..., collections=...)})
    for name in b.registry.queryCollections(...):
        kind = b.registry.getCollectionType(name)
        assert ours.collections.exists(name) and ours.collections.info(name).type.name == kind.name, name
        if kind is daf_butler.CollectionType.CHAINED:
            assert list(ours.collections.get_chain(name)) == list(b.registry.getCollectionChain(name))
    assert ours.query_datasets("summary", collections="empty/run", find_first=False).count() == 0
    assert_same_repository(b, ours)
    assert ours.get("summary", instrument="Cam", visit=1, detector=0, collections="ingested") == b.get(direct) \
        == {"direct": 1}


def test_a_whole_rubin_repository_of_an_unread_universe_is_refused_by_its_name(tmp_path, make_butler):
    """A Rubin repository of universe 5 (before day_obs and group were dimensions), made by the Rubin
    butler: refused whole, the error naming the repository (not the scratch export) and the version."""
    from lsst.daf.butler import DimensionConfig

    config = Path(daf_butler.__file__).parent / "configs" / "old_dimensions" / "daf_butler_universe5.yaml"
    RubinButler.makeRepo(str(tmp_path / "repo"), dimensionConfig=DimensionConfig(str(config)))
    b = RubinButler.from_config(str(tmp_path / "repo"), writeable=True)
    b.registry.insertDimensionData("instrument", {"name": "Cam", "visit_max": 10, "exposure_max": 10,
                                                  "detector_max": 4, "class_name": "x.Cam"})
    b.registry.registerDatasetType(daf_butler.DatasetType("cfg", ["instrument"], "StructuredDataDict",
                                                          universe=b.dimensions))
    b.registry.registerRun("r")
    b.put({"a": 1}, "cfg", instrument="Cam", run="r")
    ours = make_butler("sky")
    with pytest.raises(RubinImportError, match=rf"cannot import the Rubin repository {tmp_path / 'repo'} \(1 problem"
                                               r"\(s\), nothing was imported\): dimension universe daf_butler version 5 "
                                               r"is not supported"):
        import_datasets(ours, tmp_path / "repo")
    assert ours.query_dataset_types("*") == [] and ours.query_dimension_records("instrument").count() == 0


def test_opening_a_rubin_repository_in_place_says_to_import_it(rubin):
    """A Rubin repository is not opened as a skybutler one (its butler.yaml configures the Rubin
    butler's classes): the error says what it is and what to run, and the repository is untouched."""
    from skybutler.errors import ConfigError

    source = rubin["export"].parent / "repo"
    before = sorted((p, p.stat().st_mtime_ns) for p in source.rglob("*"))
    with pytest.raises(ConfigError, match=r"is a Rubin butler \(lsst-daf-butler\) repository, which skybutler does "
                                          r"not open in place: import it .*'skybutler import REPO "):
        Butler(source)
    result = CliRunner().invoke(cli, ["query-datasets", str(source), "summary"])
    assert result.exit_code == 1 and "is a Rubin butler (lsst-daf-butler) repository" in result.stderr
    assert sorted((p, p.stat().st_mtime_ns) for p in source.rglob("*")) == before


def test_rubin_zip_comes_in_with_its_records(rubin, make_butler):
    ours = make_butler("sky")
    assert import_rubin(ours, rubin["zip"]) == len(rubin["refs"])
    assert_same_repository(rubin["butler"], ours, elements=("instrument", "physical_filter", "detector", "day_obs",
                                                            "visit", "visit_detector_region", "skymap", "patch"),
                           tagged=None, calib=None)
    assert ours.get("deepSummary", skymap="sky", tract=7, patch=1, band="r", collections="Cam/run1") == {"patch": 1}


def test_bare_rubin_zip_comes_in_with_records_already_there(rubin, make_butler):
    ours = make_butler("sky")
    with pytest.raises(Exception, match="no instrument record"):  # a zip of bare refs carries no records
        import_rubin(ours, rubin["bare_zip"])
    assert not ours.collections.query()
    assert import_rubin(ours, rubin["export"]) == len(rubin["refs"])
    ours.collections.set_chain("Cam/defaults", ["Cam/best", "Cam/calib"])
    ours.remove_runs(["Cam/run1"])
    n_run1 = len([r for r in rubin["refs"] if r.run == "Cam/run1"])
    result = CliRunner().invoke(cli, ["import", str(ours.root), str(rubin["bare_zip"])])
    assert result.exit_code == 0, result.output
    assert f"imported {n_run1} datasets" in result.output
    refs = list(ours.query_datasets("summary", collections="Cam/run1"))
    assert {r.id for r in refs} == {r.id for r in rubin["refs"] if r.datasetType.name == "summary"}
    assert ours.get("summary", instrument="Cam", visit=1, detector=2, collections="Cam/run1")["detector"] == 2
    assert not list(ours.root.glob(".skybutler/uploads/*"))  # the scratch extraction is gone


@pytest.mark.parametrize("transfer", ["direct", "symlink"])
def test_rubin_export_files_by_link_or_in_place(rubin, tmp_path, transfer):
    ours = Butler.create(tmp_path / "sky")
    result = CliRunner().invoke(cli, ["import", str(tmp_path / "sky"), str(rubin["export"] / "export.yaml"),
                                      "--transfer", transfer])
    assert result.exit_code == 0, result.output
    ref = next(iter(ours.query_datasets("cat", collections="Cam/run1")))
    uri = ours.get_uri(ref).removeprefix("file://")
    if transfer == "direct":
        assert uri.startswith(str(rubin["export"]))
    else:
        assert Path(uri).is_symlink()
    assert len(ours.get(ref)) == 4


# -- bad input: a precise error per item, and the repository as it was -------------


def _repository_state(butler: Butler) -> tuple:
    files = sorted(str(p.relative_to(butler.root)) for p in butler.root.rglob("*")
                   if p.is_file() and not p.name.startswith("registry.sqlite3"))
    records = {e: len(butler.registry.dimensions.fetch_all(e)) for e in ("instrument", "visit", "band", "exposure")}
    return (files, records, sorted(c.name for c in butler.collections.query()),
            sorted(d.name for d in butler.query_dataset_types()))


def _edit(path: Path, old: str, new: str, count: int = 1) -> None:
    text = path.read_text()
    assert old in text, old
    path.write_text(text.replace(old, new, count))


@pytest.fixture
def broken_export(rubin, tmp_path):
    import shutil

    target = tmp_path / "export"
    shutil.copytree(rubin["export"], target)
    return target


def test_unknown_export_version_is_refused_whole(broken_export, tmp_path):
    ours = Butler.create(tmp_path / "sky")
    before = _repository_state(ours)
    from skybutler.interchange.rubin_read import read_rubin_export

    _edit(broken_export / "export.yaml", "version: 1.0.2", "version: 1.1.0")  # any 1.x is read
    assert read_rubin_export(broken_export, ours.universe).problems == []
    _edit(broken_export / "export.yaml", "version: 1.1.0", "version: 2.0.0")
    result = CliRunner().invoke(cli, ["import", str(tmp_path / "sky"), str(broken_export)])
    assert result.exit_code == 1
    assert "Traceback" not in result.output and len(result.stderr.strip().splitlines()) == 1
    assert "export format version 2.0.0 is not supported" in result.stderr
    assert _repository_state(ours) == before


def test_a_missing_file_is_named_and_nothing_lands_and_unread_formats_are_kept_unread(broken_export, tmp_path):
    import pickle

    ours = Butler.create(tmp_path / "sky")
    before = _repository_state(ours)
    text = (broken_export / "export.yaml").read_text()
    summary_paths = sorted(line.split("path: ")[1] for line in text.splitlines() if "path: " in line
                           and "/summary/" in line)
    cat_path = next(line.split("path: ")[1] for line in text.splitlines() if "path: " in line and "/cat/" in line)
    # 1: a formatter with no mapping; 2: a pickle (whose unpickling would leave a marker file);
    # 3: a file missing from the export.
    marker = tmp_path / "unpickled"

    class Trap:
        def __reduce__(self):
            return (Path.touch, (marker,))

    (broken_export / cat_path).write_bytes(pickle.dumps(Trap()))
    lines = text.splitlines()
    for i, line in enumerate(lines):
        if line.endswith(cat_path):
            lines[i + 1] = lines[i + 1].replace("lsst.daf.butler.formatters.parquet.ParquetFormatter",
                                                "lsst.daf.butler.formatters.pickle.PickleFormatter")
        if line.endswith(summary_paths[0]):
            lines[i + 1] = lines[i + 1].replace("lsst.daf.butler.formatters.yaml.YamlFormatter",
                                                "lsst.pipe.base.formatters.pexConfig.PexConfigFormatter")
    (broken_export / "export.yaml").write_text("\n".join(lines) + "\n")
    (broken_export / summary_paths[1]).unlink()
    with pytest.raises(RubinImportError) as caught:
        import_rubin(ours, broken_export)
    # The pickle and the config are kept without a reader, not refused: only the missing file is a problem.
    assert caught.value.problems == [f"{summary_paths[1]}: file missing from the export"]
    assert "nothing was imported" in str(caught.value)
    assert not marker.exists()
    assert _repository_state(ours) == before
    (broken_export / summary_paths[1]).write_text("{}")
    import_rubin(ours, broken_export)
    assert not marker.exists()  # kept byte for byte, never unpickled
    (pickled,) = [r for r in ours.query_datasets("cat", collections=["Cam/run1"])
                  if _our_bytes(ours, r) == (broken_export / cat_path).read_bytes()]
    with pytest.raises(FormatterError, match="written by the Rubin formatter PickleFormatter"):
        ours.get(pickled)
    assert not marker.exists()


def test_a_failure_while_landing_leaves_the_repository_as_it_was(rubin, tmp_path):
    ours = Butler.create(tmp_path / "sky")
    ours.insert_records("instrument", [{"name": "Other"}])
    ours.register_dataset_type("cat", ["instrument"], "Dict")  # conflicts with the export's cat
    before = _repository_state(ours)
    with pytest.raises(Exception, match="cat"):
        import_datasets(ours, rubin["export"], transfer="copy")
    assert _repository_state(ours) == before
    zipped = Butler.create(tmp_path / "sky2")
    zipped.insert_records("instrument", [{"name": "Other"}])
    before = _repository_state(zipped)
    with pytest.raises(Exception, match="no instrument record"):
        import_rubin(zipped, rubin["bare_zip"])
    assert _repository_state(zipped) == before


def test_a_file_is_not_an_export(tmp_path):
    ours = Butler.create(tmp_path / "sky")
    (tmp_path / "notes.txt").write_text("hello")
    result = CliRunner().invoke(cli, ["import", str(tmp_path / "sky"), str(tmp_path / "notes.txt")])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "holds no export.json nor a Rubin export.yaml or zip index" in result.stderr
    (tmp_path / "bad.yaml").write_text("data: [1, !!python/object:os.system {}]\nversion: 1.0.2\n")
    with pytest.raises(Exception, match="YAML tag skybutler does not read"):
        import_rubin(ours, tmp_path / "bad.yaml")


# -- the YAML dialect, judged by the Rubin butler's own constructors ---------------


def test_our_rubin_yaml_reads_as_the_rubin_butler_reads_it():
    import io

    import lsst.sphgeom as sphgeom
    import yaml
    from lsst.daf.butler.transfers import _yaml  # noqa: F401 - registers Rubin's !uuid constructor

    from skybutler.interchange import rubin_yaml
    from skybutler.interchange.rubin_yaml import RubinTimespan, TaiTime

    regions = [sphgeom.Circle(sphgeom.UnitVector3d(sphgeom.LonLat.fromDegrees(10, 20)), sphgeom.Angle(0.01)),
               sphgeom.Box.fromDegrees(1, 2, 3, 4), region_at(33.0)]
    ns = 1_704_164_430_123_456_789
    value = {"id": uuid.UUID("01a23c9a-b48e-70f7-a9bd-fdc40ee1e698"), "t": TaiTime(ns),
             "span": RubinTimespan(ns, None), "regions": regions}
    stream = io.StringIO()
    rubin_yaml.dump(value, stream)
    theirs = yaml.safe_load(stream.getvalue())  # the Rubin butler's constructors, registered on SafeLoader
    assert theirs["id"] == value["id"]
    assert daf_butler.Timespan(theirs["t"], None).nsec[0] == ns
    assert theirs["span"].begin == theirs["t"] and theirs["span"].end is None
    assert [r.encode() for r in theirs["regions"]] == [r.encode() for r in regions]
    # And what the Rubin butler writes, ours reads back to the same values.
    text = yaml.dump({"id": theirs["id"], "t": theirs["t"], "span": theirs["span"], "regions": theirs["regions"]})
    ours = rubin_yaml.load(text)
    assert ours["id"] == value["id"] and ours["t"] == TaiTime(ns) and ours["span"] == RubinTimespan(ns, None)
    assert [r.encode() for r in ours["regions"]] == [r.encode() for r in regions]
