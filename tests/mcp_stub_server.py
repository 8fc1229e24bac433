"""A scriptable MCP server over stdio for tests/test_mcp.py: JSON-RPC by hand, standard library
only (it starts in a few tens of milliseconds, where a server built on the `mcp` SDK takes
seconds), so it can misbehave on purpose.

    python tests/mcp_stub_server.py '{"tools": [...], "start": "ok" | "hang" | "exit"}'

`tools` is the `tools/list` answer (default: the tools below); listing is served in pages of two
(`nextCursor`). A call of tool NAME does what NAME says:

- `echo`: the arguments back, as text (JSON) and as `structuredContent` (wrapped as `{"args": ...}`);
- `pid`: the server's process id (tells one connection from another);
- `fail`: `isError` with a message; `rpc_error`: a JSON-RPC error response;
- `garbage`: a result that is not a `CallToolResult` (`content` is a string);
- `exit`: the process exits mid-call; `hang`: never answers.

Wire format: https://modelcontextprotocol.io/specification/2025-11-25 (basic/lifecycle, server/tools).
"""

from __future__ import annotations

import json
import os
import sys

OBJECT = {"type": "object", "properties": {}}

DEFAULT_TOOLS = [
    {
        "name": "echo",
        "description": "Echo the arguments.",
        "inputSchema": {
            "type": "object",
            "properties": {"text": {"type": "string"}, "times": {"type": "integer", "minimum": 1}},
            "required": ["text"],
            "additionalProperties": False,
        },
        "annotations": {"idempotentHint": True},
    },
    *({"name": name, "description": f"Behave: {name}.", "inputSchema": OBJECT} for name in (
        "pid", "fail", "rpc_error", "garbage", "exit", "hang",
    )),
]


def send(message: dict[str, object]) -> None:
    sys.stdout.write(json.dumps(message) + "\n")
    sys.stdout.flush()


def main() -> None:
    config = json.loads(sys.argv[1]) if len(sys.argv) > 1 else {}
    tools = config.get("tools", DEFAULT_TOOLS)
    start = config.get("start", "ok")
    if start == "exit":
        sys.exit(2)
    for line in sys.stdin:
        if not line.strip():
            continue
        message = json.loads(line)
        method, rid, params = message.get("method"), message.get("id"), message.get("params") or {}
        if rid is None:  # a notification
            continue
        if method == "initialize":
            if start == "hang":
                continue
            send({"jsonrpc": "2.0", "id": rid, "result": {
                "protocolVersion": params.get("protocolVersion", "2025-11-25"),
                "capabilities": {"tools": {}},
                "serverInfo": {"name": "stub", "version": "0"},
            }})
        elif method == "ping":
            send({"jsonrpc": "2.0", "id": rid, "result": {}})
        elif method == "tools/list":
            at = int(params.get("cursor") or 0)
            page = {"tools": tools[at:at + 2]}
            if at + 2 < len(tools):
                page["nextCursor"] = str(at + 2)
            send({"jsonrpc": "2.0", "id": rid, "result": page})
        elif method == "tools/call":
            name, args = params.get("name"), params.get("arguments") or {}
            if name == "echo":
                send({"jsonrpc": "2.0", "id": rid, "result": {
                    "content": [{"type": "text", "text": json.dumps(args, sort_keys=True)}],
                    "structuredContent": {"args": args},
                }})
            elif name == "pid":
                send({"jsonrpc": "2.0", "id": rid, "result": {"content": [{"type": "text", "text": str(os.getpid())}]}})
            elif name == "fail":
                send({"jsonrpc": "2.0", "id": rid, "result": {
                    "content": [{"type": "text", "text": "the stub failed on purpose"}], "isError": True,
                }})
            elif name == "rpc_error":
                send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32000, "message": "no such thing"}})
            elif name == "garbage":
                send({"jsonrpc": "2.0", "id": rid, "result": {"content": "not a list of blocks"}})
            elif name == "exit":
                os._exit(3)
            elif name == "hang":
                continue
            else:
                send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32602, "message": f"unknown tool {name}"}})
        else:
            send({"jsonrpc": "2.0", "id": rid, "error": {"code": -32601, "message": f"no method {method}"}})


if __name__ == "__main__":
    main()
