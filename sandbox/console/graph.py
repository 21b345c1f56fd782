"""The saga's state machine, drawn from its ASL as SVG, with the path one order took coloured.

The layout reads the saga as people draw one: the happy path from ``StartAt`` runs left to right
on the top row; each compensation sits under the step it undoes, so the undo chain runs right to
left beneath it; whatever else the machine holds (``MarkOrderFailed``, the ``Fail`` state) follows
on the rows below. Every state and edge, and each Catch's errors, come from the definition.
"""

from __future__ import annotations

import itertools
import json
from dataclasses import dataclass, field
from html import escape
from pathlib import Path
from typing import Any

from sandbox.trace import COMPENSATION_OF

NODE_W, NODE_H = 200, 62
COL_GAP, ROW_GAP = 66, 112
LEFT, TOP, RIGHT, BOTTOM = 64, 64, 96, 24
DETOUR = 26  # how far left of a column an edge runs to skip the nodes below its source
TERMINAL_OUTCOMES = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})


@dataclass(frozen=True)
class Edge:
    """A transition of the definition: ``Next`` (or a Choice's), or a ``Catch`` with its errors."""

    source: str
    target: str
    kind: str  # "next" or "catch"
    errors: tuple[str, ...] = ()


@dataclass(frozen=True)
class Layout:
    """Where each state sits (column, row), and the definition's edges."""

    cells: dict[str, tuple[int, int]]
    edges: list[Edge]
    start: str
    types: dict[str, str]
    ends: frozenset[str] = frozenset()
    compensations: frozenset[str] = frozenset()


@dataclass
class StateMark:
    """How the order went through one state."""

    outcome: str  # succeeded, retried, failed, compensation, running
    attempts: int = 0
    sequence: int = 0
    duration_ms: int | None = None
    errors: list[str] = field(default_factory=list)


def read_definition(path: Path) -> dict[str, Any]:
    """The ASL document at ``path``."""
    definition: dict[str, Any] = json.loads(path.read_text())
    return definition


def edges_of(definition: dict[str, Any]) -> list[Edge]:
    edges: list[Edge] = []
    for name, state in definition["States"].items():
        if "Next" in state:
            edges.append(Edge(name, state["Next"], "next"))
        for choice in state.get("Choices", []):
            edges.append(Edge(name, choice["Next"], "next"))
        if "Default" in state:
            edges.append(Edge(name, state["Default"], "next"))
        for catch in state.get("Catch", []):
            edges.append(Edge(name, catch["Next"], "catch", tuple(catch["ErrorEquals"])))
    return edges


def layout_states(definition: dict[str, Any], compensation_of: dict[str, str] = COMPENSATION_OF) -> Layout:
    """Place every state of the definition on a grid (see the module's docstring)."""
    states: dict[str, dict[str, Any]] = definition["States"]
    edges = edges_of(definition)
    cells: dict[str, tuple[int, int]] = {}
    name: str | None = definition["StartAt"]
    while name is not None and name in states and name not in cells:
        cells[name] = (len(cells), 0)
        name = states[name].get("Next")
    undo = {
        state: cells[forward][0]
        for state, forward in compensation_of.items()
        if state in states and forward in cells
    }
    cells.update({state: (column, 1) for state, column in undo.items()})
    first_free_row = 2 if undo else 1
    taken = set(cells.values())
    pending = [state for state in states if state not in cells]
    while pending:
        placed_one = False
        for state in list(pending):
            predecessors = [e for e in edges if e.target == state and e.source in cells]
            if not predecessors:
                continue
            source = min(predecessors, key=lambda e: e.kind != "next").source  # a Next edge first
            column, row = cells[source]
            # Below the main rows a chain runs on along its row; from the main rows it drops down.
            cell = (column + 1, row) if row >= first_free_row else (column, first_free_row)
            while cell in taken:
                cell = (cell[0] + 1, cell[1])
            cells[state] = cell
            taken.add(cell)
            pending.remove(state)
            placed_one = True
        if not placed_one:  # unreachable states: a row of their own
            row = max(r for _, r in taken) + 1
            for column, state in enumerate(pending):
                cells[state] = (column, row)
                taken.add((column, row))
            pending = []
    return Layout(
        cells=cells,
        edges=edges,
        start=definition["StartAt"],
        types={state: body["Type"] for state, body in states.items()},
        ends=frozenset(state for state, body in states.items() if body.get("End")),
        compensations=frozenset(undo),
    )


def mark_path(
    layout: Layout, steps: list[dict[str, Any]], saga_status: str | None
) -> tuple[dict[str, StateMark], list[str]]:
    """Each visited state's mark, and the path in visit order (a reached Fail state included).

    ``steps`` are the order's saga steps as the order API reports them (one per Task entered).
    """
    marks: dict[str, StateMark] = {}
    path: list[str] = []
    for step in steps:
        name = step["name"]
        attempts = int(step.get("attempts") or 0)
        status = step.get("status", "")
        if status in ("RUNNING", "RETRYING"):
            outcome = "running"
        elif status == "FAILED":
            outcome = "failed"
        elif name in layout.compensations or step.get("isCompensation"):
            outcome = "compensation"
        else:
            outcome = "retried" if attempts > 1 else "succeeded"
        path.append(name)
        # A state entered twice keeps its first place in the path and shows how its last visit went.
        sequence = marks[name].sequence if name in marks else len(path)
        marks[name] = StateMark(
            outcome, attempts, sequence, step.get("durationMs"), list(step.get("errors") or [])
        )
    if path and saga_status in TERMINAL_OUTCOMES:
        last = path[-1]
        after = next((e.target for e in layout.edges if e.source == last and e.kind == "next"), None)
        if after is not None and layout.types.get(after) in ("Fail", "Succeed"):
            path.append(after)
            marks[after] = StateMark("failed" if layout.types[after] == "Fail" else "succeeded", 0, len(path))
    return marks, path


def _label_lines(edge: Edge) -> list[str]:
    return ["any other error" if error == "States.ALL" else error for error in edge.errors]


def _status_line(mark: StateMark | None, is_shown: bool) -> str:
    if mark is None:
        return "not reached" if is_shown else ""
    took = f" · {mark.duration_ms} ms" if mark.duration_ms is not None else ""
    tries = f"{mark.attempts} attempts"
    if mark.outcome == "running":
        return "running…" + (f" ({tries})" if mark.attempts > 1 else "")
    if mark.outcome == "failed":
        last = mark.errors[-1] if mark.errors else "failed"
        return f"✗ {last}" + (f" · {tries}" if mark.attempts > 1 else "")
    if mark.outcome == "compensation":
        return f"↩ undone{took}" + (f" · {tries}" if mark.attempts > 1 else "")
    if mark.outcome == "retried":
        return f"✓ after {tries}{took}"
    return f"✓ succeeded{took}" if mark.attempts else "reached"


@dataclass(frozen=True)
class _Box:
    x: float
    y: float

    @property
    def cx(self) -> float:
        return self.x + NODE_W / 2

    @property
    def cy(self) -> float:
        return self.y + NODE_H / 2


def _box(cell: tuple[int, int]) -> _Box:
    column, row = cell
    return _Box(LEFT + column * (NODE_W + COL_GAP), TOP + row * (NODE_H + ROW_GAP))


def _route(a: _Box, b: _Box) -> tuple[str, tuple[float, float], bool]:
    """The SVG path from box ``a`` to box ``b``, where its label goes, and whether that runs upright."""
    if a.y == b.y:  # same row
        sx, ex = (a.x + NODE_W, b.x) if b.x > a.x else (a.x, b.x + NODE_W)
        return f"M{sx},{a.cy} L{ex},{b.cy}", ((sx + ex) / 2, a.cy), False
    rows_down = round((b.y - a.y) / (NODE_H + ROW_GAP))
    if rows_down > 1 and a.x == b.x:  # straight down would cross the nodes between: go round the left
        side = a.x - DETOUR
        d = f"M{a.x},{a.cy + 12} L{side},{a.cy + 12} L{side},{b.cy} L{b.x},{b.cy}"
        return d, (side, (a.cy + b.cy) / 2), True
    down = b.y > a.y
    offset = max(-62.0, min(62.0, (b.cx - a.cx) * 0.24))
    sx, sy = a.cx + offset, (a.y + NODE_H) if down else a.y
    ex, ey = b.cx - offset, b.y if down else (b.y + NODE_H)
    bend = 46 if down else -46
    d = f"M{sx},{sy} C{sx},{sy + bend} {ex},{ey - bend} {ex},{ey}"
    return d, ((sx + ex) / 2, (sy + ey) / 2), False


def _edge_tone(edge: Edge, marks: dict[str, StateMark], layout: Layout) -> str:
    source = marks.get(edge.source)
    if source is not None and source.outcome == "failed":
        return "fail"
    if edge.source in layout.compensations or edge.target in layout.compensations:
        return "undo"
    if layout.types.get(edge.target) == "Fail":
        return "fail"
    return "ok"


def _taken_edges(layout: Layout, marks: dict[str, StateMark], path: list[str]) -> set[Edge]:
    taken: set[Edge] = set()
    for source, target in itertools.pairwise(path):
        candidates = [e for e in layout.edges if e.source == source and e.target == target]
        is_failed = marks[source].outcome == "failed"
        preferred = [e for e in candidates if (e.kind == "catch") == is_failed] or candidates
        if preferred:
            taken.add(preferred[0])
    return taken


STYLE = """
.sg-node rect{stroke-width:1.6;rx:10}
.sg-name{font:600 13.5px system-ui,sans-serif;text-anchor:middle}
.sg-status{font:12px system-ui,sans-serif;text-anchor:middle}
.sg-kind{font:10px system-ui,sans-serif;text-anchor:start;letter-spacing:.04em;text-transform:uppercase}
.sg-label{font:10.5px system-ui,sans-serif;fill:#5b6472}
.sg-label-bg{fill:#fff;opacity:.92}
.sg-edge{fill:none;stroke:#aab1bc;stroke-width:1.5}
.sg-edge--catch{stroke-dasharray:5 4}
.sg-shown .sg-edge--idle{opacity:.45}
.sg-shown .sg-label--idle{opacity:.55}
.sg-label--ok .sg-label{fill:#17663a;font-weight:600}
.sg-label--fail .sg-label{fill:#9b1c1c;font-weight:600}
.sg-label--undo .sg-label{fill:#4c2f9e;font-weight:600}
.sg-edge--ok{stroke:#2f9e55;stroke-width:2.6}
.sg-edge--fail{stroke:#d64545;stroke-width:2.6}
.sg-edge--undo{stroke:#7c5cd6;stroke-width:2.6}
.sg-neutral rect{fill:#fff;stroke:#aab1bc}.sg-neutral text{fill:#39414d}
.sg-idle rect{fill:#f6f7f9;stroke:#d5d9df}.sg-idle text{fill:#98a0ab}
.sg-succeeded rect{fill:#e7f6ec;stroke:#2f9e55}.sg-succeeded text{fill:#17663a}
.sg-retried rect{fill:#fff4d6;stroke:#d99a00}.sg-retried text{fill:#7a5600}
.sg-failed rect{fill:#fdecec;stroke:#d64545}.sg-failed text{fill:#9b1c1c}
.sg-compensation rect{fill:#efeafd;stroke:#7c5cd6}.sg-compensation text{fill:#4c2f9e}
.sg-running rect{fill:#e8f1fd;stroke:#3b7ddd}.sg-running text{fill:#1f4f99}
.sg-fail-state.sg-failed rect{fill:#d64545}.sg-fail-state.sg-failed text{fill:#fff}
.sg-node.is-selected rect{stroke-width:3.2}
.sg-seq circle{fill:#39414d}.sg-seq text{fill:#fff;font:600 11px system-ui,sans-serif;text-anchor:middle}
.sg-badge rect{fill:#d99a00;stroke:none}.sg-badge text{fill:#fff;font:700 11px system-ui,sans-serif;text-anchor:middle}
.sg-terminal{fill:#fff;stroke:#aab1bc;stroke-width:1.6}
.sg-terminal--reached{fill:#2f9e55;stroke:#2f9e55}
.sg-terminal-label{font:10.5px system-ui,sans-serif;fill:#5b6472;text-anchor:middle}
"""

TONES = ("idle", "ok", "fail", "undo")
TONE_COLOURS = {"idle": "#aab1bc", "ok": "#2f9e55", "fail": "#d64545", "undo": "#7c5cd6"}


def _markers() -> str:
    return "".join(
        f'<marker id="sg-arrow-{tone}" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="9" '
        f'markerHeight="9" markerUnits="userSpaceOnUse" orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" '
        f'fill="{colour}"/></marker>'
        for tone, colour in TONE_COLOURS.items()
    )


def _label(x: float, y: float, lines: list[str], tone: str, is_upright: bool) -> str:
    width = max(len(line) for line in lines) * 5.9 + 10
    height = 13.5 * len(lines) + 4
    rotate = f' transform="rotate(-90 {x} {y})"' if is_upright else ""
    texts = "".join(
        f'<text class="sg-label" x="{x}" y="{y - height / 2 + 13 + 13.5 * index}" text-anchor="middle">'
        f"{escape(line)}</text>"
        for index, line in enumerate(lines)
    )
    bg = f'<rect class="sg-label-bg" x="{x - width / 2}" y="{y - height / 2}" width="{width}" height="{height}" rx="3"/>'
    return f'<g class="sg-label--{tone}"{rotate}>{bg}{texts}</g>'


def draw_graph(definition: dict[str, Any], order: dict[str, Any] | None = None) -> str:
    """The state machine as an SVG document; with ``order`` (as the order API returns it), its path.

    Each state is a ``<g>`` with ``data-state``, ``data-outcome`` (succeeded, retried, failed,
    compensation, running, or not-reached), ``data-attempts`` and ``data-sequence`` (its place in
    the path, 0 when not visited), for the page's clicks and for tests.
    """
    layout = layout_states(definition)
    is_shown = order is not None
    marks, path = mark_path(layout, order.get("steps", []) if order else [], (order or {}).get("sagaStatus"))
    taken = _taken_edges(layout, marks, path)
    boxes = {state: _box(cell) for state, cell in layout.cells.items()}
    columns = max(column for column, _ in layout.cells.values()) + 1
    rows = max(row for _, row in layout.cells.values()) + 1
    width = LEFT + columns * (NODE_W + COL_GAP) - COL_GAP + RIGHT
    height = TOP + rows * (NODE_H + ROW_GAP) - ROW_GAP + BOTTOM
    edges_svg: list[str] = []
    labels_svg: list[str] = []
    for edge in layout.edges:
        if edge.source not in boxes or edge.target not in boxes:
            continue
        tone = _edge_tone(edge, marks, layout) if edge in taken else "idle"
        d, (lx, ly), is_upright = _route(boxes[edge.source], boxes[edge.target])
        title = f"{edge.source} → {edge.target}" + (
            f" (Catch {', '.join(edge.errors)})" if edge.kind == "catch" else ""
        )
        edges_svg.append(
            f'<path class="sg-edge sg-edge--{edge.kind} sg-edge--{tone}" d="{d}" '
            f'marker-end="url(#sg-arrow-{tone})" data-from="{escape(edge.source)}" '
            f'data-to="{escape(edge.target)}" data-taken="{str(edge in taken).lower()}">'
            f"<title>{escape(title)}</title></path>"
        )
        if edge.kind == "catch":
            labels_svg.append(_label(lx, ly, _label_lines(edge), tone, is_upright))
    # Where the machine starts and ends: a dot above the first state, a ring after each End state.
    start = boxes[layout.start]
    is_started = bool(path)
    terminals = [
        f'<circle class="sg-terminal{" sg-terminal--reached" if is_started else ""}" cx="{start.cx}" '
        f'cy="{start.y - 40}" r="9"/><text class="sg-terminal-label" x="{start.cx + 32}" '
        f'y="{start.y - 36}">start</text>',
        f'<path class="sg-edge sg-edge--{"ok" if is_started else "idle"}" d="M{start.cx},{start.y - 31} '
        f'L{start.cx},{start.y}" marker-end="url(#sg-arrow-{"ok" if is_started else "idle"})"/>',
    ]
    is_succeeded = (order or {}).get("sagaStatus") == "SUCCEEDED"
    for end in sorted(layout.ends):
        box = boxes[end]
        reached = is_succeeded and bool(path) and path[-1] == end
        tone = "ok" if reached else "idle"
        terminals.append(
            f'<path class="sg-edge sg-edge--{tone}" d="M{box.x + NODE_W},{box.cy} L{box.x + NODE_W + 40},{box.cy}" '
            f'marker-end="url(#sg-arrow-{tone})"/><circle class="sg-terminal'
            f'{" sg-terminal--reached" if reached else ""}" cx="{box.x + NODE_W + 52}" cy="{box.cy}" r="10"/>'
            f'<text class="sg-terminal-label" x="{box.x + NODE_W + 52}" y="{box.cy + 26}">end</text>'
        )
    nodes_svg = [_node(state, boxes[state], marks.get(state), layout, is_shown) for state in layout.cells]
    shown = " sg-shown" if is_shown else ""
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" class="saga-graph{shown}" viewBox="0 0 {width} {height}" '
        f'width="{width}" height="{height}" role="img" aria-label="the saga state machine">'
        f"<style>{STYLE}</style><defs>{_markers()}</defs>"
        f"{''.join(edges_svg)}{''.join(terminals)}{''.join(nodes_svg)}{''.join(labels_svg)}</svg>"
    )


def _node(state: str, box: _Box, mark: StateMark | None, layout: Layout, is_shown: bool) -> str:
    outcome = mark.outcome if mark else ("not-reached" if is_shown else "neutral")
    css = {"not-reached": "idle"}.get(outcome, outcome)
    kind = layout.types.get(state, "Task")
    extra = " sg-fail-state" if kind == "Fail" else ""
    tag = "compensation" if state in layout.compensations else ("" if kind == "Task" else kind.lower())
    parts = [
        f'<rect x="{box.x}" y="{box.y}" width="{NODE_W}" height="{NODE_H}"/>',
        f'<text class="sg-name" x="{box.cx}" y="{box.y + 27}">{escape(state)}</text>',
        f'<text class="sg-status" x="{box.cx}" y="{box.y + 47}">{escape(_status_line(mark, is_shown))}</text>',
    ]
    if tag:
        parts.append(f'<text class="sg-kind" x="{box.x + 16}" y="{box.y - 6}">{tag}</text>')
    if mark is not None and mark.sequence:
        parts.append(
            f'<g class="sg-seq"><circle cx="{box.x}" cy="{box.y}" r="11"/>'
            f'<text x="{box.x}" y="{box.y + 4}">{mark.sequence}</text></g>'
        )
    if mark is not None and mark.attempts > 1:
        right = box.x + NODE_W
        parts.append(
            f'<g class="sg-badge"><rect x="{right - 30}" y="{box.y - 10}" width="40" height="20" rx="10"/>'
            f'<text x="{right - 10}" y="{box.y + 4}">×{mark.attempts}</text></g>'
        )
    attempts = mark.attempts if mark else 0
    sequence = mark.sequence if mark else 0
    return (
        f'<g class="sg-node sg-{css}{extra}" data-state="{escape(state)}" data-outcome="{outcome}" '
        f'data-attempts="{attempts}" data-sequence="{sequence}" tabindex="0" role="button">'
        f"<title>{escape(state)}</title>{''.join(parts)}</g>"
    )
