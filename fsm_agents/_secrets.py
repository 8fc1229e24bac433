"""The process-wide register of secrets to redact: API keys handed to models.

A model given a key (`OpenAIChat(api_key=...)`, or one it read from the environment) registers
it here, and every `fsm_agents.observers.Redactor` — hence `LoggingObserver`, `PrintObserver`,
`RedactingFilter` and the cassettes of `fsm_agents.testing` — replaces it with `[REDACTED]`,
whatever its shape. Values shorter than `MIN_SECRET_CHARS` are not registered: a placeholder
key such as `"ollama"` would otherwise blank that word out of every log line.
"""

from __future__ import annotations

import threading

__all__ = ["MIN_SECRET_CHARS", "register_secret", "registered_secrets"]

#: Shorter values are not registered (they are placeholders, not secrets).
MIN_SECRET_CHARS = 8

_lock = threading.Lock()
_secrets: tuple[str, ...] = ()


def register_secret(value: str | None) -> None:
    """Add `value` to the secrets every `Redactor` removes (ignored when `None`, not a string,
    or shorter than `MIN_SECRET_CHARS`). Thread-safe; registering twice is harmless."""
    global _secrets
    if not isinstance(value, str) or len(value) < MIN_SECRET_CHARS:
        return
    with _lock:
        if value not in _secrets:
            _secrets = tuple(sorted((*_secrets, value), key=len, reverse=True))


def registered_secrets() -> tuple[str, ...]:
    """The registered secrets, longest first (so a key containing another is replaced whole)."""
    return _secrets
