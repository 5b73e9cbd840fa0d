"""CLI start-up benchmark: how long a user waits for ``skybutler --help`` and for a trivial
command (``query-collections`` on a small repository).

Each command runs as a fresh subprocess (``python -m skybutler.cli``, the same code the
``skybutler`` script runs), 5 times (``--reps``) after one warm-up; the median wall time
and the median CPU time of the child (user + system, less inflated than wall time by other
work on a shared machine) are printed, and written as JSON with ``--json FILE``.  The small
repository is a new SQLite one with three collections, made once in a temporary directory.

Children run with byte-code caching on (as from an installed package), whatever
``PYTHONDONTWRITEBYTECODE`` says here: otherwise every run recompiles skybutler's sources.
``query-collections --json`` is timed too (it prints without rich).  Two floors are measured
beside the commands: a bare interpreter, and one importing what a command that opens a
repository and prints a table cannot do without (SQLAlchemy with its SQLite dialect, PyYAML,
click, rich).  Which heavy libraries ``query-collections`` loads is printed too (none is the
goal; pydantic neither: the data model is plain classes), and which of the floor's, for a
table, ``--json`` and ``--csv`` (rich only a table needs).

    python benchmarks/bench_cli_startup.py [--json FILE] [--reps N]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

#: Libraries a command that reads no dataset should not load.
HEAVY = ("astropy", "pyarrow", "numpy", "pandas", "dask", "lsst.sphgeom", "lark", "fsspec", "sqlalchemy")

#: Libraries reported for each output shape of ``query-collections``: rich only a table needs;
#: pydantic (only the server and remote client use it) and SQLAlchemy's ORM none.
LIGHT = ("pydantic", "rich", "yaml", "click", "sqlalchemy.orm")

#: What a command that opens a repository and prints a table needs anyway: the floor of its start-up.
FLOOR_IMPORTS = "import sqlalchemy, sqlalchemy.dialects.sqlite, yaml, click, rich.console, rich.table"


def child_env() -> dict[str, str]:
    env = dict(os.environ)
    env.pop("PYTHONDONTWRITEBYTECODE", None)
    return env


def time_command(args: list[str], reps: int, *, python_args: tuple[str, ...] = ("-m", "skybutler.cli")
                 ) -> dict[str, float]:
    """Median wall and child CPU seconds of ``python -m skybutler.cli ARGS`` over ``reps`` runs."""
    walls, cpus = [], []
    for i in range(reps + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, *python_args, *args], check=True, stdout=subprocess.DEVNULL,
                       env=child_env())
        wall = time.perf_counter() - start
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        if i:  # the first run warms the file cache
            walls.append(wall)
            cpus.append(after.ru_utime - before.ru_utime + after.ru_stime - before.ru_stime)
    return {"wall_s": round(statistics.median(walls), 3), "cpu_s": round(statistics.median(cpus), 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", type=Path, help="Write the figures to this JSON file.")
    parser.add_argument("--reps", type=int, default=5)
    options = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        repo = Path(tmp) / "repo"
        subprocess.run([sys.executable, "-m", "skybutler.cli", "create", str(repo)], check=True,
                       stdout=subprocess.DEVNULL)
        for name in ("run/a", "run/b", "tagged/c"):
            kind = "tagged" if name.startswith("tagged") else "run"
            subprocess.run([sys.executable, "-m", "skybutler.cli", "register-collection", str(repo), name,
                            "--type", kind], check=True, stdout=subprocess.DEVNULL)
        figures = {
            "help": time_command(["--help"], options.reps),
            "query_collections": time_command(["query-collections", str(repo)], options.reps),
            "query_collections_json": time_command(["query-collections", str(repo), "--json"], options.reps),
            "floor_bare_python": time_command([], options.reps, python_args=("-c", "pass")),
            "floor_sqlalchemy_yaml_click_rich": time_command([], options.reps, python_args=("-c", FLOOR_IMPORTS)),
        }
        loaded = {}
        for shape, extra in (("table", []), ("json", ["--json"]), ("csv", ["--csv"])):
            probe = ("import sys\nfrom skybutler.cli.main import cli\ntry:\n"
                     f"    cli(['query-collections', {str(repo)!r}, *{extra!r}])\nexcept SystemExit:\n    pass\n"
                     f"print(sorted(m for m in {HEAVY + LIGHT!r} if m in sys.modules), file=sys.stderr)")
            loaded[shape] = subprocess.run([sys.executable, "-c", probe], check=True, capture_output=True,
                                           text=True, env=child_env()).stderr.strip()
    figures["query_collections_loads"] = loaded
    figures["python"] = sys.version.split()[0]
    figures["load_average_1min"] = round(os.getloadavg()[0], 2)
    for name in ("help", "query_collections", "query_collections_json", "floor_bare_python",
                 "floor_sqlalchemy_yaml_click_rich"):
        print(f"{name:<38} wall {figures[name]['wall_s']:.3f} s   cpu {figures[name]['cpu_s']:.3f} s  (median of "
              f"{options.reps})")
    print(f"query-collections loads, of {', '.join(HEAVY + LIGHT)}:")
    for shape, names in loaded.items():
        print(f"  as {shape:<6} {names}")
    print(f"load average (1 min): {figures['load_average_1min']}")
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
