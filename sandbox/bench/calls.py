"""What a run's orders asked of the engine: AWS API calls by service and operation, Lambda invocations.

The engine counts every call it answers (``/_sandbox/calls``, sandbox.engine_patches.calls); a run
reads the counts before and after its burst and divides the difference by the orders it followed
to their end. The run's own reads (polling the orders table, the on-failure queue) are marked with
the observer header, so the engine counts them apart and they are not taken for the orders'.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Any

from sandbox.engine_routes import engine_route
from sandbox.stack import LocalStack

ROUTE = "/_sandbox/calls"
OBSERVER_HEADER = "x-sandbox-observer"


@dataclass(frozen=True)
class CallCounts:
    """Calls by (service, operation) and invocations by function, as counted or as a difference."""

    calls: dict[tuple[str, str], int]
    invocations: dict[str, int]

    @classmethod
    def from_json(cls, answer: Any) -> CallCounts:
        """The route's answer: ``{"calls": {service: {operation: n}}, "invocations": {function: n}}``."""
        calls = answer.get("calls") or {} if isinstance(answer, dict) else {}
        invocations = answer.get("invocations") or {} if isinstance(answer, dict) else {}
        return cls(
            {(service, op): int(n) for service, ops in calls.items() for op, n in ops.items()},
            {function: int(n) for function, n in invocations.items()},
        )

    def since(self, earlier: CallCounts) -> CallCounts:
        """What was counted after ``earlier`` (keys that did not grow are left out)."""
        calls = {key: n - earlier.calls.get(key, 0) for key, n in self.calls.items()}
        invocations = {name: n - earlier.invocations.get(name, 0) for name, n in self.invocations.items()}
        return CallCounts(
            {key: n for key, n in calls.items() if n > 0},
            {name: n for name, n in invocations.items() if n > 0},
        )

    @property
    def total_calls(self) -> int:
        return sum(self.calls.values())

    @property
    def total_invocations(self) -> int:
        return sum(self.invocations.values())

    def per_order(self, orders: int) -> dict[str, Any]:
        """Calls and invocations per order, by service and operation and by function, most first."""
        share = 1 / orders if orders else 0.0
        by_operation = sorted(self.calls.items(), key=lambda item: (-item[1], item[0]))
        by_function = sorted(self.invocations.items(), key=lambda item: (-item[1], item[0]))
        by_service: dict[str, int] = {}
        for (service, _), count in self.calls.items():
            by_service[service] = by_service.get(service, 0) + count
        return {
            "orders": orders,
            "calls": round(self.total_calls * share, 2),
            "invocations": round(self.total_invocations * share, 2),
            "byService": {s: round(n * share, 2) for s, n in sorted(by_service.items(), key=lambda i: -i[1])},
            "byOperation": [
                {"service": s, "operation": op, "perOrder": round(n * share, 2), "count": n}
                for (s, op), n in by_operation
            ],
            "byFunction": [
                {"function": name, "perOrder": round(n * share, 2), "count": n} for name, n in by_function
            ],
        }


def read_call_counts(endpoint_url: str, timeout: float = 10) -> CallCounts | None:
    """The engine's counts so far; None when the engine counts none (no calls route: another engine)."""
    answer = engine_route(endpoint_url, ROUTE, timeout=timeout)
    return None if answer is None else CallCounts.from_json(answer)


def _mark_observer(request: Any, **_: Any) -> None:
    request.headers[OBSERVER_HEADER] = "bench"


class _ObservedStack(LocalStack):
    """The stack, whose clients mark every call as the observer's."""

    def client(self, service: str, region: str) -> Any:
        client = super().client(service, region)
        client.meta.events.register("before-sign", _mark_observer)
        return client


def observed(stack: LocalStack) -> LocalStack:
    """The same stack, its clients' calls counted apart from the ones under measure."""
    return _ObservedStack(**{field.name: getattr(stack, field.name) for field in fields(stack)})
