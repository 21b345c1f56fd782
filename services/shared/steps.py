"""The skeleton every saga step handler shares: faults, idempotency and log correlation."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.aws import idempotency_store
from shared.faults import check_faults

# A step's effect is keyed on order id + step name, so a retried or replayed saga finds the
# first result instead of charging, reserving or shipping twice.
STEP_IDEMPOTENCY = IdempotencyConfig(
    event_key_jmespath="[orderId, step]", expires_after_seconds=7 * 24 * 3600
)

StepFunction = Callable[..., dict[str, Any]]


def idempotent_step(function: Callable[[dict[str, Any]], dict[str, Any]]) -> StepFunction:
    """Make ``function(command)`` run once per order id + step."""
    return idempotent_function(  # type: ignore[no-any-return]
        data_keyword_argument="command",
        config=STEP_IDEMPOTENCY,
        persistence_store=idempotency_store(),
    )(function)


@dataclass(frozen=True)
class Action:
    """One action of a step function: the saga state it serves and whether faults apply."""

    step: str
    run: StepFunction
    is_compensation: bool = False


def handle_step(
    event: dict[str, Any],
    context: LambdaContext,
    *,
    service: str,
    actions: dict[str, Action],
    logger: Logger,
) -> dict[str, Any]:
    """Run the action the state machine asked for, once per order id + step."""
    STEP_IDEMPOTENCY.register_lambda_context(context)
    order = event["order"]
    action = actions.get(event.get("action", ""))
    if action is None:
        raise ValueError(f"unknown {service} action {event.get('action')!r}")
    logger.set_correlation_id(order["orderId"])
    logger.append_keys(step=action.step, retry_count=event.get("retryCount", 0))
    if not action.is_compensation:
        check_faults(order.get("faults"), service, int(event.get("retryCount", 0)))
    result = action.run(command={**order, "step": action.step})
    logger.info(f"{action.step} done", extra={"result": result})
    return result
