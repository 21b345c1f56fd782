"""wait_until: the sandbox's one polling helper."""

from __future__ import annotations

import time

import pytest

from sandbox.errors import SandboxError, WaitTimeoutError
from sandbox.waiting import wait_until


def test_returns_the_first_truthy_value() -> None:
    # GIVEN a check that becomes true on its third call
    answers = iter([None, 0, {"status": "done"}, {"status": "later"}])
    calls: list[int] = []

    def check() -> dict | None:
        calls.append(1)
        return next(answers)

    # WHEN waiting THEN the truthy value itself is returned, and polling stops there
    assert wait_until(check, timeout=5, what="x", interval=0.001) == {"status": "done"}
    assert len(calls) == 3


def test_an_immediately_true_check_does_not_sleep() -> None:
    started = time.monotonic()
    assert wait_until(lambda: "ok", timeout=0, what="x", interval=10) == "ok"
    assert time.monotonic() - started < 1


def test_times_out_naming_what_it_waited_for() -> None:
    calls: list[int] = []

    def never() -> None:
        calls.append(1)

    started = time.monotonic()
    with pytest.raises(WaitTimeoutError) as caught:
        wait_until(never, timeout=0.02, what="the engine on port 4999", interval=0.005, max_interval=0.01)
    assert time.monotonic() - started < 1
    assert str(caught.value) == "timed out after 0.02s waiting for the engine on port 4999"
    assert isinstance(caught.value, SandboxError)
    assert len(calls) >= 2  # checked at least once more after the first sleep


def test_errors_from_the_check_propagate() -> None:
    def broken() -> None:
        raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        wait_until(broken, timeout=1, what="x")
