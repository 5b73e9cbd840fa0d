"""The formatter interface: writes an object to, and reads it from, an open binary stream.

Formatters never open files: the datastore hands them a stream (local or remote),
so the same code serves POSIX and S3.  The base class validates the requested
component and read parameters and turns library failures into FormatterError, so
every formatter reports problems the same way.
"""

from __future__ import annotations

import contextlib
import io
from abc import ABC, abstractmethod
from collections.abc import Iterator, Mapping
from typing import Any, BinaryIO, ClassVar

from ..errors import FormatterError, SkybutlerError


class Formatter(ABC):
    """Base class of file formats; subclasses set the class attributes and the ``_read``/``_write`` hooks."""

    name: ClassVar[str]
    """Short name used in configuration and the registry, e.g. ``"json"``."""
    extension: ClassVar[str]
    """File-name extension including the dot, e.g. ``".json"``."""
    also_named: ClassVar[tuple[str, ...]] = ()
    """Other extensions files of this format carry (``.fit``): an ingested file keeps its own suffix
    if it is one of these or ``extension``, and otherwise gets ``extension``."""
    components: ClassVar[frozenset[str]] = frozenset()
    """Components ``read`` can return instead of the whole object."""
    parameters: ClassVar[frozenset[str]] = frozenset()
    """Read parameters ``read`` accepts."""

    def write(self, obj: Any, stream: BinaryIO) -> None:
        """Serialise ``obj`` to the already-open binary ``stream``."""
        try:
            self._write(obj, stream)
        except SkybutlerError:
            raise
        except Exception as exc:
            raise self._write_error(obj, exc) from exc

    def to_bytes(self, obj: Any) -> bytes:
        """The bytes ``write`` would write for ``obj`` (what a put stages: small objects, many at once)."""
        try:
            return self._to_bytes(obj)
        except SkybutlerError:
            raise
        except Exception as exc:
            raise self._write_error(obj, exc) from exc

    def _write_error(self, obj: Any, exc: Exception) -> FormatterError:
        return FormatterError(f"Formatter {self.name!r} could not write an object of type "
                              f"{type(obj).__module__}.{type(obj).__qualname__}: {exc}")

    @contextlib.contextmanager
    def _refusing(self, *errors: type[Exception]) -> Iterator[None]:
        """Around a ``_write``'s look at its object: one of ``errors`` raised inside says the object is
        not one this format writes, a FormatterError "cannot write this object" giving the reason."""
        try:
            yield
        except errors as exc:
            raise FormatterError(f"Formatter {self.name!r} cannot write this object: {exc}") from exc

    def _to_bytes(self, obj: Any) -> bytes:
        """Format-specific serialisation to bytes; a format that makes bytes directly overrides this."""
        buffer = io.BytesIO()
        self._write(obj, buffer)
        return buffer.getvalue()

    def read(
        self,
        stream: BinaryIO,
        component: str | None = None,
        parameters: Mapping[str, Any] | None = None,
    ) -> Any:
        """Read the object (or one ``component`` of it) from a seekable binary ``stream``.

        ``parameters`` select a subset (columns, a pixel box); a parameter given as
        None counts as absent.  Unknown components or parameters raise FormatterError.
        """
        self._check_component(component)
        params = self._check_parameters(parameters)
        try:
            return self._read(stream, component, params)
        except SkybutlerError:
            raise
        except Exception as exc:
            raise FormatterError(f"Formatter {self.name!r} could not read its artifact: {exc}") from exc

    def validate(self, stream: BinaryIO) -> Any:
        """Check cheaply that a seekable binary ``stream`` holds an artifact this formatter can read.

        Ingest calls this on every file before it places any, so a broken file is refused
        with its reason instead of failing later at ``get``.  Raises FormatterError saying
        what is wrong; the caller adds the file's name.  Returns what the check learnt of
        the file (a FITS file's headers), for :meth:`examine`.
        """
        try:
            return self._validate(stream)
        except SkybutlerError:
            raise
        except Exception as exc:
            reason = " ".join(str(exc).split())  # one line: library messages often span several
            raise FormatterError(f"not a readable {self.name} file: {reason}") from exc

    def examine(self, stream: BinaryIO, component: str | None) -> tuple[Any, Any]:
        """Validate ``stream`` (as :meth:`validate`) and read ``component`` of it, in one pass where
        the format allows: what ingest needs of a file.  Returns (the component, or None if it
        cannot be read; what the check learnt, as ``validate`` returns it)."""
        checked = self.validate(stream)
        try:
            return self._examined(stream, component, checked), checked
        except (SkybutlerError, OSError, ValueError, TypeError, KeyError):
            return None, checked

    def _examined(self, stream: BinaryIO, component: str | None, checked: Any) -> Any:
        """The component of a validated stream; a format whose check already read it overrides this."""
        stream.seek(0)
        return self.read(stream, component)

    def _validate(self, stream: BinaryIO) -> Any:
        """Format-specific check; exceptions are wrapped by ``validate``.

        The default reads the whole object, which is always right but not cheap: a
        formatter overrides it with what its format can check quickly (a header, a footer).
        """
        self._read(stream, None, {})
        return None

    def _check_component(self, component: str | None) -> None:
        if component is not None and component not in self.components:
            allowed = sorted(self.components) or "none"
            raise FormatterError(
                f"Formatter {self.name!r} has no component {component!r}; components: {allowed}."
            )

    def _check_parameters(self, parameters: Mapping[str, Any] | None) -> dict[str, Any]:
        if parameters is None:
            return {}
        if not isinstance(parameters, Mapping):
            raise FormatterError(
                f"Formatter {self.name!r}: read parameters must be a mapping, not {type(parameters).__name__}."
            )
        unknown = sorted(set(parameters) - self.parameters, key=str)
        if unknown:
            allowed = sorted(self.parameters) or "none"
            raise FormatterError(
                f"Formatter {self.name!r} does not accept read parameter(s) {unknown}; allowed: {allowed}."
            )
        return {key: value for key, value in parameters.items() if value is not None}

    @abstractmethod
    def _write(self, obj: Any, stream: BinaryIO) -> None:
        """Format-specific writing; exceptions are wrapped by ``write``."""

    @abstractmethod
    def _read(self, stream: BinaryIO, component: str | None, parameters: dict[str, Any]) -> Any:
        """Format-specific reading with already-validated component and parameters."""

    def __repr__(self) -> str:
        return f"{type(self).__name__}(name={self.name!r})"
