"""`sandbox debug` on the MiniStack container: the debugger listens inside it, on a port published on
127.0.0.1 only; LocalStack is refused in one line that points to its own debug mode."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from sandbox.debugging import DebugRoute, DebugUnsupportedError, path_mappings, published_port, resolve_target
from sandbox.executions import run_execution
from sandbox.settings import PROJECT_DIR, Settings
from sandbox.stack import LocalStack
from tests.dap import DapClient
from tests.integration.test_debug import PAYMENT_HANDLER, SAGA, line_of

pytestmark = pytest.mark.containers


def test_a_dap_client_stops_in_a_step_running_in_the_container(
    stack: LocalStack, engine_settings: Settings, saga_input: Callable[..., dict[str, Any]]
) -> None:
    if engine_settings.engine == "localstack":
        with pytest.raises(DebugUnsupportedError, match="LocalStack"):
            DebugRoute.of_engine(stack.engine)
        return
    # GIVEN ChargePayment armed on the container's first debug port, reached through its published port
    route = DebugRoute.of_engine(stack.engine)
    target = resolve_target(engine_settings, stack, "ChargePayment")
    session = route.arm(target, port=5678, wait=True, wait_seconds=60, every=False)
    host_port = published_port(stack.engine, 5678)
    assert session["remoteRoots"] and path_mappings(session, target)[0]["localRoot"] == str(
        PROJECT_DIR / "services"
    )
    try:
        # WHEN a saga runs and a DAP client attaches from the host
        with ThreadPoolExecutor(max_workers=1) as pool:
            held = pool.submit(run_execution, stack, engine_settings.region, engine_settings.stack_name, SAGA,
                               saga_input(), wait_seconds=180)  # fmt: skip
            client = DapClient("127.0.0.1", host_port)
            try:
                client.attach(
                    path_mappings(session, target),
                    {str(PAYMENT_HANDLER): [line_of(PAYMENT_HANDLER, "return handle_step")]},
                )
                stopped = client.event("stopped", seconds=60)
                frame = client.request("stackTrace", threadId=stopped["threadId"], levels=1)["stackFrames"][0]
                # THEN it stops in the project's own file, mapped from the container's folder
                assert frame["source"]["path"] == str(PAYMENT_HANDLER)
                client.request("continue", threadId=stopped["threadId"])
            finally:
                client.close()
            # AND the saga completes
            assert held.result(timeout=120).is_succeeded
    finally:
        route.disarm()
