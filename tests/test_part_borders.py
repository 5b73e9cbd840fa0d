"""The borders between skybutler's parts, checked on the source.

Data flows one way: edges (cli, server, web, remote) -> facade (butler) -> parts -> data model.
Every module of the parts listed below is parsed, and each import it makes at run time (imports
under ``if TYPE_CHECKING:`` are type hints only) must not name an edge or the facade module: a part
that needs to know whether its butler is served through HTTP has reached up.

No SQL outside ``registry/`` and ``query/``: no other module imports (or ``require``-s) a SQL
driver or SQLAlchemy, or holds a string that is a SQL statement.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "skybutler"
PARTS = ("ingest", "registry", "datastore", "query", "pipeline", "formats", "instruments", "dimensions",
         "execution", "retention", "interchange", "provenance", "catalogs")
FORBIDDEN = ("skybutler.remote", "skybutler.server", "skybutler.cli", "skybutler.web", "skybutler.butler")


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _runtime_imports(tree: ast.AST, module: str, is_package: bool) -> list[tuple[int, str]]:
    """(line, absolute module name) of each import outside ``if TYPE_CHECKING:`` blocks."""
    package = module if is_package else module.rpartition(".")[0]
    found: list[tuple[int, str]] = []

    def visit(node: ast.AST) -> None:
        if isinstance(node, ast.If) and _is_type_checking(node):
            for child in node.orelse:
                visit(child)
            return
        if isinstance(node, ast.Import):
            found.extend((node.lineno, alias.name) for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[:len(base) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module or ""
            found.append((node.lineno, name))
            if not node.module:  # from .. import remote
                found.extend((node.lineno, f"{name}.{alias.name}") for alias in node.names)
        for child in ast.iter_child_nodes(node):
            visit(child)

    visit(tree)
    return found


def _offences(part: str) -> list[str]:
    out = []
    for path in sorted((PACKAGE / part).rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        is_package = relative.name == "__init__"
        module = ".".join(relative.parts[:-1] if is_package else relative.parts)
        for line, name in _runtime_imports(ast.parse(path.read_text(), str(path)), module, is_package):
            if any(name == edge or name.startswith(edge + ".") for edge in FORBIDDEN):
                out.append(f"{path.relative_to(PACKAGE)}:{line} imports {name}")
    return out


@pytest.mark.parametrize("part", PARTS)
def test_part_imports_no_edge_and_not_the_facade(part: str) -> None:
    assert (PACKAGE / part).is_dir()
    assert _offences(part) == []


def test_the_check_sees_relative_and_absolute_imports() -> None:
    source = ("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from ..butler import Butler\n"
              "def f():\n    from ..remote.ingest import send_raws\n    import skybutler.server.app\n"
              "    from .. import cli\n")
    names = [n for _, n in _runtime_imports(ast.parse(source), "skybutler.ingest.raws", False)]
    assert names == ["typing", "skybutler.remote.ingest", "skybutler.server.app", "skybutler", "skybutler.cli"]


SQL_HOMES = ("registry", "query")
SQL_LIBRARIES = ("sqlalchemy", "duckdb", "psycopg", "psycopg2", "sqlite3")
#: A string opening as a SQL statement does, in capitals as skybutler writes SQL (an HTTP method's
#: name, "DELETE", alone is not one).
SQL_STATEMENT = re.compile(r"\s*(SELECT\b|INSERT\s+INTO|UPDATE\s+\S+\s+SET|DELETE\s+FROM|(CREATE|DROP|ALTER)\s+"
                           r"(TABLE|INDEX|SCHEMA|VIEW)|BEGIN\b|COMMIT\b|ROLLBACK\b|SAVEPOINT\b|RELEASE\s+SAVEPOINT|"
                           r"COPY\s|PRAGMA\s|VACUUM\b)")


def _docstrings(tree: ast.AST) -> set[int]:
    bodies = (n.body for n in ast.walk(tree)
              if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)))
    return {id(body[0].value) for body in bodies
            if body and isinstance(body[0], ast.Expr) and isinstance(body[0].value, ast.Constant)}


def _sql_spoken(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) of each SQL library imported or required (under TYPE_CHECKING too), and
    each string (or f-string's opening) that is a SQL statement, docstrings aside."""
    found: list[tuple[int, str]] = []
    docstrings = _docstrings(tree)

    def library(name: str) -> bool:
        return name.split(".")[0] in SQL_LIBRARIES

    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, f"imports {a.name}") for a in node.names if library(a.name))
        elif isinstance(node, ast.ImportFrom) and not node.level and library(node.module or ""):
            found.append((node.lineno, f"imports {node.module}"))
        elif isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", None)) in (
                "require", "import_module") and node.args and isinstance(node.args[0], ast.Constant) \
                and library(str(node.args[0].value)):
            found.append((node.lineno, f"requires {node.args[0].value}"))
        elif isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in docstrings \
                and SQL_STATEMENT.match(node.value):
            found.append((node.lineno, f"says {node.value[:40]!r}"))
    return sorted(found)


def test_no_sql_outside_registry_and_query() -> None:
    offences = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE)
        if relative.parts[0] in SQL_HOMES:
            continue
        offences += [f"{relative}:{line} {what}" for line, what in _sql_spoken(ast.parse(path.read_text(), str(path)))]
    assert offences == []


def test_the_sql_check_sees_drivers_and_statements() -> None:
    source = ('"""SELECT in a docstring is prose."""\n'
              "import sqlalchemy as sa\nfrom psycopg import sql\n"
              "def f(conn, table):\n    duckdb = require('duckdb', 'x')\n"
              "    conn.execute(f'INSERT INTO {table} VALUES (?)')\n    conn.execute('BEGIN')\n"
              "    send('DELETE', '/collections/x')\n    return 'Selected rows', 'begin'\n")
    assert [line for line, _ in _sql_spoken(ast.parse(source))] == [2, 3, 5, 6, 7]


#: Modules that take a butler and decide nothing of its own state: they ask the facade (``served_by``,
#: ``scratch_directory``, ``settle_placed_files``) instead of reading its private attributes.
FACADE_CLIENTS = ("verify.py", "copy_out.py", "repository_transfer.py")


def _facade_private_names() -> set[str]:
    """The one-underscore names the facade (``butler*.py``) defines: its methods and ``self._x`` attributes."""
    names = set()
    for path in PACKAGE.glob("butler*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                names.add(node.name)
            elif isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.value.id == "self":
                names.add(node.attr)
    return {n for n in names if n.startswith("_") and not n.startswith("__")}


def _private_reads(tree: ast.AST, private: set[str]) -> list[tuple[int, str]]:
    """(line, expression) of each ``x._name`` (``x`` not ``self``) naming one of ``private``."""
    return [(node.lineno, ast.unparse(node)) for node in ast.walk(tree)
            if isinstance(node, ast.Attribute) and node.attr in private
            and not (isinstance(node.value, ast.Name) and node.value.id in ("self", "cls"))]


@pytest.mark.parametrize("module", FACADE_CLIENTS)
def test_facade_clients_read_no_private_facade_attribute(module: str) -> None:
    private = _facade_private_names()
    assert {"_remote", "_writes"} <= private
    path = PACKAGE / module
    assert _private_reads(ast.parse(path.read_text(), str(path)), private) == []


def test_the_private_read_check_sees_attributes_of_any_object() -> None:
    source = ("def f(butler, target):\n    self._remote = 1\n    if butler._remote is None:\n"
              "        target._writes.when_settled(g)\n    return butler.served_by, other._own\n")
    assert _private_reads(ast.parse(source), {"_remote", "_writes"}) == [(3, "butler._remote"),
                                                                         (4, "target._writes")]
