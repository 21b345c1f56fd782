"""Serving the console on 127.0.0.1 (never another interface), in the foreground or in a thread."""

from __future__ import annotations

import errno
import socket
import threading
from collections.abc import Callable
from types import FrameType

import uvicorn

from sandbox.console.app import create_app
from sandbox.console.live import OrderWatcher
from sandbox.errors import UsageError
from sandbox.settings import Settings
from sandbox.stack import find_stack
from sandbox.waiting import wait_until

HOST = "127.0.0.1"
DEFAULT_PORT = 8566


def check_port_free(port: int) -> None:
    """Raise a UsageError naming the port when something already listens on it."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        try:
            probe.bind((HOST, port))
        except OSError as error:
            reason = "is in use" if error.errno == errno.EADDRINUSE else f"cannot be used ({error.strerror})"
            raise UsageError(
                f"port {port} on {HOST} {reason}", hint="serve the console on another: sandbox ui --port N"
            ) from error


class _Server(uvicorn.Server):
    """uvicorn's server, ending the pages' event streams as soon as it is asked to stop."""

    def __init__(self, config: uvicorn.Config, on_exit: Callable[[], None]):
        super().__init__(config)
        self.on_exit = on_exit

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        self.on_exit()
        super().handle_exit(sig, frame)


class ConsoleServer:
    """The console's HTTP server on ``127.0.0.1:port``."""

    def __init__(self, settings: Settings, port: int = DEFAULT_PORT, **intervals: float):
        self.port = port
        app = create_app(settings, **intervals)
        self.watcher: OrderWatcher = app.state.console.watcher
        config = uvicorn.Config(
            app,
            host=HOST,
            port=port,
            log_level="warning",
            # The pages' event streams end when the server stops (see _Server); anything else
            # still open gets a few seconds.
            timeout_graceful_shutdown=5,
        )
        self.server = _Server(config, self.watcher.close_soon)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://{HOST}:{self.port}/"

    def run(self, on_ready: Callable[[], None] = lambda: None) -> None:
        """Serve until interrupted (Ctrl-C); ``on_ready`` is called once the server answers."""
        waiter = threading.Thread(target=self._announce, args=(on_ready,), daemon=True)
        waiter.start()
        self.server.run()

    def _announce(self, on_ready: Callable[[], None]) -> None:
        wait_until(lambda: self.server.started, timeout=30, what=f"the console on {self.url}")
        on_ready()

    def start(self) -> None:
        """Serve from a background thread; returns once the server answers."""
        self._thread = threading.Thread(target=self.server.run, name="sandbox-console", daemon=True)
        self._thread.start()
        wait_until(
            lambda: self.server.started or not self._thread or not self._thread.is_alive(),
            timeout=30,
            what=f"the console on {self.url}",
        )
        if not self.server.started:
            raise UsageError(
                f"the console could not start on {self.url}",
                hint="serve it on another port: sandbox ui --port N",
            )

    def stop(self) -> None:
        self.watcher.close_soon()
        self.server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)


def open_console(settings: Settings, port: int = DEFAULT_PORT) -> ConsoleServer:
    """A console server for the running engine's stack; errors say what to run or choose first."""
    find_stack(settings)  # no engine, or no stack: say so now, not on the page
    check_port_free(port)
    return ConsoleServer(settings, port)
