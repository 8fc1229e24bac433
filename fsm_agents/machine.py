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

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, ClassVar, TypeVar

from statemachine import StateChart

from fsm_agents.errors import InvalidDefinition, InvalidTransition
from fsm_agents.events import Event, Step, Taken
from fsm_agents.state import Phase, Snapshot, ToolSpec

__all__ = ["Action", "FusedAction", "Guard", "GuardRef", "Machine", "Table", "Transition", "compile_chart", "fused"]

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


def compile_chart(
    chart: type[StateChart[Any]],
    guards: Mapping[str, Guard],
    actions: Mapping[str, Action],
    internal: frozenset[str] = frozenset(),
) -> Table:
    """Compile `chart` into a `Table`, resolving guard and action names.

    Raises `InvalidDefinition` when a state is not named after a `Phase`, a guard or action name
    has no function, a chart event is eventless or carries several names, an internal event is
    not the single way out of its source state, or a phase appears twice.
    python-statemachine itself already rejected unreachable states, trap states and states with
    no path to a final state when the chart class was created.
    """
    name = chart.__name__
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
                if gname not in guards:
                    raise InvalidDefinition(f"{name}: guard {gname!r} on {t.source.id}->{t.target.id} has no function")
                used_guards.add(gname)
                refs.append(GuardRef(gname, negate, guards[gname]))
            action_names = [spec.func for spec in t.on if not spec.is_convention]
            if len(action_names) > 1:
                raise InvalidDefinition(f"{name}: transition {t.source.id}->{t.target.id} has several actions")
            action_name = action_names[0] if action_names else None
            if action_name is not None and action_name not in actions:
                raise InvalidDefinition(f"{name}: action {action_name!r} has no function")
            action = actions[action_name] if action_name else None
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
    unused = set(guards) - used_guards
    if unused:
        raise InvalidDefinition(f"{name}: guard functions not referenced by the chart: {sorted(unused)}")
    by_key: dict[tuple[Phase, str], list[Transition]] = {}
    for tr in transitions:
        by_key.setdefault((tr.source, tr.event), []).append(tr)
    auto: dict[Phase, str] = {}
    for ev in internal:
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
        internal=frozenset(internal),
        transitions=tuple(transitions),
        by_key=MappingProxyType({k: tuple(v) for k, v in by_key.items()}),
        auto=MappingProxyType(auto),
    )


_tuple_new = tuple.__new__


class Machine:
    """Base of every machine (an agent or a pattern): a name, a compiled table, pure `step`.

    Subclasses set `table` (usually once per class, via `compile_chart`), implement `start`, and
    map internal events to instances in `internal_events`.
    """

    table: Table
    name: str
    internal_events: ClassVar[Mapping[str, Event]] = MappingProxyType({})

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
            internal_event = self.internal_events[ev_name]
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
