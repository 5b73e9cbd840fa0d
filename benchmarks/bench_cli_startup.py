"""CLI start-up benchmark: how long a user waits for ``skybutler --help`` and for a trivial
command (``query-collections`` on a small repository).

Each command runs as a fresh subprocess (``python -m skybutler.cli``, the same code the
``skybutler`` script runs), 5 times (``--reps``) after one warm-up; the median wall time
and the median CPU time of the child (user + system, less inflated than wall time by other
work on a shared machine) are printed, and written as JSON with ``--json FILE``.  The small
repository is a new SQLite one with three collections, made once in a temporary directory.

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


def time_command(args: list[str], reps: int) -> dict[str, float]:
    """Median wall and child CPU seconds of ``python -m skybutler.cli ARGS`` over ``reps`` runs."""
    walls, cpus = [], []
    for i in range(reps + 1):
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "skybutler.cli", *args], check=True, stdout=subprocess.DEVNULL)
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
        }
    figures["python"] = sys.version.split()[0]
    figures["load_average_1min"] = round(os.getloadavg()[0], 2)
    for name in ("help", "query_collections"):
        print(f"{name:<20} wall {figures[name]['wall_s']:.3f} s   cpu {figures[name]['cpu_s']:.3f} s  (median of "
              f"{options.reps})")
    print(f"load average (1 min): {figures['load_average_1min']}")
    if options.json:
        options.json.write_text(json.dumps(figures, indent=2) + "\n")


if __name__ == "__main__":
    main()
