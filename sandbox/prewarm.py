"""Warm before the first invocation: `sandbox up` asks the engine for one worker of each function.

The engine starts them in the background (``sandbox.engine_patches.prewarm``), so `up` returns as
soon as the stack is deployed and the first order finds its functions warm. Engines without the
sandbox's patches (LocalStack) have no such route: their functions start cold, as before.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from sandbox.engine_patches.prewarm import PREWARM, ROUTE

# What CloudFormation lists for a stack's functions (SAM's type before the transform, Lambda's after).
FUNCTION_TYPES = frozenset({"AWS::Lambda::Function", "AWS::Serverless::Function"})


def stack_functions(cloudformation: Any, stack_name: str) -> list[str]:
    """The physical names of a deployed stack's functions."""
    names = []
    for page in cloudformation.get_paginator("list_stack_resources").paginate(StackName=stack_name):
        for resource in page["StackResourceSummaries"]:
            if resource["ResourceType"] in FUNCTION_TYPES and resource.get("PhysicalResourceId"):
                names.append(resource["PhysicalResourceId"])
    return names


def request_prewarm(endpoint_url: str, functions: list[str]) -> list[str] | None:
    """Ask the engine to warm ``functions``; the names it is warming, None when it cannot."""
    request = urllib.request.Request(
        endpoint_url.rstrip("/") + PREWARM,
        data=json.dumps({"functions": functions}).encode(),
        method="POST",
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            answer = json.loads(response.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError):
        return None  # an engine without the route, or one that went away: nothing is warmed
    warming = answer.get("warming") if isinstance(answer, dict) else None
    return [str(name) for name in warming] if isinstance(warming, list) else None


def engine_workers(endpoint_url: str) -> dict[str, Any] | None:
    """The engine's live workers and what prewarming did; None when it cannot say."""
    try:
        with urllib.request.urlopen(endpoint_url.rstrip("/") + ROUTE, timeout=10) as response:
            answer = json.loads(response.read() or b"{}")
    except (urllib.error.URLError, OSError, ValueError):
        return None
    return answer if isinstance(answer, dict) else None
