"""Whole-exposure raw files as DECam and MegaPrime write them, from real headers (astro-metadata-
translator's test data in tests/data/translator_headers): an empty primary HDU with the exposure's
cards and one image extension per CCD, each with that CCD's cards.  Used by test_multi_ccd*.py."""

from __future__ import annotations

import warnings
from pathlib import Path

import numpy as np
from astro_metadata_translator.tests import read_test_file
from astropy.io import fits

HEADERS = Path(__file__).parent / "data" / "translator_headers"
#: Cards of an HDU's structure and checksums: each written HDU gets its own.
_STRUCTURE = {"SIMPLE", "BITPIX", "NAXIS", "NAXIS1", "NAXIS2", "EXTEND", "BZERO", "BSCALE", "BLANK",
              "CHECKSUM", "DATASUM", "XTENSION", "PCOUNT", "GCOUNT", "TFIELDS"}
#: DECam CCDs written by default: CCDNUM -> (DETPOS, DETECTOR serial), as the camera names them.
DECAM_CCDS = {25: ("S1", "S3-111_107419-8-3"), 1: ("S29", "S3-06_123195-15-3"), 32: ("N1", "S3-113_107419-19-2"),
              62: ("N31", "S3-344_135960-13-4")}


def _header(name: str) -> dict:
    return dict(read_test_file(name, dir=str(HEADERS)))


def pixels(seed: int, shape: tuple[int, int] = (24, 16)) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 65535, shape).astype(np.uint16)


def _copy_cards(target: fits.Header, cards: dict, compressed: bool = False) -> None:
    """``cards`` into ``target``, less the structure's (and a compressed HDU's table cards)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        for key, value in cards.items():
            if not (key in _STRUCTURE or (compressed and key.startswith(("Z", "TTYPE", "TFORM")))):
                target[key] = value


def decam_exposure(path: Path, ccds: dict[int, tuple[str, str]] | None = None, *, guide: bool = True,
                   compressed: bool = True, exposure: int | None = None) -> Path:
    """A DECam exposure (the real raw dec050441: its primary cards, CCD 25's cards made each CCD's)
    with one RICE-compressed (or plain) extension per CCD, and a guide CCD (CCDNUM 63, which
    astro-metadata-translator leaves out) unless ``guide`` is False; ``exposure``: another EXPNUM."""
    header = _header("fitsheader-decam-raw_dec050441_25.yaml")
    if exposure is not None:
        header.update({"EXPNUM": exposure, "OBSID": f"ct4m{exposure}"})
    keys = list(header)
    split = keys.index("XTENSION")
    primary = fits.PrimaryHDU()
    _copy_cards(primary.header, {k: header[k] for k in keys[:split]})
    ccd_cards = {k: header[k] for k in keys[split:]}
    hdus = [primary]
    chosen = dict(ccds or DECAM_CCDS)
    if guide:
        chosen[63] = ("FS1", "S3-400_guide")
    for n, (number, (pos, serial)) in enumerate(chosen.items()):
        data = pixels(number)
        ext = fits.CompImageHDU(data, compression_type="RICE_1") if compressed else fits.ImageHDU(data)
        _copy_cards(ext.header, {**ccd_cards, "CCDNUM": number, "DETPOS": pos, "EXTNAME": pos, "DETECTOR": serial,
                                 "CRPIX1": 2151.2 + 100 * n}, compressed=True)
        hdus.append(ext)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        fits.HDUList(hdus).writeto(path, checksum=True)
    return path


def megaprime_exposure(path: Path, ccds: tuple[int, ...] = (0, 14, 35)) -> Path:
    """A MegaPrime exposure (the real raw 1038843o's primary cards) with a plain extension per CCD
    (EXTNAME ccdNN) that repeats the exposure's cards, as CFHT writes them (INHERIT F)."""
    header = _header("fitsheader-megaprime.yaml")
    primary = fits.PrimaryHDU()
    _copy_cards(primary.header, header)
    hdus = [primary]
    for number in ccds:
        ext = fits.ImageHDU(pixels(100 + number))
        _copy_cards(ext.header, {**header, "EXTNAME": f"ccd{number:02d}", "INHERIT": False})
        hdus.append(ext)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", fits.verify.VerifyWarning)
        fits.HDUList(hdus).writeto(path)
    return path
