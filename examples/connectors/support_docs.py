"""A support agent that answers from a document library, citing its sources.

    python -m examples.connectors.support_docs ["your question"] [--docs FOLDER]

The library is the help center in `examples/data/helpcenter/` (Markdown and HTML articles), or
any folder of text, Markdown, HTML or PDF files given with `--docs` (try
`--docs /usr/share/doc/python3-doc/html "How do I read a CSV file?"`). The agent searches with
`search_documents`, then answers citing the passage. Runs on the embedded local model
(SmolLM2-135M via llama.cpp) when it can be served, else on a scripted model; the tests run it
on `ScriptedModel`. A 135M model is weak: it searches with the question and gets the right
passage, but its answer seldom uses it; any OpenAI-compatible server does better
(FSM_AGENTS_MODEL_URL, see `fsm_agents.local`).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from fsm_agents import Agent, AssistantMessage, FunctionModel, RunResult, ToolMessage, run_sync
from fsm_agents.agent import guided_tool_choice
from fsm_agents.connectors import DocumentLibrary, document_library
from fsm_agents.models import Model, ModelSettings
from fsm_agents.models.scripted import call, reply
from fsm_agents.runtime import Limits
from fsm_agents.state import ModelRequest

HELPCENTER = Path(__file__).parent.parent / "data" / "helpcenter"
QUESTION = "When will my refund arrive?"

INSTRUCTIONS = (
    "You are the support agent of Lumen, a lamp maker. Search the help center with search_documents. "
    "Then answer the customer's question with the sentence of the first passage that answers it, "
    "followed by that passage's file in brackets."
)


def library(docs: Path = HELPCENTER) -> DocumentLibrary:
    """The help center as a document library (small chunks and two passages per search: a small
    model has a small context window; Sphinx's `_sources/` copies of the pages left out)."""
    return document_library(docs, exclude=["_sources"], chunk_chars=600, k=2, max_k=2)


def cite_first_passage(request: ModelRequest) -> str:
    """The scripted stand-in for a model once the search answered: quote the best passage."""
    results = [m for m in request.messages if isinstance(m, ToolMessage)]
    if not results or results[-1].is_error:
        return "I could not search the help center; please contact support@lumen.example."
    passages = json.loads(results[-1].content)
    if not passages:
        return "The help center does not answer this; please contact support@lumen.example."
    best = passages[0]
    first_sentences = " ".join(best["text"].split("\n\n", 2)[1:2] or [best["text"]])
    return f"{first_sentences} [source: {best['citation']}]"


def scripted(question: str) -> FunctionModel:
    """A stand-in model: search for the question, then cite the best passage."""

    def answer(request: ModelRequest) -> str | AssistantMessage:
        if not any(isinstance(m, ToolMessage) for m in request.messages):
            return reply(None, call("search_documents", "search_1", query=question))
        return cite_first_passage(request)

    return FunctionModel(answer)


def build(docs: DocumentLibrary, model: Model) -> Agent:
    """The support agent over `docs`. A 135M model is steered to search first, then to answer
    in text (`guided_tool_choice`); its budget ends a runaway loop in FAILED."""
    return Agent(
        "support",
        INSTRUCTIONS,
        model=model,
        tools=docs,
        max_steps=4,
        settings=ModelSettings(temperature=0.0, seed=7, max_tokens=120),
        tool_choice=guided_tool_choice("search_documents"),
    )


def ask(docs: DocumentLibrary, model: Model, question: str = QUESTION) -> RunResult:
    return run_sync(build(docs, model), question, limits=Limits(model_timeout=180, tool_timeout=30))


def main(argv: list[str] | None = None) -> int:
    from fsm_agents.local import LocalModelError, serve

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("question", nargs="*")
    parser.add_argument("--docs", type=Path, default=HELPCENTER, help="a folder of documents (default: the help center)")
    args = parser.parse_args(argv)
    question = " ".join(args.question) or QUESTION
    with library(args.docs) as docs:
        print(f"indexed {docs.stats()} from {args.docs}", flush=True)
        try:
            with serve() as model:
                print(f"on the local model {model!r}", flush=True)
                result = ask(docs, model, question)
        except LocalModelError as exc:
            print(f"local model unavailable ({type(exc).__name__}); running on a scripted model", file=sys.stderr)
            result = ask(docs, scripted(question), question)
    for m in result.snapshot.conversation.messages:
        for c in getattr(m, "tool_calls", ()):
            print(f"{c.name}({c.arguments})", flush=True)
        if isinstance(m, ToolMessage):
            hits = json.loads(m.content) if not m.is_error else m.content
            print(f"  → {[h['citation'] for h in hits] if isinstance(hits, list) else hits}", flush=True)
    if result.ok:
        print(f"DONE: {result.output}", flush=True)
    else:
        print(f"FAILED({result.failure.kind if result.failure else '?'}): {result.failure}", flush=True)
    return 0 if result.phase.is_final else 1


if __name__ == "__main__":
    raise SystemExit(main())
