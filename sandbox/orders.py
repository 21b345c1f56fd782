"""Orders client: talks to the stack's HTTP API exactly as curl would, and follows sagas."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sandbox.catalog import DEMO_PRODUCTS
from sandbox.errors import OrderError
from sandbox.waiting import wait_until

SAGA_STEPS = ("inventory", "payment", "shipping")
TERMINAL_SAGA_STATUSES = frozenset({"SUCCEEDED", "FAILED", "TIMED_OUT", "ABORTED"})
# The order API answers an idempotent replay with this header (the body is the first response's).
REPLAYED_HEADER = "Idempotent-Replayed"
# How the order API's 400 for a product missing from the catalog begins.
UNKNOWN_PRODUCT = "unknown productId"
# Signs a request: (method, url, body, headers) -> headers with the signature added.
Signer = Callable[[str, str, bytes | None, dict[str, str]], dict[str, str]]
# The REST API's stage (template.yaml, OrdersApiStage): the first segment of every API path.
API_STAGE = "api"


def local_api_url(endpoint_url: str, api_id: str) -> str:
    """Where a local engine (or an AWS-compatible endpoint) serves a REST API: its stage, by path."""
    return f"{endpoint_url.rstrip('/')}/_aws/execute-api/{api_id}/{API_STAGE}"


@dataclass(frozen=True)
class ApiResponse:
    """One HTTP exchange with the order API."""

    status: int
    body: Any
    raw: bytes
    headers: dict[str, str] = field(default_factory=dict)

    def header(self, name: str) -> str | None:
        """A response header, whatever case the server gave its name."""
        return next((value for key, value in self.headers.items() if key.lower() == name.lower()), None)

    @property
    def is_replayed(self) -> bool:
        """Whether the API answered from the key's idempotency record (the first response, replayed)."""
        return (self.header(REPLAYED_HEADER) or "").strip().lower() == "true"


def call_api(
    method: str,
    url: str,
    *,
    body: bytes | None = None,
    headers: dict[str, str] | None = None,
    timeout: float = 30,
    signer: Signer | None = None,
) -> ApiResponse:
    """Send one HTTP request; 4xx/5xx come back as responses, unreachable hosts as OrderError."""
    headers = dict(headers or {})
    if body is not None:
        headers["Content-Type"] = "application/json"
    if signer is not None:
        headers = signer(method, url, body, headers)
    request = urllib.request.Request(url, data=body, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            raw, status, got = response.read(), response.status, dict(response.headers)
    except urllib.error.HTTPError as error:
        raw, status, got = error.read(), error.code, dict(error.headers)
    except (urllib.error.URLError, OSError) as error:
        raise OrderError(
            f"cannot reach the order API at {url}: {error}", hint="run `sandbox up` first"
        ) from error
    try:
        parsed = json.loads(raw) if raw else None
    except ValueError:
        parsed = raw.decode(errors="replace")
    return ApiResponse(status, parsed, raw, got)


class OrdersClient:
    """The order API of one deployed stack."""

    def __init__(self, api_url: str, signer: Signer | None = None):
        self.api_url = api_url.rstrip("/")
        self.signer = signer

    def post_order(self, payload: dict[str, Any] | bytes, idempotency_key: str | None = None) -> ApiResponse:
        body = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        return call_api("POST", f"{self.api_url}/orders", body=body, headers=headers, signer=self.signer)

    def get_order(self, order_id: str) -> ApiResponse:
        return call_api("GET", f"{self.api_url}/orders/{order_id}", signer=self.signer)

    def list_orders(self, *, limit: int | None = None, status: str | None = None) -> list[dict[str, Any]]:
        """The most recent orders the API lists (its 50 newest), newest first, optionally narrowed.

        ``status`` keeps the orders in that status among those, ``limit`` the first ``limit``.
        """
        response = call_api("GET", f"{self.api_url}/orders", signer=self.signer)
        _raise_for_status(response)
        listed = [order for order in response.body["orders"] if status is None or order["status"] == status]
        return listed if limit is None else listed[:limit]

    def latest_order_id(self) -> str:
        """The id of the most recently placed order; none yet is an OrderError."""
        listed = self.list_orders(limit=1)
        if not listed:
            raise OrderError("there are no orders yet", hint="place one with `sandbox order`")
        return str(listed[0]["orderId"])

    def check_order_exists(self, order_id: str) -> None:
        """Raise an OrderError naming the order unless the API knows it."""
        response = self.get_order(order_id)
        if response.status == 404:
            raise OrderError(f"order {order_id} not found", hint="list recent orders with `sandbox orders`")
        _raise_for_status(response)

    def submit_order(self, payload: dict[str, Any], idempotency_key: str | None = None) -> ApiResponse:
        """POST an order and return the 201 response (a replay says so); refusals become OrderError."""
        response = self.post_order(payload, idempotency_key)
        if response.status == 400 and _message(response).startswith(UNKNOWN_PRODUCT):
            raise OrderError(
                f"the order API answered 400: {_message(response)}",
                hint=f"the demo catalog has {', '.join(DEMO_PRODUCTS)} (`sandbox up` seeds it, "
                "`sandbox reset` reseeds it)",
            )
        _raise_for_status(response)
        return response

    def place_order(self, payload: dict[str, Any], idempotency_key: str | None = None) -> dict[str, Any]:
        """POST an order and return the 201 body; refusals become OrderError."""
        return dict(self.submit_order(payload, idempotency_key).body)

    def follow_order(
        self,
        order_id: str,
        *,
        timeout: float = 60,
        on_change: Callable[[dict[str, Any]], None] = lambda _: None,
    ) -> dict[str, Any]:
        """Poll the order until its saga ends, calling ``on_change`` whenever it moved."""
        last: list[Any] = [None]

        def is_done() -> dict[str, Any] | None:
            response = self.get_order(order_id)
            if response.status == 404:
                return None
            _raise_for_status(response)
            order = response.body
            fingerprint = (order["status"], order["sagaStatus"], json.dumps(order["steps"]))
            if fingerprint != last[0]:
                last[0] = fingerprint
                on_change(order)
            return order if order["sagaStatus"] in TERMINAL_SAGA_STATUSES else None

        return wait_until(
            is_done,
            timeout=timeout,
            what=f"the saga of order {order_id} to finish",
            # A warm saga ends in about 0.1 s: poll often at first (each poll is one API call),
            # then back off for the slow ones (retries, timeouts).
            interval=0.04,
            max_interval=0.25,
            growth=1.1,
        )


def _message(response: ApiResponse) -> str:
    body = response.body
    return str(body.get("message") if isinstance(body, dict) else body)


def _raise_for_status(response: ApiResponse) -> None:
    if response.status >= 400:
        raise OrderError(f"the order API answered {response.status}: {_message(response)}")
