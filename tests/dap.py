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
    """The adapter refused a request, closed the connection, or did not answer in time."""


class DapClient:
    """Requests, their responses and the adapter's events, over one connection."""

    def __init__(self, host: str, port: int, *, connect_seconds: float = 60) -> None:
        self._seq = itertools.count(1)
        self._socket: socket.socket | None = None
        self._messages: queue.Queue[dict[str, Any]] = queue.Queue()
        self._pending: list[dict[str, Any]] = []
        wait_until(lambda: self._open(host, port), timeout=connect_seconds, what=f"a debugger on port {port}")

    def _open(self, host: str, port: int) -> bool:
        """Connect and initialize; False while nothing answers yet (Docker's proxy accepts a
        connection to a published port before anything listens behind it, then closes it)."""
        try:
            connection = socket.create_connection((host, port), timeout=2)
        except OSError:
            return False
        connection.settimeout(None)  # the reader blocks until the adapter speaks
        self._socket, self._messages, self._pending = connection, queue.Queue(), []
        reader = threading.Thread(
            target=self._read,
            args=(connection.makefile("rb"), self._messages),
            name="dap-reader",
            daemon=True,
        )
        reader.start()
        try:
            self.request("initialize", seconds=5, adapterID="python", clientID="sandbox-tests",
                         pathFormat="path", linesStartAt1=True, columnsStartAt1=True)  # fmt: skip
        except (DapError, OSError):
            connection.close()
            return False
        return True

    @staticmethod
    def _read(stream: Any, messages: queue.Queue[dict[str, Any]]) -> None:
        with contextlib.suppress(OSError, ValueError):  # the connection closed under the reader
            while True:
                length = 0
                while (line := stream.readline()) not in (b"\r\n", b""):
                    name, _, value = line.decode().partition(":")
                    if name.strip().lower() == "content-length":
                        length = int(value)
                if not line:
                    break
                messages.put(json.loads(stream.read(length)))
        messages.put({"type": "closed"})

    def send(self, command: str, **arguments: Any) -> int:
        assert self._socket is not None
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
            if message.get("type") == "closed":
                raise DapError("the debugger closed the connection")
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
        message = self._next(lambda m: m.get("type") == "event" and m.get("event") == name, seconds)
        body: dict[str, Any] = message.get("body") or {}
        return body

    def attach(self, path_mappings: list[dict[str, str]], breakpoints: dict[str, list[int]]) -> None:
        """Attach as VS Code does, once initialized: attach, breakpoints, configurationDone."""
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
        if self._socket is not None:
            self._socket.close()
