"""Ids of a trip's reservations, derived from the trip so a retried step reuses the same one."""

from __future__ import annotations

import hashlib

# Reported by each step that uses this module, so a test can tell the layer's code ran.
SCHEME = "trip_common.ids/1"

PREFIXES = {"flight": "FL", "hotel": "HT", "charge": "CH"}


def reservation_id(kind: str, trip_id: str) -> str:
    """The id of the trip's ``kind`` reservation (flight, hotel or charge): the same for every attempt."""
    try:
        prefix = PREFIXES[kind]
    except KeyError as error:
        raise ValueError(f"unknown reservation kind {kind!r}: one of {', '.join(PREFIXES)}") from error
    digest = hashlib.sha256(f"{kind}:{trip_id}".encode()).hexdigest()[:10].upper()
    return f"{prefix}-{digest}"
