"""Order API: POST /orders (idempotent), GET /orders, GET /orders/{orderId}."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from aws_lambda_powertools import Logger
from aws_lambda_powertools.event_handler import APIGatewayRestResolver, Response, content_types
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.idempotency import IdempotencyConfig, idempotent_function
from aws_lambda_powertools.utilities.idempotency.exceptions import (
    IdempotencyAlreadyInProgressError,
    IdempotencyValidationError,
)
from aws_lambda_powertools.utilities.typing import LambdaContext

from order_api.models import (
    DuplicateOrderError,
    OrderRequest,
    PriceConflictError,
    RequestError,
    parse_order_request,
)
from order_api.orders import get_order, list_orders, place_order
from shared.aws import idempotency_store
from shared.trace_events import TraceEvent

if TYPE_CHECKING:
    from aws_lambda_powertools.utilities.idempotency.persistence.datarecord import DataRecord

logger = Logger()
app = APIGatewayRestResolver()

IDEMPOTENCY_HEADERS = ("idempotency-key", "x-idempotency-key")
MAX_KEY_LENGTH = 255
# Says a 201 is a replay (as Stripe's API does); the body stays the first response, byte for byte.
REPLAYED_HEADER = "Idempotent-Replayed"


class ReplayedBody(str):
    """A response body Powertools answered from the key's idempotency record: nothing was placed."""


def mark_replay(response: Any, idempotent_data: DataRecord) -> ReplayedBody:
    """Powertools' response hook: it runs only when a stored response is returned."""
    return ReplayedBody(response)


# IETF Idempotency-Key draft: the key identifies the request, the payload must match it.
IDEMPOTENCY = IdempotencyConfig(
    event_key_jmespath="key",
    payload_validation_jmespath="request",
    expires_after_seconds=600,
    response_hook=mark_replay,
)


def json_response(status: int, body: Any) -> Response[str]:
    return Response(status_code=status, content_type=content_types.APPLICATION_JSON, body=json.dumps(body))


@idempotent_function(
    data_keyword_argument="submission", config=IDEMPOTENCY, persistence_store=idempotency_store()
)
def place_order_once(submission: dict[str, Any], request: OrderRequest) -> str:
    """Place the order once per idempotency key; a replay returns the first body as a ``ReplayedBody``.

    ``submission`` (key + JSON form of the request) is what Powertools hashes and validates;
    the body is stored as text so a replay is the first response byte for byte.
    """
    return json.dumps(place_order(request, idempotency_key=submission["key"]))


def idempotency_key(headers: dict[str, str]) -> str | None:
    """The request's idempotency key, None without one; an empty or oversized key is a 400.

    The key is never echoed back in a response: it may be long, and it is the client's secret.
    """
    name = next((name for name in IDEMPOTENCY_HEADERS if name in headers), None)
    if name is None:
        return None
    key = headers[name].strip()
    if not key:
        raise RequestError(f"the {name} header is empty: send a key, or no header")
    if len(key) > MAX_KEY_LENGTH:
        raise RequestError(f"the {name} header is {len(key)} characters; the limit is {MAX_KEY_LENGTH}")
    return key


@app.exception_handler(PriceConflictError)
def price_conflict(error: PriceConflictError) -> Response[str]:
    return json_response(409, {"message": str(error)})


@app.exception_handler(RequestError)
def bad_request(error: RequestError) -> Response[str]:
    return json_response(400, {"message": str(error)})


@app.post("/orders")
def create_order() -> Response[str]:
    request = parse_order_request(app.current_event.decoded_body)
    key = idempotency_key(app.current_event.headers or {})
    if key is None:
        placed = place_order(request)
        logger.info(
            "order placed",
            extra={
                "trace_event": TraceEvent.ORDER_PLACED,
                "order_id": placed["orderId"],
                "idempotency_key": None,
            },
        )
        return json_response(201, placed)
    submission = {"key": key, "request": request.model_dump(mode="json")}
    try:
        body = place_order_once(submission=submission, request=request)
    except DuplicateOrderError as error:
        return refuse(409, key, "idempotency key already placed an order", str(error))
    except IdempotencyValidationError:
        return refuse(
            422,
            key,
            "idempotency key reused with another body",
            "this Idempotency-Key was already used with a different request body",
        )
    except IdempotencyAlreadyInProgressError:
        return refuse(
            409,
            key,
            "idempotency key still in progress",
            "a request with this Idempotency-Key is still in progress; retry later",
        )
    is_replay = isinstance(body, ReplayedBody)
    logger.info(
        "idempotent replay" if is_replay else "order placed",
        extra={
            "trace_event": TraceEvent.IDEMPOTENT_REPLAY if is_replay else TraceEvent.ORDER_PLACED,
            "order_id": json.loads(body)["orderId"],
            "idempotency_key": key,
        },
    )
    return Response(
        status_code=201,
        content_type=content_types.APPLICATION_JSON,
        body=body,
        headers={REPLAYED_HEADER: "true"} if is_replay else None,
    )


def refuse(status: int, key: str, logged: str, answer: str) -> Response[str]:
    """Refuse a request over its idempotency key: logged for the trace, answered without the key."""
    logger.warning(
        logged,
        extra={"trace_event": TraceEvent.REQUEST_REFUSED, "status_code": status, "idempotency_key": key},
    )
    return json_response(status, {"message": answer})


@app.get("/orders")
def read_orders() -> Response[str]:
    return json_response(200, {"orders": list_orders()})


@app.get("/orders/<order_id>")
def read_order(order_id: str) -> Response[str]:
    order = get_order(order_id)
    if order is None:
        return json_response(404, {"message": f"order {order_id} not found"})
    return json_response(200, order)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_REST)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    IDEMPOTENCY.register_lambda_context(context)
    return app.resolve(event, context)
