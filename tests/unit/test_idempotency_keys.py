"""Idempotency-Key headers: absent, present, empty or oversized; the same money is the same request;
replays, refusals and in-flight keys through Powertools' own idempotency, and what each logs."""

from __future__ import annotations

import importlib
import io
import json
from decimal import Decimal
from typing import Any

import pytest
from aws_lambda_powertools.utilities.idempotency import idempotent_function
from botocore.stub import Stubber

from order_api import orders
from order_api.models import RequestError, parse_order_request
from tests.unit.memory_idempotency import MemoryPersistenceLayer


@pytest.fixture
def handler(monkeypatch: pytest.MonkeyPatch) -> Any:
    monkeypatch.setenv("IDEMPOTENCY_TABLE", "idempotency")  # importing the handler builds its store
    return importlib.import_module("order_api.handler")


@pytest.mark.parametrize(
    ("headers", "key"),
    [
        ({}, None),
        ({"content-type": "application/json"}, None),
        ({"idempotency-key": "k1"}, "k1"),
        ({"x-idempotency-key": " k2 "}, "k2"),
        ({"idempotency-key": "k" * 255}, "k" * 255),
    ],
)
def test_the_key_comes_from_either_header(handler: Any, headers: dict[str, str], key: str | None) -> None:
    assert handler.idempotency_key(headers) == key


@pytest.mark.parametrize(
    ("headers", "words"),
    [
        ({"idempotency-key": ""}, "the idempotency-key header is empty"),
        ({"x-idempotency-key": "   "}, "the x-idempotency-key header is empty"),
        ({"idempotency-key": "k" * 256}, "is 256 characters; the limit is 255"),
    ],
)
def test_an_empty_or_oversized_key_is_a_400_that_does_not_echo_it(
    handler: Any, headers: dict[str, str], words: str
) -> None:
    with pytest.raises(RequestError, match=words) as caught:
        handler.idempotency_key(headers)
    assert "kkkk" not in str(caught.value)


@pytest.mark.parametrize("price", ["12", "12.0", "12.00"])
def test_the_same_money_is_one_canonical_request(price: str) -> None:
    # GIVEN the same price written three ways
    body = '{"customerId": "c", "items": [{"productId": "mug", "quantity": 1, "price": ' + price + "}]}"
    request = parse_order_request(body)
    # THEN the request (what an idempotent retry is compared by) is the same
    assert request.items[0].price == Decimal("12.00")
    assert request.model_dump(mode="json")["items"][0]["price"] == "12.00"


# ---------------------------------------------------------------- POST /orders over Powertools' idempotency


class Context:
    function_name = "order-api"
    memory_limit_in_mb = 128
    invoked_function_arn = "arn:aws:lambda:us-east-1:123456789012:function:order-api"
    aws_request_id = "req-1"

    @staticmethod
    def get_remaining_time_in_millis() -> int:
        return 10_000


def post_orders(body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
    """A REST API (Lambda proxy) event for POST /orders; headers keep the case the client sent."""
    sent = {"Content-Type": "application/json", **headers}
    return {
        "resource": "/orders",
        "path": "/orders",
        "httpMethod": "POST",
        "headers": sent,
        "multiValueHeaders": {name: [value] for name, value in sent.items()},
        "queryStringParameters": None,
        "multiValueQueryStringParameters": None,
        "pathParameters": None,
        "stageVariables": None,
        "requestContext": {
            "resourcePath": "/orders",
            "httpMethod": "POST",
            "path": "/api/orders",
            "stage": "api",
            "requestId": "api-request",
            "identity": {"sourceIp": "127.0.0.1"},
        },
        "body": json.dumps(body),
        "isBase64Encoded": False,
    }


def response_header(response: dict[str, Any], name: str) -> list[str] | None:
    """A header of a proxy response, as API Gateway merges ``headers`` and ``multiValueHeaders``."""
    values = [
        value
        for key, sent in [
            *(response.get("headers") or {}).items(),
            *(response.get("multiValueHeaders") or {}).items(),
        ]
        if key.lower() == name.lower()
        for value in (sent if isinstance(sent, list) else [sent])
    ]
    return values or None


BODY = {"customerId": "c1", "items": [{"productId": "mug", "quantity": 1}]}


class Api:
    """The order API's handler with Powertools' real idempotency over an in-memory store."""

    def __init__(self, handler: Any, monkeypatch: pytest.MonkeyPatch) -> None:
        self.handler = handler
        self.placed: list[Any] = []
        self.keys: list[str | None] = []  # the Idempotency-Key each placement was named after
        self.logs = io.StringIO()
        self.on_place: Any = None
        monkeypatch.setattr(handler, "place_order", self._place)
        once = idempotent_function(
            data_keyword_argument="submission",
            config=handler.IDEMPOTENCY,
            persistence_store=MemoryPersistenceLayer(),
        )(handler.place_order_once.__wrapped__)
        monkeypatch.setattr(handler, "place_order_once", once)
        monkeypatch.setattr(handler.logger.registered_handler, "stream", self.logs)

    def _place(self, request: Any, *, idempotency_key: str | None = None) -> dict[str, Any]:
        self.placed.append(request)
        self.keys.append(idempotency_key)
        if self.on_place:
            self.on_place()
        return {"orderId": f"order-{len(self.placed)}", "status": "PENDING", "totalAmount": 12}

    def post(self, body: dict[str, Any], **headers: str) -> dict[str, Any]:
        response: dict[str, Any] = self.handler.lambda_handler(post_orders(body, headers), Context())
        return response

    def trace_lines(self) -> list[dict[str, Any]]:
        """The logged lines the trace reads: those with a trace_event."""
        lines = [json.loads(line) for line in self.logs.getvalue().splitlines()]
        return [line for line in lines if "trace_event" in line]


@pytest.fixture
def api(handler: Any, monkeypatch: pytest.MonkeyPatch) -> Api:
    return Api(handler, monkeypatch)


def test_the_same_key_and_body_replay_the_first_response_and_say_so(api: Api) -> None:
    # WHEN the same request is sent twice with one key
    first = api.post(BODY, **{"idempotency-key": "k1"})
    again = api.post(BODY, **{"idempotency-key": "k1"})
    # THEN the order is placed once and the second answer is the first, byte for byte
    assert (first["statusCode"], again["statusCode"]) == (201, 201)
    assert again["body"] == first["body"]
    assert len(api.placed) == 1
    # AND the order was placed under its key (which names it)
    assert api.keys == ["k1"]
    # AND the logs tell the placement from the replay (what `sandbox trace` reads)
    assert [
        (line["trace_event"], line["order_id"], line["idempotency_key"]) for line in api.trace_lines()
    ] == [
        ("order_placed", "order-1", "k1"),
        ("idempotent_replay", "order-1", "k1"),
    ]


def test_a_replay_carries_the_replayed_header_and_a_first_answer_does_not(api: Api) -> None:
    # WHEN the same request is sent twice with one key
    first = api.post(BODY, **{"idempotency-key": "k1"})
    again = api.post(BODY, **{"idempotency-key": "k1"})
    # THEN only the replay says so, in a header: the body stays the first response's
    assert response_header(first, "Idempotent-Replayed") is None
    assert response_header(again, "Idempotent-Replayed") == ["true"]
    assert again["body"] == first["body"]
    # AND an order without a key is never a replay
    assert response_header(api.post(BODY), "Idempotent-Replayed") is None


def test_the_key_header_is_read_in_whatever_case_the_client_sent(api: Api) -> None:
    # GIVEN a REST API passes headers on in the client's case (curl and the CLI send Idempotency-Key)
    first = api.post(BODY, **{"Idempotency-Key": "k1"})
    again = api.post(BODY, **{"X-Idempotency-Key": "k1"})
    # THEN both name the same key: the second is a replay
    assert again["body"] == first["body"] and len(api.placed) == 1
    assert response_header(again, "Idempotent-Replayed") == ["true"]


def test_the_same_key_with_another_body_is_a_422_logged_as_refused(api: Api) -> None:
    api.post(BODY, **{"idempotency-key": "k1"})
    other = api.post({**BODY, "customerId": "c2"}, **{"idempotency-key": "k1"})
    assert other["statusCode"] == 422
    assert "different request body" in json.loads(other["body"])["message"]
    assert len(api.placed) == 1
    refused = api.trace_lines()[-1]
    assert (refused["trace_event"], refused["status_code"], refused["idempotency_key"]) == (
        "request_refused",
        422,
        "k1",
    )


def test_a_key_still_in_flight_is_a_409_logged_as_refused(api: Api) -> None:
    # GIVEN a second request with the key arriving while the first is still placing its order
    answers: list[dict[str, Any]] = []
    api.on_place = lambda: answers.append(api.post(BODY, **{"idempotency-key": "k1"}))
    first = api.post(BODY, **{"idempotency-key": "k1"})
    # THEN the second is a 409, the first places the order
    assert [answer["statusCode"] for answer in answers] == [409]
    assert first["statusCode"] == 201 and len(api.placed) == 1
    assert [(line["trace_event"], line.get("status_code")) for line in api.trace_lines()] == [
        ("request_refused", 409),
        ("order_placed", None),
    ]


def test_without_a_key_every_request_places_an_order(api: Api) -> None:
    api.post(BODY)
    api.post(BODY)
    assert len(api.placed) == 2
    assert api.keys == [None, None]
    assert [line["trace_event"] for line in api.trace_lines()] == ["order_placed", "order_placed"]


def test_a_body_carrying_faults_is_a_400_and_places_nothing(api: Api) -> None:
    # GIVEN a client that still sends faults in the order (they are rules at the invoke boundary now)
    answer = api.post({**BODY, "faults": {"fail": "payment"}}, **{"idempotency-key": "k1"})
    # THEN the API refuses the unknown field, as it refuses any other
    assert answer["statusCode"] == 400
    assert json.loads(answer["body"])["message"].startswith("faults: Extra inputs are not permitted")
    assert api.placed == []


def test_a_key_whose_order_exists_is_a_409_once_its_idempotency_record_is_gone(
    api: Api, client_factory: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN the real placement, over a DynamoDB that already holds the order this key names (placed
    # before its idempotency record expired): the conditional transaction is cancelled
    monkeypatch.setattr(api.handler, "place_order", orders.place_order)
    monkeypatch.setenv("ORDERS_TABLE", "orders")
    monkeypatch.setenv("INVENTORY_TABLE", "inv")
    dynamodb = client_factory("dynamodb")
    monkeypatch.setattr(orders, "client", lambda service: dynamodb)
    with Stubber(dynamodb) as stubber:
        stubber.add_response(
            "batch_get_item", {"Responses": {"inv": [{"productId": {"S": "mug"}, "price": {"N": "12.00"}}]}}
        )
        stubber.add_client_error(
            "transact_write_items",
            service_error_code="TransactionCanceledException",
            modeled_fields={"CancellationReasons": [{"Code": "ConditionalCheckFailed"}] * 2},
        )
        # WHEN the key is sent again
        answer = api.post(BODY, **{"idempotency-key": "k1"})
        stubber.assert_no_pending_responses()
    # THEN it is a 409 naming the order the key placed, and no second order
    assert answer["statusCode"] == 409
    message = json.loads(answer["body"])["message"]
    assert f"order {orders.order_id_for_key('k1')} was already placed with this Idempotency-Key" in message
