"""The saga graph, drawn from the ASL (no engine, no browser)."""

from __future__ import annotations

import re
from pathlib import Path

from sandbox.console.graph import draw_graph, layout_states, mark_path, read_definition

ASL = read_definition(Path(__file__).resolve().parents[2] / "state_machines" / "order_saga.asl.json")


def step(name: str, status: str = "SUCCEEDED", attempts: int = 1, errors: list[str] | None = None) -> dict:
    return {"name": name, "status": status, "attempts": attempts, "durationMs": 5,
            "isCompensation": name in ("CancelShipment", "RefundPayment", "ReleaseInventory"), "errors": errors or []}  # fmt: skip


FAILED_SHIPPING = {
    "orderId": "o-1",
    "sagaStatus": "FAILED",
    "steps": [
        step("ReserveInventory"),
        step("ChargePayment"),
        step("CreateShipment", "FAILED", errors=["InjectedFault"]),
        step("CancelShipment"),
        step("RefundPayment"),
        step("ReleaseInventory"),
        step("MarkOrderFailed"),
    ],
}


def nodes(svg: str) -> dict[str, dict[str, str]]:
    found = re.findall(
        r'data-state="([^"]+)" data-outcome="([^"]+)" data-attempts="(\d+)" data-sequence="(\d+)"', svg
    )
    return {name: {"outcome": o, "attempts": a, "sequence": s} for name, o, a, s in found}


def test_the_happy_path_runs_along_the_top_and_each_compensation_sits_under_what_it_undoes():
    cells = layout_states(ASL).cells

    assert [name for name, (_, row) in sorted(cells.items(), key=lambda c: c[1]) if row == 0] == [
        "ReserveInventory", "ChargePayment", "CreateShipment", "MarkOrderCompleted",
    ]  # fmt: skip
    for compensation, forward in (("ReleaseInventory", "ReserveInventory"), ("RefundPayment", "ChargePayment"),
                                  ("CancelShipment", "CreateShipment")):  # fmt: skip
        assert cells[compensation] == (cells[forward][0], 1)
    assert cells["MarkOrderFailed"] == (0, 2) and cells["OrderFailed"] == (1, 2)
    assert len(set(cells.values())) == len(cells) == len(ASL["States"])


def test_every_state_and_transition_of_the_definition_is_drawn():
    svg = draw_graph(ASL)

    assert set(nodes(svg)) == set(ASL["States"])
    transitions = sum(("Next" in s) + len(s.get("Catch", [])) for s in ASL["States"].values())
    assert len(re.findall(r"data-from=", svg)) == transitions
    assert "PaymentDeclinedError" in svg and "any other error" in svg  # the Catch labels, from the ASL


def test_a_failed_shipping_order_colours_its_path_and_the_catch_it_took():
    svg = draw_graph(ASL, FAILED_SHIPPING)
    marks = nodes(svg)

    assert marks["CreateShipment"]["outcome"] == "failed"
    assert marks["CancelShipment"] == {"outcome": "compensation", "attempts": "1", "sequence": "4"}
    assert marks["RefundPayment"] == {"outcome": "compensation", "attempts": "1", "sequence": "5"}
    assert marks["ReleaseInventory"]["sequence"] == "6"
    assert marks["OrderFailed"] == {"outcome": "failed", "attempts": "0", "sequence": "8"}
    assert marks["MarkOrderCompleted"]["outcome"] == "not-reached"
    taken = re.findall(
        r'class="sg-edge sg-edge--(\w+) sg-edge--(\w+)"[^>]*data-from="(\w+)" data-to="(\w+)" data-taken="true"',
        svg,
    )
    assert ("catch", "fail", "CreateShipment", "CancelShipment") in taken
    assert ("next", "undo", "CancelShipment", "RefundPayment") in taken
    assert ("next", "undo", "RefundPayment", "ReleaseInventory") in taken


def test_a_retried_step_carries_its_attempt_count():
    order = {"orderId": "o-2", "sagaStatus": "RUNNING",
             "steps": [step("ReserveInventory"), step("ChargePayment", attempts=3, errors=["TransientStepError"] * 2)]}  # fmt: skip

    marks, path = mark_path(layout_states(ASL), order["steps"], order["sagaStatus"])
    svg = draw_graph(ASL, order)

    assert marks["ChargePayment"].outcome == "retried" and path == ["ReserveInventory", "ChargePayment"]
    assert "×3" in svg and "after 3 attempts" in svg


def test_any_definition_is_laid_out_and_its_names_escaped():
    definition = {
        "StartAt": "A<b>",
        "States": {
            "A<b>": {"Type": "Choice", "Choices": [{"Next": "C"}], "Default": "D"},
            "C": {"Type": "Pass", "End": True},
            "D": {"Type": "Fail"},
            "Orphan": {"Type": "Succeed"},
        },
    }

    cells = layout_states(definition, compensation_of={}).cells
    svg = draw_graph(definition)

    assert len(set(cells.values())) == 4
    assert "A&lt;b&gt;" in svg and "A<b>" not in svg
