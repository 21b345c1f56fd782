"""Step Functions service integrations: an ``sns:publish`` Task keeps its MessageAttributes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

SNS_PUBLISH = "arn:aws:states:::sns:publish"


def query_message_attributes(attributes: Mapping[str, Any]) -> dict[str, str]:
    """A Publish's ``MessageAttributes`` (the API's JSON shape) as the query parameters of SNS."""
    params: dict[str, str] = {}
    for index, (name, value) in enumerate(attributes.items(), start=1):
        prefix = f"MessageAttributes.entry.{index}"
        params[f"{prefix}.Name"] = str(name)
        if not isinstance(value, Mapping):
            continue
        params[f"{prefix}.Value.DataType"] = str(value.get("DataType", "String"))
        for key in ("StringValue", "BinaryValue"):
            if value.get(key) is not None:
                params[f"{prefix}.Value.{key}"] = str(value[key])
    return params


def with_message_attributes(publish: Callable[[str, Any], Any]) -> Callable[[str, Any], Any]:
    """The engine's ``sns:publish`` integration, passing the Task's MessageAttributes on to SNS.

    The Task's parameters arrive in the API's JSON shape, but the engine's SNS reads its query
    form (``MessageAttributes.entry.N.Name``), so the attributes were dropped: a subscription
    with a filter policy on them received nothing.
    """

    def publish_with_attributes(resource: str, input_data: Any) -> Any:
        attributes = input_data.get("MessageAttributes") if isinstance(input_data, Mapping) else None
        if isinstance(attributes, Mapping):
            params = {key: value for key, value in input_data.items() if key != "MessageAttributes"}
            params.update(query_message_attributes(attributes))
            input_data = params
        return publish(resource, input_data)

    return publish_with_attributes
