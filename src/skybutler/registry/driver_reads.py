"""Reads of SQL text compiled once, sent by each thread on a PostgreSQL connection of its own.

A query asked again runs the same statement: its SQL text and parameters, as SQLAlchemy sent
them at its first ask, are kept with the built query (``query.columnar.keep_text``).  Run through SQLAlchemy, each run still costs a
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
- Each statement is sent with its values written into its text as literals (psycopg's own
  quoting, ``ClientCursor.mogrify``; merged once per kept statement and remembered), not as
  parameters.  Every statement sent here is of a query asked again (its first ask ran through
  SQLAlchemy, which is where its text was kept), so it is prepared on the server at its first
  run here (psycopg's ``prepare_threshold`` of 0): a query asked once prepares nothing, and one
  asked again runs at its next ask on the plan made at this one.  Having no parameters, its
  plan is made once, for its own values, and kept: the server neither parses nor plans it
  again (Q4 of ``bench_queries.py``: 0.10-0.14 ms of planning a run, more than the client's
  other work on the query).  psycopg keeps at most ``prepared_max`` (100) statements a
  connection, dropping the least recently used from the server.  Outside pipeline mode
  psycopg sends the statement's Parse and waits for its answer before the run's Bind and
  Execute: a round trip more.  The first run is sent in pipeline mode instead, all in one
  round trip, for 0.05 ms more of psycopg's Python: over a network a round trip costs more,
  and so it does on a busy machine, where every wait is a sleep and a wake-up; over a local
  connection with the machine less busy two trips were quicker (Q4 of ``bench_queries.py``,
  its first run on the 1M repository's server, medians of 1,500 on this 2-core machine:
  load 10-11, 0.38-0.40 ms in two trips against 0.48 in one; load 14, 1.84 against 0.89;
  unprepared 0.36-0.53).  A plan kept with
  parameters would be either made anew at every run (``force_custom_plan``) or a generic plan
  made without their values, which for data-ID ranges can read whole tables.  The server
  makes a kept plan again when a table it reads changes (its statistics after an ANALYZE, its
  columns, its indexes).  The pool's connections prepare nothing (see ``database.py``): a
  COPY's foreign-key checks would be planned again for every row.
- A prepared statement whose result's columns changed type (a table altered by another
  client) is refused by the server; the connection's prepared statements are then dropped
  and the read sent again once (prepared anew, for the table as it is now).
"""

from __future__ import annotations

import os
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from typing import Any

#: Statements whose merged text a connection remembers (the least recently used go first).
MERGED_KEPT = 256
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
        #: (text, id of its parameters) -> (the parameters, the text with their values written in)
        self._merged: OrderedDict[tuple[str, int], tuple[Any, str]] = OrderedDict()
        #: The merged texts prepared on this connection, least recently run first (as psycopg keeps them).
        self._prepared: OrderedDict[str, None] = OrderedDict()

    def execute(self, sql: str, params: Mapping[str, Any] | Sequence[Any], timeout_ms: int,
                binary: bool = False) -> Any:
        """A driver cursor holding the statement's rows (fetched to this process already), in
        PostgreSQL's binary format if ``binary`` (the same Python values)."""
        for attempt in range(2):
            if self.connection is None:
                self.connection, self._timeout_ms = self._open(), 0
                self._prepared.clear()
            connection = self.connection
            try:
                if timeout_ms != self._timeout_ms:
                    connection.execute(f"SET statement_timeout = {int(timeout_ms)}", prepare=False)
                    self._timeout_ms = timeout_ms
                return self._run(connection, self._merge(sql, params), binary)
            except connection.Error as err:
                if attempt:
                    raise
                if getattr(err, "sqlstate", None) == _PLAN_RESULT_CHANGED and not connection.broken:
                    connection.execute("DEALLOCATE ALL", prepare=False)  # psycopg forgets them too
                    self._prepared.clear()
                    continue
                if not connection.broken:
                    raise
                self.close()  # the server ended this session: connect again and send the read again
        raise AssertionError("unreachable")

    def _run(self, connection: Any, text: str, binary: bool) -> Any:
        """``text`` run on its prepared statement, prepared at this run if it is its first here:
        in pipeline mode, so that the statement's Parse goes with the run's Bind and Execute in
        one round trip (outside it psycopg waits for the Parse's answer first)."""
        if text in self._prepared:
            self._prepared.move_to_end(text)
            return connection.execute(text, binary=binary)
        with connection.pipeline():
            cursor = connection.execute(text, binary=binary)
        self._prepared[text] = None
        if len(self._prepared) > connection.prepared_max:
            self._prepared.popitem(last=False)
        return cursor

    def _merge(self, sql: str, params: Mapping[str, Any] | Sequence[Any]) -> str:
        """``sql`` with the values of ``params`` written in as literals, as psycopg quotes them
        on this connection (its encoding).  Remembered for the very same ``params`` object
        (kept with a built query, never changed): merging 1,000 values costs 2 ms.  Sent
        without parameters, the text is taken as it is (a ``%`` in it is no placeholder)."""
        key = (sql, id(params))
        found = self._merged.get(key)
        if found is not None and found[0] is params:  # (held here, so its id is not another's)
            self._merged.move_to_end(key)
            return found[1]
        import psycopg  # (PostgreSQL only)

        merged = psycopg.ClientCursor(self.connection).mogrify(sql, params)
        self._merged[key] = (params, merged)
        if len(self._merged) > MERGED_KEPT:
            self._merged.popitem(last=False)
        return merged

    def _open(self) -> Any:
        """A new connection that prepares each read at its first run (its plan kept: see the module)."""
        connection = self._connect()
        connection.prepare_threshold = 0
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
