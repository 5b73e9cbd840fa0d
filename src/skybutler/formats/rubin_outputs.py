"""Formats of the outputs every Rubin pipeline run writes, so a Rubin repository comes in whole.

Read here: ECSV tables (Rubin's ``AstropyTable``, read with astropy), task logs (Rubin's
``ButlerLogRecords`` JSON, read as a list of record dicts) and JSON scalars (Rubin's
``int``, ``float``, ``str``).  Any other Rubin file is *kept*: registered with its bytes
unchanged under a formatter named ``rubin:<Rubin formatter class>`` and a storage class named
``rubin:<Rubin storage class>``, both made on first lookup, so the names are recorded in
the repository; reading such a dataset raises an error naming the Rubin formatter (its file
is at ``Butler.get_uri``).  A kept file is never parsed: a pickle is never unpickled.
"""

from __future__ import annotations

import functools
import io
import json
from typing import Any, BinaryIO

from .formatter import Formatter
from .storage_class import KEPT_PREFIX, StorageClass
from .table_class import extract_table_metadata
from .tables import is_astropy_table

#: The kept formatter of a file whose Rubin formatter is not known.
KEPT_FILE = KEPT_PREFIX + "file"
#: Longest formatter name the datastore records.
_FORMATTER_NAME_MAX = 32


class EcsvFormatter(Formatter):
    """An astropy table as ECSV text, as Rubin's ``AstropyTableFormatter`` writes it."""

    name = "ecsv"
    extension = ".ecsv"

    def _write(self, obj: Any, stream: BinaryIO) -> None:
        text = io.StringIO()
        obj.write(text, format="ascii.ecsv")
        stream.write(text.getvalue().encode("utf-8"))

    def _read(self, stream: BinaryIO, component: str | None, parameters: dict[str, Any]) -> Any:
        from astropy.table import Table

        return Table.read(stream.read().decode("utf-8"), format="ascii.ecsv")


class JsonValueFormatter(Formatter):
    """One JSON value of any kind (Rubin's ``JsonFormatter`` writes an ``int`` dataset as ``7``)."""

    name = "json-value"
    extension = ".json"

    def _write(self, obj: Any, stream: BinaryIO) -> None:
        stream.write(json.dumps(obj, allow_nan=False).encode("utf-8"))

    def _read(self, stream: BinaryIO, component: str | None, parameters: dict[str, Any]) -> Any:
        return json.loads(stream.read())


class LogRecordsFormatter(Formatter):
    """A task's log as Rubin's ``ButlerLogRecordsFormatter`` writes it (one JSON document holding
    ``records``, or one record per line), read as a list of record dicts."""

    name = "rubin-log"
    extension = ".json"

    def _write(self, obj: Any, stream: BinaryIO) -> None:
        stream.write(json.dumps({"records": obj}).encode("utf-8"))

    def _read(self, stream: BinaryIO, component: str | None, parameters: dict[str, Any]) -> Any:
        text = stream.read().decode("utf-8").strip()
        if not text:
            return []
        if text.startswith("{") and "\n" not in text.rstrip():
            document = json.loads(text)
            if "records" in document:
                return list(document["records"])
            return [document]
        if text.startswith("["):
            return json.loads(text)
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _validate(self, stream: BinaryIO) -> None:
        records = self._read(stream, None, {})
        if not all(isinstance(r, dict) for r in records):
            raise ValueError("a log record is not a JSON object")


class KeptFormatter(Formatter):
    """A Rubin file skybutler has no reader for: placed and checksummed as it is, never parsed."""

    extension = ""

    def __init__(self, name: str):
        self.name = name  # type: ignore[misc]  # one instance per Rubin formatter class

    def _write(self, obj: Any, stream: BinaryIO) -> None:
        raise ValueError("a file kept from a Rubin repository cannot be written here")

    def _read(self, stream: BinaryIO, component: str | None, parameters: dict[str, Any]) -> Any:
        raise ValueError(f"it was written by the Rubin formatter {self.name[len(KEPT_PREFIX):]}, which skybutler "
                         "has no reader for; the file is kept as it came (Butler.get_uri gives it)")

    def _validate(self, stream: BinaryIO) -> None:
        return None  # any bytes are kept


class KeptPackagesFormatter(KeptFormatter):
    """A Rubin ``Packages`` file (the software versions of a pipeline run), kept byte for byte and
    read as a dict of package name to version.  Its YAML form carries a Python tag
    (``!<lsst.utils.packages.Packages>``), which is read as a plain mapping: no class is
    imported or built.  Its JSON form is read as JSON; its pickle form is never unpickled."""

    def _read(self, stream: BinaryIO, component: str | None, parameters: dict[str, Any]) -> Any:
        data = stream.read()
        if data[:1] == b"\x80":
            raise ValueError("it is a pickle, which skybutler never unpickles; the file is kept as it came "
                             "(Butler.get_uri gives it)")
        if data.lstrip()[:1] == b"{":
            found = json.loads(data)
        else:
            import yaml

            found = yaml.load(data, Loader=_tagged_mapping_loader())  # noqa: S506 -- a safe loader, tags read as data
        if not isinstance(found, dict) or not all(isinstance(k, str) for k in found):
            raise ValueError("a Packages file holds a mapping of package names to versions; this one does not")
        return {k: v if isinstance(v, str) else str(v) for k, v in found.items()}


@functools.cache
def _tagged_mapping_loader() -> type:
    """A YAML safe loader that reads any application tag (``!<lsst.utils.packages.Packages>``,
    ``!!python/...``) as the plain mapping, list or scalar it tags."""
    import yaml

    class Loader(yaml.SafeLoader):
        pass

    # Only YAML's own tags keep their constructors: a package imported in this process may have
    # registered one for its class on the safe loader (lsst.utils does for Packages).
    Loader.yaml_constructors = {tag: construct for tag, construct in yaml.SafeLoader.yaml_constructors.items()
                                if tag is None or tag.startswith("tag:yaml.org,2002:")}
    Loader.yaml_multi_constructors = {}

    def plain(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> Any:
        if isinstance(node, yaml.MappingNode):
            return loader.construct_mapping(node, deep=True)
        if isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        return loader.construct_scalar(node)

    Loader.add_multi_constructor("", plain)
    return Loader


#: Kept formatters (by recorded name) whose files are read all the same, and their readers.
KEPT_READERS = {"rubin:PackagesFormatter": KeptPackagesFormatter}


def kept_formatter_name(rubin_formatter: str) -> str:
    """The formatter name a kept file of ``rubin_formatter`` is recorded with: the class's own name
    (its module left out, cut to what the datastore records)."""
    return (KEPT_PREFIX + rubin_formatter.rsplit(".", 1)[-1])[:_FORMATTER_NAME_MAX]


def _refuse_put(obj: Any) -> Any:
    raise TypeError("a dataset type kept from a Rubin repository takes no new datasets here")


def kept_storage_class(name: str) -> StorageClass:
    """The storage class ``rubin:<Rubin class>`` of kept Rubin datasets of that class (files of any
    kept formatter)."""
    return StorageClass(name=name, default_formatter=KEPT_FILE, formatters=(KEPT_FILE,),
                        accepts="nothing (kept from a Rubin repository)", checker=_refuse_put,
                        extractor=lambda obj: {})


def _check_instance(kind: type) -> Any:
    def check(obj: Any) -> Any:
        if type(obj) is bool and kind is not bool or not isinstance(obj, kind):
            raise TypeError(f"expected {kind.__name__}")
        return obj
    return check


def _check_records(obj: Any) -> Any:
    if not isinstance(obj, list) or not all(isinstance(r, dict) for r in obj):
        raise TypeError("expected a list of log record dicts")
    return obj


def _check_astropy(obj: Any) -> Any:
    if not is_astropy_table(obj):
        raise TypeError("expected an astropy table")
    return obj


ASTROPY_TABLE = StorageClass(
    name="AstropyTable", default_formatter="ecsv", formatters=("ecsv",), accepts="astropy.table.Table",
    checker=_check_astropy, extractor=extract_table_metadata,
    metadata_fields={"n_rows": int, "n_columns": int, "columns": str})
LOG_RECORDS = StorageClass(
    name="ButlerLogRecords", default_formatter="rubin-log", formatters=("rubin-log",),
    accepts="list of log record dicts", checker=_check_records, extractor=lambda obj: {"n_records": len(obj)},
    metadata_fields={"n_records": int})
SCALARS = tuple(StorageClass(name=kind.__name__, default_formatter="json-value", formatters=("json-value",),
                             accepts=kind.__name__, checker=_check_instance(kind), extractor=lambda obj: {})
                for kind in (int, float, str))
