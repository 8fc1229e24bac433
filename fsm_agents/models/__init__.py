"""Models: the `Model` protocol, test models, and provider clients."""

from fsm_agents.models._http import MissingAPIKey, ModelConnectionError
from fsm_agents.models.anthropic import AnthropicMessages
from fsm_agents.models.base import (
    MalformedResponse,
    Model,
    ModelError,
    ModelHTTPError,
    ModelResponse,
    ModelTimeout,
    RateLimited,
    ScriptExhausted,
    StreamDelta,
)
from fsm_agents.models.openai import OpenAIChat
from fsm_agents.models.scripted import FunctionModel, ScriptedModel, call, reply
from fsm_agents.state import ModelRequest, ModelSettings, ToolSpec

__all__ = [
    "AnthropicMessages",
    "FunctionModel",
    "MalformedResponse",
    "MissingAPIKey",
    "Model",
    "ModelConnectionError",
    "ModelError",
    "ModelHTTPError",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "ModelTimeout",
    "OpenAIChat",
    "RateLimited",
    "ScriptExhausted",
    "ScriptedModel",
    "StreamDelta",
    "ToolSpec",
    "call",
    "reply",
]


def __getattr__(name: str) -> object:
    # `ReplayModel` lives with the cassettes in fsm_agents.testing (it needs the runtime); importing
    # it lazily keeps `fsm_agents.models` free of that dependency
    if name == "ReplayModel":
        from fsm_agents.testing.cassette import ReplayModel

        return ReplayModel
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
