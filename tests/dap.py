"""A small Debug Adapter Protocol client over TCP: what VS Code does when it attaches to debugpy."""

from __future__ import annotations

import contextlib
import itertools
import json
import queue
import socket
import threading
from typing import Any

from sandbox.waiting import wait_until


class DapError(AssertionError):
    """The adapter refused a request, or did not answer in time."""


class DapClient:
    """Requests, their responses and the adapter's events, over one connection."""

    def __init__(self, host: str, port: int, *, connect_seconds: float = 60) -> None:
        self._socket = wait_until(
            lambda: self._connect(host, port), timeout=connect_seconds, what=f"a debugger on {port}"
        )
        self._file = self._socket.makefile("rb")
        self._seq = itertools.count(1)
        self._messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self._pending: list[dict[str, Any]] = []
        threading.Thread(target=self._read, name="dap-reader", daemon=True).start()

    @staticmethod
    def _connect(host: str, port: int) -> socket.socket | None:
        try:
            connection = socket.create_connection((host, port), timeout=2)
        except OSError:
            return None
        connection.settimeout(None)  # the reader blocks until the adapter speaks
        return connection

    def _read(self) -> None:
        while True:
            length = 0
            while (line := self._file.readline()) not in (b"\r\n", b""):
                name, _, value = line.decode().partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if not line:
                return
            self._messages.put(json.loads(self._file.read(length)))

    def send(self, command: str, **arguments: Any) -> int:
        seq = next(self._seq)
        body = json.dumps(
            {"seq": seq, "type": "request", "command": command, "arguments": arguments}
        ).encode()
        self._socket.sendall(b"Content-Length: %d\r\n\r\n" % len(body) + body)
        return seq

    def _next(self, matches: Any, seconds: float) -> dict[str, Any]:
        for index, message in enumerate(self._pending):
            if matches(message):
                return self._pending.pop(index)
        while True:
            try:
                message = self._messages.get(timeout=seconds)
            except queue.Empty:
                raise DapError(f"no answer from the debugger within {seconds:g}s") from None
            if matches(message):
                return message
            self._pending.append(message)

    def response(self, seq: int, seconds: float = 30) -> dict[str, Any]:
        message = self._next(lambda m: m.get("type") == "response" and m.get("request_seq") == seq, seconds)
        if not message.get("success"):
            raise DapError(f"{message.get('command')} refused: {message.get('message')}")
        body: dict[str, Any] = message.get("body") or {}
        return body

    def request(self, command: str, seconds: float = 30, **arguments: Any) -> dict[str, Any]:
        return self.response(self.send(command, **arguments), seconds)

    def event(self, name: str, seconds: float = 30) -> dict[str, Any]:
        body: dict[str, Any] = (
            self._next(lambda m: m.get("type") == "event" and m.get("event") == name, seconds).get("body")
            or {}
        )
        return body

    def attach(self, path_mappings: list[dict[str, str]], breakpoints: dict[str, list[int]]) -> None:
        """Attach as VS Code does: initialize, attach, breakpoints, configurationDone."""
        self.request("initialize", adapterID="python", clientID="sandbox-tests", pathFormat="path",
                     linesStartAt1=True, columnsStartAt1=True)  # fmt: skip
        attach = self.send("attach", pathMappings=path_mappings, justMyCode=True)
        self.event("initialized")
        for path, lines in breakpoints.items():
            answer = self.request(
                "setBreakpoints", source={"path": path}, breakpoints=[{"line": n} for n in lines]
            )
            assert answer["breakpoints"], answer
        self.request("configurationDone")
        self.response(attach)

    def close(self) -> None:
        with contextlib.suppress(DapError, OSError):
            self.request("disconnect", seconds=5, terminateDebuggee=False)
        self._socket.close()
