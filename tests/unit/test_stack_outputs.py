"""The outputs of a local deploy are remembered for the engine run they belong to."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from sandbox import stack
from sandbox.engine import EngineState
from sandbox.settings import Settings

OUTPUTS = {"ApiId": "abc123", "OrdersTableName": "orders"}


def engine_run(pid: int, started_at: float = 1.0) -> EngineState:
    return EngineState(engine="embedded", pid=pid, port=4566, log_path="engine.log", started_at=started_at)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(state_dir=tmp_path / "state")


def test_the_outputs_of_this_engine_run_are_used_without_asking_cloudformation(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    # GIVEN a deploy onto the running engine recorded its outputs
    engine = engine_run(pid=10)
    stack.remember_outputs(settings, engine, OUTPUTS)
    monkeypatch.setattr(stack, "running_engine", lambda _: engine)
    monkeypatch.setattr(stack, "make_client", lambda *a, **k: pytest.fail("asked CloudFormation"))
    # WHEN the stack is looked up THEN the recorded outputs are the answer
    found = stack.find_stack(settings)
    assert found.outputs == OUTPUTS
    assert found.api_url == "http://127.0.0.1:4566/_aws/execute-api/abc123/api"


@pytest.mark.parametrize("written", ["", "{not json", '{"engine": null}', "[]"])
def test_outputs_of_another_run_or_an_unreadable_file_are_read_again_and_replaced(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, written: str
) -> None:
    # GIVEN outputs recorded for an engine run that has since been replaced (or a damaged file)
    stack.remember_outputs(settings, engine_run(pid=10), {"ApiId": "old"})
    if written:
        (settings.state_dir / f"{settings.stack_name}.outputs.json").write_text(written)
    now_running = engine_run(pid=11, started_at=2.0)
    monkeypatch.setattr(stack, "running_engine", lambda _: now_running)
    asked: list[str] = []

    def read_outputs(cfn: Any, stack_name: str) -> dict[str, str]:
        asked.append(stack_name)
        return OUTPUTS

    monkeypatch.setattr(stack, "make_client", lambda *a, **k: object())
    monkeypatch.setattr(stack, "read_outputs", read_outputs)
    # WHEN the stack is looked up twice
    first, second = stack.find_stack(settings), stack.find_stack(settings)
    # THEN CloudFormation answered once, and its answer is remembered for this run
    assert first.outputs == second.outputs == OUTPUTS
    assert asked == ["saga-sandbox"]


def test_api_urls_the_stack_names_as_on_aws_become_the_engine_s() -> None:
    from sandbox.targets import local_outputs

    outputs = {
        "WebEndpoint": "https://c08f5ebb.execute-api.us-east-1.amazonaws.com/Prod/",
        "Orders": "https://a1b2.execute-api.eu-west-1.amazonaws.com/api/orders",
        "Table": "trips-table",
    }
    assert local_outputs(outputs, "http://127.0.0.1:4566") == {
        "WebEndpoint": "http://127.0.0.1:4566/_aws/execute-api/c08f5ebb/Prod/",
        "Orders": "http://127.0.0.1:4566/_aws/execute-api/a1b2/api/orders",
        "Table": "trips-table",
    }
