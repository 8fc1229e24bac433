"""Built-in connectors of the seed agents API, as ordinary toolsets (docs/architecture.md, Connectors).

- `code_interpreter()`: Python the model writes, run in a bubblewrap sandbox (no network, a
  read-only system, a private work folder per conversation, CPU/memory/process/output/wall-time
  limits).
"""

from __future__ import annotations

from fsm_agents.connectors.code_interpreter import code_interpreter

__all__ = ["code_interpreter"]
