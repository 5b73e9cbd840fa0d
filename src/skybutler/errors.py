"""The exceptions skybutler raises, as one documented hierarchy.

Every error a user can cause derives from :class:`SkybutlerError`, so a script
can catch them all at once; each subclass names one kind of problem so a caller
can react to it specifically.  Messages always name the offending value.
"""

from __future__ import annotations


class SkybutlerError(Exception):
    """Base class of every error skybutler raises on purpose."""


# -- data model ---------------------------------------------------------------


class DimensionError(SkybutlerError):
    """A dimension name, data ID or dimension record is invalid."""


class UnknownDimensionError(DimensionError, KeyError):
    """A name is not a dimension or element of the universe."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


class DataIdError(DimensionError, ValueError):
    """A data ID has a wrong value type, a missing key or inconsistent values."""


class DimensionRecordError(DimensionError, ValueError):
    """A dimension record is malformed or conflicts with the stored one."""


class UniverseMismatchError(DimensionError):
    """A repository was created with a different dimension universe."""


class ConfigError(SkybutlerError):
    """A repository's ``butler.yaml`` (or settings given to ``Butler.create``) is invalid; the
    message names the file, the line and the key."""


class TimespanError(SkybutlerError, ValueError):
    """A time or timespan cannot be parsed, or ends before it begins."""


# -- registry -----------------------------------------------------------------


class RegistryError(SkybutlerError):
    """A registry operation failed."""


class DatasetTypeError(RegistryError):
    """A dataset type is unknown or conflicts with the registered definition."""


class MissingDatasetTypeError(DatasetTypeError, LookupError):
    """A dataset type name is not registered."""


class ConflictingDefinitionError(RegistryError):
    """Something is being registered again with a different definition."""


class DatasetConflictError(RegistryError):
    """A dataset with the same type and data ID already exists in a RUN or TAGGED collection."""


class DatasetNotFoundError(RegistryError, LookupError):
    """No dataset matches a dataset type, data ID and collections."""


class CollectionError(RegistryError):
    """A collection is missing, of the wrong type, or used wrongly."""


class MissingCollectionError(CollectionError, LookupError):
    """A collection name is not registered."""


class CollectionCycleError(CollectionError):
    """A CHAINED collection would (directly or indirectly) contain itself."""


class CalibrationConflictError(CollectionError):
    """Certifying would make two validity ranges overlap for the same data ID."""


class CalibrationLookupError(RegistryError, LookupError):
    """More than one calibration is valid for one data ID at the asked time in the same
    collection; the message names the candidates and their validity ranges."""


class SchemaVersionError(RegistryError):
    """The repository's schema version is not the one this code can use."""


class BackendError(RegistryError):
    """The database backend refused or lost an operation (names the backend and operation)."""


# -- datastore and formats ----------------------------------------------------


class DatastoreError(SkybutlerError):
    """A datastore operation failed."""


class ArtifactExistsError(DatastoreError):
    """A file is already at the path a dataset's artifact would take (``path``: its full path)."""

    def __init__(self, message: str, path: str = ""):
        super().__init__(message)
        self.path = path

    def __reduce__(self):  # crosses process boundaries (pool workers) with its path
        return type(self), (str(self), self.path)


class FileNotStoredError(DatastoreError, LookupError):
    """A dataset's artifact is missing from the datastore."""


class StaleArtifactError(FileNotStoredError):
    """A path read through a record read before its dataset was purged, moved to the cold tier
    or removed: what is there now may be another file, so the registry must be asked again."""


class ChecksumMismatchError(DatastoreError):
    """An artifact's content no longer matches its recorded checksum."""


class TransferError(DatastoreError):
    """An ingest transfer mode is unknown or failed for a file."""


class StorageClassError(SkybutlerError, TypeError):
    """An object does not match a storage class, or a storage class is unknown."""


class FormatterError(SkybutlerError):
    """A formatter could not write or read an artifact, or got bad read parameters."""


class InvalidFileError(FormatterError):
    """Files given to an ingest or import cannot be read by their formatter; nothing was ingested.

    ``failures`` holds one (file, reason) pair per refused file.
    """

    def __init__(self, failures: list[tuple[str, str]]):
        self.failures = list(failures)
        shown = "; ".join(f"{path}: {reason}" for path, reason in self.failures[:5])
        more = f"; and {len(self.failures) - 5} more" if len(self.failures) > 5 else ""
        super().__init__(f"{len(self.failures)} file(s) cannot be read by their formatter, nothing was "
                         f"ingested: {shown}{more}")


# -- catalogs -----------------------------------------------------------------


class CatalogSchemaError(SkybutlerError, ValueError):
    """A catalog schema (a Felis YAML file) is not valid Felis, or does not fit its use
    (no such table, a change to a schema whose datasets need a new version)."""


class CatalogValidationError(CatalogSchemaError, StorageClassError):
    """A table does not conform to its dataset type's declared schema; ``column`` names the
    offending column (None for the table as a whole)."""

    def __init__(self, message: str, column: str | None = None):
        super().__init__(message)
        self.column = column

    def __reduce__(self):  # crosses process boundaries (pool workers, the server) with its column
        return type(self), (str(self), self.column)


class CatalogLoadError(SkybutlerError):
    """Loading a catalog into a user's SQL database failed: the target refused the table's
    DDL, holds a different table under that name, or refused rows (the message names the
    database, the table and the dataset)."""


class PublicationError(SkybutlerError):
    """A HATS publication cannot be made: its destination holds something else, its settings
    differ from the publication's, or a catalog has rows without a valid position."""


class SearchError(SkybutlerError, ValueError):
    """A sky search's region is not a valid region (a radius of 0 or less, a latitude outside
    +-90 degrees, a polygon that is not convex...), or its catalog is not a HATS catalog."""


# -- queries ------------------------------------------------------------------


class QueryError(SkybutlerError, ValueError):
    """A query expression is invalid; the message points at the offending column."""

    def __init__(self, message: str, expression: str | None = None, column: int | None = None):
        self.message = message
        self.expression = expression
        self.column = column
        super().__init__(self._render())

    def _render(self) -> str:
        if self.expression is None or self.column is None:
            return self.message
        shown, at = _window(self.expression, self.column - 1)
        caret = " " * max(at, 0) + "^"
        return f"{self.message} (column {self.column})\n  {shown}\n  {caret}"


#: Characters of a long expression shown either side of an error's column.
_SHOWN = 60


def _window(text: str, at: int) -> tuple[str, int]:
    """``text`` cut to the part around index ``at`` (a message quoting a megabyte-long
    where-clause whole would be a megabyte long), and ``at``'s index in that part."""
    if len(text) <= 4 * _SHOWN:
        return text, at
    start = max(0, at - _SHOWN)
    end = min(len(text), at + _SHOWN)
    head = "..." if start else ""
    return head + text[start:end] + ("..." if end < len(text) else ""), at - start + len(head)


class CalibrationTimeError(QueryError):
    """A find-first search of CALIBRATION collections was given no time (a timespan, or an exposure
    or visit in the query) to find the calibration valid then."""


class NotOfferedError(SkybutlerError, NotImplementedError):
    """A Rubin butler call or argument skybutler does not offer; the message names what to use instead."""


# -- installation ---------------------------------------------------------------


class MissingExtraError(SkybutlerError, ImportError):
    """A feature needs an optional dependency that is not installed; the message names the extra."""


class AccessError(SkybutlerError):
    """Something about who may use a served repository (users, tokens, rules)."""


class AuthenticationError(AccessError):
    """A request to a server carried no token, or one that is unknown, expired or revoked."""


class PermissionDeniedError(AccessError, PermissionError):
    """The user may see the collection or dataset but not do this to it (write, administer)."""


class QuotaExceededError(AccessError):
    """A write would take a user's or group's area over its byte or dataset-count quota."""


class ServerError(SkybutlerError):
    """A server answered with an error no other skybutler error describes, or not at all."""


class QueryTimeoutError(SkybutlerError):
    """A query ran longer than the time a server allows it (``query_timeout``) and was stopped."""


class RecomputeError(SkybutlerError):
    """A dataset cannot be recomputed; the message names the missing link of its provenance."""


class SoftwareDriftError(RecomputeError):
    """The installed task code is not the version that made the dataset (and drift is refused)."""


class CalibrationChangedError(RecomputeError):
    """A calibration a recorded quantum read was decertified or superseded since (and that is refused)."""


class RecomputeVerificationError(RecomputeError):
    """A recomputed dataset does not match the one that was purged."""
