"""In-memory objects as bytes for the trip between a server and a remote client.

A ``get`` with read parameters runs on the server, and what it read (a whole object,
a column subset, a pixel box, a header, a WCS) travels back; a ``put`` sends the
object the other way.  Each kind goes in a safe, self-describing format of the
field (Arrow IPC, FITS, numpy's ``.npy`` without pickles, YAML through the safe
dumper), never a pickle, so neither side ever executes what the other sent.
"""

from __future__ import annotations

import io
from typing import Any

import numpy as np
import pyarrow as pa
import yaml

from ..errors import FormatterError
from . import tables

_YAML_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
_YAML_DUMPER = getattr(yaml, "CSafeDumper", yaml.SafeDumper)


def encode_object(obj: Any) -> tuple[str, bytes]:
    """(kind, bytes) of an object a storage class reads or writes."""
    from astropy.io import fits

    if tables.is_table(obj):
        kind = "arrow" if isinstance(obj, pa.Table) else "pandas" if tables.is_pandas_frame(obj) else "astropy"
        return f"table:{kind}", _ipc(tables.to_arrow(obj))
    if isinstance(obj, pa.Schema):
        return "arrow-schema", obj.serialize().to_pybytes()
    if isinstance(obj, np.ndarray):
        if obj.dtype.hasobject:
            raise FormatterError("an array of Python objects cannot travel to or from a server")
        out = io.BytesIO()
        np.save(out, obj, allow_pickle=False)
        return "npy", out.getvalue()
    if isinstance(obj, fits.Header):
        return "fits-header", obj.tostring().encode("ascii")
    if isinstance(obj, (fits.PrimaryHDU, fits.ImageHDU, fits.CompImageHDU)):
        return f"fits-hdu:{type(obj).__name__}", _fits(fits.HDUList([_as_primary(obj)]))
    if isinstance(obj, fits.HDUList):
        return "fits", _fits(obj)
    if isinstance(obj, list) and obj and all(isinstance(h, fits.Header) for h in obj):
        return "fits-headers", yaml.dump([h.tostring() for h in obj], Dumper=_YAML_DUMPER).encode()
    if type(obj).__name__ == "WCS" and type(obj).__module__.startswith("astropy.wcs"):
        return "wcs", obj.to_header_string(relax=True).encode("ascii")
    try:
        return "yaml", yaml.dump(obj, Dumper=_YAML_DUMPER, sort_keys=False, allow_unicode=True).encode()
    except yaml.YAMLError as err:
        raise FormatterError(f"an object of type {type(obj).__name__} cannot travel to or from a server: "
                             f"{err}") from None


def decode_object(kind: str, data: bytes) -> Any:
    """The object :func:`encode_object` described."""
    from astropy.io import fits

    try:
        if kind.startswith("table:"):
            with pa.ipc.open_stream(data) as reader:
                return tables.from_arrow(reader.read_all(), kind.split(":", 1)[1])
        if kind == "arrow-schema":
            return pa.ipc.read_schema(pa.py_buffer(data))
        if kind == "npy":
            return np.load(io.BytesIO(data), allow_pickle=False)
        if kind == "fits-header":
            return fits.Header.fromstring(data.decode("ascii"))
        if kind == "fits-headers":
            return [fits.Header.fromstring(text) for text in yaml.load(data, Loader=_YAML_LOADER)]
        if kind.startswith("fits-hdu:"):
            hdu = fits.open(io.BytesIO(data), lazy_load_hdus=False)[0]
            hdu.data  # noqa: B018 - read the pixels while the buffer is here
            cls = {"PrimaryHDU": fits.PrimaryHDU, "ImageHDU": fits.ImageHDU,
                   "CompImageHDU": fits.CompImageHDU}[kind.split(":", 1)[1]]
            return hdu if cls is fits.PrimaryHDU else cls(data=hdu.data, header=hdu.header)
        if kind == "fits":
            hdus = fits.open(io.BytesIO(data), lazy_load_hdus=False)
            for hdu in hdus:
                hdu.data  # noqa: B018
            return hdus
        if kind == "wcs":
            from astropy.wcs import WCS

            return WCS(fits.Header.fromstring(data.decode("ascii")))
        if kind == "yaml":
            return yaml.load(data, Loader=_YAML_LOADER)  # noqa: S506 - a safe loader
    except (ValueError, OSError, KeyError, pa.ArrowInvalid, yaml.YAMLError) as err:
        raise FormatterError(f"could not decode a {kind} object sent over HTTP: {err}") from None
    raise FormatterError(f"unknown object encoding {kind!r}")


def _ipc(table: pa.Table) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    return sink.getvalue().to_pybytes()


def _fits(hdus: Any) -> bytes:
    out = io.BytesIO()
    hdus.writeto(out, output_verify="silentfix")
    return out.getvalue()


def _as_primary(hdu: Any) -> Any:
    from astropy.io import fits

    if isinstance(hdu, fits.PrimaryHDU):
        return hdu
    if isinstance(hdu, fits.CompImageHDU):
        return fits.PrimaryHDU(data=hdu.data, header=fits.Header(
            [card for card in hdu.header.cards if not card.keyword.startswith("Z")]))
    return fits.PrimaryHDU(data=hdu.data, header=hdu.header)
