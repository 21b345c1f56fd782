"""Hot reload: a saved handler or ASL edit reaches the engine without a deploy."""

from __future__ import annotations

import json
import shutil
import threading
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sandbox.orders import OrdersClient
from sandbox.reload import Reloader, Update, watch_and_reload
from sandbox.settings import Settings
from sandbox.stack import LocalStack, deploy_local
from sandbox.targets import local_api_url
from sandbox.waiting import wait_until

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def project_copy(tmp_path_factory: pytest.TempPathFactory, engine_settings: Settings) -> Path:
    copy = tmp_path_factory.mktemp("project")
    for name in ("template.yaml", "services", "state_machines"):
        source = engine_settings.project_dir / name
        (shutil.copytree if source.is_dir() else shutil.copy)(source, copy / name)
    return copy


@pytest.fixture(scope="module")
def reload_stack(
    stack: LocalStack, engine_settings: Settings, project_copy: Path
) -> tuple[Settings, LocalStack]:
    """A second stack on the session engine, deployed from a copy of the project we may edit."""
    settings = replace(engine_settings, project_dir=project_copy, stack_name=f"reload-{uuid.uuid4().hex[:6]}")
    deployed = deploy_local(settings, stack.engine, lambda _: None)
    return settings, LocalStack(stack.engine, deployed.outputs)


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def test_a_handler_edit_is_live_after_reload(reload_stack: Any) -> None:
    settings, stack = reload_stack
    api = OrdersClient(local_api_url(stack.engine.endpoint_url, stack.outputs["ApiId"]))
    assert api.get_order("missing").body["message"] == "order missing not found"
    # WHEN the handler is edited and the reloader is told
    handler = settings.project_dir / "services" / "order_api" / "handler.py"
    edit(handler, 'not found"})', 'not found (edited)"})')
    updates = Reloader(settings, stack).apply([handler])
    # THEN only that function was updated, and it answers with the new code
    assert [u.logical_id for u in updates] == ["OrderApiFunction"]
    assert api.get_order("missing").body["message"] == "order missing not found (edited)"


def test_a_shared_edit_updates_every_function_and_an_asl_edit_the_state_machine(reload_stack: Any) -> None:
    settings, stack = reload_stack
    reloader = Reloader(settings, stack)
    shared = settings.project_dir / "services" / "shared" / "status.py"
    asl = settings.project_dir / "state_machines" / "order_saga.asl.json"
    definition = json.loads(asl.read_text())
    definition["Comment"] = "edited by the reload test"
    asl.write_text(json.dumps(definition, indent=2))
    updates = reloader.apply([shared, asl])
    assert {u.logical_id for u in updates} == {*reloader.plan.functions.values(), "OrderSagaStateMachine"}
    sfn = stack.client("stepfunctions", settings.region)
    described = sfn.describe_state_machine(stateMachineArn=stack.outputs["StateMachineArn"])
    live = json.loads(described["definition"])
    assert live["Comment"] == "edited by the reload test"
    assert "${" not in described["definition"]  # substitutions applied


def test_the_watcher_pushes_a_save_and_reports_it(reload_stack: Any) -> None:
    settings, stack = reload_stack
    seen: list[Update] = []
    errors: list[Exception] = []
    stop = threading.Event()
    watcher = threading.Thread(
        target=watch_and_reload, args=(settings, stack, seen.append, errors.append, stop)
    )
    watcher.start()
    try:
        handler = settings.project_dir / "services" / "notifications" / "handler.py"

        def save_and_check() -> bool:
            # Saving again until seen: the watcher may still be starting when the first save lands.
            handler.write_text(handler.read_text() + "\n")
            return any(u.logical_id == "NotificationsFunction" for u in seen)

        wait_until(save_and_check, timeout=60, what="the watcher to push the notifications handler",
                   interval=0.5, max_interval=1)  # fmt: skip
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert errors == []
    update = next(u for u in seen if u.logical_id == "NotificationsFunction")
    assert update.saved_to_live_ms is not None and update.saved_to_live_ms >= 0
