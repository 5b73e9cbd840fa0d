"""cone-, box- and polygon-search on the command line, given a repository or a server's URL
with the catalog dataset type whose publication to search: the same answer both ways.

Oracles: the same commands on a twin repository holding the same datasets and publication,
the directory form reading the twin's tree, and the angular distance of every row computed by
astropy.  A user who may not read the publication gets the answer a missing one gets; a bad
region or an unknown publication is refused, naming it, with a non-zero exit status.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pytest
from click.testing import CliRunner, Result

from server_helpers import running_server
from skybutler.cli.main import cli

pytest.importorskip("fastapi")
pytest.importorskip("hats")

from test_server_publish import SERVED, _repo, _tokens  # noqa: E402

RUN = "publications/deep/v1"


def _cli(*args: object, token: str | None = None) -> Result:
    env = {} if token is None else {"SKYBUTLER_TOKEN": token}
    result = CliRunner().invoke(cli, [str(a) for a in args], env=env)
    assert "Traceback" not in result.output
    return result


def _json(*args: object, token: str | None = None) -> list[dict]:
    result = _cli(*args, "--json", token=token)
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


@pytest.fixture
def twins(make_butler, tmp_path):
    """A served repository and its twin, the same src catalogs in r1, each published as 'deep'
    in publications/deep/v1 -- the served one by a user through the server's URL, the twin
    locally into a directory; ana may read it, rita may read r1 only."""
    served, twin = _repo(make_butler, "served", 4), _repo(make_butler, "twin", 4)
    tokens = _tokens(served, {"ana": [], "rita": []},
                     [("ana", "r1", "read"), ("ana", "publications/*", "write"), ("rita", "r1", "read")])
    rows = pa.concat_tables([twin.get(r) for r in twin.query_datasets("src", collections="r1")])
    with running_server(served.root) as url:
        settings = ("-c", "r1", "--run", RUN, "--max-rows", 500, "--no-progress")
        for where, dest, token in ((url, "deep", tokens["ana"]), (twin.root, tmp_path / "deep", None)):
            said = _cli("publish-catalog", where, "src", dest, *settings, token=token)
            assert said.exit_code == 0 and "published 4 datasets (2400 rows)" in said.output, said.output
        assert (Path(served.root) / SERVED / "deep").is_dir()
        yield url, twin, tokens, rows, tmp_path / "deep"


def _separation(ra: float, dec: float, rows: pa.Table) -> np.ndarray:
    from astropy import units as u
    from astropy.coordinates import SkyCoord

    centre = SkyCoord(ra * u.deg, dec * u.deg)
    return centre.separation(SkyCoord(rows["ra"].to_numpy() * u.deg, rows["dec"].to_numpy() * u.deg)).deg


def test_searches_through_a_url_answer_as_on_a_twin_repository(twins):
    """The rows printed through the URL are those printed on the twin repository and from its
    directory, and those astropy puts within the radius; box and polygon searches and the
    rich table agree as well."""
    url, twin, tokens, rows, tree = twins
    ana, found = tokens["ana"], []
    for ra, dec, radius in [(0, 0, 4), (10, 88, 6), (200, -89, 3), (120, 10, 40), (33, 3, 1e-6)]:
        cone = ("--ra", ra, "--dec", dec, "--radius", radius)
        remote = _json("cone-search", url, "src", "-c", RUN, *cone, token=ana)
        assert remote == _json("cone-search", twin.root, "src", "-c", RUN, *cone)
        assert remote == _json("cone-search", tree, *cone)
        separation = _separation(ra, dec, rows)
        ids = rows["id"].to_numpy()
        surely, maybe = set(ids[separation < radius - 1e-9].tolist()), set(ids[separation <= radius + 1e-9].tolist())
        got = {row["id"] for row in remote}
        assert surely <= got <= maybe and len(got) == len(remote), (ra, dec, radius)
        found.append(len(got))
    assert min(found[:-1]) > 0 and found[-1] == 0
    narrow = _json("cone-search", url, "src", "-c", RUN, "--ra", 0, "--dec", 0, "--radius", 4, "--columns", "id,ra",
                   token=ana)
    assert narrow and all(row.keys() == {"id", "ra"} for row in narrow)
    box = ("--ra", "350,10", "--dec", "-5,5")
    assert _json("box-search", url, "src", "-c", RUN, *box, token=ana) == _json("box-search", tree, *box) != []
    triangle = ("--vertex", "10,0", "--vertex", "40,0", "--vertex", "25,30")
    assert _json("polygon-search", url, "src", "-c", RUN, *triangle, token=ana) \
        == _json("polygon-search", twin.root, "src", "-c", RUN, *triangle) != []
    table = _cli("cone-search", url, "src", "-c", RUN, "--ra", 0, "--dec", 0, "--radius", 4, token=ana)
    assert table.exit_code == 0 and table.stdout == _cli("cone-search", tree, "--ra", 0, "--dec", 0, "--radius",
                                                         4).stdout


def test_a_user_who_may_not_read_the_publication_is_told_it_is_not_there(twins):
    """Rita may not read publications/*: she gets the answer given for a collection that does
    not exist, and so does the same search naming a collection nobody made."""
    url, twin, tokens, rows, tree = twins
    cone = ("--ra", 0, "--dec", 0, "--radius", 4)
    hidden = _cli("cone-search", url, "src", "-c", RUN, *cone, token=tokens["rita"])
    missing = _cli("cone-search", url, "src", "-c", "publications/none/v1", *cone, token=tokens["ana"])
    assert hidden.exit_code == missing.exit_code == 1 and hidden.stdout == ""
    assert hidden.stderr.strip() == f"error: no collection named {RUN!r}"
    assert hidden.stderr.replace(RUN, "publications/none/v1") == missing.stderr


#: Bad arguments and what the refusal says, the same on a URL and on a repository.
REFUSED = [
    (("src", "-c", RUN, "--ra", 0, "--dec", 0, "--radius", -1), "radius -1 must be greater than 0"),
    (("src", "-c", RUN, "--ra", 0, "--dec", 91, "--radius", 1), "dec 91 is outside [-90, 90]"),
    (("src", "-c", RUN, "--ra", "nan", "--dec", 0, "--radius", 1), "ra must be a finite number"),
    (("src", "-c", "r1", "--ra", 0, "--dec", 0, "--radius", 1),
     "no publication of src (a src_hats dataset) in collections ['r1']"),
    (("obj", "-c", RUN, "--ra", 0, "--dec", 0, "--radius", 1), "no publication of obj (a obj_hats dataset)"),
    (("src", "--ra", 0, "--dec", 0, "--radius", 1), "name the collections holding the publication of src"),
]


def test_bad_arguments_are_refused_the_same_way_on_a_url_and_a_repository(twins):
    url, twin, tokens, rows, tree = twins
    for args, says in REFUSED:
        answers = set()
        for where in (url, twin.root):
            refused = _cli("cone-search", where, *args, token=tokens["ana"])
            assert refused.exit_code == 1 and refused.stdout == "", refused.output
            assert refused.stderr.startswith("error: ") and says in refused.stderr, refused.stderr
            answers.add(refused.stderr)
        assert len(answers) == 1, answers


def test_the_directory_form_stays_and_a_url_needs_a_dataset_type(twins):
    url, twin, tokens, rows, tree = twins
    refused = _cli("cone-search", url, "--ra", 0, "--dec", 0, "--radius", 1)
    assert refused.exit_code == 1 and "is a server: name the catalog dataset type" in refused.stderr
    refused = _cli("cone-search", tree, "-c", RUN, "--ra", 0, "--dec", 0, "--radius", 1)
    assert refused.exit_code == 1 and "--collections goes with REPO_OR_URL DATASET_TYPE" in refused.stderr
    refused = _cli("cone-search", tree, "--ra", 0, "--dec", 0, "--radius", -2)
    assert refused.exit_code == 1 and "radius -2 must be greater than 0" in refused.stderr
