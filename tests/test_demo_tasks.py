"""The demo science tasks on simulated SimCam nights: ISR, master calibrations,
calibration (detection, astrometry, PSF width), the glint-detector signal, visit
summaries and coadds.  Small (256-pixel) detectors keep the whole module fast."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pyarrow as pa
import pytest
import sep
from astropy.io import fits
from astropy.wcs import WCS

from skybutler.demo_tasks import (
    SOURCE_SCHEMA,
    CalibrateConfig,
    IsrConfig,
    calibrate,
    coadd,
    isr,
    make_bias,
    make_flat,
    parse_section,
    visit_metrics,
    visit_summary,
)
from skybutler.instruments import glint_detectors, plan_night, star_catalog, write_exposure


def _read(path) -> fits.PrimaryHDU:
    with fits.open(path, memmap=False) as hdus:
        return fits.PrimaryHDU(data=np.array(hdus[0].data), header=hdus[0].header.copy())


class Night:
    """Raws of one simulated night written on demand, with master calibrations per detector."""

    def __init__(self, directory):
        self.directory = directory
        self.specs = {s.seq_num: s for s in plan_night(n_science=6)}
        self._raws: dict = {}
        self._calibs: dict = {}

    def raw(self, seq: int, detector: int) -> fits.PrimaryHDU:
        key = (seq, detector)
        if key not in self._raws:
            (path,) = write_exposure(self.directory, self.specs[seq], detectors=[detector])
            self._raws[key] = _read(path)
        return self._raws[key]

    def of_type(self, kind: str, physical_filter: str | None = None) -> list[int]:
        return [s.seq_num for s in self.specs.values() if s.observation_type == kind
                and (physical_filter is None or s.physical_filter == physical_filter)]

    def bias(self, detector: int) -> fits.ImageHDU:
        if ("bias", detector) not in self._calibs:
            self._calibs["bias", detector] = make_bias([self.raw(s, detector) for s in self.of_type("bias")])
        return self._calibs["bias", detector]

    def flat(self, physical_filter: str, detector: int) -> fits.ImageHDU:
        if (physical_filter, detector) not in self._calibs:
            raws = [self.raw(s, detector) for s in self.of_type("flat", physical_filter)]
            self._calibs[physical_filter, detector] = make_flat(raws, self.bias(detector))
        return self._calibs[physical_filter, detector]

    def exposure(self, seq: int, detector: int) -> fits.ImageHDU:
        spec = self.specs[seq]
        return isr(self.raw(seq, detector), self.bias(detector), self.flat(spec.physical_filter, detector))


@pytest.fixture(scope="module")
def night(tmp_path_factory) -> Night:
    return Night(tmp_path_factory.mktemp("night"))


# -- ISR -------------------------------------------------------------------------------


def test_parse_section():
    assert parse_section("[257:288,1:256]") == (slice(0, 256), slice(256, 288))
    for bad in ("[0:5,1:2]", "1:5,1:2", "[5:1,1:2]"):
        with pytest.raises(ValueError):
            parse_section(bad)


def test_isr_removes_bias_level(night):
    seqs = night.of_type("bias")
    raw = night.raw(seqs[-1], 4)
    assert np.mean(raw.data[:, :256]) > 1000  # the raw bias level
    overscan_only = isr(raw, config=IsrConfig(do_bias=False, do_flat=False))
    assert abs(float(np.mean(overscan_only.data))) < 0.5 * 1.2  # level gone, column structure left
    master = make_bias([night.raw(s, 4) for s in seqs[:-1]])
    assert master.data.shape == (256, 256) and master.header["NCOMBINE"] == len(seqs) - 1
    out = isr(raw, master, config=IsrConfig(do_flat=False))
    assert out.data.dtype == np.float32 and out.header["BUNIT"] == "electron"
    assert abs(float(np.mean(out.data))) < 0.2  # electrons
    # Column structure is removed too: what is left is read noise (6 e-) and master-bias noise.
    assert float(np.std(out.data)) < 1.25 * float(np.std(overscan_only.data))
    assert float(np.std(np.mean(out.data, axis=0))) < 0.5 < float(np.std(np.mean(overscan_only.data, axis=0)))


def test_flats_flatten(night):
    seqs = night.of_type("flat", "SimCam-r")  # a corner detector: strong vignetting
    bias = night.bias(0)
    flat = make_flat([night.raw(s, 0) for s in seqs[:-1]], bias)
    assert abs(float(np.median(flat.data)) - 1.0) < 1e-6
    raw = night.raw(seqs[-1], 0)
    unflattened = isr(raw, bias, config=IsrConfig(do_flat=False)).data
    flattened = isr(raw, bias, flat).data
    ratio_before = float(np.std(unflattened) / np.mean(unflattened))
    ratio_after = float(np.std(flattened) / np.mean(flattened))
    assert ratio_before > 0.015 and ratio_after < 0.012 and ratio_after < 0.6 * ratio_before
    # Large-scale structure (vignetting, gradients) is gone: block means agree to 0.3%.
    blocks = flattened.reshape(8, 32, 8, 32).mean(axis=(1, 3))
    assert float(blocks.std() / blocks.mean()) < 0.003


def test_isr_trims_shifts_wcs_and_counts_saturation():
    data = np.full((20, 40), 1100, dtype=np.uint16)
    data[:, :8] = 1000  # overscan first: data section starts at column 9
    data[5, 20] = data[6, 21] = 65535
    header = fits.Header({"DATASEC": "[9:40,1:20]", "BIASSEC": "[1:8,1:20]", "GAIN": 2.0, "SATURATE": 65535,
                          "CTYPE1": "RA---TAN", "CTYPE2": "DEC--TAN", "CRPIX1": 20.0, "CRPIX2": 10.0,
                          "CRVAL1": 10.0, "CRVAL2": -20.0, "CD1_1": -1e-4, "CD2_2": 1e-4})
    out = isr(fits.PrimaryHDU(data, header), config=IsrConfig(do_bias=False, do_flat=False))
    assert out.data.shape == (20, 32)
    assert out.header["CRPIX1"] == 12.0 and out.header["CRPIX2"] == 10.0
    assert out.data[0, 0] == pytest.approx(200.0)  # (1100 - 1000) ADU x 2 e-/ADU
    assert out.header["N_SAT"] == 2 and out.header["SATLEVEL"] == pytest.approx((65535 - 1000) * 2.0)
    assert "DATASEC" not in out.header and "BZERO" not in out.header
    with pytest.raises(ValueError, match="bias"):
        isr(fits.PrimaryHDU(data, header))  # do_bias without a bias
    with pytest.raises(ValueError, match="shape"):
        isr(fits.PrimaryHDU(data, header), fits.ImageHDU(np.zeros((20, 40))), config=IsrConfig(do_flat=False))


# -- calibrate ---------------------------------------------------------------------


def test_calibrate_finds_catalog_stars(night):
    spec = night.specs[15]
    stars = star_catalog(0, spec.ra, spec.dec, 0.15)
    bright = stars[stars["mag_r"] < 20.5]
    cos_dec = math.cos(math.radians(spec.dec))
    offsets = []
    for detector in (1, 4):
        calexp, sources = calibrate(night.exposure(15, detector))
        assert sources.schema.equals(SOURCE_SCHEMA)
        assert calexp.header["N_SRC"] == sources.num_rows > 10
        for key in ("PSF_FWHM", "FWHM_ARC", "BKG_MEAN", "BKG_RMS", "N_PSF"):
            assert math.isfinite(calexp.header[key])
        assert abs(float(np.median(calexp.data))) < 0.2 * calexp.header["BKG_RMS"]  # background removed
        x, y = WCS(calexp.header).all_world2pix(bright["ra"], bright["dec"], 0)
        inside = (x > 5) & (x < 250) & (y > 5) & (y < 250)
        ra, dec = sources["ra"].to_numpy(), sources["dec"].to_numpy()
        offsets.extend(np.hypot((np.asarray(bright["ra"])[inside, None] - ra[None]) * cos_dec,
                                np.asarray(bright["dec"])[inside, None] - dec[None]).min(axis=1) * 3600.0)
    offsets = np.array(offsets)
    assert len(offsets) >= 8
    assert np.mean(offsets < 2.0) >= 0.9
    assert float(np.median(offsets)) < 0.3


def test_calibrate_is_deterministic(night):
    exposure = night.exposure(15, 4)
    (image1, table1), (image2, table2) = calibrate(exposure), calibrate(exposure)
    assert table1.equals(table2) and np.array_equal(image1.data, image2.data)
    assert image1.header["PSF_FWHM"] == image2.header["PSF_FWHM"]
    lower = calibrate(exposure, CalibrateConfig(detection_threshold=3.0))[1]
    assert lower.num_rows > table1.num_rows


def test_psf_width_grows_with_seeing(tmp_path, night):
    base = night.specs[14]  # no glint (exposure ID not divisible by 3)
    widths = []
    for seeing in (0.7, 1.1, 1.5):
        (path,) = write_exposure(tmp_path, dataclasses.replace(base, seeing=seeing), detectors=[4])
        exposure = isr(_read(path), night.bias(4), night.flat(base.physical_filter, 4))
        calexp, _ = calibrate(exposure)
        widths.append(calexp.header["FWHM_ARC"])
        assert 0.9 * seeing < calexp.header["FWHM_ARC"] < 1.8 * seeing  # pixels are 0.8 arcsec
    assert widths[0] + 0.1 < widths[1] < widths[2] - 0.1


def test_glint_detectors_have_suspiciously_many_sources(night):
    # With the demo pipeline's thresholds every flare of a glint is a detection: every
    # detector a glint crosses has more sources than any clean detector of the night.
    configs = [CalibrateConfig(detection_threshold=t) for t in (10.0, 15.0)]
    glint, clean = [[] for _ in configs], [[] for _ in configs]
    for spec in night.specs.values():
        if spec.observation_type != "science":
            continue
        glints = glint_detectors(spec.exposure_id, spec.observation_type)
        for detector in range(9):
            exposure = night.exposure(spec.seq_num, detector)
            for i, config in enumerate(configs):
                (glint if detector in glints else clean)[i].append(calibrate(exposure, config)[1].num_rows)
    assert len(glint[0]) >= 3 and len(clean[0]) >= 40
    for config, on_glint, on_clean in zip(configs, glint, clean, strict=True):
        assert min(on_glint) > max(on_clean) + 5, (config.detection_threshold, sorted(on_glint), sorted(on_clean))
        assert min(on_glint) > 2 * float(np.median(on_clean))


# -- visit summary ------------------------------------------------------------------


def test_visit_summary_and_metrics(night):
    sources, images = {}, {}
    for detector in (1, 2, 3):
        images[detector], sources[detector] = calibrate(night.exposure(13, detector))
    summary = visit_summary(sources, {d: image.header for d, image in images.items()})
    assert summary["detector"].to_pylist() == [1, 2, 3]
    assert summary["n_sources"].to_pylist() == [sources[d].num_rows for d in (1, 2, 3)]
    assert summary["psf_fwhm"].to_pylist() == [images[d].header["PSF_FWHM"] for d in (1, 2, 3)]
    metrics = visit_metrics(summary)
    assert metrics["n_sources_total"] == sum(t.num_rows for t in sources.values())
    assert metrics["n_detectors"] == 3 and metrics["n_sources_max"] == max(summary["n_sources"].to_pylist())
    assert metrics["median_fwhm"] == pytest.approx(float(np.median(summary["psf_fwhm"].to_numpy())))
    assert metrics["mean_background"] == pytest.approx(np.mean([images[d].header["BKG_MEAN"] for d in (1, 2, 3)]))
    # Without images the PSF width is re-estimated from the sources, the rest is unknown.
    bare = visit_summary(sources)
    assert bare["psf_fwhm"].to_pylist() == pytest.approx(summary["psf_fwhm"].to_pylist())
    assert visit_metrics(bare)["mean_background"] is None
    assert visit_metrics(visit_summary({}))["n_sources_total"] == 0
    with pytest.raises(ValueError):
        visit_summary({1: sources[1]}, {2: images[2]})


# -- coadd ------------------------------------------------------------------------------


def _tan_wcs(ra: float, dec: float, crpix: tuple[float, float], scale_arcsec: float) -> WCS:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [ra, dec]
    wcs.wcs.crpix = list(crpix)
    wcs.wcs.cd = np.diag([-scale_arcsec / 3600.0, scale_arcsec / 3600.0])
    return wcs


def test_coadd_coverage_and_mean():
    first = fits.ImageHDU(np.full((50, 60), 10.0, np.float32), _tan_wcs(150.0, 2.0, (30.0, 25.0), 1.0).to_header())
    second = fits.ImageHDU(np.full((50, 60), 20.0, np.float32), _tan_wcs(150.0, 2.0, (0.0, 25.0), 1.0).to_header())
    patch = _tan_wcs(150.0, 2.0, (50.0, 25.0), 1.0)
    image, coverage = coadd([first, second], patch, (50, 100))
    assert coverage.data.dtype == np.int16 and coverage.data.max() == 2
    assert set(np.unique(coverage.data)) == {0, 1, 2}
    overlap = coverage.data == 2
    assert np.allclose(image.data[overlap], 15.0) and overlap[:, 55:75].all()
    assert np.allclose(image.data[coverage.data == 1], np.where(
        np.arange(100) < 55, 10.0, 20.0)[None, :].repeat(50, 0)[coverage.data == 1])
    assert np.isnan(image.data[coverage.data == 0]).all()
    assert image.header["NINPUTS"] == 2 and WCS(image.header).wcs.crpix[0] == 50.0
    # A coarser patch grid keeps surface brightness per pixel honest: 4x the area, 4x the value.
    coarse, _ = coadd([first], _tan_wcs(150.0, 2.0, (25.0, 12.5), 2.0), (25, 50))
    assert np.nanmedian(coarse.data) == pytest.approx(40.0, rel=1e-3)


def test_coadd_crop_is_the_covered_box_of_the_full_grid():
    first = fits.ImageHDU(np.full((50, 60), 10.0, np.float32), _tan_wcs(150.0, 2.0, (30.0, 25.0), 1.0).to_header())
    second = fits.ImageHDU(np.full((50, 60), 20.0, np.float32), _tan_wcs(150.0, 2.0, (0.0, 25.0), 1.0).to_header())
    grid = _tan_wcs(150.0, 2.0, (150.0, 100.0), 1.0)
    full, full_cov = coadd([first, second], grid, (200, 300))
    cut, cut_cov = coadd([first, second], grid, (200, 300), crop=True)
    x0, y0 = cut.header["GRID_X0"], cut.header["GRID_Y0"]
    ny, nx = cut.data.shape
    assert (cut.header["GRID_NX"], cut.header["GRID_NY"]) == (300, 200) and nx < 150 and ny < 80
    assert np.array_equal(cut_cov.data, full_cov.data[y0:y0 + ny, x0:x0 + nx])
    assert full_cov.data.sum() == cut_cov.data.sum()  # nothing covered lies outside the box
    assert np.allclose(cut.data, full.data[y0:y0 + ny, x0:x0 + nx], equal_nan=True)
    assert np.allclose(WCS(cut.header).all_pix2world(0, 0, 0), grid.all_pix2world(x0, y0, 0))


def test_patch_grid_covers_the_patch():
    from skybutler.demo_tasks.tasks import patch_grid
    from skybutler.ingest.skymaps import RingsSkyMap

    sky_map = RingsSkyMap("rings")
    tract = sky_map.find_tracts(150.0, -20.0)[0]
    patch = sky_map.find_patches(tract, 150.0, -20.0)[0]
    wcs, (ny, nx) = patch_grid(sky_map, tract, patch, 1.6)
    ra_min, ra_max, dec_min, dec_max = sky_map.patch_bounds(tract, *reversed(divmod(patch, sky_map.patches)))
    m = sky_map.patch_overlap
    ras = [ra_min - m / math.cos(math.radians(dec_max)), ra_max + m / math.cos(math.radians(dec_max))]
    x, y = wcs.all_world2pix(np.repeat(ras, 2), np.tile([dec_min - m, dec_max + m], 2), 0)
    assert (x >= -0.5).all() and (x <= nx - 0.5).all() and (y >= -0.5).all() and (y <= ny - 0.5).all()
    assert min(x.min() + 0.5, nx - 0.5 - x.max(), y.min() + 0.5, ny - 0.5 - y.max()) < 200  # not much bigger


def test_coadd_recovers_star_fluxes(night):
    # Detector 1 of two dithered, rotated exposures of the field overlaps over ~30,000 pixels.
    calexps = [calibrate(night.exposure(seq, 1))[0] for seq in (14, 15)]
    centre = WCS(calexps[0].header).all_pix2world(127.5, 127.5, 0)
    patch = _tan_wcs(float(centre[0]), float(centre[1]), (200.5, 200.5), 0.8)
    image, coverage = coadd(calexps, patch, (400, 400))
    assert coverage.data.max() == 2 and (coverage.data == 2).sum() > 20_000
    spec = night.specs[14]
    stars = star_catalog(0, spec.ra, spec.dec, 0.15)
    stars = stars[(stars["mag_r"] > 16.5) & (stars["mag_r"] < 20.5)]  # bright, unsaturated
    px, py = patch.all_world2pix(stars["ra"], stars["dec"], 0)
    inside = (px > 10) & (px < 390) & (py > 10) & (py < 390)
    px, py, stars = px[inside], py[inside], stars[inside]
    both = coverage.data[np.round(py).astype(int), np.round(px).astype(int)] == 2
    assert both.sum() >= 5
    coadd_flux = sep.sum_circle(np.nan_to_num(image.data.astype(np.float64)), px[both], py[both], 5.0)[0]
    input_flux = []
    for calexp in calexps:
        x, y = WCS(calexp.header).all_world2pix(stars["ra"][both], stars["dec"][both], 0)
        input_flux.append(sep.sum_circle(calexp.data.astype(np.float64), x, y, 5.0)[0])
    ratio = coadd_flux / np.mean(input_flux, axis=0)
    assert abs(float(np.median(ratio)) - 1.0) < 0.01 and np.all(np.abs(ratio - 1.0) < 0.1), ratio


def test_source_table_round_trips_through_parquet(tmp_path, night):
    import pyarrow.parquet as pq

    _, sources = calibrate(night.exposure(15, 4))
    pq.write_table(sources, tmp_path / "src.parquet")
    back = pq.read_table(tmp_path / "src.parquet")
    assert back.equals(sources) and back.schema.metadata[b"skybutler.n_src"] == str(sources.num_rows).encode()
    assert isinstance(back, pa.Table)


# -- pipeline wrappers -------------------------------------------------------------------


def test_task_wrappers_and_pipelines(night):
    from importlib.resources import files

    from skybutler.demo_tasks.tasks import BiasTask, CalibrateTask, FlatTask, IsrTask, VisitSummaryTask
    from skybutler.dimensions import DimensionUniverse
    from skybutler.pipeline import Pipeline

    for name, labels in (("demo_calibs.yaml", ["bias", "flat"]),
                         ("demo_pipeline.yaml", ["isr", "calibrate", "visitSummary", "coadd"])):
        pipeline = Pipeline.from_yaml(str(files("skybutler.demo_tasks") / name))
        assert [t.label for t in pipeline.validate(DimensionUniverse.default())] == labels
    raws = {("bias", s): night.raw(s, 2) for s in night.of_type("bias")}
    raws.update({("flat", s): night.raw(s, 2) for s in night.of_type("flat", "SimCam-r")})
    bias = BiasTask().run(raws=raws)["bias"]  # each task keeps the raws of its own OBSTYPE
    assert np.array_equal(bias.data, night.bias(2).data)
    flat = FlatTask().run(raws=raws, bias=bias)["flat"]
    assert np.array_equal(flat.data, night.flat("SimCam-r", 2).data)
    exposure = IsrTask().run(raw=night.raw(15, 2), bias=bias, flat=flat)["exposure"]
    config = CalibrateTask.Config(detection_threshold=10.0)
    exposure_id = {"instrument": "SimCam", "exposure": night.specs[15].exposure_id, "detector": 2}
    outputs = CalibrateTask(config).run(exposures={_Id(exposure_id): exposure})  # a visit of one exposure
    data_id = {"instrument": "SimCam", "visit": night.specs[15].exposure_id, "detector": 2}
    assert outputs["src"].equals(calibrate(exposure, CalibrateConfig(detection_threshold=10.0))[1])
    summary = VisitSummaryTask().run(calexps={_Id(data_id): outputs["calexp"]},
                                     sources={_Id(data_id): outputs["src"]})
    assert summary["summary"]["detector"].to_pylist() == [2]
    assert summary["metrics"]["n_sources_total"] == outputs["src"].num_rows


class _Id(dict):
    """A hashable stand-in for a data ID (the executor passes DataCoordinates)."""

    def __hash__(self):
        return hash(tuple(sorted(self.items())))
