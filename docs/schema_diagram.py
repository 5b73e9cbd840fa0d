"""Write docs/schema.md: Mermaid entity-relationship diagrams of the registry tables.

    python docs/schema_diagram.py [OUTPUT]      # default: docs/schema.md next to this script

The tables come from the code, not from a hand-kept list: a throwaway repository
is created, a sample calibration dataset type is registered so that one
per-dimension-group ``dataset_tags_*`` / ``dataset_calibs_*`` pair exists, the
metadata table of every storage class, the provenance tables and a sample user
table are created, and every table of the registry's
:class:`skybutler.registry.schema.RegistrySchema` metadata is drawn with its
columns, keys and foreign keys.  Re-run it whenever the schema changes.
"""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

import sqlalchemy as sa

from skybutler import Butler
from skybutler.formats import get_storage_class, storage_class_names
from skybutler.formats.rubin_names import RUBIN_STORAGE_CLASSES
from skybutler.registry.quantum_store import QuantumStore
from skybutler.registry.schema import SCHEMA_VERSION

SAMPLE_TYPE = ("bias", ("instrument", "detector"), "Image")
"""The dataset type registered so that its dimension group's tags and calibs tables appear."""

SAMPLE_USER_TABLE = ("quality", ("instrument", "visit"), {"seeing": float})
"""A user table, so that one ``user_*`` table appears."""

STATIC = ("skybutler_meta", "collection", "collection_chain", "dataset_type", "dataset_count", "dataset",
          "dataset_location", "dataset_metric", "dataset_state")
PROVENANCE = ("quantum", "quantum_input", "quantum_output", "quantum_environment")


def registry_tables() -> tuple[list[sa.Table], dict[str, str]]:
    """Every table of a registry with the sample dataset type, and the repository's universe facts."""
    with tempfile.TemporaryDirectory() as tmp, Butler.create(Path(tmp) / "repo") as butler:
        name, dims, storage_class = SAMPLE_TYPE
        butler.register_dataset_type(name, dims, storage_class, is_calibration=True)
        for sc_name in storage_class_names():
            if sc_name in RUBIN_STORAGE_CLASSES:  # the same classes under Rubin names: same tables
                continue
            sc = get_storage_class(sc_name)
            butler.registry.metadata.table(sc.name, sc.metadata_fields)
        QuantumStore(butler.registry.db, butler.registry.schema, butler.registry.collections).ensure()
        user_name, user_dims, user_columns = SAMPLE_USER_TABLE
        butler.register_user_table(user_name, user_dims, user_columns)
        schema = butler.registry.schema
        schema.declare_all()  # dimension tables are otherwise declared on first use
        butler.registry.states  # declares dataset_state, otherwise made on first use too
        facts = {"universe": f"`{butler.universe.name}` version {butler.universe.version}",
                 "schema_version": str(SCHEMA_VERSION)}
        return list(schema.metadata.sorted_tables), facts


def type_name(column: sa.Column) -> str:
    return type(column.type).__name__


def entity(table: sa.Table, stub: bool = False) -> list[str]:
    if stub:
        return [f"    {table.name} {{", "    }"]
    fk_columns = {c.parent.name for fk in table.foreign_key_constraints for c in fk.elements}
    unique = {c.name for u in table.constraints if isinstance(u, sa.UniqueConstraint) and len(u.columns) == 1
              for c in u.columns}
    lines = [f"    {table.name} {{"]
    for column in table.columns:
        keys = [k for k, on in (("PK", column.primary_key), ("FK", column.name in fk_columns),
                                ("UK", column.name in unique)) if on]
        note = "" if column.nullable or column.primary_key else ' "not null"'
        lines.append(f"        {type_name(column)} {column.name}{' ' + ', '.join(keys) if keys else ''}{note}")
    lines.append("    }")
    return lines


def relationships(tables: list[sa.Table], names: set[str]) -> list[str]:
    lines = []
    for table in tables:
        for fk in sorted(table.foreign_key_constraints, key=lambda f: [c.parent.name for c in f.elements]):
            target = fk.referred_table.name
            if target not in names:
                continue
            nullable = any(c.parent.nullable for c in fk.elements)
            label = ", ".join(c.parent.name for c in fk.elements)
            card = "|o" if nullable else "||"  # a nullable key may point at no row
            lines.append(f'    {target} {card}--o{{ {table.name} : "{label}"')
    return lines


def diagram(drawn: list[sa.Table], stubs: list[sa.Table]) -> list[str]:
    names = {t.name for t in drawn} | {t.name for t in stubs}
    lines = ["```mermaid", "erDiagram"]
    for table in drawn:
        lines += entity(table)
    for table in stubs:
        lines += entity(table, stub=True)
    lines += relationships(drawn, names)
    lines.append("```")
    return lines


def keys(table: sa.Table) -> str:
    """The table's primary key, unique constraints and indexes, each with its columns in order."""
    def columns(cs) -> str:
        return ", ".join(c.name for c in cs)

    pk = table.primary_key
    parts = [f"PK ({columns(pk.columns)})"] if len(pk.columns) else []
    include = pk.dialect_options["postgresql"]["include"]
    if include:
        parts[-1] += f" include ({', '.join(include)})"
    if table.dialect_options["sqlite"]["with_rowid"] is False:
        parts[-1] += " no rowid"
    parts += [f"UK ({columns(u.columns)})" for u in sorted(
        (u for u in table.constraints if isinstance(u, sa.UniqueConstraint)), key=lambda u: [c.name for c in u.columns])]
    parts += [f"index ({columns(i.columns)})" for i in sorted(table.indexes, key=lambda i: [c.name for c in i.columns])]
    return "; ".join(parts)


def _first(tables: list[sa.Table], prefix: str) -> str:
    return next((t.name for t in tables if t.name.startswith(prefix)), "?")


def render(tables: list[sa.Table], facts: dict[str, str]) -> str:
    by_name = {t.name: t for t in tables}
    group = [t for t in tables if t.name.startswith(("dataset_tags_", "dataset_calibs_"))]
    metadata = [t for t in tables if t.name.startswith("dataset_metadata_")]
    dataset_side = [by_name[n] for n in STATIC if n in by_name] + group + metadata
    provenance = [by_name[n] for n in PROVENANCE if n in by_name]
    user = [t for t in tables if t.name.startswith("user_")]
    dimension_side = [t for t in tables if t not in dataset_side + provenance + user]

    def stubs_for(drawn: list[sa.Table]) -> list[sa.Table]:
        referenced = {fk.referred_table.name for t in drawn for fk in t.foreign_key_constraints}
        return [t for t in tables if t.name in referenced and t not in drawn]

    user_name, user_dims, user_columns = SAMPLE_USER_TABLE
    name, dims, storage_class = SAMPLE_TYPE
    out = [
        "# Registry schema",
        "",
        "<!-- Generated by docs/schema_diagram.py from skybutler.registry.schema.RegistrySchema; do not edit. -->",
        "",
        f"Registry schema version {facts['schema_version']}, dimension universe "
        f"{facts['universe']}. Column types are SQLAlchemy types (the same code path serves SQLite and "
        "PostgreSQL); `PK` primary key, `FK` foreign key, `UK` unique. See [architecture.md](architecture.md) "
        "for what each table is for.",
        "",
        "## Collections, datasets and their facts",
        "",
        "The tables every registry has, plus the ones created on demand: a `dataset_tags_*` / "
        "`dataset_calibs_*` pair per dimension group of the registered dataset types (drawn here for a "
        f"sample calibration type `{name}` over ({', '.join(dims)}), so the pair is "
        f"`{_first(group, 'dataset_tags_')}` / `{_first(group, 'dataset_calibs_')}`), and a "
        "`dataset_metadata_*` table per storage class, created when the first dataset of that storage class "
        "is stored. Dimension tables the membership tables point at are drawn empty here; their columns are "
        "in the next diagram.",
        "",
        *diagram(dataset_side, [t for t in stubs_for(dataset_side) if t in dimension_side]),
        "",
        "## Dimension records",
        "",
        "One table per dimension element of the universe, keyed by the element's identity (its required "
        "dimensions and its own key), with a column per implied dimension, per metadata field, and for "
        "spatial or temporal elements `region` (encoded sphgeom region) and `timespan_begin`/`timespan_end` "
        "(TAI nanoseconds). Spatial elements also get a `*_skypix_overlap` table: the sky pixels of the "
        "spatial index that may overlap each record's region.",
        "",
        *diagram(dimension_side, []),
        "",
        "## Provenance and user tables",
        "",
        "The provenance tables are created the first time a pipeline records a quantum: one `quantum` row per "
        "attempt, with the datasets it read and wrote and the software it ran with. A user table (here a sample "
        f"`{user_name}` over ({', '.join(user_dims)}) with a column {', '.join(user_columns)}) is created by "
        "`register_user_table` as `user_<name>`, keyed by the required dimensions of its dimension group.",
        "",
        *diagram(provenance + user, stubs_for(provenance + user)),
        "",
        "## Tables",
        "",
        "Keys and indexes in column order (what a query's look-up can use); `no rowid`: on SQLite the rows "
        "are kept in the primary key's B-tree (`WITHOUT ROWID`), so a look-up by the key reads no second "
        "B-tree and an insert writes one fewer; `include`: columns PostgreSQL carries in the key's index.",
        "",
        "| table | columns | keys and indexes |",
        "|---|---|---|",
    ]
    for table in dataset_side + provenance + user + dimension_side:
        out.append(f"| `{table.name}` | {', '.join(c.name for c in table.columns)} | {keys(table)} |")
    return "\n".join(out) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    output = Path(args[0]) if args else Path(__file__).with_name("schema.md")
    tables, facts = registry_tables()
    output.write_text(render(tables, facts))
    print(f"wrote {output} ({len(tables)} tables)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
