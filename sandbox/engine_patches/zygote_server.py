"""The parent that a runtime's Lambda workers are forked from: imports once, forks per worker.

Run by the engine (``sandbox.engine_patches.zygotes``) on the runtime's own interpreter, as
``<interpreter or launcher> zygote_server.py SOCKET``, so it imports only the standard library and
what that runtime provides. It reads one JSON line on stdin (``env``: the environment the engine
started it with; ``preload``: modules; ``services``: botocore service models to load), imports and
loads them, freezes the heap (``gc.freeze``), answers ``ready`` on stdout and serves SOCKET.

Each connection asks for one worker: an 8-byte length with the three pipe ends the worker's
stdin, stdout and stderr are (SCM_RIGHTS), then a JSON request ``{argv, cwd, env}``. The server
forks; the child takes the pipes as 0/1/2, the folder, the environment (with what the launcher
changed, as a worker started by the launcher would have) and runs ``argv[0]`` as ``__main__``.
The server answers ``{"pid": N}`` and, when it has reaped the child, ``{"exit": CODE}`` (a
negative CODE is the signal that killed it, as ``subprocess`` reports), then closes the
connection. It exits when its stdin closes: the engine is gone.

Nothing here may start a thread, open a socket other than its own, or resolve credentials: every
child inherits the heap, and its environment is not the server's.
"""

from __future__ import annotations

import atexit
import contextlib
import gc
import importlib
import io
import json
import os
import runpy
import selectors
import signal
import socket
import struct
import sys
import traceback
from collections.abc import Iterable, Mapping
from typing import Any

HEADER = struct.Struct("!Q")  # the request's JSON length
STDIO = 3  # the worker's stdin, stdout, stderr
# Variables a launcher sets or clears for the interpreter itself: a child gets the launcher's
# values, as a worker the launcher started would.
INTERPRETER_VARIABLES = ("PYTHONPATH", "PYTHONHOME", "PYTHONSTARTUP", "PYTHONDONTWRITEBYTECODE")


def preload(modules: Iterable[str], services: Iterable[str]) -> None:
    """Import ``modules`` and load ``services``' botocore models into boto3's default session."""
    for name in modules:
        with contextlib.suppress(Exception):  # a runtime without it: its workers import what they have
            importlib.import_module(name)
    boto3 = sys.modules.get("boto3")
    if boto3 is None or not services:
        return
    try:
        # The session a handler's boto3.client()/resource() uses. Its loader caches each model
        # it parsed; credentials and region are resolved later, by the child, from its own env.
        boto3.setup_default_session()
        loader = boto3.DEFAULT_SESSION._loader
        for name in ("endpoints", "partitions", "_retry", "sdk-default-configuration"):
            loader.load_data(name)
        for service in services:
            for kind in ("service-2", "endpoint-rule-set-1", "paginators-1", "waiters-2", "resources-1"):
                with contextlib.suppress(Exception):  # not every service has every kind of model
                    loader.load_service_model(service, kind)
    except Exception:
        traceback.print_exc()


def dependency_packages(folder: str) -> set[str]:
    """The top-level modules the distributions installed in ``folder`` (its ``*.dist-info``) provide."""
    packages: set[str] = set()
    try:
        infos = [entry for entry in os.listdir(folder) if entry.endswith(".dist-info")]
    except OSError:
        return packages
    for info in infos:
        try:
            with open(os.path.join(folder, info, "top_level.txt")) as top_level:
                packages.update(line.strip() for line in top_level if line.strip())
            continue
        except OSError:
            pass
        with contextlib.suppress(OSError), open(os.path.join(folder, info, "RECORD")) as record:
            for line in record:
                first = line.split(",", 1)[0].split("/", 1)[0]
                if first.endswith(".py"):
                    packages.add(first[:-3])
                elif first and "." not in first and first not in ("bin", "__pycache__"):
                    packages.add(first)
    return packages


class InitWatcher:
    """The worker's stdin: once the worker asks for its first invocation, its init is over."""

    def __init__(self, stream: Any, on_init_done: Any):
        self._stream = stream
        self._on_init_done = on_init_done
        self._lines = 0

    def readline(self, *args: Any) -> Any:
        self._lines += 1
        if self._lines == 2:  # the first line was the init request
            with contextlib.suppress(Exception):
                self._on_init_done()
        return self._stream.readline(*args)

    def __iter__(self) -> InitWatcher:
        return self

    def __next__(self) -> Any:
        line = self.readline()
        if not line:
            raise StopIteration
        return line

    def __getattr__(self, name: str) -> Any:
        return getattr(self._stream, name)


def report_imports(report: int, packages: set[str], preloaded: set[str]) -> None:
    """Tell the parent which modules of the dependencies the worker's init imported."""
    names = [
        name
        for name, module in list(sys.modules.items())
        if module is not None and name.partition(".")[0] in packages and name not in preloaded
    ]
    with contextlib.suppress(OSError):
        os.write(report, "\n".join(names).encode())
    os.close(report)


def launcher_changes(engine_env: Mapping[str, str]) -> dict[str, str | None]:
    """What the launcher changed in the environment the engine gave it: {name: value or None}."""
    changes: dict[str, str | None] = {}
    for name in INTERPRETER_VARIABLES:
        if os.environ.get(name) != engine_env.get(name):
            changes[name] = os.environ.get(name)
    return changes


def receive_exactly(connection: socket.socket, size: int) -> bytes:
    data = b""
    while len(data) < size:
        chunk = connection.recv(size - len(data))
        if not chunk:
            raise ConnectionError("the engine closed the request")
        data += chunk
    return data


def run_child(
    request: dict[str, Any],
    env: Mapping[str, str],
    fds: list[int],
    closing: list[int],
    report: tuple[int, set[str]] | None,
) -> None:
    """In the forked child: become the worker the request describes. Never returns."""
    code = 1
    preloaded = set(sys.modules)
    try:
        for fd in closing:
            os.close(fd)
        signal.signal(signal.SIGCHLD, signal.SIG_DFL)
        signal.signal(signal.SIGINT, signal.default_int_handler)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        signal.pthread_sigmask(signal.SIG_SETMASK, set())
        for target, fd in enumerate(fds):
            os.dup2(fd, target)
            os.close(fd)
        # The worker's own standard streams, as a new interpreter would open them.
        streams = [open(fd, mode, closefd=False) for fd, mode in ((0, "rb"), (1, "wb"), (2, "wb"))]  # noqa: SIM115
        sys.stdin = io.TextIOWrapper(streams[0])
        sys.stdout = io.TextIOWrapper(streams[1])
        sys.stderr = io.TextIOWrapper(streams[2], errors="backslashreplace", line_buffering=True)
        sys.__stdin__, sys.__stdout__, sys.__stderr__ = sys.stdin, sys.stdout, sys.stderr  # type: ignore[misc]
        if report is not None:
            report_fd, packages = report
            sys.stdin = InitWatcher(sys.stdin, lambda: report_imports(report_fd, packages, preloaded))
        os.environ.clear()
        os.environ.update(env)
        os.chdir(request["cwd"])
        script = request["argv"][0]
        sys.argv = list(request["argv"])
        sys.path.insert(0, os.path.dirname(os.path.abspath(script)))  # as running the script would
        try:
            runpy.run_path(script, run_name="__main__")
            code = 0
        except SystemExit as exit_:
            code = exit_.code if isinstance(exit_.code, int) else (0 if exit_.code is None else 1)
        except BaseException:
            traceback.print_exc()
        atexit._run_exitfuncs()
    finally:
        for stream in (sys.stdout, sys.stderr):
            with contextlib.suppress(Exception):
                stream.flush()
        os._exit(code)


class Server:
    def __init__(self, listener: socket.socket, changes: Mapping[str, str | None], packages: set[str]):
        self.listener = listener
        self.changes = changes
        # The dependencies' top-level modules: what a worker's init imported of them is imported
        # here too, so the next workers forked start with it.
        self.packages = packages
        self.children: dict[int, socket.socket] = {}  # pid -> the connection that asked for it
        self.reports: dict[int, bytearray] = {}  # a report pipe's fd -> what was read of it
        self.selector = selectors.DefaultSelector()

    def learn(self, names: list[str], env: Mapping[str, str]) -> None:
        """Import what a worker imported of the dependencies, under that worker's environment."""
        saved = dict(os.environ)
        os.environ.clear()
        os.environ.update(env)
        try:
            for name in sorted(set(names), key=lambda name: name.count(".")):
                if name.partition(".")[0] in self.packages and name not in sys.modules:
                    with contextlib.suppress(Exception):
                        importlib.import_module(name)
        finally:
            os.environ.clear()
            os.environ.update(saved)
        threading = sys.modules.get("threading")
        if threading is not None and threading.active_count() > 1:
            # A dependency started a thread as it was imported: forking a process with threads may
            # copy a lock held mid-use, so nothing more is learned (what was, stays preloaded).
            self.packages = set()
            print("sandbox worker parent: a dependency started a thread on import; it learns no more",
                  file=sys.stderr, flush=True)  # fmt: skip
        gc.freeze()

    def read_report(self, fd: int, env: Mapping[str, str]) -> None:
        chunk = os.read(fd, 65536)
        if chunk:
            self.reports[fd] += chunk
            return
        self.selector.unregister(fd)
        os.close(fd)
        self.learn(self.reports.pop(fd).decode(errors="replace").split(), env)

    def reap(self, *_: object) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            connection = self.children.pop(pid, None)
            if connection is not None:
                with contextlib.suppress(OSError):
                    connection.sendall(
                        json.dumps({"exit": os.waitstatus_to_exitcode(status)}).encode() + b"\n"
                    )
                connection.close()

    def fork(self, connection: socket.socket) -> None:
        fds: list[int] = []
        try:
            message, fds, _flags, _address = socket.recv_fds(connection, HEADER.size, STDIO)
            if len(message) != HEADER.size or len(fds) != STDIO:
                raise ConnectionError("a request without its length or its three pipes")
            request = json.loads(receive_exactly(connection, HEADER.unpack(message)[0]))
        except (OSError, ValueError) as error:
            for fd in fds:
                os.close(fd)
            connection.close()
            print(f"sandbox worker parent: refused a request: {error}", file=sys.stderr, flush=True)
            return
        # The child's exit is reported on its connection: it must be registered before it can
        # be reaped, so SIGCHLD waits until then.
        report_read, report_write = os.pipe() if self.packages else (-1, -1)
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGCHLD})
        try:
            pid = os.fork()
            if pid == 0:
                closing = [self.listener.fileno(), connection.fileno(), self.selector.fileno(), 0, 1]
                closing += [other.fileno() for other in self.children.values()]
                closing += [fd for fd in (*self.reports, report_read) if fd >= 0]
                report = (report_write, self.packages) if report_write >= 0 else None
                run_child(request, self.child_env(request), fds, closing, report)
            for fd in fds:
                os.close(fd)
            if report_write >= 0:
                os.close(report_write)
                self.reports[report_read] = bytearray()
                self.selector.register(report_read, selectors.EVENT_READ, self.child_env(request))
            self.children[pid] = connection
            connection.sendall(json.dumps({"pid": pid}).encode() + b"\n")
        except OSError as error:
            print(f"sandbox worker parent: could not fork: {error}", file=sys.stderr, flush=True)
            connection.close()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGCHLD})

    def child_env(self, request: Mapping[str, Any]) -> dict[str, str]:
        env = dict(request["env"])
        for name, value in self.changes.items():
            if value is None:
                env.pop(name, None)
            else:
                env[name] = value
        return env

    def serve(self) -> None:
        signal.signal(signal.SIGCHLD, self.reap)
        self.selector.register(self.listener, selectors.EVENT_READ, "listener")
        self.selector.register(sys.stdin.fileno(), selectors.EVENT_READ, "engine")
        while True:
            for key, _events in self.selector.select():
                if key.data == "engine":
                    if not os.read(key.fd, 4096):
                        return  # the engine is gone: so are we
                elif key.data == "listener":
                    connection, _ = self.listener.accept()
                    self.fork(connection)
                else:
                    self.read_report(key.fd, key.data)


def main() -> None:
    script_folder = os.path.dirname(os.path.abspath(__file__))
    # The script's folder is on sys.path because it was run as a script: the engine patches'
    # modules must not be importable by the workers forked from here.
    sys.path[:] = [entry for entry in sys.path if os.path.abspath(entry or ".") != script_folder]
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a Ctrl-C in the terminal is the engine's to handle
    config = json.loads(sys.stdin.buffer.readline())
    changes = launcher_changes(config.get("env", {}))
    dependencies = config.get("dependencies")
    packages = dependency_packages(dependencies) if dependencies else set()
    if packages:
        sys.path.insert(0, dependencies)  # where the workers' code folder is: first
    preload(config.get("preload", []), config.get("services", []))
    gc.freeze()  # the preloaded heap stays shared: the children's collector never touches it
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(sys.argv[1])
    listener.listen(64)
    sys.stdout.write("ready\n")
    sys.stdout.flush()
    try:
        Server(listener, changes, packages).serve()
    finally:
        listener.close()


if __name__ == "__main__":
    main()
