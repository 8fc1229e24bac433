"""Behaviour of `Router` that mutation testing (`make mutation`, docs/mutation.md) found untested,
driven through the pure `start`/`step`: its definition errors and the classifier request, how a
reply is read as a label, what the conversation and the data record about the choice, the
failures (unknown label, failed route) and the replies it offers `check_machine`."""

from __future__ import annotations

import json
from typing import Any

import anyio
import pytest

from fsm_agents import Agent, InvalidDefinition, ModelReplied, Phase, Step
from fsm_agents.events import AgentOutcome, AgentsFinished, AgentTask, CallModel, RunAgents
from fsm_agents.models import call, reply
from fsm_agents.patterns import Router
from fsm_agents.state import AssistantMessage, Conversation, Failure, ModelRequest, SystemMessage, UserMessage, messages_from


def routes() -> dict[str, Agent]:
    return {"tech": Agent("tech"), "data": Agent("data")}


def classify(r: Router, text: str | None, input: Any = "plot the csv") -> Step:
    """The router started on `input`, after its classifier replied `text`."""
    return r.step(r.start(input).snapshot, ModelReplied(message=reply(text)))


def only_task(step: Step) -> AgentTask:
    (effect,) = step.effects
    assert isinstance(effect, RunAgents) and len(effect.tasks) == 1
    return effect.tasks[0]


def done(task: AgentTask, output: Any, *, said: str | None = None) -> AgentsFinished:
    """`task` ended DONE with `output`; with `said`, it reports its conversation (input + `said`)."""
    conv = None
    if said is not None:
        conv = Conversation.of(*messages_from(task.input), AssistantMessage(content=said, agent=task.machine))
    outcome = AgentOutcome(task_id=task.task_id, machine=task.machine, phase=Phase.DONE, output=output, conversation=conv)
    return AgentsFinished(outcomes=(outcome,))


def failed(task: AgentTask, failure: Failure, *, said: str | None = None) -> AgentsFinished:
    conv = None
    if said is not None:
        conv = Conversation.of(*messages_from(task.input), AssistantMessage(content=said, agent=task.machine))
    outcome = AgentOutcome(
        task_id=task.task_id, machine=task.machine, phase=Phase.FAILED, failure=failure, conversation=conv
    )
    return AgentsFinished(outcomes=(outcome,))


# -- definition ------------------------------------------------------------------------------------
def test_definition_errors_name_the_router_and_the_problem() -> None:
    with pytest.raises(InvalidDefinition, match=r"^router:r: at least one route is required$"):
        Router("r", lambda t: "x", {})
    with pytest.raises(
        InvalidDefinition, match=r"^router:r: the classifier must be an Agent or a function \(text\) -> label$"
    ):
        Router("r", "tech", routes())  # type: ignore[arg-type]
    with pytest.raises(InvalidDefinition, match=r"^router:r: a route is named 'default'; it would shadow the default$"):
        Router("r", lambda t: "x", {"default": Agent("a")}, default=Agent("b"))
    with pytest.raises(InvalidDefinition, match=r"^router name 'r r' must be 1-64 letters"):
        Router("r r", lambda t: "x", routes())


def test_a_route_named_default_may_be_the_default_itself() -> None:
    general = Agent("general")
    r = Router("r", lambda t: "x", {"default": general, "tech": Agent("tech")}, default=general)
    assert r.name == "router:r" and r.has_default
    assert dict(r.children()) == {"default": general.machine, "tech": r.children()["tech"]}


def test_the_classifier_is_asked_to_reply_with_one_of_the_labels() -> None:
    """A function classifier becomes an agent `<name>_classifier` with fixed instructions; an
    agent classifier keeps its own; the request appends the labels, in the order given."""
    r = Router("r", lambda t: "tech", routes())
    (effect,) = r.start("hi").effects
    assert isinstance(effect, CallModel) and effect.agent == "r_classifier"
    assert effect.request.instructions == "Classify the request.\n\nReply with exactly one of: tech, data."
    r = Router("r", Agent("cls", "Sort tickets."), routes())
    (effect,) = r.start("hi").effects
    assert isinstance(effect, CallModel) and effect.agent == "cls"
    assert effect.request.instructions == "Sort tickets.\n\nReply with exactly one of: tech, data."
    assert Router("r", Agent("cls"), {"a": Agent("a")}).start("hi").effects[0].request.instructions == (
        "Reply with exactly one of: a."
    )


def _complete(r: Router, request: ModelRequest) -> AssistantMessage:
    model = r.models()[r.classifier.name]

    async def go() -> AssistantMessage:
        return (await model.complete(request)).message

    return anyio.run(go)


def test_a_function_classifier_gets_the_last_user_text_or_an_empty_string() -> None:
    seen: list[str] = []

    def label(text: str) -> str:
        seen.append(text)
        return "tech"

    r = Router("r", label, routes())
    step = r.start([UserMessage(content="first"), AssistantMessage(content="noted"), UserMessage(content="second")])
    assert _complete(r, step.effects[0].request).content == "tech"
    step = r.start([SystemMessage(content="be brief")])  # no user message at all
    assert _complete(r, step.effects[0].request).content == "tech"
    assert seen == ["second", ""]


# -- start -----------------------------------------------------------------------------------------
def test_start_plans_under_the_run_id_with_the_context_and_the_classifier_as_agent() -> None:
    r = Router("r", lambda t: "tech", routes())
    ctx = {"user": "ann"}
    step = r.start("hi", ctx, run_id="r9")
    s = step.snapshot
    assert (s.phase, s.machine, s.agent, s.context, s.conversation.id) == (
        Phase.PLANNING,
        "router:r",
        "r_classifier",
        ctx,
        "r9",
    )
    assert s.data.input_len == 1 and step.effects[0].key.startswith("r9/")
    assert r.start("hi").snapshot.conversation.id == "run"


# -- reading the label -----------------------------------------------------------------------------
@pytest.mark.parametrize(
    "text",
    [
        "data",
        "DATA",
        " Data. ",
        "`data`",
        "'data'",
        '"data"',
        '{"route": "data"}',
        '{"label": " Data "}',
        '{"category": "data"}',
        '{"route": 3, "category": "data"}',  # the first key holding a string
        '"data"\n',
    ],
)
def test_a_reply_names_its_route_as_text_or_json(text: str) -> None:
    s = classify(Router("r", lambda t: "x", routes()), text).snapshot
    assert s.phase is Phase.EXECUTING and s.data.route == "data"


@pytest.mark.parametrize("text", ['"Data".', '"data."', "`data`.", "'Data' .", '" data. "'])
def test_a_period_inside_or_outside_the_quotes_is_not_part_of_the_label(text: str) -> None:
    """Models end a quoted label with a period either side of the closing quote (a reply of
    `"Data".` read as `Data"`, and the JSON string `"data."` as `data.`: unknown routes)."""
    s = classify(Router("r", lambda t: "x", routes()), text).snapshot
    assert s.phase is Phase.EXECUTING and s.data.route == "data"


def test_only_quotes_backticks_and_a_trailing_period_are_removed_from_a_label() -> None:
    """Letters at either end are part of the label (here X), and a leading period is kept."""
    r = Router("r", lambda t: "x", {"xray": Agent("xray"), "box": Agent("box"), ".net": Agent("net")})
    assert classify(r, "Xray").snapshot.data.route == "xray"
    assert classify(r, "BOX.").snapshot.data.route == "box"
    assert classify(r, ".NET").snapshot.data.route == ".net"


# -- choosing a route ------------------------------------------------------------------------------
def test_the_choice_is_recorded_in_the_conversation_and_the_data() -> None:
    r = Router("r", lambda t: "x", routes())
    step = classify(r, " 'Data.' ", input="plot the csv")
    s = step.snapshot
    assert (s.phase, s.agent, s.data.route, s.data.label) == (Phase.EXECUTING, None, "data", "Data")
    note = s.conversation.messages[-1]
    assert (note.role, note.content, note.tool_calls, note.agent) == ("assistant", " 'Data.' ", (), "r_classifier")
    assert [m.content for m in s.conversation.messages] == ["plot the csv", " 'Data.' "]
    task = only_task(step)
    assert task.machine == "data" and [m.content for m in task.input] == ["plot the csv"]  # not the reply


def test_an_unknown_label_runs_the_default_and_keeps_the_label() -> None:
    r = Router("r", lambda t: "x", routes(), default=Agent("general"))
    step = classify(r, "Poetry")
    s = step.snapshot
    assert (s.phase, s.agent, s.data.route, s.data.label) == (Phase.EXECUTING, None, "default", "Poetry")
    note = s.conversation.messages[-1]
    assert (note.role, note.content, note.tool_calls, note.agent) == ("assistant", "Poetry", (), "r_classifier")
    assert only_task(step).machine == "default"


def test_an_unknown_label_without_default_fails_naming_it_and_the_routes() -> None:
    r = Router("r", lambda t: "x", routes())
    s = classify(r, "`Poetry`").snapshot
    assert s.phase is Phase.FAILED and s.failure is not None
    assert (s.failure.kind, s.failure.detail, s.data.label, s.data.route) == ("unknown_route", "Poetry", "Poetry", None)
    assert s.failure.message == (
        "router:r: the classifier chose 'Poetry', which is not a route (tech, data) and there is no default"
    )
    note = s.conversation.messages[-1]
    assert (note.role, note.content, note.tool_calls, note.agent) == ("assistant", "`Poetry`", (), "r_classifier")
    assert [m.content for m in s.conversation.messages] == ["plot the csv", "`Poetry`"]


def test_a_reply_without_text_is_the_empty_label() -> None:
    r = Router("r", lambda t: "x", routes())
    s = r.step(r.start("hi").snapshot, ModelReplied(message=reply(None, call("lookup", "c1")))).snapshot
    assert s.failure is not None and (s.failure.kind, s.failure.detail, s.data.label) == ("unknown_route", "", "")
    assert s.failure.message.startswith("router:r: the classifier chose '', which is not a route")


@pytest.mark.parametrize("label", ["", " ", "tech ", 3, None])
def test_a_route_label_must_be_a_non_empty_string_without_surrounding_whitespace(label: object) -> None:
    """A label the stripped reply can never equal (or not a string) is refused at definition."""
    with pytest.raises(InvalidDefinition, match=r"^router:r: a route label must be a non-empty string without"):
        Router("r", lambda t: "x", {label: Agent("blank"), "data": Agent("data")})  # type: ignore[dict-item]


def test_two_labels_equal_but_for_case_are_refused() -> None:
    with pytest.raises(InvalidDefinition, match=r"^router:r: the routes 'Tech' and 'tech' differ only in case"):
        Router("r", lambda t: "x", {"Tech": Agent("a"), "tech": Agent("b")})


# -- the route's result ----------------------------------------------------------------------------
def test_the_longest_run_takes_exactly_the_bound_on_transitions() -> None:
    """PLANNING → EXECUTING → OBSERVING → DONE: `max_transitions()` is the tight bound."""
    r = Router("r", lambda t: "x", routes())
    step = classify(r, "tech")
    s = r.step(step.snapshot, done(only_task(step), "fixed it", said="fixed it")).snapshot
    assert s.phase is Phase.DONE and s.output == "fixed it"
    assert s.step == r.max_transitions() == 3


@pytest.mark.parametrize("label", ["tech", "Fixes"])
def test_a_route_that_reports_no_conversation_is_folded_as_its_output_under_its_label(label: str) -> None:
    r = Router("r", lambda t: "x", {label: Agent("tech")})
    step = classify(r, label)
    s = r.step(step.snapshot, done(only_task(step), {"n": 1})).snapshot
    assert s.phase is Phase.DONE and s.output == {"n": 1}
    last = s.conversation.messages[-1]
    assert (last.role, last.content, last.agent) == ("assistant", '{"n": 1}', label)


def test_a_failed_route_fails_the_router_keeping_what_it_said() -> None:
    r = Router("r", lambda t: "x", routes())
    step = classify(r, "tech")
    event = failed(only_task(step), Failure(kind="model_error", message="tech: timeout"), said="half an answer")
    s = r.step(step.snapshot, event).snapshot
    assert s.phase is Phase.FAILED and s.output is None and s.failure is not None
    assert (s.failure.kind, s.failure.detail) == ("child_failed", "tech")
    assert s.failure.message == "router:r: route 'tech' failed: model_error: tech: timeout"
    assert [m.content for m in s.conversation.messages] == ["plot the csv", "tech", "half an answer"]


def test_a_route_stopped_by_a_usage_limit_fails_the_router_on_that_limit() -> None:
    r = Router("r", lambda t: "x", routes())
    step = classify(r, "data")
    limit = Failure(kind="usage_limit", message="data: request limit of 3 exceeded", detail="requests")
    s = r.step(step.snapshot, failed(only_task(step), limit)).snapshot
    assert s.failure is not None and (s.failure.kind, s.failure.detail) == ("usage_limit", "requests")


def test_a_route_that_reports_no_outcome_fails_the_router() -> None:
    r = Router("r", lambda t: "x", routes())
    step = classify(r, "data")
    s = r.step(step.snapshot, AgentsFinished(outcomes=())).snapshot
    assert s.phase is Phase.FAILED and s.failure is not None
    assert (s.failure.kind, s.failure.detail) == ("child_failed", "data")
    assert s.failure.message == "router:r: route 'data' failed: no outcome was reported"


# -- what check_machine explores -------------------------------------------------------------------
def test_example_replies_name_every_route_as_text_and_as_json_and_one_unknown_label() -> None:
    r = Router("r", lambda t: "x", {"Tech": Agent("tech"), "data": Agent("data")})
    examples = r.example_replies("r_classifier")
    assert examples == ("Tech", "data", '{"route": "Tech"}', '{"route": "data"}', "no-such-route")
    assert [classify(r, x).snapshot.data.route for x in examples[:-1]] == ["Tech", "data", "Tech", "data"]
    assert classify(r, examples[-1]).snapshot.failure.kind == "unknown_route"  # type: ignore[union-attr]
    assert json.loads(examples[2]) == {"route": "Tech"}
