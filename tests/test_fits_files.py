"""Real FITS files: compressed files, HDUs and tables, and the validation of files at ingest.

The oracle is astropy reading the same files; the images are built with astropy
(:mod:`fits_images`).
"""

from __future__ import annotations

import bz2
import gzip
import io
from pathlib import Path

import numpy as np
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import Table

from fits_images import (
    N_X,
    N_Y,
    _icrs,
    alternates,
    assert_same_sky,
    astropy_wcs,
    make_image,
    make_raw,
    read,
    sip,
    tan,
    world,
    write_file,
)
from skybutler.errors import FormatterError
from skybutler.formats import get_formatter, get_storage_class

# -- compressed files and HDUs ------------------------------------------------------


@pytest.mark.parametrize("compress", [None, "gzip", "bzip2", "tile"])
def test_compressed_files_read_and_cut_out(tmp_path: Path, compress: str | None) -> None:
    header = sip()
    image = make_image(header, dtype=np.int32)
    if compress == "tile":
        path = tmp_path / "image.fits.fz"
        fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(image.data, header=header, tile_shape=(10, N_X))]) \
            .writeto(path)
    else:
        path = write_file(tmp_path / "image.fits", image, compress)
    np.testing.assert_array_equal(read(path, "fits", "data"), image.data)
    box = (5, 7, 60, 33)
    cut = read(path, bbox=box)
    np.testing.assert_array_equal(cut.data, image.data[7:33, 5:60])
    xs, ys = np.array([0.0, 54.0]), np.array([0.0, 25.0])
    assert_same_sky(world(astropy_wcs(cut.header), xs, ys), world(astropy_wcs(header), xs + 5, ys + 7))
    validate(path)
    # The same bytes through an in-memory stream (an object store's file object).
    with open(path, "rb") as f:
        stream = io.BytesIO(f.read())
    np.testing.assert_array_equal(get_formatter("fits").read(stream, component="data"), image.data)
    assert not stream.closed


def test_tile_compressed_cutout_reads_only_its_tiles(tmp_path: Path) -> None:
    data = np.random.default_rng(1).integers(0, 60000, size=(2000, 500)).astype(np.int32)
    path = tmp_path / "big.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(data, tile_shape=(10, 500))]).writeto(path)

    class Counting(io.BytesIO):
        read_bytes = 0

        def read(self, size: int = -1) -> bytes:
            out = super().read(size)
            Counting.read_bytes += len(out)
            return out

    stream = Counting(path.read_bytes())
    cut = get_formatter("fits").read(stream, component="data", parameters={"bbox": (0, 1000, 500, 1010)})
    np.testing.assert_array_equal(cut, data[1000:1010])
    assert Counting.read_bytes < path.stat().st_size / 4


def test_hdus_by_name_and_index_with_inherited_header(tmp_path: Path) -> None:
    path = write_file(tmp_path / "raw.fits", make_raw(), "gzip")
    amp = read(path, hdu="AMP02")
    assert amp.data.dtype == np.uint16 and np.all(amp.data == 2)
    assert amp.header["DATE-OBS"] == "2026-03-01T01:02:03" and amp.header["EXPTIME"] == 15.0
    np.testing.assert_array_equal(read(path, "fits", "data", hdu=3), amp.data)
    np.testing.assert_array_equal(read(path, "fits", "data", hdu=("AMP02", 1)), amp.data)
    assert read(path, "fits", "header", hdu="amp01")["EXTNAME"] == "AMP01"
    with pytest.raises(FormatterError, match=r"no HDU 'AMP07'.*4:AMP03"):
        read(path, hdu="AMP07")
    with pytest.raises(FormatterError, match=r"HDU 5 \(CATALOG\) is a BinTableHDU, not an image"):
        read(path, hdu="CATALOG")
    with pytest.raises(FormatterError, match=r"HDU 0 \(PRIMARY\) holds a 0-D array"):
        read(path, hdu=0)


def test_multi_extension_image(tmp_path: Path) -> None:
    sc = get_storage_class("MultiExtensionImage")
    raw = sc.check(make_raw())
    fmt = get_formatter("fits-mef")
    path = tmp_path / "raw.fits"
    with open(path, "wb") as stream:
        fmt.write(raw, stream)
    whole = read(path, "fits-mef")
    assert [h.name for h in whole] == ["PRIMARY", "AMP00", "AMP01", "AMP02", "AMP03", "CATALOG"]
    assert whole["AMP03"].header["MJD-OBS"] == 61100.04
    headers = read(path, "fits-mef", "headers")
    assert len(headers) == 6 and headers[2]["FILTER"] == "g"
    cut = read(path, "fits-mef", hdu="AMP01", bbox=(0, 0, 10, 10))
    assert cut.data.shape == (10, 10) and np.all(cut.data == 1)
    facts = sc.extract_metadata(raw)
    assert facts == sc.extract_metadata(headers) | {}  # the same facts from the headers alone
    assert facts["n_hdus"] == 6 and facts["n_images"] == 4
    # The union footprint holds every amplifier's corners.
    from skybutler.dimensions import regions as sky

    for amp in range(4):
        header = raw[amp + 1].header
        for corner in _icrs(header, np.array([0.0, 39.0]), np.array([0.0, N_Y - 1.0])):
            assert facts["region"].contains(sky.point(corner.ra.deg, corner.dec.deg))


def test_fits_table(tmp_path: Path) -> None:
    sc = get_storage_class("FitsTable")
    table = Table({"id": np.arange(5), "flux": np.linspace(1, 2, 5) * u.nJy, "band": list("ugriz")})
    fmt = get_formatter("fits-table")
    path = tmp_path / "cat.fits"
    with open(path, "wb") as stream:
        fmt.write(sc.check(table), stream)
    back = read(path, "fits-table")
    assert back.colnames == ["id", "flux", "band"] and back["flux"].unit == u.nJy
    assert list(back["band"]) == list("ugriz")
    arrow = read(path, "fits-table", columns=["flux", "id"], **{"as": "arrow"})
    assert arrow.column_names == ["flux", "id"] and arrow.num_rows == 5
    assert read(path, "fits-table", "columns") == ["id", "flux", "band"]
    assert sc.extract_metadata(read(path, "fits-table", "header")) == sc.extract_metadata(table)
    with pytest.raises(FormatterError, match=r"unknown column\(s\) \['nope'\]"):
        read(path, "fits-table", columns=["nope"])


# -- validation at ingest -------------------------------------------------------------


def validate(path: Path, formatter: str = "fits") -> None:
    with open(path, "rb") as stream:
        get_formatter(formatter).validate(stream)



@pytest.mark.parametrize(("formatter", "storage_class"), [("fits", "Image"), ("fits-mef", "MultiExtensionImage"),
                                                          ("fits-table", "FitsTable")])
def test_checksum_cards_read_with_an_object_are_not_written_with_it(tmp_path: Path, formatter: str,
                                                                  storage_class: str) -> None:
    """An object read from a file with checksums, its pixels changed, is written without the old
    CHECKSUM/DATASUM (they describe other bytes): the file passes the check its ingest makes."""
    source = tmp_path / "source.fits"
    table = Table({"flux": [1.0, 2.0]})
    (fits.HDUList([fits.PrimaryHDU(), fits.table_to_hdu(table)]) if formatter == "fits-table"
     else make_raw(2)).writeto(source, checksum=True)
    with fits.open(source) as hdus:
        if formatter == "fits-table":
            obj = Table.read(hdus[1])
            obj.meta["DATASUM"] = hdus[1].header["DATASUM"]
            obj["flux"] *= 2
        else:
            hdus.readall()
            obj = fits.HDUList([hdu.copy() for hdu in hdus]) if formatter == "fits-mef" else hdus[1].copy()
            for hdu in obj if formatter == "fits-mef" else [obj]:
                if hdu.data is not None and hdu.is_image:
                    hdu.data = hdu.data + 1
    path = tmp_path / "written.fits"
    with open(path, "wb") as stream:
        get_formatter(formatter).write(get_storage_class(storage_class).check(obj), stream)
    validate(path, formatter)
    with fits.open(path) as hdus:
        assert not any("DATASUM" in hdu.header or "CHECKSUM" in hdu.header for hdu in hdus)


def test_a_datasum_card_must_match_the_data(tmp_path: Path) -> None:
    """The FITS checksum convention: each HDU's data, summed, match its DATASUM (astropy's own sum)."""
    path = tmp_path / "summed.fits"
    make_raw(2).writeto(path, checksum=True)
    validate(path, "fits-mef")
    with fits.open(path) as hdus:
        at = hdus[2]._data_offset + 11
    data = bytearray(path.read_bytes())
    data[at] ^= 0x01
    path.write_bytes(bytes(data))
    with pytest.raises(FormatterError, match=r"the data of HDU 2 do not match its DATASUM card \(\d+; they sum to"):
        validate(path, "fits-mef")

def test_validation_refuses_bad_files(tmp_path: Path) -> None:
    good = write_file(tmp_path / "good.fits", make_image(tan()))
    validate(good)
    text = tmp_path / "notes.fits"
    text.write_text("this is not FITS\n" * 200)
    with pytest.raises(FormatterError, match=r"the primary header does not parse"):
        validate(text)
    truncated = tmp_path / "truncated.fits"
    truncated.write_bytes(good.read_bytes()[:2880 + 4000])
    with pytest.raises(FormatterError, match=r"truncated: HDU 0 declares data up to byte"):
        validate(truncated)
    for kind, pack in (("gzip", gzip.compress), ("bzip2", bz2.compress)):
        packed = bytearray(pack(good.read_bytes()))
        packed[len(packed) // 2] ^= 0xFF
        corrupt = tmp_path / "corrupt.fits.gz"
        corrupt.write_bytes(bytes(packed))
        with pytest.raises(FormatterError, match=f"the {kind} stream is corrupt"):
            validate(corrupt)
        whole = tmp_path / "whole.fits.gz"
        whole.write_bytes(pack(good.read_bytes()[:2880 + 4000]))
        with pytest.raises(FormatterError, match=r"truncated: HDU 0"):
            validate(whole)
    table_only = write_file(tmp_path / "table.fits", fits.HDUList([fits.PrimaryHDU(),
                                                                   fits.BinTableHDU(Table({"a": [1]}))]))
    with pytest.raises(FormatterError, match=r"the file holds no 2-D image HDU"):
        validate(table_only)
    validate(table_only, "fits-table")
    with pytest.raises(FormatterError, match=r"the file holds no table HDU"):
        validate(good, "fits-table")
    bad_wcs = make_image(tan())
    bad_wcs.header["CTYPE1"], bad_wcs.header["CTYPE2"] = "RA---TAN", "RA---TAN"
    with pytest.raises(FormatterError, match=r"HDU 0 \(PRIMARY\): astropy cannot parse the primary WCS"):
        validate(write_file(tmp_path / "bad_wcs.fits", bad_wcs))
    bad_alt = make_image(alternates())
    bad_alt.header["CTYPE2B"] = "RA---TAN"
    with pytest.raises(FormatterError, match=r"astropy cannot parse the WCS 'B'"):
        validate(write_file(tmp_path / "bad_alt.fits", bad_alt))
    tiles = tmp_path / "tiles.fits.fz"
    fits.HDUList([fits.PrimaryHDU(), fits.CompImageHDU(make_image(tan(), dtype=np.int32).data,
                                                       tile_shape=(10, N_X))]).writeto(tiles)
    validate(tiles)
    with fits.open(tiles, disable_image_compression=True) as hdus:  # where the compressed tiles lie
        table = hdus[1]
        start = hdus.fileinfo(1)["datLoc"] + table.header["NAXIS1"] * table.header["NAXIS2"]
    broken = bytearray(tiles.read_bytes())
    broken[start + 50:start + 450] = b"\xa5" * 400
    tiles.write_bytes(bytes(broken))
    with pytest.raises(FormatterError, match=r"HDU 1 .*compressed tiles cannot be decoded"):
        validate(tiles)


def test_each_hdus_data_size_is_the_standards(tmp_path: Path) -> None:
    """FITS section 4.4.1: PCOUNT and GCOUNT size the data of extensions and of random groups
    (whose NAXIS1 is 0), and mean nothing in a primary array.  astropy counts them there too: a
    primary with such stray cards and extensions after it is refused, naming them (astropy would
    not find the extensions); alone, its data are its NAXISn's, as astropy reads them."""
    from skybutler.formats.fits_validation import walk_headers

    groups = fits.GroupData(np.arange(12, dtype=np.float32).reshape(3, 1, 2, 2), parnames=["u", "v"],
                            pardata=[np.ones(3), np.zeros(3)], bitpix=-32)
    table = fits.BinTableHDU.from_columns([fits.Column("x", "E", array=np.arange(3.0))], name="T")
    path = tmp_path / "groups.fits"
    fits.HDUList([fits.GroupsHDU(groups), table]).writeto(path)
    with open(path, "rb") as stream:
        headers, _ = walk_headers(stream, path.name)
    with fits.open(path) as hdus:
        assert [h.get("EXTNAME") for h in headers] == [h.header.get("EXTNAME") for h in hdus] == [None, "T"]

    primary = fits.PrimaryHDU(np.arange(20, dtype=np.int16).reshape(4, 5))
    primary.header["PCOUNT"], primary.header["GCOUNT"] = 1000, 3  # stray cards of a merged header
    alone, followed = tmp_path / "alone.fits", tmp_path / "followed.fits"
    primary.writeto(alone)
    fits.HDUList([primary, table]).writeto(followed)
    with open(alone, "rb") as stream:
        assert len(walk_headers(stream, alone.name)[0]) == 1
    with open(followed, "rb") as stream, pytest.raises(FormatterError, match="PCOUNT/GCOUNT.*not random groups"):
        walk_headers(stream, followed.name)
