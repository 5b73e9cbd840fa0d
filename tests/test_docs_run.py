"""The docs run: every ```python and ```bash block of docs/user-guide.md and README.md, in
order, against fresh repositories, checking the outputs the text shows.

Blocks marked ```py, ```sh, ```yaml or ```text are illustrations (a PostgreSQL server, an S3
bucket, a Rubin export, a config snippet) and are not run.  Python blocks of one document run
in one namespace, in a directory of their own; its shell blocks run in another directory,
each block with ``bash -euo pipefail``, with this interpreter's ``skybutler`` and ``python``
first on PATH.  The outputs the text shows are checked:

- a Python expression statement with a comment that starts with a literal
  (``butler.sync_record(...)   # True: inserted``) must evaluate to that literal;
- a shell command with a comment holding a quoted text (``# "inserted 0 new band record(s)"``)
  must print that text.
"""

from __future__ import annotations

import ast
import io
import os
import re
import subprocess
import sys
import tokenize
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOCUMENTS = {"user-guide": ROOT / "docs" / "user-guide.md", "readme": ROOT / "README.md"}
FENCE = re.compile(r"^```(\w*)\s*$")


def blocks(path: Path) -> list[tuple[str, int, str]]:
    """(language, first line number, text) of every fenced block of a markdown file."""
    out, language, start, lines = [], None, 0, []
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        fence = FENCE.match(line)
        if fence and language is None:
            language, start, lines = fence.group(1), number + 1, []
        elif line.strip() == "```" and language is not None:
            out.append((language, start, "\n".join(lines) + "\n"))
            language = None
        elif language is not None:
            lines.append(line)
    assert language is None, f"{path}: a block opened at line {start - 1} is never closed"
    return out


def trailing_comments(source: str) -> dict[int, str]:
    """The comment ending each line of Python source, by line number."""
    comments = {}
    for token in tokenize.generate_tokens(io.StringIO(source).readline):
        if token.type == tokenize.COMMENT:
            comments[token.start[0]] = token.string.lstrip("#").strip()
    return comments


def shown_value(comment: str) -> tuple[bool, object]:
    """The literal a comment starts with (``True: inserted`` -> True, ``0.69, from run2`` ->
    0.69), if it starts with one; prose (``1 quantum to replay ...``) is none."""
    candidates = [comment, comment.split(":", 1)[0], comment.split(", ", 1)[0]]
    for text in candidates:
        try:
            return True, ast.literal_eval(text.strip())
        except (ValueError, SyntaxError):
            continue
    return False, None


def matches(value: object, expected: object) -> bool:
    """Whether a value is what the text shows; ``[..., 'a', 'b']`` shows a list's end and
    ``['a', ...]`` its beginning."""
    if isinstance(expected, (list, tuple)) and expected and Ellipsis in (expected[0], expected[-1]):
        shown = [e for e in expected if e is not Ellipsis]
        items = list(value)  # type: ignore[call-overload]
        return items[-len(shown):] == shown if expected[0] is Ellipsis else items[:len(shown)] == shown
    return value == expected


def run_python(source: str, namespace: dict, where: str) -> int:
    """Run a block statement by statement; returns how many shown outputs were checked."""
    tree = ast.parse(source)
    comments = trailing_comments(source)
    checked = 0
    for statement in tree.body:
        if isinstance(statement, ast.Expr):
            value = eval(compile(ast.Expression(statement.value), where, "eval"), namespace)
            comment = comments.get(statement.end_lineno or 0)
            if comment:
                known, expected = shown_value(comment)
                if known:
                    assert matches(value, expected), f"{where} line {statement.lineno}: got {value!r}, the text shows " \
                                              f"{expected!r}"
                    checked += 1
        else:
            exec(compile(ast.Module([statement], []), where, "exec"), namespace)
    return checked


def shell_environment() -> dict[str, str]:
    env = dict(os.environ)
    env["PATH"] = f"{Path(sys.executable).parent}{os.pathsep}{env.get('PATH', '')}"
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT / "src"), env.get("PYTHONPATH", "")) if p)
    env.pop("SKYBUTLER_TRACEBACK", None)
    return env


def run_shell(source: str, directory: Path, where: str) -> int:
    done = subprocess.run(["bash", "-euo", "pipefail", "-c", source], cwd=directory, env=shell_environment(),
                          capture_output=True, text=True, stdin=subprocess.DEVNULL)
    assert done.returncode == 0, f"{where} failed ({done.returncode}):\n{source}\nstdout:\n{done.stdout}\n" \
                                 f"stderr:\n{done.stderr}"
    checked = 0
    output = " ".join((done.stdout + done.stderr).split())
    for line in source.splitlines():
        quoted = re.search(r'\s#\s*"([^"]+)"', line)
        if quoted and not line.lstrip().startswith("#"):
            assert quoted.group(1) in output, f"{where}: {line.strip()!r} should print {quoted.group(1)!r}"
            checked += 1
    return checked


@pytest.mark.slow
@pytest.mark.parametrize("document", sorted(DOCUMENTS))
def test_every_code_block_runs_in_order(document, tmp_path, monkeypatch):
    path = DOCUMENTS[document]
    python_dir, shell_dir = tmp_path / "python", tmp_path / "shell"
    python_dir.mkdir()
    shell_dir.mkdir()
    monkeypatch.chdir(python_dir)
    namespace: dict = {"__name__": f"docs_{document}"}
    ran = {"python": 0, "bash": 0}
    checked = 0
    try:
        for language, line, text in blocks(path):
            where = f"{path.name} line {line}"
            if language == "python":
                checked += run_python(text, namespace, where)
            elif language == "bash":
                checked += run_shell(text, shell_dir, where)
            else:
                continue
            ran[language] += 1
    finally:
        butler = namespace.get("butler")
        if butler is not None and hasattr(butler, "close"):
            butler.close()
    assert ran["python"] > 0 and ran["bash"] > 0
    if document == "user-guide":
        assert checked >= 3  # the outputs the guide shows are checked, not only run


def test_the_schema_diagram_is_current(tmp_path):
    """docs/schema.md is what docs/schema_diagram.py draws from the code today: a schema change
    that forgets to regenerate it (or breaks the generator) fails here."""
    drawn = tmp_path / "schema.md"
    done = subprocess.run([sys.executable, str(ROOT / "docs" / "schema_diagram.py"), str(drawn)],
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert drawn.read_text() == (ROOT / "docs" / "schema.md").read_text(), \
        "docs/schema.md is stale: run python docs/schema_diagram.py"
