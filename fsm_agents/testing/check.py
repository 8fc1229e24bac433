"""`check_machine`: explore a machine with hypothesis and assert the invariants of docs/architecture.md.

A `hypothesis.stateful.RuleBasedStateMachine` with a single rule explores whole runs (by
default four independent runs per example): the rule starts the machine on a generated input,
then draws an event the current phase accepts (`strategies.events`) and calls `step` until the
run reaches a final phase (or `max_steps`), checking after every step:

1. `declared`     — only transitions declared in the chart are taken, chained from the
                    current phase; final phases accept nothing (`InvalidTransition`);
2. `pure`         — `step` is deterministic and does not alter its input snapshot;
3. `append_only`  — each snapshot's conversation is a prefix of the next one's;
4. `tool_results` — every tool call has exactly one result before the next model call;
5. `progress`     — `snapshot.step` counts transitions: each call to `step` advances it by
                    exactly the number of transitions it reports (so it strictly increases),
                    each reported transition carries its own step number, and a run ends
                    within the machine's `max_transitions()` bound;
6. `effects`      — effects match phases (`CallModel` only in PLANNING, `RunTools` /
                    `RunAgents` only in EXECUTING, none in a final phase, ≥ 1 elsewhere);
7. `replay`       — folding the run's events over `start` gives the same final snapshot;
8. `oracle`       — python-statemachine's own engine, driven with the same events and the same
                    guard functions, takes the same transitions as the compiled table;
9. `decisions`    — awaited calls are decided exactly once before the next model call;
10. `limits`      — a `LimitExceeded` ends the run FAILED(`usage_limit`) naming the limit, with
                    no output and no tool call left unanswered;
11. `guardrails`  — a `GuardrailTripped` ends the run FAILED(`guardrail`) naming the guardrail,
                    with no output; `OutputChecked` ends it DONE with the output it checked.

`LimitExceeded` is drawn in every phase that accepts it (rarely, like the other failures).

Between steps it also feeds, by a drawn choice, events the phase does not accept (at most two
per phase visited, one in the final phase) and expects `InvalidTransition`. A user invariant is
a plain function `(before, event, after) -> bool | None` over snapshots; returning False or
raising `AssertionError` is a violation. The result is a `CheckReport` (transitions covered /
declared, guards seen true and false, longest run, examples and runs).

Why one rule drives a whole run: with one rule per event, hypothesis' swarm testing disables
a random subset of rules per example, so the only rule a phase allows was often disabled and
the example rejected; and finished runs idled until `stateful_step_count`. Here no
precondition exists, each rule call is one run (`stateful_step_count = runs_per_example`, so
several runs share hypothesis' fixed per-example cost), and a violation raises at the failing
step, so the shrinker drops the runs it does not need and cuts the failing one down to a short
event sequence (the strategies draw the run-ending choice first). python-statemachine's engine
for the oracle is built once per `check_machine` call; its answer for each distinct (state,
event, guard values) is memoized, since the engine's choice depends on nothing else.
"""

from __future__ import annotations

import collections
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from hypothesis import HealthCheck
from hypothesis import Phase as Phase_
from hypothesis import seed as hypothesis_seed
from hypothesis import settings as Settings
from hypothesis import strategies as st
from hypothesis.errors import Flaky
from hypothesis.stateful import RuleBasedStateMachine, get_state_machine_test, rule

from fsm_agents.errors import (
    InvalidTransition,
    InvariantViolation,
)
from fsm_agents.events import (
    Approved,
    AwaitInput,
    CallModel,
    CheckOutput,
    Effect,
    Event,
    GuardrailTripped,
    InputReceived,
    LimitExceeded,
    OutputChecked,
    RunAgents,
    RunTools,
    Step,
)
from fsm_agents.machine import Machine, Transition
from fsm_agents.runtime import as_machine
from fsm_agents.state import AssistantMessage, Conversation, Phase, Snapshot, ToolMessage
from fsm_agents.testing import strategies as fst

__all__ = [
    "DEFAULT",
    "INVARIANTS",
    "CheckReport",
    "InvariantViolation",
    "check_machine",
    "check_module",
    "history_problems",
]

UserInvariant = Callable[[Snapshot[Any], Event, Snapshot[Any]], Any]


def history_problems(conversation: Conversation) -> list[str]:
    """Problems with a conversation's tool-call bookkeeping: an assistant tool call with no
    result, or with more than one, or a tool message answering no pending call. Empty = well formed."""
    problems: list[str] = []
    open_calls: dict[str, int] = {}
    for i, m in enumerate(conversation.messages):
        if isinstance(m, AssistantMessage):
            for cid, n in open_calls.items():
                if n == 0:
                    problems.append(f"tool call {cid!r} has no result before message {i}")
            open_calls = {c.id: 0 for c in m.tool_calls}
        elif isinstance(m, ToolMessage):
            if m.tool_call_id not in open_calls:
                problems.append(f"message {i} answers unknown or closed tool call {m.tool_call_id!r}")
            else:
                open_calls[m.tool_call_id] += 1
                if open_calls[m.tool_call_id] > 1:
                    problems.append(f"tool call {m.tool_call_id!r} has {open_calls[m.tool_call_id]} results")
    return problems


@dataclass
class _Ctx:
    """What an invariant sees for one step."""

    machine: Machine
    before: Snapshot[Any]
    before_dump: Any
    before_hash: int
    event: Event
    after: Step
    again: Step
    before_effects: tuple[Effect, ...] = ()


@lru_cache(maxsize=64)
def _declared(chart: Any) -> frozenset[tuple[Phase, str, Phase]]:
    """(source, event, target) of every transition the python-statemachine chart declares."""
    return frozenset(
        (Phase(t.source.name), str(e), Phase(t.target.name)) for s in chart.states for t in s.transitions for e in t.events
    )


def _inv_declared(ctx: _Ctx) -> None:
    declared = _declared(ctx.machine.chart)
    phase = ctx.before.phase
    for taken in ctx.after.transitions:
        assert (taken.source, taken.event, taken.target) in declared, f"undeclared transition {taken}"
        assert taken.source == phase, f"transition {taken} does not start from the current phase {phase}"
        phase = taken.target
    assert phase == ctx.after.snapshot.phase, (
        f"the snapshot is in {ctx.after.snapshot.phase} but the last transition led to {phase}"
    )
    assert ctx.after.transitions, "step took no transition"


def _inv_pure(ctx: _Ctx) -> None:
    assert ctx.before.model_dump() == ctx.before_dump and hash(ctx.before) == ctx.before_hash, (
        "step altered its input snapshot"
    )
    assert ctx.after.snapshot == ctx.again.snapshot, "step is not deterministic: two calls gave different snapshots"
    assert ctx.after.effects == ctx.again.effects, "step is not deterministic: two calls gave different effects"
    hash(ctx.after.snapshot)  # deep immutability: every reachable value is hashable


def _inv_append_only(ctx: _Ctx) -> None:
    before, after = ctx.before.conversation.messages, ctx.after.snapshot.conversation.messages
    assert before.is_prefix_of(after), "the conversation was rewritten, not appended to"


def _inv_tool_results(ctx: _Ctx) -> None:
    if any(isinstance(e, CallModel) for e in ctx.after.effects):
        problems = history_problems(ctx.after.snapshot.conversation)
        assert not problems, "a model call was emitted while " + "; ".join(problems)
        assert not ctx.after.snapshot.pending, "a model call was emitted with tool calls still pending"


def _inv_progress(ctx: _Ctx) -> None:
    before, after = ctx.before.step, ctx.after.snapshot
    taken = ctx.after.transitions
    # `declared` already requires at least one transition, so this also means: step increases
    assert after.step == before + len(taken), (
        f"step went {before} -> {after.step} over {len(taken)} transition(s): each transition advances it by one"
    )
    for i, t in enumerate(taken, 1):
        assert t.step == before + i, f"transition {t} is numbered {t.step}, expected step {before + i}"
    bound = ctx.machine.max_transitions()
    if bound is not None:
        assert after.step <= bound, f"{after.step} transitions exceed the machine's bound of {bound}"
        assert after.step < bound or after.is_final, f"reached the bound of {bound} transitions without a final phase"


def _effects_match(phase: Phase, effects: tuple[Effect, ...]) -> None:
    if phase in (Phase.DONE, Phase.FAILED):
        assert not effects, f"final phase {phase} emitted effects {effects}"
        return
    assert effects, f"phase {phase} emitted no effect: the run would stall"
    for e in effects:
        if isinstance(e, CallModel):
            assert phase is Phase.PLANNING, f"CallModel emitted in {phase}"
        elif isinstance(e, (RunTools, RunAgents, AwaitInput, CheckOutput)):
            assert phase is Phase.EXECUTING, f"{type(e).__name__} emitted in {phase}"


def _inv_effects(ctx: _Ctx) -> None:
    _effects_match(ctx.after.snapshot.phase, ctx.after.effects)


def _inv_decisions(ctx: _Ctx) -> None:
    """Every awaited call is decided exactly once before the next model call: an `AwaitInput`
    asks once for each of its calls, all pending; after `InputReceived`, each awaited call either
    runs (approved) or has its decided result, never both, and a denied call never runs."""
    after = ctx.after.snapshot
    for e in ctx.after.effects:
        if isinstance(e, AwaitInput):
            pending = {c.id for c in after.pending}
            asked = [r.call_id for r in e.requests]
            assert len(asked) == len(set(asked)), f"AwaitInput asks twice for a call: {asked}"
            for cid in asked:
                assert cid in pending, f"AwaitInput asks for {cid}, which is not a pending call"
    awaited = [e for e in ctx.before_effects if isinstance(e, AwaitInput)]
    if not awaited or not isinstance(ctx.event, InputReceived):
        return
    runs = [e for e in ctx.after.effects if isinstance(e, RunTools)]
    ran = {c.id for e in runs for c in e.calls}
    decided = [r.call_id for r in after.results]
    assert len(decided) == len(set(decided)), f"a call was decided twice: {decided}"
    for request in awaited[0].requests:
        d = ctx.event.decision_for(request.call_id)
        in_run, in_results = request.call_id in ran, request.call_id in decided
        assert in_run != in_results, (
            f"awaited call {request.call_id} must either run or have its decided result (runs: {in_run}, "
            f"decided: {in_results})"
        )
        if in_run:
            assert isinstance(d, Approved) and request.kind == "approval", (
                f"call {request.call_id} runs without an approval (decision: {d!r})"
            )
    assert not any(isinstance(e, CallModel) for e in ctx.after.effects), "a model call came before the awaited calls ran"


def _inv_limits(ctx: _Ctx) -> None:
    """A usage limit ends the run FAILED(`usage_limit`), the limit named in `detail`, without
    an output, every tool call of the history answered and nothing pending."""
    if not isinstance(ctx.event, LimitExceeded):
        return
    after = ctx.after.snapshot
    assert after.phase is Phase.FAILED, f"LimitExceeded led to {after.phase}, not FAILED"
    f = after.failure
    assert f is not None and f.kind == "usage_limit", f"LimitExceeded ended the run with failure {f!r}, not usage_limit"
    assert f.detail == ctx.event.limit, f"the usage_limit failure names {f.detail!r}, not the limit {ctx.event.limit!r}"
    assert after.output is None, "a run stopped by a usage limit kept an output"
    assert not after.pending, "a run stopped by a usage limit left tool calls pending"
    problems = history_problems(after.conversation) + _unanswered(after.conversation)
    assert not problems, "a run stopped by a usage limit left its history malformed: " + "; ".join(problems)


def _unanswered(conversation: Conversation) -> list[str]:
    """The tool calls of the last assistant message that no later tool message answers (a run
    still working may have them; a finished one must not)."""
    messages = tuple(conversation.messages)
    for i in range(len(messages) - 1, -1, -1):
        m = messages[i]
        if isinstance(m, AssistantMessage):
            answered = {t.tool_call_id for t in messages[i + 1 :] if isinstance(t, ToolMessage)}
            return [f"tool call {c.id!r} has no result" for c in m.tool_calls if c.id not in answered]
    return []


def _inv_guardrails(ctx: _Ctx) -> None:
    """A trip ends the run FAILED(`guardrail`) naming it, without an output; `OutputChecked`
    ends it DONE with the output that was checked."""
    after = ctx.after.snapshot
    if isinstance(ctx.event, GuardrailTripped):
        f = after.failure
        assert after.phase is Phase.FAILED, f"GuardrailTripped led to {after.phase}, not FAILED"
        assert f is not None and f.kind == "guardrail" and f.detail == ctx.event.guardrail, (
            f"a trip of {ctx.event.guardrail!r} ended the run with failure {f!r}"
        )
        assert after.output is None, "a run stopped by a guardrail kept an output"
    elif isinstance(ctx.event, OutputChecked):
        checked = [e for e in ctx.before_effects if isinstance(e, CheckOutput)]
        assert after.phase is Phase.DONE, f"OutputChecked led to {after.phase}, not DONE"
        if checked:
            assert after.output == checked[0].output, "the run's output is not the answer its guardrails checked"


INVARIANTS: dict[str, Callable[[_Ctx], None]] = {
    "declared": _inv_declared,
    "pure": _inv_pure,
    "append_only": _inv_append_only,
    "tool_results": _inv_tool_results,
    "progress": _inv_progress,
    "effects": _inv_effects,
    "decisions": _inv_decisions,
    "limits": _inv_limits,
    "guardrails": _inv_guardrails,
}
# `replay` and `oracle` run at teardown / alongside each step rather than as per-step checks
DEFAULT: tuple[str, ...] = (*INVARIANTS, "replay", "oracle")


class _Oracle:
    """python-statemachine's engine driven with the same events; guards call our guard functions.

    The engine's choice is a function of its state, the event and the values of the guards on
    that event's transitions out of that state, so each distinct (state, event, guard values)
    is sent to the engine once per `check_machine` call and its answer reused: every guard is
    evaluated for the key (when one raises, the engine is asked directly, uncached). The engine
    is placed in the state to ask from before each send.
    """

    def __init__(self, machine: Machine) -> None:
        chart = machine.chart
        self.snapshot: Snapshot[Any] | None = None
        self.event: Event | None = None
        self.machine = machine
        self._answers: dict[tuple[Phase, str, tuple[bool, ...]], Phase] = {}
        self._guards: dict[tuple[Phase, str], tuple[Callable[[Snapshot[Any], Event], bool], ...]] = {
            key: tuple(dict.fromkeys(g.fn for tr in candidates for g in tr.guards))
            for key, candidates in machine.table.by_key.items()
        }
        self._values = {Phase(state.name): state.value for state in chart.states}
        attrs: dict[str, Any] = {}
        for tr in machine.table.transitions:
            for g in tr.guards:
                attrs[g.name] = self._guard(g.fn)
            if tr.action_name:
                attrs[tr.action_name] = _noop
        model = type("OracleModel", (), attrs)()
        model.oracle = self
        self.chart = chart
        self.model = model
        self.sm = self._build()

    def _build(self) -> Any:
        sm = self.chart(model=self.model)
        sm.catch_errors_as_events = False
        sm.allow_event_without_transition = False
        return sm

    def place(self, phase: Phase) -> None:
        """Put the engine in `phase`, running, with no queued events."""
        engine = getattr(self.sm, "_engine", None)
        if engine is None or not hasattr(engine, "running") or not hasattr(engine, "clear"):
            self.sm = self._build()  # pragma: no cover - another python-statemachine version
            engine = self.sm._engine
        engine.clear()
        engine.running = True
        self.sm.current_state_value = self._values[phase]

    def ask(self, snapshot: Snapshot[Any], event: Event) -> Phase:
        """The state the engine goes to from `snapshot.phase` on `event` (memoized, see above)."""
        try:
            key = (
                snapshot.phase,
                event.name,
                tuple(bool(fn(snapshot, event)) for fn in self._guards[(snapshot.phase, event.name)]),
            )
        except Exception:
            key = None  # a guard that raises out of the table's order: ask the engine, do not cache
        answer = self._answers.get(key) if key is not None else None
        if answer is None:
            self.place(snapshot.phase)
            self.snapshot, self.event = snapshot, event
            self.sm.send(event.name)
            answer = self.phase
            if key is not None:
                self._answers[key] = answer
        return answer

    def _guard(self, fn: Callable[[Snapshot[Any], Event], bool]) -> Callable[..., bool]:
        def evaluate(*args: Any, **kwargs: Any) -> bool:
            assert self.snapshot is not None and self.event is not None
            return bool(fn(self.snapshot, self.event))

        return evaluate

    @property
    def phase(self) -> Phase:
        (state,) = [s for s in self.sm.configuration]
        return Phase(state.name)

    def send(self, before: Snapshot[Any], event: Event, step: Step) -> None:
        """Feed `event` (then the internal events `step` raised) and compare each state reached."""
        snapshot = before
        ev = event
        last = len(step.transitions) - 1
        for i, taken in enumerate(step.transitions):
            if taken.event != ev.name:
                ev = self.machine.internal_events[taken.event]
            reached = self.ask(snapshot, ev)
            assert reached == taken.target, (
                f"python-statemachine went {taken.source} --{ev.name}--> {reached}, the table went to {taken.target}"
            )
            if i < last:  # the snapshot the next (internal) event is taken from
                candidates = self.machine.table.by_key[(snapshot.phase, ev.name)]
                snapshot = self.machine._take(snapshot, ev, candidates).snapshot


def _noop(*args: Any, **kwargs: Any) -> None:
    return None


@dataclass
class CheckReport:
    """What `check_machine` explored."""

    machine: str
    declared: tuple[Transition, ...]
    covered: collections.Counter[tuple[Phase, str, Phase, str]] = field(default_factory=collections.Counter)
    guards: dict[str, list[int]] = field(default_factory=dict)  # label -> [times true, times false]
    examples: int = 0
    runs: int = 0
    steps: int = 0
    rejected: int = 0
    longest_run: int = 0
    invariants: tuple[str, ...] = ()

    @staticmethod
    def key(t: Transition) -> tuple[Phase, str, Phase, str]:
        return (t.source, t.event, t.target, t.label)

    @property
    def uncovered(self) -> tuple[Transition, ...]:
        return tuple(t for t in self.declared if self.covered[self.key(t)] == 0)

    @property
    def coverage(self) -> float:
        return 1.0 - len(self.uncovered) / len(self.declared) if self.declared else 1.0

    def __str__(self) -> str:
        n_cov = len(self.declared) - len(self.uncovered)
        lines = [
            f"check_machine({self.machine}): {self.examples} examples, {self.runs} runs, {self.steps} steps, "
            f"{self.rejected} rejected events, longest run {self.longest_run} steps",
            f"invariants: {', '.join(self.invariants)}",
            f"transitions covered: {n_cov}/{len(self.declared)}",
        ]
        for t in self.declared:
            lines.append(f"  {self.covered[self.key(t)]:>7}  {t.source} --{t.label}--> {t.target}")
        if self.guards:
            lines.append("guards (true / false):")
            for name, (yes, no) in sorted(self.guards.items()):
                lines.append(f"  {name:<24} {yes:>7} / {no:<7}")
        return "\n".join(lines)


def _user_invariant(fn: UserInvariant) -> tuple[str, Callable[[_Ctx], None]]:
    name = getattr(fn, "__name__", repr(fn))

    def check(ctx: _Ctx) -> None:
        result = fn(ctx.before, ctx.event, ctx.after.snapshot)
        assert result is None or result is True, f"user invariant {name} returned {result!r}"

    return name, check


def check_machine(
    machine: Any,
    *,
    invariants: Iterable[str] = DEFAULT,
    extra: Iterable[UserInvariant] = (),
    max_examples: int = 200,
    max_steps: int = 40,
    seed: int | None = None,
    inputs: st.SearchStrategy[Any] | None = None,
    assert_full_coverage: bool = False,
    runs_per_example: int = 4,
) -> CheckReport:
    """Explore `machine` (a `Machine`, an `Agent` or a pattern) and assert the invariants.

    - `invariants`: names from `DEFAULT` (all of them by default);
    - `extra`: user invariants `(before, event, after) -> bool | None`;
    - `max_examples`: hypothesis examples; each is `runs_per_example` independent runs from
      `start` (the shrinker drops the runs a counterexample does not need); `max_steps`: events
      per run at most;
    - `seed`: make the exploration reproducible; `inputs`: strategy for the start input
      (default: the machine's `example_inputs()`, or short strings);
    - `assert_full_coverage`: also fail when a declared transition was never taken (after up to
      `COVERAGE_ROUNDS` extra passes with the next seeds, which only run while one is missing).

    Returns a `CheckReport`. Raises `InvariantViolation` (an `AssertionError`) with a shrunk
    counterexample when an invariant fails, or when coverage is required and incomplete;
    `ValueError` for an unknown invariant name or `runs_per_example` < 1.
    """
    m = as_machine(machine)
    chosen = tuple(invariants)
    unknown = set(chosen) - set(DEFAULT)
    if unknown:
        raise ValueError(f"unknown invariants {sorted(unknown)}; choose from {DEFAULT}")
    if runs_per_example < 1:
        raise ValueError(f"runs_per_example must be at least 1, got {runs_per_example}")
    checks = [(n, INVARIANTS[n]) for n in chosen if n in INVARIANTS] + [_user_invariant(f) for f in extra]
    use_oracle = "oracle" in chosen
    use_replay = "replay" in chosen
    report = CheckReport(
        machine=m.name, declared=m.table.transitions, invariants=chosen + tuple(n for n, _ in checks[len(chosen) :])
    )
    for t in m.table.transitions:
        for g in t.guards:
            report.guards.setdefault(g.name, [0, 0])
    input_strategy = inputs if inputs is not None else fst.inputs(m)

    oracle = _Oracle(m) if use_oracle else None  # one engine and one memo for the whole check
    accepts = m.table.accepts

    def probes(snapshot: Snapshot[Any], effects: tuple[Effect, ...]) -> st.SearchStrategy[Event]:
        """Accepted events, or (one draw in six) an event the phase must reject."""
        tasks = tuple((t.task_id, t.machine) for e in effects if isinstance(e, RunAgents) for t in e.tasks)
        waits = any(isinstance(e, AwaitInput) for e in effects)  # decisions, or the tools' results
        key = (snapshot.phase, snapshot.agent, snapshot.pending, tasks, waits)
        found = mixed.get(key)
        if found is None:
            accepted = fst.events(m, snapshot, effects)
            rejected = fst.events(m, snapshot, effects, rejected=True)
            found = accepted if rejected.is_empty else fst._weighted((accepted, 5), (rejected, 1))
            if len(mixed) > 4096:
                mixed.clear()
            mixed[key] = found
        return found

    mixed: dict[Any, st.SearchStrategy[Event]] = {}
    seen: list[InvariantViolation] = []  # every violation raised, for when hypothesis cannot replay one

    class Explorer(RuleBasedStateMachine):
        def __init__(self) -> None:
            super().__init__()
            report.examples += 1
            self.events: list[Event] = []
            self.failed = False

        def fail(self, invariant: str, message: str) -> None:
            self.failed = True  # teardown must not mask this violation with a second one
            violation = InvariantViolation(invariant, message, self.events)
            seen.append(violation)
            raise violation

        @rule(value=input_strategy, data=st.data())
        def run(self, value: Any, data: st.DataObject) -> None:
            """One whole run: `start(value)`, then events drawn until a final phase or `max_steps`,
            with up to two rejected-event probes per phase visited and one in the final phase."""
            report.runs += 1
            self.input = value
            self.events = []
            self.step_ = m.start(value, run_id="check")
            try:
                if "effects" in chosen:
                    _effects_match(self.step_.snapshot.phase, self.step_.effects)
            except AssertionError as exc:
                self.fail("effects", str(exc))
            # draw through the conjecture data: `DataObject.draw` also snapshots the global random
            # state twice and prepares a printout per draw (≈ 4x the cost of a small draw); the
            # events are reported by InvariantViolation instead
            conjecture = getattr(data, "conjecture_data", None)
            draw = data.draw if conjecture is None else conjecture.draw
            rejections = 0
            while True:
                step = self.step_
                before = step.snapshot
                if before.is_final or len(self.events) >= max_steps:
                    if before.is_final:  # a final phase accepts nothing
                        self.reject(before, draw(fst.events(m, before, step.effects, rejected=True)))
                    self.replay()
                    return
                strategy = probes(before, step.effects) if rejections < 2 else fst.events(m, before, step.effects)
                event = draw(strategy)
                if event.name not in accepts(before.phase):
                    rejections += 1
                    self.reject(before, event)
                    continue
                self.accept(before, event)
                rejections = 0

        def reject(self, before: Snapshot[Any], event: Event) -> None:
            try:
                m.step(before, event)
            except InvalidTransition:
                report.rejected += 1
                return
            self.fail("declared", f"phase {before.phase} accepted {event.name}, which the chart does not allow there")

        def accept(self, before: Snapshot[Any], event: Event) -> None:
            self._record_guards(before, event)
            dump, digest = before.model_dump(), hash(before)
            try:
                after = m.step(before, event)
            except InvalidTransition as exc:
                if exc.no_guard:
                    self.fail("declared", f"no guard held for accepted event {event.name} in {before.phase}")
                raise
            self.events.append(event)
            again = m.step(before, event)
            ctx = _Ctx(m, before, dump, digest, event, after, again, self.step_.effects)
            for name, check in checks:
                try:
                    check(ctx)
                except AssertionError as exc:
                    self.fail(name, str(exc))
            if oracle is not None:
                try:
                    oracle.send(before, event, after)
                except AssertionError as exc:
                    self.fail("oracle", str(exc))
                except Exception as exc:
                    self.fail("oracle", f"python-statemachine raised {type(exc).__name__}: {exc}")
            for taken in after.transitions:
                report.covered[CheckReport.key(m.table.transitions[taken.index])] += 1
            report.steps += 1
            self.step_ = after
            report.longest_run = max(report.longest_run, len(self.events))

        def _record_guards(self, before: Snapshot[Any], event: Event) -> None:
            for t in m.table.by_key.get((before.phase, event.name), ()):
                for g in t.guards:
                    report.guards[g.name][0 if g.fn(before, event) else 1] += 1

        def replay(self) -> None:
            if use_replay and self.events and not self.failed:
                step = m.start(self.input, run_id="check")
                for e in self.events:
                    step = m.step(step.snapshot, e)
                if step.snapshot != self.step_.snapshot:
                    self.fail("replay", "replaying the events from start gave a different final snapshot")

    Explorer.__name__ = f"Explore_{m.name.replace(':', '_')}"
    settings = Settings(
        max_examples=max_examples,
        # `run` is a whole run: nothing idles, no precondition can disable it; several runs per
        # example share hypothesis' fixed per-example cost (≈ 1 ms)
        stateful_step_count=runs_per_example,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
        print_blob=False,
        report_multiple_bugs=False,  # one InvariantViolation: the simplest counterexample found
        # the explain phase re-runs whole runs with each span varied: minutes for a note we drop
        phases=tuple(p for p in Phase_ if p is not Phase_.explain),
    )
    # with `assert_full_coverage`, a pass that missed a rare transition is followed by up to
    # COVERAGE_ROUNDS more passes (the next seeds), coverage accumulating across them
    rounds = 1 + (COVERAGE_ROUNDS if assert_full_coverage else 0)
    for round_ in range(rounds):
        test = get_state_machine_test(Explorer, settings=settings)
        if seed is not None:
            test = hypothesis_seed(seed + round_)(test)
        try:
            test()
        except Flaky as exc:
            # the machine behaved differently on the same events: it depends on state outside its
            # snapshot (e.g. it mutated a shared object). Report the shortest violation seen.
            if not seen:
                raise
            shortest = min(seen, key=lambda v: len(v.events))
            note = "; hypothesis could not replay the run: the machine depends on state outside its snapshot"
            raise InvariantViolation(shortest.invariant, shortest.message + note, shortest.events) from exc
        if not report.uncovered:
            break
    if assert_full_coverage and report.uncovered:
        missing = ", ".join(f"{t.source} --{t.label}--> {t.target}" for t in report.uncovered)
        raise InvariantViolation("coverage", f"declared transitions never taken in {rounds} passes: {missing}")
    return report


COVERAGE_ROUNDS = 3


def exported_machines(target: Any) -> dict[str, Any]:
    """The agents, patterns and machines `target` exports: a module's public attributes (its
    `__all__` if it has one) that are a `Machine` or have a `.machine`, or a list of them."""
    from types import ModuleType

    if isinstance(target, ModuleType):
        names = getattr(target, "__all__", None) or [n for n in vars(target) if not n.startswith("_")]
        items = {n: getattr(target, n) for n in names}
    else:
        items = {getattr(as_machine(t), "name", str(i)): t for i, t in enumerate(target)}
    found: dict[str, Any] = {}
    for name, value in items.items():
        if isinstance(value, type):
            continue
        try:
            as_machine(value)
        except TypeError:
            continue
        found[name] = value
    return found


def check_module(target: Any, **kwargs: Any) -> dict[str, CheckReport]:
    """`check_machine(obj, **kwargs)` for every machine `target` exports (see
    `exported_machines`); returns the reports by name. Raises `InvariantViolation` on the first
    violation and `ValueError` when `target` exports no machine."""
    machines = exported_machines(target)
    if not machines:
        raise ValueError(f"{target!r} exports no agent, pattern or machine")
    return {name: check_machine(obj, **kwargs) for name, obj in machines.items()}
