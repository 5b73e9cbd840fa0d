"""The software a quantum ran with: Python, package versions, host, and for each task of
its pipeline the content hash of the task's code and of its resolved config.

Whether a task's code changed is answered from those hashes, not from git: a copy without
git still notices a behaviour change, and an edit to a pipeline YAML alone is a config
change (if it changed a config value) but never a code change.  The git SHAs of
checkouts are still recorded, for people to read.
"""

from __future__ import annotations

import functools
import hashlib
import inspect
import json
import platform
import socket
import subprocess
import sys
import types
from collections.abc import Mapping
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..pipeline.pipeline import TaskDef

#: Distributions whose versions are always recorded.
CORE_PACKAGES = ("skybutler", "numpy", "astropy", "sqlalchemy", "pydantic", "pyarrow")


@functools.cache
def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


@functools.cache
def git_sha(path: str) -> str | None:
    """The commit of the git checkout holding ``path`` ("+dirty" if it has changes), or None."""
    folder = Path(path).resolve()
    folder = folder if folder.is_dir() else folder.parent
    try:
        sha = subprocess.run(["git", "-C", str(folder), "rev-parse", "HEAD"], capture_output=True, text=True,
                             timeout=5).stdout.strip()
        if not sha:
            return None
        dirty = subprocess.run(["git", "-C", str(folder), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True, timeout=5).stdout.strip()
        return sha + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        return None


def _top_package(module: str) -> str:
    return module.split(".", 1)[0]


#: The pipeline framework's modules: the task API, not any task's code.
_FRAMEWORK = frozenset(f"skybutler.pipeline.{m}" for m in ("task", "connections", "errors", "pipeline", "builder",
                                                           "graph", "prerequisites"))


def _code_modules(cls: type) -> list[types.ModuleType]:
    """The modules whose source makes up a task: the one defining it, those defining its base
    classes, and, recursively, the modules of the same package that any of them uses (a task
    module that calls helpers in sibling modules).  skybutler's pipeline framework
    (``skybutler.pipeline``) is not task code, except a task defined there."""
    roots = [sys.modules[c.__module__] for c in cls.__mro__ if c.__module__ in sys.modules
             and not (c.__module__ == "builtins" or c.__module__ in _FRAMEWORK)]
    found: dict[str, types.ModuleType] = {}
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module.__name__ in found or getattr(module, "__file__", None) is None:
            continue
        found[module.__name__] = module
        package = module.__name__.rpartition(".")[0] or module.__name__
        for value in vars(module).values():
            used = value if isinstance(value, types.ModuleType) else sys.modules.get(getattr(value, "__module__", "")
                                                                                      or "")
            if used is not None and used.__name__.startswith(package + ".") and used.__name__ not in found \
                    and used.__name__ not in _FRAMEWORK:
                todo.append(used)
    return [found[name] for name in sorted(found)]


@functools.cache
def code_hash(cls: type) -> str:
    """A content hash (SHA-256) of a task's code: the source of the modules :func:`_code_modules`
    names, by module name.  The same code gives the same hash in any copy, with or without git."""
    digest = hashlib.sha256()
    for module in _code_modules(cls):
        try:
            source = inspect.getsource(module)
        except (OSError, TypeError):
            source = ""  # no source (a compiled module): its name alone
        digest.update(module.__name__.encode() + b"\0" + source.encode() + b"\0")
    return digest.hexdigest()


def config_hash(config: Any) -> str:
    """A content hash (SHA-256) of a resolved task config (a TaskConfig or its JSON dict)."""
    data = config.model_dump(mode="json") if hasattr(config, "model_dump") else config
    return hashlib.sha256(json.dumps(data, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def task_identities(tasks: Mapping[str, TaskDef]) -> dict[str, dict[str, Any]]:
    """Per task label: class path, code hash, config hash and dataset-type renames."""
    return {label: {"class": t.class_path, "code": code_hash(t.task_class), "config": config_hash(t.config),
                    "connections": dict(t.renames)} for label, t in tasks.items()}


def environment(task_modules: tuple[str, ...] = (), tasks: Mapping[str, TaskDef] | None = None) -> dict[str, Any]:
    """Versions of Python, the core packages and the packages of ``task_modules``, with
    the git SHA of each of those packages' checkouts where there is one; with ``tasks``
    (a pipeline's task definitions by label) also each task's identity
    (:func:`task_identities`)."""
    packages = {name: _version(name) for name in CORE_PACKAGES}
    git: dict[str, str] = {}
    for module_name in sorted({_top_package(m) for m in (*task_modules, "skybutler")}):
        module = sys.modules.get(module_name)
        if module_name not in packages:
            packages[module_name] = _version(module_name) or getattr(module, "__version__", None)
        location = getattr(module, "__file__", None)
        sha = git_sha(location) if location else None
        if sha:
            git[module_name] = sha
    out = {"python": platform.python_version(), "platform": platform.platform(), "packages": packages, "git": git}
    if tasks:
        out["tasks"] = task_identities(tasks)
    return out


def environment_id(description: dict[str, Any]) -> str:
    """A stable ID of an environment description (its content hash)."""
    return hashlib.sha1(json.dumps(description, sort_keys=True).encode()).hexdigest()


@functools.cache
def hostname() -> str:
    return socket.gethostname()
