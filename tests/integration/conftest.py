"""One embedded engine per test session (the pytest plugin's ``sandbox_stack``); tests isolate by unique ids."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

import boto3
import pytest

from sandbox.demo_faults import OrderFaults, order_id_for_key
from sandbox.orders import OrdersClient
from sandbox.settings import Settings
from sandbox.stack import LocalStack, physical_id
from sandbox.testing import SandboxStack

pytestmark = pytest.mark.integration


@pytest.fixture(scope="session")
def engine_settings(sandbox_stack: SandboxStack) -> Settings:
    """The settings of the session's engine: the pytest plugin's, shared with examples/."""
    return sandbox_stack.settings


@pytest.fixture(scope="session")
def stack(sandbox_stack: SandboxStack) -> LocalStack:
    return sandbox_stack.stack


@pytest.fixture(scope="session")
def api(stack: LocalStack) -> OrdersClient:
    return OrdersClient(stack.api_url)


@pytest.fixture(scope="session")
def dynamodb(stack: LocalStack, engine_settings: Settings) -> Any:
    return boto3.resource(
        "dynamodb",
        endpoint_url=stack.engine.endpoint_url,
        region_name=engine_settings.region,
        aws_access_key_id="test",
        aws_secret_access_key="test",
    )


@pytest.fixture(scope="session")
def tables(stack: LocalStack, dynamodb: Any) -> dict[str, Any]:
    return {
        name: dynamodb.Table(stack.outputs[f"{name.title()}TableName"])
        for name in ("orders", "inventory", "reservations", "payments", "shipments")
    }


@pytest.fixture
def customer_id() -> str:
    return f"cust-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def make_product(tables: dict[str, Any]) -> Any:
    """A product of this test's own, so stock checks never see another test's orders."""

    def make(stock: int = 10, price: str = "5.00") -> str:
        product_id = f"test-{uuid.uuid4().hex[:12]}"
        tables["inventory"].put_item(
            Item={"productId": product_id, "name": product_id, "price": Decimal(price), "stock": stock}
        )
        return product_id

    return make


def stock_of(tables: dict[str, Any], product_id: str) -> int:
    return int(
        tables["inventory"].get_item(Key={"productId": product_id}, ConsistentRead=True)["Item"]["stock"]
    )


def records_of_customer(tables: dict[str, Any], customer_id: str) -> list[dict[str, Any]]:
    """Every ORDER# or OUTBOX# item that mentions the customer."""
    from boto3.dynamodb.conditions import Attr

    scan = tables["orders"].scan(
        FilterExpression=Attr("customerId").eq(customer_id) | Attr("payload").contains(customer_id),
        ConsistentRead=True,
    )
    return list(scan["Items"])


@contextmanager
def outbox_paused(stack: LocalStack, settings: Settings) -> Iterator[None]:
    """The outbox stream mapping disabled: orders are accepted but stay PENDING until it resumes,
    then the stream delivers what was written meanwhile together (batches of many records)."""
    lam = stack.client("lambda", settings.region)
    publisher = physical_id(stack, settings.region, settings.stack_name, "OutboxPublisherFunction")
    (mapping,) = lam.list_event_source_mappings(FunctionName=publisher)["EventSourceMappings"]
    lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=False)
    try:
        yield
    finally:
        lam.update_event_source_mapping(UUID=mapping["UUID"], Enabled=True)


def giving_order_faults(stack: LocalStack, region: str) -> Iterator[Callable[..., str]]:
    """Gives an order (or an execution of the saga by that name) the demo's faults, as
    `sandbox order` names them (``fail="payment"``, ``flaky={"payment": 2}``); cleared at the end."""
    faults = OrderFaults(stack, region)
    added: list[str] = []

    def add(order_id: str, **flags: Any) -> str:
        added.extend(faults.add([(order_id, flags)]))
        return order_id

    yield add
    faults.clear(added)


@pytest.fixture
def order_faults(stack: LocalStack, engine_settings: Settings) -> Iterator[Callable[..., str]]:
    """The demo's faults for this test's orders (see ``giving_order_faults``)."""
    yield from giving_order_faults(stack, engine_settings.region)


@pytest.fixture
def place_with_faults(api: OrdersClient, order_faults: Callable[..., str]) -> Callable[..., dict[str, Any]]:
    """Places an order through the API with the demo's faults: their rules are set first, for the
    id the order API gives the order (from its Idempotency-Key)."""

    def place(body: dict[str, Any], **flags: Any) -> dict[str, Any]:
        key = uuid.uuid4().hex
        order_faults(order_id_for_key(key), **flags)
        return api.place_order(body, key)

    return place


@pytest.fixture
def saga_input(
    tables: dict[str, Any], make_product: Callable[..., str], order_faults: Callable[..., str]
) -> Callable[..., dict[str, Any]]:
    """The input the outbox publisher gives the demo's saga, for an ORDER# item of the test's own.

    Faults (``fail="payment"``) are rules on the execution named after the order, the name the
    publisher gives it: start the execution with ``name=`` its order id for them to fire.
    """

    def make(**faults: Any) -> dict[str, Any]:
        order_id = f"exec-{uuid.uuid4().hex[:12]}"
        now = datetime.now(UTC).isoformat()
        order = {
            "orderId": order_id,
            "customerId": f"cust-{uuid.uuid4().hex[:8]}",
            "items": [{"productId": make_product(), "quantity": 1, "price": "5.00"}],
            "totalAmount": "5.00",
            "status": "PENDING",
            "createdAt": now,
            "updatedAt": now,
        }
        tables["orders"].put_item(Item={"pk": f"ORDER#{order_id}", "sk": "ORDER", **order})
        if faults:
            order_faults(order_id, **faults)
        return {"order": order}

    return make
