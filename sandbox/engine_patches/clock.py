"""One clock for the saga: Wait states, retries, timeouts and the handler's remaining time, N times faster.

``SANDBOX_TIME_SCALE`` (a speed-up N > 0, or ``max``) sets it at start; the ``/_sandbox/clock``
route reads and changes it while the engine runs. Every wait in saga time (a Wait state, a retry's
backoff, a stream lane's retry delay, an injected delay) lasts ``seconds / N``; ``max`` skips them.
Every budget (a Task's ``TimeoutSeconds``, a function's ``Timeout`` and with it the handler's
``get_remaining_time_in_millis()``) shrinks the same way but never below ``BUDGET_FLOOR_SECONDS``
(nor above its own length): handlers still run at real speed, and a budget shorter than their
real work would turn a scaled run into a run of timeouts. A Task's timeout still reports its
TimeoutSeconds as written, so a history reads the same at any scale.

Without a scale the engine keeps the sandbox's default: Wait states and retries compressed by
``SFN_WAIT_SCALE`` (0.01), every other clock real.
"""

from __future__ import annotations

import functools
import json
import math
import threading
from collections.abc import Callable, Mapping
from typing import Any

from .pin import EnginePatchError
from .routes import App, with_json_route

TIME_SCALE_ENV = "SANDBOX_TIME_SCALE"
MAX = "max"
ROUTE = "/_sandbox/clock"
# The least real time a scaled budget leaves a handler: a warm step of the demo runs in tens of
# milliseconds, a few hundred on two busy cores. Budgets count from the handler's start (the
# worker's cold start is not in them), so the floor need not cover one.
BUDGET_FLOOR_SECONDS = 0.5
# The line of the engine's Python worker script that sets the handler's deadline from the
# function's Timeout at spawn; rewritten to read the invocation's own (scaled) timeout. Matched
# with its indentation: a deeper line another patch adds (the debugger's) is left alone.
DEADLINE_LINE = '\n        _deadline = time.time() + float(os.environ.get("_LAMBDA_TIMEOUT", "3"))\n'
INVOCATION_DEADLINE_LINE = (
    "\n        _deadline = time.time() + (float(_ms_ctx['timeout_ms']) / 1000 if _ms_ctx.get('timeout_ms')"
    ' else float(os.environ.get("_LAMBDA_TIMEOUT", "3")))\n'
)


def parse_time_scale(value: Any) -> float | None:
    """A time scale from its text or JSON form: a speed-up above 0, ``max`` (infinity) or None/"" (unset)."""
    if value is None or value == "":
        return None
    if isinstance(value, str) and value.strip().lower() == MAX:
        return math.inf
    if isinstance(value, bool):
        raise ValueError(f"a time scale is a number above 0 or {MAX!r}, not {value!r}")
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"a time scale is a number above 0 or {MAX!r}, not {value!r}") from None
    if not number > 0 or math.isnan(number):
        raise ValueError(f"a time scale is a number above 0 or {MAX!r}, not {value!r}")
    return number


def time_scale_json(speedup: float | None) -> float | str | None:
    """A time scale as JSON: the number, ``"max"``, or null (the default clock)."""
    if speedup is None:
        return None
    return MAX if math.isinf(speedup) else speedup


class Clock:
    """The saga's speed-up, and what it makes of a wait or a budget given in saga seconds."""

    def __init__(self, speedup: float | None = None, floor: float = BUDGET_FLOOR_SECONDS) -> None:
        self.speedup = speedup
        self.floor = floor
        # What the engine had before a scale was set, put back when it is unset.
        self._engine_defaults: dict[str, float] = {}
        self._lock = threading.Lock()

    @property
    def wait_scale(self) -> float | None:
        """The engine's Step Functions wait factor under this clock (None: the engine's own)."""
        if self.speedup is None:
            return None
        return 0.0 if math.isinf(self.speedup) else 1.0 / self.speedup

    def scaled(self, seconds: float) -> float:
        """Real seconds of a wait of ``seconds`` in saga time (``max``: none)."""
        if self.speedup is None:
            return seconds
        return 0.0 if math.isinf(self.speedup) else seconds / self.speedup

    def budget(self, seconds: float) -> float:
        """Real seconds of a budget of ``seconds`` in saga time: scaled, but not below the floor."""
        if self.speedup is None:
            return seconds
        return max(self.scaled(seconds), min(seconds, self.floor))

    def to_json(self) -> dict[str, Any]:
        return {
            "timeScale": time_scale_json(self.speedup),
            "waitScale": self.wait_scale,
            "budgetFloorSeconds": self.floor,
        }

    def set(self, speedup: float | None, engine: Mapping[str, Any] | None = None) -> None:
        """Run at ``speedup`` (None: the default), applied to the engine's own wait knobs in ``engine``.

        ``engine`` maps ``stepfunctions`` and ``lambda_svc`` to the engine's modules; their
        globals are read at every sleep, so a change holds from the next wait on.
        """
        with self._lock:
            self.speedup = speedup
            if engine is None:
                return
            knobs = {
                "wait_scale": (engine["stepfunctions"], "_SFN_WAIT_SCALE"),
                "esm_backoff": (engine["lambda_svc"], "_ESM_BACKOFF_SECONDS"),
            }
            for key, (module, name) in knobs.items():
                self._engine_defaults.setdefault(key, float(getattr(module, name)))
            if speedup is None:
                for key, (module, name) in knobs.items():
                    setattr(module, name, self._engine_defaults[key])
                return
            engine["stepfunctions"]._SFN_WAIT_SCALE = self.wait_scale
            engine["lambda_svc"]._ESM_BACKOFF_SECONDS = self.scaled(self._engine_defaults["esm_backoff"])


CLOCK = Clock()


# ----------------------------------------------------------------------- budgets, scaled


def scaling_function_timeouts(
    invoke: Callable[..., dict[str, Any]], clock: Clock = CLOCK
) -> Callable[..., dict[str, Any]]:
    """A worker's invocation run under its function's Timeout on the saga clock.

    The worker is leased to this invocation alone; it runs with a copy of its config whose
    Timeout is the scaled budget, which is both the engine's kill deadline and (through the
    invocation's ``timeout_ms``) the handler's remaining time. A huge Timeout (a debugger's hold)
    stays huge.
    """

    @functools.wraps(invoke)
    def invoke_on_clock(worker: Any, *args: Any, **kwargs: Any) -> dict[str, Any]:
        config = getattr(worker, "config", None)
        if clock.speedup is None or not isinstance(config, dict):
            return invoke(worker, *args, **kwargs)
        scaled = {**config, "Timeout": clock.budget(float(config.get("Timeout") or 30))}
        worker.config = scaled
        try:
            return invoke(worker, *args, **kwargs)
        finally:
            if worker.config is scaled:  # unless the function's config was replaced meanwhile
                worker.config = config

    return invoke_on_clock


def reading_invocation_deadline(script: str) -> str:
    """The Python worker script with the handler's deadline taken from the invocation's timeout."""
    if script.count(DEADLINE_LINE) != 1:
        raise ValueError("the engine's Python worker script no longer sets its deadline as the clock expects")
    return script.replace(DEADLINE_LINE, INVOCATION_DEADLINE_LINE)


# ----------------------------------------------------------------------- retries


def capping_retry_delays(
    find_matching_retrier: Callable[[Any, str, dict[Any, int]], tuple[Any, int]],
) -> Callable[[Any, str, dict[Any, int]], tuple[Any, int]]:
    """The engine's retrier lookup, answering a retrier whose next delay honours MaxDelaySeconds.

    The engine computes ``IntervalSeconds * BackoffRate ** count`` from the retrier it is given and
    ignores MaxDelaySeconds; the answer carries the capped delay as its interval (rate 1).
    """

    def find(retriers: Any, error: str, retry_counts: dict[Any, int]) -> tuple[Any, int]:
        retrier, index = find_matching_retrier(retriers, error, retry_counts)
        if not isinstance(retrier, dict) or not isinstance(retrier.get("MaxDelaySeconds"), int | float):
            return retrier, index
        count = retry_counts.get(index, 0)
        delay = float(retrier.get("IntervalSeconds", 1)) * float(retrier.get("BackoffRate", 2.0)) ** count
        capped = min(delay, float(retrier["MaxDelaySeconds"]))
        return {**retrier, "IntervalSeconds": capped, "BackoffRate": 1.0}, index

    return find


# ----------------------------------------------------------------------- the control route


def handle_request(
    clock: Clock, engine: Mapping[str, Any] | None, method: str, body: bytes
) -> tuple[int, Any]:
    """One request to the clock route: (status, JSON answer)."""
    if method == "GET":
        return 200, clock.to_json()
    if method == "POST":
        try:
            payload = json.loads(body or b"{}")
            if not isinstance(payload, dict):
                raise ValueError('send {"timeScale": N | "max" | null}')
            clock.set(parse_time_scale(payload.get("timeScale")), engine)
        except ValueError as error:
            return 400, {"message": str(error)}
        return 200, clock.to_json()
    return 405, {"message": f"{method} is not served on {ROUTE}: GET or POST"}


def with_clock_route(app: App, engine: Mapping[str, Any] | None, clock: Clock = CLOCK) -> App:
    """The engine's ASGI app, answering the clock route itself."""
    return with_json_route(
        app, ROUTE, lambda method, _path, _query, body: handle_request(clock, engine, method, body)
    )


def engine_modules() -> dict[str, Any]:
    """The engine modules whose wait knobs the clock sets."""
    from ministack.services import lambda_svc, stepfunctions

    return {"stepfunctions": stepfunctions, "lambda_svc": lambda_svc}


def patch_clock(environ: Mapping[str, str], clock: Clock = CLOCK) -> None:
    """Put the engine on the saga clock (after the other patches: it wraps what they installed).

    The Task timeouts read the clock's ``budget`` themselves (``timeouts.timing_from_handler_start``).
    """
    import ministack.app
    from ministack.core import lambda_runtime
    from ministack.services import stepfunctions

    engine = engine_modules()
    try:
        speedup = parse_time_scale(environ.get(TIME_SCALE_ENV))
    except ValueError as error:
        raise EnginePatchError(f"{TIME_SCALE_ENV}: {error}") from None
    if speedup is not None:
        clock.set(speedup, engine)
    stepfunctions._find_matching_retrier = capping_retry_delays(stepfunctions._find_matching_retrier)
    lambda_runtime.Worker.invoke = scaling_function_timeouts(lambda_runtime.Worker.invoke, clock)
    lambda_runtime._PYTHON_WORKER_SCRIPT = reading_invocation_deadline(lambda_runtime._PYTHON_WORKER_SCRIPT)
    ministack.app.app = with_clock_route(ministack.app.app, engine, clock)
