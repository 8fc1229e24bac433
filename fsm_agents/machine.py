"""Compile a python-statemachine chart into an immutable transition table; pure `start`/`step`.

A chart (`statemachine.StateChart` subclass) declares the topology: states named after `Phase`,
named events, guards by name (`cond="x"`, `unless="x"`) and actions by name (`on="x"`). At
definition time `compile_chart` resolves those names against plain functions and produces a
`Table`: `{(phase, event): (Transition, ...)}` in declaration order. `Machine.step` is then a
dict lookup, first-match guard evaluation (python-statemachine's own semantics) and one action
call — python-statemachine's engine never runs per step; it serves as a reference oracle in
tests (`fsm_agents.testing`) and draws diagrams.

Guards are `(snapshot, event) -> bool`; actions are `(snapshot, event) -> Step` and receive the
snapshot already moved to the transition's target phase with its `step` incremented. An action
marked `@fused` instead receives the snapshot before the transition and the target phase, and
moves it itself (`snapshot.moved(target, **changes)`): one snapshot copy per transition instead
of two, for hot machines such as the agent loop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Protocol, TypeVar, runtime_checkable

from statemachine import StateChart

from fsm_agents.errors import InvalidDefinition, InvalidTransition, NotAMachine
from fsm_agents.events import Event, Step, Taken
from fsm_agents.state import Phase, Snapshot, ToolSpec

__all__ = [
    "Action",
    "ChartClass",
    "FusedAction",
    "Guard",
    "GuardRef",
    "HasMachine",
    "Machine",
    "Table",
    "Transition",
    "as_machine",
    "chart_class",
    "compile_chart",
    "fused",
    "internal_events_of",
]

Guard = Callable[[Snapshot[Any], Event], bool]
Action = Callable[[Snapshot[Any], Event], Step]
FusedAction = Callable[[Snapshot[Any], Event, Phase], Step]

_F = TypeVar("_F", bound=Callable[..., Step])


def fused(fn: _F) -> _F:
    """Mark an action as fused with its transition's move.

    A fused action is called as `fn(snapshot, event, target)` with the snapshot *before* the
    transition and must return a `Step` whose snapshot is in `target` with `step` one higher,
    usually `snapshot.moved(target, **changes)`. It saves the intermediate moved copy a plain
    action receives. `check_machine` verifies the phase and step like any other transition.
    """
    fn.__fsm_fused__ = True  # type: ignore[attr-defined]
    return fn


@dataclass(frozen=True, slots=True)
class GuardRef:
    """A guard as declared: its name, whether it is negated (`unless=`), and the function."""

    name: str
    negate: bool
    fn: Guard = field(compare=False, repr=False)

    @property
    def label(self) -> str:
        return f"!{self.name}" if self.negate else self.name

    def __call__(self, snapshot: Snapshot[Any], event: Event) -> bool:
        return self.fn(snapshot, event) is not self.negate


@dataclass(frozen=True, slots=True)
class Transition:
    """One compiled transition: taken on `event` from `source` when every guard holds."""

    source: Phase
    event: str
    target: Phase
    guards: tuple[GuardRef, ...]
    action: Action | FusedAction | None = field(compare=False, repr=False)
    action_name: str | None = None
    index: int = 0  # position in `Table.transitions` (declaration order)
    fused: bool = False  # the action is `@fused`: called with the unmoved snapshot and the target

    @property
    def label(self) -> str:
        """`event [guard ∧ !other]`, as drawn on diagrams."""
        if not self.guards:
            return self.event
        return f"{self.event} [{' ∧ '.join(g.label for g in self.guards)}]"


@dataclass(frozen=True, slots=True)
class Table:
    """The immutable compiled table of a chart."""

    chart: type[StateChart[Any]]
    initial: Phase
    phases: tuple[Phase, ...]
    finals: frozenset[Phase]
    events: tuple[str, ...]
    internal: frozenset[str]
    transitions: tuple[Transition, ...]
    by_key: Mapping[tuple[Phase, str], tuple[Transition, ...]]
    # phase -> the internal event step raises on entering it (transient phases)
    auto: Mapping[Phase, str]
    # internal event name -> the instance step raises
    internal_events: Mapping[str, Event] = field(default_factory=lambda: MappingProxyType({}))

    def accepts(self, phase: Phase) -> tuple[str, ...]:
        """External events `phase` accepts, in declaration order."""
        return tuple(e for e in self.events if (phase, e) in self.by_key and e not in self.internal)

    def __iter__(self) -> Iterator[Transition]:
        return iter(self.transitions)


def _phase_of(state: Any) -> Phase:
    try:
        return Phase(state.name)
    except ValueError:
        raise InvalidDefinition(
            f"state {state.id!r} is named {state.name!r}; every state must be named after a Phase "
            f"({', '.join(Phase)}), e.g. State('PLANNING')"
        ) from None


ChartClass = type[StateChart[Any]]  # a chart class (python-statemachine `StateChart` subclass)


def chart_class(name: str, attrs: Mapping[str, Any], internal: Iterable[type[Event]] = ()) -> ChartClass:
    """Build a chart class named `name` from `attrs` (states and events, as in a class body).

    `internal`: the events `step` raises itself (e.g. `Observed`), declared here once; the chart
    keeps them as `internal_events` and `compile_chart` reads them from there. Build variants of
    a chart with a factory calling this, never by subclassing a chart (python-statemachine shares
    `State` objects with subclasses).
    """
    # without a `__module__` in `attrs`, `type()` takes this module's name (the caller's frame)
    body = {**attrs, "internal_events": tuple(internal)}
    chart: ChartClass = type(name, (StateChart,), body)
    return chart


def internal_events_of(chart: ChartClass) -> tuple[type[Event], ...]:
    """The internal event classes `chart` declares (its `internal_events` attribute; none when
    absent). Raises `InvalidDefinition` when an entry is not an `Event` subclass with a name."""
    declared = getattr(chart, "internal_events", ())
    out: list[type[Event]] = []
    for ev in declared:
        if not (isinstance(ev, type) and issubclass(ev, Event) and ev.name):
            raise InvalidDefinition(
                f"{chart.__name__}: internal_events must list Event classes with a name (e.g. Observed), got {ev!r}"
            )
        out.append(ev)
    return tuple(out)


def _resolve(chart: str, kind: str, name: str, given: Mapping[str, Any] | None, owner: Any, where: str = "") -> Any:
    if given is not None and name in given:
        return given[name]
    fn = getattr(owner, name, None) if owner is not None else None
    if fn is None or not callable(fn):
        why = f" ({type(owner).__name__} has no method {name!r})" if owner is not None else ""
        raise InvalidDefinition(f"{chart}: {kind} {name!r}{where} has no function{why}")
    return fn


def compile_chart(
    chart: ChartClass,
    guards: Mapping[str, Guard] | None = None,
    actions: Mapping[str, Action] | None = None,
    internal: Iterable[str] | None = None,
    *,
    owner: Any = None,
) -> Table:
    """Compile `chart` into a `Table`, resolving guard and action names.

    Each name a transition uses (`cond=`, `unless=`, `on=`) is looked up in `guards` / `actions`
    first, then as an attribute (a bound method) of `owner`: `compile_chart(Chart, owner=self)`
    is how a machine compiles its chart. Internal events (raised by `step` itself) are those the
    chart declares in `internal_events` (see `chart_class`); `internal`, when given, must name
    exactly those.

    Raises `InvalidDefinition` when a state is not named after a `Phase`, a guard or action name
    has no function, a function in `guards` is not referenced, a chart event is eventless or
    carries several names, an internal event is not declared by the chart, has no transition or
    is not the single way out of its source state, or a phase appears twice.
    python-statemachine itself already rejected unreachable states, trap states and states with
    no path to a final state when the chart class was created.
    """
    name = chart.__name__
    declared = {ev.name: ev() for ev in internal_events_of(chart)}
    if internal is not None and set(internal) != set(declared):
        raise InvalidDefinition(
            f"{name}: internal events {sorted(set(internal))} differ from those the chart declares "
            f"in internal_events ({sorted(declared)}): declare them once, on the chart"
        )
    states = list(chart.states)
    phases = tuple(_phase_of(s) for s in states)
    if len(set(phases)) != len(phases):
        raise InvalidDefinition(f"{name}: a Phase is used by two states")
    initial = _phase_of(chart.initial_state)
    finals = frozenset(_phase_of(s) for s in chart.final_states)
    if finals - {Phase.DONE, Phase.FAILED} or not finals:
        raise InvalidDefinition(f"{name}: final states must be DONE and/or FAILED, got {sorted(p.value for p in finals)}")
    transitions: list[Transition] = []
    used_guards: set[str] = set()
    for state in states:
        for t in state.transitions:
            if t.is_eventless:
                raise InvalidDefinition(f"{name}: transition {t.source.id}->{t.target.id} has no event")
            events = list(t.events)
            if len(events) != 1:
                raise InvalidDefinition(f"{name}: transition {t.source.id}->{t.target.id} has {len(events)} events")
            refs: list[GuardRef] = []
            for spec in t.cond:
                text = str(spec)
                negate = text.startswith("!")
                gname = text[1:] if negate else text
                used_guards.add(gname)
                on = f" on {t.source.id}->{t.target.id}"
                refs.append(GuardRef(gname, negate, _resolve(name, "guard", gname, guards, owner, on)))
            action_names = [spec.func for spec in t.on if not spec.is_convention]
            if len(action_names) > 1:
                raise InvalidDefinition(f"{name}: transition {t.source.id}->{t.target.id} has several actions")
            action_name = action_names[0] if action_names else None
            action = _resolve(name, "action", action_name, actions, owner) if action_name else None
            transitions.append(
                Transition(
                    source=_phase_of(t.source),
                    event=str(events[0]),
                    target=_phase_of(t.target),
                    guards=tuple(refs),
                    action=action,
                    action_name=action_name,
                    index=len(transitions),
                    fused=bool(getattr(action, "__fsm_fused__", False)),
                )
            )
    unused = set(guards or ()) - used_guards
    if unused:
        raise InvalidDefinition(f"{name}: guard functions not referenced by the chart: {sorted(unused)}")
    by_key: dict[tuple[Phase, str], list[Transition]] = {}
    for tr in transitions:
        by_key.setdefault((tr.source, tr.event), []).append(tr)
    auto: dict[Phase, str] = {}
    for ev in declared:
        sources = {tr.source for tr in transitions if tr.event == ev}
        if not sources:
            raise InvalidDefinition(f"{name}: internal event {ev!r} has no transition")
        for src in sources:
            others = {tr.event for tr in transitions if tr.source == src} - {ev}
            if others:
                raise InvalidDefinition(
                    f"{name}: internal event {ev!r} must be the only way out of {src}, which also accepts {sorted(others)}"
                )
            auto[src] = ev
    chart_events: Any = chart.events  # a class-level property: typed as a method by the stubs
    event_names = tuple(dict.fromkeys(str(e.id) for e in chart_events))
    return Table(
        chart=chart,
        initial=initial,
        phases=phases,
        finals=finals,
        events=event_names,
        internal=frozenset(declared),
        internal_events=MappingProxyType(declared),
        transitions=tuple(transitions),
        by_key=MappingProxyType({k: tuple(v) for k, v in by_key.items()}),
        auto=MappingProxyType(auto),
    )


_tuple_new = tuple.__new__


class Machine:
    """Base of every machine (an agent or a pattern): a name, a compiled table, pure `step`.

    Subclasses set `table` (usually `compile_chart(Chart, owner=self)`) and implement `start`.
    """

    table: Table
    name: str

    @property
    def internal_events(self) -> Mapping[str, Event]:
        """The events `step` raises itself, by name (declared by the chart)."""
        return self.table.internal_events

    @property
    def chart(self) -> type[StateChart[Any]]:
        return self.table.chart

    def start(self, input: Any, context: Any = None, *, run_id: str = "run") -> Step:  # pragma: no cover
        raise InvalidDefinition(f"{type(self).__name__} does not define start()")

    def max_transitions(self) -> int | None:
        """An upper bound on transitions from `start` to a final phase, or None if unbounded."""
        return None

    def models(self) -> Mapping[str, Any]:
        """Models by agent name, as configured (the runtime may override them)."""
        return MappingProxyType({})

    def tools_for(self, agent: str) -> Mapping[str, Any]:
        """Tools of `agent` by name, for `RunTools` effects."""
        return MappingProxyType({})

    def tool_options(self, agent: str) -> Mapping[str, Any]:
        """Keyword options of the `ToolExecutor` that runs `agent`'s calls (an agent's
        `max_output_chars` and `parallel`); empty means the executor's defaults."""
        return MappingProxyType({})

    def dynamic_instructions(self) -> Mapping[str, Callable[[Any], Any]]:
        """Instruction functions `(RunContext) -> str` (sync or async) by agent name: the runtime
        calls one for each model call of its agent (docs/architecture.md, Tools and run context).
        Empty for a machine whose instructions are all static text."""
        return MappingProxyType({})

    def guardrails_for(self, agent: str, stage: str) -> Mapping[str, Any]:
        """`agent`'s guardrails of `stage` (`"input"` / `"output"`) by name, for the `CallModel`
        and `CheckOutput` effects that name them (`fsm_agents.guardrails.Guardrail`s)."""
        return MappingProxyType({})

    def example_inputs(self) -> tuple[Any, ...]:
        """Start inputs worth exploring in tests (`check_machine` samples them); empty means any
        string will do."""
        return ()

    def tool_specs(self, agent: str) -> tuple[ToolSpec, ...]:
        """The tools `agent`'s model is offered (including handoff tools), as specs."""
        return ()

    def children(self) -> Mapping[str, Machine]:
        """Machines this one runs through `RunAgents`, by name (empty for a plain agent)."""
        return MappingProxyType({})

    def toolsets(self) -> Mapping[str, tuple[Any, ...]]:
        """Toolsets (`fsm_agents.tools.Toolset`) by agent name: tools the runtime lists when a run
        starts and adds to that agent's (empty unless an agent has some)."""
        return MappingProxyType({})

    def step(self, snapshot: Snapshot[Any], event: Event) -> Step:
        """Consume `event` in `snapshot.phase`; return the next snapshot and its effects.

        Pure: no I/O, no clock, no randomness; `snapshot` is not altered. Raises
        `InvalidTransition` when the phase accepts no such event or no guard holds (or the
        snapshot is another machine's), `TypeError` when `snapshot` is not a `Snapshot` or `event`
        not an `Event`.
        """
        table = self.table
        try:
            candidates = table.by_key.get((snapshot.phase, event.name))
        except AttributeError:
            raise self._not_a_step(snapshot, event) from None
        if candidates is None or event.name in table.internal:
            if snapshot.machine != self.name:
                raise InvalidTransition(
                    snapshot.machine, snapshot.phase, event.name, (), why=f"the snapshot is not one of {self.name}'s"
                )
            raise InvalidTransition(snapshot.machine, snapshot.phase, event.name, table.accepts(snapshot.phase))
        result = self._take(snapshot, event, candidates)
        auto = table.auto
        if result[0].phase not in auto:
            return result
        taken = result.transitions
        effects = result.effects
        while result.snapshot.phase in auto:
            ev_name = auto[result.snapshot.phase]
            internal_event = table.internal_events[ev_name]
            result = self._take(result.snapshot, internal_event, table.by_key[(result.snapshot.phase, ev_name)])
            taken += result.transitions
            effects += result.effects
        return Step(result.snapshot, effects, taken)

    @staticmethod
    def _not_a_step(snapshot: Any, event: Any) -> TypeError:
        if not isinstance(snapshot, Snapshot):
            return TypeError(f"step takes a Snapshot (from start or a previous step), not {type(snapshot).__name__}")
        return TypeError(f"step takes an Event (e.g. ModelReplied, ToolsFinished), not {type(event).__name__}")

    def _take(self, snapshot: Snapshot[Any], event: Event, candidates: tuple[Transition, ...]) -> Step:
        for tr in candidates:
            for g in tr.guards:
                if g.fn(snapshot, event) is g.negate:
                    break
            else:
                # named tuples built with tuple.__new__: their generated __new__ is a Python frame
                record = (_tuple_new(Taken, (tr.source, tr.event, tr.target, snapshot.step + 1, tr.index)),)
                action: Any = tr.action
                if action is None:
                    return _tuple_new(Step, (snapshot.moved(tr.target), (), record))
                out = action(snapshot, event, tr.target) if tr.fused else action(snapshot.moved(tr.target), event)
                return _tuple_new(Step, (out[0], out[1], record + out[2] if out[2] else record))
        raise InvalidTransition(
            snapshot.machine, snapshot.phase, event.name, self.table.accepts(snapshot.phase), no_guard=True
        )


@runtime_checkable
class HasMachine(Protocol):
    """What every entry point accepts besides a `Machine`: an object with a `.machine` (an
    `Agent`, a pattern)."""

    @property
    def machine(self) -> Machine: ...


def as_machine(obj: Machine | HasMachine | Any) -> Machine:
    """`obj` if it is a `Machine`, else its `.machine` (an `Agent`, a pattern). Raises
    `NotAMachine` (an `FsmAgentsError` and a `TypeError`) for anything else."""
    if isinstance(obj, Machine):
        return obj
    machine = getattr(obj, "machine", None)
    if isinstance(machine, Machine):
        return machine
    raise NotAMachine(f"expected a machine, an Agent or a pattern, got {type(obj).__name__}")
