"""Hot reload: a saved handler or ASL edit reaches the engine without a deploy, for any template."""

from __future__ import annotations

import json
import threading
import uuid
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from sandbox.reload import Reloader, Update, watch_and_reload
from sandbox.settings import Settings
from sandbox.stack import LocalStack, physical_id
from sandbox.waiting import wait_until
from tests.integration.test_build import deploy_project, invoke, write_project

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def reload_stack(
    stack: LocalStack, engine_settings: Settings, tmp_path_factory: pytest.TempPathFactory
) -> tuple[Settings, LocalStack]:
    """A small SAM project of its own, deployed on the session engine, whose files we may edit."""
    project = write_project(tmp_path_factory.mktemp("project"))
    cache = tmp_path_factory.mktemp("cache")
    settings = replace(engine_settings, project_dir=project, template_file=None, cache_dir=cache,
                       stack_name=f"reload-{uuid.uuid4().hex[:6]}")  # fmt: skip
    assert settings.template_path == project / "template.yaml"
    deploy_project(stack, settings.region, project, settings.stack_name, cache)
    return settings, LocalStack(stack.engine, {})


def edit(path: Path, old: str, new: str) -> None:
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new))


def call(settings: Settings, stack: LocalStack, logical_id: str, payload: dict[str, Any]) -> dict[str, Any]:
    name = physical_id(stack, settings.region, settings.stack_name, logical_id)
    return invoke(stack, settings.region, name, payload)


def test_a_handler_edit_updates_exactly_the_functions_built_from_its_folder(reload_stack: Any) -> None:
    settings, stack = reload_stack
    # WHEN shipping/ship.py is edited and the reloader is told
    handler = settings.project_dir / "shipping" / "ship.py"
    edit(handler, "'shipped': True", "'shipped': 'edited'")
    updates = Reloader(settings, stack).apply([handler])
    # THEN only the function whose CodeUri holds it was updated, and it runs the new code
    assert [(u.logical_id, u.source) for u in updates] == [("ShipFunction", "shipping")]
    assert call(settings, stack, "ShipFunction", {}) == {"shipped": "edited"}


def test_an_edit_in_a_shared_code_uri_updates_each_function_and_an_asl_edit_the_state_machine(
    reload_stack: Any,
) -> None:
    settings, stack = reload_stack
    reloader = Reloader(settings, stack)
    money = settings.project_dir / "payments" / "probe_money.py"
    edit(money, "int(amount * 100)", "int(amount * 1000)")
    asl = settings.project_dir / "statemachine" / "saga.asl.json"
    definition = json.loads(asl.read_text())
    definition["Comment"] = "edited by the reload test"
    asl.write_text(json.dumps(definition, indent=2))
    # WHEN both saves are pushed
    updates = reloader.apply([money, asl])
    # THEN both functions built from payments/ and the state machine were updated
    assert {u.logical_id for u in updates} == {"ChargeFunction", "RefundFunction", "Saga"}
    assert call(settings, stack, "ChargeFunction", {"amount": 1})["cents"] == 1000
    sfn = stack.client("stepfunctions", settings.region)
    machine = physical_id(stack, settings.region, settings.stack_name, "Saga")
    described = sfn.describe_state_machine(stateMachineArn=machine)
    assert json.loads(described["definition"])["Comment"] == "edited by the reload test"
    assert "${" not in described["definition"]  # substitutions resolved from the live stack


def test_the_watcher_watches_what_the_template_names_and_pushes_a_save(reload_stack: Any) -> None:
    settings, stack = reload_stack
    seen: list[Update] = []
    errors: list[Exception] = []
    watched: list[list[Path]] = []
    stop = threading.Event()
    watcher = threading.Thread(target=watch_and_reload, args=(settings, stack, seen.append, errors.append, stop),
                               kwargs={"on_ready": watched.append})  # fmt: skip
    watcher.start()
    try:
        handler = settings.project_dir / "payments" / "refund.py"

        def save_and_check() -> bool:
            # Saving again until seen: the watcher may still be starting when the first save lands.
            handler.write_text(handler.read_text() + "\n")
            return any(u.logical_id == "RefundFunction" for u in seen)

        wait_until(save_and_check, timeout=60, what="the watcher to push the refund handler",
                   interval=0.5, max_interval=1)  # fmt: skip
    finally:
        stop.set()
        watcher.join(timeout=30)
    assert errors == []
    project = settings.project_dir.resolve()
    assert watched == [[project / "payments", project / "shipping", project / "statemachine"]]
    update = next(u for u in seen if u.logical_id == "RefundFunction")
    assert update.saved_to_live_ms is not None and update.saved_to_live_ms >= 0
