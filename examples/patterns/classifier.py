"""Router: a request classifier sends each request to a technical, research, creative or data specialist.

python -m examples.patterns.classifier ["your request"]
"""

from __future__ import annotations

import sys

from examples.patterns._common import answers, fixed, last_user, main_with
from fsm_agents import Agent, RunResult, run_sync
from fsm_agents.models import Model
from fsm_agents.patterns import Router
from fsm_agents.state import ModelRequest

REQUEST = "My Python service crashes with a segmentation fault after the upgrade"
KEYWORDS = {
    "technical": ("crash", "error", "bug", "install", "segmentation"),
    "research": ("study", "papers", "evidence", "literature"),
    "creative": ("poem", "story", "slogan", "name"),
    "data": ("csv", "average", "chart", "dataset", "sql"),
}


def keyword_label(text: str) -> str:
    """The scripted classifier: the first route whose keyword appears, else `general`."""
    lowered = text.lower()
    return next((label for label, words in KEYWORDS.items() if any(w in lowered for w in words)), "general")


def build(model: Model | None = None) -> Router:
    def classify(request: ModelRequest) -> str:
        return keyword_label(last_user(request))

    classifier = Agent(
        "classifier",
        "Classify the user's request as technical, research, creative or data. Reply with the label only.",
        model or answers(classify),
    )
    routes = {
        label: Agent(
            f"{label}_specialist",
            f"You are the {label} specialist. Help with the request.",
            model or fixed(f"[{label}] answer"),
        )
        for label in KEYWORDS
    }
    general = Agent("generalist", "Answer any other request helpfully.", model or fixed("[general] answer"))
    return Router("request_classifier", classifier, routes, default=general)


def run(pattern: Router, request: str = REQUEST, **kwargs: object) -> RunResult:
    return run_sync(pattern, request, **kwargs)  # type: ignore[arg-type]


def main() -> int:
    request = " ".join(sys.argv[1:]) or REQUEST
    return main_with(build, lambda p, kw: run(p, request, **kw))


if __name__ == "__main__":
    raise SystemExit(main())
