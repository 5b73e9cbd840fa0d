"""Columns users add to queries: metrics attached to datasets after they were put, and user
tables keyed by dimensions (registered, filled, refused when wrong, kept across reopening)."""

from __future__ import annotations

import pytest

from conftest import populate
from query_repository import pairs, visits
from skybutler import Butler
from skybutler.errors import QueryError, RegistryError


def test_metrics_attached_later(make_butler):
    butler = make_butler()
    populate(butler)
    butler.register_dataset_type("metrics", ["instrument", "visit", "detector"], "Dict")
    refs = butler.put_many("metrics", [({"a": d}, {"instrument": "Cam", "visit": 1, "detector": d})
                                       for d in range(4)], run="run")
    with pytest.raises(QueryError, match="no metadata field or metric 'scatter'"):
        butler.query_datasets("metrics", where="metrics.scatter > 1", collections="run")
    for ref, scatter in zip(refs, (0.5, 2.5, 1.5, None)):
        butler.set_metrics(ref, scatter=scatter)
    butler.set_metrics(refs[0], scatter=3.0)  # replaces
    high = sorted(r.data_id["detector"] for r in butler.query_datasets("metrics", where="metrics.scatter > 1",
                                                                        collections="run"))
    assert high == [0, 1, 2]
    # detector 3's metric is NULL; data IDs without a dataset have none either
    assert [d["detector"] for d in butler.query_data_ids(["visit", "detector"], collections="run",
                                                         where="visit = 1 AND metrics.scatter = NULL")] == [3]
    assert butler.query_data_ids(["visit", "detector"], where="metrics.scatter = NULL", collections="run").count() \
        == 6 * 4 - 3
    assert butler.get_metadata(refs[1]) == {"n_keys": 1, "scatter": 2.5}


def test_user_tables(make_butler):
    butler = make_butler()
    populate(butler)
    assert butler.register_user_table("quality", ["instrument", "visit"], {"seeing": float, "good": bool,
                                                                            "note": "str"})
    assert not butler.register_user_table("quality", ["visit"], {"seeing": float, "good": bool, "note": str})
    assert butler.insert_user_rows("quality", [{"instrument": "Cam", "visit": v, "seeing": 0.5 + 0.1 * v,
                                                "good": v % 2 == 0} for v in range(1, 6)]) == 5
    assert visits(butler.query_data_ids(["visit"], where="quality.seeing < 0.85")) == [1, 2, 3]
    assert pairs(butler.query_data_ids(["visit", "detector"], where="quality.good AND detector = 1")) == [
        (2, 1), (4, 1)]
    # a data ID without a row matches no comparison (visit 6 has none)
    assert visits(butler.query_data_ids(["visit"], where="NOT (quality.seeing < 0.85)")) == [4, 5]
    assert sorted(d["detector"] for d in butler.query_data_ids(["detector"], where="quality.seeing > 0.95")) == [
        0, 1, 2, 3]
    assert butler.query_dimension_records("visit", where="quality.seeing >= 1.0").count() == 1
    with pytest.raises(QueryError, match="no column 'sky'") as err:
        butler.query_data_ids(["visit"], where="visit > 1 AND quality.sky < 1")
    assert err.value.column == 15
    with pytest.raises(QueryError, match="cannot compare float with str"):
        butler.query_data_ids(["visit"], where="quality.seeing = 'x'")
    with pytest.raises(RegistryError, match="already exists"):
        butler.insert_user_rows("quality", [{"instrument": "Cam", "visit": 1, "seeing": 2.0}])
    with pytest.raises(RegistryError):
        butler.insert_user_rows("quality", [{"instrument": "Cam", "visit": 99, "seeing": 2.0}])
    with pytest.raises(RegistryError, match="no column"):
        butler.insert_user_rows("quality", [{"instrument": "Cam", "visit": 1, "sky": 2.0}])
    assert butler.insert_user_rows("quality", [{"instrument": "Cam", "visit": 1, "seeing": 2.0}], replace=True) == 1
    for name, dims, cols in [("quality", ["visit"], {"seeing": int}), ("visit", ["visit"], {"a": int}),
                             ("q2", ["visit"], {"visit": int}), ("bad name", ["visit"], {"a": int}),
                             ("q3", ["visit"], {"a": list}), ("q4", ["nope"], {"a": int})]:
        with pytest.raises(RegistryError):
            butler.register_user_table(name, dims, cols)
    # the table list survives reopening the repository
    root = butler.root
    butler.close()
    with Butler(root) as reopened:
        assert visits(reopened.query_data_ids(["visit"], where="quality.seeing >= 1.0")) == [1, 5]
        assert [t.name for t in reopened.registry.user_tables.all()] == ["quality"]
    # a repository just opened declares its dimension tables lazily: a new table's keys still resolve
    with Butler(root) as reopened:
        assert reopened.register_user_table("airmass", ["instrument", "visit"], {"value": float})
        assert reopened.insert_user_rows("airmass", [{"instrument": "Cam", "visit": 2, "value": 1.2}]) == 1
        assert visits(reopened.query_data_ids(["visit"], where="airmass.value > 1")) == [2]
