"""Reading a queue's messages without receiving them, through a local engine's own listing.

A ReceiveMessage is not a read: it raises each message's receive count (which a redrive policy
counts toward ``maxReceiveCount``) and hides it for a visibility timeout. Local engines list a
queue without either: MiniStack at ``GET /_ministack/sqs/messages``, LocalStack at
``/_aws/sqs/messages`` (which answers a ReceiveMessage call). AWS has no such listing; where
none answers, callers receive as before.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import TYPE_CHECKING, Any

from sandbox.clients import make_client

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

MINISTACK_LISTING = "/_ministack/sqs/messages"
LOCALSTACK_LISTING = "/_aws/sqs/messages"
LISTING_TIMEOUT_SECONDS = 10.0


def list_messages(endpoint_url: str, queue_url: str, region: str) -> list[dict[str, Any]] | None:
    """Every message in the queue, shaped as ReceiveMessage returns them, read without receiving.

    ``endpoint_url`` is the local engine's; None when it offers no listing.
    """
    messages = _ministack_messages(endpoint_url, queue_url, region)
    if messages is None:
        messages = _localstack_messages(endpoint_url, queue_url, region)
    return messages


def _ministack_messages(endpoint_url: str, queue_url: str, region: str) -> list[dict[str, Any]] | None:
    query = urllib.parse.urlencode({"QueueUrl": queue_url, "region": region})
    try:
        with urllib.request.urlopen(
            f"{endpoint_url}{MINISTACK_LISTING}?{query}", timeout=LISTING_TIMEOUT_SECONDS
        ) as response:
            document = json.loads(response.read())
    except (urllib.error.URLError, OSError, ValueError):  # HTTPError (a 404: no listing) included
        return None
    if not isinstance(document, dict) or not isinstance(document.get("messages"), dict):
        return None
    return ministack_listed_messages(document)


def ministack_listed_messages(document: dict[str, Any]) -> list[dict[str, Any]]:
    """The messages of MiniStack's listing (by account, region and queue), as ReceiveMessage has them."""
    messages: list[dict[str, Any]] = []
    for regions in document["messages"].values():
        for queues in regions.values():
            for listed in queues.values():
                messages.extend(_as_received(message) for message in listed)
    return messages


def _as_received(listed: dict[str, Any]) -> dict[str, Any]:
    attributes = {key: str(value) for key, value in (listed.get("Attributes") or {}).items()}
    attributes["ApproximateReceiveCount"] = str(listed.get("ReceiveCount") or 0)
    message: dict[str, Any] = {
        "MessageId": listed["MessageId"],
        "Body": listed.get("Body", ""),
        "Attributes": attributes,
    }
    if listed.get("MD5OfBody"):
        message["MD5OfBody"] = listed["MD5OfBody"]
    if listed.get("MessageAttributes"):
        message["MessageAttributes"] = listed["MessageAttributes"]
    return message


def _localstack_messages(endpoint_url: str, queue_url: str, region: str) -> list[dict[str, Any]] | None:
    from botocore.exceptions import BotoCoreError, ClientError

    # LocalStack's listing answers ReceiveMessage itself: the SQS client, pointed at it.
    listing: SQSClient = make_client("sqs", endpoint_url=f"{endpoint_url}{LOCALSTACK_LISTING}", region=region)
    try:
        response = listing.receive_message(QueueUrl=queue_url, MessageSystemAttributeNames=["All"])
    except (ClientError, BotoCoreError):
        return None
    return [dict(message) for message in response.get("Messages", [])]
