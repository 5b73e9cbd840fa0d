"""The join rule: a dimension named anywhere in a query (where-clause, bind or data ID) is
joined to the dimensions asked for through its relationship table, and dimensions that nothing
relates are refused by name."""

from __future__ import annotations

import pytest

from conftest import STACKS, populate, stack_locations, visit_pointing
from query_repository import visits
from skybutler import Butler
from skybutler.dimensions import regions
from skybutler.errors import QueryError


@pytest.fixture(scope="module", params=STACKS)
def night(request, tmp_path_factory):
    """One night of Cam: exposures 1, 2, 3 (4 detectors each, a raw each); visit 3 is
    defined from exposure 3 alone, visit 12 from exposures 1 and 2; a sky map."""
    tmp = tmp_path_factory.mktemp(f"night_{request.param}")
    butler = Butler.create(tmp / "repo", **stack_locations(request.param, tmp))
    populate(butler, n_visits=12, n_detectors=4)
    butler.insert_records("group", [{"instrument": "Cam", "name": "g1"}])
    butler.insert_records("exposure", [
        {"instrument": "Cam", "id": e, "physical_filter": "Cam-i", "day_obs": 20250101, "group": "g1",
         "exposure_time": 10.0 * e} for e in (1, 2, 3)])
    butler.insert_records("visit_definition", [{"instrument": "Cam", "exposure": e, "visit": v}
                                               for e, v in ((3, 3), (1, 12), (2, 12))])
    butler.insert_records("skymap", [{"name": "sm"}])
    butler.insert_records("tract", [{"skymap": "sm", "id": 0, "region": regions.rectangle(0, 0, 10, 10)}])
    butler.register_dataset_type("raw", ["instrument", "exposure", "detector"], "Dict")
    butler.put_many("raw", [({"e": e}, {"instrument": "Cam", "exposure": e, "detector": d})
                            for e in (1, 2, 3) for d in range(4)], run="raw")
    yield butler
    butler.close()


def exposures(results) -> list[int]:
    return sorted(d["exposure"] for d in results)


def test_a_dimension_named_anywhere_is_joined_through_its_relationship_table(night):
    """The issue's case: visit 3 is made of exposure 3 only, so a query naming the visit in
    the where-clause, a bind or the data ID answers for exposure 3 alone."""
    assert exposures(night.query_data_ids(["exposure"], where="visit = 3")) == [3]
    assert exposures(night.query_data_ids(["exposure"], where="visit = v", bind={"v": 3})) == [3]
    assert exposures(night.query_data_ids(["exposure"], data_id={"visit": 3})) == [3]
    assert exposures(night.query_data_ids(["exposure"], visit=12)) == [1, 2]
    assert night.query_data_ids(["exposure", "detector"], where="visit = 3").count() == 4
    raws = list(night.query_datasets("raw", collections="raw", where="visit = 3"))
    assert len(raws) == 4 and {r.data_id["exposure"] for r in raws} == {3}
    assert night.query_datasets("raw", collections="raw", where="visit IN (3, 12)").count() == 12
    assert night.query_datasets("raw", collections="raw", where="visit.exposure_time > 20 AND visit < 10").count() == 4
    assert exposures(night.query_dimension_records("exposure", where="visit = 12")) == [1, 2]
    # and the other way round: visits through the exposures' fields
    assert visits(night.query_data_ids(["visit"], where="exposure.exposure_time > 15")) == [3, 12]
    assert visits(night.query_data_ids(["visit"], where="exposure = 2 OR visit = 3")) == [3, 12]
    # requested together, as before
    assert sorted((d["exposure"], d["visit"]) for d in night.query_data_ids(["exposure", "visit"])) == [
        (1, 12), (2, 12), (3, 3)]


def test_unrelated_dimensions_are_refused_by_name(night):
    with pytest.raises(QueryError, match="exposure and tract are unrelated"):
        night.query_data_ids(["exposure"], where="tract = 0")
    with pytest.raises(QueryError, match="unrelated"):
        night.query_datasets("raw", collections="raw", data_id={"skymap": "sm", "tract": 0})
    # a dimension that requires nothing goes with anything: every band of each tract
    assert night.query_data_ids(["tract", "band"]).count() == 3
    # a visit and a tract are related by their regions (and visit 3's is far from tract 0)
    assert night.query_data_ids(["visit", "tract"]).count() == len(
        [v for v in range(1, 13) if regions.rectangle(*visit_pointing(v), 3.5, 3.5).overlaps(
            regions.rectangle(0, 0, 10, 10))])
    # a relation the where-clause states
    assert night.query_data_ids(["exposure", "visit"], where="exposure.exposure_time > visit.exposure_time "
                                "OR exposure = 1").count() >= 1
