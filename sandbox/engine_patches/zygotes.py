"""Python Lambda workers forked from a parent that already imported what the runtime provides.

A cold Python worker spent 0.3-0.4 s importing boto3 and parsing botocore's models before it
imported the function's own code, and each held its own copy of them. Here the engine's one
``subprocess.Popen`` of a Python worker (``[binary, …/_worker.py]``, binary the runtime's launcher
or the engine's interpreter) is answered by a fork of that binary's *worker parent*
(``zygote_server.py``): started once per binary on that same interpreter, it imported boto3,
botocore and the service models Lambda functions call, froze its heap and forks a child per
worker. The child becomes the worker the engine would have started (its pipes, folder,
environment, script), so everything else the engine and the other patches do with the process
(the init handshake, invocations, logs, the pool, timeouts, kills and reaping) is unchanged: the
answer has the surface of ``subprocess.Popen`` they use.

The engine itself is never forked (it runs dozens of threads); the parent is a single-threaded
process of the runtime's interpreter. ``SANDBOX_FORKED_WORKERS=0`` starts every worker as its own
process, as the engine does; a parent that cannot start (an interpreter older than 3.9) does the
same, with one line in the engine's log.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import logging
import os
import select
import signal
import socket
import struct
import subprocess
import tempfile
import threading
import time
import types
from collections.abc import Callable, Mapping, Sequence
from typing import IO, Any

logger = logging.getLogger("sandbox.engine_patches")

FORKED_WORKERS_ENV = "SANDBOX_FORKED_WORKERS"
SERVER_SCRIPT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "zygote_server.py")
# What every Python Lambda runtime provides and nearly every handler imports, in import order.
PRELOAD_MODULES = (
    "botocore.handlers",  # the engine's worker script imports it before the handler
    "boto3",
    "boto3.session",
    "botocore.session",
    "botocore.client",
    "botocore.endpoint",
    "botocore.httpsession",
    "botocore.parsers",
    "botocore.serialize",
    "botocore.regions",
    "botocore.credentials",
    "botocore.retries.standard",
    "boto3.resources.factory",
    "boto3.dynamodb.conditions",
    "boto3.dynamodb.types",
)
# The services a saga's functions call: their models are parsed once, in the parent.
PRELOAD_SERVICES = (
    "dynamodb", "stepfunctions", "events", "sns", "sqs", "s3", "lambda", "ssm", "secretsmanager", "sts",
)  # fmt: skip
# Set while a worker must start as a process of its own (a cold-start fault replays the whole cost).
FROM_SCRATCH: contextvars.ContextVar[bool] = contextvars.ContextVar(
    "sandbox_worker_from_scratch", default=False
)
_HEADER = struct.Struct("!Q")
_START_SECONDS = 30.0
_ANSWER_SECONDS = 10.0


class WorkerParentError(RuntimeError):
    """A worker parent could not start, or could not fork."""


def forked_workers_enabled(environ: Mapping[str, str]) -> bool:
    """Whether Python workers are forked (the default) or started as processes of their own."""
    return environ.get(FORKED_WORKERS_ENV, "1").strip().lower() not in ("0", "false", "no", "off")


def _read_line(connection: socket.socket, buffer: bytearray, timeout: float | None) -> bytes | None:
    """One line from ``connection`` (b"" at its end); None when ``timeout`` passed first."""
    deadline = None if timeout is None else time.monotonic() + timeout
    while b"\n" not in buffer:
        remaining = None if deadline is None else max(0.0, deadline - time.monotonic())
        ready, _, _ = select.select([connection], [], [], remaining)
        if not ready:
            return None
        chunk = connection.recv(4096)
        if not chunk:
            return b""
        buffer += chunk
    line, _, rest = bytes(buffer).partition(b"\n")
    buffer[:] = rest
    return line


class ForkedWorker:
    """A worker forked by a worker parent, with the surface of ``subprocess.Popen`` the engine uses."""

    def __init__(
        self,
        args: Sequence[str],
        pid: int,
        connection: socket.socket,
        buffer: bytearray,
        pipes: tuple[int, int, int],
    ):
        self.args = list(args)
        self.pid = pid
        self.returncode: int | None = None
        self._connection = connection
        self._buffer = buffer
        self._lock = threading.Lock()
        stdin, stdout, stderr = pipes
        # As subprocess.Popen(text=True, bufsize=1) makes them.
        self.stdin: IO[str] = io.TextIOWrapper(open(stdin, "wb"), write_through=True, line_buffering=True)  # noqa: SIM115 (the worker's own streams)
        self.stdout: IO[str] = io.TextIOWrapper(open(stdout, "rb"))  # noqa: SIM115 (the worker's own streams)
        self.stderr: IO[str] = io.TextIOWrapper(open(stderr, "rb"))  # noqa: SIM115 (the worker's own streams)

    def _exit_code(self, timeout: float | None) -> int | None:
        with self._lock:
            if self.returncode is None:
                line = _read_line(self._connection, self._buffer, timeout)
                if line is None:
                    return None
                self._connection.close()
                try:
                    self.returncode = int(json.loads(line)["exit"])
                except (ValueError, KeyError, TypeError):
                    # The parent died before it reaped the worker: it is killed with it.
                    self._signal_pid(signal.SIGKILL)
                    self.returncode = -signal.SIGKILL
            return self.returncode

    def poll(self) -> int | None:
        return self._exit_code(0.0)

    def wait(self, timeout: float | None = None) -> int:
        code = self._exit_code(timeout)
        if code is None:
            raise subprocess.TimeoutExpired(self.args, timeout or 0.0)
        return code

    def _signal_pid(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signum)

    def send_signal(self, signum: int) -> None:
        # Once its exit is read, the parent has reaped it and the pid may be another process's.
        if self.poll() is None:
            self._signal_pid(signum)

    def terminate(self) -> None:
        self.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


class WorkerParent:
    """One worker parent: the process every worker of one binary is forked from."""

    def __init__(
        self,
        binary: str,
        dependencies: str | None = None,
        popen: Callable[..., subprocess.Popen[bytes]] = subprocess.Popen,
    ):
        self.binary = binary
        self._folder = tempfile.mkdtemp(prefix="sandbox-worker-parent-")
        self.socket_path = os.path.join(self._folder, "parent.sock")
        environment = dict(os.environ)
        self.process = popen(
            [binary, SERVER_SCRIPT, self.socket_path],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            env=environment,
            cwd=self._folder,
        )
        assert self.process.stdin is not None and self.process.stdout is not None
        config = {
            "env": environment,
            "preload": PRELOAD_MODULES,
            "services": PRELOAD_SERVICES,
            "dependencies": dependencies,
        }
        try:
            self.process.stdin.write(json.dumps(config).encode() + b"\n")
            self.process.stdin.flush()
            ready, _, _ = select.select([self.process.stdout], [], [], _START_SECONDS)
            answer = self.process.stdout.readline() if ready else b""
        except BrokenPipeError:  # it exited at once
            answer = b""
        if answer.strip() != b"ready":
            self.stop()
            raise WorkerParentError(f"the worker parent on {binary} did not start (its errors are above)")

    def alive(self) -> bool:
        return self.process.poll() is None

    def fork(self, args: Sequence[str], cwd: str | None, env: Mapping[str, str] | None) -> ForkedWorker:
        """A worker running ``args[1:]`` (the worker script) in ``cwd`` with ``env``."""
        stdin_read, stdin_write = os.pipe()
        stdout_read, stdout_write = os.pipe()
        stderr_read, stderr_write = os.pipe()
        child_ends: tuple[int, ...] = (stdin_read, stdout_write, stderr_write)
        ours = (stdin_write, stdout_read, stderr_read)
        connection = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            connection.connect(self.socket_path)
            body = json.dumps(
                {
                    "argv": list(args[1:]),
                    "cwd": cwd or os.getcwd(),
                    "env": dict(os.environ if env is None else env),
                }
            ).encode()
            socket.send_fds(connection, [_HEADER.pack(len(body))], list(child_ends))
            connection.sendall(body)
            for fd in child_ends:
                os.close(fd)
            child_ends = ()
            buffer = bytearray()
            line = _read_line(connection, buffer, _ANSWER_SECONDS)
            pid = int(json.loads(line or b"{}")["pid"])
        except (OSError, ValueError, KeyError, TypeError) as error:
            connection.close()
            for fd in (*child_ends, *ours):
                os.close(fd)
            raise WorkerParentError(f"the worker parent on {self.binary} did not fork: {error}") from error
        return ForkedWorker(args, pid, connection, buffer, ours)

    def stop(self) -> None:
        """Stop the parent (its workers are the engine's to stop) and remove its socket."""
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                # Closing stdin flushes what is buffered: a parent that died meanwhile is a broken pipe.
                with contextlib.suppress(OSError):
                    stream.close()
        with contextlib.suppress(OSError):
            os.unlink(self.socket_path)
        with contextlib.suppress(OSError):
            os.rmdir(self._folder)


def dependency_set(cwd: str | None, env: Mapping[str, str] | None) -> tuple[str, str] | None:
    """A worker's code folder and the distributions installed in it, when it has any.

    Functions whose packages hold the same distributions (``name-version.dist-info``) share one
    parent that preloads what their workers import of them; a function with layers gets the
    runtime's parent only (what it imports may come from the layers).
    """
    if not cwd or (env or {}).get("_LAMBDA_LAYERS_DIRS"):
        return None
    folder = os.path.realpath(cwd)
    try:
        installed = sorted(entry for entry in os.listdir(folder) if entry.endswith(".dist-info"))
    except OSError:
        return None
    return (folder, " ".join(installed)) if installed else None


ParentKey = tuple[str, str]  # (binary, the distributions its workers' packages hold)


class WorkerParents:
    """The engine's worker parents, one per binary and set of dependencies, each started at its first worker."""

    def __init__(self, start: Callable[[str, str | None], WorkerParent] = WorkerParent):
        self._start = start
        self._parents: dict[ParentKey, WorkerParent] = {}
        self._refused: set[ParentKey] = set()
        self._lock = threading.Lock()

    def _parent(self, binary: str, dependencies: tuple[str, str] | None) -> WorkerParent | None:
        key = (binary, dependencies[1] if dependencies else "")
        with self._lock:
            parent = self._parents.get(key)
            if parent is not None and parent.alive():
                return parent
            if key in self._refused:
                return None
            try:
                parent = self._start(binary, dependencies[0] if dependencies else None)
            except (OSError, WorkerParentError) as error:
                self._refused.add(key)
                logger.warning("Lambda workers on %s start as processes of their own: %s", binary, error)
                return None
            self._parents[key] = parent
            return parent

    def fork(
        self, args: Sequence[str], cwd: str | None, env: Mapping[str, str] | None
    ) -> ForkedWorker | None:
        """A worker forked from ``args[0]``'s parent, or None when it has none (start it yourself)."""
        dependencies = dependency_set(cwd, env)
        for _attempt in range(2):  # a parent that died is started again, once
            parent = self._parent(args[0], dependencies)
            if parent is None:
                return None
            try:
                return parent.fork(args, cwd, env)
            except WorkerParentError as error:
                if parent.alive():
                    logger.warning("%s", error)
                    return None
        return None

    def stop(self) -> None:
        with self._lock:
            for parent in self._parents.values():
                parent.stop()
            self._parents.clear()


def is_python_worker(args: Any, kwargs: Mapping[str, Any]) -> bool:
    """Whether a Popen call is the engine starting a Python worker: ``[binary, …/_worker.py]``, piped."""
    return (
        isinstance(args, list | tuple)
        and len(args) == 2
        and str(args[1]).endswith("_worker.py")
        and all(kwargs.get(stream) == subprocess.PIPE for stream in ("stdin", "stdout", "stderr"))
        and bool(kwargs.get("text"))
    )


def forking_subprocess(parents: WorkerParents) -> types.ModuleType:
    """A stand-in for the engine's ``subprocess`` module whose Popen forks Python workers."""
    shim = types.ModuleType("subprocess")
    shim.__dict__.update(subprocess.__dict__)
    real_popen = subprocess.Popen

    def popen(args: Any, *more: Any, **kwargs: Any) -> Any:
        if not more and not FROM_SCRATCH.get() and is_python_worker(args, kwargs):
            forked = parents.fork(args, kwargs.get("cwd"), kwargs.get("env"))
            if forked is not None:
                return forked
        return real_popen(args, *more, **kwargs)

    shim.Popen = popen  # type: ignore[attr-defined]
    return shim
