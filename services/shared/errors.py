"""Errors a saga step raises; the class name is the error name Step Functions sees.

Business errors are final (the saga compensates); ``TransientStepError`` is retried by the
state machine's Retry policy.
"""

from __future__ import annotations


class StepError(Exception):
    """Base class of errors a saga step reports."""


class TransientStepError(StepError):
    """A temporary failure; the state machine retries it with backoff."""


class BusinessError(StepError):
    """A final answer of the business: not retried, and kept as the step's result for replays."""


class OutOfStockError(BusinessError):
    """Not enough stock to reserve an order's items."""


class PaymentDeclinedError(BusinessError):
    """The payment provider declined the charge."""


class StepAlreadyCompensatedError(StepError):
    """A step arrived after the saga compensated it (it timed out, then ran late): it does nothing."""


class InvalidTransitionError(StepError):
    """An order status change that would move the order backwards."""


def business_error(name: str, cause: str) -> BusinessError:
    """The business error a step stored, raised again under its own name (the saga catches by name)."""
    kinds = {kind.__name__: kind for kind in BusinessError.__subclasses__()}
    return kinds.get(name, BusinessError)(cause)
