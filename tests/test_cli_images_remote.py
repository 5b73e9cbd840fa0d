"""The image commands given a server's URL write what they write given the repository's path.

Twin oracle: the same ``get-image`` and ``cutouts`` command lines run once on the repository
directory and once through a real uvicorn on loopback serving it; the FITS files they write
must hold the same bytes, and their pixels must be the stored array's (numpy slicing and
block means written out here).
"""

from __future__ import annotations

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

from server_helpers import running_server
from skybutler.access import Access
from skybutler.cli.main import cli

pytest.importorskip("fastapi")


def _image(seed: int, ra: float, dec: float) -> fits.HDUList:
    """A primary HDU and two 60 x 48 TAN images of random pixels centred on (ra, dec)."""
    rng = np.random.default_rng(seed)
    hdus = [fits.PrimaryHDU(header=fits.Header({"FILTER": "r", "EXPTIME": 30.0}))]
    for amp in range(2):
        header = fits.Header({"CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRVAL1": ra, "CRVAL2": dec,
                              "CRPIX1": 30.5, "CRPIX2": 24.5, "CD1_1": -1e-3, "CD1_2": 0.0, "CD2_1": 0.0,
                              "CD2_2": 1e-3, "RADESYS": "ICRS", "EXTNAME": f"AMP{amp}"})
        hdus.append(fits.ImageHDU(rng.normal(100, 5, (48, 60)).astype(np.float32), header=header))
    return fits.HDUList(hdus)


def test_image_commands_through_a_server_match_the_repository_path(butler, tmp_path):
    if butler.registry.db.dialect != "sqlite":
        pytest.skip("the commands' remote path is the same on every stack; run on SQLite")
    butler.register_dataset_type("mef", ["instrument", "visit", "detector"], "MultiExtensionImage")
    butler.register_dataset_type("calexp", ["instrument", "visit", "detector"], "Image")
    made = _image(1, 150.0, 2.0)
    butler.put(made, "mef", instrument="Cam", visit=1, detector=0)
    pixels = {}
    for visit, source in ((1, made[1]), (2, _image(2, 150.01, 2.0)[1])):
        pixels[visit] = source.data.copy()
        butler.put(fits.PrimaryHDU(source.data, header=source.header), "calexp", instrument="Cam", visit=visit,
                   detector=0)
    access = Access(butler.registry.access)
    access.add_user("ana")
    access.grant("user", "ana", "run/*", "read")
    token = access.create_token("ana")
    root = str(butler.root)
    get = ["get-image", "{repo}", "mef", "instrument=Cam", "visit=1", "detector=0", "-c", "run/a"]
    runs = {"cut": [*get, "--hdu", "AMP1", "--bbox", "3,5,23,17", "-o", "{out}/cut.fits"],
            "binned": [*get, "--hdu", "AMP0", "--bin", "4", "-o", "{out}/binned.fits"],
            "header": [*get, "--hdu", "AMP1", "--header"],
            "cutouts": ["cutouts", "{repo}", "calexp", "150.005", "2.0", "--size", "15", "-c", "run/a",
                        "-o", "{out}/cutouts"]}
    runner, outputs = CliRunner(), {}
    with running_server(butler.root) as url:
        for where, repo in (("local", root), ("remote", url)):
            out = tmp_path / where
            out.mkdir()
            for name, args in runs.items():
                result = runner.invoke(cli, [a.format(repo=repo, out=out) for a in args],
                                       env={"SKYBUTLER_TOKEN": token})
                assert result.exit_code == 0, (where, name, result.output)
                outputs[where, name] = result.stdout
    files = sorted(p.relative_to(tmp_path / "local") for p in (tmp_path / "local").rglob("*.fits"))
    assert [str(p) for p in files] == ["binned.fits", "cut.fits", "cutouts/calexp_Cam_1_0.fits",
                                       "cutouts/calexp_Cam_2_0.fits"]
    for path in files:
        assert (tmp_path / "remote" / path).read_bytes() == (tmp_path / "local" / path).read_bytes(), path
    assert outputs["remote", "header"] == outputs["local", "header"] and "EXTNAME = 'AMP1" in outputs["local", "header"]
    with fits.open(tmp_path / "remote" / "cut.fits") as cut:
        np.testing.assert_array_equal(cut[0].data, made[2].data[5:17, 3:23])
    with fits.open(tmp_path / "remote" / "binned.fits") as binned:
        blocks = made[1].data[:48, :60].reshape(12, 4, 15, 4).astype(np.float64).mean(axis=(1, 3))
        np.testing.assert_allclose(binned[0].data, blocks, rtol=1e-6)
    for visit, stored in pixels.items():
        with fits.open(tmp_path / "remote" / "cutouts" / f"calexp_Cam_{visit}_0.fits") as cut:
            assert cut[0].data.shape == (15, 15)
            windows = {(y, x) for y in range(stored.shape[0] - 14) for x in range(stored.shape[1] - 14)
                       if np.array_equal(stored[y:y + 15, x:x + 15], cut[0].data)}
            assert len(windows) == 1, visit  # the cut-out is one window of the stored pixels
