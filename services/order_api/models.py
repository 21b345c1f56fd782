"""The order request: validated with pydantic, totals computed here, never trusted from callers."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

MAX_BODY_BYTES = 64 * 1024
CENT = Decimal("0.01")  # prices and totals are money, kept in cents


class RequestError(ValueError):
    """A request the API refuses with 400 and this message."""


class DuplicateOrderError(RequestError):
    """An order was already placed under this Idempotency-Key (after its idempotency record expired): 409."""


class PriceConflictError(RequestError):
    """A line's price disagrees with the catalog's: refused with 409 (prices come from the catalog)."""


class OrderItem(BaseModel):
    model_config = ConfigDict(extra="forbid")

    productId: str = Field(min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.-]+$")
    quantity: int = Field(gt=0, le=1000, strict=True)
    # Optional: the catalog sets the price. A price the client sends must agree with it.
    price: Decimal | None = Field(default=None, gt=0, max_digits=10, decimal_places=2)

    @field_validator("price", mode="before")
    @classmethod
    def _price_is_a_number(cls, value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float, Decimal)):
            raise ValueError("price must be a number")
        return value

    @field_validator("price")
    @classmethod
    def _price_in_cents(cls, value: Decimal | None) -> Decimal | None:
        # 12, 12.0 and 12.00 are the same money: one form, so an idempotent retry that formats
        # its numbers differently is the same request, and messages show cents.
        return value.quantize(CENT) if value is not None else None


class OrderRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    customerId: str = Field(min_length=1, max_length=64, pattern=r"\S")
    items: list[OrderItem] = Field(min_length=1, max_length=25)

    @model_validator(mode="after")
    def _products_unique(self) -> OrderRequest:
        seen: set[str] = set()
        for item in self.items:
            if item.productId in seen:
                raise ValueError(f"productId {item.productId} appears twice; combine the quantities")
            seen.add(item.productId)
        return self

    @property
    def total_amount(self) -> Decimal:
        """The order's total; only meaningful once every line is priced (see ``priced``)."""
        priced = [(item.price, item.quantity) for item in self.items if item.price is not None]
        if len(priced) != len(self.items):
            raise ValueError("the order's lines are not priced yet")
        return sum((price * quantity for price, quantity in priced), Decimal("0")).quantize(CENT)

    def priced(self, catalog: dict[str, Decimal]) -> OrderRequest:
        """The request with every line priced from ``catalog``; a client price must agree with it."""
        lines = []
        for item in self.items:
            price = catalog[item.productId]
            if item.price is not None and item.price != price:
                raise PriceConflictError(
                    f"price of {item.productId} is {price}, not {item.price}: prices come from the catalog"
                )
            lines.append(item.model_copy(update={"price": price}))
        return self.model_copy(update={"items": lines})


def describe_validation_error(error: ValidationError) -> str:
    """One readable line for every problem pydantic found."""
    problems = []
    for detail in error.errors():
        where = ".".join(str(part) for part in detail["loc"])
        message = detail["msg"].removeprefix("Value error, ")
        if detail["type"] == "json_invalid":
            return "request body is not valid JSON"
        problems.append(f"{where}: {message}" if where else message)
    return "; ".join(problems)


def parse_order_request(body: str | None) -> OrderRequest:
    """Validate a raw request body, raising RequestError with a readable message."""
    if not body:
        raise RequestError("request body is required: {customerId, items: [{productId, quantity}]}")
    size = len(body.encode())
    if size > MAX_BODY_BYTES:
        raise RequestError(f"request body is {size} bytes; the limit is {MAX_BODY_BYTES}")
    try:
        return OrderRequest.model_validate_json(body)
    except ValidationError as error:
        raise RequestError(describe_validation_error(error)) from error
