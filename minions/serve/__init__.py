"""Serving minions to agents: an OpenAI-compatible HTTP server and an MCP server.

    minions serve report.pdf --port 8000        # POST /v1/chat/completions, model = protocol
    minions mcp --root ~/reports                # MCP tools ask / list_documents, over stdio

From Python (the same objects the CLI builds):

    from minions.serve import Service, ServeSettings, create_app, BackgroundServer
    service = Service(ServeSettings(max_concurrent=2), local=local_client, remote=remote_client, corpus=docs)
    with BackgroundServer(create_app(service)) as srv:
        ...  # openai.OpenAI(base_url=srv.url + "/v1", api_key="-")

Needs the `serve` extra (fastapi, uvicorn, prometheus-client, python-multipart, mcp); a missing
package raises MissingDependencyError naming it.
"""

from __future__ import annotations

from typing import Any

_LAZY = {
    "Service": "minions.serve.service", "ServeSettings": "minions.serve.service",
    "RunPlan": "minions.serve.service", "create_app": "minions.serve.app",
    "BackgroundServer": "minions.serve.server", "create_mcp": "minions.serve.mcp",
}


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'minions.serve' has no attribute {name!r}")


__all__ = list(_LAZY)
