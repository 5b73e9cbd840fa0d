"""Maintained counts of datasets per (dataset type, RUN or TAGGED collection).

Counting every dataset of a type in a collection reads one index entry per dataset, so
the count of a survey's collection grows with it.  Instead, every write that changes
the membership of RUN and TAGGED collections (a put, a bulk registration, a deletion,
an association or disassociation) adds, in its own transaction, one row per pair it
changed holding the change (``dataset_count``); a count is the sum of its pair's rows.
Writers only insert rows (but for the folds), so concurrent writers on PostgreSQL never wait
for each other's uncommitted count (an updated count row would be held locked until
COMMIT, and a put commits only after publishing its file).  Every 64th write folds
its pair's rows into one: it deletes them and inserts their sum, summing exactly the
rows its DELETE removed (``RETURNING``), so a row another transaction commits
meanwhile is neither lost nor counted twice.  Removing a collection or a dataset type
removes its rows with it (``ON DELETE CASCADE``), and a failed transaction takes its
rows with it.  CALIBRATION collections are not counted (a dataset may be certified
over several ranges); queries over them count rows.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import sqlalchemy as sa

from .bulk import execute_unread, insert_rows

#: A write folds its pairs' rows into one once in this many writes of a process.
FOLD_EVERY = 64
_COLUMNS = ("dataset_type_id", "collection_id", "n")


class DatasetCounts:
    """Adds, folds and sums the rows of ``dataset_count``."""

    def __init__(self, schema) -> None:
        self.table: sa.Table = schema.dataset_count
        self._writes = 0
        self._total: sa.Select | None = None

    def add(self, conn: sa.Connection, changes: Mapping[tuple[int, int], int]) -> None:
        """Record ``changes`` ((dataset type ID, collection ID) -> datasets added, or removed if
        negative) in the writing transaction ``conn`` (inside a gathered batch on PostgreSQL,
        the rows join its one statement)."""
        rows = [(type_id, cid, n) for (type_id, cid), n in changes.items() if n]
        if rows:
            insert_rows(conn, self.table, _COLUMNS, rows)

    def maybe_fold(self, conn: sa.Connection, pairs: Iterable[tuple[int, int]], *, always: bool = False) -> None:
        """Fold the rows of each of ``pairs`` into one, once in :data:`FOLD_EVERY` calls of this
        process (or ``always``), in the transaction ``conn``."""
        self._writes += 1
        if always or self._writes % FOLD_EVERY == 0:
            for type_id, cid in pairs:
                self.fold(conn, type_id, cid)

    def fold(self, conn: sa.Connection, type_id: int, cid: int) -> None:
        """Replace the rows of one pair by their sum: the sum of exactly the rows deleted.  On
        PostgreSQL one statement whose answer is not read, so that it goes with the others of a
        put committed in one round trip."""
        t = self.table
        if conn.dialect.name == "postgresql":
            table = conn.dialect.identifier_preparer.format_table(t)
            execute_unread(conn, f"WITH removed AS (DELETE FROM {table} WHERE dataset_type_id = %s AND "
                                  f"collection_id = %s RETURNING n) INSERT INTO {table} ({', '.join(_COLUMNS)}) "
                                  "SELECT %s, %s, sum(n) FROM removed HAVING coalesce(sum(n), 0) <> 0",
                            (type_id, cid, type_id, cid))
            return
        removed = conn.execute(t.delete().where(t.c.dataset_type_id == type_id, t.c.collection_id == cid)
                               .returning(t.c.n)).scalars().all()
        if total := sum(removed):
            conn.execute(t.insert().values(dataset_type_id=type_id, collection_id=cid, n=total))

    def total(self, conn: sa.Connection, type_id: int, cid: int) -> int:
        """How many datasets of the type the collection holds."""
        if self._total is None:  # one statement, reused: SQLAlchemy then neither builds nor keys it again
            t = self.table
            self._total = sa.select(sa.func.coalesce(sa.func.sum(t.c.n), 0)).where(
                t.c.dataset_type_id == sa.bindparam("type_id"), t.c.collection_id == sa.bindparam("cid"))
        return int(conn.execute(self._total, {"type_id": type_id, "cid": cid}).scalar_one())

    def recount(self, conn: sa.Connection, tags_tables: Iterable[sa.Table]) -> None:
        """Set every pair's count from the membership rows themselves (what a migration to
        counted repositories does): one row per pair that holds datasets."""
        conn.execute(self.table.delete())
        for tags in tags_tables:
            counted = sa.select(tags.c.dataset_type_id, tags.c.collection_id, sa.func.count()).group_by(
                tags.c.dataset_type_id, tags.c.collection_id)
            conn.execute(self.table.insert().from_select(list(_COLUMNS), counted))
