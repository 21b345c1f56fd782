"""The skeleton every saga step handler shares: idempotency and log correlation."""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import IdempotencyAlreadyInProgressError
from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from shared.aws import idempotency_store
from shared.errors import BusinessError, TransientStepError, business_error

# A step's effect is keyed on order id + step name, so a retried or replayed saga finds the
# first result instead of charging, reserving or shipping twice.
STEP_KEY = "[orderId, step]"
STEP_RECORD_SECONDS = 7 * 24 * 3600
# Marks a stored result that is a business error rather than the step's effect.
BUSINESS_ERROR_KEY = "businessError"

StepFunction = Callable[..., dict[str, Any]]

# How long a step waits for an earlier attempt of itself that still holds the idempotency record
# (it timed out in the state machine but is still running). Below the Task's TimeoutSeconds, so
# the state sees IdempotencyAlreadyInProgressError (retried) rather than a timeout of its own.
IN_PROGRESS_WAIT_SECONDS = 3.0


class IdempotentStep:
    """``function(command)`` run once per order id + step; knows whether its last call was a replay.

    A business error (out of stock, declined) is stored as the step's result too: a replayed saga
    meets the same error, instead of running the step again against today's stock or card.
    """

    def __init__(self, function: Callable[[dict[str, Any]], dict[str, Any]]):
        self.was_replayed = False
        # Powertools calls the response hook only when it answers from a stored record.
        self.config = IdempotencyConfig(
            event_key_jmespath=STEP_KEY,
            expires_after_seconds=STEP_RECORD_SECONDS,
            response_hook=self._replayed,
        )

        @functools.wraps(function)  # keeps the name Powertools derives its idempotency keys from
        def run_keeping_business_errors(command: dict[str, Any]) -> dict[str, Any]:
            try:
                return function(command)
            except BusinessError as error:
                return {BUSINESS_ERROR_KEY: {"error": type(error).__name__, "cause": str(error)}}

        self._once = idempotent_function(
            data_keyword_argument="command", config=self.config, persistence_store=idempotency_store()
        )(run_keeping_business_errors)

    def _replayed(self, response: Any, idempotent_data: DataRecord) -> Any:
        self.was_replayed = True
        return response

    def __call__(self, *, command: dict[str, Any]) -> dict[str, Any]:
        self.was_replayed = False
        result: dict[str, Any] = self._once(command=command)
        failure = result.get(BUSINESS_ERROR_KEY)
        if failure:
            raise business_error(str(failure["error"]), str(failure["cause"]))
        return result


def idempotent_step(function: Callable[[dict[str, Any]], dict[str, Any]]) -> IdempotentStep:
    """Make ``function(command)`` run once per order id + step."""
    return IdempotentStep(function)


def run_after_earlier_attempt(
    run: StepFunction, command: dict[str, Any], context: LambdaContext, logger: Logger
) -> dict[str, Any]:
    """Run the step; while an earlier attempt still runs it, wait (bounded, with backoff) for its result.

    The earlier attempt either finishes (its stored result is returned, nothing runs twice), fails
    (its record is deleted and this attempt runs), or crashed (its record expires with the
    invocation that held it, Powertools' Lambda context registration). Still in progress at the
    end of the wait: the error is raised and the state machine retries it.
    """
    remaining = context.get_remaining_time_in_millis() / 1000 - 1 if context else IN_PROGRESS_WAIT_SECONDS
    deadline = time.monotonic() + min(IN_PROGRESS_WAIT_SECONDS, remaining)
    delay = 0.05
    while True:
        try:
            return run(command=command)
        except IdempotencyAlreadyInProgressError:
            if time.monotonic() + delay > deadline:
                raise
            logger.info(
                "an earlier attempt of this step is still running; waiting for it", extra={"wait_s": delay}
            )
            time.sleep(delay)
            delay = min(delay * 2, 0.5)


def is_idempotent_hit(run: StepFunction) -> bool:
    """Whether the last call of ``run`` returned a stored result instead of running."""
    return isinstance(run, IdempotentStep) and run.was_replayed


@dataclass(frozen=True)
class Action:
    """One action of a step function: the saga state it serves, and what it runs."""

    step: str
    run: StepFunction


def handle_step(
    event: dict[str, Any],
    context: LambdaContext,
    *,
    service: str,
    actions: dict[str, Action],
    logger: Logger,
) -> dict[str, Any]:
    """Run the action the state machine asked for, once per order id + step."""
    order = event["order"]
    action = actions.get(event.get("action", ""))
    if action is None:
        raise ValueError(f"unknown {service} action {event.get('action')!r}")
    if isinstance(action.run, IdempotentStep):
        # An in-progress record expires with this invocation, should it die before finishing.
        action.run.config.register_lambda_context(context)
    logger.set_correlation_id(order["orderId"])
    logger.append_keys(step=action.step, retry_count=event.get("retryCount", 0))
    try:
        result = run_after_earlier_attempt(action.run, {**order, "step": action.step}, context, logger)
    except Exception as error:
        # Ties the failed invocation to its order in the logs; the traceback follows from the runtime.
        log = logger.warning if isinstance(error, TransientStepError) else logger.error
        log(f"{action.step} failed", extra={"error_type": type(error).__name__, "error": str(error),
                                            "idempotent_hit": is_idempotent_hit(action.run)})  # fmt: skip
        raise
    logger.info(
        f"{action.step} done", extra={"result": result, "idempotent_hit": is_idempotent_hit(action.run)}
    )
    return result
