"""Models: the `Model` protocol, test models, and provider clients."""

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
from fsm_agents.models.scripted import FunctionModel, ScriptedModel, call, reply
from fsm_agents.state import ModelRequest, ModelSettings, ToolSpec

__all__ = [
    "FunctionModel",
    "MalformedResponse",
    "Model",
    "ModelError",
    "ModelHTTPError",
    "ModelRequest",
    "ModelResponse",
    "ModelSettings",
    "ModelTimeout",
    "RateLimited",
    "ScriptExhausted",
    "ScriptedModel",
    "StreamDelta",
    "ToolSpec",
    "call",
    "reply",
]
