"""Provenance rows: every executed (or failed, or blocked) quantum with its inputs and outputs.

Tables, created on first use so older repositories gain them without a migration:

- ``quantum``: one row per attempt -- RUN, task label and class, data ID (JSON),
  config dataset ID, status (succeeded / failed / blocked), host, process, start and end
  (ns since the epoch), software environment, error and log excerpt;
- ``quantum_input`` / ``quantum_output``: the datasets it read and wrote, by ID, with
  their dataset type, connection and data ID -- kept when a dataset is purged, so a
  purged product can be remade from its recorded quantum;
- ``quantum_environment``: software versions and git SHAs, stored once per distinct set.

Quanta vanish with their RUN (foreign key with cascade).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import sqlalchemy as sa

from .database import Database
from .schema import NAME_LENGTH, RegistrySchema

STATUSES = ("succeeded", "failed", "blocked")


@dataclass
class DatasetLink:
    """A dataset a quantum read or wrote."""

    dataset_id: uuid.UUID | None
    dataset_type: str
    connection: str
    data_id: dict[str, Any]
    prerequisite: bool = False


@dataclass
class QuantumRecord:
    """One row of ``quantum`` with its input and output links."""

    quantum_id: uuid.UUID
    run: str
    task_label: str
    task_class: str
    data_id: dict[str, Any]
    status: str
    config_dataset_id: uuid.UUID | None = None
    host: str = ""
    pid: int = 0
    start_ns: int | None = None
    end_ns: int | None = None
    env_id: str | None = None
    error: str | None = None
    log: str | None = None
    inputs: list[DatasetLink] = field(default_factory=list)
    outputs: list[DatasetLink] = field(default_factory=list)

    @property
    def seconds(self) -> float | None:
        return None if self.start_ns is None or self.end_ns is None else (self.end_ns - self.start_ns) / 1e9


@dataclass(slots=True)
class QuantumLineage:
    """What staleness needs of a succeeded quantum, read in bulk: who it was and what it read.
    ``inputs`` are ``(dataset ID, dataset type, data ID as JSON, prerequisite)``; data IDs are
    parsed only for the few a reason names."""

    quantum_id: uuid.UUID
    run: str
    task_label: str
    task_class: str
    config_dataset_id: uuid.UUID | None
    env_id: str | None
    inputs: list[tuple[uuid.UUID | None, str, str, bool]] = field(default_factory=list)


class QuantumStore:
    """Reads and writes the quantum provenance tables of one registry."""

    def __init__(self, db: Database, schema: RegistrySchema, collections: Any):
        self.db = db
        self.collections = collections
        md = schema.metadata
        self.quantum = sa.Table(
            "quantum", md,
            sa.Column("quantum_id", sa.Uuid, primary_key=True),
            sa.Column("run_id", sa.Integer, sa.ForeignKey("collection.collection_id", ondelete="CASCADE"),
                      nullable=False),
            sa.Column("task_label", sa.String(NAME_LENGTH), nullable=False),
            sa.Column("task_class", sa.Text, nullable=False),
            sa.Column("data_id", sa.Text, nullable=False),
            sa.Column("status", sa.String(16), nullable=False),
            sa.Column("config_dataset_id", sa.Uuid, nullable=True),
            sa.Column("host", sa.String(NAME_LENGTH), nullable=False, default=""),
            sa.Column("pid", sa.Integer, nullable=False, default=0),
            sa.Column("start_ns", sa.BigInteger, nullable=True),
            sa.Column("end_ns", sa.BigInteger, nullable=True),
            sa.Column("env_id", sa.String(64), nullable=True),
            sa.Column("error", sa.Text, nullable=True),
            sa.Column("log", sa.Text, nullable=True),
            sa.Index("quantum_run_task", "run_id", "task_label"),
            extend_existing=True)
        link_cols = lambda: [  # noqa: E731
            sa.Column("quantum_id", sa.Uuid, sa.ForeignKey("quantum.quantum_id", ondelete="CASCADE"),
                      nullable=False, index=True),
            sa.Column("dataset_id", sa.Uuid, nullable=True),
            sa.Column("dataset_type", sa.String(NAME_LENGTH), nullable=False),
            sa.Column("connection", sa.String(NAME_LENGTH), nullable=False),
            sa.Column("data_id", sa.Text, nullable=False)]
        self.input = sa.Table("quantum_input", md, *link_cols(),
                              sa.Column("prerequisite", sa.Boolean, nullable=False, default=False),
                              sa.Index("quantum_input_dataset", "dataset_id"), extend_existing=True)
        self.output = sa.Table("quantum_output", md, *link_cols(),
                               sa.Index("quantum_output_dataset", "dataset_id"), extend_existing=True)
        self.environment = sa.Table(
            "quantum_environment", md,
            sa.Column("env_id", sa.String(64), primary_key=True),
            sa.Column("description", sa.Text, nullable=False), extend_existing=True)
        self._tables = [self.quantum, self.input, self.output, self.environment]
        self._exists: bool | None = None

    # -- tables ---------------------------------------------------------------

    def exists(self) -> bool:
        """Whether the provenance tables are there (checked once, then remembered if so)."""
        if not self._exists:
            with self.db.reading() as conn:
                self._exists = sa.inspect(conn).has_table("quantum", schema=self.db.schema)
        return bool(self._exists)

    def ensure(self) -> None:
        """Create the provenance tables if this registry does not have them yet."""
        if self.exists():
            return
        with self.db.transaction() as conn:
            self.db.create_tables(conn, self._tables)
        self._exists = True

    # -- writing --------------------------------------------------------------

    def add_environment(self, env_id: str, description: dict[str, Any]) -> None:
        """Record a software environment once (a second call with the same ID does nothing)."""
        self.ensure()
        t = self.environment
        try:
            with self.db.transaction() as conn:
                if conn.execute(sa.select(t.c.env_id).where(t.c.env_id == env_id)).first() is None:
                    conn.execute(t.insert(), [{"env_id": env_id,
                                               "description": json.dumps(description, sort_keys=True)}])
        except sa.exc.IntegrityError:
            pass  # another worker recorded the same environment between our check and insert

    def insert(self, records: Sequence[QuantumRecord]) -> None:
        """Insert quanta with their links (inside the caller's transaction, if there is one)."""
        if not records:
            return
        self.ensure()
        rows, inputs, outputs = [], [], []
        for r in records:
            if r.status not in STATUSES:
                raise ValueError(f"quantum status must be one of {STATUSES}, not {r.status!r}")
            run_id, _ = self.collections.lookup(r.run)
            rows.append({"quantum_id": r.quantum_id, "run_id": run_id, "task_label": r.task_label,
                         "task_class": r.task_class, "data_id": _dump(r.data_id), "status": r.status,
                         "config_dataset_id": r.config_dataset_id, "host": r.host, "pid": r.pid,
                         "start_ns": r.start_ns, "end_ns": r.end_ns, "env_id": r.env_id, "error": r.error,
                         "log": r.log})
            inputs += [_link_row(r.quantum_id, link) | {"prerequisite": link.prerequisite} for link in r.inputs]
            outputs += [_link_row(r.quantum_id, link) for link in r.outputs]
        with self.db.transaction() as conn:
            conn.execute(self.quantum.insert(), rows)
            if inputs:
                conn.execute(self.input.insert(), inputs)
            if outputs:
                conn.execute(self.output.insert(), outputs)

    def replace_inputs(self, quantum_id: uuid.UUID, replaced: Mapping[uuid.UUID, uuid.UUID]) -> None:
        """Point a quantum's input links from the recorded datasets to others (old ID -> new ID):
        what it read when a recompute replayed it with today's calibration instead of the recorded
        one (inside the caller's transaction, if there is one)."""
        with self.db.transaction() as conn:
            for old, new in replaced.items():
                conn.execute(self.input.update().where(self.input.c.quantum_id == quantum_id,
                                                       self.input.c.dataset_id == old).values(dataset_id=new))

    # -- reading --------------------------------------------------------------

    def _records(self, conn: sa.Connection, where: Sequence[sa.ColumnElement]) -> list[QuantumRecord]:
        q = self.quantum
        rows = conn.execute(sa.select(q).where(*where).order_by(q.c.start_ns)).mappings().all()
        if not rows:
            return []
        ids = [r["quantum_id"] for r in rows]
        links: dict[tuple[str, uuid.UUID], list[DatasetLink]] = {}
        for kind, table in (("in", self.input), ("out", self.output)):
            for start in range(0, len(ids), 500):
                for row in conn.execute(sa.select(table).where(table.c.quantum_id.in_(ids[start:start + 500]))
                                        ).mappings():
                    links.setdefault((kind, row["quantum_id"]), []).append(DatasetLink(
                        row["dataset_id"], row["dataset_type"], row["connection"], json.loads(row["data_id"]),
                        bool(row.get("prerequisite", False))))
        out = []
        for r in rows:
            out.append(QuantumRecord(
                r["quantum_id"], self.collections.name_of(r["run_id"]), r["task_label"], r["task_class"],
                json.loads(r["data_id"]), r["status"], r["config_dataset_id"], r["host"], r["pid"], r["start_ns"],
                r["end_ns"], r["env_id"], r["error"], r["log"], links.get(("in", r["quantum_id"]), []),
                links.get(("out", r["quantum_id"]), [])))
        return out

    def get(self, quantum_ids: Iterable[uuid.UUID]) -> list[QuantumRecord]:
        ids = list(quantum_ids)
        if not ids or not self.exists():
            return []
        with self.db.reading() as conn:
            return self._records(conn, [self.quantum.c.quantum_id.in_(ids)])

    def producers(self, dataset_ids: Iterable[uuid.UUID]) -> dict[uuid.UUID, QuantumRecord]:
        """The quantum that wrote each dataset (datasets nobody recorded are left out)."""
        ids = list(dataset_ids)
        if not ids or not self.exists():
            return {}
        o = self.output
        with self.db.reading() as conn:
            pairs = []
            for start in range(0, len(ids), 500):
                pairs += conn.execute(sa.select(o.c.dataset_id, o.c.quantum_id).where(
                    o.c.dataset_id.in_(ids[start:start + 500]))).all()
            records = {r.quantum_id: r for r in self._records(conn, [self.quantum.c.quantum_id.in_(
                list({q for _, q in pairs}))])} if pairs else {}
        return {d: records[q] for d, q in pairs if q in records}

    def lineage(self, dataset_ids: Iterable[uuid.UUID], chunk: int = 500
                ) -> tuple[dict[uuid.UUID, uuid.UUID], dict[uuid.UUID, QuantumLineage]]:
        """For many datasets at once: the succeeded quantum that wrote each (dataset ID -> quantum
        ID) and those quanta with their inputs; two statements per ``chunk`` of datasets."""
        ids = list(dataset_ids)
        made: dict[uuid.UUID, uuid.UUID] = {}
        quanta: dict[uuid.UUID, QuantumLineage] = {}
        if not ids or not self.exists():
            return made, quanta
        q, o, i = self.quantum, self.output, self.input
        # IDs come back as the driver gives them and become UUIDs once each: an ID recurs (a
        # quantum on each of its input rows, a product as the input of the quantum below it), and
        # building UUIDs was most of this method's time.
        raw = lambda column: sa.type_coerce(column, sa.String)  # noqa: E731
        head = sa.select(raw(o.c.dataset_id), raw(q.c.quantum_id), q.c.run_id, q.c.task_label, q.c.task_class,
                         raw(q.c.config_dataset_id), q.c.env_id).join(q, q.c.quantum_id == o.c.quantum_id)
        links = sa.select(raw(i.c.quantum_id), raw(i.c.dataset_id), i.c.dataset_type, i.c.data_id, i.c.prerequisite)
        seen: dict[Any, uuid.UUID] = {}

        def as_uuid(value: Any) -> uuid.UUID | None:
            if value is None or isinstance(value, uuid.UUID):
                return value
            found = seen.get(value)
            if found is None:
                found = seen[value] = uuid.UUID(value)
            return found

        with self.db.reading() as conn:
            for start in range(0, len(ids), chunk):
                part = ids[start:start + chunk]
                fresh: list[uuid.UUID] = []
                for dataset_id, qid, run_id, label, cls, config_id, env_id in conn.execute(head.where(
                        o.c.dataset_id.in_(part), q.c.status == "succeeded")).fetchall():
                    qid = as_uuid(qid)
                    made[as_uuid(dataset_id)] = qid
                    if qid not in quanta:
                        quanta[qid] = QuantumLineage(qid, self.collections.name_of(run_id), label, cls,
                                                     as_uuid(config_id), env_id)
                        fresh.append(qid)
                for begin in range(0, len(fresh), chunk):
                    for qid, dataset_id, dtype, data_id, prereq in conn.execute(links.where(
                            i.c.quantum_id.in_(fresh[begin:begin + chunk]))).fetchall():  # not a row at a time
                        quanta[as_uuid(qid)].inputs.append((as_uuid(dataset_id), dtype, data_id, bool(prereq)))
        return made, quanta

    def consumers(self, dataset_id: uuid.UUID) -> list[QuantumRecord]:
        """Every quantum that read a dataset (including failed attempts)."""
        if not self.exists():
            return []
        i = self.input
        with self.db.reading() as conn:
            return self._records(conn, [self.quantum.c.quantum_id.in_(
                sa.select(i.c.quantum_id).where(i.c.dataset_id == dataset_id))])

    def query(self, run: str | None = None, task: str | None = None, status: str | None = None
              ) -> list[QuantumRecord]:
        """Quanta of a RUN, a task label and/or a status, in start order."""
        if not self.exists():
            return []
        where: list[sa.ColumnElement] = []
        if run is not None:
            where.append(self.quantum.c.run_id == self.collections.lookup(run)[0])
        if task is not None:
            where.append(self.quantum.c.task_label == task)
        if status is not None:
            where.append(self.quantum.c.status == status)
        with self.db.reading() as conn:
            return self._records(conn, where)

    def environment_of(self, env_id: str) -> dict[str, Any] | None:
        if not self.exists():
            return None
        t = self.environment
        with self.db.reading() as conn:
            text = conn.execute(sa.select(t.c.description).where(t.c.env_id == env_id)).scalar()
        return None if text is None else json.loads(text)


def _dump(data_id: dict[str, Any]) -> str:
    return json.dumps(data_id, separators=(",", ":"))


def _link_row(quantum_id: uuid.UUID, link: DatasetLink) -> dict[str, Any]:
    return {"quantum_id": quantum_id, "dataset_id": link.dataset_id, "dataset_type": link.dataset_type,
            "connection": link.connection, "data_id": _dump(link.data_id)}
