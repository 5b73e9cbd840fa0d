"""Pipeline commands: qgraph (build, save, show a quantum graph), run, provenance, quanta."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.tree import Tree

from ..execution import EXECUTORS, build_graph, execute_graph
from ..pipeline import Pipeline, QuantumGraph
from ..provenance import ProvenanceNode
from ..registry.quantum_store import QuantumRecord
from .helpers import (
    RepoLocation,
    fail,
    info,
    jobs_option,
    json_option,
    open_butler,
    parse_data_id,
    print_json,
    print_rows,
    repo_argument,
    resolve_jobs,
    split_csv_option,
    stdout_console,
)

MAX_SHOWN = 10


def graph_options(func: Any) -> Any:
    """Options shared by ``qgraph`` and ``run``."""
    options = [
        click.option("-b", "--butler", "repo", required=True, type=RepoLocation(),
                     help="The repository."),
        click.option("-i", "--input", "inputs", multiple=True, help="Input collections (repeat or comma-separate)."),
        click.option("-o", "--output", help="Output CHAINED collection; each run writes a new RUN OUTPUT/<time>."),
        click.option("--output-run", help="Write into this RUN instead of a new OUTPUT/<time> one."),
        click.option("-d", "-w", "--where", default="", help="Where-clause restricting the data IDs."),
        click.option("--skip-existing", is_flag=True, help="Skip quanta whose outputs already exist in OUTPUT."),
        click.option("--resume", is_flag=True, help="Go on in OUTPUT's newest RUN: skip done quanta, retry the rest."),
        click.option("--clobber", is_flag=True, help="Replace outputs already in the output RUN."),
        click.option("--incremental", is_flag=True,
                     help="Run only new quanta and those whose recorded inputs or config differ from today's, into "
                          "a new RUN in front of OUTPUT."),
        click.option("--calibrations", type=click.Choice(["refuse", "recorded", "today"]), default="refuse",
                     show_default=True, help="With --incremental: a quantum whose calibration was decertified or "
                     "superseded since it ran stops the run, reads the recorded one, or is redone with today's."),
        click.option("--software", "check_software", is_flag=True,
                     help="With --incremental: changed task code (its content hash) also redoes a quantum."),
        click.option("--ignore-config", is_flag=True,
                     help="With --incremental: a changed task config alone does not redo a quantum (as "
                          "'stale --ignore-config')."),
    ]
    for option in reversed(options):
        func = option(func)
    return func


def _graph(repo: Path, pipeline: str | None, graph_file: Path | None, inputs: tuple[str, ...], output: str | None,
           output_run: str | None, where: str, skip_existing: bool, resume: bool, clobber: bool, butler: Any,
           incremental: bool = False, calibrations: str = "refuse", check_software: bool = False,
           ignore_config: bool = False) -> QuantumGraph:
    if graph_file is not None:
        if pipeline is not None:
            fail("give a PIPELINE or --graph, not both")
        if inputs or output or output_run or where or skip_existing or resume or clobber or incremental:
            fail("-i, -o, --output-run, --where, --skip-existing, --resume and --clobber build a graph; "
                 "a saved graph (--graph) already has them")
        return QuantumGraph.load(graph_file, butler.universe)
    if pipeline is None:
        fail("give a PIPELINE file (or --graph FILE)")
    collections = split_csv_option(inputs)
    if not collections:
        fail("give the input collections with -i")
    if not incremental and (calibrations != "refuse" or check_software or ignore_config):
        fail("--calibrations, --software and --ignore-config go with --incremental")
    return build_graph(butler, Pipeline.from_yaml(pipeline), collections, output, output_run=output_run,
                       where=where, resume=resume, skip_existing=skip_existing, clobber=clobber,
                       incremental=incremental, calibrations=calibrations, software=check_software,
                       config=not ignore_config)


def show_graph(graph: QuantumGraph) -> None:
    """Per-task counts, the first quanta of each task, and quanta left out while building."""
    summary = graph.summary()
    info(f"[bold]{summary['quanta']}[/bold] quanta into RUN [cyan]{escape(graph.output_run)}[/cyan] from "
         f"{escape(', '.join(graph.input_collections))}" + (f" where {escape(graph.where)}" if graph.where else ""),
         markup=True)
    print_rows([{"task": label, "class": graph.pipeline[label].class_path, "quanta": n,
                 "skipped (outputs exist)": graph.skipped.get(label, 0)} for label, n in graph.counts().items()],
               as_json=False)
    rows = []
    for q in graph.first_of_each_task(MAX_SHOWN):  # a columnar graph makes only these quanta
        rows.append({"#": q.index, "task": q.task, "data ID": _data_id_text(q.data_id.required),
                     "inputs": sum(len(v) for v in q.inputs.values()),
                     "prerequisites": sum(len(v) for v in q.prerequisites.values()),
                     "outputs": sum(len(v) for v in q.outputs.values()),
                     "after": ", ".join(str(i) for i in sorted(q.dependencies())[:5])})
    print_rows(rows, as_json=False, title=f"quanta (first {MAX_SHOWN} of each task)", empty="no quanta")
    if graph.dropped:
        print_rows([{"task": d["task"], "data ID": _data_id_text(d["data_id"]), "reason": d["reason"]}
                    for d in graph.dropped[:50]], as_json=False, title=f"{len(graph.dropped)} quanta left out")


def _data_id_text(data_id: Any) -> str:
    return " ".join(f"{k}={v}" for k, v in dict(data_id).items())


@click.command("qgraph")
@click.argument("pipeline")
@graph_options
@click.option("--save", "save_to", type=click.Path(dir_okay=False, path_type=Path), help="Write the graph here.")
@click.option("--show", is_flag=True, help="Print the tasks, the first quanta and what was left out.")
@json_option
def qgraph(pipeline: str, repo: Path, inputs: tuple[str, ...], output: str | None, output_run: str | None,
           where: str, skip_existing: bool, resume: bool, clobber: bool, incremental: bool, calibrations: str,
           check_software: bool, ignore_config: bool, save_to: Path | None, show: bool, as_json: bool) -> None:
    """Build the quantum graph of PIPELINE (a YAML file, FILE#subset selects labels) over the inputs."""
    with open_butler(repo) as butler:
        graph = _graph(repo, pipeline, None, inputs, output, output_run, where, skip_existing, resume, clobber,
                       butler, incremental, calibrations, check_software, ignore_config)
    if save_to is not None:
        graph.save(save_to)
    if as_json:
        print_json({**graph.summary(), "saved": str(save_to) if save_to else None, "dropped": graph.dropped})
        return
    if show:
        show_graph(graph)
    else:
        info(f"{len(graph)} quanta: " + ", ".join(f"{k} {v}" for k, v in graph.counts().items())
             + (f"; unchanged (kept): {sum(graph.unchanged.values())}" if graph.unchanged else ""))
    for note in graph.notes:
        info(note)
    if save_to is not None:
        info(f"saved to {save_to}")


@click.command("run")
@click.argument("pipeline", required=False)
@graph_options
@click.option("-g", "--graph", "graph_file", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Run a graph saved by 'qgraph --save' instead of building one.")
@click.option("--executor", type=click.Choice(EXECUTORS), default="inline", show_default=True)
@jobs_option("Parallel workers of the pool or Dask executors")
@click.option("--dask-scheduler", metavar="ADDR", help="Address of a running Dask scheduler (with --executor dask).")
@click.option("--progress/--no-progress", default=True, show_default=True, help="Show a progress bar on stderr.")
@json_option
def run(pipeline: str | None, repo: Path, inputs: tuple[str, ...], output: str | None, output_run: str | None,
        where: str, skip_existing: bool, resume: bool, clobber: bool, incremental: bool, calibrations: str,
        check_software: bool, ignore_config: bool, graph_file: Path | None, executor: str, jobs: int | None,
        dask_scheduler: str | None, progress: bool, as_json: bool) -> None:
    """Run PIPELINE over the inputs into OUTPUT; failed quanta are listed and recorded, and
    the exit status is 1 if any quantum failed or was blocked."""
    if dask_scheduler and executor != "dask":
        fail("--dask-scheduler needs --executor dask")
    with open_butler(repo) as butler:
        graph = _graph(repo, pipeline, graph_file, inputs, output, output_run, where, skip_existing, resume,
                       clobber, butler, incremental, calibrations, check_software, ignore_config)
        report = execute_graph(butler, graph, executor, resolve_jobs(jobs), dask_scheduler=dask_scheduler,
                               progress=progress and not as_json)
    if as_json:
        print_json({**report.summary(), "failures": report.failed, "blocked_quanta": report.blocked})
    else:
        s = report.summary()
        info(escape(report.describe())
             + (f"; skipped (outputs exist): {s['skipped_existing']}" if s["skipped_existing"] else ""), markup=True)
        for note in report.notes:
            info(escape(note), markup=True)
        if report.failed:
            print_rows([{"task": f["task"], "data ID": _data_id_text(f["data_id"]), "error": f["error"]}
                        for f in report.failed[:50]], as_json=False, title="failed quanta")
    if not report.ok:
        fail(f"{len(report.failed)} quanta failed and {len(report.blocked)} were blocked; see "
             f"'skybutler quanta {repo} --run {report.run} --status failed'; rerun with --resume")


def _resolve(butler: Any, target: str, pairs: tuple[str, ...], collections: tuple[str, ...]):
    try:
        dataset_id = uuid.UUID(target)
    except ValueError:
        dataset_id = None
    if dataset_id is not None:
        if pairs:
            fail("give either a dataset ID or a dataset type with KEY=VALUE pairs")
        found = butler.registry.refs_by_id([dataset_id]) if butler.served_by is None else []
        return found[0] if found else dataset_id  # a server looks the ID up itself
    data_id = parse_data_id(butler.universe, pairs)
    ref = butler.find_dataset(target, data_id, collections=split_csv_option(collections) or None)
    if ref is None:
        fail(f"no {target} dataset with data ID {data_id} in {', '.join(collections) or 'the default collections'}")
    return ref


def _quantum_label(q: QuantumRecord) -> str:
    took = f" in {q.seconds:.2f} s" if q.seconds is not None else ""
    status = {"succeeded": "green", "failed": "red", "blocked": "yellow"}.get(q.status, "white")
    return (f"made by [bold]{escape(q.task_label)}[/bold] ({escape(q.task_class)}) "
            f"[{status}]{q.status}[/{status}] on {escape(q.host)}{took}; RUN {escape(q.run)}")


def _add_node(tree: Tree, node: ProvenanceNode) -> None:
    gone = "" if node.exists else " [red](purged)[/red]"
    label = (f"[cyan]{escape(node.dataset_type)}[/cyan] {escape(_data_id_text(node.data_id))} "
             f"[dim]{node.dataset_id}[/dim]{gone}")
    branch = tree.add(label)
    if node.quantum is not None:
        made = branch.add(_quantum_label(node.quantum))
        for child in node.inputs:
            _add_node(made, child)


def _node_json(node: ProvenanceNode) -> dict[str, Any]:
    q = node.quantum
    return {"dataset_type": node.dataset_type, "data_id": node.data_id, "id": str(node.dataset_id),
            "exists": node.exists,
            "quantum": None if q is None else {"id": str(q.quantum_id), "task": q.task_label, "class": q.task_class,
                                               "status": q.status, "run": q.run, "host": q.host,
                                               "seconds": q.seconds, "config_dataset_id": str(q.config_dataset_id)},
            "inputs": [_node_json(c) for c in node.inputs]}


@click.command("provenance")
@repo_argument
@click.argument("target", metavar="DATASET_ID_OR_TYPE")
@click.argument("pairs", nargs=-1, metavar="[KEY=VALUE...]")
@click.option("--collections", "-c", multiple=True, help="Collections to find DATASET_TYPE in.")
@click.option("--depth", type=click.IntRange(min=1), default=50, show_default=True, help="Levels of inputs shown.")
@json_option
def provenance(repo: Path, target: str, pairs: tuple[str, ...], collections: tuple[str, ...], depth: int,
               as_json: bool) -> None:
    """Show what made a dataset (recursively, down to its original inputs) and what used it."""
    with open_butler(repo) as butler:
        ref = _resolve(butler, target, pairs, collections)
        tree = butler.provenance.tree(ref, max_depth=depth)
        users = butler.provenance.consumers(tree.dataset_id)
        env = butler.provenance.environment(tree.quantum) if tree.quantum else None
    used = [{"task": q.task_label, "data ID": _data_id_text(q.data_id), "status": q.status, "run": q.run,
             "quantum": str(q.quantum_id)} for q in users]
    if as_json:
        print_json({"tree": _node_json(tree), "used_by": used, "environment": env})
        return
    root = Tree("[bold]provenance[/bold]")
    _add_node(root, tree)
    stdout_console().print(root)
    if tree.quantum is None:
        info("no recorded quantum made it (ingested or put directly)", style="dim")
    if env:
        info("software: " + ", ".join(f"{k} {v}" for k, v in env["packages"].items() if v)
             + "".join(f"; {k} git {v}" for k, v in env.get("git", {}).items()))
    print_rows(used, as_json=False, title="used by", empty="not used by any recorded quantum")


@click.command("quanta")
@repo_argument
@click.option("--run", "run_name", help="Only quanta of this RUN.")
@click.option("--task", help="Only quanta of this task label.")
@click.option("--status", type=click.Choice(["succeeded", "failed", "blocked"]), help="Only quanta with this status.")
@click.option("--log", "with_log", is_flag=True, help="Include each quantum's log excerpt.")
@json_option
def quanta(repo: Path, run_name: str | None, task: str | None, status: str | None, with_log: bool,
           as_json: bool) -> None:
    """List recorded quanta: task, data ID, status, time, error."""
    with open_butler(repo) as butler:
        records = butler.provenance.quanta(run=run_name, task=task, status=status)
    rows = [{"task": q.task_label, "data ID": _data_id_text(q.data_id), "status": q.status, "run": q.run,
             "seconds": None if q.seconds is None else round(q.seconds, 3), "error": q.error,
             **({"log": q.log} if with_log else {}), "quantum": str(q.quantum_id)} for q in records]
    print_rows(rows, as_json=as_json, empty="no recorded quanta")


@click.command("stale")
@repo_argument
@click.argument("dataset_type")
@click.option("--collections", "-c", multiple=True, required=True,
              help="Where the products are (find-first) and their inputs: usually the output chain.")
@click.option("-d", "-w", "--where", default="", help="Where-clause restricting the data IDs.")
@click.option("--pipeline", "pipeline_file",
              help="Today's pipeline YAML (default: the one recorded with the products).")
@click.option("--ignore-config", is_flag=True,
              help="A changed task config does not make a product stale (by default it does, as in run --incremental).")
@click.option("--software", "check_software", is_flag=True, help="Also changed task code (its content hash) does.")
@json_option
def stale(repo: Path, dataset_type: str, collections: tuple[str, ...], where: str, pipeline_file: str | None,
          ignore_config: bool, check_software: bool, as_json: bool) -> None:
    """List the DATASET_TYPE products that their task would not make the same way today, with why
    (inputs added, removed or remade upstream, calibration superseded or decertified, ...)."""
    with open_butler(repo) as butler:
        result = butler.provenance.staleness(
            dataset_type, split_csv_option(collections), where,
            pipeline=Pipeline.from_yaml(pipeline_file) if pipeline_file else None, config=not ignore_config,
            software=check_software)
        products = result.products(dataset_type)
    if as_json:
        print_json([p.to_dict() for p in products])
        return
    total = result.total(dataset_type)
    print_rows([{"data ID": _data_id_text(p.data_id), "run": p.run, "why": "; ".join(p.reasons)} for p in products],
               as_json=False, empty="none")
    info(f"{len(products)} of {total} {dataset_type} products stale")


COMMANDS = (qgraph, run, provenance, quanta, stale)  # recompute: retention_commands
