"""`sandbox debug`: an armed function's next invocation (or every one) runs under a debugger.

An armed invocation runs on a worker of its own, outside the function's pool: started from
nothing (never forked, so debugpy is never in a pooled worker), with its code in a folder whose
path does not change (``<temp>/sandbox-debug/<function>/code``, the ``remoteRoot`` of the path
mappings a client needs), and with a Lambda timeout lifted while it is held. The Task that
invoked it stops its TimeoutSeconds clock meanwhile (``timeouts.holding_step_clock``), so the
saga waits and then goes on as if the step had been fast. Other invocations, of this function
and others, keep running on their pools.

A Python worker imports debugpy from a folder that holds it alone, and takes that folder off
``sys.path`` again before the handler's module loads: the function's own imports never see the
sandbox's packages. A Node.js worker runs with ``--inspect`` (``--inspect-brk`` to wait). A wait
for a client has a deadline, after which the invocation goes on undebugged.
"""

from __future__ import annotations

import contextlib
import contextvars
import importlib.util
import json
import logging
import os
import shutil
import tempfile
import threading
import time
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from .faults import TASK_CALL
from .routes import App, with_json_route
from .timeouts import holding_step_clock
from .zygotes import FROM_SCRATCH

logger = logging.getLogger("sandbox.engine_patches")

ROUTE = "/_sandbox/debug"
DEBUG_FOLDER = "sandbox-debug"  # in the engine's temp folder, which `sandbox down` removes
# The worker's own setting, read and removed by the worker script before the handler loads.
DEBUG_ENV = "_SANDBOX_DEBUG"
# Where a worker listens: 127.0.0.1, or 0.0.0.0 inside a container whose port is published on
# the host's 127.0.0.1 only.
HOST_ENV = "SANDBOX_DEBUG_HOST"
DEFAULT_WAIT_SECONDS = 120.0
# A held invocation's Lambda timeout: a day, so that no breakpoint is cut short.
HELD_TIMEOUT_SECONDS = 86_400
MAX_HOLDS_KEPT = 1_000


class DebugRequestError(ValueError):
    """A request the debug route refuses (its message says why)."""


@dataclass
class DebugSession:
    """A function (or a state's invocations) armed for a debugger on one port."""

    port: int
    function: str | None  # the function's name, or None for a state's invocations
    state: str | None
    functions: list[str]  # the functions whose code a client maps (a state's may be several)
    wait: bool
    wait_seconds: float
    every: bool
    armed_at: float
    invocations: int = 0
    # One debugged invocation at a time on a port: the next one waits for it.
    lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def matches(self, function_name: str, state: str | None) -> bool:
        if self.function is not None:
            return function_name == self.function
        return state is not None and state == self.state and function_name in self.functions

    def to_json(self) -> dict[str, Any]:
        return {
            "port": self.port,
            "host": "127.0.0.1",
            "function": self.function,
            "state": self.state,
            "wait": self.wait,
            "waitSeconds": self.wait_seconds,
            "all": self.every,
            "invocations": self.invocations,
            "remoteRoots": {name: remote_root(name) for name in self.functions},
        }


def remote_root(function_name: str) -> str:
    """The folder an armed function's code runs from, in the engine's file system."""
    return os.path.join(tempfile.gettempdir(), DEBUG_FOLDER, function_name, "code")


def _positive_number(raw: dict[str, Any], name: str, default: float) -> float:
    value = raw.get(name, default)
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise DebugRequestError(f"{name} must be a positive number of seconds")
    return float(value)


class DebugBook:
    """The armed sessions (by port) and what held invocations did, for the trace."""

    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._sessions: dict[int, DebugSession] = {}
        self._holds: list[dict[str, Any]] = []

    def arm(self, raw: Any) -> DebugSession:
        if not isinstance(raw, dict):
            raise DebugRequestError('send {"port": N, "function": NAME} or {"port": N, "state": NAME, ...}')
        port = raw.get("port")
        if isinstance(port, bool) or not isinstance(port, int) or not 1024 <= port <= 65535:
            raise DebugRequestError("port must be a whole number from 1024 to 65535")
        function, state = raw.get("function"), raw.get("state")
        if (function is None) == (state is None) or not isinstance(function or state, str):
            raise DebugRequestError("name one target: a function or a state")
        functions = raw.get("functions", [function] if function else [])
        if not isinstance(functions, list) or not functions or not all(isinstance(f, str) for f in functions):
            raise DebugRequestError("functions must list the names of the functions the state invokes")
        session = DebugSession(
            port=port,
            function=function,
            state=state,
            functions=functions,
            wait=bool(raw.get("wait", True)),
            wait_seconds=_positive_number(raw, "waitSeconds", DEFAULT_WAIT_SECONDS),
            every=bool(raw.get("all", False)),
            armed_at=self._clock(),
        )
        with self._lock:
            held = self._sessions.get(port)
            if held is not None and (held.function, held.state) != (function, state):
                target = held.function or f"state {held.state}"
                raise DebugRequestError(f"port {port} is armed for {target}: choose another port")
            self._sessions = {
                p: s
                for p, s in self._sessions.items()
                if (s.function, s.state) != (function, state) or p == port
            }
            self._sessions[port] = session
        return session

    def disarm(self, port: int | None = None) -> list[dict[str, Any]]:
        with self._lock:
            ports = list(self._sessions) if port is None else [port] if port in self._sessions else []
            return [self._sessions.pop(p).to_json() for p in ports]

    def listed(self) -> list[dict[str, Any]]:
        with self._lock:
            return [session.to_json() for session in self._sessions.values()]

    def take(self, function_name: str, state: str | None) -> DebugSession | None:
        """The session that debugs this invocation (a one-shot one is disarmed by it), if any."""
        with self._lock:
            for port, session in self._sessions.items():
                if session.matches(function_name, state):
                    session.invocations += 1
                    if not session.every:
                        del self._sessions[port]
                    return session
        return None

    def record(self, hold: dict[str, Any]) -> None:
        with self._lock:
            self._holds.append(hold)
            del self._holds[:-MAX_HOLDS_KEPT]

    def holds(self, execution: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return [h for h in self._holds if execution is None or h.get("execution") == execution]


BOOK = DebugBook()

# The folder of the debug worker this thread starts (its code folder's parent), else None.
DEBUG_WORKER_FOLDER: contextvars.ContextVar[str | None] = contextvars.ContextVar(
    "sandbox_debug_worker_folder", default=None
)


def debuggable_config(config: dict[str, Any], session: DebugSession, debugpy_path: str) -> dict[str, Any]:
    """The function's configuration for its debug worker: the timeout lifted, the debugger set."""
    runtime = str(config.get("Runtime", ""))
    host = os.environ.get(HOST_ENV, "127.0.0.1")
    variables = dict((config.get("Environment") or {}).get("Variables") or {})
    if runtime.startswith("nodejs"):
        flag = "--inspect-brk" if session.wait else "--inspect"
        options = variables.get("NODE_OPTIONS", "")
        variables["NODE_OPTIONS"] = f"{options} {flag}={host}:{session.port}".strip()
    else:
        variables[DEBUG_ENV] = json.dumps(
            {
                "host": host,
                "port": session.port,
                "wait": session.wait,
                "waitSeconds": session.wait_seconds,
                "path": debugpy_path,
                "timeout": config.get("Timeout", 3),
            }
        )
    return {**config, "Timeout": HELD_TIMEOUT_SECONDS, "Environment": {"Variables": variables}}


def debugpy_location() -> str | None:
    """The folder of the engine's own debugpy package (the sandbox's dependency), if installed."""
    spec = importlib.util.find_spec("debugpy")
    locations = spec.submodule_search_locations if spec is not None else None
    return locations[0] if locations else None


def debugpy_folder() -> str:
    """A folder holding debugpy alone (a link to the engine's copy), for a worker's sys.path."""
    location = debugpy_location()
    if location is None:
        raise DebugRequestError("debugpy is not installed beside the engine")
    folder = os.path.join(tempfile.gettempdir(), DEBUG_FOLDER, "debugpy-path")
    link = os.path.join(folder, "debugpy")
    if not os.path.islink(link):
        os.makedirs(folder, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.symlink(location, link)
    return folder


def debug_tempfile() -> types.SimpleNamespace:
    """The ``tempfile`` the engine's worker module sees: a debug worker's folder is a fixed one."""

    def mkdtemp(*args: Any, **kwargs: Any) -> str:
        folder = DEBUG_WORKER_FOLDER.get()
        if folder is None:
            return str(tempfile.mkdtemp(*args, **kwargs))
        shutil.rmtree(folder, ignore_errors=True)
        os.makedirs(folder)
        return folder

    return types.SimpleNamespace(**{**vars(tempfile), "mkdtemp": mkdtemp})


def _stop_if_still_starting(worker: Any, gave_up: threading.Event) -> None:
    """Stop a debug worker still waiting for a client (a Node.js one, paused before its first line)."""
    process = getattr(worker, "_proc", None)
    if worker._start_time is None and process is not None:
        gave_up.set()
        process.kill()


def with_debugger(
    invoke: Callable[..., dict[str, Any]],
    kill: Callable[[list[Any]], None],
    book: DebugBook = BOOK,
    clock: Callable[[], float] = time.time,
) -> Callable[..., dict[str, Any]]:
    """The engine's ``Worker.invoke``: an armed invocation runs on a debug worker of its own."""

    def invoke_debuggable(
        worker: Any, event: Any, request_id: str, *args: Any, **kwargs: Any
    ) -> dict[str, Any]:
        task = TASK_CALL.get()
        runtime = str(worker.config.get("Runtime", ""))
        if not (runtime.startswith("python") or runtime.startswith("nodejs")):
            return invoke(worker, event, request_id, *args, **kwargs)
        session = book.take(worker.func_name, task.state if task else None)
        if session is None:
            return invoke(worker, event, request_id, *args, **kwargs)
        started = clock()
        with holding_step_clock(), session.lock:
            config = debuggable_config(worker.config, session, debugpy_folder())
            debug_worker = type(worker)(worker.func_name, config, worker.code_zip)
            folder = os.path.dirname(remote_root(worker.func_name))
            tokens = (DEBUG_WORKER_FOLDER.set(folder), FROM_SCRATCH.set(True))
            # A Python worker gives up its wait for a client itself; a Node.js one is stopped.
            gave_up = threading.Event()
            deadline = threading.Timer(session.wait_seconds, _stop_if_still_starting, (debug_worker, gave_up))
            if session.wait and runtime.startswith("nodejs"):
                deadline.start()
            try:
                result = invoke(debug_worker, event, request_id, *args, **kwargs)
            except Exception:
                if not gave_up.is_set():
                    raise
            finally:
                deadline.cancel()
                DEBUG_WORKER_FOLDER.reset(tokens[0])
                FROM_SCRATCH.reset(tokens[1])
                kill([debug_worker])
        if gave_up.is_set():  # no debugger came: the invocation goes on undebugged
            logger.warning(
                "sandbox debug: no debugger attached to %s within %gs", worker.func_name, session.wait_seconds
            )
            return invoke(worker, event, request_id, *args, **kwargs)
        held = round(clock() - started, 3)
        book.record(
            {
                "function": worker.func_name,
                "state": task.state if task else None,
                "execution": task.execution if task else None,
                "requestId": request_id,
                "port": session.port,
                "startedAt": started,
                "heldSeconds": held,
            }
        )
        return result

    return invoke_debuggable


# ---------------------------------------------------------------------- the worker script

# Defined ahead of the engine's Python worker script.
_PYTHON_DEBUGGER = r"""
def _sandbox_debugger():
    # Armed by `sandbox debug`: listen before the handler's module loads, so its breakpoints bind.
    raw = os.environ.pop("__DEBUG_ENV__", "")
    if not raw:
        return None
    settings = json.loads(raw)
    os.environ["_LAMBDA_TIMEOUT"] = str(settings["timeout"])
    os.environ.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")
    sys.path.append(settings["path"])
    try:
        import debugpy
    finally:
        sys.path.remove(settings["path"])
    debugpy.listen((settings["host"], settings["port"]))
    return debugpy, settings


def _sandbox_wait_for_debugger(debugger):
    debugpy, settings = debugger
    if not settings["wait"] or debugpy.is_client_connected():
        return
    import threading
    seconds = settings["waitSeconds"]
    sys.stderr.write("sandbox debug: waiting %gs for a debugger on port %d\n" % (seconds, settings["port"]))
    timer = threading.Timer(seconds, debugpy.wait_for_client.cancel)
    timer.daemon = True
    timer.start()
    debugpy.wait_for_client()
    timer.cancel()
    if not debugpy.is_client_connected():
        sys.stderr.write("sandbox debug: no debugger attached within %gs: the invocation runs undebugged\n" % seconds)
""".replace("__DEBUG_ENV__", DEBUG_ENV)

_ENVIRONMENT_SET = "    os.environ.update(env)\n"
_HANDLER_CALL = "        try:\n            result = handler_fn(event, context)\n"
_WAIT_THEN_CALL = (
    "        if _sandbox_debug:\n"
    "            _sandbox_wait_for_debugger(_sandbox_debug)\n"
    "            # the function's time counts from here, not from the wait for a client\n"
    '            _deadline = time.time() + float(os.environ.get("_LAMBDA_TIMEOUT", "3"))\n'
) + _HANDLER_CALL


def debugging_python_workers(worker_script: str) -> str:
    """The engine's Python worker script, starting debugpy when its worker is a debug worker."""
    for line in (_ENVIRONMENT_SET, _HANDLER_CALL):
        if worker_script.count(line) != 1:
            raise ValueError("the engine's Python worker script does not start handlers as expected")
    worker_script = worker_script.replace(
        _ENVIRONMENT_SET, _ENVIRONMENT_SET + "    _sandbox_debug = _sandbox_debugger()\n"
    )
    return _PYTHON_DEBUGGER + worker_script.replace(_HANDLER_CALL, _WAIT_THEN_CALL)


# --------------------------------------------------------------------- the control route


def _port_of(rest: str) -> int | None:
    return int(rest) if rest.isdigit() else None


def handle_request(book: DebugBook, method: str, path: str, query: str, body: bytes) -> tuple[int, Any]:
    """One request to the debug route: (status, JSON answer)."""
    rest = path[len(ROUTE) :].strip("/")
    if method == "GET" and rest == "":
        return 200, {"sessions": book.listed()}
    if method == "GET" and rest == "holds":
        import urllib.parse

        execution = urllib.parse.parse_qs(query).get("execution", [None])[0]
        return 200, {"holds": book.holds(execution)}
    if method == "POST" and rest == "":
        try:
            payload = json.loads(body or b"{}")
        except ValueError:
            return 400, {"message": "the body is not JSON"}
        if debugpy_location() is None:
            return 400, {
                "message": "debugpy is not installed beside the engine: install the sandbox's dependencies"
            }
        try:
            return 200, {"session": book.arm(payload).to_json()}
        except DebugRequestError as error:
            return 400, {"message": str(error)}
    if method == "DELETE" and rest == "":
        return 200, {"disarmed": book.disarm()}
    if method == "DELETE" and _port_of(rest) is not None:
        disarmed = book.disarm(_port_of(rest))
        return (
            (200, {"disarmed": disarmed})
            if disarmed
            else (404, {"message": f"nothing is armed on port {rest}"})
        )
    return 404, {"message": f"no route {method} {path}"}


def with_debug_route(app: App, book: DebugBook = BOOK) -> App:
    """The engine's ASGI app, answering the debug route itself."""
    return with_json_route(
        app, ROUTE, lambda method, path, query, body: handle_request(book, method, path, query, body)
    )
