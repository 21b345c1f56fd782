"""The engine's ASGI app under uvicorn (uvloop, httptools), as an alternative to the engine's hypercorn.

About 24 HTTP requests reach the engine per order, each parsed and answered in pure Python by
hypercorn and h11; uvicorn with uvloop and httptools answers one request about 2x cheaper. Whole
orders tell another story (README, Benchmarks): under a 300-order burst uvicorn saved about 4% of
the CPU per order but its p95 latency was 1.7x hypercorn's, so the engine's own server stays the
default and ``SANDBOX_ENGINE_SERVER=uvicorn`` chooses this one. What the engine relies on holds
under both (tests/integration/test_engine_server.py): the ASGI lifespan (its startup captures the
loop its worker threads call back into), keep-alive of 75 s, no Server header and one Date header
(the app adds its own), Expect: 100-continue, chunked bodies, and a prompt stop on SIGTERM.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping
from typing import Any

SERVER_ENV = "SANDBOX_ENGINE_SERVER"
SERVERS = ("hypercorn", "uvicorn")
KEEP_ALIVE_SECONDS = 75  # the engine's own (hypercorn's keep_alive_timeout); uvicorn's default is 5


def chosen_server(environ: Mapping[str, str]) -> str:
    """The server to run: the engine's hypercorn, or uvicorn when asked (anything else is refused at start)."""
    server = environ.get(SERVER_ENV, "hypercorn") or "hypercorn"
    if server not in SERVERS:
        raise SystemExit(
            f"sandbox engine refused to start: {SERVER_ENV}={server!r}: choose {' or '.join(SERVERS)}"
        )
    return server


def uvicorn_config(app: Any, host: str, port: int, log_level: str) -> Any:
    """uvicorn's settings for the engine's app (a function, so a test can read them)."""
    import uvicorn

    return uvicorn.Config(
        app,
        host=host,
        port=port,
        loop="uvloop",
        http="httptools",
        ws="none",  # the saga uses no WebSocket API
        lifespan="on",
        timeout_keep_alive=KEEP_ALIVE_SECONDS,
        server_header=False,
        date_header=False,
        access_log=False,
        log_level=log_level.lower(),
        timeout_graceful_shutdown=1,
    )


def _raise_open_files_limit() -> None:
    """The soft limit on open files raised to the hard one, as the engine does: bursts open many sockets."""
    try:
        import resource

        soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
        if soft < hard:
            resource.setrlimit(resource.RLIMIT_NOFILE, (hard, hard))
    except (ImportError, ValueError, OSError):
        pass


def serve_with_uvicorn(app: Any, port: int, environ: Mapping[str, str]) -> None:
    """Serve until SIGTERM or SIGINT; exit 1 with one line when the port is taken, as the engine does."""
    import uvicorn

    bind_host = environ.get("BIND_HOST", "0.0.0.0")
    probe_host = "127.0.0.1" if bind_host == "0.0.0.0" else bind_host
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        if probe.connect_ex((probe_host, port)) == 0:
            raise SystemExit(f"sandbox engine refused to start: {probe_host}:{port} is already in use")
    _raise_open_files_limit()
    server = uvicorn.Server(uvicorn_config(app, bind_host, port, environ.get("LOG_LEVEL", "INFO")))
    server.run()


def serve_engine() -> None:
    """Run the engine's app under the chosen server."""
    import ministack.app

    if chosen_server(os.environ) == "hypercorn":
        ministack.app.main()
        return
    serve_with_uvicorn(ministack.app.app, int(ministack.app._resolve_port()), os.environ)
