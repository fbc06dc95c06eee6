"""Running an app with uvicorn: in the foreground (`minions serve`) or on a background thread
(tests, benchmarks, embedding a server in another program)."""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

from minions.serve.deps import require


def _config(app: Any, **kw: Any) -> Any:
    require("uvicorn", "uvicorn")
    import uvicorn

    # access_log off: the Gate writes one structured line per request instead
    return uvicorn.Config(app, access_log=False, log_config=None, lifespan="off", **kw)


def settle_heap() -> None:
    """Before serving: import what runs will import, then move every object alive now (modules,
    the corpus, loaded models) out of the collector's reach. A full collection then scans only
    what requests create — it was the server's longest pause (~0.5 s with the retrieval stack
    loaded, every thread stopped), which no request should wait for."""
    import gc

    from minions.documents import hybrid  # noqa: F401  bm25s, numpy: the first rag run would load them
    from minions.documents.embeddings import load_embedding_model
    from minions.errors import MissingDependencyError

    try:
        load_embedding_model()  # cached: the first retrieval would load it
    except MissingDependencyError:
        pass  # retrieval runs on BM25 alone, and says so
    gc.collect()
    gc.freeze()


def run(app: Any, *, host: str = "127.0.0.1", port: int = 8000) -> None:
    import uvicorn

    settle_heap()
    uvicorn.Server(_config(app, host=host, port=port, timeout_graceful_shutdown=5)).run()


class BackgroundServer:
    """`with BackgroundServer(app) as srv: srv.url` — uvicorn on a free loopback port, in a thread."""

    def __init__(self, app: Any, host: str = "127.0.0.1"):
        import uvicorn

        # proto IPPROTO_TCP, not 0: asyncio sets TCP_NODELAY only on sockets that say they are TCP, and
        # without it every response waits ~40 ms for the client's delayed ACK (Nagle).
        self._sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))  # bound here, so the port is known and never raced for
        self.host, self.port = host, self._sock.getsockname()[1]
        self.server = uvicorn.Server(_config(app))
        self._thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self._sock]},
                                        name="minions-serve", daemon=True)

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def start(self, timeout: float = 30.0) -> BackgroundServer:
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the server did not start; see the log above")
            time.sleep(0.01)
        return self

    def stop(self) -> None:
        self.server.should_exit = True
        self._thread.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> BackgroundServer:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()
