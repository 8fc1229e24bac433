"""`Router`: a classifier picks one route label; the route's agent or pattern handles the request.

PLANNING  --model_replied [known_route]--> EXECUTING        (run the chosen route)
PLANNING  --model_replied--> EXECUTING | FAILED              (unknown label: the default route,
                                                              or FAILED(unknown_route) naming it)
PLANNING  --model_failed--> FAILED
EXECUTING --agents_finished [child_failed]--> FAILED
EXECUTING --agents_finished--> OBSERVING --observed--> DONE
"""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from typing import Any, cast

from statemachine import State

from fsm_agents.agent import Agent, model_request
from fsm_agents.errors import InvalidDefinition
from fsm_agents.events import Event, ModelReplied, Observed, Step
from fsm_agents.machine import Machine, compile_chart
from fsm_agents.models.scripted import FunctionModel
from fsm_agents.patterns._base import ChartClass, Pattern, chart_class, pattern_name, resolve_child
from fsm_agents.state import AssistantMessage, Conversation, Frozen, ModelRequest, Phase, Snapshot, messages_from

__all__ = ["DEFAULT_ROUTE", "Router", "RouterData", "router_chart"]

DEFAULT_ROUTE = "default"


def router_chart(*, has_default: bool) -> ChartClass:
    """The router's chart; with a default route an unknown label runs it, without one it fails."""
    planning = State("PLANNING", initial=True)
    executing = State("EXECUTING")
    observing = State("OBSERVING")
    done = State("DONE", final=True)
    failed = State("FAILED", final=True)
    # transitions are tried in creation order: the unknown-label fallback must be created last
    known = planning.to(executing, cond="known_route", on="run_route")
    unknown = planning.to(executing, on="run_default") if has_default else planning.to(failed, on="fail_route")
    return chart_class(
        "RouterWithDefaultChart" if has_default else "RouterChart",
        {
            "planning": planning,
            "executing": executing,
            "observing": observing,
            "done": done,
            "failed": failed,
            "model_replied": known | unknown,
            "model_failed": planning.to(failed, on="fail_model"),
            "agents_finished": executing.to(failed, cond="child_failed", on="fail_child")
            | executing.to(observing, on="fold_route"),
            "observed": observing.to(done, on="finish"),
        },
        internal=(Observed,),
    )


RouterChart = router_chart(has_default=False)
RouterWithDefaultChart = router_chart(has_default=True)


class RouterData(Frozen):
    """Bookkeeping: messages of the input (what the route is given) and the chosen route."""

    input_len: int = 0
    route: str | None = None
    label: str | None = None


_AROUND = "`'\" \n\t"  # quotes, backticks and whitespace around a bare label


def parse_label(content: str | None) -> str:
    """The route label in a classifier reply: `{"route": "x"}` JSON (or `"label"`, `"category"`),
    or the bare text or a JSON string with the quotes, backticks and whitespace around it and a
    trailing period removed, in either order (`"x".` and `"x."` both read `x`)."""
    text = (content or "").strip()
    try:
        value = json.loads(text)
    except ValueError:
        value = None
    if isinstance(value, dict):
        for key in ("route", "label", "category"):
            if isinstance(value.get(key), str):
                return cast(str, value[key]).strip()
    if isinstance(value, str):
        text = value
    return text.strip(_AROUND).rstrip(".").strip(_AROUND)


class Router(Pattern):
    """Classify the request, then run the route it names.

    - `classifier`: an `Agent` (its reply is the label: bare text or `{"route": "..."}`; its
      model must be given) or a pure function `(request text) -> label` (run as the model of an
      agent named `<name>_classifier`);
    - `routes`: `{label: agent or pattern}` (labels matched case-insensitively);
    - `default`: run for an unknown label; without it an unknown label ends in
      FAILED(`unknown_route`) naming the label — never a silent drop.

    Input: a string or messages; the route gets the input messages. Output: the route's output.
    Raises `InvalidDefinition` for no routes, a route label that is not a non-empty string without
    surrounding whitespace, two labels that differ only in case, or a bad classifier.
    """

    lead_role = "classifier"

    def __init__(
        self,
        name: str,
        classifier: Agent | Callable[[str], str],
        routes: Mapping[str, Any],
        default: Any = None,
    ) -> None:
        self.name = pattern_name("router", name)
        if not routes:
            raise InvalidDefinition(f"{self.name}: at least one route is required")
        if isinstance(classifier, Agent):
            self.classifier = classifier
        elif callable(classifier):
            fn = classifier

            def classify(request: ModelRequest) -> str:
                texts = [m.content for m in request.messages if m.role == "user"]
                return fn(texts[-1] if texts else "")

            self.classifier = Agent(f"{name}_classifier", "Classify the request.", model=FunctionModel(classify))
        else:
            raise InvalidDefinition(f"{self.name}: the classifier must be an Agent or a function (text) -> label")
        self.labels: dict[str, str] = {}
        for label in routes:
            if not isinstance(label, str) or not label or label != label.strip():
                raise InvalidDefinition(
                    f"{self.name}: a route label must be a non-empty string without surrounding whitespace, "
                    f"not {label!r} (the classifier's reply is stripped before it is matched)"
                )
            if label.lower() in self.labels:
                raise InvalidDefinition(
                    f"{self.name}: the routes {self.labels[label.lower()]!r} and {label!r} differ only in case "
                    "(labels are matched case-insensitively)"
                )
            self.labels[label.lower()] = label
        children: dict[str, Machine] = {label: resolve_child(target) for label, target in routes.items()}
        self.has_default = default is not None
        if default is not None:
            if DEFAULT_ROUTE in children and children[DEFAULT_ROUTE] is not resolve_child(default):
                raise InvalidDefinition(f"{self.name}: a route is named {DEFAULT_ROUTE!r}; it would shadow the default")
            children[DEFAULT_ROUTE] = resolve_child(default)
        self._children = children
        self.lead = c = self.classifier
        hint = f"Reply with exactly one of: {', '.join(routes)}."
        self._request = model_request(c, instructions=f"{c.static_instructions}\n\n{hint}".strip())
        self.table = compile_chart(RouterWithDefaultChart if self.has_default else RouterChart, owner=self)

    def max_transitions(self) -> int:
        return 3

    def example_replies(self, agent: str) -> tuple[str, ...]:
        """Classifier replies worth exploring in tests: every label, as text and as JSON."""
        labels = tuple(self.labels.values())
        return (*labels, *(json.dumps({"route": x}) for x in labels), "no-such-route")

    # pure core
    def start(self, input: Any, context: Any = None, *, run_id: str = "run") -> Step:
        """PLANNING with a `CallModel` for the classifier. `input`: a string or messages."""
        conversation = Conversation.of(*messages_from(input), id=run_id)
        s = self._snapshot(
            Phase.PLANNING, conversation, RouterData(input_len=len(conversation)), context, self.classifier.name
        )
        return Step(s, (self._call_lead(s),))

    def _label(self, e: Event) -> str:
        return parse_label(cast(ModelReplied, e).message.content)

    def known_route(self, s: Snapshot[RouterData], e: Event) -> bool:
        return self._label(e).lower() in self.labels

    def _choose(self, s: Snapshot[RouterData], e: Event, route: str) -> Step:
        reply = cast(ModelReplied, e).message
        note = AssistantMessage.model_construct(role="assistant", content=reply.content, tool_calls=(), agent=s.agent)
        label = self._label(e)
        moved = s.evolve(
            conversation=s.conversation.append(note),
            agent=None,
            data=s.data.model_copy(update={"route": route, "label": label}),
        )
        task = self._task(moved, route, s.conversation.messages)  # the input, not the classifier's reply
        return Step(moved, (self._run(moved, (task,)),))

    def run_route(self, s: Snapshot[RouterData], e: Event) -> Step:
        return self._choose(s, e, self.labels[self._label(e).lower()])

    def run_default(self, s: Snapshot[RouterData], e: Event) -> Step:
        return self._choose(s, e, DEFAULT_ROUTE)

    def fail_route(self, s: Snapshot[RouterData], e: Event) -> Step:
        reply = cast(ModelReplied, e).message
        note = AssistantMessage.model_construct(role="assistant", content=reply.content, tool_calls=(), agent=s.agent)
        label = self._label(e)
        return self._fail(
            s.evolve(conversation=s.conversation.append(note), data=s.data.model_copy(update={"label": label})),
            "unknown_route",
            f"{self.name}: the classifier chose {label!r}, which is not a route ({', '.join(self.labels.values())}) "
            "and there is no default",
            detail=label,
        )

    def _fold(self, s: Snapshot[RouterData], e: Event) -> Snapshot[RouterData]:
        folded, outcome = self._fold_child(s, e, s.data.input_len, s.data.route or "")
        return folded.evolve(output=outcome.output) if outcome is not None else folded

    def fail_child(self, s: Snapshot[RouterData], e: Event) -> Step:
        why = self._why(e)
        folded = self._fold(s, e).evolve(output=None)
        return self._fail_child(folded, e, f"{self.name}: route {s.data.route!r} failed: {why}", detail=s.data.route)

    def fold_route(self, s: Snapshot[RouterData], e: Event) -> Step:
        return Step(self._fold(s, e))

    def finish(self, s: Snapshot[RouterData], e: Event) -> Step:
        return Step(s)
