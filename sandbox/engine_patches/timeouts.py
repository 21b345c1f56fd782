"""Step Functions: a Task's TimeoutSeconds counted from its handler's start, not while a debugger
holds it, and no delay before an execution."""

from __future__ import annotations

import contextlib
import contextvars
import threading
import time
import types
from collections.abc import Callable, Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeoutError
from typing import Any

from .workers import WORKER_WAIT_SECONDS

# How long a Task with TimeoutSeconds waits for its handler to start (queue + cold start)
# before its clock starts anyway.
HANDLER_START_WAIT_SECONDS = WORKER_WAIT_SECONDS + 30.0
# While a debugger holds a Task's handler, its timeout looks again this often.
HELD_RECHECK_SECONDS = 1.0


# ------------------------------------------------ Task TimeoutSeconds from the handler's start

# Set by a Step Functions Task with TimeoutSeconds for the Lambda invocation it makes; the
# invoke path sets the event when the handler starts running on a worker.
HANDLER_STARTED: contextvars.ContextVar[threading.Event | None] = contextvars.ContextVar(
    "sandbox_handler_started", default=None
)


class HeldTime:
    """The time a debugger held a Task's invocation: its TimeoutSeconds clock stops meanwhile."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._lock = threading.Lock()
        self._holds = 0
        self._since = 0.0
        self._total = 0.0

    @property
    def is_held(self) -> bool:
        with self._lock:
            return self._holds > 0

    def seconds(self) -> float:
        """Held time so far, the current hold included."""
        with self._lock:
            return self._total + (self._clock() - self._since if self._holds else 0.0)

    @contextlib.contextmanager
    def holding(self) -> Iterator[None]:
        with self._lock:
            if not self._holds:
                self._since = self._clock()
            self._holds += 1
        try:
            yield
        finally:
            with self._lock:
                self._holds -= 1
                if not self._holds:
                    self._total += self._clock() - self._since


# Set, like HANDLER_STARTED, for the Lambda invocation of a Task with TimeoutSeconds.
HELD_TIME: contextvars.ContextVar[HeldTime | None] = contextvars.ContextVar("sandbox_held_time", default=None)


@contextlib.contextmanager
def holding_step_clock() -> Iterator[None]:
    """Stop the invoking Task's TimeoutSeconds clock while a debugger holds its handler."""
    held = HELD_TIME.get()
    if held is None:
        yield
        return
    with held.holding():
        yield


def signal_handler_start() -> None:
    """Tell a waiting Task's timeout that its handler starts now (a no-op elsewhere)."""
    started = HANDLER_STARTED.get()
    if started is not None:
        started.set()


def with_start_signal(
    invoke: Callable[..., dict[str, Any]], spawn: Callable[[Any], None]
) -> Callable[..., dict[str, Any]]:
    """Signal the handler's start once the worker is up: after its cold start, if it had one.

    The worker is leased to this invocation alone, so spawning it here (``spawn`` is the
    engine's ``ensure_spawned``) is exactly what the engine's invoke would do first.
    """

    def invoke_signalling(worker: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        if HANDLER_STARTED.get() is None:
            return invoke(worker, *args, **kwargs)
        process = getattr(worker, "_proc", None)
        is_cold = process is None or process.poll() is not None
        if is_cold:
            spawn(worker)
        signal_handler_start()
        result = invoke(worker, *args, **kwargs)
        if is_cold and isinstance(result, dict):
            result["cold_start"] = True
        return result

    return invoke_signalling


def signalling_start(execute: Callable[..., Any]) -> Callable[..., Any]:
    """Signal the handler's start when ``execute`` begins (executors without a worker pool)."""

    def execute_signalling(*args: Any, **kwargs: Any) -> Any:
        signal_handler_start()
        return execute(*args, **kwargs)

    return execute_signalling


def is_lambda_resource(resource: str) -> bool:
    """Whether a Task resource invokes a Lambda function (optimized integration or bare ARN)."""
    return "states:::lambda:invoke" in resource or ":function:" in resource


def timing_from_handler_start(
    invoke_resource: Callable[[str, Any], Any],
    timeout_error: Callable[[str, str], Exception],
    *,
    start_wait: float = HANDLER_START_WAIT_SECONDS,
    clock: Callable[[], float] = time.monotonic,
    budget: Callable[[float], float] = float,
) -> Callable[[str, Any, float], Any]:
    """A Task's TimeoutSeconds clock that starts when its Lambda handler starts running, and stops
    while a debugger holds it.

    The engine started the clock when the state began, so time spent waiting for a free worker
    and in the worker's cold start counted against the function: under a burst on two cores,
    5-second steps timed out without ever having run long. A Lambda Task now waits (at most
    ``start_wait``) for the handler to start, or for the invocation to end without starting,
    then gives it TimeoutSeconds. Other resources are timed as the engine timed them. As in the
    engine, a timed-out task keeps running; the state ignores its result. Time a debugger holds
    the handler (``sandbox debug``) does not count: the step goes on as if it had been fast.
    ``budget`` turns TimeoutSeconds into the real seconds the timer gives (the saga clock's); the
    timeout's cause names TimeoutSeconds as written, so a history reads the same at any scale.
    """

    def invoke_with_timeout(resource: str, input_data: Any, timeout: float) -> Any:
        context = contextvars.copy_context()  # the account and region scope (engine issue #639)
        started = threading.Event() if is_lambda_resource(str(resource)) else None
        held = HeldTime(clock)
        if started is not None:
            context.run(HANDLER_STARTED.set, started)
            context.run(HELD_TIME.set, held)
        pool = ThreadPoolExecutor(max_workers=1)
        future: Future[Any] = pool.submit(context.run, invoke_resource, resource, input_data)
        pool.shutdown(wait=False)
        if started is not None:
            future.add_done_callback(lambda _: started.set())
            started.wait(start_wait)
        clock_start = clock()
        limit = budget(timeout)
        while True:
            remaining = limit - (clock() - clock_start - held.seconds())
            if held.is_held:
                remaining = max(remaining, HELD_RECHECK_SECONDS)  # frozen: look again later
            try:
                return future.result(timeout=max(remaining, 0.0))
            except FutureTimeoutError:
                if not held.is_held and limit - (clock() - clock_start - held.seconds()) <= 0:
                    raise timeout_error("States.Timeout", f"Task timed out after {timeout} seconds") from None

    return invoke_with_timeout


# ------------------------------------------------------- no fixed delay before an execution


def replace_constant(function: types.FunctionType, old: float, new: float) -> None:
    """Replace the one float constant ``old`` in ``function``'s own code with ``new``, in place."""
    code = function.__code__
    hits = [index for index, const in enumerate(code.co_consts) if type(const) is float and const == old]
    if len(hits) != 1:
        raise ValueError(f"{function.__qualname__} has {len(hits)} constants {old!r}, expected one")
    consts = list(code.co_consts)
    consts[hits[0]] = new
    function.__code__ = code.replace(co_consts=tuple(consts))
