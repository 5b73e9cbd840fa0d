"""Sky maps: tracts and patches tile the whole sky, and are registered with their regions."""

from __future__ import annotations

import numpy as np
import pytest
from click.testing import CliRunner

from skybutler import Butler
from skybutler.cli.main import cli
from skybutler.dimensions import regions
from skybutler.errors import SkybutlerError
from skybutler.ingest import RingsSkyMap, find_patches, find_tracts, load_skymap, register_skymap

SMALL = {"rings": 5, "patches": 3}  # 30-degree tracts: quick to register, still covers everything


def random_points(n: int, seed: int = 7) -> list[tuple[float, float]]:
    """Points uniform on the sphere, plus the awkward ones (poles, RA wrap, ring edges)."""
    rng = np.random.default_rng(seed)
    ra = rng.uniform(0.0, 360.0, n)
    dec = np.degrees(np.arcsin(rng.uniform(-1.0, 1.0, n)))
    special = [(0.0, 90.0), (0.0, -90.0), (359.9999, 0.0), (0.0, 0.0), (180.0, 75.0), (12.0, -75.0), (360.0, 15.0)]
    return [*zip(ra.tolist(), dec.tolist()), *special]


@pytest.fixture(scope="module")
def registered(tmp_path_factory):
    """One registration per module: any full-sky map indexes ~260,000 sky pixels (seconds)."""
    with Butler.create(tmp_path_factory.mktemp("skymaps") / "repo") as butler:
        skymap, new = register_skymap(butler, "small", **SMALL)
        assert new
        yield butler, skymap


def test_default_size_is_modest():
    skymap = RingsSkyMap("default")
    assert 200 <= skymap.n_tracts <= 2000 and skymap.patches == 8


def test_records_cover_the_sky(registered):
    butler, skymap = registered
    tracts = {r["tract"]: r["region"] for r in butler.registry.dimensions.fetch_all("tract")}
    patches: dict[int, list] = {}
    for record in butler.registry.dimensions.fetch_all("patch"):
        patches.setdefault(record["tract"], []).append(record)
    assert len(tracts) == skymap.n_tracts and all(len(p) == 9 for p in patches.values())
    record = butler.get_record("skymap", name="small")
    assert record["tract_max"] == skymap.n_tracts and record["patch_nx_max"] == 3 and record["hash"] == skymap.hash
    for ra, dec in random_points(500):
        point = regions.point(ra, dec)
        found = find_tracts(skymap, ra, dec)
        assert found, (ra, dec)
        assert all(tracts[t].contains(point) for t in found)  # the stored regions agree
        holding = [p for p in patches[found[0]] if p["region"].contains(point)]
        assert holding, (ra, dec)
        assert {p["patch"] for p in holding} == set(find_patches(skymap, found[0], ra, dec))


def test_neighbours_overlap():
    skymap = RingsSkyMap("x", rings=5, patches=3, tract_overlap=0.5)
    # A point just past a tract's RA edge is also in the neighbouring tract, thanks to the overlap.
    ra_min, ra_max, dec_min, dec_max = skymap.tract_bounds(3)
    mid = (dec_min + dec_max) / 2
    assert len(find_tracts(skymap, ra_max + 0.01, mid)) == 2
    assert len(find_tracts(skymap, (ra_min + ra_max) / 2, mid)) == 1


def test_register_again_and_load(registered):
    butler, skymap = registered
    again, new = register_skymap(butler, "small", **SMALL)
    assert not new and again == skymap
    with pytest.raises(SkybutlerError, match="different configuration"):
        register_skymap(butler, "small", rings=6, patches=3)
    assert load_skymap(butler, "small") == skymap
    with pytest.raises(SkybutlerError, match="unknown sky map kind"):
        register_skymap(butler, "other", kind="healpix")


def test_cli_register_skymap(registered, tmp_path):
    butler, skymap = registered
    config = tmp_path / "skymap.yaml"
    config.write_text("kind: rings\nrings: 5\n")
    runner = CliRunner()
    repo = str(butler.root)
    result = runner.invoke(cli, ["register-skymap", repo, "small", "--config", str(config), "--patches", "3"])
    assert result.exit_code == 0, result.output
    assert "already registered: sky map small" in result.stdout and "3x3 patches" in result.stdout
    result = runner.invoke(cli, ["register-skymap", repo, "small", "--config", str(config), "--patches", "4"])
    assert result.exit_code == 1 and "different configuration" in result.stderr
    result = runner.invoke(cli, ["register-skymap", repo, "bad", "--config", str(config), "--tract-overlap", "-1"])
    assert result.exit_code == 1 and "must not be negative" in result.stderr


def test_a_registration_failing_after_its_put_leaves_no_file(tmp_path, monkeypatch):
    """The sky map's configuration file goes with the registration's rows: a block that fails
    after the put (here the put itself, once its file is written) leaves neither behind."""
    from skybutler.verify import verify

    real_put = Butler.put

    def put_then_fail(self, *args, **kwargs):
        real_put(self, *args, **kwargs)
        raise RuntimeError("failed after the put")

    with Butler.create(tmp_path / "repo") as butler:
        monkeypatch.setattr(Butler, "put", put_then_fail)
        with pytest.raises(RuntimeError, match="after the put"):
            register_skymap(butler, "small", **SMALL)
        monkeypatch.setattr(Butler, "put", real_put)
        assert butler.get_record("skymap", name="small") is None
        assert not [p for p in (tmp_path / "repo").rglob("*skyMap*") if p.is_file()]
        report = verify(butler)
    assert report.consistent, report
