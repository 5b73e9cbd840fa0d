"""Collections: RUN, TAGGED, CHAINED and CALIBRATION, and chain flattening.

Collection names and IDs are cached per registry (they are few and change rarely);
a chain is flattened into the ordered list of non-chained collections a search
visits, with cycles refused when a chain is defined.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Sequence

import sqlalchemy as sa

from ..errors import CollectionCycleError, CollectionError, MissingCollectionError
from ..models import CollectionInfo, CollectionType
from . import definitions_mark
from .database import Database
from .schema import NAME_LENGTH, RegistrySchema


def check_name(name: str) -> str:
    """``name`` if a collection may be so named: 1 to ``NAME_LENGTH`` characters, no control
    characters (a NUL, a newline) and no spaces at either end; CollectionError saying so otherwise."""
    if not isinstance(name, str) or not name or name.strip() != name or len(name) > NAME_LENGTH \
            or any(c < " " or c == "\x7f" for c in name):
        shown = repr(name[:100]) + ("..." if isinstance(name, str) and len(name) > 100 else "")
        raise CollectionError(f"invalid collection name {shown}: a name is 1 to {NAME_LENGTH} characters, with no "
                              "control characters (tabs, newlines) and no spaces at either end")
    return name


class CollectionStore:
    """Reads and writes the collection and collection_chain tables."""

    def __init__(self, db: Database, schema: RegistrySchema):
        self.db = db
        self.schema = schema
        self._by_name: dict[str, tuple[int, CollectionType]] | None = None
        self._children: sa.Select | None = None

    def _cache(self) -> dict[str, tuple[int, CollectionType]]:
        if self._by_name is None:
            t = self.schema.collection
            with self.db.reading() as conn:
                rows = conn.execute(sa.select(t.c.name, t.c.collection_id, t.c.type)).all()
            self._by_name = {name: (cid, CollectionType(kind)) for name, cid, kind in rows}
        return self._by_name

    def refresh(self) -> None:
        self._by_name = None

    def listing(self) -> dict[str, tuple[int, CollectionType]]:
        """(id, type) of every collection by name, read afresh (one statement)."""
        self.refresh()
        return dict(self._cache())

    def lookup(self, name: str) -> tuple[int, CollectionType]:
        """(id, type) of a collection; re-reads once in case another client added it."""
        found = self._cache().get(name)
        if found is None:
            self.refresh()
            found = self._cache().get(name)
            if found is None:
                raise MissingCollectionError(f"no collection named {name!r}")
        return found

    def id_of_kind(self, name: str, wanted: CollectionType, doing: str) -> int:
        """The id of collection ``name``, which must be of kind ``wanted``: otherwise a
        CollectionError saying what was being done (``doing``, e.g. "can only associate into")
        and what kind the collection is."""
        cid, kind = self.lookup(name)
        if kind is not wanted:
            raise CollectionError(f"{doing} a {wanted.value} collection; {name!r} is {kind.value}")
        return cid

    def exists(self, name: str) -> bool:
        try:
            self.lookup(name)
            return True
        except MissingCollectionError:
            return False

    def name_of(self, collection_id: int) -> str:
        for name, (cid, _) in self._cache().items():
            if cid == collection_id:
                return name
        self.refresh()
        for name, (cid, _) in self._cache().items():
            if cid == collection_id:
                return name
        raise MissingCollectionError(f"no collection with id {collection_id}")

    def doc(self, name: str) -> str:
        """The documentation string a collection was registered with ("" if none)."""
        cid, _ = self.lookup(name)
        t = self.schema.collection
        with self.db.reading() as conn:
            return conn.execute(sa.select(t.c.doc).where(t.c.collection_id == cid)).scalar() or ""

    def register(self, name: str, kind: CollectionType | str, doc: str | None = "") -> bool:
        """Create a collection; returns False if it exists with the same type (idempotent).
        ``doc`` None (the Rubin butler's default) is no documentation."""
        kind = CollectionType.parse(kind)
        check_name(name)
        doc = doc or ""
        found = self._cache().get(name)
        if found is not None:
            if found[1] is not kind:
                raise CollectionError(f"collection {name!r} exists with type {found[1].value}, not {kind.value}")
            return False
        with self.db.transaction() as conn:
            try:
                with conn.begin_nested():
                    conn.execute(self.schema.collection.insert().values(name=name, type=kind.value, doc=doc))
            except sa.exc.IntegrityError:
                self.refresh()
                if name not in self._cache():  # not another writer's insert of the same name: a real refusal
                    raise
                return self.register(name, kind, doc)
        self.refresh()
        return True

    def children(self, name: str) -> tuple[str, ...]:
        cid, kind = self.lookup(name)
        if kind is not CollectionType.CHAINED:
            raise CollectionError(f"collection {name!r} is {kind.value}, not CHAINED")
        return tuple(self.name_of(i) for i in self.db.read_cache.get(("chain", cid), lambda: self._child_ids(cid)))

    def _child_ids(self, parent_id: int) -> tuple[int, ...]:
        if self._children is None:  # one statement, reused: SQLAlchemy then neither builds nor keys it again
            c = self.schema.collection_chain
            self._children = sa.select(c.c.child_id).where(c.c.parent_id == sa.bindparam("parent")).order_by(
                c.c.position)
        with self.db.reading() as conn:
            return tuple(conn.execute(self._children, {"parent": parent_id}).scalars())

    def set_chain(self, parent: str, children: Sequence[str]) -> None:
        """Define a CHAINED collection's ordered children (creating it if needed); refuses cycles."""
        children = list(dict.fromkeys(children))
        for child in children:  # validate before creating the parent, so a refusal changes nothing
            if child == parent or parent in self.flatten([child], keep_chains=True):  # flatten checks it exists
                raise CollectionCycleError(f"chain {parent!r} -> {child!r} would contain itself")
        c = self.schema.collection_chain
        with self.db.transaction() as conn:  # a new chain and its children in one: never left empty
            self.register(parent, CollectionType.CHAINED)
            cid, _ = self.lookup(parent)
            conn.execute(c.delete().where(c.c.parent_id == cid))
            if children:
                conn.execute(c.insert(), [{"parent_id": cid, "position": i, "child_id": self.lookup(ch)[0]}
                                          for i, ch in enumerate(children)])

    def flatten(self, names: Iterable[str], keep_chains: bool = False) -> list[str]:
        """The ordered, de-duplicated search path: chains replaced by their children, depth-first."""
        out: list[str] = []

        def visit(name: str, seen: tuple[str, ...]) -> None:
            if name in seen:
                raise CollectionCycleError(f"collection chain cycle: {' -> '.join(seen + (name,))}")
            _, kind = self.lookup(name)
            if kind is CollectionType.CHAINED:
                if keep_chains and name not in out:
                    out.append(name)
                for child in self.children(name):
                    visit(child, seen + (name,))
            elif name not in out:
                out.append(name)

        for name in names:
            visit(name, ())
        return out

    def parents(self, name: str) -> list[str]:
        cid, _ = self.lookup(name)
        c = self.schema.collection_chain
        with self.db.reading() as conn:
            ids = conn.execute(sa.select(c.c.parent_id).where(c.c.child_id == cid)).scalars().all()
        return [self.name_of(i) for i in ids]

    def remove(self, name: str) -> None:
        """Delete a collection row (datasets are removed by the caller first); refuses if chained into others."""
        cid, _ = self.lookup(name)
        parents = self.parents(name)
        if parents:
            raise CollectionError(f"collection {name!r} is in chain(s) {', '.join(parents)}; remove it from them first")
        with self.db.transaction() as conn:
            conn.execute(self.schema.collection.delete().where(self.schema.collection.c.collection_id == cid))
            definitions_mark.move(self.db, self.schema, conn)
        self.refresh()

    def query(self, pattern: str = "*", types: Iterable[CollectionType | str] | None = None,
              flatten_chains: bool = False) -> list[CollectionInfo]:
        """Collections whose names match a glob ``pattern``, optionally of given types."""
        wanted = None if types is None else {CollectionType.parse(t) for t in types}
        self.refresh()
        t = self.schema.collection
        with self.db.reading() as conn:
            # Sorted here, not in SQL: PostgreSQL would sort by the database's collation.
            rows = sorted(conn.execute(sa.select(t.c.name, t.c.type, t.c.doc)).all())
        docs = {name: doc or "" for name, _, doc in rows}
        out: list[CollectionInfo] = []
        listed: set[str] = set()  # each collection once, also when a flattened chain listed it already
        for name, kind, doc in rows:
            kind = CollectionType(kind)
            if name in listed or not fnmatch.fnmatchcase(name, pattern) or (wanted is not None and kind not in wanted):
                continue
            children = self.children(name) if kind is CollectionType.CHAINED else ()
            out.append(CollectionInfo(name=name, type=kind, doc=doc or "", children=children))
            listed.add(name)
            if flatten_chains and children:
                for child in self.flatten(children):
                    if child not in listed:
                        out.append(CollectionInfo(name=child, type=self.lookup(child)[1], doc=docs.get(child, "")))
                        listed.add(child)
        return out
