"""MiniStack's queue listing, read as ReceiveMessage would have returned its messages."""

from __future__ import annotations

from sandbox.queues import ministack_listed_messages


def test_the_listing_of_every_account_region_and_queue_becomes_received_messages() -> None:
    # GIVEN MiniStack's listing: messages by account, region and queue URL
    listed = {
        "MessageId": "m1",
        "Body": '{"id": "e1"}',
        "MD5OfBody": "abc",
        "SentTimestamp": 1700000000,  # seconds: not the attribute SQS reports
        "ReceiveCount": 0,
        "IsVisible": True,
        "Attributes": {"SenderId": "000000000000", "SentTimestamp": "1700000000123"},
        "MessageAttributes": {},
    }
    document = {"messages": {"000000000000": {"us-east-1": {"http://q/1": [listed], "http://q/2": []}}}}
    # WHEN it is read THEN each message has ReceiveMessage's shape and attributes, as strings
    assert ministack_listed_messages(document) == [
        {
            "MessageId": "m1",
            "Body": '{"id": "e1"}',
            "MD5OfBody": "abc",
            "Attributes": {
                "SenderId": "000000000000",
                "SentTimestamp": "1700000000123",
                "ApproximateReceiveCount": "0",
            },
        }
    ]


def test_an_empty_listing_is_no_messages() -> None:
    assert ministack_listed_messages({"messages": {}}) == []
