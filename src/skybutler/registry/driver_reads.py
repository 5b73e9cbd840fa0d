"""Reads of SQL text compiled once, sent by each thread on a PostgreSQL connection of its own.

A query asked again runs the same statement: its SQL text and parameters are kept with the
built query (``query.columnar.kept_text``).  Run through SQLAlchemy, each run still costs a
pool checkout and return, switching the connection to autocommit and back, the statement's
cache key and the wrapping of its result: 0.2-0.3 ms of client CPU, more than the server's
work for a small query (Q4 of ``bench_queries.py``: 8 data IDs by a sky position).  Here each
thread keeps one driver connection in autocommit for such reads (at READ COMMITTED every
statement sees what was committed when it began, as the pool's autocommit reads do), so a
read is the driver's execute and fetch and nothing else.

- A thread's transaction is not here: its reads go through its own connection, which sees
  its uncommitted rows (``Database.driver_read``).
- One connection per thread, used by that thread only; it is closed when the thread ends
  or the registry is closed.
- A connection the server ended (a restart, a terminated backend) is replaced and the read
  sent again once: a read changes nothing, so sending it twice is safe.
- A forked child never uses nor closes its parent's connection (closing it would end the
  parent's session): it opens its own.
- A statement sent a third time is prepared on the server (psycopg's ``prepare_threshold``),
  which spares the server parsing and analysing its text at each run (0.04 of Q4's 0.25 ms of
  server CPU), and the connection plans every run for its own parameters
  (``plan_cache_mode = force_custom_plan``): never a generic plan, which for data-ID ranges
  can read whole tables.  The pool's connections prepare nothing (see ``database.py``): a
  COPY's foreign-key checks would be planned again for every row.
- A prepared statement whose result's columns changed type (a table altered by another
  client) is refused by the server; the connection's prepared statements are then dropped
  and the read sent again once, unprepared.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: Runs of a statement's text before psycopg prepares it: a read made once is not kept on the server.
PREPARE_AFTER = 2
#: SQLSTATE of "cached plan must not change result type" (feature_not_supported).
_PLAN_RESULT_CHANGED = "0A000"


class DriverReader:
    """One thread's autocommit driver connection (psycopg) for reads of compiled SQL text."""

    def __init__(self, connect: Callable[[], Any], inherited: list[Any]):
        self._connect = connect
        #: Where connections a forked child inherited are kept, unused and unclosed.
        self._inherited = inherited
        self.pid = os.getpid()
        self.connection: Any = None
        #: The connection's statement_timeout (ms; 0: none), set only when it must change.
        self._timeout_ms = 0

    def execute(self, sql: str, params: Mapping[str, Any] | Sequence[Any], timeout_ms: int) -> Any:
        """A driver cursor holding the statement's rows (fetched to this process already)."""
        for attempt in range(2):
            if self.connection is None:
                self.connection, self._timeout_ms = self._open(), 0
            connection = self.connection
            try:
                if timeout_ms != self._timeout_ms:
                    connection.execute(f"SET statement_timeout = {int(timeout_ms)}")
                    self._timeout_ms = timeout_ms
                return connection.execute(sql, params)
            except connection.Error as err:
                if attempt:
                    raise
                if getattr(err, "sqlstate", None) == _PLAN_RESULT_CHANGED and not connection.broken:
                    connection.execute("DEALLOCATE ALL")  # psycopg forgets its prepared statements too
                    continue
                if not connection.broken:
                    raise
                self.close()  # the server ended this session: connect again and send the read again
        raise AssertionError("unreachable")

    def _open(self) -> Any:
        """A new connection that prepares repeated statements and plans each run for its parameters."""
        connection = self._connect()
        connection.execute("SET plan_cache_mode = force_custom_plan")
        connection.prepare_threshold = PREPARE_AFTER
        return connection

    def close(self) -> None:
        connection, self.connection = self.connection, None
        if connection is None:
            return
        if self.pid != os.getpid():  # a forked child's copy of its parent's connection
            self._inherited.append(connection)
            return
        try:
            connection.close()
        except connection.Error:  # already broken: nothing more to do with it
            pass

    def __del__(self) -> None:  # the thread ended: its connection goes with it
        self.close()
