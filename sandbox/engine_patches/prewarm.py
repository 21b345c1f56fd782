"""The engine's Lambda workers, seen and warmed: the ``/_sandbox/workers`` route.

``GET /_sandbox/workers`` lists the live workers (function, pid, whether leased) and what
prewarming did. ``POST /_sandbox/workers/prewarm`` with ``{"functions": [name, ...]}`` (every
function when omitted) answers at once (202) and starts, on one background thread, one worker of
each named function that runs in the engine's worker pools (Python and Node.js zip functions), as
the engine's own SnapStart publish does: lease a worker, spawn it, release it. An invocation that
arrives first simply takes a worker of its own; a handler that cannot import fails here as it
would at its first invocation, and is left cold.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Iterator
from typing import Any

from .routes import App, with_json_route

logger = logging.getLogger("sandbox.engine_patches")

ROUTE = "/_sandbox/workers"
PREWARM = ROUTE + "/prewarm"
Record = dict[str, Any]


def warmable(record: Record) -> bool:
    """Whether a function record runs in the engine's worker pools (a Python or Node.js zip)."""
    config = record.get("config") or {}
    runtime = str(config.get("Runtime", ""))
    return (
        config.get("PackageType", "Zip") == "Zip"
        and isinstance(record.get("code_zip"), bytes | bytearray)
        and runtime.startswith(("python", "nodejs"))
    )


class Prewarmer:
    """Warms functions one after another on a background thread; remembers how each went."""

    def __init__(
        self,
        records: Callable[[], Iterable[Record]],
        warm: Callable[[Record], None],
        workers: Callable[[], list[dict[str, Any]]] = list,
    ):
        self._records = records
        self._warm = warm
        self._workers = workers
        self._lock = threading.Lock()
        self.warmed: dict[str, float] = {}  # function name -> seconds its worker took to start
        self.failed: dict[str, str] = {}
        self.pending: list[str] = []

    def start(self, names: Iterable[str] | None) -> list[str]:
        """Start warming ``names`` (every warmable function when None); the names to be warmed."""
        wanted = None if names is None else set(names)
        chosen = [
            record
            for record in self._records()
            if warmable(record) and (wanted is None or record["config"].get("FunctionName") in wanted)
        ]
        with self._lock:
            self.pending += [record["config"]["FunctionName"] for record in chosen]
        threading.Thread(target=self._run, args=(chosen,), name="sandbox-prewarm", daemon=True).start()
        return [record["config"]["FunctionName"] for record in chosen]

    def _run(self, records: list[Record]) -> None:
        for record in records:
            name = record["config"]["FunctionName"]
            started = time.monotonic()
            try:
                self._warm(record)
            except Exception as error:  # the first invocation will report it as AWS would
                logger.warning("Lambda %s could not be warmed: %s", name, error)
                outcome: tuple[str, Any] = ("failed", str(error))
            else:
                outcome = ("warmed", round(time.monotonic() - started, 3))
            with self._lock:
                if name in self.pending:
                    self.pending.remove(name)
                getattr(self, outcome[0])[name] = outcome[1]

    def report(self) -> dict[str, Any]:
        with self._lock:
            prewarm = {
                "warmed": dict(self.warmed),
                "failed": dict(self.failed),
                "pending": list(self.pending),
            }
        return {"workers": self._workers(), "prewarm": prewarm}

    def handle(self, method: str, path: str, query: str, body: bytes) -> tuple[int, Any]:
        if (path, method) == (ROUTE, "GET"):
            return 200, self.report()
        if path != PREWARM:
            return 404, {"message": f"no such route: {method} {path}"}
        if method != "POST":
            return 405, {"message": f"{method} is not allowed here: POST"}
        try:
            request = json.loads(body or b"{}")
            names = request.get("functions") if isinstance(request, dict) else None
            if names is not None and not (isinstance(names, list) and all(isinstance(n, str) for n in names)):
                raise ValueError("functions must be a list of function names")
        except ValueError as error:
            return 400, {"message": f"not a prewarm request: {error}"}
        return 202, {"warming": self.start(names)}


def engine_prewarmer() -> Prewarmer:
    """A Prewarmer over the engine's functions, warming through its worker pool."""
    from ministack.core import lambda_runtime
    from ministack.services import lambda_svc

    def records() -> Iterator[Record]:
        for record in list(lambda_svc._functions._data.values()):
            if isinstance(record, dict):
                yield record

    def warm(record: Record) -> None:
        config = record["config"]
        worker, _reason = lambda_runtime.acquire_worker(
            config["FunctionName"], config, record["code_zip"], qualifier=config.get("Version", "$LATEST")
        )
        if worker is None:
            return  # the function's pool is already full: it is warm
        try:
            lambda_runtime.ensure_spawned(worker)
        finally:
            lambda_runtime.release_worker(worker)

    def workers() -> list[dict[str, Any]]:
        with lambda_runtime._lock:
            pools = [list(pool) for pool in lambda_runtime._workers.values()]
        return [
            {"function": worker.func_name, "pid": process.pid, "inUse": bool(worker.in_use)}
            for pool in pools
            for worker in pool
            if (process := getattr(worker, "_proc", None)) is not None and process.poll() is None
        ]

    return Prewarmer(records, warm, workers)


def with_prewarm_route(app: App, prewarmer: Prewarmer) -> App:
    """The engine's ASGI app, answering the prewarm route."""
    return with_json_route(app, ROUTE, prewarmer.handle)
