"""The provenance graph page: a dataset with everything upstream of it (the quanta that made
it and their inputs and configs, down to the raws) and one step downstream (the quanta that
read it and what they wrote), drawn as server-made SVG.

The graph comes from ``butler.provenance`` (``tree`` upstream, ``consumers`` downstream)
under the same rights as the provenance API: a dataset the user may not see (a RUN they
may not read, an embargo) is left out with everything above it, and so is a quantum of
a RUN they may not read.  The layout is a layered drawing: each node's column is its
longest distance from the dataset (data flows left to right into it), and the nodes of
a column are ordered by the mean row of what they feed.  Every dataset node links to its
dataset page and its own graph page, so the graph is walked by following links; a table
lists the same nodes for keyboard and screen-reader use.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter, Depends, Request
from starlette.responses import Response

from ..access import User
from ..butler import Butler
from ..models import DatasetRef
from ..server import authz
from ..server.state import ServerState
from .session import page_user
from .templating import render

router = APIRouter()

MAX_NODES = 400
"""The most nodes a graph page draws; the rest is named in a note."""

NODE_W, NODE_H, GAP_X, GAP_Y, PAD = 200, 42, 70, 14, 12
"""Node box size, gaps between columns and rows, and the margin of the drawing (SVG pixels)."""


@dataclass
class Node:
    """A dataset or a quantum of the graph."""

    key: str
    kind: str  # "dataset" or "quantum"
    label: str
    detail: str
    dataset_id: uuid.UUID | None = None
    exists: bool = True
    status: str = ""
    focus: bool = False
    layer: int = 0
    x: float = 0.0
    y: float = 0.0
    quantum: Any = None


@dataclass
class Graph:
    """Nodes with their positions, edges (from key, to key, kind), and what was left out."""

    nodes: dict[str, Node] = field(default_factory=dict)
    edges: list[tuple[str, str, str]] = field(default_factory=list)
    truncated: int = 0
    width: float = 0.0
    height: float = 0.0
    environments: dict[str, Any] = field(default_factory=dict)

    def add(self, node: Node) -> bool:
        """Add ``node`` unless it is there; False when the graph is full."""
        if node.key in self.nodes:
            return True
        if len(self.nodes) >= MAX_NODES:
            self.truncated += 1
            return False
        self.nodes[node.key] = node
        return True

    def link(self, source: str, target: str, kind: str = "data") -> None:
        if source in self.nodes and target in self.nodes and (source, target, kind) not in self.edges:
            self.edges.append((source, target, kind))


def data_id_text(data_id: Any) -> str:
    """``visit=42 detector=3``: a data ID without its instrument, for labels."""
    return " ".join(f"{k}={v}" for k, v in dict(data_id).items() if k != "instrument")


def _dataset_node(dataset_id: uuid.UUID, dataset_type: str, data_id: Any, exists: bool = True) -> Node:
    return Node(key=f"d:{dataset_id}", kind="dataset", label=dataset_type, detail=data_id_text(data_id),
                dataset_id=dataset_id, exists=exists)


def _quantum_node(record: Any) -> Node:
    return Node(key=f"q:{record.quantum_id}", kind="quantum", label=record.task_label,
                detail=f"{record.status} · {data_id_text(record.data_id)}", status=record.status, quantum=record)


def build_graph(butler: Butler, user: User, ref: DatasetRef) -> Graph:
    """The provenance graph of ``ref`` as ``user`` may see it (``ref`` itself must be visible)."""
    graph = Graph()
    tree = butler.provenance.tree(ref)
    known = [n.dataset_id for n in tree.walk()]
    consumers = [q for q in butler.provenance.consumers(ref) if user.may(q.run, "read")]
    for q in consumers:
        known += [link.dataset_id for link in q.outputs]
    producers = [n.quantum for n in tree.walk() if n.quantum is not None]
    known += [q.config_dataset_id for q in producers + consumers]
    visible = authz.visible_ids(butler, user, known)
    visible.add(ref.id)

    focus = _dataset_node(ref.id, ref.dataset_type.name, ref.data_id.required)
    focus.focus = True
    graph.add(focus)
    todo = [(tree, focus.key)]
    while todo:
        node, key = todo.pop(0)
        record = node.quantum
        if record is None or not user.may(record.run, "read"):
            continue
        qnode = _quantum_node(record)
        if not graph.add(qnode):
            continue
        graph.link(qnode.key, key)
        _add_config(graph, record, qnode.key, visible)
        for child in node.inputs:
            if child.dataset_id not in visible:
                continue
            cnode = _dataset_node(child.dataset_id, child.dataset_type, child.data_id, child.exists)
            fresh = cnode.key not in graph.nodes
            if graph.add(cnode):
                graph.link(cnode.key, qnode.key)
                if fresh:
                    todo.append((child, cnode.key))
    for record in consumers:
        qnode = _quantum_node(record)
        if not graph.add(qnode):
            continue
        graph.link(focus.key, qnode.key)
        _add_config(graph, record, qnode.key, visible)
        for link in record.outputs:
            if link.dataset_id in visible:
                out = _dataset_node(link.dataset_id, link.dataset_type, link.data_id)
                if graph.add(out):
                    graph.link(qnode.key, out.key)
    for node in graph.nodes.values():
        if node.quantum is not None and node.quantum.env_id and node.quantum.env_id not in graph.environments:
            graph.environments[node.quantum.env_id] = software(butler.provenance.environment(node.quantum))
    layout(graph)
    return graph


def software(env: dict[str, Any] | None) -> list[tuple[str, str]]:
    """(name, version) rows of a recorded software environment: Python, the platform, each
    package's version and the git SHA of its checkout where one was recorded."""
    if not env:
        return []
    rows = [("python", str(env.get("python"))), ("platform", str(env.get("platform")))]
    git = env.get("git") or {}
    for name, version in sorted((env.get("packages") or {}).items()):
        rows.append((name, str(version) + (f" (git {git[name]})" if name in git else "")))
    return rows


def _add_config(graph: Graph, record: Any, qkey: str, visible: set[uuid.UUID]) -> None:
    if record.config_dataset_id is not None and record.config_dataset_id in visible:
        config = Node(key=f"d:{record.config_dataset_id}", kind="dataset", label=f"{record.task_label}_config",
                      detail="config", dataset_id=record.config_dataset_id)
        if graph.add(config):
            graph.link(config.key, qkey, "config")


def layout(graph: Graph) -> None:
    """Columns by longest path into the focus (upstream) or out of it (downstream); rows ordered
    by the mean row of the neighbours already placed; sets every node's x, y and the size."""
    into: dict[str, list[str]] = {k: [] for k in graph.nodes}
    out_of: dict[str, list[str]] = {k: [] for k in graph.nodes}
    for source, target, _ in graph.edges:
        into[target].append(source)
        out_of[source].append(target)
    focus = next(k for k, n in graph.nodes.items() if n.focus)
    up = _longest(focus, graph.edges, reverse=True)
    down = _longest(focus, graph.edges, reverse=False)
    depth = {k: -v for k, v in up.items()}
    depth.update({k: v for k, v in down.items() if k not in depth})
    for source, target, _ in graph.edges:  # a consumer's config: one column before its quantum
        if source not in depth and target in depth:
            depth[source] = depth[target] - 1
    for key in graph.nodes:
        depth.setdefault(key, 0)
    columns: dict[int, list[str]] = {}
    for key, value in depth.items():
        graph.nodes[key].layer = value
        columns.setdefault(value, []).append(key)
    order: dict[str, float] = {}
    for value in sorted(columns, reverse=True) if columns else []:
        keys = columns[value]

        def rank(key: str) -> tuple[float, str, str]:
            near = [order[k] for k in out_of[key] + into[key] if k in order]
            node = graph.nodes[key]
            return (sum(near) / len(near) if near else 0.0, node.label, node.detail)

        keys.sort(key=rank)
        for row, key in enumerate(keys):
            order[key] = float(row)
    low, high = min(columns), max(columns)
    tallest = max(len(v) for v in columns.values())
    for value, keys in columns.items():
        offset = (tallest - len(keys)) * (NODE_H + GAP_Y) / 2
        for row, key in enumerate(keys):
            node = graph.nodes[key]
            node.x = PAD + (value - low) * (NODE_W + GAP_X)
            node.y = PAD + offset + row * (NODE_H + GAP_Y)
    graph.width = 2 * PAD + (high - low + 1) * NODE_W + (high - low) * GAP_X
    graph.height = 2 * PAD + tallest * NODE_H + (tallest - 1) * GAP_Y


def _longest(start: str, edges: list[tuple[str, str, str]], reverse: bool) -> dict[str, int]:
    """The longest path length from ``start`` to every node it reaches (against the edges'
    direction when ``reverse``); relaxed until nothing changes, at most once per node."""
    dist = {start: 0}
    for _ in range(len(edges) + 1):
        changed = False
        for source, target, _ in edges:
            a, b = (target, source) if reverse else (source, target)
            if a in dist and dist.get(b, -1) < dist[a] + 1:
                dist[b] = dist[a] + 1
                changed = True
        if not changed:
            break
    return dist


def edge_paths(graph: Graph) -> list[tuple[str, str]]:
    """(SVG path, kind) of every edge: a curve from the right side of its source to the left
    side of its target."""
    out = []
    for source, target, kind in graph.edges:
        a, b = graph.nodes[source], graph.nodes[target]
        x0, y0 = a.x + NODE_W, a.y + NODE_H / 2
        x1, y1 = b.x, b.y + NODE_H / 2
        if x1 <= x0:  # same column (should not happen in a layered DAG): a short hook
            x1 = x0 + 10
        mid = (x0 + x1) / 2
        out.append((f"M{x0:.1f},{y0:.1f} C{mid:.1f},{y0:.1f} {mid:.1f},{y1:.1f} {x1:.1f},{y1:.1f}", kind))
    return out


@router.get("/datasets/{dataset_id}/provenance", name="web_provenance")
def provenance_page(request: Request, dataset_id: str, user: User = Depends(page_user)) -> Response:
    state: ServerState = request.app.state.skybutler
    with state.butler() as butler:
        ref = authz.visible_ref(butler, user, dataset_id)
        graph = build_graph(butler, user, ref)
    nodes = sorted(graph.nodes.values(), key=lambda n: (n.layer, n.y))
    quanta = [n for n in nodes if n.kind == "quantum"]
    inputs_of = {n.key: [graph.nodes[s] for s, t, _ in graph.edges if t == n.key] for n in quanta}
    outputs_of = {n.key: [graph.nodes[t] for s, t, _ in graph.edges if s == n.key] for n in quanta}
    return render(request, "provenance_graph.html", user=user, ref=ref, focus_text=data_id_text(ref.data_id.required),
                  graph=graph, nodes=nodes, quanta=quanta, inputs_of=inputs_of, outputs_of=outputs_of,
                  paths=edge_paths(graph), node_w=NODE_W, node_h=NODE_H, max_nodes=MAX_NODES)
