"""The software a quantum ran with: Python, package versions, git SHAs, host."""

from __future__ import annotations

import functools
import hashlib
import json
import platform
import socket
import subprocess
import sys
from importlib import metadata
from pathlib import Path
from typing import Any

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


def environment(task_modules: tuple[str, ...] = ()) -> dict[str, Any]:
    """Versions of Python, the core packages and the packages of ``task_modules``, with
    the git SHA of each of those packages' checkouts where there is one."""
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
    return {"python": platform.python_version(), "platform": platform.platform(), "packages": packages,
            "git": git}


def environment_id(description: dict[str, Any]) -> str:
    """A stable ID of an environment description (its content hash)."""
    return hashlib.sha1(json.dumps(description, sort_keys=True).encode()).hexdigest()


@functools.cache
def hostname() -> str:
    return socket.gethostname()
