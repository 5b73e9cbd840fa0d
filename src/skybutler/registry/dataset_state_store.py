"""Where a dataset's bytes are: the retention state of every registered dataset.

One table, ``dataset_state`` (schema version 3), keyed by dataset ID and gone with
the dataset.  A dataset without a row is ``stored`` and was never read with access
tracking on.  The states:

- ``stored``: its file is in the (hot) datastore, recorded in ``dataset_location``;
- ``cold``: its file was moved to the cold tier; the row's ``path``/``size``/``checksum``
  describe the copy there and ``dataset_location`` has no row;
- ``purged-recomputable`` / ``purged-lost``: its file is gone; the row keeps what the
  file was (path, formatter, size, checksum) so a recomputed one can be checked against
  it and put back at the same path.  The dataset row, its collection memberships, its
  extracted metadata and its provenance all stay.

``last_access_ns`` is written by reads (at most once a day per dataset) when a
retention policy keeps datasets by last access.
"""

from __future__ import annotations

import dataclasses
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import sqlalchemy as sa

from ..models import StoredArtifact
from .database import Database
from .schema import RegistrySchema

STORED, COLD, PURGED_RECOMPUTABLE, PURGED_LOST = "stored", "cold", "purged-recomputable", "purged-lost"
STATES = (STORED, COLD, PURGED_RECOMPUTABLE, PURGED_LOST)
PURGED = (PURGED_RECOMPUTABLE, PURGED_LOST)


@dataclass
class DatasetState:
    """The retention state of one dataset (and what its file was, once it is not hot)."""

    dataset_id: uuid.UUID
    state: str = STORED
    since_ns: int | None = None
    last_access_ns: int | None = None
    #: The cold copy (state cold), or the purged file as it was (purged states).
    artifact: StoredArtifact | None = None
    note: str | None = None


@dataclass
class DatasetInfo:
    """What a retention policy looks at for one dataset."""

    dataset_id: uuid.UUID
    dataset_type: str
    run: str
    created_ns: int
    state: str
    last_access_ns: int | None
    #: Bytes of the hot file (stored) or of the cold copy (cold); 0 once purged.
    size: int


def check_states(states: Iterable[str]) -> list[str]:
    wanted = list(states)
    unknown = [s for s in wanted if s not in STATES]
    if unknown:
        from ..errors import SkybutlerError

        raise SkybutlerError(f"unknown dataset state(s) {', '.join(unknown)}; use {', '.join(STATES)}")
    return wanted


class DatasetStateStore:
    """Reads and writes ``dataset_state``; moves artifact records in and out of ``dataset_location``."""

    def __init__(self, db: Database, schema: RegistrySchema):
        self.db = db
        self.schema = schema
        self.table = sa.Table(
            "dataset_state", schema.metadata,
            sa.Column("dataset_id", sa.Uuid, sa.ForeignKey("dataset.id", ondelete="CASCADE"), primary_key=True),
            sa.Column("state", sa.String(24), nullable=False),
            sa.Column("since_ns", sa.BigInteger, nullable=True),
            sa.Column("last_access_ns", sa.BigInteger, nullable=True),
            sa.Column("path", sa.Text, nullable=True),
            sa.Column("formatter", sa.String(32), nullable=True),
            sa.Column("size", sa.BigInteger, nullable=True),
            sa.Column("checksum", sa.String(64), nullable=True),
            sa.Column("note", sa.Text, nullable=True),
            sa.Index("dataset_state_state", "state"),
            extend_existing=True)

    def create(self, conn: sa.Connection) -> None:
        """Create the table (the schema-version-3 migration step)."""
        self.db.create_tables(conn, [self.table])

    # -- reading --------------------------------------------------------------

    def get(self, ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, DatasetState]:
        """States of datasets (registered datasets without a row are ``stored``; unknown IDs are left out)."""
        ids = list(ids)
        t, ds = self.table, self.schema.dataset
        out: dict[uuid.UUID, DatasetState] = {}
        with self.db.reading() as conn:
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                stmt = (sa.select(ds.c.id, t).select_from(ds.outerjoin(t, t.c.dataset_id == ds.c.id))
                        .where(ds.c.id.in_(chunk)))
                for row in conn.execute(stmt).mappings():
                    out[row["id"]] = _state(row["id"], row)
        return out

    def in_states(self, states: Sequence[str]) -> dict[uuid.UUID, DatasetState]:
        """Every dataset in one of ``states`` (not ``stored``: those without a row are left out),
        with what its file is or was (for ``verify``)."""
        t = self.table
        with self.db.reading() as conn:
            rows = conn.execute(sa.select(t).where(t.c.state.in_(check_states(states)))).mappings()
            return {row["dataset_id"]: _state(row["dataset_id"], row) for row in rows}

    def infos(self, type_ids: dict[int, str] | None = None) -> list[DatasetInfo]:
        """Every registered dataset with its type, RUN, creation time, state, last access and bytes
        (one statement; ``type_ids`` limits it to these dataset types, by ID -> name)."""
        t, ds, loc, col = self.table, self.schema.dataset, self.schema.location, self.schema.collection
        stmt = (sa.select(ds.c.id, ds.c.dataset_type_id, col.c.name, ds.c.ingest_time, t.c.state,
                          t.c.last_access_ns, t.c.size, loc.c.size.label("hot_size"))
                .select_from(ds.join(col, col.c.collection_id == ds.c.run_id)
                             .outerjoin(t, t.c.dataset_id == ds.c.id)
                             .outerjoin(loc, loc.c.dataset_id == ds.c.id)))
        if type_ids is not None:
            stmt = stmt.where(ds.c.dataset_type_id.in_(list(type_ids)))
        out = []
        with self.db.reading() as conn:
            names = type_ids or {i: n for i, n in conn.execute(sa.select(self.schema.dataset_type.c.dataset_type_id,
                                                                            self.schema.dataset_type.c.name))}
            for row in conn.execute(stmt):
                state = row.state or STORED
                size = row.hot_size if state == STORED else (row.size if state == COLD else 0)
                out.append(DatasetInfo(row.id, names[row.dataset_type_id], row.name, row.ingest_time, state,
                                       row.last_access_ns, size or 0))
        return out

    def filter_query(self, built: Any, states: Sequence[str]) -> Any:
        """A built dataset query (``query.builder.BuiltQuery``) keeping only datasets in ``states``."""
        wanted = check_states(states)
        t = self.table
        sub = built.statement.subquery("by_state")
        if STORED in wanted:  # no row means stored
            others = [s for s in STATES if s not in wanted]
            cond = sub.c.dataset_id.not_in(sa.select(t.c.dataset_id).where(t.c.state.in_(others))) if others \
                else sa.true()
        else:
            cond = sub.c.dataset_id.in_(sa.select(t.c.dataset_id).where(t.c.state.in_(wanted)))
        # A query of several dataset types also keeps each type's own statement: filter those too.
        return dataclasses.replace(built, statement=sa.select(*sub.c).where(cond),
                                   parts=[(i, self.filter_query(part, states)) for i, part in built.parts])

    # -- writing --------------------------------------------------------------

    def _upsert(self, conn: sa.Connection, rows: Sequence[dict[str, Any]]) -> None:
        """Insert or replace whole state rows (every column given)."""
        if not rows:
            return
        ids = [r["dataset_id"] for r in rows]
        for start in range(0, len(ids), 500):
            conn.execute(self.table.delete().where(self.table.c.dataset_id.in_(ids[start:start + 500])))
        conn.execute(self.table.insert(), rows)

    def _current(self, conn: sa.Connection, ids: Sequence[uuid.UUID]) -> dict[uuid.UUID, sa.RowMapping]:
        t = self.table
        out = {}
        for start in range(0, len(ids), 500):
            for row in conn.execute(sa.select(t).where(t.c.dataset_id.in_(ids[start:start + 500]))).mappings():
                out[row["dataset_id"]] = row
        return out

    def _rows(self, conn: sa.Connection, items: Sequence[tuple[uuid.UUID, str, StoredArtifact | None, str | None]],
              now: int) -> list[dict[str, Any]]:
        old = self._current(conn, [i for i, *_ in items])
        rows = []
        for dataset_id, state, artifact, note in items:
            prior = old.get(dataset_id)
            rows.append({"dataset_id": dataset_id, "state": state, "since_ns": now,
                         "last_access_ns": prior["last_access_ns"] if prior else None,
                         "path": artifact.path if artifact else None,
                         "formatter": artifact.formatter if artifact else None,
                         "size": artifact.size if artifact else None,
                         "checksum": artifact.checksum if artifact else None,
                         "note": note if note is not None else (prior["note"] if prior else None)})
        return rows

    def _delete_locations(self, conn: sa.Connection, ids: Sequence[uuid.UUID]) -> None:
        loc = self.schema.location
        for start in range(0, len(ids), 500):
            conn.execute(loc.delete().where(loc.c.dataset_id.in_(ids[start:start + 500])))

    def set_cold(self, pairs: Sequence[tuple[uuid.UUID, StoredArtifact]]) -> None:
        """The hot files of these datasets were copied to the cold tier as ``artifact``: drop their
        ``dataset_location`` rows and record the cold copies (one transaction)."""
        now = time.time_ns()
        with self.db.transaction() as conn:
            self._delete_locations(conn, [i for i, _ in pairs])
            self._upsert(conn, self._rows(conn, [(i, COLD, a, None) for i, a in pairs], now))

    def set_purged(self, items: Sequence[tuple[uuid.UUID, str, StoredArtifact, str | None]]) -> None:
        """(dataset ID, purged state, the artifact as it was, note): drop the artifact records and keep
        the description of the file in the state row (one transaction)."""
        for _, state, _, _ in items:
            if state not in PURGED:
                raise ValueError(f"not a purged state: {state!r}")
        now = time.time_ns()
        with self.db.transaction() as conn:
            self._delete_locations(conn, [i for i, *_ in items])
            self._upsert(conn, self._rows(conn, items, now))

    def set_stored(self, pairs: Sequence[tuple[uuid.UUID, StoredArtifact]], note: str | None = None) -> None:
        """The files of these (cold or purged) datasets are back in the hot datastore as ``artifact``:
        record them in ``dataset_location`` and mark the datasets stored (one transaction)."""
        now = time.time_ns()
        with self.db.transaction() as conn:
            self._delete_locations(conn, [i for i, _ in pairs])
            conn.execute(self.schema.location.insert(), [
                {"dataset_id": i, "path": a.path, "formatter": a.formatter, "size": a.size, "checksum": a.checksum}
                for i, a in pairs])
            self._upsert(conn, self._rows(conn, [(i, STORED, None, note) for i, _ in pairs], now))

    def set_lost(self, ids: Sequence[uuid.UUID], note: str) -> None:
        """Purged-recomputable datasets that can no longer be recomputed (an input was force-purged)."""
        t = self.table
        with self.db.transaction() as conn:
            for start in range(0, len(ids), 500):
                conn.execute(t.update().where(t.c.dataset_id.in_(ids[start:start + 500]),
                                              t.c.state == PURGED_RECOMPUTABLE)
                             .values(state=PURGED_LOST, note=note, since_ns=time.time_ns()))

    def touch(self, ids: Sequence[uuid.UUID], now: int, older_than_ns: int) -> None:
        """Record a read of these datasets unless one was recorded after ``now - older_than_ns``."""
        if not ids:
            return
        t = self.table
        try:
            self._touch(t, ids, now, older_than_ns)
        except sa.exc.IntegrityError:
            pass  # another reader recorded its read first: one record is enough

    def _touch(self, t: sa.Table, ids: Sequence[uuid.UUID], now: int, older_than_ns: int) -> None:
        with self.db.transaction() as conn:
            have = self._current(conn, list(ids))
            conn.execute(t.update().where(t.c.dataset_id.in_([i for i in ids if i in have]),
                                          sa.or_(t.c.last_access_ns.is_(None),
                                                 t.c.last_access_ns < now - older_than_ns))
                         .values(last_access_ns=now))
            new = [{"dataset_id": i, "state": STORED, "since_ns": None, "last_access_ns": now, "path": None,
                    "formatter": None, "size": None, "checksum": None, "note": None} for i in ids if i not in have]
            if new:
                conn.execute(t.insert(), new)


def _state(dataset_id: uuid.UUID, row: Any) -> DatasetState:
    if row.get("state") is None:
        return DatasetState(dataset_id)
    artifact = None if row["path"] is None else StoredArtifact(path=row["path"], formatter=row["formatter"],
                                                               size=row["size"] or 0, checksum=row["checksum"])
    return DatasetState(dataset_id, row["state"], row["since_ns"], row["last_access_ns"], artifact, row["note"])

