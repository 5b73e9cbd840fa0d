"""Whole-exposure multi-CCD raws (DECam, MegaPrime: one FITS file, one image extension per CCD)
ingest as one raw per detector, all sharing the one file (placed once), each read from its own
HDU; the oracles are astro-metadata-translator run directly on the file (its own split of the
file into detector headers) and astropy reading each HDU.  Removing a detector's raw keeps the
file while another raw holds it; what would copy or move one detector's file alone refuses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from astropy.io import fits
from click.testing import CliRunner

amt = pytest.importorskip("astro_metadata_translator")
from astro_metadata_translator.translators import DecamTranslator, MegaPrimeTranslator  # noqa: E402

from multi_ccd_files import decam_exposure, megaprime_exposure  # noqa: E402
from skybutler import Butler, Timespan  # noqa: E402
from skybutler.cli.main import cli  # noqa: E402
from skybutler.errors import SkybutlerError  # noqa: E402
from skybutler.ingest import ingest_raws  # noqa: E402
from skybutler.interchange.rubin_export import export_rubin  # noqa: E402
from skybutler.repository_transfer import export_datasets, transfer_datasets  # noqa: E402
from skybutler.verify import verify  # noqa: E402


def oracle(translator, path: Path) -> dict[int, object]:
    """astro-metadata-translator's own reading of the file: an ObservationInfo per detector header."""
    infos = [amt.ObservationInfo(h, filename=str(path), translator_class=translator, pedantic=False)
             for h in translator.determine_translatable_headers(str(path))]
    return {i.detector_num: i for i in infos}


def hdu_of(path: Path, card: str, value) -> int:
    with fits.open(path) as hdus:
        return next(i for i, h in enumerate(hdus) if h.header.get(card) == value)


def stored_files(butler: Butler) -> list[str]:
    return [p for p in butler.datastore.walk(("butler.yaml", ".skybutler", "registry.sqlite3")) if "/raw" in p]


def test_a_whole_decam_exposure_is_one_raw_per_ccd_sharing_the_file(make_butler, tmp_path):
    """Every science CCD of the file is a raw with the translator's detector and exposure (its guide
    CCD, which the translator leaves out, is not); one file is stored; each raw's pixels are its
    HDU's, its header the extension's over the primary's."""
    raw = decam_exposure(tmp_path / "DECam_00177764.fits.fz")
    truth = oracle(DecamTranslator, raw)
    butler = make_butler()
    result = ingest_raws(butler, [raw], processes=1)
    assert result.failures == [] and len(truth) == 4
    refs = {r.data_id["detector"]: r for r in result.refs}
    assert sorted(refs) == sorted(truth)
    assert {r.artifact.path for r in refs.values()} == {refs[25].artifact.path} and len(stored_files(butler)) == 1
    with fits.open(raw) as hdus:
        for number, info in truth.items():
            ref = refs[number]
            assert (ref.data_id["exposure"], ref.data_id["detector"]) == (info.exposure_id, info.detector_num)
            record = butler.get_record("detector", instrument="DECam", id=number)
            assert (record["full_name"], record["raft"], record["name_in_raft"]) == (
                info.detector_group + info.detector_name, info.detector_group, info.detector_name)
            k = hdu_of(raw, "CCDNUM", number)
            assert ref.artifact.formatter == f"fits-hdu:{k}"
            image = butler.get(ref)
            np.testing.assert_array_equal(image.data, hdus[k].data)
            header = butler.get(ref, component="header")
            assert header["CCDNUM"] == number and header["DETPOS"] == hdus[k].header["DETPOS"]
            assert header["OBSID"] == hdus[0].header["OBSID"] and header["EXPNUM"] == info.exposure_id
            np.testing.assert_array_equal(butler.get(ref, parameters={"bbox": (2, 3, 9, 20)}).data,
                                          hdus[k].data[3:20, 2:9])
    info = truth[25]
    record = butler.get_record("exposure", instrument="DECam", id=info.exposure_id)
    assert (record["obs_id"], record["physical_filter"], record["day_obs"]) == (
        info.observation_id, info.physical_filter, info.observing_day)
    assert record["timespan"] == Timespan(info.datetime_begin, info.datetime_end)
    assert verify(butler, check_sizes=True, check_checksums=True).consistent


def test_a_whole_megaprime_exposure_ingests_as_its_translator_splits_it(make_butler, tmp_path):
    raw = megaprime_exposure(tmp_path / "1038843o.fits")
    truth = oracle(MegaPrimeTranslator, raw)
    butler = make_butler()
    result = ingest_raws(butler, [raw], processes=1)
    assert result.failures == []
    refs = {r.data_id["detector"]: r for r in result.refs}
    assert sorted(refs) == sorted(truth) == [0, 14, 35]
    with fits.open(raw) as hdus:
        for number, info in truth.items():
            assert refs[number].data_id["exposure"] == info.exposure_id
            k = hdu_of(raw, "EXTNAME", f"ccd{number:02d}")
            np.testing.assert_array_equal(butler.get(refs[number]).data, hdus[k].data)
    record = butler.get_record("exposure", instrument="MegaPrime", id=truth[0].exposure_id)
    assert record["physical_filter"] == truth[0].physical_filter and record["obs_id"] == truth[0].observation_id


@pytest.mark.parametrize("transfer", ["copy", "move", "symlink", "hardlink", "direct", "auto"])
def test_every_transfer_brings_the_file_in_once(tmp_path, transfer):
    raw = decam_exposure(tmp_path / "DECam_00177764.fits", compressed=False, guide=False)
    original = raw.read_bytes()
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, [raw], transfer=transfer, processes=1)
        assert result.failures == [] and len(result.refs) == 4
        (path,) = {r.artifact.path for r in result.refs}
        assert len(stored_files(butler)) == (0 if transfer == "direct" else 1)  # auto: a copy, from outside
        assert raw.exists() == (transfer != "move")
        assert path.endswith(str(raw)) == (transfer == "direct")
        assert b"".join(butler.datastore.read_range(result.refs[0].artifact)) == original
        for ref in result.refs:
            butler.get(ref)
        assert verify(butler).consistent


def test_removing_detectors_keeps_the_file_until_the_last_goes(make_butler, tmp_path):
    """The file stays, and the other detectors read, while any raw holds it; verify is clean at every
    step; the last removal deletes it.  Removing the RUN removes everything."""
    raw = decam_exposure(tmp_path / "DECam_00177764.fits.fz")
    butler = make_butler()
    refs = ingest_raws(butler, [raw], processes=1).refs
    artifact = refs[0].artifact
    for gone in range(1, len(refs)):
        butler.remove(refs[gone - 1:gone])
        assert butler.datastore.exists(artifact), f"the shared file went with {gone} of {len(refs)} removed"
        for ref in refs[gone:]:
            butler.get(ref)
        report = verify(butler, check_sizes=True, check_checksums=True)
        assert report.consistent and report.orphan_files == [] and report.missing_files == []
    butler.remove(refs[-1:])
    assert not butler.datastore.exists(artifact) and stored_files(butler) == []
    assert verify(butler).consistent
    again = ingest_raws(butler, [raw], processes=1)
    assert len(again.refs) == 4
    butler.remove_runs(["DECam/raw/all"])
    assert stored_files(butler) == [] and verify(butler).consistent


def test_removing_all_detectors_at_once_deletes_the_file_once(make_butler, tmp_path):
    raw = decam_exposure(tmp_path / "DECam_00177764.fits.fz")
    butler = make_butler()
    refs = ingest_raws(butler, [raw], processes=1).refs
    butler.remove(refs[:2] + refs[3:])
    assert butler.datastore.exists(refs[2].artifact)
    butler.remove(refs[2:3])
    assert stored_files(butler) == [] and verify(butler).consistent


def test_removing_direct_ingested_detectors_never_deletes_the_users_file(tmp_path):
    raw = decam_exposure(tmp_path / "DECam_00177764.fits.fz")
    before = raw.read_bytes()
    with Butler.create(tmp_path / "repo") as butler:
        refs = ingest_raws(butler, [raw], transfer="direct", processes=1).refs
        butler.remove(refs)
        assert raw.read_bytes() == before and verify(butler).consistent


def test_ingesting_again_skips_and_a_partly_removed_file_is_refused_by_name(tmp_path):
    raw = decam_exposure(tmp_path / "DECam_00177764.fits.fz")
    with Butler.create(tmp_path / "repo") as butler:
        refs = ingest_raws(butler, [raw], processes=1).refs
        again = ingest_raws(butler, [raw], processes=1)
        assert again.refs == [] and again.failures == [] and len(again.already_ingested) == 4
        butler.remove([r for r in refs if r.data_id["detector"] == 32])
        partly = ingest_raws(butler, [raw], processes=1)
        assert [(f.path, f.reason) for f in partly.failures] == [(str(raw), (
            "detector(s) [32] of this whole-exposure file are not ingested, its other detectors are, and share its "
            "stored file: remove those and ingest the file again to add them"))]
        assert partly.refs == [] and len(partly.already_ingested) == 3
        assert verify(butler).consistent and len(stored_files(butler)) == 1


def test_a_file_holding_one_detector_twice_is_refused_and_nothing_lands(tmp_path):
    raw = decam_exposure(tmp_path / "twice.fits.fz", {25: ("S1", "a"), 1: ("S29", "b"), 26: ("S1", "c")})
    with fits.open(raw, mode="update") as hdus:
        hdus[3].header["CCDNUM"] = 25
    with Butler.create(tmp_path / "repo") as butler:
        result = ingest_raws(butler, [raw], processes=1)
        assert [f.reason for f in result.failures] == [
            "HDUs 1 and 3 both hold detector 25: which one is the raw is not known"]
        assert result.refs == [] and stored_files(butler) == []


def test_what_copies_or_moves_one_detectors_file_alone_is_refused(tmp_path):
    """Export, transfer, a Rubin export, retrieve-artifacts, a purge and a cold move would each copy or
    delete the shared file for one detector: each refuses, naming the dataset, and changes nothing."""
    from skybutler.retention import ColdTierConfig

    raw = decam_exposure(tmp_path / "DECam_00177764.fits.fz")
    butler = Butler.create(tmp_path / "repo")
    refs = ingest_raws(butler, [raw], processes=1).refs
    shared = "not supported for datasets that are one detector .HDU \\d+. of a multi-extension file"
    with pytest.raises(SkybutlerError, match=f"^exporting .or transferring. is {shared}"):
        export_datasets(butler, refs[:1], tmp_path / "export")
    with Butler.create(tmp_path / "other") as other, pytest.raises(SkybutlerError, match="^exporting"):
        transfer_datasets(butler, other, refs)
    with pytest.raises(SkybutlerError, match=f"^a Rubin export is {shared}"):
        export_rubin(butler, refs, tmp_path / "rubin")
    with pytest.raises(SkybutlerError, match=f"^a Rubin export is {shared}"):
        export_rubin(butler, refs, tmp_path / "rubin.zip")
    with pytest.raises(SkybutlerError, match=f"^retrieving artifacts is {shared}"):
        butler.retrieve_artifacts(refs, tmp_path / "out")
    with pytest.raises(SkybutlerError, match=f"^purging is {shared}"):
        butler.retention.purge(refs[:1], force=True)
    butler.config.retention.cold_tier = ColdTierConfig(uri=str(tmp_path / "tape"))
    butler.config.save(butler.root)
    butler.close()
    butler = Butler(tmp_path / "repo")
    with pytest.raises(SkybutlerError, match=f"^moving to the cold tier is {shared}"):
        butler.retention.move_to_cold(refs[:1])
    assert [butler.retention.state(r).state for r in refs] == ["stored"] * 4
    for ref in refs:
        butler.get(ref)
    assert verify(butler, check_checksums=True).consistent and len(stored_files(butler)) == 1
    butler.close()


def test_the_command_line_ingests_gets_and_prunes_a_whole_exposure(tmp_path):
    raw = decam_exposure(tmp_path / "DECam_00177764.fits.fz")
    repo = tmp_path / "repo"
    runner = CliRunner()
    assert runner.invoke(cli, ["create", str(repo)]).exit_code == 0
    done = runner.invoke(cli, ["ingest-raws", str(repo), str(raw), "-j", "1"])
    assert done.exit_code == 0, done.output
    assert "4 raw(s) ingested" in done.output
    pruned = runner.invoke(cli, ["prune-datasets", str(repo), "DECam/raw/all", "--datasets", "raw", "--where",
                                 "detector IN (1, 25)", "--yes"])
    assert pruned.exit_code == 0, pruned.output
    with Butler(repo, collections=["DECam/raw/all"]) as butler:
        left = butler.query_datasets("raw")
        assert sorted(r.data_id["detector"] for r in left) == [32, 62]
        with fits.open(raw) as hdus:
            ref = next(r for r in left if r.data_id["detector"] == 62)
            np.testing.assert_array_equal(butler.get(ref).data, hdus[hdu_of(raw, "CCDNUM", 62)].data)
    checked = runner.invoke(cli, ["verify", str(repo), "--checksums"])
    assert checked.exit_code == 0, checked.output
    assert runner.invoke(cli, ["prune-datasets", str(repo), "DECam/raw/all", "--datasets", "raw",
                               "--yes"]).exit_code == 0
    with Butler(repo) as butler:
        assert stored_files(butler) == [] and verify(butler).consistent
