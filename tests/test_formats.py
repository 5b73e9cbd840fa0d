"""Tests of storage classes, formatters and metadata extractors (skybutler.formats)."""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest
from astropy import units as u
from astropy.io import fits
from astropy.table import MaskedColumn, QTable, Table
from astropy.time import Time
from astropy.wcs import WCS

from skybutler.errors import FormatterError, StorageClassError
from skybutler.formats import (
    Formatter,
    StorageClass,
    formatter_names,
    get_formatter,
    get_storage_class,
    storage_class_names,
)


class CountingStream(io.RawIOBase):
    """A seekable binary stream that counts the bytes read through it."""

    def __init__(self, path: Path) -> None:
        self._file = open(path, "rb")
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._file.readinto(buffer)
        self.bytes_read += n
        return n

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._file.seek(offset, whence)

    def tell(self) -> int:
        return self._file.tell()

    def close(self) -> None:
        self._file.close()
        super().close()


def write(tmp_path: Path, obj: Any, formatter: str, name: str = "artifact") -> Path:
    fmt = get_formatter(formatter)
    path = tmp_path / f"{name}{fmt.extension}"
    with open(path, "wb") as stream:
        fmt.write(obj, stream)
    return path


def read(path: Path, formatter: str, component: str | None = None, **parameters: Any) -> Any:
    with open(path, "rb") as stream:
        return get_formatter(formatter).read(stream, component=component, parameters=parameters or None)


def make_wcs_header(crpix: tuple[float, float] = (100.5, 60.5)) -> fits.Header:
    wcs = WCS(naxis=2)
    wcs.wcs.ctype = ["RA---TAN", "DEC--TAN"]
    wcs.wcs.crval = [150.1, 2.2]
    wcs.wcs.crpix = list(crpix)
    wcs.wcs.cd = [[-5.0e-5, 1.0e-6], [1.0e-6, 5.0e-5]]
    header = wcs.to_header()
    header["EXPTIME"] = 30
    header["FILTER"] = "HSC-R"
    header["OBSTYPE"] = "science"
    return header


@pytest.fixture
def image_hdu() -> fits.ImageHDU:
    data = np.arange(120 * 200, dtype=np.float32).reshape(120, 200)
    return fits.ImageHDU(data=data, header=make_wcs_header())


def make_arrow() -> pa.Table:
    return pa.table({"id": pa.array([1, 2, 3], pa.int64()), "flux": [1.5, 2.5, 3.5], "band": ["g", "r", "i"]})


def make_pandas() -> pd.DataFrame:
    return pd.DataFrame({"id": np.array([1, 2, 3], dtype=np.int64), "flux": [1.5, 2.5, 3.5], "band": ["g", "r", "i"]})


def make_astropy() -> Table:
    table = Table()
    table["id"] = np.array([1, 2, 3], dtype=np.int64)
    table["flux"] = np.array([1.5, 2.5, 3.5]) * 1.0
    table["flux"].unit = u.nJy
    table["flux"].description = "PSF flux"
    table["band"] = ["g", "r", "i"]
    return table


def as_records(table: Any) -> list[tuple[Any, ...]]:
    """Rows of any table type as plain tuples, for comparisons across types."""
    if isinstance(table, pa.Table):
        return [tuple(row.values()) for row in table.to_pylist()]
    if isinstance(table, pd.DataFrame):
        return [tuple(row) for row in table.itertuples(index=False)]
    return [tuple(row.as_void().tolist()) for row in table]


# -- registry -------------------------------------------------------------------


def test_shipped_names() -> None:
    assert set(storage_class_names()) >= {"Dict", "Table", "Image"}
    assert set(formatter_names()) >= {"json", "yaml", "parquet", "fits"}
    for name in storage_class_names():
        sc = get_storage_class(name)
        assert isinstance(sc, StorageClass) and sc.name == name
        assert sc.default_formatter in sc.formatters
        for formatter_name in sc.formatters:
            fmt = get_formatter(formatter_name)
            assert isinstance(fmt, Formatter)
            assert set(sc.components) == set(fmt.components)
            assert sc.parameters == fmt.parameters


def test_storage_class_attributes() -> None:
    assert get_storage_class("Dict").formatters == ("json", "yaml")
    assert get_storage_class("Dict").default_formatter == "json"
    assert get_storage_class("Table").parameters == frozenset({"columns", "as", "rows"})
    assert get_storage_class("Image").parameters == frozenset({"bbox", "hdu", "wcs_key", "bin"})
    assert set(get_storage_class("Image").components) == {"header", "wcs", "data"}
    assert get_formatter("json").extension == ".json"
    assert get_formatter("fits").name == "fits"


def test_unknown_storage_class_lists_known() -> None:
    with pytest.raises(StorageClassError, match=r"'Nope'.*Dict.*Image.*Table"):
        get_storage_class("Nope")


def test_unknown_formatter() -> None:
    with pytest.raises(FormatterError, match=r"'hdf5'.*fits"):
        get_formatter("hdf5")


def test_storage_class_rejects_inconsistent_definition() -> None:
    with pytest.raises(StorageClassError, match="default formatter"):
        StorageClass("X", "json", ("yaml",), "x", lambda o: o, lambda o: {})
    with pytest.raises(StorageClassError, match="metadata field"):
        StorageClass("X", "json", ("json",), "x", lambda o: o, lambda o: {}, metadata_fields={"a": list})


# -- Dict -----------------------------------------------------------------------


@pytest.mark.parametrize("formatter", ["json", "yaml"])
def test_dict_round_trip(tmp_path: Path, formatter: str) -> None:
    value = {"a": 1, "b": [1.5, "x", None, True], "nested": {"é": {"k": []}}}
    sc = get_storage_class("Dict")
    path = write(tmp_path, sc.check(value), formatter)
    assert read(path, formatter) == value
    assert sc.extract_metadata(value) == {"n_keys": 3}


@pytest.mark.parametrize("bad", [[1, 2], {1: "int key"}, {"a": {"when": Time("2026-01-01")}}, {"a": np.int64(3)}])
def test_dict_check_rejects(bad: Any) -> None:
    with pytest.raises(StorageClassError, match=r"'Dict'.*(list|dict)"):
        get_storage_class("Dict").check(bad)


def test_dict_formatters_take_no_parameters_or_components(tmp_path: Path) -> None:
    path = write(tmp_path, {"a": 1}, "json")
    with pytest.raises(FormatterError, match=r"component 'a'"):
        read(path, "json", component="a")
    with pytest.raises(FormatterError, match=r"\['bbox'\]"):
        read(path, "json", bbox=(0, 0, 1, 1))


def test_corrupt_artifact_is_formatter_error(tmp_path: Path) -> None:
    path = tmp_path / "bad.json"
    path.write_bytes(b"{not json")
    with pytest.raises(FormatterError, match="'json' could not read"):
        read(path, "json")


# -- Table ------------------------------------------------------------------------


MAKERS = {"arrow": make_arrow, "pandas": make_pandas, "astropy": make_astropy}
TYPES = {"arrow": pa.Table, "pandas": pd.DataFrame, "astropy": Table}


@pytest.mark.parametrize("written", list(MAKERS))
@pytest.mark.parametrize("read_as", list(MAKERS))
def test_table_cross_type_round_trip(tmp_path: Path, written: str, read_as: str) -> None:
    sc = get_storage_class("Table")
    path = write(tmp_path, sc.check(MAKERS[written]()), "parquet")
    result = read(path, "parquet", **{"as": read_as})
    assert isinstance(result, TYPES[read_as])
    assert as_records(result) == [(1, 1.5, "g"), (2, 2.5, "r"), (3, 3.5, "i")]


def test_table_default_read_is_arrow(tmp_path: Path) -> None:
    path = write(tmp_path, make_pandas(), "parquet")
    assert isinstance(read(path, "parquet"), pa.Table)


def test_astropy_units_description_shape_and_mask_survive(tmp_path: Path) -> None:
    table = make_astropy()
    table["vec"] = np.arange(6, dtype=np.float32).reshape(3, 2)
    table["maybe"] = MaskedColumn([1, 2, 3], mask=[False, True, False])
    table.meta["survey"] = "sim"
    result = read(write(tmp_path, table, "parquet"), "parquet", **{"as": "astropy"})
    assert result["flux"].unit == u.nJy
    assert result["flux"].description == "PSF flux"
    assert result["vec"].shape == (3, 2) and result["vec"].dtype == np.float32
    assert list(result["maybe"].mask) == [False, True, False]
    assert result["maybe"][0] == 1 and result["maybe"].dtype.kind == "i"
    assert result.meta["survey"] == "sim"


def test_qtable_quantity_columns(tmp_path: Path) -> None:
    table = QTable({"ra": [1.0, 2.0] * u.deg})
    result = read(write(tmp_path, table, "parquet"), "parquet", **{"as": "astropy"})
    assert result["ra"].unit == u.deg and list(result["ra"]) == [1.0, 2.0]


def test_astropy_mixin_column_is_refused(tmp_path: Path) -> None:
    table = Table({"t": Time([60000.0, 60001.0], format="mjd")})
    with pytest.raises(FormatterError, match="column 't'"):
        write(tmp_path, table, "parquet")


@pytest.mark.parametrize("read_as", list(MAKERS))
def test_table_column_subset(tmp_path: Path, read_as: str) -> None:
    path = write(tmp_path, make_pandas(), "parquet")
    result = read(path, "parquet", columns=["band", "id"], **{"as": read_as})
    names = list(result.colnames) if read_as == "astropy" else list(result.column_names if read_as == "arrow" else result.columns)
    assert names == ["band", "id"]


@pytest.mark.parametrize("read_as", list(MAKERS))
def test_table_first_rows(tmp_path: Path, read_as: str) -> None:
    """``rows`` reads the first rows, across row groups, as pyarrow reads them whole."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    path = tmp_path / "groups.parquet"
    pq.write_table(pa.table({"id": list(range(11)), "band": list("grizygrizyg")}), path, row_group_size=3)
    whole = pq.read_table(path)
    for rows in (0, 2, 3, 5, 11, 50):
        result = read(path, "parquet", rows=rows, **{"as": read_as})
        assert len(result) == min(rows, 11)
        got = pa.Table.from_pandas(result, preserve_index=False) if read_as == "pandas" else (
            pa.Table.from_pydict({c: list(result[c]) for c in result.colnames}) if read_as == "astropy" else result)
        assert got.column("id").to_pylist() == whole.column("id").to_pylist()[:rows]
    assert read(path, "parquet", rows=4, columns=["band"]).column_names == ["band"]
    for bad in (-1, 1.5, "3", True):
        with pytest.raises(FormatterError, match="'rows'"):
            read(path, "parquet", rows=bad)


def test_table_schema_component(tmp_path: Path) -> None:
    path = write(tmp_path, make_arrow(), "parquet")
    schema = read(path, "parquet", component="schema")
    assert schema.names == ["id", "flux", "band"]
    assert read(path, "parquet", component="schema", columns=["flux"]).names == ["flux"]


def test_table_metadata() -> None:
    sc = get_storage_class("Table")
    for maker in MAKERS.values():
        assert sc.extract_metadata(maker()) == {"n_rows": 3, "n_columns": 3, "columns": "id,flux,band"}


def test_table_column_subset_is_partial(tmp_path: Path) -> None:
    rng = np.random.default_rng(1)
    wide = pa.table({f"c{i:03d}": rng.random(20_000) for i in range(100)})
    path = write(tmp_path, wide, "parquet")
    stream = CountingStream(path)
    try:
        result = get_formatter("parquet").read(stream, parameters={"columns": ["c007", "c042"]})
    finally:
        stream.close()
    assert result.column_names == ["c007", "c042"]
    assert result.column("c042").to_pylist() == wide.column("c042").to_pylist()
    assert stream.bytes_read < path.stat().st_size / 10


def test_table_errors(tmp_path: Path) -> None:
    sc = get_storage_class("Table")
    with pytest.raises(StorageClassError, match=r"'Table'.*dict"):
        sc.check({"a": [1]})
    with pytest.raises(FormatterError, match="cannot write"):
        write(tmp_path, [1, 2], "parquet")
    path = write(tmp_path, make_arrow(), "parquet")
    with pytest.raises(FormatterError, match=r"unknown column\(s\) \['nope'\].*'flux'"):
        read(path, "parquet", columns=["flux", "nope"])
    with pytest.raises(FormatterError, match="list of column names"):
        read(path, "parquet", columns="flux")
    with pytest.raises(FormatterError, match=r"'as' is 'numpy'"):
        read(path, "parquet", **{"as": "numpy"})
    with pytest.raises(FormatterError, match=r"\['limit'\].*allowed"):
        read(path, "parquet", limit=3)
    with pytest.raises(FormatterError, match=r"component 'flux'.*schema"):
        read(path, "parquet", component="flux")


# -- Image ------------------------------------------------------------------------


def test_image_round_trip_hdu(tmp_path: Path, image_hdu: fits.ImageHDU) -> None:
    sc = get_storage_class("Image")
    path = write(tmp_path, sc.check(image_hdu), "fits")
    result = read(path, "fits")
    assert isinstance(result, fits.ImageHDU)
    np.testing.assert_array_equal(result.data, image_hdu.data)
    assert result.header["FILTER"] == "HSC-R"
    assert result.header["CRPIX1"] == image_hdu.header["CRPIX1"]


@pytest.mark.parametrize("dtype", [np.uint8, np.int16, np.uint16, np.int32, np.float32, np.float64])
def test_image_round_trip_array(tmp_path: Path, dtype: Any) -> None:
    data = (np.arange(50 * 40) % 200).astype(dtype).reshape(50, 40)
    path = write(tmp_path, get_storage_class("Image").check(data), "fits")
    result = read(path, "fits")
    assert result.data.dtype == np.dtype(dtype)
    np.testing.assert_array_equal(result.data, data)
    np.testing.assert_array_equal(read(path, "fits", component="data"), data)


def test_image_primary_hdu_accepted(tmp_path: Path) -> None:
    hdu = fits.PrimaryHDU(np.ones((4, 5), dtype=np.float32), header=make_wcs_header())
    result = read(write(tmp_path, hdu, "fits"), "fits")
    assert result.data.shape == (4, 5) and result.header["OBSTYPE"] == "science"


def test_image_in_extension_is_found(tmp_path: Path) -> None:
    """Ingested raws often keep pixels in the first extension behind an empty primary."""
    path = tmp_path / "raw.fits"
    fits.HDUList([fits.PrimaryHDU(), fits.ImageHDU(np.ones((6, 7), dtype=np.int32))]).writeto(path)
    assert read(path, "fits", bbox=(1, 2, 4, 5)).data.shape == (3, 3)


def test_image_header_and_wcs_components(tmp_path: Path, image_hdu: fits.ImageHDU) -> None:
    path = write(tmp_path, image_hdu, "fits")
    header = read(path, "fits", component="header")
    assert isinstance(header, fits.Header)
    assert header["NAXIS1"] == 200 and header["NAXIS2"] == 120 and header["EXPTIME"] == 30
    wcs = read(path, "fits", component="wcs")
    assert isinstance(wcs, WCS) and wcs.has_celestial
    expected = WCS(image_hdu.header).pixel_to_world(10, 20)
    assert wcs.pixel_to_world(10, 20).separation(expected).arcsec < 1e-6


def test_bbox_cutout_and_wcs_shift(tmp_path: Path, image_hdu: fits.ImageHDU) -> None:
    path = write(tmp_path, image_hdu, "fits")
    x_min, y_min, x_max, y_max = 30, 40, 130, 90
    cut = read(path, "fits", bbox=(x_min, y_min, x_max, y_max))
    assert isinstance(cut, fits.ImageHDU)
    np.testing.assert_array_equal(cut.data, image_hdu.data[y_min:y_max, x_min:x_max])
    assert cut.header["LTV1"] == -x_min and cut.header["LTV2"] == -y_min
    full = WCS(image_hdu.header)
    cut_wcs = WCS(cut.header)
    for cx, cy in [(0, 0), (99, 49), (17, 3)]:
        a = cut_wcs.pixel_to_world(cx, cy)
        b = full.pixel_to_world(cx + x_min, cy + y_min)
        assert a.separation(b).arcsec < 1e-6
    # The wcs and header components honour bbox too; the data component returns the array.
    assert read(path, "fits", "wcs", bbox=(x_min, y_min, x_max, y_max)).pixel_to_world(0, 0).separation(
        full.pixel_to_world(x_min, y_min)
    ).arcsec < 1e-6
    assert read(path, "fits", "header", bbox=(x_min, y_min, x_max, y_max))["NAXIS1"] == 100
    assert read(path, "fits", "data", bbox=(0, 0, 1, 1)).shape == (1, 1)


def test_bbox_read_is_partial(tmp_path: Path) -> None:
    data = np.random.default_rng(2).random((2048, 2048), dtype=np.float32)
    path = write(tmp_path, data, "fits")
    size = path.stat().st_size
    stream = CountingStream(path)
    try:
        cut = get_formatter("fits").read(stream, parameters={"bbox": (1000, 500, 1100, 600)})
        assert stream.bytes_read < size / 50
        np.testing.assert_array_equal(cut.data, data[500:600, 1000:1100])
        stream.seek(0)
        before = stream.bytes_read
        get_formatter("fits").read(stream, component="header")
        assert stream.bytes_read - before < 10 * 2880
        assert not stream.closed  # the formatter must not close the caller's stream
    finally:
        stream.close()


@pytest.mark.parametrize(
    ("bbox", "pattern"),
    [
        ((0, 0, 10), "x_min, y_min, x_max, y_max"),
        ("0,0,1,1", "x_min, y_min, x_max, y_max"),
        ((0.5, 0, 10, 10), "integers"),
        ((5, 0, 5, 10), "empty"),
        ((0, 8, 10, 2), "empty"),
        ((-1, 0, 10, 10), "outside"),
        ((0, 0, 201, 10), "outside"),
        ((0, 0, 10, 121), "outside"),
    ],
)
def test_bad_bbox(tmp_path: Path, image_hdu: fits.ImageHDU, bbox: Any, pattern: str) -> None:
    path = write(tmp_path, image_hdu, "fits")
    with pytest.raises(FormatterError, match=pattern):
        read(path, "fits", bbox=bbox)


def test_image_errors(tmp_path: Path, image_hdu: fits.ImageHDU) -> None:
    sc = get_storage_class("Image")
    for bad, pattern in [
        ([[1, 2]], "list"),
        (np.zeros((2, 2, 2)), "3 dimensions"),
        (np.zeros((2, 2), dtype=bool), "bool"),
        (np.ma.zeros((2, 2)), "masked"),
        (fits.ImageHDU(), "no data"),
    ]:
        with pytest.raises(StorageClassError, match=rf"'Image'.*{pattern}"):
            sc.check(bad)
    with pytest.raises(FormatterError, match="cannot write"):
        write(tmp_path, "not an image", "fits")
    path = write(tmp_path, image_hdu, "fits")
    with pytest.raises(FormatterError, match=r"component 'mask'.*'data', 'header', 'wcs'"):
        read(path, "fits", component="mask")
    with pytest.raises(FormatterError, match=r"\['columns'\].*bbox"):
        read(path, "fits", columns=["a"])


def test_image_metadata(image_hdu: fits.ImageHDU) -> None:
    sc = get_storage_class("Image")
    facts = sc.extract_metadata(image_hdu)
    assert set(facts) == set(sc.metadata_fields)
    assert facts["n_x"] == 200 and facts["n_y"] == 120 and facts["dtype"] == "float32"
    centre = WCS(image_hdu.header).pixel_to_world(99.5, 59.5)
    assert facts["ra_center"] == pytest.approx(centre.ra.deg, abs=1e-9)
    assert facts["dec_center"] == pytest.approx(centre.dec.deg, abs=1e-9)
    assert facts["exptime"] == 30.0 and isinstance(facts["exptime"], float)
    assert facts["filter"] == "HSC-R" and facts["obstype"] == "science"
    bare = sc.extract_metadata(np.zeros((3, 4), dtype=np.int16))
    assert bare == {
        "n_x": 4, "n_y": 3, "dtype": "int16", "ra_center": None, "dec_center": None,
        "region": None, "wcs_frame": None, "footprint_problem": "no WCS",
        "exptime": None, "filter": None, "obstype": None,
    }


def test_metadata_types_match_declaration(image_hdu: fits.ImageHDU) -> None:
    samples = {"Dict": {"a": 1}, "Table": make_pandas(), "Image": image_hdu}
    for name, obj in samples.items():
        sc = get_storage_class(name)
        for key, value in sc.extract_metadata(obj).items():
            assert value is None or isinstance(value, sc.metadata_fields[key]), (name, key, value)
            assert sc.metadata_fields[key] is not bool or type(value) is bool or value is None


def test_fsspec_streams(image_hdu: fits.ImageHDU) -> None:
    """Formatters work on fsspec file objects (what an S3 datastore hands them), not only local files."""
    import fsspec

    fs = fsspec.filesystem("memory")
    for name, obj, parameters in [
        ("t.parquet", make_astropy(), {"columns": ["flux"], "as": "astropy"}),
        ("i.fits", image_hdu, {"bbox": (1, 2, 3, 5)}),
    ]:
        fmt = get_formatter(name.split(".")[1])
        with fs.open(f"/fmt/{name}", "wb") as stream:
            fmt.write(obj, stream)
        with fs.open(f"/fmt/{name}", "rb") as stream:
            result = fmt.read(stream, parameters=parameters)
        if name.endswith(".fits"):
            np.testing.assert_array_equal(result.data, image_hdu.data[2:5, 1:3])
        else:
            assert result.colnames == ["flux"] and result["flux"].unit == u.nJy
    fs.rm("/fmt", recursive=True)
