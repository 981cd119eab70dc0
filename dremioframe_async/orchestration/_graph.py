"""Building and validating a pipeline's graph, apart from running it.

A :class:`Plan` is the immutable, validated form of the graph that runs use:
tasks in a deterministic order with unique keys, and edges as index tuples.
"""

from __future__ import annotations

import graphlib
import operator
import re
from collections.abc import Collection, Iterable, Mapping
from typing import Literal

from ._errors import CycleError, PipelineDefinitionError
from ._options import TaskOptions
from ._resources import resource_problems
from ._rules import may_start_early, passes_without_upstream
from ._task import Task

__all__ = ["KEEP_RESULTS", "KeepResults", "Plan", "build_plan", "collect_tasks", "mermaid"]

KeepResults = Literal["all", "leaves", "none"]
KEEP_RESULTS: tuple[KeepResults, ...] = ("all", "leaves", "none")


def _plain_options(o: TaskOptions) -> bool:
    return not o.retries and o.timeout is None and o.deadline is None and not o.resources


class PlanScan:
    """What the planning pass finds about each task, by position, for a :class:`Plan`."""

    __slots__ = ("naming", "needing", "plain", "starts")

    def __init__(self, tasks: int) -> None:
        self.starts: list[int] = []
        self.plain = bytearray(tasks)
        self.needing: list[int] = []
        self.naming: list[int] = []


class Plan:
    """The validated graph: tasks in creation order, their unique keys, and edges
    as index tuples. Runs share it and never change it.

    ``upstream_keys``, ``index`` and ``key_index`` are derived on first use: a run without
    listeners or context lookups never needs them. What every run reads is found
    while planning, in the one pass over the tasks (``PlanScan``):

    * ``starts``: the tasks a run may start at once, those without upstream
      tasks and those whose trigger rule passes without them (``always``);
    * ``plain``: 1 for each task a runner may run without its general machinery,
      an exact :class:`Task` of an ``async def`` without context, task
      arguments, retries, time limits or resources (its one attempt is a call of
      its function in its slots and its observers' scope; whether the run has an
      executor is the run's to check);
    * ``needing`` and ``naming``: the tasks that need resources, and that name
      an executor.
    """

    __slots__ = (
        "_index",
        "_kept",
        "_key_index",
        "_upstream_keys",
        "downstream",
        "inputs",
        "keys",
        "naming",
        "needing",
        "pipeline",
        "plain",
        "positions",
        "starts",
        "tasks",
        "upstream",
    )

    def __init__(
        self,
        pipeline: str,
        tasks: tuple[Task, ...],
        keys: tuple[str, ...],
        inputs: Mapping[Task, int],
        upstream: tuple[tuple[int, ...], ...],
        downstream: tuple[tuple[int, ...], ...],
        positions: tuple[int, ...],
        scan: PlanScan,
    ) -> None:
        self.pipeline = pipeline
        # 0, 1, ... as the int objects the edge tuples hold: a run's nodes take
        # theirs from here rather than making a million more (28 bytes each).
        self.positions = positions
        self.tasks = tasks
        self.keys = keys
        self.inputs = inputs  # the position of each task whose result another takes
        self._index: dict[Task, int] | None = None
        self.upstream = upstream
        self.downstream = downstream
        self._upstream_keys: tuple[tuple[str, ...], ...] | None = None
        self._key_index: dict[str, int] | None = None
        self._kept: dict[str, bytearray | None] = {}
        self.starts = tuple(scan.starts)
        self.plain = scan.plain
        self.needing = tuple(scan.needing)
        self.naming = tuple(scan.naming)

    @property
    def upstream_keys(self) -> tuple[tuple[str, ...], ...]:
        """Each task's upstream keys, in the order its edges were added."""
        if self._upstream_keys is None:
            key_at = self.keys.__getitem__
            self._upstream_keys = tuple([tuple(map(key_at, up)) for up in self.upstream])
        return self._upstream_keys

    @property
    def index(self) -> Mapping[Task, int]:
        """Each task's position in ``tasks``, made on first use (a run looks up
        only ``inputs``; a million-task plan need not hold both)."""
        if self._index is None:
            self._index = dict(zip(self.tasks, self.positions, strict=True))
        return self._index

    @property
    def key_index(self) -> Mapping[str, int]:
        """Each key's position in ``tasks``."""
        if self._key_index is None:
            self._key_index = {k: i for i, k in enumerate(self.keys)}
        return self._key_index

    def kept_results(self, keep: KeepResults) -> bytearray | None:
        """Which tasks' results a run keeps, by index (None: every task's).

        ``leaves``: the tasks nothing depends on; ``none``: no task's. The
        results other tasks take as arguments are kept whatever ``keep`` says,
        and every result when some task takes ``context`` (it may read any
        upstream result).
        """
        if keep == "all":
            return None
        if keep not in self._kept:
            tasks = self.tasks
            flags: bytearray | None = None
            if not any(t.wants_context for t in tasks):
                flags = bytearray(len(tasks))
                if keep == "leaves":
                    for i, down in enumerate(self.downstream):
                        if not down:
                            flags[i] = 1
                for i in self.inputs.values():  # the tasks whose results others take
                    flags[i] = 1
            self._kept[keep] = flags
        return self._kept[keep]

    def key_of(self, task: Task) -> str | None:
        i = self.index.get(task)
        return None if i is None else self.keys[i]

    def __repr__(self) -> str:
        return f"<Plan {self.pipeline!r}: {len(self.tasks)} tasks>"


def collect_tasks(added: Iterable[Task]) -> list[Task]:
    """Every task connected to an added one, upstream or downstream, in creation order."""
    seen = set(added)
    frontier: Iterable[Task] = seen
    while frontier:
        near: set[Task] = set()
        # Set updates run in C, so the walk costs per task, not per edge; the edge
        # containers are read directly (this module plans for Task, as its friend).
        # Tasks linked to one task alone share its edge tuple (``Task._alone``): a
        # fan-out's million tasks hold two tuples between them, each added once.
        last_up: object = None
        last_down: object = None
        for t in frontier:
            if (ups := t._upstream) is not last_up:
                near.update(ups)
                last_up = ups
            if (downs := t._downstream) is not last_down:
                near.update(downs)
                last_down = downs
        near -= seen
        seen |= near
        frontier = near
    return sorted(seen, key=_ORDER)


_ORDER = operator.attrgetter("order")


def assign_keys(tasks: list[Task]) -> list[str]:
    """Unique keys: a task's name, or ``name_2``, ``name_3``... for later namesakes.

    A suffixed key never takes a name that another task in the graph carries.
    """
    names = {t.name for t in tasks}
    if len(names) == len(tasks):  # the common case: every name is its key
        return [t.name for t in tasks]
    used: set[str] = set()
    next_suffix: dict[str, int] = {}
    keys = []
    for t in tasks:
        key = t.name
        if key in used:
            n = next_suffix.get(t.name, 2)
            while (key := f"{t.name}_{n}") in used or key in names:
                n += 1
            next_suffix[t.name] = n + 1
        used.add(key)
        keys.append(key)
    return keys


def _unsorted(
    upstream: tuple[tuple[int, ...], ...],
    downstream: tuple[tuple[int, ...], ...],
    back: list[int],
) -> list[int]:
    """Tasks that no topological order reaches: those on or after a cycle (Kahn, linear).

    ``back`` are the tasks with an upstream task made after them. Every other
    edge goes from an earlier task to a later one, so a cycle has a task of
    ``back`` on it, and the tasks on or after a cycle are all downstream of
    ``back``: only that part of the graph is sorted (none of it, usually).
    """
    if not back:
        return []
    part = set(back)
    walk = list(part)
    for i in walk:  # grows while it is walked
        for d in downstream[i]:
            if d not in part:
                part.add(d)
                walk.append(d)
    # Upstream tasks outside ``part`` are on no cycle: only edges inside it count.
    waiting = {i: sum(1 for u in upstream[i] if u in part) for i in walk}
    ready = [i for i in walk if not waiting[i]]
    for i in ready:  # grows while it is walked
        for d in downstream[i]:
            waiting[d] -= 1
            if waiting[d] == 0:
                ready.append(d)
    return sorted(i for i in walk if waiting[i]) if len(ready) < len(walk) else []


def _find_cycles(deps: dict[int, set[int]], keys: list[str]) -> list[list[str]]:
    """Name every cycle among ``deps`` (graphlib names one at a time; drop it, repeat)."""
    cycles = []
    graph = {n: set(d) for n, d in deps.items()}
    while True:
        try:
            graphlib.TopologicalSorter(graph).prepare()
        except graphlib.CycleError as exc:
            cycle: list[int] = exc.args[1]
            cycles.append([keys[i] for i in cycle])
            for n in set(cycle):  # report disjoint cycles too, once each
                graph.pop(n, None)
            for d in graph.values():
                d.difference_update(cycle)
            continue
        return cycles


def build_plan(
    name: str,
    added: Iterable[Task],
    pools: Mapping[str, object],
    resources: Collection[str] | None = None,
) -> Plan:
    """Collect, key and validate the graph.

    With ``resources`` (the names a run declares), a task needing any other
    resource is one of the problems; None leaves resources unchecked.

    :raises CycleError: when the graph has cycles (all of them are named, with
        any other problem found).
    :raises PipelineDefinitionError: for every other problem, all at once.
    """
    tasks = collect_tasks(added)
    keys = assign_keys(tasks)
    index = {t: i for i, t in enumerate(tasks)}
    at = index.__getitem__
    # One pass for the edges and the per-task checks (this is the cold path's
    # planning cost, paid once per graph change).
    upstream: list[tuple[int, ...]] = []
    downstream: list[tuple[int, ...]] = []
    in_pools: list[int] = []
    early: list[int] = []
    scan = PlanScan(len(tasks))
    starts, plain, needing, naming = scan.starts, scan.plain, scan.needing, scan.naming
    back: list[int] = []  # tasks with an upstream task made after them
    last_options: TaskOptions | None = None
    bad_pool = early_rule = alone = plain_options = False
    uses: tuple[str, ...] = ()
    names: str | None = None
    # Equal edge tuples are shared (a fan-out's tasks all have the same ones): a
    # large graph keeps a few tuples instead of two per task.
    shared: dict[tuple[int, ...], tuple[int, ...]] = {}
    # Tasks linked to one task alone share its edge tuple (``Task._alone``), and
    # a fan-out's tasks come one after another: the last edges mapped are reused.
    last_up: object = None
    last_down: object = None
    up: tuple[int, ...] = ()
    down: tuple[int, ...] = ()
    latest = -1  # the last-made upstream task of ``up``
    for i, t in enumerate(tasks):
        if t._upstream is not last_up:
            last_up = t._upstream
            up = tuple(map(at, last_up))
            up = shared.setdefault(up, up)
            latest = up[0] if len(up) == 1 else max(up, default=-1)
        if latest > i:
            back.append(i)
        upstream.append(up)
        if t._downstream is not last_down:
            last_down = t._downstream
            down = tuple(map(at, last_down))
            down = shared.setdefault(down, down)
        downstream.append(down)
        if not up:
            starts.append(i)
        options = t.options
        if options is not last_options:  # options are shared: tasks of one @task share one
            last_options, rule = options, options.trigger_rule
            bad_pool = options.pool is not None and options.pool not in pools
            early_rule, alone = may_start_early(rule), passes_without_upstream(rule)
            uses, names, plain_options = (
                options.resources,
                options.executor,
                _plain_options(options),
            )
        if alone and up:
            starts.append(i)
        if t.has_task_args:
            if early_rule:
                early.append(i)
        elif plain_options and type(t) is Task and t.is_async and not t.wants_context:
            plain[i] = 1
        if bad_pool:
            in_pools.append(i)
        if uses:
            needing.append(i)
        if names:
            naming.append(i)
    problems = [
        f"task {keys[i]!r} uses pool {tasks[i].options.pool!r}, which the pipeline does not "
        f"define (add it: Pipeline(..., pools={{{tasks[i].options.pool!r}: N}}))"
        for i in in_pools
    ]
    problems += [
        f"task {keys[i]!r} takes the result of {keys[index[up]]!r} as an argument, but its "
        f"trigger rule {tasks[i].options.trigger_rule.value} may start it before that result "
        f"exists (read it from the context instead, or use all_done)"
        for i in early
        for up in tasks[i].data_dependencies()
    ]
    if resources is not None and needing:
        users = [tasks[i] for i in needing]
        problems += resource_problems(users, [keys[i] for i in needing], resources)
    ups, downs = tuple(upstream), tuple(downstream)
    stuck = _unsorted(ups, downs, back)
    cycles = _find_cycles({i: set(ups[i]) for i in stuck}, keys) if stuck else []
    if cycles:
        raise CycleError(name, cycles, problems)
    if problems:
        raise PipelineDefinitionError(name, problems)
    inputs = {up: index[up] for t in tasks if t.has_task_args for up in t.data_dependencies()}
    positions = tuple(index.values())
    return Plan(name, tuple(tasks), tuple(keys), inputs, ups, downs, positions, scan)


_PLAIN_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")
_MERMAID_WORDS = frozenset(
    {
        "end",
        "graph",
        "subgraph",
        "class",
        "classDef",
        "click",
        "style",
        "linkStyle",
        "default",
        "direction",
        "flowchart",
    }
)


def _node_ids(keys: tuple[str, ...]) -> list[str]:
    """Mermaid ids: the key itself when it is a plain word, else a fresh ``nN``."""
    taken = set(keys)
    ids = []
    for i, key in enumerate(keys):
        if _PLAIN_ID.match(key) and key not in _MERMAID_WORDS:
            ids.append(key)
            continue
        made = f"n{i}"
        while made in taken:
            made += "_"
        taken.add(made)
        ids.append(made)
    return ids


def mermaid(plan: Plan) -> str:
    """The graph as Mermaid text (``graph TD``), one line per node and edge."""
    ids = _node_ids(plan.keys)
    lines = ["graph TD"]
    for i, key in enumerate(plan.keys):
        label = key.replace('"', "#quot;")
        lines.append(f"    {ids[i]}" if ids[i] == key else f'    {ids[i]}["{label}"]')
    for i, downs in enumerate(plan.downstream):
        lines.extend(f"    {ids[i]} --> {ids[d]}" for d in downs)
    return "\n".join(lines) + "\n"
