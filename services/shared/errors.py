"""Errors a saga step raises; the class name is the error name Step Functions sees.

Business errors are final (the saga compensates); ``TransientStepError`` is retried by the
state machine's Retry policy.
"""

from __future__ import annotations


class StepError(Exception):
    """Base class of errors a saga step reports."""


class TransientStepError(StepError):
    """A temporary failure; the state machine retries it with backoff."""


class InjectedFailure(StepError):
    """A permanent failure injected on purpose (``--fail STEP``)."""


class OutOfStockError(StepError):
    """Not enough stock to reserve an order's items."""


class PaymentDeclinedError(StepError):
    """The payment provider declined the charge."""


class StepAlreadyCompensatedError(StepError):
    """A step arrived after the saga compensated it (it timed out, then ran late): it does nothing."""


class InvalidTransitionError(StepError):
    """An order status change that would move the order backwards."""
