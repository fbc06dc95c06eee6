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

from minions._lazy import lazy_getattr

_LAZY = {
    "Service": "minions.serve.service", "ServeSettings": "minions.serve.service",
    "RunPlan": "minions.serve.service", "create_app": "minions.serve.app",
    "BackgroundServer": "minions.serve.server", "create_mcp": "minions.serve.mcp",
}


__getattr__ = lazy_getattr(__name__, _LAZY)


__all__ = list(_LAZY)
