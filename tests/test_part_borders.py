"""Data flows one way: edges (cli, server, web, remote) -> facade (butler) -> parts -> data model.

Every module of the parts listed below is parsed, and each import it makes at run time (imports
under ``if TYPE_CHECKING:`` are type hints only) must not name an edge or the facade module: a part
that needs to know whether its butler is served through HTTP has reached up.
"""

from __future__ import annotations

import ast
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
