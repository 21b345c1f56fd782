"""The console's place-an-order form -> an order request; a bad field is a FormError naming it.

The form carries what `sandbox order` takes as flags, under the same names. It is checked whole
before anything is sent, so a refused form writes nothing.
"""

from __future__ import annotations

import re
from typing import Any

from sandbox.errors import SandboxError
from sandbox.orders import SAGA_STEPS
from sandbox.runs import OrderRequest

FIELDS = frozenset(
    {"customer", "items", "fail", "flaky", "timeout", "hang", "crash", "duplicateDelivery", "poison",
     "idempotencyKey"}
)  # fmt: skip
PRODUCT = re.compile(r"^[A-Za-z0-9_.-]{1,64}$")
MAX_LINES = 25
MAX_QUANTITY = 1000
MAX_FLAKY = 3  # a step retries 3 times: more failing attempts would fail it for good
STEP_CHOICES = ", ".join(SAGA_STEPS)


class FormError(SandboxError):
    """A field of the console's order form that the sandbox cannot use."""


def _text(form: dict[str, Any], name: str, *, limit: int = 255) -> str:
    value = form.get(name)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise FormError(f"{name}: expected text, got {type(value).__name__}")
    if len(value) > limit:
        raise FormError(f"{name}: at most {limit} characters")
    return value.strip()


def _switch(form: dict[str, Any], name: str) -> bool:
    value = form.get(name, False)
    if not isinstance(value, bool):
        raise FormError(f"{name}: expected true or false, got {value!r}")
    return value


def _step(form: dict[str, Any], name: str) -> str | None:
    value = _text(form, name)
    if value and value not in SAGA_STEPS:
        raise FormError(f"{name}: {value!r} is not a step; choose {STEP_CHOICES}")
    return value or None


def parse_items(text: str) -> tuple[dict[str, Any], ...]:
    """``PRODUCT:QTY, PRODUCT:QTY`` -> order lines (the catalog prices them)."""
    lines: list[dict[str, Any]] = []
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        product, _, quantity_text = part.partition(":")
        if not PRODUCT.match(product) or not quantity_text:
            raise FormError(f"items: {part!r} is not PRODUCT:QUANTITY (e.g. mug:2)")
        if not quantity_text.isdigit() or not 1 <= int(quantity_text) <= MAX_QUANTITY:
            raise FormError(
                f"items: quantity {quantity_text!r} of {product} is not a whole number 1-{MAX_QUANTITY}"
            )
        if any(line["productId"] == product for line in lines):
            raise FormError(f"items: {product} appears twice; combine the quantities")
        lines.append({"productId": product, "quantity": int(quantity_text)})
    if not lines:
        raise FormError("items: order at least one product (e.g. mug:2)")
    if len(lines) > MAX_LINES:
        raise FormError(f"items: at most {MAX_LINES} lines")
    return tuple(lines)


def parse_flaky(text: str) -> dict[str, int]:
    """``STEP:N, STEP:N`` -> the first N attempts of each step fail transiently."""
    flaky: dict[str, int] = {}
    for part in (piece.strip() for piece in text.split(",")):
        if not part:
            continue
        step, _, count = part.partition(":")
        if step not in SAGA_STEPS:
            raise FormError(f"flaky: {step!r} is not a step; choose {STEP_CHOICES} (e.g. payment:2)")
        if not count.isdigit() or not 1 <= int(count) <= MAX_FLAKY:
            raise FormError(
                f"flaky: {count!r} failing attempts of {step}: give 1 to {MAX_FLAKY} (the step's retries)"
            )
        flaky[step] = int(count)
    return flaky


def parse_order_form(form: Any) -> OrderRequest:
    """The order the form asks for; FormError names the first field that is wrong."""
    if not isinstance(form, dict):
        raise FormError("the form must be a JSON object of fields")
    unknown = sorted(set(form) - FIELDS)
    if unknown:
        raise FormError(f"unknown field {unknown[0]!r}; the form takes {', '.join(sorted(FIELDS))}")
    faults: dict[str, Any] = {}
    for name in ("fail", "timeout", "hang"):
        step = _step(form, name)
        if step:
            faults[name] = step
    flaky = parse_flaky(_text(form, "flaky"))
    if flaky:
        faults["flaky"] = flaky
    if _switch(form, "crash"):
        faults["crash"] = "publisher"
    if _switch(form, "duplicateDelivery"):
        faults["duplicateDelivery"] = True
    if _switch(form, "poison"):
        faults["poison"] = True
    customer = _text(form, "customer", limit=64) or "console"
    return OrderRequest(
        customer_id=customer,
        items=parse_items(_text(form, "items", limit=2000) or "espresso-beans:1, mug:2"),
        faults=faults or None,
        idempotency_key=_text(form, "idempotencyKey") or None,
    )
