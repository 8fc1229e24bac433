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
from fsm_agents.models.replay import ReplayModel
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
    "ReplayModel",
    "ScriptExhausted",
    "ScriptedModel",
    "StreamDelta",
    "ToolSpec",
    "call",
    "reply",
]
