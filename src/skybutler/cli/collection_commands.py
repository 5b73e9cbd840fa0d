"""Collection commands: query-collections, register-collection, collection-chain,
remove-runs, remove-collections, certify-calibrations."""

from __future__ import annotations

import csv
import fnmatch
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from .. import Butler, Timespan
from ..models import CollectionType
from .helpers import (
    COLLECTION_TYPES,
    GLOB_CHARACTERS,
    TimeParam,
    confirm_option,
    confirm_or_refuse,
    fail,
    info,
    json_option,
    open_butler,
    print_rows,
    refs_in_collection,
    repo_argument,
    split_csv_option,
)

if TYPE_CHECKING:
    from astropy.time import Time

collection_type_choice = click.Choice(COLLECTION_TYPES, case_sensitive=False)


@click.command("query-collections")
@repo_argument
@click.argument("patterns", nargs=-1)
@click.option("--type", "--collection-type", "types", type=collection_type_choice, multiple=True,
              help="Only collections of this type (repeatable).")
@click.option("--flatten", is_flag=True, help="Also list the collections each matching chain searches, in order.")
@click.option("--chains", type=click.Choice(["table", "inverse-table", "tree", "inverse-tree", "flatten",
                                            "no-children"], case_sensitive=False), default="table",
              help="As the Rubin butler's: table lists each chain with its children, inverse-table each "
                   "collection with the chains holding it, tree each chain's children (and theirs) indented "
                   "below it, inverse-tree each collection's parent chains (and theirs), flatten what the "
                   "matching chains search, in order, without the chains (--flatten lists them too), "
                   "no-children the matching collections alone.")
@click.option("--show-dataset-types", is_flag=True,
              help="Also list the dataset types each collection holds datasets of (a chain: those of what it "
                   "searches).")
@click.option("--exclude-dataset-types", multiple=True, metavar="GLOBS",
              help="Leave these dataset types (globs, comma-separated or repeated) out of --show-dataset-types.")
@json_option
@click.option("--csv", "as_csv", is_flag=True,
              help="Print CSV (a header line, then one row each; children separated by spaces).")
def query_collections(repo: Path, patterns: tuple[str, ...], types: tuple[str, ...], flatten: bool, chains: str,
                      show_dataset_types: bool, exclude_dataset_types: tuple[str, ...], as_json: bool,
                      as_csv: bool) -> None:
    """List collections whose names match the glob PATTERNS (default: all; several, or comma-separated)."""
    if as_json and as_csv:
        fail("choose one of --json and --csv")
    chains = chains.lower()
    with open_butler(repo) as butler:
        found = {c.name: c for pattern in split_csv_option(patterns) or ("*",)
                 for c in butler.collections.query(pattern, types or None,
                                                   flatten_chains=flatten or chains == "flatten")}
        every = {c.name: c for c in butler.collections.query("*")} if chains.startswith(("inverse", "tree")) else {}
        held: dict[str, list[str]] | None = None
        if show_dataset_types:
            excluded = split_csv_option(exclude_dataset_types)
            held = {name: [t for t in listed if not any(fnmatch.fnmatchcase(t, g) for g in excluded)]
                    for name, listed in butler.collections.dataset_types([*found, *every]).items()}
    parents: dict[str, list[str]] = {}
    for chain in every.values():
        for child in chain.children:
            parents.setdefault(child, []).append(chain.name)
    if chains == "flatten" and not flatten:  # as the Rubin command: what the chains search, not the chains
        found = {name: c for name, c in found.items() if c.type is not CollectionType.CHAINED}
    if chains.endswith("tree"):
        _print_tree(sorted(found), every, parents, held, inverse=chains == "inverse-tree", as_json=as_json,
                    as_csv=as_csv)
        return
    related = {"inverse-table": "parents", "no-children": None}.get(chains, "children")
    rows = []
    for c in found.values():
        row: dict[str, Any] = {"name": c.name, "type": c.type}
        if related:
            row[related] = sorted(parents.get(c.name, ())) if related == "parents" else list(c.children)
        row["doc"] = c.doc
        if held is not None:
            row["dataset_types"] = held[c.name]
        rows.append(row)
    columns = list(rows[0]) if rows else None
    if as_csv:
        header = columns or ["name", "type", *([related] if related else []), "doc",
                             *(["dataset_types"] if held is not None else [])]
        _write_csv(header, [[_csv_cell(r[k]) for k in header] for r in rows])
        return
    print_rows(rows, as_json=as_json, columns=columns, empty=f"no collections match {' '.join(patterns) or '*'!r}")


def _csv_cell(value: Any) -> str:
    """A CSV cell: a collection type in lower case, a list as its items separated by spaces."""
    if isinstance(value, CollectionType):
        return value.value.lower()
    return " ".join(value) if isinstance(value, list) else str(value)


def _write_csv(header: list[str], rows: list[list[Any]]) -> None:
    writer = csv.writer(sys.stdout, lineterminator="\n")
    writer.writerow(header)
    writer.writerows(rows)


def _print_tree(names: list[str], every: dict[str, Any], parents: dict[str, list[str]],
                held: dict[str, list[str]] | None, *, inverse: bool, as_json: bool, as_csv: bool) -> None:
    """The Rubin butler's ``--chains tree``: each collection, then, indented two spaces a level,
    the children of a chain in search order (and theirs); ``inverse-tree``: the chains holding
    it, by name (and theirs).  JSON and CSV give each row's ``depth`` instead of the indent;
    ``held`` adds each row's dataset types."""
    rows: list[dict[str, Any]] = []

    def add(name: str, depth: int) -> None:
        rows.append({"name": name, "type": every[name].type.value.lower(), "depth": depth,
                     **({"dataset_types": held[name]} if held is not None else {})})
        for other in sorted(parents.get(name, ())) if inverse else every[name].children:
            add(other, depth + 1)

    for name in names:
        add(name, 0)
    header = ["name", "type", "depth", *(["dataset_types"] if held is not None else [])]
    if as_csv:
        _write_csv(header, [[_csv_cell(r[k]) for k in header] for r in rows])
    elif as_json:
        print_rows(rows, as_json=True)
    else:
        print_rows([{**r, "name": "  " * r["depth"] + r["name"]} for r in rows], as_json=False,
                   columns=[k for k in header if k != "depth"], empty="no collections match")


@click.command("register-collection")
@repo_argument
@click.argument("name")
@click.option("--type", "kind", type=collection_type_choice, required=True, help="Collection type.")
@click.option("--doc", default="", help="A line of documentation for the collection.")
def register_collection(repo: Path, name: str, kind: str, doc: str) -> None:
    """Create collection NAME of the given type."""
    with open_butler(repo) as butler:
        new = butler.collections.register(name, kind, doc)
    verb = "registered" if new else "already exists:"
    info(f"{verb} {kind.upper()} collection {name}")


@click.command("collection-chain")
@repo_argument
@click.argument("parent")
@click.argument("children", nargs=-1)
@click.option("--mode", type=click.Choice(["redefine", "extend", "prepend", "remove", "pop"]), default="redefine",
              show_default=True,
              help="redefine: CHILDREN become the whole chain; prepend: put them first; extend: append them at "
                   "the end (children already in the chain move); remove: take CHILDREN out; pop: take out the "
                   "children at the positions CHILDREN (integers, from 0; default 0).")
@click.option("--flatten/--no-flatten", default=False,
              help="Put in, or take out, the collections each chained child searches instead of the child.")
@click.option("--doc", default="", help="Documentation of PARENT if this command creates it.")
def collection_chain(repo: Path, parent: str, children: tuple[str, ...], mode: str, flatten: bool,
                     doc: str) -> None:
    """Define or change the CHAINED collection PARENT (created if missing); CHILDREN may be
    comma-separated, as the Rubin butler takes them."""
    children = tuple(split_csv_option(children))
    if not children and mode != "pop":
        raise click.BadParameter(f"--mode {mode} needs at least one child collection", param_hint="CHILDREN")
    with open_butler(repo) as butler:
        if flatten and mode != "pop":
            children = tuple(butler.collections.flatten(children))
        if mode in ("redefine", "extend", "prepend"):
            with butler.transaction():  # a chain refused is not left created
                if doc and not butler.collections.exists(parent):
                    butler.collections.register(parent, CollectionType.CHAINED, doc=doc)
                if mode == "redefine":
                    butler.collections.set_chain(parent, children)
                else:
                    butler.collections.extend_chain(parent, children, prepend=mode == "prepend")
        else:
            chain = list(butler.collections.get_chain(parent))
            if mode == "remove":
                missing = [c for c in children if c not in chain]
                if missing:
                    fail(f"{', '.join(missing)} not in chain {parent!r} ({', '.join(chain) or 'empty'})")
                drop = set(children)
            else:
                drop = {chain[i] for i in _positions(children or ("0",), len(chain), parent)}
            butler.collections.set_chain(parent, [c for c in chain if c not in drop])
        chain = butler.collections.get_chain(parent)
    info(f"{parent} = {', '.join(chain)}")


def _positions(texts: tuple[str, ...], length: int, parent: str) -> list[int]:
    """The chain positions typed for ``--mode pop`` (negative ones count from the end)."""
    positions = []
    for text in texts:
        try:
            position = int(text)
        except ValueError:
            raise click.BadParameter(f"--mode pop takes positions (integers), got {text!r}",
                                     param_hint="CHILDREN") from None
        if not -length <= position < length:
            fail(f"chain {parent!r} has {length} child collection(s): no position {position}")
        positions.append(position)
    return positions


def _removal_rows(butler: Butler, names: list[str], want_runs: bool,
                  unlink: bool = False) -> list[dict[str, Any]]:
    """What removing ``names`` would remove; refuses wrong types and, unless ``unlink``,
    collections still in chains that are not removed with them."""
    rows = []
    for name in names:
        described = butler.collections.info(name)
        kind = described.type
        if want_runs and kind is not CollectionType.RUN:
            fail(f"{name!r} is a {kind.value} collection, not a RUN; use remove-collections")
        if not want_runs and kind is CollectionType.RUN:
            fail(f"{name!r} is a RUN collection; use remove-runs (it deletes its datasets too)")
        parents = [p for p in butler.collections.parents(name) if p not in names]
        if parents and not unlink:
            fail(f"{name!r} is in chain(s) {', '.join(parents)}; remove it from them first"
                 + (" (or pass --force)" if want_runs else ""))
        row: dict[str, Any] = {"name": name, "type": kind}
        if kind is CollectionType.CHAINED:
            row["contents"] = f"{len(described.children)} child collection(s)"
        else:
            row["contents"] = f"{len(refs_in_collection(butler, name))} dataset(s)"
        if want_runs or unlink:
            row["unlinked from"] = ", ".join(parents)
        rows.append(row)
    return rows


def _run_names(butler: Butler, given: tuple[str, ...], *, runs: bool = True) -> list[str]:
    """The RUN collections named (or, not ``runs``, the other kinds), each glob (as the Rubin
    butler's ``remove-runs`` and ``remove-collections`` take one) replaced by the collections of
    those kinds it matches; a glob matching none is an error."""
    kinds = ["run"] if runs else ["tagged", "chained", "calibration"]
    names: list[str] = []
    for item in given:
        if GLOB_CHARACTERS.isdisjoint(item):
            names.append(item)
            continue
        matched = sorted(c.name for c in butler.collections.query(item, kinds))
        if not matched:
            fail(f"no {'RUN' if runs else 'TAGGED, CHAINED or CALIBRATION'} collection matches {item!r}")
        names += matched
    return list(dict.fromkeys(names))


@click.command("remove-runs")
@repo_argument
@click.argument("names", nargs=-1, required=True)
@confirm_option
@click.option("--force", is_flag=True,
              help="Take the RUNs out of the chains holding them (also done when confirmed at the prompt).")
def remove_runs(repo: Path, names: tuple[str, ...], yes: bool, force: bool) -> None:
    """Delete RUN collections NAMES (or globs) with all their datasets and files."""
    with open_butler(repo) as butler:
        unique = _run_names(butler, names)
        rows = _removal_rows(butler, unique, want_runs=True, unlink=force or not yes)
        print_rows(rows, as_json=False, title="RUN collections to remove, with their datasets and files")
        confirm_or_refuse(f"Remove these {len(unique)} RUN(s) and every dataset in them?", yes)
        parents = dict.fromkeys(p for name in unique for p in butler.collections.parents(name))
        with butler.transaction():
            for parent in parents:
                butler.collections.set_chain(parent, [c for c in butler.collections.get_chain(parent)
                                                      if c not in unique])
            removed = butler.remove_runs(unique)
    info(f"removed {len(unique)} RUN collection(s) and {removed} dataset(s)")


def _parents_first(butler: Butler, names: list[str]) -> list[str]:
    """``names`` ordered so that a chain comes before the collections it holds."""
    pending = list(names)
    ordered: list[str] = []
    while pending:
        name = next(n for n in pending
                    if not set(butler.collections.parents(n)) & (set(pending) - {n}))
        ordered.append(name)
        pending.remove(name)
    return ordered


@click.command("remove-collections")
@repo_argument
@click.argument("names", nargs=-1, required=True)
@confirm_option
@click.option("--remove-from-parents", is_flag=True,
              help="Take the collections out of the chains holding them (as the Rubin butler's); otherwise a "
                   "collection still in a chain is refused.")
def remove_collections(repo: Path, names: tuple[str, ...], yes: bool, remove_from_parents: bool) -> None:
    """Remove TAGGED, CHAINED or CALIBRATION collections NAMES (their datasets stay in their RUNs):
    all of them in one transaction.  A glob (``'u/ana/*'``) names the collections of those
    types it matches, leaving RUNs alone."""
    with open_butler(repo) as butler:
        unique = _run_names(butler, names, runs=False)
        rows = _removal_rows(butler, unique, want_runs=False, unlink=remove_from_parents)
        print_rows(rows, as_json=False, title="collections to remove (datasets stay in their RUNs)")
        confirm_or_refuse(f"Remove these {len(unique)} collection(s)?", yes)
        ordered = _parents_first(butler, unique)
        parents = dict.fromkeys(p for name in unique for p in butler.collections.parents(name) if p not in unique)
        with butler.transaction():
            for parent in parents:
                butler.collections.set_chain(parent, [c for c in butler.collections.get_chain(parent)
                                                      if c not in unique])
            for name in ordered:
                butler.collections.remove(name)
    info(f"removed {len(unique)} collection(s)")


@click.command("certify-calibrations")
@repo_argument
@click.argument("from_run")
@click.argument("to_calib_collection")
@click.argument("dataset_type")
@click.option("--begin-date", "--begin", "begin", type=TimeParam(),
              help="Start of validity, ISO time (TAI); omit for unbounded.")
@click.option("--end-date", "--end", "end", type=TimeParam(),
              help="End of validity (exclusive), ISO time (TAI); omit for unbounded.")
@click.option("--search-all-inputs", is_flag=True,
              help="A CHAINED FROM_RUN: certify the first of each data ID in everything the chain searches, "
                   "not only in its first child (as the Rubin butler's).")
def certify_calibrations(repo: Path, from_run: str, to_calib_collection: str, dataset_type: str,
                         begin: Time | None, end: Time | None, search_all_inputs: bool) -> None:
    """Certify every DATASET_TYPE dataset of FROM_RUN into TO_CALIB_COLLECTION over [begin, end).

    FROM_RUN may be a RUN, TAGGED or CALIBRATION collection, or a chain: its first child (what
    that child finds first, if a chain), or with --search-all-inputs what the whole chain finds
    first."""
    try:
        span = Timespan(begin, end)
    except ValueError:
        raise click.BadParameter("--end-date is before --begin-date", param_hint="--end-date") from None
    with open_butler(repo) as butler:
        described = butler.collections.info(from_run)
        source = from_run
        if described.type is CollectionType.CHAINED and not search_all_inputs:
            if not described.children:
                fail(f"chain {from_run!r} is empty: nothing to certify")
            source = described.children[0]
            described = butler.collections.info(source)
        if described.type is CollectionType.CHAINED:
            calibrations = [c for c in butler.collections.flatten(source)
                            if butler.collections.info(c).type is CollectionType.CALIBRATION]
            if calibrations:
                fail(f"chain {source!r} searches the CALIBRATION collection(s) {', '.join(calibrations)}, where "
                     "which dataset comes first depends on a time: certify from that collection itself, or from "
                     "a chain of RUN and TAGGED collections")
            refs = list(butler.query_datasets(dataset_type, collections=source, find_first=True))
        else:
            refs = refs_in_collection(butler, source, dataset_type)
        if not refs:
            fail(f"no {dataset_type} datasets in {source!r}: nothing to certify")
        butler.collections.certify(to_calib_collection, refs, timespan=span)
    begin_text = "the beginning of time" if begin is None else f"{begin.tai.isot} TAI"
    end_text = "with no end" if end is None else f"until {end.tai.isot} TAI"
    info(f"certified {len(refs)} {dataset_type} dataset(s) into {to_calib_collection}, valid from {begin_text} "
         f"{end_text}")


COMMANDS = (query_collections, register_collection, collection_chain, remove_runs, remove_collections,
            certify_calibrations)
