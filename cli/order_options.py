"""`sandbox order`'s flags -> the items and faults of an order request (errors name the flags)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from sandbox.errors import UsageError
from sandbox.orders import SAGA_STEPS

DEFAULT_FLAKY_ATTEMPTS = 2
MAX_FLAKY_ATTEMPTS = 3  # the saga's steps retry 3 times


def parse_item(text: str) -> dict[str, Any]:
    """``PRODUCT:QTY[:PRICE]`` -> an order item; without a price, the catalog prices the line."""
    parts = text.split(":")
    if len(parts) not in (2, 3) or not parts[0]:
        raise UsageError(f"--item {text!r}: expected PRODUCT:QTY or PRODUCT:QTY:PRICE")
    product, quantity_text = parts[0], parts[1]
    try:
        quantity = int(quantity_text)
    except ValueError as error:
        raise UsageError(f"--item {text!r}: quantity {quantity_text!r} is not a whole number") from error
    item: dict[str, Any] = {"productId": product, "quantity": quantity}
    if len(parts) == 3:
        try:
            # Sent as given: the API checks it against the catalog (409 when it disagrees).
            item["price"] = float(Decimal(parts[2]))
        except ArithmeticError as error:
            raise UsageError(f"--item {text!r}: price {parts[2]!r} is not a number") from error
    return item


def _step(flag: str, value: str) -> str:
    if value not in SAGA_STEPS:
        raise UsageError(f"{flag} {value!r}: choose one of {', '.join(SAGA_STEPS)}")
    return value


def parse_faults(
    fail: str | None,
    flaky: list[str],
    *,
    timeout: str | None = None,
    hang: str | None = None,
    crash: str | None = None,
    is_duplicate_delivery: bool = False,
    is_poison: bool = False,
) -> dict[str, Any] | None:
    """The CLI's fault flags -> the faults an order carries."""
    faults: dict[str, Any] = {}
    if fail:
        faults["fail"] = _step("--fail", fail)
    for spec in flaky:
        step, _, count = spec.partition(":")
        if step not in SAGA_STEPS:
            raise UsageError(f"--flaky {spec!r}: choose one of {', '.join(SAGA_STEPS)}, e.g. payment:2")
        try:
            attempts = int(count) if count else DEFAULT_FLAKY_ATTEMPTS
        except ValueError as error:
            raise UsageError(f"--flaky {spec!r}: {count!r} is not a whole number") from error
        if not 1 <= attempts <= MAX_FLAKY_ATTEMPTS:
            raise UsageError(
                f"--flaky {spec!r}: give 1 to {MAX_FLAKY_ATTEMPTS} failing attempts (the step retries "
                f"{MAX_FLAKY_ATTEMPTS} times; more would fail it for good: that is --fail)"
            )
        faults.setdefault("flaky", {})[step] = attempts
    if timeout:
        faults["timeout"] = _step("--timeout", timeout)
    if hang:
        faults["hang"] = _step("--hang", hang)
    if crash:
        if crash != "publisher":
            raise UsageError(f"--crash {crash!r}: only the publisher can be crashed (--crash publisher)")
        faults["crash"] = crash
    if is_duplicate_delivery:
        faults["duplicateDelivery"] = True
    if is_poison:
        faults["poison"] = True
    return faults or None
