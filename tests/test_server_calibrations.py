"""query_calibrations through a server: the local answer for an administrator, the readable
collections only for a user, an embargoed calibration replaced by the next visible one,
and the CLI command on a URL (expected calibrations written out by hand, from the
fixture's certification table)."""

from __future__ import annotations

import json

import pytest
from astropy.time import TimeDelta
from click.testing import CliRunner

from server_helpers import running_server
from skybutler import Butler, Timespan
from skybutler.access import Access
from skybutler.cli.main import cli
from skybutler.errors import TimespanError
from test_calibrations import SECOND, calib_repo, hour  # noqa: F401 -- the fixture, shared

pytest.importorskip("fastapi")


def _runs(results, name="bias"):
    return {(m.data_id["exposure"], m.data_id["detector"]): m.refs[name] and m.refs[name].run.rsplit("/", 1)[-1]
            for m in results}


@pytest.fixture
def served(calib_repo):  # noqa: F811
    if calib_repo.registry.db.dialect != "sqlite":
        pytest.skip("the server composes the local calibration query, itself tested on every stack")
    access = Access(calib_repo.registry.access)
    access.add_user("boss", admin=True)
    access.add_user("pat")
    for pattern in ("Cam/raw", "Cam/defaults", "Cam/calib", "Cam/calib/a", "Cam/calib/run/*"):
        access.grant("user", "pat", pattern, "read")
    tokens = {name: access.create_token(name) for name in ("boss", "pat")}
    with running_server(calib_repo.root, clock=lambda: 0.0, access_recheck_seconds=0) as url:
        yield calib_repo, url, tokens, access


def test_query_calibrations_through_a_server(served):
    local, url, tokens, access = served
    boss = Butler(url, token=tokens["boss"], collections="Cam/defaults")
    pat = Butler(url, token=tokens["pat"], collections="Cam/defaults")
    args = (["bias", "flat"], ["exposure", "detector"])
    everything = {(1, 0): "a1", (2, 0): "a2", (3, 0): "a2", (4, 0): None,
                  (1, 1): "a3", (2, 1): "a3", (3, 1): "b2", (4, 1): None}
    assert _runs(local.query_calibrations(*args, datasets="raw", collections="Cam/defaults")) == everything
    remote = boss.query_calibrations(*args, datasets="raw")
    assert _runs(remote) == everything
    assert {m.data_id["exposure"] for m in remote if m.refs["flat"] is not None} == {1, 2, 3}
    matches = {(m.data_id["exposure"], m.data_id["detector"]): m for m in remote}
    assert matches[(3, 1)].validity["bias"] == Timespan(hour(3), None)
    table = boss.query_calibrations("bias", ["exposure", "detector"], where="exposure = 3",
                                    collections="Cam/calib").to_arrow()
    assert table.column("bias_valid_from").to_pylist() == [hour(2).isot, hour(3).isot]
    # pat may not read Cam/calib/b: its b2 (the only bias of detector 1 from hour 3) is not there for them
    assert _runs(pat.query_calibrations(*args, datasets="raw")) == {**everything, (3, 1): None}
    # under an embargo on a1's RUN, exposure 1 detector 0 takes b1 from the next collection of the chain
    access.add_embargo("bias", "Cam/calib/run/a1", 1, ["nobody"])
    access.grant("user", "pat", "Cam/calib/b", "read")
    assert _runs(pat.query_calibrations(*args, datasets="raw")) == {**everything, (1, 0): "b1"}
    assert _runs(boss.query_calibrations(*args, datasets="raw")) == everything


def test_the_query_calibrations_command_on_a_url(served, monkeypatch):
    local, url, tokens, access = served
    monkeypatch.setenv("SKYBUTLER_TOKEN", tokens["pat"])
    joined = CliRunner().invoke(cli, ["query-calibrations", url, "bias,flat", "exposure", "detector", "--datasets",
                                      "raw", "-c", "Cam/defaults", "--where", "exposure < 3", "--json"])
    assert joined.exit_code == 0, joined.output
    rows = json.loads(joined.stdout)
    assert len(rows) == 4 and all(r["bias_id"] and r["flat_id"] for r in rows)


def test_certifications_page_through_a_server_as_locally(served):
    """Keyset pages of a search of CALIBRATION collections without find-first (one dataset
    may be listed once per validity range): the key ends with the row's range as the table
    gives it, and the pages join into the local answer, locally and through the server."""
    local, url, tokens, _ = served
    a3, = local.query_datasets("bias", collections="Cam/calib/run/a3")
    # the same begin as in Cam/calib/a, an end between two milliseconds (the key keeps its nanoseconds)
    local.collections.certify("Cam/calib/b", [a3], begin=hour(0), end=hour(2) + TimeDelta(1234567e-9, format="sec"))
    boss = Butler(url, token=tokens["boss"])
    columns = ["detector", "dataset_id", "validity_begin", "validity_end"]

    def rows(results):
        table = results.to_arrow()
        return [tuple(row[c] for c in columns) for row in table.select(columns).to_pylist()]

    def pages(butler):
        results = butler.query_datasets("bias", collections="Cam/calib", find_first=False).order_by(
            "-detector", "dataset_id")
        out, page = [], rows(results.limit(2))
        while page:
            out += page
            page = rows(results.after(list(page[-1])).limit(2))
        return out

    everything = rows(local.query_datasets("bias", collections="Cam/calib", find_first=False).order_by(
        "-detector", "dataset_id"))
    assert len({row[1] for row in everything}) < len(everything) > 2  # some dataset has several ranges
    assert pages(local) == everything
    assert pages(boss) == everything


def test_hidden_calibrations_fall_through_the_whole_chain(served):
    """A user who may not see the first calibrations of the chain gets the next one they may see,
    however many collections down: what the lookup gives on a repository holding only what they see
    (written out by hand from the certification table, with c1 d0 [0h, 10h) in a third collection)."""
    local, url, tokens, access = served
    c1 = local.put({"name": "c1"}, "bias", instrument="Cam", detector=0, run="Cam/calib/run/c1")
    local.collections.register("Cam/calib/c", "calibration")
    local.collections.certify("Cam/calib/c", [c1], begin=hour(0), end=hour(10))
    local.collections.set_chain("Cam/calib", ["Cam/calib/a", "Cam/calib/b", "Cam/calib/c"])
    for pattern in ("Cam/calib/b", "Cam/calib/c"):
        access.grant("user", "pat", pattern, "read")
    for run in ("a1", "a2", "b1"):  # every bias of detector 0 but c1, hidden from pat
        access.add_embargo("bias", f"Cam/calib/run/{run}", 1, ["nobody"])
    pat = Butler(url, token=tokens["pat"], collections="Cam/defaults")
    args = (["bias", "flat"], ["exposure", "detector"])
    expected = {(1, 0): "c1", (2, 0): "c1", (3, 0): "c1", (4, 0): None,
                (1, 1): "a3", (2, 1): "a3", (3, 1): "b2", (4, 1): None}
    assert _runs(pat.query_calibrations(*args, datasets="raw")) == expected
    for exposure in (1, 2, 3):
        found = pat.find_dataset("bias", instrument="Cam", detector=0, exposure=exposure)
        assert found is not None and found.run == "Cam/calib/run/c1"
    boss = Butler(url, token=tokens["boss"], collections="Cam/defaults")
    assert _runs(boss.query_calibrations(*args, datasets="raw"))[(1, 0)] == "a1"


def test_a_hidden_calibration_makes_no_lookup_ambiguous(served):
    """Exposure 5 straddles a1's end and a2's start: two biases of detector 0 are valid during it
    in Cam/calib/a, an ambiguous lookup (an error naming both) for whoever sees both.  To a user
    a1 is hidden from, Cam/calib/a holds only a2 valid then: their answer is a2, and the error
    that would name a1 is not theirs to see."""
    from skybutler.errors import CalibrationLookupError

    local, url, tokens, access = served
    local.insert_records("exposure", [{"instrument": "Cam", "id": 5, "physical_filter": "Cam-r", "day_obs": 20260301,
                                       "group": "g", "timespan": Timespan(hour(2) - 10 * SECOND,
                                                                          hour(2) + 20 * SECOND)}])
    local.put({"e": 5}, "raw", instrument="Cam", exposure=5, detector=0, run="Cam/raw")
    args = (["bias", "flat"], ["exposure", "detector"])
    boss = Butler(url, token=tokens["boss"], collections="Cam/defaults")
    with pytest.raises(CalibrationLookupError, match="2 calibrations are valid"):
        list(boss.query_calibrations(*args, datasets="raw", where="exposure = 5"))
    access.add_embargo("bias", "Cam/calib/run/a1", 1, ["nobody"])
    pat = Butler(url, token=tokens["pat"], collections="Cam/defaults")
    found = list(pat.query_calibrations(*args, datasets="raw", where="exposure = 5"))
    assert _runs(found) == {(5, 0): "a2"} and found[0].validity["bias"] == Timespan(hour(2), None)
    assert found[0].refs["flat"].run == "Cam/calib/run/flats"
    assert _runs(pat.query_calibrations(*args, datasets="raw")) == {
        (1, 0): None, (2, 0): "a2", (3, 0): "a2", (4, 0): None, (5, 0): "a2",
        (1, 1): "a3", (2, 1): "a3", (3, 1): None, (4, 1): None}
    # both hidden: Cam/calib/a holds nothing for pat then, and b1 of the next collection is the answer
    access.add_embargo("bias", "Cam/calib/run/a2", 1, ["nobody"])
    assert _runs(pat.query_calibrations(*args, datasets="raw", where="exposure = 5")) == {(5, 0): None}
    access.grant("user", "pat", "Cam/calib/b", "read")
    assert _runs(pat.query_calibrations(*args, datasets="raw", where="exposure = 5")) == {(5, 0): "b1"}


@pytest.mark.parametrize("through", ["local", "server"])
def test_a_lookup_at_an_instant_or_a_rubin_timespan_and_validities_alike(served, through):
    """find_dataset and get take an astropy Time (an instant: the calibration whose validity
    range holds it) or a Rubin butler Timespan as well as a skybutler Timespan; the results of
    a calibration search give each certification's range by ``with_validity()``, locally and
    through a server (expected answers from the fixture's certification table)."""
    local, url, tokens, _ = served
    butler = local if through == "local" else Butler(url, token=tokens["boss"])
    find = butler.find_dataset
    run = lambda ref: ref and ref.run.rsplit("/", 1)[-1]  # noqa: E731
    assert run(find("bias", instrument="Cam", detector=0, collections="Cam/calib", timespan=hour(1))) == "a1"
    assert run(find("bias", instrument="Cam", detector=0, collections="Cam/calib", timespan=hour(2))) == "a2"
    assert run(find("bias", instrument="Cam", detector=1, collections="Cam/calib", timespan=hour(3))) == "b2"
    assert run(find("bias", instrument="Cam", detector=1, collections="Cam/calib/b", timespan=hour(1))) is None
    assert butler.get("bias", instrument="Cam", detector=0, collections="Cam/calib", timespan=hour(5)) == {
        "name": "a2"}
    daf_butler = pytest.importorskip("lsst.daf.butler")
    assert run(find("bias", instrument="Cam", detector=1, collections="Cam/calib",
                    timespan=daf_butler.Timespan(hour(1), hour(2)))) == "a3"
    assert run(find("bias", instrument="Cam", detector=0, collections="Cam/calib",
                    timespan=daf_butler.Timespan(hour(3), None))) == "a2"
    with pytest.raises(TimespanError, match="empty"):
        find("bias", instrument="Cam", detector=0, collections="Cam/calib", timespan=daf_butler.Timespan.makeEmpty())
    with pytest.raises(TimespanError, match="str"):
        find("bias", instrument="Cam", detector=0, collections="Cam/calib", timespan="soon")
    listed = butler.query_datasets("bias", collections="Cam/calib/a", find_first=False)
    assert sorted((run(ref), span) for ref, span in listed.with_validity()) == [
        ("a1", Timespan(None, hour(2))), ("a2", Timespan(hour(2), None)), ("a3", Timespan(hour(0), hour(3)))]
    flats = butler.query_datasets("flat", collections="Cam/calib/a", find_first=False)
    assert sorted(flats.with_validity(), key=lambda pair: pair[0].data_id["detector"]) == [
        (ref, Timespan(hour(0), hour(10))) for ref in sorted(flats, key=lambda ref: ref.data_id["detector"])]
    found = butler.query_datasets("bias", collections="Cam/calib", timespan=hour(3))
    assert sorted((run(ref), span) for ref, span in found.with_validity()) == [
        ("a2", Timespan(hour(2), None)), ("b2", Timespan(hour(3), None))]
    assert [(ref, span) for ref, span in butler.query_datasets(
        "raw", collections="Cam/raw", where="exposure = 1 AND detector = 0").with_validity()] == [
        (next(iter(butler.query_datasets("raw", collections="Cam/raw", where="exposure = 1 AND detector = 0"))),
         None)]
