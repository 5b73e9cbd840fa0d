"""Declared catalog schemas (Felis): validation at put and ingest, units round trip, versions, bad schemas."""

from __future__ import annotations

import os
import textwrap

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

pytest.importorskip("felis")

from astropy import units as u  # noqa: E402
from astropy.table import MaskedColumn, Table  # noqa: E402

from skybutler import Butler  # noqa: E402
from skybutler.errors import CatalogSchemaError, CatalogValidationError  # noqa: E402

SCHEMA = textwrap.dedent("""\
    name: survey
    "@id": "#survey"
    description: Source catalogs.
    tables:
    - name: src
      "@id": "#src"
      description: Sources of one detector.
      primaryKey: "#src.id"
      columns:
      - {name: id, "@id": "#src.id", datatype: long, nullable: false, description: Source ID.}
      - {name: ra, "@id": "#src.ra", datatype: double, nullable: false, "ivoa:unit": deg,
         "ivoa:ucd": "pos.eq.ra;meta.main", description: Right ascension.}
      - {name: dec, "@id": "#src.dec", datatype: double, nullable: false, "ivoa:unit": deg,
         "ivoa:ucd": "pos.eq.dec;meta.main", description: Declination.}
      - {name: flux, "@id": "#src.flux", datatype: float, "ivoa:unit": nJy, "ivoa:ucd": phot.flux,
         description: PSF flux.}
      - {name: nchild, "@id": "#src.nchild", datatype: int, description: Number of children.}
      - {name: band, "@id": "#src.band", datatype: char, length: 1, description: Band.}
    """)


def good_table(n: int = 4) -> Table:
    return Table({"id": np.arange(n, dtype=np.int64), "ra": np.linspace(10, 11, n) * u.deg,
                  "dec": np.linspace(-5, -4, n) * u.deg, "flux": np.arange(n, dtype=np.float64) * u.nJy,
                  "nchild": np.zeros(n, dtype=np.int64), "band": ["r"] * n})


@pytest.fixture
def schema_file(tmp_path):
    path = tmp_path / "survey.yaml"
    path.write_text(SCHEMA)
    return path


@pytest.fixture
def butler(tmp_path, schema_file):
    b = Butler.create(tmp_path / "repo", run="r1")
    b.insert_records("instrument", [{"name": "Cam", "detector_max": 9}])
    b.insert_records("detector", [{"instrument": "Cam", "id": i} for i in range(9)])
    b.register_dataset_type("src", ["instrument", "detector"], "Table", schema=schema_file)
    yield b
    b.close()


def datastore_files(butler: Butler) -> list[str]:
    return sorted(os.path.join(d, f) for d, _, files in os.walk(butler.root / "datastore") for f in files)


def test_valid_tables_pass_in_every_accepted_kind(butler):
    table = good_table()
    butler.put(table, "src", instrument="Cam", detector=1)
    butler.put(table.to_pandas(), "src", instrument="Cam", detector=2)
    arrow = pa.table({"id": pa.array([1, 2], pa.int64()), "ra": [1.0, 2.0], "dec": [3.0, 4.0],
                      "flux": pa.array([None, 1.5], pa.float32()), "nchild": pa.array([1, None], pa.int32()),
                      "band": ["g", None]})
    butler.put(arrow, "src", instrument="Cam", detector=3)
    assert butler.query_datasets("src", collections="r1").count() == 3
    stored = butler.get("src", instrument="Cam", detector=3, collections="r1")
    assert stored.column_names == ["id", "ra", "dec", "flux", "nchild", "band"]
    assert stored.schema.field("nchild").type == pa.int32() and stored.schema.field("flux").type == pa.float32()
    assert stored.column("flux").to_pylist() == [None, 1.5]


def test_units_ucds_descriptions_round_trip(butler):
    # pandas carries no units: the stored file still has the declared ones, and astropy reads them
    butler.put(good_table().to_pandas(), "src", instrument="Cam", detector=1)
    uri = butler.get_uri("src", instrument="Cam", detector=1, collections="r1")
    fields = pq.read_schema(uri.removeprefix("file://"))  # the stored Parquet itself, read by pyarrow
    assert fields.field("ra").metadata == {b"unit": b"deg", b"ucd": b"pos.eq.ra;meta.main",
                                           b"description": b"Right ascension."}
    assert fields.field("flux").metadata[b"ucd"] == b"phot.flux"
    back = butler.get("src", instrument="Cam", detector=1, collections="r1", parameters={"as": "astropy"})
    assert back["ra"].unit == u.deg and back["flux"].unit == u.nJy and back["id"].unit is None
    assert back["dec"].description == "Declination."
    np.testing.assert_allclose(back["ra"].quantity.to_value(u.arcsec), good_table()["ra"].quantity.to_value(u.arcsec))


def _missing(t):
    del t["flux"]


def _extra(t):
    t["extra"] = 1.0


def _float_for_int(t):
    t["id"] = t["id"].astype(float)


def _number_for_string(t):
    t["band"] = np.arange(len(t))


def _overflow(t):
    t["nchild"] = np.array([0, 1, 2, 2**40])


def _nulls(t):
    t["ra"] = MaskedColumn(t["ra"], mask=[False, True, False, False], unit="deg")


def _unit(t):
    t["dec"] = t["dec"].to(u.arcsec)


def _unit_undeclared(t):
    t["nchild"].unit = u.s


def _too_long(t):
    t["band"] = ["r", "g", "HSC-R", "i"]


@pytest.mark.parametrize("spoil, column, words", [
    (_missing, "flux", "missing column"),
    (_extra, "extra", "not in the schema"),
    (_float_for_int, "id", "declared long"),
    (_number_for_string, "band", "declared char"),
    (_overflow, "nchild", "do not fit"),
    (_nulls, "ra", "not nullable"),
    (_unit, "dec", "unit 'arcsec'"),
    (_unit_undeclared, "nchild", "without a unit"),
    (_too_long, "band", "declared length is 1"),
])
def test_each_violation_names_its_column_and_leaves_the_repository_unchanged(butler, spoil, column, words):
    butler.put(good_table(), "src", instrument="Cam", detector=1)
    before = datastore_files(butler)
    table = good_table()
    spoil(table)
    with pytest.raises(CatalogValidationError) as info:
        butler.put(table, "src", instrument="Cam", detector=2)
    assert info.value.column == column
    assert repr(column) in str(info.value) and words in str(info.value)
    with pytest.raises(CatalogValidationError):  # in a batch too: nothing of it is stored
        butler.put_many("src", [(good_table(), {"instrument": "Cam", "detector": 3}),
                                (table, {"instrument": "Cam", "detector": 4})])
    assert butler.query_datasets("src", collections="r1").count() == 1
    assert datastore_files(butler) == before


def test_ingest_checks_files_against_the_schema(butler, tmp_path):
    good = tmp_path / "good.parquet"
    pq.write_table(pa.Table.from_pandas(good_table().to_pandas()), good)
    bad = tmp_path / "bad.parquet"
    table = good_table()
    del table["nchild"]
    pq.write_table(pa.Table.from_pandas(table.to_pandas()), bad)
    with pytest.raises(CatalogValidationError, match=r"bad\.parquet.*nchild"):
        butler.ingest("src", [(good, {"instrument": "Cam", "detector": 1}),
                              (bad, {"instrument": "Cam", "detector": 2})])
    assert "r1" not in {c.name for c in butler.collections.query("*")}  # nothing written, not even the RUN
    assert datastore_files(butler) == []
    butler.ingest("src", [(good, {"instrument": "Cam", "detector": 1})])
    assert butler.query_datasets("src", collections="r1").count() == 1


def test_versions(butler, schema_file, tmp_path):
    assert butler.get_catalog_schema("src").version == 1
    assert butler.declare_catalog_schema("src", schema_file) == 1  # the same schema: nothing changes
    renamed = tmp_path / "v2.yaml"
    renamed.write_text(SCHEMA.replace("PSF flux.", "Flux in a PSF model."))
    assert butler.declare_catalog_schema("src", renamed) == 1  # no datasets yet: replaced in place
    assert butler.get_catalog_schema("src").column("flux").description == "Flux in a PSF model."
    butler.put(good_table(), "src", instrument="Cam", detector=1)
    wider = tmp_path / "v3.yaml"
    wider.write_text(SCHEMA + '  - {name: snr, "@id": "#src.snr", datatype: float, description: S/N.}\n')
    with pytest.raises(CatalogSchemaError, match="new version"):
        butler.declare_catalog_schema("src", wider)
    assert butler.get_catalog_schema("src").version == 1
    assert butler.declare_catalog_schema("src", wider, new_version=True) == 2
    assert [s.version for s in butler.catalog_schema_versions("src")] == [1, 2]
    assert "snr" not in butler.get_catalog_schema("src", version=1).names
    with pytest.raises(CatalogValidationError, match="snr"):  # version 2 is now in force
        butler.put(good_table(), "src", instrument="Cam", detector=2)
    table = good_table()
    table["snr"] = np.ones(len(table))
    butler.put(table, "src", instrument="Cam", detector=2)
    with pytest.raises(CatalogSchemaError, match="no schema version 7"):
        butler.get_catalog_schema("src", version=7)
    # a reopened butler sees the same versions
    again = Butler(butler.root)
    assert [s.names[-1] for s in again.catalog_schema_versions("src")] == ["band", "snr"]
    again.close()


BAD_SCHEMAS = {
    "not YAML": ("name: [x\n  tables: 1\n", "is not YAML"),
    "a list": ("- a\n- b\n", "YAML mapping"),
    "no @id": ("name: s\ntables:\n- name: t\n  columns:\n  - {name: a, datatype: long}\n", "@id"),
    "unknown datatype": (SCHEMA.replace("datatype: int,", "datatype: integer,"),
                         "columns[nchild].datatype: unknown datatype 'integer'"),
    "bad unit": (SCHEMA.replace("ivoa:unit\": nJy", "ivoa:unit\": furlongs"), "columns[flux]"),
    "char without length": (SCHEMA.replace(", length: 1", ""), "columns[band]"),
}


@pytest.mark.parametrize("name", sorted(BAD_SCHEMAS))
def test_invalid_felis_is_refused_with_its_place(butler, tmp_path, name):
    text, words = BAD_SCHEMAS[name]
    path = tmp_path / "bad.yaml"
    path.write_text(text)
    with pytest.raises(CatalogSchemaError) as info:
        butler.register_dataset_type("other", ["instrument", "detector"], "Table", schema=path)
    assert "bad.yaml" in str(info.value) and words in str(info.value)
    assert "other" not in {t.name for t in butler.query_dataset_types()}  # all or nothing


def test_schema_needs_a_table_type_and_a_chosen_table(butler, schema_file, tmp_path):
    butler.register_dataset_type("cfg", ["instrument"], "Dict")
    with pytest.raises(CatalogSchemaError, match="not as a Parquet table"):
        butler.declare_catalog_schema("cfg", schema_file)
    two = tmp_path / "two.yaml"
    two.write_text(SCHEMA + textwrap.dedent("""\
        - name: obj
          "@id": "#obj"
          columns:
          - {name: oid, "@id": "#obj.oid", datatype: long}
        """))
    with pytest.raises(CatalogSchemaError, match="2 tables"):
        butler.register_dataset_type("obj", ["instrument"], "Table", schema=two)
    with pytest.raises(CatalogSchemaError, match="no table 'nope'"):
        butler.register_dataset_type("obj", ["instrument"], "Table", schema=two, schema_table="nope")
    assert butler.register_dataset_type("obj", ["instrument"], "Table", schema=two, schema_table="obj")
    assert butler.get_catalog_schema("obj").names == ["oid"]
    assert butler.get_catalog_schema("cfg") is None


@pytest.mark.slow
@pytest.mark.parametrize("step", ["sql-committed:1", "sql-committed:2"])
def test_a_type_registered_with_its_schema_is_killed_whole_or_not_at_all(butler, schema_file, step):
    """register-dataset-type --schema killed after a registry commit leaves the type with its
    schema or neither: never a catalog type that takes any table."""
    from test_faults import cli_main, run_killed

    root = butler.root
    butler.close()
    run_killed(cli_main("register-dataset-type", root, "deep", "instrument", "detector", "-s", "Table",
                        "--schema", schema_file), step)
    with Butler(root) as reopened:
        if "deep" in {t.name for t in reopened.query_dataset_types()}:
            assert len(reopened.catalog_schema_versions("deep")) == 1, f"killed at {step}: a type without its schema"
