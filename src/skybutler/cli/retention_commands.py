"""Retention commands: ``retention apply`` and ``retention status``, and ``recompute``."""

from __future__ import annotations

import sys
import uuid
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from ..retention.executor import EXECUTORS
from ..retention.ondemand import RecomputeOptions
from .helpers import (
    expand_collections,
    fail,
    info,
    jobs_option,
    json_option,
    open_butler,
    parse_data_id,
    print_json,
    print_rows,
    progress_bar,
    repo_argument,
    resolve_jobs,
    split_csv_option,
    stderr_console,
)


def _bytes(n: int) -> str:
    for unit in ("B", "kB", "MB", "GB", "TB"):
        if abs(n) < 1000 or unit == "TB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return str(n)


def tell_wait(message: str, seconds: float) -> None:
    """The CLI's wait notice: a status line on stdout."""
    info(message, style="yellow")


@click.group("retention")
def retention() -> None:
    """Retention policies (butler.yaml 'retention:'): purge or move old datasets to the cold tier."""


@retention.command("apply")
@repo_argument
@click.option("--dry-run", is_flag=True, help="Only report what would be purged or moved, and the bytes freed.")
@click.option("--now", metavar="ISO", help="Evaluate the policies at this time (default: now; UTC unless given).")
@click.option("--force", is_flag=True, help="Also purge datasets that could not be recomputed (they become "
                                            "purged-lost).")
@json_option
def retention_apply(repo: Path, dry_run: bool, now: str | None, force: bool, as_json: bool) -> None:
    """Apply the repository's retention policies: purge files or move them to the cold tier."""
    with open_butler(repo) as butler:
        if butler.config is not None and not butler.config.retention.policies:  # a server says so itself
            fail(f"{repo} has no retention policies (add 'retention: policies:' to butler.yaml)")
        with progress_bar("applying retention", enabled=not dry_run) as progress:
            report = butler.retention.apply(now=now, dry_run=dry_run, force=force, progress=progress)
    if as_json:
        print_json(report.to_dict())
        return
    rows = [{"action": a.action, "dataset type": a.dataset_type, "data ID": _data_id(a.data_id), "run": a.run,
             "state": f"{a.state} -> {a.new_state}", "size": _bytes(a.size), "age (d)": f"{a.age_days:.1f}",
             "policy": a.policy} for a in report.actions]
    verb = "would" if dry_run else "did"
    print_rows(rows, as_json=False, title=f"retention at {report.now.isoformat(timespec='seconds')}"
               + (" (dry run)" if dry_run else ""), empty="nothing is due")
    if report.refused:
        print_rows([{"dataset type": a.dataset_type, "data ID": _data_id(a.data_id), "run": a.run,
                     "action": a.action, "refused": a.reason} for a in report.refused],
                   as_json=False, title="refused")
    s = report.summary()
    info(f"{verb} purge {s['purged']} and move {s['moved_to_cold']} dataset(s) to the cold tier: "
         f"{_bytes(s['bytes_freed'])} freed in the datastore"
         + (f", {_bytes(s['bytes_freed_cold'])} in the cold tier" if s["bytes_freed_cold"] else "")
         + (f"; {s['refused']} refused" if s["refused"] else "")
         + (f"; {s['made_lost']} purged dataset(s) no longer recomputable" if s["made_lost"] else ""))


@retention.command("status")
@repo_argument
@json_option
def retention_status(repo: Path, as_json: bool) -> None:
    """Datasets and bytes per dataset type and state (stored, cold, purged-recomputable, purged-lost)."""
    with open_butler(repo) as butler:
        rows = butler.retention.status()
    print_rows(rows, as_json=as_json, empty="no datasets")


def _data_id(data_id: dict[str, Any]) -> str:
    return ", ".join(f"{k}={v}" for k, v in data_id.items())


def _targets(butler: Any, args: tuple[str, ...], collections: list[str], where: str) -> list[uuid.UUID]:
    """Dataset IDs from ``ID`` or ``TYPE [KEY=VALUE...]`` arguments; a TYPE without KEY=VALUE takes
    every purged dataset of the type in the collections (matching ``where``)."""
    groups: list[tuple[str, list[str]]] = []
    for arg in args:
        if "=" in arg:
            if not groups or groups[-1][0].startswith("id:"):
                fail(f"{arg!r} must follow a dataset type")
            groups[-1][1].append(arg)
            continue
        try:
            groups.append((f"id:{uuid.UUID(arg)}", []))
        except ValueError:
            groups.append((arg, []))
    out: list[uuid.UUID] = []
    for head, pairs in groups:
        if head.startswith("id:"):
            out.append(uuid.UUID(head[3:]))
            continue
        if not collections:
            fail(f"give the collections to find {head} in with -c")
        searched, _ = expand_collections(butler, collections)
        if pairs:
            data_id = parse_data_id(butler.universe, pairs)
            ref = butler.find_dataset(head, data_id, collections=searched)
            if ref is None:
                fail(f"no {head} dataset with data ID {' '.join(pairs)} in {', '.join(searched)}")
            out.append(ref.id)
        else:  # every purged dataset of the type in every collection given, not the first per data ID
            out += [r.id for r in butler.query_datasets(head, where, collections=searched, find_first=False,
                                                        states=["purged-recomputable", "purged-lost"])]
    return list(dict.fromkeys(out))


@click.command("recompute")
@repo_argument
@click.argument("datasets", nargs=-1, required=True, metavar="DATASET...")
@click.option("--collections", "-c", multiple=True, help="Collections to find dataset types in.")
@click.option("--where", "-w", "-d", default="", help="Where-clause for a DATASET given as a bare dataset type.")
@click.option("--dry-run", is_flag=True, help="Only say which quanta would run and the expected wait.")
@click.option("--executor", type=click.Choice(EXECUTORS), default="inline", show_default=True,
              help="Where the quanta are replayed.")
@jobs_option("Worker processes of the pool or Dask executors")
@click.option("--dask-scheduler", metavar="ADDRESS", help="A running Dask scheduler (default: a local cluster).")
@click.option("--on-drift", type=click.Choice(["refuse", "note"]), default="refuse", show_default=True,
              help="If the installed task code differs from the recorded version: refuse, or go on and record it.")
@click.option("--calibrations", "on_calibration", type=click.Choice(["refuse", "recorded", "today"]),
              default="refuse", show_default=True,
              help="If a calibration a quantum read was decertified or superseded since: refuse, re-create with the "
                   "recorded one (noted), or with the one certified today (noted; its provenance says so).")
@click.option("--no-store", is_flag=True, help="Recompute and verify without storing back (inline only).")
@json_option
def recompute(repo: Path, datasets: tuple[str, ...], collections: tuple[str, ...], where: str, dry_run: bool,
              executor: str, jobs: int | None, dask_scheduler: str | None, on_drift: str, on_calibration: str,
              no_store: bool, as_json: bool) -> None:
    """Re-create purged datasets from their recorded provenance (and the purged inputs they need).

    DATASET is a dataset ID, a dataset type with KEY=VALUE data-ID pairs, or a bare dataset
    type (every purged dataset of it in every collection of -c, globs allowed, matching
    --where).  The recorded quanta are replayed as a graph on the chosen executor, cold
    inputs staged back first.
    """
    with open_butler(repo, on_wait=None if as_json else tell_wait) as butler:
        ids = _targets(butler, datasets, split_csv_option(collections), where)
        if not ids:
            fail("nothing to recompute: no purged dataset matches")
        est = butler.retention.estimate(ids)
        if dry_run or not est.quanta and not est.stage:
            if as_json:
                print_json(est.to_dict())
                return
            for dataset_id in est.present:
                info(f"dataset {dataset_id} is present; nothing to do")
            if est.quanta or est.stage:
                info(est.describe())
            for line in est.drift:
                info(f"software drift: {line}", style="yellow")
            for line in est.calibrations:
                info(f"calibration changed: {line}", style="yellow")
            return
        options = RecomputeOptions(store=not no_store, on_drift=on_drift,  # type: ignore[arg-type]
                                   on_calibration=on_calibration)  # type: ignore[arg-type]
        with progress_bar("replaying quanta", enabled=not as_json) as progress:
            report = butler.retention.recompute(ids, options, executor=executor, jobs=resolve_jobs(jobs),
                                                dask_scheduler=dask_scheduler, progress=progress)
    if as_json:
        print_json(report.to_dict())
    else:
        for note in report.notes:
            info(note, style="yellow")
        for dataset_id, how in report.verified.items():
            if dataset_id in ids:
                info(f"re-created dataset {dataset_id} ({how})")
        for f in report.failed:
            info(f"failed: task {f['task']!r} {f['data_id']}: {f['error']}", style="red")
        if report.blocked:
            info(f"{len(report.blocked)} quanta blocked by the failures", style="red")
        info(f"{len(report.succeeded)} quanta replayed in {report.seconds:.1f} s "
             f"(expected {report.estimate.expected_seconds:.1f} s)")
    if not report.ok:
        raise click.exceptions.Exit(1)


COMMANDS = (retention, recompute)


def tell_wait_stderr(message: str, seconds: float) -> None:
    """A wait notice on stderr (for commands whose stdout is data)."""
    stderr_console().print(f"[yellow]{escape(message)}[/yellow]", soft_wrap=True)


def confirm_recompute(butler: Any, ref: Any, yes: bool) -> None:
    """Before reading a purged dataset: show what recomputing it takes and ask (unless ``yes``);
    nothing is asked if it was recomputed or restored since it was found purged."""
    from ..registry.dataset_state_store import PURGED

    if butler.retention.state(ref).state not in PURGED:
        return
    est = butler.retention.estimate([ref])
    tell_wait_stderr(f"{ref} was purged; recomputing it: {est.describe()}", est.expected_seconds)
    for line in est.drift:
        tell_wait_stderr(f"software drift: {line}", 0.0)
    if yes:
        return
    if not sys.stdin.isatty():
        fail("not an interactive terminal: nothing was recomputed; pass --yes to confirm")
    if not click.confirm("Recompute it now?", default=False, err=True):
        fail("cancelled: nothing was recomputed")
